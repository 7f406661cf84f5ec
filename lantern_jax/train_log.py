"""Training metrics: metrics.jsonl + TensorBoard events, written by process 0 (copied up to a
gs:// workdir when the run ends)."""
from __future__ import annotations

import json
import math
import os

import jax

from lantern_jax import storage


class MetricsLog:
    """metrics.jsonl + TensorBoard events, written by process 0."""

    def __init__(self, workdir: str):
        self.active = jax.process_index() == 0
        self.workdir = workdir
        if self.active:
            from tensorboardX import SummaryWriter  # noqa: PLC0415  (slow to import: process 0 only)
            local = storage.local(workdir)
            os.makedirs(local, exist_ok=True)
            self.jsonl = open(os.path.join(local, "metrics.jsonl"), "a")
            self.tb = SummaryWriter(os.path.join(local, "tensorboard"))

    def write(self, step: int, prefix: str, metrics: dict[str, float]) -> None:
        if not self.active:
            return
        finite = {k: v if math.isfinite(v) else None for k, v in metrics.items()}  # JSON has no NaN
        self.jsonl.write(json.dumps({"step": step, "split": prefix, **finite}) + "\n")
        self.jsonl.flush()
        for k, v in finite.items():
            if v is not None:  # a metric with nothing to average (no output parsed) has no point
                self.tb.add_scalar(f"{prefix}/{k}", v, step)

    def close(self) -> None:
        if self.active:
            self.jsonl.close()
            self.tb.close()
            storage.upload(self.workdir, "metrics.jsonl", "tensorboard")


def read_metrics(workdir: str) -> dict[str, list[dict]]:
    """metrics.jsonl by split, one record per step (a resumed run's rewrite of a step wins)."""
    by_split: dict[str, dict[int, dict]] = {}
    with (storage.remote(workdir) / "metrics.jsonl").open() as f:
        for line in f:
            r = json.loads(line)
            by_split.setdefault(r["split"], {})[r["step"]] = r
    return {k: [v[s] for s in sorted(v)] for k, v in by_split.items()}
