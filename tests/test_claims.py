"""Bootstrap intervals and claim verdicts on synthetic per-pair records with known answers."""
import numpy as np

from lantern_jax import claims, scoring


def classifier_cell(correct_rate, n=200, seeds=3, seed=0):
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(seeds):
        ref = rng.integers(0, 3, n)
        right = rng.random(n) < correct_rate
        pred = np.where(right, ref, (ref + 1) % 3)
        probs = np.full((n, 3), 0.1)
        probs[np.arange(n), pred] = 0.8
        out.append({"pred": pred.tolist(), "ref": ref.tolist(), "probs": probs.tolist()})
    return out


def test_interval_covers_the_mean_and_narrows_with_more_pairs():
    rng = np.random.default_rng(0)
    for n in (50, 800):
        x = rng.random(n) < 0.7
        lo, hi = scoring.bootstrap_interval(lambda p, s: x[p].mean(), n, reps=3000)
        assert lo < x.mean() < hi
        width = hi - lo
        expected = 2 * 1.96 * np.sqrt(x.mean() * (1 - x.mean()) / n)  # the normal approximation
        assert abs(width - expected) < 0.15 * expected, (n, width, expected)


def test_cell_interval_of_accuracy():
    cell = classifier_cell(0.8)
    lo, hi = claims.interval(cell, "accuracy_vs_teacher", reps=300)
    assert lo < 0.8 < hi and hi - lo < 0.15


def test_verdicts_follow_the_paired_intervals():
    better, same, worse = classifier_cell(0.85, seed=1), classifier_cell(0.6, seed=1), classifier_cell(0.4, seed=1)
    cells = {("classifier", "soft"): better, ("classifier", "hard_only"): same,
             ("compression", "on"): worse, ("compression", "off"): same,
             ("classifier", "decoder_last_token"): same, ("classifier", "minilm_mean"): same}
    verdicts = {v["claim"]: v for v in claims.assess_claims(cells, reps=300)}
    assert verdicts["soft labels beat hard labels"]["verdict"] == "reproduced"
    assert verdicts["compressing postings to their requirements keeps or raises accuracy"]["verdict"] == "not reproduced"
    assert verdicts["a decoder with last-token pooling beats the encoder"]["verdict"] == "inconclusive"
    lo, hi = verdicts["soft labels beat hard labels"]["differences"]["hard_only"]
    assert 0.1 < lo < 0.25 < hi < 0.4  # about 0.85 - 0.6
    assert not any(v["group"] == "divergence" for v in verdicts.values())  # cells missing: not assessed


def test_explainer_metrics_ignore_unparsed_outputs():
    per_pair = [{"valid": [1, 1, 0, 1], "rougeL": [0.5, 0.7, float("nan"), 0.3],
                 "fit_vs_teacher": [1, 0, float("nan"), 1]}]
    everything = np.arange(4)
    assert claims.METRICS["structure_validity"](per_pair, everything, np.array([0])) == 0.75
    assert np.isclose(claims.METRICS["rougeL"](per_pair, everything, np.array([0])), 0.5)
    assert np.isclose(claims.METRICS["fit_accuracy_vs_teacher"](per_pair, everything, np.array([0])), 2 / 3)
