"""Device mesh and THE logical-axis rules table.

Parameters and activations are annotated with logical axis names; `RULES` maps each name to mesh
axes. The mesh always has the three axes ("data", "fsdp", "tensor") with Auto axis types, so XLA
propagates shardings through matmuls (jax 0.10 defaults to Explicit, which rejects sharded
contracting dimensions).
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import jax
from jax.sharding import AxisType, NamedSharding, PartitionSpec as P

from lantern_jax.errors import LanternError

MESH_AXES = ("data", "fsdp", "tensor")

# logical name -> mesh axis (or axes, or None = replicated). One table for every model.
RULES: tuple[tuple[str, str | tuple[str, ...] | None], ...] = (
    ("batch", ("data", "fsdp")),  # activations: batch split over both data-parallel axes
    ("length", None),
    ("act_embed", None),
    ("embed", "fsdp"),  # parameters: FSDP shards the model dimension
    ("vocab", "tensor"),
    ("heads", "tensor"),
    ("kv_heads", "tensor"),
    ("mlp", "tensor"),
    ("layers", None),  # the stacked axis of scanned layers
    ("positions", None),
    ("token_types", None),
    ("norm", None),
    ("classes", None),
)
_RULES = dict(RULES)


class MeshError(LanternError):
    """A mesh shape that does not fit the devices or the batch."""


def make_mesh(shape: Mapping[str, int] | Sequence[int] | None = None,
              devices: Sequence[jax.Device] | None = None) -> jax.sharding.Mesh:
    """Builds a ("data", "fsdp", "tensor") mesh; one axis may be -1 to take the remaining devices.

    `shape` is a mapping like {"data": -1, "fsdp": 2} (missing axes are 1) or a 3-sequence.
    """
    devices = list(jax.devices() if devices is None else devices)
    if shape is None:
        shape = {"data": -1}
    if isinstance(shape, Mapping):
        unknown = set(shape) - set(MESH_AXES)
        if unknown:
            raise MeshError(f"mesh: unknown axis {sorted(unknown)}; axes are {MESH_AXES}")
        dims = [int(shape.get(a, 1)) for a in MESH_AXES]
    else:
        dims = [int(d) for d in shape]
        if len(dims) != len(MESH_AXES):
            raise MeshError(f"mesh: shape {tuple(dims)} must have {len(MESH_AXES)} entries {MESH_AXES}")
    if dims.count(-1) > 1 or any(d == 0 or d < -1 for d in dims):
        raise MeshError(f"mesh: invalid shape {tuple(dims)}: sizes must be positive, at most one -1")
    known = math.prod(d for d in dims if d != -1)
    if -1 in dims:
        if len(devices) % known:
            raise MeshError(f"mesh: {len(devices)} devices are not divisible by {known} "
                            f"(shape {tuple(dims)})")
        dims[dims.index(-1)] = len(devices) // known
    if math.prod(dims) != len(devices):
        raise MeshError(f"mesh: shape {dict(zip(MESH_AXES, dims))} needs {math.prod(dims)} devices, "
                        f"but {len(devices)} are available")
    return jax.make_mesh(tuple(dims), MESH_AXES, axis_types=(AxisType.Auto,) * len(MESH_AXES),
                         devices=devices)


def mesh_axes(name: str | None) -> tuple[str, ...]:
    """Mesh axes a logical name maps to (empty for replicated)."""
    if name is None:
        return ()
    if name not in _RULES:
        raise KeyError(f"logical axis {name!r} is not in mesh.RULES")
    axes = _RULES[name]
    return () if axes is None else ((axes,) if isinstance(axes, str) else tuple(axes))


def logical_spec(names: Sequence[str | None]) -> P:
    """PartitionSpec of logical names under RULES."""
    parts = []
    for n in names:
        axes = mesh_axes(n)
        parts.append(None if not axes else axes[0] if len(axes) == 1 else axes)
    return P(*parts)


def _active_mesh():
    mesh = jax.sharding.get_abstract_mesh()
    return None if mesh.empty else mesh


def fit_names(names: Sequence[str | None], shape: Sequence[int], mesh=None) -> tuple[str | None, ...]:
    """Drops the logical names whose mesh axes don't divide that dimension on the active mesh.

    Small or odd sizes (9 heads on a 2-way tensor axis) then replicate that dimension instead of
    failing; everything divisible keeps exactly the spec RULES gives.
    """
    mesh = mesh or _active_mesh()
    if mesh is None:
        return tuple(names)
    sizes = dict(zip(mesh.axis_names, mesh.axis_sizes))
    return tuple(n if dim % math.prod(sizes.get(a, 1) for a in mesh_axes(n)) == 0 else None
                 for n, dim in zip(names, shape))


def constrain(x: jax.Array, names: Sequence[str | None]) -> jax.Array:
    """Sharding constraint on an activation by logical names; a no-op without an active mesh."""
    mesh = _active_mesh()
    if mesh is None:
        return x
    return jax.lax.with_sharding_constraint(x, logical_spec(fit_names(names, x.shape, mesh)))


def batch_sharding(mesh: jax.sharding.Mesh, ndim: int = 2) -> NamedSharding:
    """Sharding of an input batch: leading dim over the data-parallel axes, the rest replicated."""
    return NamedSharding(mesh, logical_spec(("batch",) + (None,) * (ndim - 1)))


def data_parallel_size(mesh: jax.sharding.Mesh) -> int:
    sizes = dict(zip(mesh.axis_names, mesh.axis_sizes))
    return math.prod(sizes[a] for a in mesh_axes("batch"))


def check_batch(mesh: jax.sharding.Mesh, batch_size: int, grad_accum: int = 1) -> None:
    """Each step's (micro-)batch, `batch_size // grad_accum` rows, must split evenly over the
    data-parallel devices; the error names the batch size the user gave."""
    dp = data_parallel_size(mesh)
    micro = batch_size // grad_accum
    if micro % dp:
        split = (f" with optim.grad_accum={grad_accum} gives micro-batches of {micro}, which"
                 if grad_accum > 1 else "")
        raise MeshError(f"batch size {batch_size}{split} is not divisible by the data-parallel size {dp} "
                        f"(mesh {dict(zip(mesh.axis_names, mesh.axis_sizes))})")
