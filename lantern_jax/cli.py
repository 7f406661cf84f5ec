"""The one command-line entry for every module that takes a config and a workdir:

    python -m lantern_jax.<module> --config configs/x.py[:arg] --workdir DIR [--config.a.b=v ...]

Overrides are applied and checked before anything runs. A `LanternError` (bad config, data,
checkpoint or mesh) is one line on stderr and exit status 2; SIGTERM-style preemption keeps its
own status (the trainer raises SystemExit(143)).
"""
from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

import ml_collections

from lantern_jax import config as config_lib
from lantern_jax.errors import EXIT_USER_ERROR, LanternError

Run = Callable[..., object]


def main(run: Run, argv=None, *, description: str, config: str | None = None, workdir: str | None = None,
         arguments: Callable[[argparse.ArgumentParser], None] | None = None,
         before: Callable[[argparse.Namespace], None] | None = None) -> int:
    """Parses `--config FILE[:arg] --workdir DIR [--config.key=value ...]` and calls
    `run(cfg, workdir)`, or `run(cfg, workdir, args)` when `arguments` adds flags of the module's
    own. `before(args)` runs after parsing and before the config is loaded (e.g. to join a
    multi-process job). Defaults make the flag optional; without one it is required."""
    ap = argparse.ArgumentParser(description=description, allow_abbrev=False)
    ap.add_argument("--config", default=config, required=config is None, help="configs/x.py or configs/x.py:arg")
    ap.add_argument("--workdir", default=workdir, required=workdir is None)
    if arguments:
        arguments(ap)
    args, rest = ap.parse_known_args(argv)
    bad = [r for r in rest if not r.startswith("--config.")]
    if bad:
        print(f"error: unknown arguments {bad}", file=sys.stderr)
        return EXIT_USER_ERROR
    if before:
        before(args)
    try:
        cfg: ml_collections.ConfigDict = config_lib.load_config(args.config, rest)
        run(cfg, args.workdir, args) if arguments else run(cfg, args.workdir)
    except LanternError as e:
        print(f"error: {' '.join(str(e).split())}", file=sys.stderr)
        return EXIT_USER_ERROR
    return 0
