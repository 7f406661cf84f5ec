"""Running the package's commands from tests, and private copies of a finished run folder."""
import os
import shutil
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MICRO_STAGES = ("data", "blackbox", "seed", "inhouse", "d_t", "explainer", "classifier", "evaluate")


def xla_flags(devices: int, optimize: bool = False) -> str:
    """XLA_FLAGS for a test process: `devices` fake CPU devices and, unless `optimize`, no backend
    optimisation. Test programs are tiny and mostly compiled once, so LLVM's optimisation passes
    cost more than they save (docs/benchmarks.md, "What the suite's time is made of"); a process
    that runs many real-size steps (the micro pipeline's MiniLM) passes optimize=True."""
    flags = f"--xla_force_host_platform_device_count={devices}"
    return flags if optimize else f"{flags} --xla_backend_optimization_level=0"


def run_module(module: str, *args: str, devices: int = 1, optimize: bool = False, timeout: int = 3600) -> str:
    """`python -m <module> args` from the repository root on `devices` CPU devices (see
    `xla_flags`); its stdout, asserting exit status 0."""
    proc = subprocess.run([sys.executable, "-m", module, *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, "XLA_FLAGS": xla_flags(devices, optimize)})
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout


def copy_run(run, dest, stages=MICRO_STAGES):
    """A private copy of a run folder's shared inputs (data, tokenizer) and the given stages."""
    for name in dict.fromkeys(("data", "tokenizer", *stages)):  # a stage may be one of the shared folders
        if (run / name).exists():
            shutil.copytree(run / name, dest / name)
    return dest
