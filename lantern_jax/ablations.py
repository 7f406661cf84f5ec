"""The paper's ablations, one command: each cell retrains one student on a shared pipeline base.

    python -m lantern_jax.ablations --config configs/ablations.py[:micro] --workdir runs/ablations

Groups (cells): divergence (forward_kl, reverse_kl, jsd, skew_kl, tvd: the explainer's KD loss),
kd (data_only: λ_kd = 0, data+kd), stages (single: in-house teacher -> small explainer, two_stage:
in-house -> mid -> small, the small one distilled online from the mid one), classifier (minilm_mean,
minilm_cls, decoder_last_token, hard_only: λ_soft = 0, soft) and compression (on / off: the
classifier reads the posting compressed to its requirements, or whole).

The base stages (data, teacher, seed, inhouse, d_t) run once into <workdir>/base. Cells that train
the same student (data+kd, single and divergence/tvd; soft, minilm_mean and compression/on) share
one run in <workdir>/runs/<run>/seed<k>, whose DONE.json makes a rerun skip it. Every run is scored
on the base's test split against the black-box teacher's labels, on the paper's metrics (explainers:
ROUGE-L, structure validity, fit accuracy; classifiers: accuracy, macro-F1, ECE), keeping the
per-pair values. <workdir>/ablations.json and ablations.md hold, per cell, mean ± std over seeds
and a 95 % bootstrap interval over pairs and seeds, and each paper claim the groups test with its
paired interval and verdict: reproduced, not reproduced or inconclusive (`lantern_jax.claims`).
"""
from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import sys

import ml_collections
import numpy as np
from tqdm import tqdm

from lantern_jax import claims, cli, inference, pipeline, scoring, stages
from lantern_jax import config as config_lib
from lantern_jax import train as train_lib
from lantern_jax import train_log, train_step
from lantern_jax.config import ConfigError
from lantern_jax.data import datasets, prompts, views
from lantern_jax.data.rundir import RunDir
from lantern_jax.distill import losses
from lantern_jax.models import sources

GROUPS = ("divergence", "kd", "stages", "classifier", "compression")
# what the table shows per group (each run's DONE.json holds more): the paper's metrics, then the
# explainer's dev token cross-entropy, which is defined even before its outputs parse
EXPLAINER = ("rougeL", "structure_validity", "fit_accuracy_vs_teacher", "eval_ce")
CLASSIFIER = ("accuracy_vs_teacher", "macro_f1_vs_teacher", "ece")
COLUMNS = {"divergence": EXPLAINER, "kd": EXPLAINER, "stages": EXPLAINER, "classifier": CLASSIFIER,
           "compression": (*CLASSIFIER, "posting_tokens", "input_tokens", "truncated", "ms_per_pair")}


@dataclasses.dataclass(frozen=True)
class Run:
    """One student to train, in <workdir>/runs/<name>: `student` is explainer | chain | classifier,
    `overrides` apply to the base's explainer / classifier section, `compress` picks the
    classifier's input text."""
    name: str
    student: str
    overrides: tuple[str, ...] = ()
    compress: bool = True

    @property
    def kind(self) -> str:
        return "classifier" if self.student == "classifier" else "explainer"


def cells(cfg) -> list[tuple[str, str, Run]]:
    """(group, cell, run) for every ablation cell; cells naming the same run share it."""
    d = cfg.base.explainer.loss.divergence  # the pipeline's own divergence
    divergences = divergence_cells(cfg)
    explainer = {name: Run(f"explainer-{name}", "explainer", (f"loss.divergence={name}",))
                 for name in dict.fromkeys((*divergences, d))}
    mean = Run("minilm-mean", "classifier", ("model.pooling=mean",))
    dec = cfg.decoder_classifier
    decoder = Run("decoder-last_token", "classifier", (
        "model.source=init", "model.init.arch=decoder", "model.pooling=last_token",
        *(f"model.init.{k}={dec[k]}" for k in ("hidden_size", "num_layers", "num_heads", "num_kv_heads",
                                                "intermediate_size")), f"optim.lr={dec.lr}"))
    return [
        *(("divergence", name, explainer[name]) for name in divergences),
        ("kd", "data_only", Run(f"explainer-{d}-no_kd", "explainer", (f"loss.divergence={d}", "loss.lambda_kd=0.0"))),
        ("kd", "data+kd", explainer[d]),
        ("stages", "single", explainer[d]),
        ("stages", "two_stage", Run(f"chain-{d}", "chain", (f"loss.divergence={d}",))),
        ("classifier", "minilm_mean", mean),
        ("classifier", "minilm_cls", Run("minilm-cls", "classifier", ("model.pooling=cls",))),
        ("classifier", "decoder_last_token", decoder),
        ("classifier", "hard_only", Run("minilm-mean-hard_only", "classifier", (*mean.overrides, "loss.lambda_soft=0.0"))),
        ("classifier", "soft", mean),
        ("compression", "on", mean),
        ("compression", "off", dataclasses.replace(mean, name="minilm-mean-uncompressed", compress=False)),
    ]


def divergence_cells(cfg) -> list[str]:
    """The divergence group's cells (`cfg.divergences`), each a key of `losses.DIVERGENCES`."""
    names = [n.strip() for n in cfg.divergences.split(",") if n.strip()]
    unknown = [n for n in names if n not in losses.DIVERGENCES]
    if unknown:
        raise ConfigError(f"config key 'divergences': unknown {unknown}; known: {sorted(losses.DIVERGENCES)}")
    return names


def select(cfg) -> list[tuple[str, str, Run]]:
    everything = cells(cfg)
    if cfg.cells == "all":
        return everything
    wanted = [s.strip() for s in cfg.cells.split(",") if s.strip()]
    known = set(GROUPS) | {f"{g}/{c}" for g, c, _ in everything}
    unknown = [w for w in wanted if w not in known]
    if unknown:
        raise ConfigError(f"config key 'cells': unknown {unknown}; groups {list(GROUPS)} or group/cell")
    return [(g, c, r) for g, c, r in everything if g in wanted or f"{g}/{c}" in wanted]


# --- training one run ------------------------------------------------------------------------

def uncompressed_data(base: RunDir, out_dir: str) -> str:
    """D_cls with the whole posting as the classifier's text (same pairs and labels as the base's)."""
    tfds_dir = os.path.join(out_dir, "tfds")

    def build() -> dict:
        pairs = base.all_pairs()
        splits = {s: [{**r, "text": views.classifier_text(pairs[r["pair_id"]], compress=False)}
                      for r in datasets.read_dataset("d_cls", base.tfds, s)]
                  for s in ("train", "dev")}
        datasets.write_dataset("d_cls", splits, tfds_dir, overwrite=True)
        return {s: len(rs) for s, rs in splits.items()}

    stages.run_once("[ablations] uncompressed D_cls", out_dir, build)
    return tfds_dir


def train_config(cfg, run: Run, seed: int, base: RunDir, data_dir: str) -> ml_collections.ConfigDict:
    """The base's explainer / classifier section with the run's overrides, resolved as
    `pipeline.resolve_train_config` does (data and domain tokenizer from the base)."""
    section = cfg.base.classifier if run.kind == "classifier" else cfg.base.explainer
    tc = ml_collections.ConfigDict(section.to_dict())
    config_lib.apply_overrides(tc, run.overrides)  # before resolving: a decoder cell needs the tokenizer
    tc = pipeline.resolve_train_config(tc, base)
    tc.seed = seed
    tc.data.dir = data_dir
    if not run.compress:
        tc.data.max_length = cfg.uncompressed_max_length
    if run.student == "chain":
        mid = {f"model.init.{k}": v for k, v in cfg.chain_mid.items()}
        small = {f"model.init.{k}": getattr(tc.model.init, k) for k in cfg.chain_mid}
        tc.chain = [{"name": "mid", "overrides": {**mid, "teacher.mode": "offline"}},
                     {"name": "small", "overrides": {**small, "teacher.mode": "online",
                                                     "teacher.source": "stage:mid"}}]
    return tc


def train_run(cfg, run: Run, seed: int, base: RunDir, workdir: str, run_dir: str) -> str:
    """Trains (or resumes) the run's student; returns the directory holding its export/."""
    data_dir = (base.tfds if run.compress
                else uncompressed_data(base, os.path.join(workdir, "d_cls_uncompressed")))
    train_lib.run(train_config(cfg, run, seed, base, data_dir), run_dir)
    return os.path.join(run_dir, "small") if run.student == "chain" else run_dir


# --- scoring one run -------------------------------------------------------------------------

def score(cfg, run: Run, model_dir: str, base: RunDir) -> dict:
    teacher = base.blackbox_assessments()
    pairs = base.pairs("test")[:cfg.base.evaluate.n_per_split]
    model, tokenizer = sources.load(os.path.join(model_dir, "export"))
    out = {"params": train_step.param_count(model)}
    if run.kind == "classifier":
        texts = [views.classifier_text(p, compress=run.compress) for p in pairs]
        max_length = cfg.uncompressed_max_length if not run.compress else cfg.base.classifier.data.max_length
        logits, ms = inference.classify(model, tokenizer, texts, max_length=max_length, desc=f"score {run.name}")
        ref = scoring.reference_labels([teacher.get(p.pair_id) for p in pairs])
        has = ref >= 0
        pred, probs = logits.argmax(1), scoring.softmax(logits)
        m = scoring.classification_metrics(pred[has], ref[has])
        lengths = [len(ids) for ids in tokenizer(texts)["input_ids"]]
        job = prompts.measure_compression(pairs)  # the posting's tokens, whole or compressed
        return {**out, "accuracy_vs_teacher": m["accuracy"], "macro_f1_vs_teacher": m["macro_f1"],
                "ece": scoring.ece(probs[has], ref[has])[0], "n": m["n"], "ms_per_pair": ms,
                "input_tokens": float(np.mean(lengths)),
                "truncated": float(np.mean([n > max_length for n in lengths])),
                "posting_tokens": (job.job_tokens_compressed if run.compress else job.job_tokens_full) / job.pairs,
                "per_pair": {"pred": pred.tolist(), "ref": ref.tolist(), "probs": probs.round(5).tolist()}}
    shown = pairs[:cfg.base.evaluate.n_explain]
    texts = inference.explain(model, tokenizer, shown, max_new_tokens=cfg.base.evaluate.max_new_tokens,
                              desc=f"score {run.name}")
    m = scoring.explainer_metrics(texts, [teacher.get(p.pair_id) for p in shown],
                                  [p.truth["fit_level"] for p in shown])
    m.pop("_levels")
    per_pair = m.pop("_per_pair")
    evals = train_log.read_metrics(model_dir).get("eval", [])
    return {**out, **m, "per_pair": per_pair, "eval_ce": evals[-1]["ce"] if evals else float("nan")}


# --- the table -------------------------------------------------------------------------------

def summarise(selected, results: dict) -> list[dict]:
    """Per cell: mean ± sample std over seeds of each column, and for the paper's metrics a 95 %
    bootstrap interval over the test pairs and the seeds (`claims.interval`)."""
    rows = []
    for group, cell, run in selected:
        per_seed = results[run.name]
        metrics = {}
        for key in COLUMNS[group]:
            values = np.array([r[key] for r in per_seed], float)
            std = float(np.std(values, ddof=1)) if len(values) > 1 else 0.0  # the sample std over seeds
            metrics[key] = {"mean": float(np.mean(values)), "std": std}
            if key in claims.METRICS:
                metrics[key]["ci95"] = list(claims.interval([r["per_pair"] for r in per_seed], key))
        rows.append({"group": group, "cell": cell, "run": run.name, "n_seeds": len(per_seed),
                     "seconds": float(np.mean([r["elapsed_s"] for r in per_seed])), "metrics": metrics})
    return rows


def _shown(key: str, v: dict) -> str:
    if not np.isfinite(v["mean"]):
        return f"{key} n/a"
    ci = f" [{v['ci95'][0]:.3f}, {v['ci95'][1]:.3f}]" if np.isfinite(v.get("ci95", [np.nan])[0]) else ""
    return f"{key} {v['mean']:.3f} ± {v['std']:.3f}{ci}"


def table(rows: list[dict]) -> str:
    lines = ["| group | cell | metric: mean ± std over seeds [95 % bootstrap interval] | seeds | seconds |",
             "|---|---|---|---|---|"]
    for r in rows:
        shown = " · ".join(_shown(k, v) for k, v in r["metrics"].items())
        lines.append(f"| {r['group']} | {r['cell']} | {shown} | {r['n_seeds']} | {r['seconds']:.0f} |")
    return "\n".join(lines)


def claims_table(verdicts: list[dict]) -> str:
    lines = ["| claim | metric | favoured − other: 95 % paired interval | verdict |", "|---|---|---|---|"]
    for v in verdicts:
        diffs = "; ".join(f"− {o}: [{lo:+.3f}, {hi:+.3f}]" for o, (lo, hi) in v["differences"].items())
        lines.append(f"| {v['claim']} | {v['metric']} | {v['favoured']} {diffs} | **{v['verdict']}** |")
    return "\n".join(lines)


def run(cfg: ml_collections.ConfigDict, workdir: str) -> list[dict]:
    selected = select(cfg)
    workdir = os.path.abspath(workdir)
    pipeline.run(cfg.base, os.path.join(workdir, "base"))
    base = RunDir(os.path.join(workdir, "base"))
    results: dict[str, list[dict]] = {}
    bar = tqdm(total=len({r.name for _, _, r in selected}) * cfg.seeds, desc="ablations", unit="cell")
    for group, cell, r in selected:
        if r.name in results:  # a run another cell already trained and scored
            continue
        results[r.name] = []
        for seed in range(cfg.seeds):
            run_dir = os.path.join(workdir, "runs", r.name, f"seed{seed}")

            def cell_run(r=r, seed=seed, run_dir=run_dir) -> dict:
                return score(cfg, r, train_run(cfg, r, seed, base, workdir, run_dir), base)

            outcome = stages.run_once(f"[ablations] {group}/{cell} seed {seed}: {r.name}", run_dir, cell_run)
            results[r.name].append(outcome.summary)
            bar.update(1)
    bar.close()
    rows = summarise(selected, results)
    verdicts = claims.assess_claims({(g, c): [s["per_pair"] for s in results[r.name]] for g, c, r in selected})
    with open(os.path.join(workdir, "ablations.json"), "w") as f:
        json.dump({"rows": rows, "claims": verdicts, "runs": results}, f, indent=2, default=float)
    text = table(rows) + "\n\n## The paper's claims\n\n" + claims_table(verdicts)
    with open(os.path.join(workdir, "ablations.md"), "w") as f:
        f.write(f"# LANTERN ablations\n\nBase `{base.root}`, {cfg.seeds} seed(s); test split vs the "
                f"black-box teacher's labels. A claim is reproduced when the paired interval of the "
                f"difference lies above 0, not reproduced when below, inconclusive otherwise.\n\n{text}\n")
    print(text, flush=True)
    return rows


def main(argv=None) -> int:
    return cli.main(run, argv, description="LANTERN ablations", config="configs/ablations.py",
                    workdir="runs/ablations")


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(main())
