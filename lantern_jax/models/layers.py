"""Building blocks shared by the encoder and decoder families.

Every parameter carries logical axis names (see `mesh.RULES`); under `jax.set_mesh(mesh)` it is
born sharded. Parameters are stored in `param_dtype` and cast to the compute `dtype` at use;
normalisation statistics, softmax and RoPE angles are computed in at least float32 (float64 when
the model runs in float64, which the parity tests use to check the math without rounding noise).
"""
from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from lantern_jax import mesh as mesh_lib
from lantern_jax.models import attention as attention_lib

Array = jax.Array
MASKED = -0.7 * float(jnp.finfo(jnp.float32).max)  # finite: fully masked rows give no NaNs


def wide(x: Array) -> Array:
    """x in at least float32."""
    return x.astype(jnp.promote_types(x.dtype, jnp.float32))


def param(rngs: nnx.Rngs | None, init: Callable, shape: Sequence[int],
          names: Sequence[str | None], dtype=jnp.float32) -> nnx.Param:
    """A parameter annotated with logical axis names, sharded eagerly when a mesh is active."""
    shape = tuple(shape)
    value = init(rngs.params(), shape, dtype) if rngs is not None else jnp.zeros(shape, dtype)
    active = not jax.sharding.get_abstract_mesh().empty
    return nnx.Param(value, out_sharding=mesh_lib.fit_names(names, shape),
                     sharding_rules=mesh_lib.RULES, eager_sharding=active)


normal = jax.nn.initializers.normal
zeros = jax.nn.initializers.zeros
ones = jax.nn.initializers.ones


def matmul(x: Array, w: Array) -> Array:
    """x [..., K] @ w [K, N], computed as one 2-D matmul over the flattened leading axes.

    Same result as `jnp.dot(x, w)`, but its weight gradient is then the plain x^T dy: autodiff of
    the batched form makes XLA CPU transpose dy in memory first and run a slower kernel, which
    slows the whole training step (docs/benchmarks.md, CPU kernels).
    """
    *lead, k = x.shape
    return jnp.dot(x.reshape(-1, k), w).reshape(*lead, w.shape[-1])


def matvec(x: Array, w: Array, splits: int = 2) -> Array:
    """x [K] @ w [K, N] as `splits` products over slices of K, summed (w's reshape is free).

    XLA:CPU runs one matrix-vector dot on one thread; batched into independent slices it spreads
    them over the cores. Batch-1 decoding is bound by reading the weights, so using every core to
    read them makes it faster (docs/benchmarks.md, generation).
    """
    k, n = w.shape
    if k % splits:
        return x @ w
    parts = jax.lax.dot_general(x.reshape(splits, 1, k // splits), w.reshape(splits, k // splits, n),
                                (((2,), (1,)), ((0,), (0,))),
                                preferred_element_type=jnp.promote_types(x.dtype, jnp.float32))
    return parts.sum(0)[0].astype(x.dtype)  # partial sums added before rounding to bf16


class Dense(nnx.Module):
    """y = x @ kernel (+ bias); kernel is [in, out] (the transpose of a torch Linear weight)."""

    def __init__(self, d_in: int, d_out: int, names: tuple[str | None, str | None], *,
                 use_bias: bool, rngs: nnx.Rngs, dtype=jnp.float32, param_dtype=jnp.float32,
                 init_std: float = 0.02):
        self.dtype = dtype
        self.kernel = param(rngs, normal(init_std), (d_in, d_out), names, param_dtype)
        self.bias = param(rngs, zeros, (d_out,), names[1:], param_dtype) if use_bias else None

    def __call__(self, x: Array) -> Array:
        x, kernel = x.astype(self.dtype), self.kernel[...].astype(self.dtype)
        if x.size == x.shape[-1] and jax.default_backend() == "cpu":  # one row: batch-1 decoding
            y = matvec(x.reshape(-1), kernel).reshape(*x.shape[:-1], -1)
        else:
            y = matmul(x, kernel).astype(self.dtype)  # a float32 LoRA term (lantern_jax.lora) joins here
        if self.bias is not None:
            y = y + self.bias[...].astype(self.dtype)
        return y


class Embed(nnx.Module):
    def __init__(self, num: int, dim: int, names: tuple[str | None, str | None], *,
                 rngs: nnx.Rngs, dtype=jnp.float32, param_dtype=jnp.float32, init_std: float = 0.02):
        self.dtype = dtype
        self.embedding = param(rngs, normal(init_std), (num, dim), names, param_dtype)

    def __call__(self, ids: Array) -> Array:
        return jnp.take(self.embedding[...], ids, axis=0).astype(self.dtype)

    def attend(self, x: Array) -> Array:
        """Logits against the table (tied output embeddings)."""
        return matmul(x.astype(self.dtype), self.embedding[...].astype(self.dtype).T)


class LayerNorm(nnx.Module):
    def __init__(self, dim: int, *, eps: float, use_bias: bool, rngs: nnx.Rngs,
                 dtype=jnp.float32, param_dtype=jnp.float32):
        self.eps, self.dtype = eps, dtype
        self.scale = param(rngs, ones, (dim,), ("norm",), param_dtype)
        self.bias = param(rngs, zeros, (dim,), ("norm",), param_dtype) if use_bias else None

    def __call__(self, x: Array) -> Array:
        x = wide(x)
        bias = None if self.bias is None else self.bias[...].astype(x.dtype)
        return layer_norm(x, self.scale[...].astype(x.dtype), bias, self.eps).astype(self.dtype)


@functools.partial(jax.custom_vjp, nondiff_argnums=(3,))
def layer_norm(x: Array, scale: Array, bias: Array | None, eps: float) -> Array:
    """(x - mean) / sqrt(var + eps) * scale + bias over the last axis, variance two-pass.

    The backward pass is the closed form dx = rstd * (g - mean(g) - xhat * mean(g * xhat)) with
    g = dy * scale: the same math as autodiff's, in fewer passes over the activations.
    """
    return _layer_norm_fwd(x, scale, bias, eps)[0]


def _layer_norm_fwd(x, scale, bias, eps):
    centred = x - x.mean(-1, keepdims=True)
    rstd = jax.lax.rsqrt(jnp.square(centred).mean(-1, keepdims=True) + eps)
    xhat = centred * rstd
    y = xhat * scale if bias is None else xhat * scale + bias
    return y, (xhat, rstd, scale, bias)


def _layer_norm_bwd(eps, res, dy):
    xhat, rstd, scale, bias = res
    g = dy * scale
    dx = rstd * (g - g.mean(-1, keepdims=True) - xhat * (g * xhat).mean(-1, keepdims=True))
    batch_axes = tuple(range(dy.ndim - 1))
    d_bias = None if bias is None else dy.sum(batch_axes)
    return dx, (dy * xhat).sum(batch_axes), d_bias


layer_norm.defvjp(_layer_norm_fwd, _layer_norm_bwd)


class RMSNorm(nnx.Module):
    def __init__(self, dim: int, *, eps: float, rngs: nnx.Rngs, dtype=jnp.float32,
                 param_dtype=jnp.float32):
        self.eps, self.dtype = eps, dtype
        self.scale = param(rngs, ones, (dim,), ("norm",), param_dtype)

    def __call__(self, x: Array) -> Array:
        x32 = wide(x)
        y = x32 * jax.lax.rsqrt(jnp.square(x32).mean(-1, keepdims=True) + self.eps)
        # Llama/Qwen2 cast back to the activation dtype before the scale; keep that rounding order.
        return self.scale[...].astype(self.dtype) * y.astype(self.dtype)


def gelu_exact(x: Array) -> Array:
    """x * Phi(x) with the erf form, as torch's exact GELU computes it (jax.nn.gelu's exact form
    goes through erfc, which XLA CPU evaluates with two branches and a select)."""
    return x * 0.5 * (1.0 + jax.lax.erf(x * jnp.asarray(0.5 ** 0.5, x.dtype)))


ACTIVATIONS: dict[str, Callable[[Array], Array]] = {
    "gelu": gelu_exact,  # HF "gelu" is the exact erf form
    "gelu_new": lambda x: jax.nn.gelu(x, approximate=True),
    "gelu_pytorch_tanh": lambda x: jax.nn.gelu(x, approximate=True),
    "silu": jax.nn.silu,
    "relu": jax.nn.relu,
    "tanh": jnp.tanh,
}


def activation(name: str) -> Callable[[Array], Array]:
    if name not in ACTIVATIONS:
        raise ValueError(f"unsupported activation {name!r}; supported: {sorted(ACTIVATIONS)}")
    return ACTIVATIONS[name]


# --- positions, masks, rotary embeddings ------------------------------------------------------

def positions_from_mask(mask: Array) -> Array:
    """Token positions that ignore padding: 0, 1, ... over valid tokens, for left or right padding."""
    return jnp.maximum(jnp.cumsum(mask.astype(jnp.int32), axis=-1) - 1, 0)


def rope_tables(positions: Array, head_dim: int, theta: float) -> tuple[Array, Array]:
    """cos/sin [B, T, head_dim] (HF layout: frequencies repeated over both halves).

    Always float32, as transformers computes them whatever the model dtype.
    """
    inv_freq = 1.0 / (theta ** (jnp.arange(0, head_dim, 2, dtype=jnp.float32) / head_dim))
    angles = positions.astype(jnp.float32)[..., None] * inv_freq
    angles = jnp.concatenate([angles, angles], axis=-1)
    return jnp.cos(angles), jnp.sin(angles)


def apply_rope(x: Array, cos: Array, sin: Array) -> Array:
    """Rotates x [B, T, N, H] by position (rotate-half convention of HF Llama/Qwen2/ModernBERT)."""
    x32 = wide(x)
    half = x.shape[-1] // 2
    rotated = jnp.concatenate([-x32[..., half:], x32[..., :half]], axis=-1)
    out = x32 * cos[:, :, None, :] + rotated * sin[:, :, None, :]
    return out.astype(x.dtype)


def attention_mask(q_valid: Array | None, kv_valid: Array, *, causal: bool,
                   q_index: Array | None = None, kv_index: Array | None = None,
                   window: int | None = None) -> Array:
    """Boolean mask [B, 1, T, S]: which keys each query may attend to.

    `kv_valid` [B, S] marks real (non-padding) keys. `q_index` [B, T] / `kv_index` [B, S] are the
    positions used for causality and sliding windows (slot indices in a KV cache).
    """
    B, S = kv_valid.shape
    if kv_index is None:
        kv_index = jnp.broadcast_to(jnp.arange(S), (B, S))
    if q_index is None:
        q_index = kv_index
    mask = kv_valid[:, None, None, :].astype(bool)
    if causal:
        mask = mask & (kv_index[:, None, None, :] <= q_index[:, None, :, None])
    if window is not None:
        mask = mask & (jnp.abs(q_index[:, None, :, None] - kv_index[:, None, None, :]) <= window)
    if q_valid is not None:
        # Padded queries attend to themselves only, so their (ignored) outputs stay finite.
        eye = q_index[:, None, :, None] == kv_index[:, None, None, :]
        mask = jnp.where(q_valid[:, None, :, None].astype(bool), mask, eye)
    return mask


def dense_mask(m: attention_lib.Mask) -> Array:
    """The [B, 1, T, T] boolean mask an `attention.Mask` describes, for the xla path."""
    q_valid = m.valid if m.padded_queries_see_self else None
    full = attention_mask(q_valid, m.valid, causal=m.causal, kv_index=m.positions)
    if m.window is None:
        return full
    windowed = attention_mask(q_valid, m.valid, causal=m.causal, kv_index=m.positions, window=m.window)
    return windowed if m.local is None else jnp.where(m.local, windowed, full)


def dot_product_attention(q: Array, k: Array, v: Array, mask: Array, *, heads_first: bool = False) -> Array:
    """Grouped-query attention. q [B,T,N,H], k/v [B,S,K,H] with N % K == 0, mask [B,1|K,T|1,S].

    Computed head-major, the G = N // K query heads sharing a key head folded into the query
    axis ([B, K, G*T, H] queries, [B, K, S, H] keys/values), with the mask as an additive bias
    (0 or MASKED: the same probabilities as masking the logits), through `_attention`'s
    hand-written backward pass. A [B, 1, 1, S] key-padding mask is the cheapest: per-query rows
    are materialised for every head. `heads_first`: k/v are already [B, K, S, H] (a KV cache).
    """
    B, T, N, H = q.shape
    K = k.shape[1 if heads_first else 2]
    G = N // K
    q = q * jnp.asarray(H ** -0.5, q.dtype)
    q = q.reshape(B, T, K, G, H).transpose(0, 2, 3, 1, 4).reshape(B, K, G * T, H)
    if not heads_first:
        k, v = k.transpose(0, 2, 1, 3), v.transpose(0, 2, 1, 3)
    bias = jnp.where(mask, 0.0, MASKED).astype(jnp.promote_types(q.dtype, jnp.float32))
    if bias.shape[2] > 1:  # per-query rows: repeat them for each query head of a group
        bias = jnp.broadcast_to(bias[:, :, None], (B, bias.shape[1], G, T, bias.shape[3]))
        bias = bias.reshape(B, bias.shape[1], G * T, bias.shape[4])
    out = _attention(q, k, v, bias)
    return out.reshape(B, K, G, T, H).transpose(0, 3, 1, 2, 4).reshape(B, T, N, H)


def _attention_forward(q: Array, k: Array, v: Array, bias: Array) -> tuple[Array, Array]:
    """softmax(q k^T + bias) v on head-major inputs; returns (out, probabilities)."""
    logits = jnp.einsum("bkth,bksh->bkts", q, k, preferred_element_type=bias.dtype) + bias
    probs = jax.nn.softmax(logits, axis=-1)
    return jnp.einsum("bkts,bksh->bkth", probs.astype(v.dtype), v), probs


@jax.custom_vjp
def _attention(q: Array, k: Array, v: Array, bias: Array) -> Array:
    """Attention core with the backward pass written out (same math as autodiff's).

    Autodiff of the textbook form made XLA CPU copy the [T, S] probabilities and their gradients
    into transposed layouts for dK = dS^T q and dV = P^T dOut, and reduce over dP * P for the
    softmax backward. Here the softmax backward uses the row sums of dOut * Out (equal to those
    of dP * P, as in FlashAttention) and dK, dV are computed transposed, as [H, S] products with
    the [T, S] operand on the right, so only the small [T, H] operands get transposed, which makes
    the attention step (forward + backward) much faster on CPU (docs/benchmarks.md, CPU kernels).
    """
    return _attention_forward(q, k, v, bias)[0]


def _attention_fwd(q, k, v, bias):
    out, probs = _attention_forward(q, k, v, bias)
    return out, (q, k, v, out, probs)


def _attention_bwd(res, d_out):
    q, k, v, out, probs = res
    wide_t = probs.dtype
    d_probs = jnp.einsum("bkth,bksh->bkts", d_out, v, preferred_element_type=wide_t)
    row = jnp.sum(d_out.astype(wide_t) * out.astype(wide_t), axis=-1, keepdims=True)
    d_logits = probs * (d_probs - row)
    d_q = jnp.einsum("bkts,bksh->bkth", d_logits.astype(q.dtype), k)
    d_kT = jnp.einsum("bkht,bkts->bkhs", q.swapaxes(-1, -2), d_logits.astype(q.dtype))
    d_vT = jnp.einsum("bkht,bkts->bkhs", d_out.swapaxes(-1, -2), probs.astype(v.dtype))
    return d_q, d_kT.swapaxes(-1, -2), d_vT.swapaxes(-1, -2), None


_attention.defvjp(_attention_fwd, _attention_bwd)


@jax.tree_util.register_dataclass
@dataclasses.dataclass
class KVCache:
    """Preallocated keys/values of one attention layer: [B, K, S_max, H]; `index` is the next slot.

    Head-major, as attention reads it: a decode step attends over the whole cache without
    transposing it (a copy per layer per token). A plain pytree, so the decoder can carry one per
    layer through `lax.scan`.
    """
    k: Array
    v: Array
    index: Array  # int32 scalar

    @classmethod
    def zeros(cls, batch: int, length: int, kv_heads: int, head_dim: int, dtype) -> KVCache:
        shape = (batch, kv_heads, length, head_dim)
        return cls(jnp.zeros(shape, dtype), jnp.zeros(shape, dtype), jnp.zeros((), jnp.int32))

    def update(self, k: Array, v: Array) -> KVCache:
        """Writes k/v [B, T, K, H] at slots index .. index + T - 1."""
        at = (0, 0, self.index, 0)
        write = lambda c, x: jax.lax.dynamic_update_slice(c, x.transpose(0, 2, 1, 3).astype(c.dtype), at)  # noqa: E731
        return KVCache(write(self.k, k), write(self.v, v), self.index + k.shape[1])


class Attention(nnx.Module):
    """Multi-head / grouped-query self-attention with optional RoPE and KV cache.

    Queries, keys and values have separate projections (HF layout); the mask is built by the
    caller, so the same module serves bidirectional, causal, sliding-window and cached decoding.
    """

    def __init__(self, dim: int, num_heads: int, num_kv_heads: int, head_dim: int, *,
                 qkv_bias: bool, out_bias: bool, rngs: nnx.Rngs, dtype=jnp.float32,
                 param_dtype=jnp.float32, init_std: float = 0.02, backend: str = "xla"):
        kw = dict(rngs=rngs, dtype=dtype, param_dtype=param_dtype, init_std=init_std)
        self.num_heads, self.num_kv_heads, self.head_dim = num_heads, num_kv_heads, head_dim
        self.backend = backend  # attention.BACKENDS; "auto" is resolved when traced
        self.q = Dense(dim, num_heads * head_dim, ("embed", "heads"), use_bias=qkv_bias, **kw)
        self.k = Dense(dim, num_kv_heads * head_dim, ("embed", "kv_heads"), use_bias=qkv_bias, **kw)
        self.v = Dense(dim, num_kv_heads * head_dim, ("embed", "kv_heads"), use_bias=qkv_bias, **kw)
        self.o = Dense(num_heads * head_dim, dim, ("heads", "embed"), use_bias=out_bias, **kw)

    def __call__(self, x: Array, mask: Array | attention_lib.Mask, rope: tuple[Array, Array] | None = None,
                 cache: KVCache | None = None) -> tuple[Array, KVCache | None]:
        B, T, _ = x.shape
        q = self.q(x).reshape(B, T, self.num_heads, self.head_dim)
        k = self.k(x).reshape(B, T, self.num_kv_heads, self.head_dim)
        v = self.v(x).reshape(B, T, self.num_kv_heads, self.head_dim)
        if rope is not None:
            q, k = apply_rope(q, *rope), apply_rope(k, *rope)
        decode = cache is not None and T == 1
        if cache is not None:
            cache = cache.update(k, v)
            if decode:  # attend over the whole cache (the mask hides unwritten slots)
                k, v = cache.k.astype(q.dtype), cache.v.astype(q.dtype)
            # prefill (into an empty cache): the prompt attends to itself only, mask [B, 1, T, T]
        if isinstance(mask, attention_lib.Mask):
            backend = attention_lib.resolve(self.backend, q.dtype)
            if backend != "xla" and cache is None:
                out = attention_lib.attend(q, k, v, mask, backend)
                return self.o(out.reshape(B, T, self.num_heads * self.head_dim)), cache
            mask = dense_mask(mask)
        out = dot_product_attention(q, k, v, mask, heads_first=decode)
        return self.o(out.reshape(B, T, self.num_heads * self.head_dim)), cache


# --- layer stacks (unrolled or scanned, with remat) -------------------------------------------

# On XLA:CPU remat only holds memory down under `scan`: with the stack unrolled the scheduler
# runs every layer's recomputation early and keeps it, so an unrolled remat stack needs about as
# much memory as no remat at all (compiled memory_analysis of a SmolLM2 SFT step:
# docs/benchmarks.md, memory).
REMAT_POLICIES: dict[str, Any] = {
    "none": None,  # no rematerialisation
    "full": jax.checkpoint_policies.nothing_saveable,
    "dots": jax.checkpoint_policies.dots_saveable,
    "dots_no_batch": jax.checkpoint_policies.dots_with_no_batch_dims_saveable,
}


def _rematted(fn: Callable, policy: str) -> Callable:
    if policy not in REMAT_POLICIES:
        raise ValueError(f"unsupported remat policy {policy!r}; supported: {sorted(REMAT_POLICIES)}")
    return fn if policy == "none" else jax.checkpoint(fn, policy=REMAT_POLICIES[policy])


class LayerStack(nnx.Module):
    """`num` blocks of identical structure, applied in order.

    Unscanned, the blocks are an `nnx.List`; scanned, one block holds parameters stacked on a
    leading "layers" axis and runs under `lax.scan` (one compiled body, needed for deep models on
    TPU). Both call each block as `block(x, layer_input, *args) -> (x, layer_output)`, where
    `layer_input` is this layer's slice of `per_layer` (e.g. a KV cache or a local/global flag).
    """

    def __init__(self, make_block: Callable[[nnx.Rngs], nnx.Module], num: int, *, rngs: nnx.Rngs,
                 scan: bool = False, remat: str = "none"):
        self.num, self.scan, self.remat = num, scan, remat
        if scan:
            @nnx.split_rngs(splits=num)
            @nnx.vmap(in_axes=(0,), out_axes=0, transform_metadata={nnx.PARTITION_NAME: "layers"})
            def make_stacked(r):
                return make_block(r)
            self.blocks = make_stacked(rngs)
        else:
            self.blocks = nnx.List([make_block(rngs) for _ in range(num)])

    def __call__(self, x: Array, *args, per_layer: Any = None) -> tuple[Array, Any]:
        """`per_layer`: arrays stacked on a leading layer axis, or (unscanned) a tuple with one
        entry per layer, returned as a tuple too: per-layer buffers (KV caches) are then updated
        in place inside a decode loop instead of being re-stacked every step."""
        if self.scan:
            graphdef, state = nnx.split(self.blocks)

            def step(x, xs):
                layer_state, layer_input = xs
                return nnx.merge(graphdef, layer_state)(x, layer_input, *args)
            return jax.lax.scan(_rematted(step, self.remat), x, (state, per_layer))

        outputs = []
        as_tuple = isinstance(per_layer, (tuple, list))
        for i, block in enumerate(self.blocks):
            layer_input = (per_layer[i] if as_tuple else
                           None if per_layer is None else jax.tree.map(lambda a: a[i], per_layer))
            if self.remat == "none":
                x, out = block(x, layer_input, *args)
            else:  # remat needs a pure function of the block's parameters
                graphdef, state = nnx.split(block)
                step = lambda x, s, li: nnx.merge(graphdef, s)(x, li, *args)  # noqa: E731
                x, out = _rematted(step, self.remat)(x, state, layer_input)
            outputs.append(out)
        if as_tuple or outputs[0] is None:
            return x, tuple(outputs) if as_tuple else None
        return x, jax.tree.map(lambda *a: jnp.stack(a), *outputs)
