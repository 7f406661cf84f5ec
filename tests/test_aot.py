"""The real train step compiled for a TPU slice on this CPU machine (lantern_jax.aot), and the
jaxpr FLOP counter it scales cost_analysis with (lantern_jax.flops).

Compiling needs libtpu, which lives in .venv-tpu (`make test` creates it), so the compile runs in a
subprocess of that interpreter.
"""
import json
import os
import pathlib
import subprocess

import jax
import jax.numpy as jnp
import pytest

from lantern_jax import aot, flops
from lantern_jax import memory_fit as mf
from lantern_jax.models import attention as A

ROOT = pathlib.Path(__file__).resolve().parents[1]
TPU_PYTHON = ROOT / ".venv-tpu" / "bin" / "python"
needs_libtpu = pytest.mark.skipif(not TPU_PYTHON.exists(), reason=".venv-tpu is missing: `make test` creates it")


def run_aot(*args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    env.pop("XLA_FLAGS", None)  # the test process's 8 fake CPU devices are not the slice's
    return subprocess.run([str(TPU_PYTHON), "-m", "lantern_jax.aot", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)


# A small decoder with the full-size layout's features: scanned + rematerialised layers, bf16
# compute, FSDP, gradient accumulation, and the TPU's splash attention (model.attention=auto).
SMALL = ["--config", "configs/teacher_sft.py:local", "--target", "v5e-4",
         "--config.model.init.vocab_size=4096", "--config.model.scan_layers=True",
         "--config.model.remat=full", "--config.model.dtype=bfloat16", "--config.mesh.fsdp=2",
         "--config.optim.grad_accum=2", "--config.data.max_length=512"]


@needs_libtpu
def test_a_small_config_compiles_for_v5e_2x2_within_its_hbm(tmp_path):
    out = tmp_path / "aot.json"
    proc = run_aot(*SMALL, "--json", str(out))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "compiled for v5e-4 (v5e:2x2: 4 x TPU v5 lite; mesh data=2 fsdp=2 tensor=1" in proc.stdout
    fig = json.loads(out.read_text())
    mem = fig["memory_bytes"]
    assert 0 < mem["peak"] <= fig["usable_hbm_bytes"] == 15.75 * 2**30
    assert mem["total"] == mem["argument"] + mem["temp"] + mem["output"] - mem["alias"]
    assert fig["memory_fit_ratio"] == fig["memory_fit_bytes"] / mem["peak"]
    # model + optimizer are donated and come back in place: only the metrics are returned anew
    assert mem["output"] - mem["alias"] < 4096
    # the arguments are parameters and AdamW moments (fp32, sharded over fsdp=2), as memory_fit counts
    # them; TPU layouts pad this model's small dimensions to 128 lanes (invisible at full size)
    assert fig["memory_fit_persistent_bytes"] == pytest.approx(3 * 4 * fig["param_count"] / 2, rel=0.01)
    assert mem["argument"] == pytest.approx(fig["memory_fit_persistent_bytes"], rel=0.1)
    assert fig["mosaic_kernels"] >= 2  # splash forward and its fused backward, compiled for the TPU
    f = fig["flops_per_device"]
    # XLA's count and the jaxpr's roughly agree on what XLA sees (kernels are custom calls to it);
    # closer at full size (docs/benchmarks.md) than with these 128-wide matrices
    assert f["jaxpr_matmul_once_outside_kernels"] == pytest.approx(f["cost_analysis"], rel=0.25)
    assert 0 < f["jaxpr_matmul_executed_in_kernels"] < f["jaxpr_matmul_executed"]
    # 2 accumulation steps x 4 layers (+ loss chunks) run; cost_analysis saw each body once
    assert f["executed"] > 4 * f["cost_analysis"]
    assert f["collective_matmul_loops"] == 0
    assert f["executed"] == pytest.approx(f["jaxpr_matmul_executed"], rel=0.2)
    # full remat: each layer's forward runs twice, 8N per token instead of the accounted 6N
    assert 1.0 < f["jaxpr_matmul_executed"] / f["accounted"] < 1.45


@needs_libtpu
def test_a_step_that_does_not_fit_fails_with_the_compiler_message():
    # 4.3B parameters with their AdamW moments over 2-way FSDP: ~26 GiB of arguments per chip
    proc = run_aot(*SMALL, "--config.model.init.hidden_size=8192", "--config.model.init.intermediate_size=32768")
    assert proc.returncode == 1
    line = proc.stderr.strip().splitlines()[-1]
    assert line.startswith("configs/teacher_sft.py:local does not fit v5e-4: RESOURCE_EXHAUSTED"), proc.stderr[-2000:]
    assert "exceeds available HBM (15.75G)" in line


def test_bad_input_is_one_line_and_status_2(capsys, monkeypatch):
    monkeypatch.chdir(ROOT)
    for args, message in (
            (["--config", "configs/teacher_sft.py:qwen7b@8xH100"], "target '8xH100' is not a TPU slice"),
            (["--config", "configs/teacher_sft.py:local"], "give --target or a config variant ending in @<slice>"),
            (["--config", "configs/teacher_sft.py:local", "--target", "v9"], "unknown target 'v9'"),
            (["--config", "configs/nope.py", "--target", "v5e-4"], "no such file"),
            (["--config", "configs/teacher_sft.py:local", "--target", "v5e-4", "--steps=3"], "unknown arguments")):
        assert aot.main(args) == 2
        err = capsys.readouterr().err
        assert message in err and len(err.strip().splitlines()) == 1, err


def test_flops_count_matmuls_with_loop_trip_counts():
    x, w = jnp.ones((4, 8)), jnp.ones((8, 8))
    one = 2 * 4 * 8 * 8

    def scanned(x, w):
        return jax.lax.scan(lambda c, _: (jnp.tanh(c @ w), None), x, None, length=5)[0].sum()

    assert flops.of(scanned, x, w) == flops.Flops(one, 5 * one)
    # reverse mode: c @ w, then d c = g w^T and d w = c^T g, in each of the 5 bodies
    assert flops.of(jax.grad(scanned, argnums=1), x, w) == flops.Flops(3 * one, 15 * one)
    nested = lambda x, w: jax.lax.scan(lambda c, _: (c + scanned(x, w), None), 0.0, None, length=3)[0]  # noqa: E731
    assert flops.of(nested, x, w) == flops.Flops(one, 15 * one)
    assert flops.of(jax.checkpoint(scanned), x, w) == flops.Flops(one, 5 * one)


def test_flops_count_a_pallas_kernel_per_grid_step_apart_from_xla():
    """Splash attention (interpret mode here) over 2 rows x 4 heads x 256 tokens of 128 dims:
    q·k and p·v per (query block, key block) step of the kernel's grid, fully masked blocks too."""
    q = jnp.ones((2, 256, 4, 128), jnp.float32)
    k = v = jnp.ones((2, 256, 4, 128), jnp.float32)
    mask = A.Mask(jnp.ones((2, 256), bool), causal=True)
    f = flops.of(lambda q, k, v: A.attend(q, k, v, mask, "splash"), q, k, v)
    dense = 2 * (2 * 2 * 4 * 256 * 256 * 128)  # two [256, 256] x 128 products per row and head
    assert f.executed == f.kernels_executed == dense and f.once == f.kernels_once == dense


def test_every_tpu_target_names_its_topology():
    tpu = {name: t.topology for name, t in mf.TARGETS.items() if t.topology}
    assert tpu == {"v5e-4": "v5e:2x2", "v5e-8": "v5e:2x4", "v5e-16": "v5e:4x4", "v5p-32": "v5p:2x2x4"}
    for name, topology in tpu.items():
        chips = 1
        for d in topology.partition(":")[2].split("x"):
            chips *= int(d)
        assert mf.TARGETS[name].devices == chips
