"""Compile a config's real train step for a TPU slice, on a machine without a TPU.

    make aot CONFIG=configs/teacher_sft.py:qwen7b@v5e-16          # creates .venv-tpu on first use
    .venv-tpu/bin/python -m lantern_jax.aot --config configs/explainer_kd.py:qwen0.5b@v5p-32 \
        [--target v5e-16] [--json out.json] [--config.a.b=v ...]

libtpu compiles for a TPU topology without the TPU ("deviceless" ahead-of-time compilation, as
MaxText's train_compile does): `jax.experimental.topologies` gives the slice's devices, abstract.
The program is `train_step.make_steps`'s own jitted train step, lowered on a mesh of those devices with
the model, its AdamW state and an online teacher as sharded ShapeDtypeStructs, built as the run
builds them (`memory_fit.abstract_models`), and a batch of the config's shapes. Compiling enforces
the chip's HBM: a step that does not fit fails with RESOURCE_EXHAUSTED (exit status 1).

Printed per device:
- `memory_analysis()`: argument, output, aliased (donated and written in place) and temporary bytes,
  and `peak_memory_in_bytes`, the bytes live at once. The compiler's fit check is on the peak:
  grown until RESOURCE_EXHAUSTED, a step compiles with arguments + temporaries + outputs - aliased
  well above the usable HBM as long as its peak is under it, and the figure the error names follows
  the peak (docs/benchmarks.md). So the peak is what memory_fit's estimate is compared with and
  what the headroom is measured on; the sum is printed as the conservative figure. Outputs -
  aliased are what the step returns without donating it: its metrics, nothing of the model,
  optimizer or teacher.
- FLOPs: `cost_analysis()` counts each loop body once (layer scan, gradient accumulation, chunked
  loss) and nothing inside Pallas kernels (custom calls). The same program's jaxpr gives its matmul
  FLOPs both ways (`lantern_jax.flops`): bodies once outside kernels, which agrees with
  cost_analysis (elementwise work aside), and bodies times their trip counts, kernels included.
  Their ratio scales cost_analysis to what a step executes, unless XLA's SPMD partitioner made
  loops of its own: on large FSDP meshes it splits matmuls into collective-matmul loops (one
  shard's product per iteration, "windowed_dot_general"), whose trip counts the jaxpr does not
  know; the scaled figure is then not given, and the jaxpr's count stands. Both sit next to the
  trainer's accounting (6N per student token, 2N per teacher token, plus attention:
  `train_step.flops_per_token`); the difference is what the accounting leaves out on purpose, remat's
  recomputed forward above all.

Needs libtpu (the `jax[tpu]` extra at the project's jax version): `make aot` keeps it in .venv-tpu,
apart from the CPU venv.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import sys
import time

import jax
import jax.numpy as jnp
import ml_collections
from flax import nnx

from lantern_jax import config as config_lib
from lantern_jax import flops as flops_lib
from lantern_jax import memory_fit as mf
from lantern_jax import mesh as mesh_lib
from lantern_jax import lora, train_step as train_step_lib
from lantern_jax.models import attention as attention_lib

GiB = mf.GiB
# HBM the TPU compiler lets one program use per chip (its RESOURCE_EXHAUSTED message names it).
USABLE_HBM = {"v5e": 15.75 * GiB, "v5p": 95.74 * GiB}


# Every full-size config with a TPU layout, at each slice it has one for (`--all`, make test-aot).
FULL_SIZE = tuple(f"configs/{c}@{s}" for c in ("teacher_sft.py:qwen7b", "explainer_kd.py:qwen1.5b",
                                                 "explainer_kd.py:qwen0.5b", "classifier_kd.py:modernbert")
                  for s in ("v5e-16", "v5p-32")) + ("configs/teacher_sft.py:qwen7b_lora@v5e-8",)


class AotError(ValueError):
    """No TPU compiler here, or a slice it cannot compile for."""


@dataclasses.dataclass
class AotReport:
    name: str
    target: mf.Target
    mesh: dict[str, int]
    device_kind: str
    compile_s: float
    memory: dict[str, int]  # memory_analysis(), bytes per device
    usable_hbm: float
    memory_fit: mf.Report  # the estimate for the same config and slice
    cost_flops: float  # cost_analysis()["flops"], per device, loop bodies once
    matmul: flops_lib.Flops  # from the jaxpr, global
    accounted_flops: float  # the trainer's accounting, global, per step
    param_count: int
    trained_count: int  # LoRA: the adapters
    attention: str  # the backend model.attention resolves to on this slice
    mosaic_kernels: int  # Pallas (Mosaic) kernel calls in the compiled program
    hlo: str  # the compiled program's text

    @property
    def devices(self) -> int:
        return self.target.devices

    @property
    def total(self) -> int:
        """Arguments + temporaries + outputs - aliased: conservative (not all of it is live at once)."""
        m = self.memory
        return m["argument"] + m["temp"] + m["output"] - m["alias"]

    @property
    def needed(self) -> int:
        """What the compiler's fit check counts against the usable HBM: the peak of live bytes."""
        return self.memory["peak"]

    @property
    def collective_matmul_loops(self) -> int:
        """Loops XLA's SPMD partitioner made of matmuls (all-gather or reduce-scatter overlapped
        with the product, shard by shard): cost_analysis counts one shard's share of each."""
        return self.hlo.count("windowed_dot_general_cond")

    @property
    def executed_flops(self) -> float:
        """cost_analysis scaled by the program's loop trip counts, plus the kernels' FLOPs it cannot
        see, per device; NaN where XLA made loops of its own (their trip counts are not the jaxpr's)."""
        if self.collective_matmul_loops:
            return math.nan
        m = self.matmul
        xla_once, xla_executed = m.once - m.kernels_once, m.executed - m.kernels_executed
        return self.cost_flops * xla_executed / max(xla_once, 1.0) + m.kernels_executed / self.devices

    def figures(self) -> dict:
        return {"config": self.name, "target": self.target.name, "topology": self.target.topology,
                "mesh": self.mesh, "compile_s": round(self.compile_s, 1), "param_count": self.param_count,
                "trained_count": self.trained_count,
                "attention": self.attention, "mosaic_kernels": self.mosaic_kernels,
                "memory_bytes": {**self.memory, "total": self.total}, "usable_hbm_bytes": self.usable_hbm,
                "memory_fit_bytes": self.memory_fit.needed, "memory_fit_ratio": self.memory_fit.needed / self.needed,
                "memory_fit_persistent_bytes": sum(self.memory_fit.persistent.values()),
                "flops_per_device": {"cost_analysis": self.cost_flops,
                                     "jaxpr_matmul_once_outside_kernels":
                                         (self.matmul.once - self.matmul.kernels_once) / self.devices,
                                     "jaxpr_matmul_executed": self.matmul.executed / self.devices,
                                     "jaxpr_matmul_executed_in_kernels": self.matmul.kernels_executed / self.devices,
                                     "executed": self.executed_flops,
                                     "collective_matmul_loops": self.collective_matmul_loops,
                                     "accounted": self.accounted_flops / self.devices}}

    def row(self) -> str:
        """One markdown table row (`--all`)."""
        m, n, g = self.memory, self.devices, GiB
        mesh = "x".join(str(v) for v in self.mesh.values())
        est = self.memory_fit.needed
        return (f"| {self.name.removeprefix('configs/')} | {mesh} | {m['peak'] / g:.2f} | {self.total / g:.2f} | "
                f"{1 - self.needed / self.usable_hbm:.0%} | {est / g:.2f} ({est / self.needed:.2f}) | "
                f"{(m['output'] - m['alias']) / 2**20:.2f} | {self.cost_flops / 1e12:.1f} | "
                f"{self.matmul.executed / n / 1e12:.0f} | {self.accounted_flops / n / 1e12:.0f} | "
                f"{self.matmul.executed / self.accounted_flops:.2f} | {self.compile_s:.0f} |")

    TABLE_HEAD = ("| config @ slice | mesh (data x fsdp x tensor) | peak_memory GiB (the fit check's) | "
                  "args + temp + out - alias GiB | HBM headroom | memory_fit GiB (ratio to peak) | out - alias MiB | "
                  "cost_analysis TFLOP (bodies once) | executed TFLOP (jaxpr) | accounted TFLOP | executed / accounted | "
                  "compile s |\n|---|---|---|---|---|---|---|---|---|---|---|---|")

    def table(self) -> str:
        m, est, n = self.memory, self.memory_fit, self.devices
        persistent = sum(est.persistent.values())
        lines = [f"{self.name} compiled for {self.target.name} ({self.target.topology}: {n} x {self.device_kind}; "
                 f"mesh {' '.join(f'{k}={v}' for k, v in self.mesh.items())}; compile {self.compile_s:.0f} s)",
                 f"  attention {self.attention} ({self.mosaic_kernels} Mosaic kernel calls); "
                 f"{self.param_count / 1e6:,.0f}M parameters, {self.trained_count / 1e6:,.0f}M trained",
                 f"  {'per device':<68}{'compiled':>10}{'memory_fit':>12}",
                 f"  {'':<68}{'GiB':>10}{'GiB':>12}"]
        row = lambda name, a, b="": lines.append(  # noqa: E731
            f"  {name:<68}{a / GiB:>10.2f}{(b / GiB if b != '' else 0):>12.2f}" if b != "" else
            f"  {name:<68}{a / GiB:>10.2f}")
        row("arguments (params, optimizer, teacher, batch)", m["argument"], persistent)
        row("outputs", m["output"])
        row("aliased (donated, written in place)", m["alias"])
        row("outputs - aliased (returned without donation)", m["output"] - m["alias"])
        row("temporaries", m["temp"])
        row("arguments + temporaries + outputs - aliased (not all live at once)", self.total)
        row(f"peak_memory_in_bytes (the fit check's; memory_fit: '{est.peak_phase}')", m["peak"], est.needed)
        lines.append(f"  {'memory_fit / peak':<68}{est.needed / self.needed:>22.2f}")
        lines.append(f"  {'usable HBM':<68}{self.usable_hbm / GiB:>10.2f}   "
                     f"({self.needed / self.usable_hbm:.0%} used at the peak, headroom "
                     f"{1 - self.needed / self.usable_hbm:.0%})")
        lines.append(f"  {'FLOPs per device per step':<68}{'TFLOP':>10}")
        tf = lambda name, v: lines.append(f"  {name:<68}{v / 1e12:>10.2f}")  # noqa: E731
        mm = self.matmul
        tf("cost_analysis (each loop body once, Mosaic kernels unseen)", self.cost_flops)
        tf("jaxpr matmuls outside kernels, each body once (~ cost_analysis)", (mm.once - mm.kernels_once) / n)
        tf("jaxpr matmuls x loop trip counts", mm.executed / n)
        tf("  of which in Mosaic kernels", mm.kernels_executed / n)
        if self.collective_matmul_loops:
            lines.append(f"  {'cost_analysis x trip counts + kernels':<68}{'n/a':>10}  (XLA made "
                         f"{self.collective_matmul_loops} collective-matmul loops: one shard's product counted)")
        else:
            tf("cost_analysis x trip counts + kernels", self.executed_flops)
        tf("trainer accounting (6N student, LoRA 4N frozen + 6N adapters; 2N teacher)", self.accounted_flops / n)
        lines.append(f"  {'jaxpr executed / accounted':<68}{mm.executed / self.accounted_flops:>10.2f}")
        return "\n".join(lines)


def topology_devices(target: mf.Target):
    """Abstract devices of a TPU slice (needs libtpu, not a TPU)."""
    if not target.topology:
        raise AotError(f"target {target.name!r} is not a TPU slice; TPU targets: "
                       f"{sorted(t.name for t in mf.TARGETS.values() if t.topology)}")
    # libtpu locks a host's chips for one process; compiling opens none, and several compiles may
    # run at once (parallel tests), so the lock is skipped. Read when the TPU plugin starts, below.
    os.environ.setdefault("ALLOW_MULTIPLE_LIBTPU_LOAD", "1")
    from jax.experimental import topologies  # noqa: PLC0415  (starts the TPU plugin)
    try:
        return topologies.get_topology_desc(topology_name=target.topology, platform="tpu").devices
    except Exception as e:  # no libtpu: one line, with the way to get it
        raise AotError(f"cannot compile for {target.topology} here ({type(e).__name__}: "
                       f"{str(e).splitlines()[0] if str(e) else ''}); install the jax[tpu] extra "
                       f"(`make aot CONFIG=...` does, into .venv-tpu)") from None


def batch_shapes(cfg: ml_collections.ConfigDict, mesh: jax.sharding.Mesh) -> dict[str, jax.ShapeDtypeStruct]:
    """One global batch of the config's task, as `data.input_pipeline` builds it."""
    B, T = cfg.train.batch_size, cfg.data.max_length
    i32, f32 = jnp.int32, jnp.float32
    if cfg.task == "classifier_kd":
        shapes = {"input_ids": ((B, T), i32), "attention_mask": ((B, T), i32), "label": ((B,), i32),
                  "soft_label": ((B, 3), f32)}
    else:
        shapes = {"input_ids": ((B, T), i32), "attention_mask": ((B, T), i32), "labels": ((B, T), i32),
                  "loss_mask": ((B, T), f32)}
        if cfg.task == "explainer_kd" and cfg.teacher.mode == "offline":
            shapes.update(teacher_ids=((B, T, cfg.data.topk), i32), teacher_logprobs=((B, T, cfg.data.topk), f32))
    return {k: jax.ShapeDtypeStruct(s, d, sharding=mesh_lib.batch_sharding(mesh, len(s)))
            for k, (s, d) in shapes.items()}


def accounted_flops(cfg: ml_collections.ConfigDict, model, teacher) -> float:
    """The trainer's FLOPs per step (what its MFU divides by): `train_step.flops_per_token` x tokens."""
    T = cfg.data.max_length
    per_token = train_step_lib.flops_per_token(model, T, training=True)
    if teacher is not None:
        per_token += train_step_lib.flops_per_token(teacher, T, training=False)
    return per_token * cfg.train.batch_size * T


def compile_report(cfg: ml_collections.ConfigDict, target: mf.Target | str, name: str = "config") -> AotReport:
    """Lowers and compiles the config's train step for `target`; raises jax's RESOURCE_EXHAUSTED
    error (an XlaRuntimeError) when it does not fit."""
    target = mf.TARGETS[target] if isinstance(target, str) else target
    devices = topology_devices(target)
    mesh = mesh_lib.make_mesh(dict(cfg.mesh), devices)
    mesh_lib.check_batch(mesh, cfg.train.batch_size, cfg.optim.grad_accum)
    estimate = mf.fit_report(cfg, target, name)
    model, optimizer, teacher = mf.abstract_models(cfg, mesh)
    batch = batch_shapes(cfg, mesh)
    step = jax.ShapeDtypeStruct((), jnp.int32)
    train_step, _ = train_step_lib.make_steps(cfg)
    tic = time.perf_counter()
    with jax.set_mesh(mesh):
        compiled = train_step.lower(model, optimizer, batch, step, teacher).compile()
        matmul = flops_lib.of(lambda *a: train_step(*a), model, optimizer, batch, step, teacher)
        attention = attention_lib.resolve(cfg.model.attention, cfg.model.dtype)
    compile_s = time.perf_counter() - tic
    ma = compiled.memory_analysis()
    hlo = compiled.as_text()
    memory = {"argument": ma.argument_size_in_bytes, "output": ma.output_size_in_bytes,
              "alias": ma.alias_size_in_bytes, "temp": ma.temp_size_in_bytes,
              "peak": ma.peak_memory_in_bytes, "code": ma.generated_code_size_in_bytes}
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, (list, tuple)) else cost
    kind = devices[0].device_kind
    generation = "v5p" if "v5p" in target.name else "v5e" if "v5e" in target.name else ""
    usable = USABLE_HBM.get(generation, float(target.bytes_per_device))
    return AotReport(name, target, dict(zip(mesh.axis_names, mesh.axis_sizes)), kind, compile_s, memory,
                     usable, estimate, float(cost.get("flops", math.nan)), matmul,
                     accounted_flops(cfg, model, teacher), train_step_lib.param_count(model),
                     sum(x.size for x in jax.tree.leaves(nnx.state(model, lora.trainable(model)))), attention,
                     hlo.count('custom_call_target="tpu_custom_call"'), hlo)


def _target_of(spec: str, explicit: str | None) -> str:
    suffix = spec.rpartition(":")[2].rpartition("@")[2] if "@" in spec else None
    target = explicit or suffix
    if target is None:
        raise AotError("give --target or a config variant ending in @<slice> "
                       f"(TPU slices: {', '.join(t.name for t in mf.TARGETS.values() if t.topology)})")
    if target not in mf.TARGETS:
        raise AotError(f"unknown target {target!r}; targets: {sorted(mf.TARGETS)}")
    return target


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="compile a config's train step for a TPU slice (no TPU needed)",
                                 allow_abbrev=False)
    ap.add_argument("--config", help="configs/x.py:variant[@slice]; --config.a.b=v overrides follow")
    ap.add_argument("--all", action="store_true", help="every full-size config at each TPU slice: a markdown table")
    ap.add_argument("--target", default=None, help="a memory_fit.TARGETS TPU slice (default: the @slice suffix)")
    ap.add_argument("--json", default="", help="also write the figures to this file")
    ap.add_argument("--hlo", default="", help="also write the compiled program (HLO text) to this file")
    args, rest = ap.parse_known_args(argv)
    bad = [r for r in rest if not r.startswith("--config.")]
    if bad or not (args.config or args.all):
        print(f"error: unknown arguments {bad}" if bad else "error: give --config or --all", file=sys.stderr)
        return 2
    if args.all:
        return _all(rest)
    try:
        target = _target_of(args.config, args.target)
        cfg = config_lib.load_config(args.config, rest)
        report = compile_report(cfg, target, args.config)
    except ValueError as e:  # ConfigError, MeshError, MemoryFitError, AotError, a config's unknown variant
        print(f"error: {e}", file=sys.stderr)
        return 2
    except jax.errors.JaxRuntimeError as e:
        if "RESOURCE_EXHAUSTED" not in str(e):
            raise
        print(f"{args.config} does not fit {target}: {str(e).splitlines()[0]}", file=sys.stderr)
        return 1
    print(report.table(), flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report.figures(), f, indent=2)
    if args.hlo:
        with open(args.hlo, "w") as f:
            f.write(report.hlo)
    return 0


def _all(overrides) -> int:
    print(AotReport.TABLE_HEAD, flush=True)
    status = 0
    for spec in FULL_SIZE:
        try:
            report = compile_report(config_lib.load_config(spec, overrides), _target_of(spec, None), spec)
            print(report.row(), flush=True)
        except jax.errors.JaxRuntimeError as e:
            if "RESOURCE_EXHAUSTED" not in str(e):
                raise
            print(f"| {spec.removeprefix('configs/')} | does not fit: {str(e).splitlines()[0]} |", flush=True)
            status = 1
    return status


if __name__ == "__main__":
    sys.exit(main())
