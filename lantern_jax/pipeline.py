"""All LANTERN stages end to end, each writing into the run folder:

    python -m lantern_jax.pipeline --config configs/demo.py --workdir runs/demo [--config.stages=...]

  data        D_base from the taxonomy snapshot (train / dev / test / held-out splits)
  blackbox    the black-box teacher (simulated expert behind a real OpenAI-compatible server on
              loopback, reached through the real client) labels the seed subset and the eval splits
  seed        quality gates, review export / import -> D_seed; the domain tokenizer
  inhouse     in-house teacher SFT on D_seed
  d_t         the in-house teacher labels D_base -> D_t (top-k per token) and D_cls (soft labels)
  explainer   explainer KD on D_t
  classifier  classifier KD on D_cls
  evaluate    metrics, plots and report.md

Stages run once (`lantern_jax.stages`): a finished stage is skipped on rerun, an interrupted one
resumes (labelling appends, training restores its last checkpoint).
"""
from __future__ import annotations

import contextlib
import json
import os
import sys
from collections.abc import Callable, Sequence

import ml_collections

from lantern_jax import blackbox, cli, curves, evaluate, stages
from lantern_jax import train as train_lib
from lantern_jax.config import ConfigError
from lantern_jax.data import datasets, pointers, prompts, records, synth, views
from lantern_jax.data.rundir import EVAL_SPLITS, RunDir
from lantern_jax.data.schema import FIT_LEVELS, DataError
from lantern_jax.data.tokenizer import train_tokenizer
from lantern_jax.models import sources
from lantern_jax.teacher import hitl, inhouse
from lantern_jax.teacher.label import label_pairs

STAGES = ("data", "blackbox", "seed", "inhouse", "d_t", "explainer", "classifier", "evaluate")


def stage_data(cfg, wd: RunDir) -> dict:
    splits = synth.make_splits(cfg.data.n_pairs, seed=cfg.seed, fractions=dict(cfg.data.fractions))
    for split, pairs in splits.items():
        synth.write_pairs(wd.pairs_path(split), pairs)
    datasets.write_dataset("d_base", splits, wd.tfds, overwrite=True)
    report = prompts.measure_compression(splits["train"][:200])
    return {"pairs": {s: len(p) for s, p in splits.items()},
            "posting_token_reduction": report.job_reduction,
            "prompt_token_reduction": report.prompt_reduction}


def blackbox_pairs(cfg, wd: RunDir) -> list:
    """The black-box teacher's share: the first train pairs (the seed subset, and the classifier's
    labels: simulated labels cost nothing here, so D_cls may be many times D_seed), dev
    (calibration, learning curves) and the evaluation splits (the reference for the students)."""
    train = wd.pairs("train")[:max(cfg.blackbox.n_seed, cfg.blackbox.n_cls)]
    return train + [p for s in ("dev", *EVAL_SPLITS) for p in wd.pairs(s)[:cfg.evaluate.n_per_split]]


def stage_blackbox(cfg, wd: RunDir) -> dict:
    with blackbox.teacher(cfg, list(wd.all_pairs().values()), cache_dir=wd("blackbox", "cache")) as teacher:
        summary = label_pairs(blackbox_pairs(cfg, wd), teacher, wd.blackbox_records_path, progress=False)
    return {"labeled": summary.done + summary.cached, "failed": summary.failed}


def stage_seed(cfg, wd: RunDir) -> dict:
    pairs = wd.all_pairs()
    seed_ids = {p.pair_id for p in wd.pairs("train")[:cfg.blackbox.n_seed]}
    teacher_records = [r for r in wd.blackbox_records() if r["pair_id"] in seed_ids]
    results, counts = hitl.run_gates(teacher_records, pairs)
    print(hitl.format_counts(counts), flush=True)
    jsonl, csv_path = hitl.export_review(teacher_records, results, wd("seed", "review"))
    if cfg.review.decisions:  # a person's decisions: accept / reject / edit per row
        decisions = hitl.import_review(cfg.review.decisions)
    else:  # no reviewer in the embedded default: the gates' verdicts stand in for one
        decisions = [hitl.Decision(r.pair_id, "accept" if r.passed else "reject", None, "gates")
                     for r in results]
    seed = hitl.build_seed(teacher_records, decisions)
    hitl.write_seed(wd("seed", "seed.jsonl"), seed)
    entries = hitl.d_seed_records(seed, pairs, messages=pointers.inhouse_messages, target=pointers.encode)
    n_dev = max(1, len(entries) // 10)
    datasets.write_dataset("d_seed", {"train": entries[n_dev:], "dev": entries[:n_dev]},
                           wd.tfds, overwrite=True)
    texts = [json.loads(e["prompt"])[0]["content"] + "\n" + e["target"] for e in entries]
    texts += [prompts.render_member(p.member) for p in wd.pairs("train")]
    train_tokenizer(texts, cfg.tokenizer.vocab_size, pointers.TOKENS).save_pretrained(wd.tokenizer)
    return {"gates": counts, "accepted": len(seed), "review_files": [jsonl, csv_path]}


def resolve_train_config(cfg: ml_collections.ConfigDict, wd: RunDir) -> ml_collections.ConfigDict:
    """A copy of a training section reading the workdir's datasets and domain tokenizer."""
    run = ml_collections.ConfigDict(cfg.to_dict())
    run.data.dir = wd.tfds
    if run.model.source == "init" or run.model.tokenizer:
        run.model.tokenizer = run.model.tokenizer or wd.tokenizer
    if run.model.tokenizer == "domain":
        run.model.tokenizer = wd.tokenizer
    kind, _, stage = run.model.source.partition(":")
    if kind == "stage" and os.path.isdir(wd.export(stage)):  # an earlier stage's model, once it exists
        run.model.source = f"hf:{wd.export(stage)}"
    return run


def _train(cfg: ml_collections.ConfigDict, wd: RunDir, name: str, hooks=()) -> dict:
    return dict(train_lib.train(resolve_train_config(cfg, wd), wd(name), hooks=hooks))


def generation_probe(cfg, wd: RunDir, section: ml_collections.ConfigDict) -> list[curves.GenerationProbe]:
    """The learning-curve probe of a decoder stage: greedy outputs for the first
    `evaluate.curve_pairs` dev pairs at every eval step (none when 0)."""
    n = cfg.evaluate.curve_pairs
    if not n:
        return []
    pairs = wd.pairs("dev")[:n]
    teacher = wd.blackbox_assessments()
    return [curves.GenerationProbe(pairs, [teacher.get(p.pair_id) for p in pairs],
                                   max_new_tokens=cfg.evaluate.max_new_tokens, every=section.train.eval_every)]


def stage_inhouse(cfg, wd: RunDir) -> dict:
    return _train(cfg.inhouse, wd, "inhouse", generation_probe(cfg, wd, cfg.inhouse))


def stage_d_t(cfg, wd: RunDir) -> dict:
    model, tokenizer = sources.load(wd.export("inhouse"))
    k = cfg.d_t.topk
    out = {}
    for split in ("train", "dev"):
        pairs = wd.pairs(split)[:cfg.d_t.n_train if split == "train" else cfg.d_t.n_dev]
        path = wd("d_t", f"{split}.jsonl")
        out[split] = inhouse.produce(model, tokenizer, pairs, path, topk=k, batch_size=cfg.d_t.batch_size,
                                     max_new_tokens=cfg.d_t.max_new_tokens)
    written = {s: records.read_jsonl(wd("d_t", f"{s}.jsonl")) for s in ("train", "dev")}
    usable = {s: [r for r in rs if r["token_ids"]] for s, rs in written.items()}
    datasets.write_dataset("d_t", {s: [inhouse.d_t_record(r, k) for r in rs] for s, rs in usable.items()},
                           wd.tfds, overwrite=True)
    by_source = {"blackbox": {r["pair_id"]: r for r in wd.blackbox_records()}}
    cls = {}
    for split in ("train", "dev"):  # every pair either teacher labeled
        by_source["inhouse"] = {r["pair_id"]: r for r in usable[split]}
        examples = (cls_record(p, [(src, by_source[src].get(p.pair_id)) for src in cfg.d_cls.label_priority])
                    for p in wd.pairs(split))
        cls[split] = [c for c in examples if c]
    for split, rs in cls.items():
        if not rs:
            raise DataError(f"d_cls {split}: no teacher label readable for any pair (in-house parse rate "
                            f"{out[split]['parse_rate']:.0%}); train the in-house teacher longer")
    datasets.write_dataset("d_cls", cls, wd.tfds, overwrite=True)
    label_sources = {s: {src: sum(c["source"] == src for c in rs) for src in ("inhouse", "blackbox")}
               for s, rs in cls.items()}
    return {**out, "d_cls_label_sources": label_sources}


def cls_record(pair, labelled: Sequence[tuple[str, dict | None]]) -> dict | None:
    """A D_cls example from the first of `labelled` ((teacher, its record of the pair) in priority
    order) that gives a fit level or label probabilities: the black-box teacher's record carries them
    as `fit_probs`, the in-house teacher's as `label_probs`. None when no teacher labelled the pair."""
    for source, r in labelled:
        if not r:
            continue
        probs = r.get("fit_probs" if source == "blackbox" else "label_probs")
        if isinstance(probs, dict):
            probs = [probs.get(lvl, 0.0) for lvl in FIT_LEVELS]
        level = (r.get("assessment") or {}).get("fit_level")
        if level not in FIT_LEVELS and probs is None:
            continue
        probs = probs or [float(lvl == level) for lvl in FIT_LEVELS]
        label = level if level in FIT_LEVELS else FIT_LEVELS[max(range(3), key=probs.__getitem__)]
        return {"pair_id": pair.pair_id, "text": views.classifier_text(pair), "label": label,
                "soft_label": [float(p) for p in probs], "source": source}
    return None


def stage_explainer(cfg, wd: RunDir) -> dict:
    return _train(cfg.explainer, wd, "explainer", generation_probe(cfg, wd, cfg.explainer))


def stage_classifier(cfg, wd: RunDir) -> dict:
    return _train(cfg.classifier, wd, "classifier")


def stage_evaluate(cfg, wd: RunDir) -> dict:
    return evaluate.run(cfg, wd)


RUNNERS: dict[str, Callable[[ml_collections.ConfigDict, RunDir], dict]] = {
    "data": stage_data, "blackbox": stage_blackbox, "seed": stage_seed, "inhouse": stage_inhouse,
    "d_t": stage_d_t, "explainer": stage_explainer, "classifier": stage_classifier,
    "evaluate": stage_evaluate}


def selected(cfg) -> list[str]:
    names = [s.strip() for s in cfg.stages.split(",")] if cfg.stages != "all" else list(STAGES)
    unknown = [s for s in names if s not in STAGES]
    if unknown:
        raise ConfigError(f"config key 'stages': unknown stage(s) {unknown}; stages: {', '.join(STAGES)}")
    return names


TRAINED = ("inhouse", "explainer", "classifier")  # stages that train the config section of their name


def check_config(cfg, wd: RunDir, names: Sequence[str]) -> None:
    """Every training section the run will use, checked before the first stage starts: a mistyped
    key in the classifier's section is one line now, not after the stages before it have run."""
    for name in names:
        if name in TRAINED:
            try:
                train_lib.check_config(resolve_train_config(cfg[name], wd),
                                       earlier_stages=STAGES[:STAGES.index(name)])
            except ConfigError as e:
                raise ConfigError(f"{name}: {e}") from None


def run(cfg: ml_collections.ConfigDict, workdir: str) -> dict:
    wd = RunDir(workdir)
    names = selected(cfg)
    check_config(cfg, wd, names)
    summaries, total = {}, 0.0
    for i, name in enumerate(names, 1):
        outcome = stages.run_once(f"[{i}/{len(names)}] {name}", wd(name), lambda: RUNNERS[name](cfg, wd))
        summaries[name] = outcome.summary
        total += 0.0 if outcome.skipped else outcome.summary["elapsed_s"]
    print(f"pipeline: {len(names)} stages in {total:.0f}s -> {wd.root}", flush=True)
    return summaries


def main(argv=None) -> int:
    return cli.main(run, argv, description="LANTERN end to end", config="configs/demo.py", workdir="runs/demo")


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(main())
