"""Matrix-multiply FLOPs of a traced program, counted from its jaxpr with loop trip counts.

XLA's `compiled.cost_analysis()["flops"]` counts each while-loop body once, however many times it
runs (the layer scan, gradient accumulation and the chunked loss are all loops), so it cannot be
compared with 6N·tokens as it is. A jaxpr keeps the loops' trip counts: walking it gives the same
program's matmul FLOPs both ways, bodies once (what XLA counts, a check that the two walks see the
same program) and bodies times their trip counts (what runs). Their ratio scales cost_analysis.

Counted: `dot_general` (2·M·N·K, batch dimensions included) and the bodies of Pallas kernels
(once per grid step, masked-out blocks included, as a dense-attention accounting counts them).
Kernels are custom calls to XLA, which counts none of their FLOPs: they are kept apart. Elementwise
work is not counted here: XLA counts it, so cost_analysis stays a few percent above the matmuls.
Bodies under `shard_map` see per-shard shapes and count once per shard. The totals are global;
divide by the number of devices for a per-device figure (SPMD splits the work evenly).
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any

import jax
from jax.extend import core as jex_core


@dataclasses.dataclass
class Flops:
    once: float = 0.0  # every loop body counted once
    executed: float = 0.0  # loop bodies times their trip counts
    kernels_once: float = 0.0  # the part of each inside Pallas kernels (custom calls to XLA)
    kernels_executed: float = 0.0

    def __add__(self, other: Flops) -> Flops:
        return Flops(*(a + b for a, b in zip(dataclasses.astuple(self), dataclasses.astuple(other))))

    def scaled(self, once: float, executed: float) -> Flops:
        return Flops(self.once * once, self.executed * executed, self.kernels_once * once,
                     self.kernels_executed * executed)

    def in_kernels(self) -> Flops:
        return Flops(self.once, self.executed, self.once, self.executed)


def _dot_flops(eqn) -> float:
    lhs, rhs = (v.aval for v in eqn.invars)
    (lhs_contract, _), _ = eqn.params["dimension_numbers"]
    k = math.prod(lhs.shape[d] for d in lhs_contract)
    return 2.0 * math.prod(eqn.outvars[0].aval.shape) * k


def _jaxprs(params: dict[str, Any]):
    for value in params.values():
        items = value if isinstance(value, (tuple, list)) else (value,)
        for item in items:
            if isinstance(item, jex_core.ClosedJaxpr):
                yield item.jaxpr
            elif isinstance(item, jex_core.Jaxpr):
                yield item


def count(jaxpr) -> Flops:
    """Matmul FLOPs of a (closed) jaxpr; see the module docstring."""
    jaxpr = getattr(jaxpr, "jaxpr", jaxpr)
    total = Flops()
    for eqn in jaxpr.eqns:
        name = eqn.primitive.name
        if name == "dot_general":
            f = _dot_flops(eqn)
            total += Flops(f, f)
        elif name == "scan":
            total += count(eqn.params["jaxpr"]).scaled(1, eqn.params["length"])
        elif name == "while":  # trip count unknown at trace time: counted once (none in the steps)
            total += count(eqn.params["body_jaxpr"])
        elif name == "cond":  # one branch runs: the costliest
            total += max((count(b) for b in eqn.params["branches"]), key=lambda f: f.executed)
        elif name == "custom_vjp_call" or name == "custom_jvp_call":  # the primal only
            total += count(eqn.params["call_jaxpr"])
        elif name == "shard_map":
            mesh = eqn.params["mesh"]
            axes = eqn.params.get("newly_manual_axes") or eqn.params.get("manual_axes") or ()
            sizes = dict(zip(mesh.axis_names, mesh.axis_sizes))
            shards = math.prod(sizes[a] for a in axes) if axes else math.prod(mesh.axis_sizes)
            total += count(eqn.params["jaxpr"]).scaled(shards, shards)
        elif name == "pallas_call":
            steps = math.prod(int(g) for g in eqn.params["grid_mapping"].grid)
            total += count(eqn.params["jaxpr"]).scaled(steps, steps).in_kernels()
        else:
            for sub in _jaxprs(eqn.params):
                total += count(sub)
    return total


def of(fn, *args, **kwargs) -> Flops:
    """Matmul FLOPs of fn(*args) (arrays or ShapeDtypeStructs), traced, not run."""
    return count(jax.make_jaxpr(fn)(*args, **kwargs))
