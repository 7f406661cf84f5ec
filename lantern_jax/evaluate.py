"""Evaluation of both students: metrics, calibration, ROUGE, structure, latency -> report.

    python -m lantern_jax.evaluate --workdir runs/demo [--config configs/demo.py]

Classifier: accuracy, macro-F1, per-class precision / recall and the confusion matrix against the
black-box teacher's labels and against the generator's latent truth; expected calibration error
with a reliability diagram, before and after temperature scaling fitted on dev.
Explainer: structure validity (parses as an Assessment), label / explanation agreement,
requirement coverage, fit-level accuracy, ROUGE-1/2/L of its explanation against the teacher's;
for its raw greedy outputs and (`evaluate.guided_max_new_tokens`) for schema-guided ones.
Both: agreement between the classifier's and the explainer's fit levels; latency; every metric on
the in-distribution test split and on occupations and companies held out of training.
Writes report.md, metrics.json and PNG plots into <workdir>/evaluate.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from lantern_jax import guided as guided_lib
from lantern_jax.data import prompts
from lantern_jax.data.input_pipeline import prompt_ids
from lantern_jax.data.schema import FIT_LEVELS
from lantern_jax.generate import SamplingConfig, generate_ids
from lantern_jax.models import hf
from lantern_jax.teacher.parse import TeacherOutputError, parse_assessment

EVAL_SPLITS = ("test", "heldout_occupation", "heldout_company")
C = len(FIT_LEVELS)
_forward = nnx.jit(lambda model, ids, mask: model(ids, mask))  # one trace per model and shape


# --- classification metrics -------------------------------------------------------------------

def classification_metrics(pred: np.ndarray, ref: np.ndarray) -> dict:
    """Accuracy, macro-F1, per-class precision / recall, confusion[ref, pred] (int labels)."""
    conf = np.zeros((C, C), int)
    np.add.at(conf, (ref, pred), 1)
    tp = np.diag(conf).astype(float)
    precision = np.divide(tp, conf.sum(0), out=np.zeros(C), where=conf.sum(0) > 0)
    recall = np.divide(tp, conf.sum(1), out=np.zeros(C), where=conf.sum(1) > 0)
    f1 = np.divide(2 * precision * recall, precision + recall, out=np.zeros(C),
                   where=precision + recall > 0)
    present = conf.sum(1) > 0  # macro over the classes the reference uses
    return {"n": int(len(ref)), "accuracy": float((pred == ref).mean()) if len(ref) else float("nan"),
            "macro_f1": float(f1[present].mean()) if present.any() else float("nan"),
            "precision": dict(zip(FIT_LEVELS, precision.round(4).tolist())),
            "recall": dict(zip(FIT_LEVELS, recall.round(4).tolist())),
            "confusion": conf.tolist()}


def ece(probs: np.ndarray, ref: np.ndarray, bins: int = 10) -> tuple[float, list[dict]]:
    """Expected calibration error of the top-class confidence, and the reliability bins."""
    conf, pred = probs.max(1), probs.argmax(1)
    edges = np.linspace(0, 1, bins + 1)
    table, total = [], 0.0
    for lo, hi in zip(edges[:-1], edges[1:]):
        inside = (conf > lo) & (conf <= hi)
        if inside.any():
            acc, mean_conf = float((pred[inside] == ref[inside]).mean()), float(conf[inside].mean())
            total += inside.mean() * abs(acc - mean_conf)
            table.append({"lo": float(lo), "hi": float(hi), "n": int(inside.sum()),
                          "accuracy": acc, "confidence": mean_conf})
    return float(total), table


def fit_temperature(logits: np.ndarray, ref: np.ndarray) -> float:
    """The T minimising dev NLL of softmax(logits / T) (a 1-D search: robust and exact enough)."""
    grid = np.exp(np.linspace(np.log(0.05), np.log(20.0), 400))
    nll = [-(jax.nn.log_softmax(logits / t)[np.arange(len(ref)), ref]).mean() for t in grid]
    return float(grid[int(np.argmin(nll))])


# --- model runners ----------------------------------------------------------------------------

def classify(model, tokenizer, texts, *, max_length: int, batch: int = 32) -> tuple[np.ndarray, float]:
    """Logits [N, 3] and the steady-state latency per pair in ms (compile excluded)."""
    fwd = _forward
    encode = lambda chunk: {k: jnp.asarray(v) for k, v in tokenizer(  # noqa: E731
        chunk + [""] * (batch - len(chunk)), truncation=True, max_length=max_length,
        padding="max_length", return_tensors="np").items() if k in ("input_ids", "attention_mask")}
    jax.block_until_ready(fwd(model, *encode(texts[:batch]).values()))  # compile outside the timing
    out, tic = [], time.perf_counter()
    for start in range(0, len(texts), batch):
        chunk = texts[start:start + batch]
        out.append(np.asarray(fwd(model, *encode(chunk).values()))[:len(chunk)])
    return np.concatenate(out), 1000 * (time.perf_counter() - tic) / max(len(texts), 1)


def explain(model, tokenizer, pairs, *, max_new_tokens: int, batch: int = 32, guided: bool = False) -> list[str]:
    """Greedy explainer outputs for the in-house prompt of each pair; `guided`: decoded under the
    Assessment schema (lantern_jax/guided.py), so every output parses."""
    cfg = SamplingConfig(max_new_tokens=max_new_tokens)
    ids = [prompt_ids(tokenizer, prompts.inhouse_messages(p)) for p in pairs]
    texts = []
    for start in range(0, len(ids), batch):
        chunk = ids[start:start + batch]
        if guided:
            texts += guided_lib.guided_assessments(model, tokenizer, chunk, max_new_tokens=max_new_tokens)
            continue
        outs = generate_ids(model, chunk, [tokenizer.eos_token_id], cfg, pad_id=tokenizer.pad_token_id)
        texts += [tokenizer.decode(o[0], skip_special_tokens=True) for o in outs]
    return texts


def generation_latency(model, tokenizer, pairs, *, max_new_tokens: int) -> float:
    """ms per generated token for one batch, measured on its second run (the first compiles)."""
    ids = [prompt_ids(tokenizer, prompts.inhouse_messages(p)) for p in pairs]
    cfg = SamplingConfig(max_new_tokens=max_new_tokens)
    run = lambda: generate_ids(model, ids, [tokenizer.eos_token_id], cfg, pad_id=tokenizer.pad_token_id)  # noqa: E731
    run()
    tic = time.perf_counter()
    tokens = sum(len(o[0]) for o in run())
    return 1000 * (time.perf_counter() - tic) / max(tokens, 1)


def _words(text: str) -> set[str]:
    return set(re.findall(r"[a-z0-9+#]+", text.lower()))


def explainer_metrics(texts, teacher_assessments, truth_levels) -> dict:
    from rouge_score import rouge_scorer
    scorer = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"], use_stemmer=True)
    valid = agree = 0
    rouge = {k: [] for k in ("rouge1", "rouge2", "rougeL")}
    coverage, vs_teacher, vs_truth, levels = [], [], [], []
    for text, ref, truth in zip(texts, teacher_assessments, truth_levels):
        try:
            a = parse_assessment(text, check_opening_sentence=False)
        except TeacherOutputError:
            levels.append(None)
            continue
        valid += 1
        levels.append(a.fit_level)
        agree += a.explanation.startswith(f"You are a {a.fit_level} fit")
        vs_truth.append(a.fit_level == truth)
        if ref is None:
            continue
        vs_teacher.append(a.fit_level == ref["fit_level"])
        for k, s in scorer.score(ref["explanation"], a.explanation).items():
            rouge[k].append(s.fmeasure)
        mine = [_words(r.requirement) for r in a.requirements]
        hits = [any(len(w & m) >= 0.6 * max(len(w), 1) for m in mine)
                for w in (_words(r["requirement"]) for r in ref["requirements"])]
        coverage.append(float(np.mean(hits)) if hits else 1.0)
    n = len(texts)
    mean = lambda xs: float(np.mean(xs)) if xs else float("nan")  # noqa: E731
    return {"n": n, "structure_validity": valid / n if n else float("nan"),
            "label_explanation_agreement": agree / valid if valid else float("nan"),
            "requirement_coverage": mean(coverage), "fit_accuracy_vs_teacher": mean(vs_teacher),
            "fit_accuracy_vs_truth": mean(vs_truth), **{k: mean(v) for k, v in rouge.items()},
            "_levels": levels}


# --- the run ----------------------------------------------------------------------------------

def run(cfg, wd) -> dict:
    """Evaluates the pipeline's students in workdir `wd` (a pipeline.Workdir)."""
    from lantern_jax.pipeline import classifier_text, read_teacher_records

    out_dir = wd("evaluate")
    os.makedirs(out_dir, exist_ok=True)
    teacher = {r["pair_id"]: r.get("assessment") for r in read_teacher_records(wd("teacher", "records.jsonl"))}
    n = cfg.evaluate.n_per_split
    splits = {s: wd.pairs(s)[:n] for s in ("dev", *EVAL_SPLITS)}
    metrics: dict = {"splits": {}}

    clf, clf_tok = hf.load_hf(wd("classifier", "export")), hf.load_tokenizer(wd("classifier", "export"))
    max_len = cfg.classifier.data.max_length
    logits = {s: classify(clf, clf_tok, [classifier_text(p) for p in ps], max_length=max_len)
              for s, ps in splits.items()}
    dev_ref = _labels([teacher.get(p.pair_id) for p in splits["dev"]])
    known = dev_ref >= 0
    temperature = fit_temperature(logits["dev"][0][known], dev_ref[known]) if known.any() else 1.0
    metrics["classifier_temperature"] = temperature
    metrics["classifier_ms_per_pair"] = float(np.mean([v[1] for v in logits.values()]))

    lm, lm_tok = hf.load_hf(wd("explainer", "export")), hf.load_tokenizer(wd("explainer", "export"))
    guided_tokens = cfg.evaluate.get("guided_max_new_tokens", 0)  # 0: raw outputs only
    reliability = {}
    for split in EVAL_SPLITS:
        ps = splits[split]
        ref_teacher = _labels([teacher.get(p.pair_id) for p in ps])
        ref_truth = np.array([FIT_LEVELS.index(p.truth["fit_level"]) for p in ps])
        lg = logits[split][0]
        probs = np.asarray(jax.nn.softmax(lg)), np.asarray(jax.nn.softmax(lg / temperature))
        pred = lg.argmax(1)
        has = ref_teacher >= 0
        m = {"classifier": {"vs_teacher": classification_metrics(pred[has], ref_teacher[has]),
                            "vs_truth": classification_metrics(pred, ref_truth)}}
        m["classifier"]["ece"], table = ece(probs[0][has], ref_teacher[has])
        m["classifier"]["ece_temperature_scaled"], table_t = ece(probs[1][has], ref_teacher[has])
        reliability[split] = (table, table_t)
        ps_explain = ps[:cfg.evaluate.n_explain]  # generation is the slow part: its own budget
        samples = {"explainer": explain(lm, lm_tok, ps_explain, max_new_tokens=cfg.evaluate.max_new_tokens)}
        if guided_tokens:
            samples["explainer_guided"] = explain(lm, lm_tok, ps_explain, max_new_tokens=guided_tokens, guided=True)
        for key, texts in samples.items():
            em = explainer_metrics(texts, [teacher.get(p.pair_id) for p in ps_explain],
                                   [p.truth["fit_level"] for p in ps_explain])
            both = [(FIT_LEVELS[k], lv) for k, lv in zip(pred, em.pop("_levels")) if lv is not None]
            em["agrees_with_classifier"] = float(np.mean([a == b for a, b in both])) if both else float("nan")
            m[key] = em
        metrics["splits"][split] = m
        with open(os.path.join(out_dir, f"samples_{split}.jsonl"), "w") as f:
            for i, p in enumerate(ps_explain):
                f.write(json.dumps({"pair_id": p.pair_id, **{k: v[i] for k, v in samples.items()}}) + "\n")
    metrics["explainer_ms_per_token"] = generation_latency(
        lm, lm_tok, splits["test"][:8], max_new_tokens=cfg.evaluate.max_new_tokens)
    if cfg.evaluate.get("n_audit", 16) > 0:
        from lantern_jax import audit as audit_lib  # noqa: PLC0415
        metrics["audit"] = audit_lib.audit(cfg, wd, classifier=(clf, clf_tok), explainer=(lm, lm_tok))
    with open(os.path.join(out_dir, "metrics.json"), "w") as f:
        json.dump(metrics, f, indent=2)
    plots = write_plots(metrics, reliability, out_dir)
    write_report(metrics, plots, wd, out_dir)
    test = metrics["splits"]["test"]
    return {"classifier_accuracy_vs_teacher": test["classifier"]["vs_teacher"]["accuracy"],
            "classifier_accuracy_vs_truth": test["classifier"]["vs_truth"]["accuracy"],
            "explainer_structure_validity": test["explainer"]["structure_validity"],
            "report": os.path.join(out_dir, "report.md")}


def _labels(assessments) -> np.ndarray:
    return np.array([FIT_LEVELS.index(a["fit_level"]) if a and a.get("fit_level") in FIT_LEVELS else -1
                     for a in assessments])


def write_plots(metrics: dict, reliability: dict, out_dir: str) -> list[str]:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    files = []
    fig, axes = plt.subplots(1, len(reliability), figsize=(4 * len(reliability), 4), squeeze=False)
    for ax, (split, (raw, scaled)) in zip(axes[0], reliability.items()):
        ax.plot([0, 1], [0, 1], color="grey", lw=1, ls="--")
        for table, label in ((raw, "raw"), (scaled, "temperature-scaled")):
            if table:
                ax.plot([b["confidence"] for b in table], [b["accuracy"] for b in table], "o-", label=label)
        ax.set(title=f"reliability: {split}", xlabel="confidence", ylabel="accuracy vs teacher",
               xlim=(0, 1), ylim=(0, 1))
        ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    files.append(os.path.join(out_dir, "reliability.png"))
    fig.savefig(files[-1], dpi=110)
    plt.close(fig)

    fig, axes = plt.subplots(1, len(metrics["splits"]), figsize=(4 * len(metrics["splits"]), 3.6), squeeze=False)
    for ax, (split, m) in zip(axes[0], metrics["splits"].items()):
        conf = np.array(m["classifier"]["vs_teacher"]["confusion"])
        ax.imshow(conf, cmap="Blues")
        for (i, j), v in np.ndenumerate(conf):
            ax.text(j, i, str(v), ha="center", va="center")
        ax.set(title=f"classifier vs teacher: {split}", xticks=range(C), yticks=range(C),
               xticklabels=FIT_LEVELS, yticklabels=FIT_LEVELS, xlabel="predicted", ylabel="teacher")
    fig.tight_layout()
    files.append(os.path.join(out_dir, "confusion.png"))
    fig.savefig(files[-1], dpi=110)
    plt.close(fig)
    return files


def _fmt(v) -> str:
    return "n/a" if v is None or (isinstance(v, float) and np.isnan(v)) else (f"{v:.3f}" if isinstance(v, float) else str(v))


def write_report(metrics: dict, plots: list[str], wd, out_dir: str) -> None:
    rows_c, rows_e = [], []
    for split, m in metrics["splits"].items():
        c = m["classifier"]
        rows_c.append(f"| {split} | {c['vs_teacher']['n']} | {_fmt(c['vs_teacher']['accuracy'])} | "
                      f"{_fmt(c['vs_teacher']['macro_f1'])} | {_fmt(c['vs_truth']['accuracy'])} | "
                      f"{_fmt(c['vs_truth']['macro_f1'])} | {_fmt(c['ece'])} | {_fmt(c['ece_temperature_scaled'])} |")
        for decoding, key in (("raw", "explainer"), ("guided", "explainer_guided")):
            if key not in m:
                continue
            e = m[key]
            rows_e.append(f"| {split} | {decoding} | {e['n']} | {_fmt(e['structure_validity'])} | "
                          f"{_fmt(e['label_explanation_agreement'])} | {_fmt(e['requirement_coverage'])} | "
                          f"{_fmt(e['fit_accuracy_vs_teacher'])} | {_fmt(e['fit_accuracy_vs_truth'])} | "
                          f"{_fmt(e['rouge1'])} / {_fmt(e['rouge2'])} / {_fmt(e['rougeL'])} | "
                          f"{_fmt(e['agrees_with_classifier'])} |")
    stages = {}
    for name in ("data", "teacher", "seed", "inhouse", "d_t", "explainer", "classifier"):
        path = wd(name, "DONE.json")
        if os.path.exists(path):
            with open(path) as f:
                stages[name] = json.load(f)
    timing = " · ".join(f"{k} {v.get('elapsed_s', 0):.0f}s" for k, v in stages.items())
    lines = [
        "# LANTERN evaluation report", "",
        f"Workdir `{wd.root}`. Stage times: {timing}.", "",
        "References: **teacher** = the black-box teacher's labels on the same pairs; **truth** = the "
        "generator's latent fit level. `test` shares occupations and companies with training; the "
        "held-out splits share neither.", "",
        "## Fit classifier", "",
        "| split | n | acc vs teacher | macro-F1 vs teacher | acc vs truth | macro-F1 vs truth | ECE | ECE (T-scaled) |",
        "|---|---|---|---|---|---|---|---|", *rows_c, "",
        f"Temperature fitted on dev: {metrics['classifier_temperature']:.3f}. "
        f"Latency: {metrics['classifier_ms_per_pair']:.2f} ms per pair (batch 32, CPU).", "",
        "![reliability](reliability.png)", "", "![confusion](confusion.png)", "",
        "## Explainer", "",
        "| split | decoding | n | structure valid | label/explanation agree | requirement coverage | "
        "fit acc vs teacher | fit acc vs truth | ROUGE-1 / 2 / L vs teacher | agrees with classifier |",
        "|---|---|---|---|---|---|---|---|---|---|", *rows_e, "",
        "`raw`: the student's greedy output as it stands (structure validity measures whether it learned "
        "the format). `guided`: decoded under the Assessment schema (`lantern_jax/guided.py`): valid by "
        "construction; the fit level is the student's own pick among low / medium / high and the text "
        "fields its own words, so agreement, coverage and ROUGE are measurable even when raw outputs "
        "don't parse.", "",
        f"Generation latency: {metrics['explainer_ms_per_token']:.2f} ms per token (batch 8, greedy, CPU). "
        "Samples: `samples_<split>.jsonl`.", "",
        "## What to look at", "",
        "- Classifier accuracy against the teacher is what distillation optimises; against the latent "
        "truth it also shows the teacher's own errors.",
        "- Held-out occupations / companies vs `test`: how much of the fit judgement generalises.",
        "- ECE before and after temperature scaling: whether the soft labels gave calibrated scores.",
        "- Explainer structure validity (raw) and label/explanation agreement: whether the small "
        "decoder learned the product format; guided rows: its fit-level judgement and words once the "
        "format is enforced; ROUGE against the teacher: how close its explanations are.",
    ]
    if "seed" in stages:
        lines += ["", "## Quality gates on the teacher's outputs", "", "```",
                  json.dumps(stages["seed"].get("gates", {}), indent=1), "```"]
    if "audit" in metrics:
        from lantern_jax.audit import report_section  # noqa: PLC0415
        lines += ["", report_section(metrics["audit"])]
    with open(os.path.join(out_dir, "report.md"), "w") as f:
        f.write("\n".join(lines) + "\n")


def main(argv=None) -> int:
    from lantern_jax import config as config_lib
    from lantern_jax.pipeline import Workdir

    ap = argparse.ArgumentParser(description="evaluate a pipeline workdir")
    ap.add_argument("--workdir", required=True)
    ap.add_argument("--config", default="configs/demo.py")
    args, rest = ap.parse_known_args(argv)
    cfg = config_lib.load_config(args.config, rest)
    print(json.dumps(run(cfg, Workdir(args.workdir)), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
