"""How the students are scored: classification accuracy / macro-F1 / confusion, calibration (ECE,
temperature scaling), and the explainer's structure validity, fit accuracy, coverage and ROUGE."""
from __future__ import annotations

import re

import jax
import numpy as np

from lantern_jax.data.schema import FIT_LEVELS
from lantern_jax.teacher.parse import TeacherOutputError, parse_assessment

C = len(FIT_LEVELS)


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


def softmax(logits: np.ndarray) -> np.ndarray:
    return np.asarray(jax.nn.softmax(np.asarray(logits, np.float32), axis=-1))


def reference_labels(assessments) -> np.ndarray:
    """Class indices of the reference assessments' fit levels; -1 where there is none."""
    return np.array([FIT_LEVELS.index(a["fit_level"]) if a and a.get("fit_level") in FIT_LEVELS else -1
                     for a in assessments])


def _words(text: str) -> set[str]:
    return set(re.findall(r"[a-z0-9+#]+", text.lower()))


def explainer_metrics(texts, teacher_assessments, truth_levels) -> dict:
    """Structure validity, and over the outputs that parse: label / explanation agreement, fit accuracy
    against the teacher and the latent truth, requirement coverage and ROUGE against the teacher's
    explanation. `_levels` holds each output's fit level (None: did not parse) and `_per_pair` the
    per-pair values the bootstrap resamples (NaN where an output did not parse or has no reference)."""
    from rouge_score import rouge_scorer  # noqa: PLC0415  (nltk-backed, slow to import)
    scorer = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"], use_stemmer=True)
    rouge = {k: [] for k in ("rouge1", "rouge2", "rougeL")}
    agree, coverage, vs_truth, levels = [], [], [], []
    per_pair = {"valid": [], "rougeL": [], "fit_vs_teacher": []}
    for text, ref, truth in zip(texts, teacher_assessments, truth_levels):
        try:
            a = parse_assessment(text, check_opening_sentence=False)
        except TeacherOutputError:
            a = None
        levels.append(a.fit_level if a else None)
        per_pair["valid"].append(float(a is not None))
        if a is None or ref is None:
            per_pair["rougeL"].append(float("nan"))
            per_pair["fit_vs_teacher"].append(float("nan"))
        if a is None:
            continue
        agree.append(a.explanation.startswith(f"You are a {a.fit_level} fit"))
        vs_truth.append(a.fit_level == truth)
        if ref is None:
            continue
        per_pair["fit_vs_teacher"].append(float(a.fit_level == ref["fit_level"]))
        for k, s in scorer.score(ref["explanation"], a.explanation).items():
            rouge[k].append(s.fmeasure)
        per_pair["rougeL"].append(rouge["rougeL"][-1])
        mine = [_words(r.requirement) for r in a.requirements]
        hits = [any(len(w & m) >= 0.6 * max(len(w), 1) for m in mine)
                for w in (_words(r["requirement"]) for r in ref["requirements"])]
        coverage.append(float(np.mean(hits)) if hits else 1.0)
    n = len(texts)
    mean = lambda xs: float(np.mean(xs)) if len(xs) else float("nan")  # noqa: E731
    fit = [x for x in per_pair["fit_vs_teacher"] if np.isfinite(x)]
    return {"n": n, "structure_validity": mean(per_pair["valid"]),
            "label_explanation_agreement": mean(agree), "requirement_coverage": mean(coverage),
            "fit_accuracy_vs_teacher": mean(fit), "fit_accuracy_vs_truth": mean(vs_truth),
            **{k: mean(v) for k, v in rouge.items()}, "_levels": levels, "_per_pair": per_pair}


# --- uncertainty ----------------------------------------------------------------------------------

def bootstrap_interval(statistic, n_items: int, n_seeds: int = 1, *, reps: int = 2000, level: float = 0.95,
                       seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap interval of `statistic(items, seeds)`, resampling the evaluation pairs and
    the training seeds (both with replacement). Pass one statistic of two cells (e.g. their
    difference) to get a paired interval: both see the same resampled pairs and seeds."""
    rng = np.random.default_rng(seed)
    values = [statistic(rng.integers(0, n_items, n_items), rng.integers(0, n_seeds, n_seeds))
              for _ in range(reps)]
    values = np.asarray([v for v in values if np.isfinite(v)])
    if not len(values):
        return float("nan"), float("nan")
    tail = (1 - level) / 2 * 100
    return float(np.percentile(values, tail)), float(np.percentile(values, 100 - tail))
