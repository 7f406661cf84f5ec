"""Fused attention kernels per platform, behind one config key: `model.attention`.

    auto    cudnn on GPU (16-bit compute), splash on TPU, xla elsewhere
    xla     `layers.dot_product_attention`: fp32 [T, S] scores, a hand-written backward (CPU's
            fastest; the reference the kernels are tested against)
    cudnn   cuDNN flash attention through `jax.nn.dot_product_attention`
    splash  the Pallas TPU splash-attention kernel, in `shard_map` over the mesh

The kernels never materialise [T, S] scores, so they take a description of the mask (`Mask`)
instead of a dense one: which tokens are real, causal or not, a local window. Every mask the models
use is covered: causal with left or right padding (decoders), bidirectional with padding (BERT),
ModernBERT's per-layer choice between global and a ±window local attention (chosen by a traced
flag inside the layer scan: `lax.cond` runs one kernel), and grouped-query attention (the kernels
take fewer key/value heads than query heads). Kernels and the reference agree on every real token;
padding queries differ (they attend to padding here, to themselves or to the real keys there),
which no loss or pooling reads.

Off their platform both kernels run the same wrapper code for tests: splash in Pallas interpret
mode, cudnn through XLA's implementation of `jax.nn.dot_product_attention`.

Decoding with a KV cache stays on the xla path (one query row: no [T, S] array to avoid).
"""
from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from lantern_jax import mesh as mesh_lib

BACKENDS = ("auto", "xla", "cudnn", "splash")
Array = jax.Array


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class Mask:
    """Self-attention over one sequence of [B, T] tokens, described rather than materialised.

    `valid` marks real tokens (a contiguous span per row: right or left padding). `positions`
    [B, T] are the indices the dense reference uses for causality and windows (positions from the
    mask; on real tokens they differ from the slot index by a constant, so the kernels' index
    space gives the same pairs). `window`: keys within ±window of the query. `local`, a traced
    boolean, switches the window on or off per layer (ModernBERT). `padded_queries_see_self`: in
    the dense reference a padding query attends to itself only (decoders) or to the real keys (BERT).
    """
    valid: Array
    positions: Array | None = None
    local: Array | None = None
    causal: bool = dataclasses.field(default=False, metadata=dict(static=True))
    window: int | None = dataclasses.field(default=None, metadata=dict(static=True))
    padded_queries_see_self: bool = dataclasses.field(default=True, metadata=dict(static=True))


def platform() -> str:
    """The platform being compiled for: the active mesh's devices (an abstract TPU slice when
    compiling ahead of time on a CPU host), else JAX's default backend."""
    device = getattr(jax.sharding.get_abstract_mesh(), "abstract_device", None)
    return device.platform if device is not None else jax.default_backend()


def resolve(backend: str, dtype) -> str:
    """The backend `auto` stands for here; explicit backends are kept."""
    if backend not in BACKENDS:
        raise ValueError(f"attention backend {backend!r} is not one of {BACKENDS}")
    if backend != "auto":
        return backend
    where = platform()
    if where == "tpu":
        return "splash"
    if where == "gpu" and jnp.dtype(dtype).itemsize == 2:  # cuDNN's flash kernels are 16-bit only
        return "cudnn"
    return "xla"


def attend(q: Array, k: Array, v: Array, mask: Mask, backend: str) -> Array:
    """q [B, T, N, H], k/v [B, T, K, H] (N % K == 0) -> [B, T, N, H] through a fused kernel;
    `backend` is "splash" or "cudnn"."""
    kernel = {"splash": _splash, "cudnn": _cudnn}[backend]
    if mask.window is None or mask.local is None:
        return kernel(q, k, v, mask)
    # ModernBERT: the layer's flag picks global or windowed attention; one branch runs
    full = dataclasses.replace(mask, window=None, local=None)
    windowed = dataclasses.replace(mask, local=None)
    return jax.lax.cond(mask.local, lambda *a: kernel(*a, windowed), lambda *a: kernel(*a, full), q, k, v)


# --- splash (TPU) -----------------------------------------------------------------------------

_LANES = 128  # splash tiles the sequence in multiples of 128


def splash_block(length: int) -> int:
    """The splash tile: the largest of 512, 256, 128 dividing the (128-padded) length."""
    return next(b for b in (512, 256, 128) if length % b == 0)


def _splash_kernel(length: int, heads: int, causal: bool, window: int | None, interpret: bool):
    from jax.experimental.pallas.ops.tpu import splash_attention as sa  # noqa: PLC0415  (Pallas TPU)

    shape = (length, length)
    if causal:
        one = sa.CausalMask(shape)
    elif window is not None:
        one = sa.LocalMask(shape, window_size=(window, window), offset=0)
    else:
        one = sa.FullMask(shape)
    b = splash_block(length)
    blocks = sa.BlockSizes(block_q=b, block_kv=b, block_kv_compute=b, block_q_dkv=b, block_kv_dkv=b,
                           block_kv_dkv_compute=b, use_fused_bwd_kernel=True)
    # built inside the trace that uses it: its mask tables become constants of that program
    return sa.make_splash_mha(sa.MultiHeadMask([one] * heads), block_sizes=blocks, head_shards=1,
                              q_seq_shards=1, interpret=interpret)


def _splash(q, k, v, mask: Mask):
    from jax.experimental.pallas.ops.tpu.splash_attention import SegmentIds  # noqa: PLC0415

    B, T, N, H = q.shape
    K = k.shape[2]
    pad = -T % _LANES
    # padding tokens get segment 0, real ones 1: a real query never sees padding
    segments = jnp.pad(mask.valid.astype(jnp.int32), ((0, 0), (0, pad)))
    heads_first = lambda x: jnp.pad(x, ((0, 0), (0, pad), (0, 0), (0, 0))).transpose(0, 2, 1, 3)  # noqa: E731
    q = heads_first(q * jnp.asarray(H ** -0.5, q.dtype))  # the kernel does not scale
    k, v = heads_first(k), heads_first(v)
    interpret = platform() != "tpu"

    def run(q, k, v, segments):
        kernel = _splash_kernel(T + pad, q.shape[1], mask.causal, mask.window, interpret)
        return jax.vmap(kernel)(q, k, v, SegmentIds(segments, segments))

    mesh = jax.sharding.get_abstract_mesh()
    if mesh.empty:
        out = run(q, k, v, segments)
    else:  # Mosaic kernels are not partitioned automatically: each device runs its shard
        batch = mesh_lib.fit_names(("batch",), (B,), mesh)[0]
        heads = "heads" if mesh_lib.fit_names(("heads", "kv_heads"), (N, K), mesh) == ("heads", "kv_heads") else None
        spec = mesh_lib.logical_spec((batch, heads, None, None))
        out = jax.shard_map(run, mesh=mesh, in_specs=(spec, spec, spec, mesh_lib.logical_spec((batch, None))),
                            out_specs=spec, check_vma=False)(q, k, v, segments)
    return out.transpose(0, 2, 1, 3)[:, :T]


# --- cuDNN (GPU) ------------------------------------------------------------------------------

def _cudnn(q, k, v, mask: Mask):
    """cuDNN takes padding as per-row lengths of a valid prefix: each row's real span is rotated to
    the front (left padding becomes right padding; a no-op rotation for right padding) and back."""
    B, T = mask.valid.shape
    valid = mask.valid.astype(bool)
    lengths = valid.sum(-1).astype(jnp.int32)
    start = jnp.argmax(valid, axis=-1)
    index = (jnp.arange(T)[None] + start[:, None]) % T  # rotated slot i holds original slot index[i]
    rotate = lambda x, idx: jnp.take_along_axis(x, idx[:, :, None, None], axis=1)  # noqa: E731
    q, k, v = rotate(q, index), rotate(k, index), rotate(v, index)
    dense = None
    if mask.window is not None and not mask.causal:  # cuDNN windows are left-only: a ±window bias instead
        i = jnp.arange(T)
        dense = (jnp.abs(i[:, None] - i[None, :]) <= mask.window)[None, None]
    implementation = "cudnn" if platform() == "gpu" else "xla"
    out = jax.nn.dot_product_attention(q, k, v, mask=dense, is_causal=mask.causal, query_seq_lengths=lengths,
                                       key_value_seq_lengths=lengths, implementation=implementation)
    return rotate(out, (jnp.arange(T)[None] - start[:, None]) % T)

