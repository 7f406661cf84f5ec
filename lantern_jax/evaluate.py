"""Evaluation of both students: metrics, calibration, ROUGE, structure, latency -> report.

    python -m lantern_jax.evaluate --config configs/demo.py --workdir runs/demo

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

import json
import os
import sys

import jax
import numpy as np

from lantern_jax import audit, cli, curves, guided, inference, report, scoring
from lantern_jax.config import ConfigError
from lantern_jax.data import pointers, records, views
from lantern_jax.data.rundir import EVAL_SPLITS, RunDir
from lantern_jax.data.schema import FIT_LEVELS
from lantern_jax.models import sources


def run(cfg, wd: RunDir) -> dict:
    """Evaluates the pipeline's students in the run folder `wd`; writes <wd>/evaluate."""
    out_dir = wd("evaluate")
    os.makedirs(out_dir, exist_ok=True)
    teacher = wd.blackbox_assessments()
    n = cfg.evaluate.n_per_split
    splits = {s: wd.pairs(s)[:n] for s in ("dev", *EVAL_SPLITS)}
    metrics: dict = {"preset": cfg.get("preset", "custom"), "splits": {}}

    lm, lm_tok = sources.load(wd.export("explainer"))
    guided_tokens = cfg.evaluate.get("guided_max_new_tokens", 0)  # 0: raw outputs only
    if guided_tokens and (problem := guided.budget_problem(lm_tok, lm.cfg.vocab_size, guided_tokens)):
        raise ConfigError(f"config key 'evaluate.guided_max_new_tokens': {problem}")  # before any scoring

    clf, clf_tok = sources.load(wd.export("classifier"))
    max_len = cfg.classifier.data.max_length
    logits = {s: inference.classify(clf, clf_tok, [views.classifier_text(p) for p in ps], max_length=max_len,
                                    desc=f"evaluate {s}: classifier") for s, ps in splits.items()}
    dev_ref = scoring.reference_labels([teacher.get(p.pair_id) for p in splits["dev"]])
    known = dev_ref >= 0
    temperature = scoring.fit_temperature(logits["dev"][0][known], dev_ref[known]) if known.any() else 1.0
    metrics["classifier_temperature"] = temperature
    metrics["classifier_ms_per_pair"] = float(np.mean([v[1] for v in logits.values()]))

    reliability = {}
    for split in EVAL_SPLITS:
        ps = splits[split]
        ref_teacher = scoring.reference_labels([teacher.get(p.pair_id) for p in ps])
        ref_truth = np.array([FIT_LEVELS.index(p.truth["fit_level"]) for p in ps])
        lg = logits[split][0]
        probs = np.asarray(jax.nn.softmax(lg)), np.asarray(jax.nn.softmax(lg / temperature))
        pred = lg.argmax(1)
        has = ref_teacher >= 0
        m = {"classifier": {"vs_teacher": scoring.classification_metrics(pred[has], ref_teacher[has]),
                            "vs_truth": scoring.classification_metrics(pred, ref_truth)}}
        m["classifier"]["ece"], table = scoring.ece(probs[0][has], ref_teacher[has])
        m["classifier"]["ece_temperature_scaled"], table_t = scoring.ece(probs[1][has], ref_teacher[has])
        reliability[split] = (table, table_t)
        ps_explain = ps[:cfg.evaluate.n_explain]  # generation is the slow part: its own budget
        samples = {"explainer": inference.explain(lm, lm_tok, ps_explain, max_new_tokens=cfg.evaluate.max_new_tokens,
                                                  desc=f"evaluate {split}: explainer")}
        if guided_tokens:
            samples["explainer_guided"] = inference.explain(lm, lm_tok, ps_explain, max_new_tokens=guided_tokens,
                                                            guided=True, desc=f"evaluate {split}: explainer (guided)")
        for key, texts in samples.items():
            em = scoring.explainer_metrics(texts, [teacher.get(p.pair_id) for p in ps_explain],
                                           [p.truth["fit_level"] for p in ps_explain])
            em.pop("_per_pair")
            both = [(FIT_LEVELS[k], lv) for k, lv in zip(pred, em.pop("_levels")) if lv is not None]
            em["agrees_with_classifier"] = float(np.mean([a == b for a, b in both])) if both else float("nan")
            m[key] = em
        metrics["splits"][split] = m
        with open(os.path.join(out_dir, f"samples_{split}.jsonl"), "w") as f:
            for i, p in enumerate(ps_explain):
                f.write(json.dumps({"pair_id": p.pair_id, **{k: v[i] for k, v in samples.items()}}) + "\n")
    metrics["inhouse"] = inhouse_metrics(wd, teacher)
    metrics["curves"] = curves.read(wd)
    metrics["explainer_ms_per_token"] = inference.generation_latency(
        lm, lm_tok, splits["test"][:8], max_new_tokens=cfg.evaluate.max_new_tokens)
    if cfg.evaluate.get("n_audit", 16) > 0:
        metrics["audit"] = audit.audit(cfg, wd, classifier=(clf, clf_tok), explainer=(lm, lm_tok))
    with open(os.path.join(out_dir, "metrics.json"), "w") as f:
        json.dump(metrics, f, indent=2)
    plots = report.write_plots(metrics, reliability, out_dir)
    report.write_report(metrics, plots, wd, out_dir)
    test = metrics["splits"]["test"]
    return {"classifier_accuracy_vs_teacher": test["classifier"]["vs_teacher"]["accuracy"],
            "classifier_accuracy_vs_truth": test["classifier"]["vs_truth"]["accuracy"],
            "explainer_structure_validity": test["explainer"]["structure_validity"],
            "report": os.path.join(out_dir, "report.md")}


def inhouse_metrics(wd: RunDir, teacher: dict) -> dict:
    """The in-house teacher on dev, from what it wrote for D_t (its unguided greedy outputs): parse
    rate, fit accuracy and ROUGE-L against the black-box teacher."""
    written = records.read_jsonl(wd("d_t", "dev.jsonl"), missing_ok=True)
    pairs = wd.all_pairs()
    texts = [pointers.expand(r["generated_text"], pairs[r["pair_id"]]) for r in written]
    m = scoring.explainer_metrics(texts, [teacher.get(r["pair_id"]) for r in written],
                                  [pairs[r["pair_id"]].truth["fit_level"] for r in written])
    m.pop("_levels"), m.pop("_per_pair")
    return {"parse_rate": m.pop("structure_validity"), **m}


def main(argv=None) -> int:
    return cli.main(lambda cfg, workdir: print(json.dumps(run(cfg, RunDir(workdir)), indent=2)), argv,
                    description="evaluate a pipeline run folder", config="configs/demo.py")


if __name__ == "__main__":
    sys.exit(main())
