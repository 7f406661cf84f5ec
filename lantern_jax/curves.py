"""Learning curves: each student's dev metric against its training step.

The losses say little about what the paper measures: a decoder's cross-entropy falls long before
its outputs parse, and parse before they judge. So while a decoder trains, `GenerationProbe`
generates for a fixed set of dev pairs and scores what it wrote the way the evaluation does
(structure validity, fit accuracy and ROUGE-L against the black-box teacher). The classifier's
curve is its own eval metric (accuracy against the teacher's dev labels). `read` collects every
curve of a run folder from the students' metrics.jsonl, for the report's plot and its
quality-vs-budget table.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from lantern_jax import inference, scoring, storage, train_log
from lantern_jax.data.schema import Pair

PROBE = "dev_generation"  # the metrics.jsonl split of the generation probes
# student (pipeline stage) -> (metrics.jsonl split, its metric keys shown)
CURVES = {
    "inhouse": (PROBE, ("structure_validity", "fit_accuracy_vs_teacher", "rougeL")),
    "explainer": (PROBE, ("structure_validity", "fit_accuracy_vs_teacher", "rougeL")),
    "classifier": ("eval", ("accuracy",)),
}


@dataclasses.dataclass
class GenerationProbe:
    """A `train.Hook`: greedy generations for `pairs`, scored against the teacher's assessments."""

    pairs: Sequence[Pair]
    references: Sequence[dict | None]  # the black-box teacher's assessment of each pair
    max_new_tokens: int
    every: int
    name: str = PROBE

    def __call__(self, step: int, model, tokenizer) -> dict[str, float]:
        texts = inference.explain(model, tokenizer, list(self.pairs), max_new_tokens=self.max_new_tokens,
                                  desc=f"{self.name} @ {step}")
        m = scoring.explainer_metrics(texts, self.references, [p.truth["fit_level"] for p in self.pairs])
        return {k: v for k, v in m.items() if not k.startswith("_")}


def read(wd) -> dict[str, list[dict]]:
    """student -> [{"step": s, metric: value, ...}] for every student of run folder `wd` that logged
    its curve (missing students are left out)."""
    out = {}
    for student, (split, keys) in CURVES.items():
        if not (storage.remote(wd(student)) / "metrics.jsonl").exists():
            continue
        rows = train_log.read_metrics(wd(student)).get(split, [])
        if rows:
            out[student] = [{"step": r["step"], **{k: r[k] for k in keys if k in r}} for r in rows]
    return out
