"""The paper's claims, tested on the ablation cells with paired bootstrap intervals.

Every cell is scored on the same test pairs, and seed k of one cell starts from the same
initialisation and data order as seed k of another, so differences between cells are paired: a
bootstrap resample draws pairs and seeds once and scores both cells on that draw. A claim "A beats
B on metric m" is *reproduced* when the 95 % interval of m(A) − m(B) lies above 0 (against every B
it names), *not reproduced* when an interval lies below 0, and *inconclusive* otherwise.

A cell's per-pair record (one per seed) holds what its metrics are computed from:
classifiers `pred`, `ref` (-1: no teacher label) and `probs`; explainers `valid` and, where the
output parsed and the teacher has a reference, `rougeL` and `fit_vs_teacher` (NaN otherwise, so
those two are means over parsed outputs, as in the evaluation report).
"""
from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence

import numpy as np

from lantern_jax import scoring

PerPair = Mapping[str, Sequence]  # one seed's per-pair record of a cell


def _pool(per_seed: Sequence[PerPair], pairs: np.ndarray, seeds: np.ndarray, key: str) -> np.ndarray:
    return np.concatenate([np.asarray(per_seed[s][key], dtype=float)[pairs] for s in seeds])


def _nanmean(x: np.ndarray) -> float:
    x = x[np.isfinite(x)]
    return float(x.mean()) if len(x) else float("nan")


def _classifier(metric: str) -> Callable:
    def value(per_seed, pairs, seeds):
        pred = _pool(per_seed, pairs, seeds, "pred").astype(int)
        ref = _pool(per_seed, pairs, seeds, "ref").astype(int)
        has = ref >= 0
        if metric == "ece":
            probs = np.concatenate([np.asarray(per_seed[s]["probs"], float)[pairs] for s in seeds])
            return scoring.ece(probs[has], ref[has])[0]
        return scoring.classification_metrics(pred[has], ref[has])[metric]
    return value


METRICS: dict[str, Callable[[Sequence[PerPair], np.ndarray, np.ndarray], float]] = {
    "accuracy_vs_teacher": _classifier("accuracy"),
    "macro_f1_vs_teacher": _classifier("macro_f1"),
    "ece": _classifier("ece"),
    "structure_validity": lambda d, p, s: _nanmean(_pool(d, p, s, "valid")),
    "rougeL": lambda d, p, s: _nanmean(_pool(d, p, s, "rougeL")),
    "fit_accuracy_vs_teacher": lambda d, p, s: _nanmean(_pool(d, p, s, "fit_vs_teacher")),
}


def interval(per_seed: Sequence[PerPair], metric: str, **kw) -> tuple[float, float]:
    """95 % bootstrap interval of one cell's metric, over its pairs and seeds."""
    n = len(next(iter(per_seed[0].values())))
    return scoring.bootstrap_interval(lambda p, s: METRICS[metric](per_seed, p, s), n, len(per_seed), **kw)


def paired_difference(a: Sequence[PerPair], b: Sequence[PerPair], metric: str, **kw) -> tuple[float, float]:
    """95 % paired bootstrap interval of metric(a) − metric(b)."""
    n, seeds = len(next(iter(a[0].values()))), min(len(a), len(b))
    fn = METRICS[metric]
    return scoring.bootstrap_interval(lambda p, s: fn(a, p, s) - fn(b, p, s), n, seeds, **kw)


@dataclasses.dataclass(frozen=True)
class Claim:
    text: str
    group: str
    favoured: str  # the cell the paper finds better
    others: tuple[str, ...]
    metric: str


# The paper's claims that the ablation groups test (cells as named in ablations.cells).
CLAIMS = (
    Claim("TVD gives the explainer its best ROUGE-L", "divergence", "tvd",
          ("forward_kl", "reverse_kl", "jsd", "skew_kl"), "rougeL"),
    Claim("KD on top of the data beats the data alone (ROUGE-L)", "kd", "data+kd", ("data_only",), "rougeL"),
    Claim("KD on top of the data beats the data alone (fit accuracy)", "kd", "data+kd", ("data_only",),
          "fit_accuracy_vs_teacher"),
    Claim("a two-stage chain (in-house → mid → small) beats one stage", "stages", "two_stage", ("single",), "rougeL"),
    Claim("soft labels beat hard labels", "classifier", "soft", ("hard_only",), "accuracy_vs_teacher"),
    Claim("a decoder with last-token pooling beats the encoder", "classifier", "decoder_last_token",
          ("minilm_mean",), "accuracy_vs_teacher"),
    Claim("compressing postings to their requirements keeps or raises accuracy", "compression", "on", ("off",),
          "accuracy_vs_teacher"),
)


def verdict(intervals: Sequence[tuple[float, float]]) -> str:
    if not intervals or any(not np.isfinite(lo) or not np.isfinite(hi) for lo, hi in intervals):
        return "inconclusive"
    if all(lo > 0 for lo, _ in intervals):
        return "reproduced"
    if any(hi < 0 for _, hi in intervals):
        return "not reproduced"
    return "inconclusive"


def assess_claims(cells: Mapping[tuple[str, str], Sequence[PerPair]], **kw) -> list[dict]:
    """Every claim whose cells were all run: the paired intervals and the verdict."""
    out = []
    for claim in CLAIMS:
        names = (claim.favoured, *claim.others)
        if not all((claim.group, c) in cells for c in names):
            continue
        favoured = cells[(claim.group, claim.favoured)]
        diffs = {o: paired_difference(favoured, cells[(claim.group, o)], claim.metric, **kw) for o in claim.others}
        out.append({"claim": claim.text, "group": claim.group, "metric": claim.metric, "favoured": claim.favoured,
                    "differences": {o: list(ci) for o, ci in diffs.items()}, "verdict": verdict(list(diffs.values()))})
    return out
