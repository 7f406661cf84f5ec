"""The quality each demo preset is built to reach, checked against a run's metrics.json:

    python -m lantern_jax.targets runs/demo/evaluate/metrics.json

Prints one row per target (measured, goal, met) and exits 1 if any falls short. The report shows
the same table, so a run says itself which targets it reached and by how much it missed the rest.
"""
from __future__ import annotations

import json
import math
import sys
from typing import Any

# metric path in metrics.json -> goal (higher is better), per preset
GOALS = {
    "default": {  # 2 CPU cores, make demo in <= 20 min
        "splits.test.classifier.vs_teacher.accuracy": 0.70,
        "splits.test.classifier.vs_truth.accuracy": 0.75,
        "inhouse.parse_rate": 0.90,
        "inhouse.fit_accuracy_vs_teacher": 0.65,
        "splits.test.explainer.structure_validity": 0.90,
        "splits.test.explainer.rougeL": 0.35,
        "splits.test.explainer.fit_accuracy_vs_teacher": 0.60,
    },
    "accelerator": {  # one H200, <= 15 min
        "splits.test.classifier.vs_teacher.accuracy": 0.78,
        "splits.test.classifier.vs_truth.accuracy": 0.85,
        "inhouse.parse_rate": 0.98,
        "inhouse.fit_accuracy_vs_teacher": 0.75,
        "splits.test.explainer.structure_validity": 0.98,
        "splits.test.explainer.rougeL": 0.50,
        "splits.test.explainer.fit_accuracy_vs_teacher": 0.70,
    },
    "micro": {  # CI: numbers that fail if learning breaks (chance is 0.33)
        "splits.test.classifier.vs_teacher.accuracy": 0.40,
        "inhouse.parse_rate": 0.01,
    },
}
# sample sizes the figures need to mean something, per preset
MIN_N = {"default": {"splits.test.classifier.vs_teacher.n": 300, "splits.test.explainer.n": 48},
         "accelerator": {"splits.test.classifier.vs_teacher.n": 300, "splits.test.explainer.n": 48}}
HELDOUT = ("heldout_occupation", "heldout_company")
HELDOUT_GAP = 0.05  # held-out accuracy vs the truth within this much below test


def get(metrics: dict, path: str) -> Any:
    node = metrics
    for key in path.split("."):
        if not isinstance(node, dict) or key not in node:
            return None
        node = node[key]
    return node


def _num(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def check(metrics: dict, preset: str | None = None) -> list[dict]:
    """[{target, measured, goal, met}] for the run's preset (its `preset` key unless given)."""
    preset = preset or metrics.get("preset")
    if preset not in GOALS:
        return []
    rows = [{"target": path, "measured": get(metrics, path), "goal": f">= {goal}",
             "met": _num(get(metrics, path)) and get(metrics, path) >= goal}
            for path, goal in GOALS[preset].items()]
    rows += [{"target": path, "measured": get(metrics, path), "goal": f">= {n}",
              "met": _num(get(metrics, path)) and get(metrics, path) >= n}
             for path, n in MIN_N.get(preset, {}).items()]
    if preset in MIN_N:
        test = get(metrics, "splits.test.classifier.vs_truth.accuracy")
        for split in HELDOUT:
            path = f"splits.{split}.classifier.vs_truth.accuracy"
            v = get(metrics, path)
            rows.append({"target": path, "measured": v, "goal": f">= test - {HELDOUT_GAP}",
                         "met": _num(v) and _num(test) and v >= test - HELDOUT_GAP})
    return rows


def table(rows: list[dict]) -> list[str]:
    fmt = lambda v: f"{v:.3f}" if _num(v) and not isinstance(v, int) else str(v)  # noqa: E731
    return ["| target | measured | goal | met |", "|---|---|---|---|",
            *(f"| `{r['target']}` | {fmt(r['measured'])} | {r['goal']} | {'yes' if r['met'] else '**no**'} |"
              for r in rows)]


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) not in (1, 2):
        print("usage: python -m lantern_jax.targets METRICS_JSON [PRESET]", file=sys.stderr)
        return 2
    try:
        with open(argv[0], encoding="utf-8") as f:
            metrics = json.load(f)
    except (OSError, ValueError) as e:
        print(f"error: {argv[0]}: {e}", file=sys.stderr)
        return 2
    rows = check(metrics, argv[1] if len(argv) > 1 else None)
    if not rows:
        print(f"error: {argv[0]}: no targets for preset {metrics.get('preset')!r} (one of {list(GOALS)})",
              file=sys.stderr)
        return 2
    print("\n".join(table(rows)))
    print(f"targets: {sum(r['met'] for r in rows)}/{len(rows)} met")
    return 0 if all(r["met"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
