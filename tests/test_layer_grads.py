"""Hand-written backward passes in `models/layers.py` against autodiff of the textbook forms.

The attention core and LayerNorm carry custom VJPs (written for XLA CPU's kernels); the HF parity
tests check their forward outputs, these check their gradients.
"""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lantern_jax.models import layers as L

RNG = np.random.default_rng(0)


def reference_attention(q, k, v, mask):
    """softmax(q k^T / sqrt(H), masked) v, grouped-query, differentiated by autodiff."""
    B, T, N, H = q.shape
    K = k.shape[2]
    q = q.reshape(B, T, K, N // K, H) / np.sqrt(H)
    logits = jnp.einsum("btkgh,bskh->bkgts", q, k)
    logits = jnp.where(mask[:, :, None], logits, L.MASKED)
    out = jnp.einsum("bkgts,bskh->btkgh", jax.nn.softmax(logits, axis=-1), v)
    return out.reshape(B, T, N, H)


@pytest.mark.parametrize("heads,kv_heads,causal,query_rows", [(4, 4, False, False), (4, 4, False, True),
                                                              (6, 2, True, True)])
def test_attention_gradients_match_autodiff(heads, kv_heads, causal, query_rows):
    B, T, H = 3, 7, 8
    q = jnp.asarray(RNG.standard_normal((B, T, heads, H)), jnp.float32)
    k, v = (jnp.asarray(RNG.standard_normal((B, T, kv_heads, H)), jnp.float32) for _ in range(2))
    valid = jnp.asarray(np.arange(T)[None] < np.array([[7], [4], [1]]))
    mask = L.attention_mask(valid if query_rows else None, valid, causal=causal)  # [B,1,T|1,T]
    weight = jnp.asarray(RNG.standard_normal((B, T, heads, H)), jnp.float32) * valid[:, :, None, None]

    def loss(f):
        return lambda q, k, v: jnp.sum(f(q, k, v, mask) * weight)

    ours = jax.grad(loss(L.dot_product_attention), argnums=(0, 1, 2))(q, k, v)
    ref = jax.grad(loss(reference_attention), argnums=(0, 1, 2))(q, k, v)
    np.testing.assert_allclose(L.dot_product_attention(q, k, v, mask) * weight,
                               reference_attention(q, k, v, mask) * weight, atol=1e-5)
    for a, b, name in zip(ours, ref, "qkv"):
        np.testing.assert_allclose(a, b, atol=2e-5, err_msg=f"d{name}")


@pytest.mark.parametrize("use_bias", [True, False])
def test_layer_norm_gradients_match_autodiff(use_bias):
    x = jnp.asarray(RNG.standard_normal((2, 5, 16)) * 3 + 1, jnp.float32)
    scale = jnp.asarray(RNG.standard_normal(16), jnp.float32)
    bias = jnp.asarray(RNG.standard_normal(16), jnp.float32) if use_bias else None
    dy = jnp.asarray(RNG.standard_normal((2, 5, 16)), jnp.float32)

    def reference(x, scale, bias):
        mean = x.mean(-1, keepdims=True)
        y = (x - mean) * jax.lax.rsqrt(jnp.square(x - mean).mean(-1, keepdims=True) + 1e-12) * scale
        return y if bias is None else y + bias

    ours, vjp = jax.vjp(lambda x, s, b: L.layer_norm(x, s, b, 1e-12), x, scale, bias)
    ref, ref_vjp = jax.vjp(reference, x, scale, bias)
    np.testing.assert_allclose(ours, ref, atol=1e-5)
    for a, b in zip(jax.tree.leaves(vjp(dy)), jax.tree.leaves(ref_vjp(dy))):
        np.testing.assert_allclose(a, b, atol=1e-4)


def test_exact_gelu_is_the_erf_form():
    x = jnp.linspace(-8, 8, 1001, dtype=jnp.float32)
    np.testing.assert_allclose(L.gelu_exact(x), jax.nn.gelu(x, approximate=False), atol=2e-6)
    np.testing.assert_allclose(jax.vmap(jax.grad(L.gelu_exact))(x),
                               jax.vmap(jax.grad(lambda t: jax.nn.gelu(t, approximate=False)))(x),
                               atol=2e-6)
