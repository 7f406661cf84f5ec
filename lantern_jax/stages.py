"""Work that runs once per folder: pipeline stages, training-chain stages, ablation cells.

One rule for all of them: a finished unit leaves `<dir>/DONE.json` holding its summary, and a
rerun skips it (returning that summary); an unfinished one simply runs again, resuming from what
it wrote (labelling appends, training restores its last checkpoint). DONE.json is written last and
atomically, so a kill never leaves a unit marked done with its work missing.
"""
from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any, NamedTuple

from lantern_jax import storage

DONE = "DONE.json"


class Outcome(NamedTuple):
    summary: dict[str, Any]
    skipped: bool  # finished by an earlier run


def summary(directory: str) -> dict[str, Any] | None:
    """The summary a finished unit left in `directory`, or None while it is not finished."""
    path = storage.remote(directory) / DONE
    return json.loads(path.read_text()) if path.exists() else None


def run_once(label: str, directory: str, work: Callable[[], dict[str, Any]]) -> Outcome:
    """Runs `work()` unless `directory` holds a finished unit; records its summary (with elapsed_s)."""
    done = summary(directory)
    if done is not None:
        print(f"{label}: done, skipped", flush=True)
        return Outcome(done, True)
    print(f"{label} ...", flush=True)
    root = storage.remote(directory)
    root.mkdir(parents=True, exist_ok=True)
    tic = time.perf_counter()
    result = dict(work())
    result["elapsed_s"] = round(time.perf_counter() - tic, 1)
    tmp = root / f".{DONE}.tmp"
    tmp.write_text(json.dumps(result, indent=2, default=float))
    tmp.rename(root / DONE)
    print(f"{label}: done in {result['elapsed_s']:.0f}s", flush=True)
    return Outcome(result, False)
