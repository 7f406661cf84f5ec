"""The evaluation report: markdown with the metric tables, and the reliability and confusion plots."""
from __future__ import annotations

import json
import os

import numpy as np

from lantern_jax import audit, targets
from lantern_jax import stages as stage_engine
from lantern_jax.data.schema import FIT_LEVELS

C = len(FIT_LEVELS)
# the pipeline's stages whose summaries the report shows (timings, the gates' counts)
STAGE_NAMES = ("data", "blackbox", "seed", "inhouse", "d_t", "explainer", "classifier")


def write_plots(metrics: dict, reliability: dict, out_dir: str) -> list[str]:
    import matplotlib  # noqa: PLC0415  (slow to import: only when plotting)
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

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

    if metrics.get("curves"):
        students = metrics["curves"]
        fig, axes = plt.subplots(1, len(students), figsize=(4.2 * len(students), 3.6), squeeze=False)
        for ax, (student, rows) in zip(axes[0], students.items()):
            for key in sorted({k for r in rows for k in r} - {"step"}):
                points = [(r["step"], r[key]) for r in rows if isinstance(r.get(key), (int, float))
                          and np.isfinite(r[key])]  # NaN is logged as null
                if points:
                    ax.plot(*zip(*points), "o-", label=key)
            ax.set(title=f"learning curve: {student} (dev)", xlabel="step", ylim=(0, 1))
            ax.legend(loc="lower right", fontsize=8)
        fig.tight_layout()
        files.append(os.path.join(out_dir, "learning_curves.png"))
        fig.savefig(files[-1], dpi=110)
        plt.close(fig)
    return files


def _fmt(v) -> str:
    return "n/a" if v is None or (isinstance(v, float) and np.isnan(v)) else (f"{v:.3f}" if isinstance(v, float) else str(v))


def targets_section(metrics: dict) -> list[str]:
    rows = targets.check(metrics)
    if not rows:
        return []
    return ["## Targets of this preset", "",
            f"{sum(r['met'] for r in rows)} of {len(rows)} met (`python -m lantern_jax.targets` checks a run).", "",
            *targets.table(rows), ""]


def inhouse_section(m: dict | None) -> list[str]:
    if not m:
        return []
    return ["## In-house teacher", "",
            "What it wrote for D_t's dev pairs (unguided greedy decoding), against the black-box teacher:", "",
            "| n | parse rate | fit acc vs teacher | fit acc vs truth | ROUGE-L vs teacher | requirement coverage |",
            "|---|---|---|---|---|---|",
            f"| {m['n']} | {_fmt(m['parse_rate'])} | {_fmt(m['fit_accuracy_vs_teacher'])} | "
            f"{_fmt(m['fit_accuracy_vs_truth'])} | {_fmt(m['rougeL'])} | {_fmt(m['requirement_coverage'])} |", ""]


def curves_section(curves: dict | None) -> list[str]:
    """The learning curves as a quality-vs-budget table: each student's dev metrics at each step it
    was measured, so what more steps would buy is visible."""
    if not curves:
        return []
    rows = [f"| {student} | {r['step']} | " + " · ".join(f"{k} {_fmt(v)}" for k, v in r.items() if k != "step") + " |"
            for student, points in curves.items() for r in points]
    return ["## Quality vs training budget", "",
            "Each student's dev metric at the steps it was measured (decoders: greedy outputs for dev pairs "
            "scored against the black-box teacher; classifier: accuracy against the teacher's dev labels).", "",
            "| student | step | dev metrics |", "|---|---|---|", *rows, "",
            "![learning curves](learning_curves.png)", ""]


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
    stages = {name: done for name in STAGE_NAMES if (done := stage_engine.summary(wd(name))) is not None}
    timing = " · ".join(f"{k} {v.get('elapsed_s', 0):.0f}s" for k, v in stages.items())
    lines = [
        "# LANTERN evaluation report", "",
        f"Workdir `{wd.root}`, preset `{metrics.get('preset', 'custom')}`. Stage times: {timing}.", "",
        "References: **teacher** = the black-box teacher's labels on the same pairs; **truth** = the "
        "generator's latent fit level. `test` shares occupations and companies with training; the "
        "held-out splits share neither.", "",
        *targets_section(metrics),
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
        *inhouse_section(metrics.get("inhouse")),
        *curves_section(metrics.get("curves")),
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
        lines += ["", audit.report_section(metrics["audit"])]
    with open(os.path.join(out_dir, "report.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
