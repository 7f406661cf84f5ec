"""Test session set-up: 8 fake CPU devices, a persistent compilation cache, and one shared micro run.

- Every test process sees 8 fake CPU devices so mesh tests run beside single-device ones.
  XLA_FLAGS must be set before jax is imported and cannot change in-process; tests that need
  another device count or several processes start subprocesses.
- Compiled programs are cached on disk (`.jax_cache/`), shared by the test processes and every
  subprocess they start: a step compiled once (a resumed run, a second process, a rerun) is read
  back instead of compiled again.
- `micro_run` is the embedded pipeline at micro size, run once per session and shared by the tests
  that read a finished run (pipeline, notebook, ablations). They are one xdist group, so the run
  happens on one worker while the other runs everything else.

Markers (`--strict-markers`): `slow` (tens of seconds or more; `make test-fast` leaves them out),
`subprocess` (starts Python + JAX processes), `real_weights` (loads MiniLM-L6 or SmolLM2-135M),
`aot` (compiles a full-size config for its TPU slice; `make test` leaves them out, `make test-aot`).
"""
import os

import pytest
from filelock import FileLock

from pipeline_fixtures import run_module, xla_flags

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

os.environ.setdefault("XLA_FLAGS", xla_flags(8))
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", os.path.join(ROOT, ".jax_cache"))
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "0")


@pytest.fixture(scope="session")
def micro_run(tmp_path_factory):
    """(run folder, pipeline stdout) of `configs/demo.py:micro`, run once for the whole session
    (xdist workers share it through a lock). Tests must not write into it: copy what they change."""
    shared = tmp_path_factory.getbasetemp().parent  # common to every xdist worker of this session
    workdir, log = shared / "micro_run", shared / "micro_run.stdout"
    with FileLock(str(shared / "micro_run.lock")):
        if not log.exists():
            log.write_text(run_module("lantern_jax.pipeline", "--config", "configs/demo.py:micro",
                                      "--workdir", str(workdir), optimize=True))
    return workdir, log.read_text()
