"""Fused attention backends (models/attention.py) against the xla reference path, on CPU.

splash runs the Pallas TPU kernel in interpret mode here; cudnn runs its wrapper (padding as
lengths of a rotated prefix, ±window as a bias) through XLA's implementation of
`jax.nn.dot_product_attention`. Outputs and gradients are compared on real tokens only: padding
queries attend to different things by design (attention.py docstring).
"""
import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from jax.sharding import AbstractDevice, AbstractMesh, AxisType

from lantern_jax import mesh as mesh_lib
from lantern_jax.models import attention as A
from lantern_jax.models import hf
from lantern_jax.models import layers as L
from lantern_jax.models.decoder import DecoderConfig
from lantern_jax.models.encoder import ClassifierConfig, EncoderConfig

RNG = np.random.default_rng(0)
B, T, N, K, H = 2, 40, 4, 2, 16  # grouped-query: 2 query heads per key/value head


def padded(left: bool) -> jnp.ndarray:
    valid = np.ones((B, T), bool)
    valid[0, 31:] = False  # right padding
    if left:
        valid[1, :9] = False  # left padding, as a generation batch has
    return jnp.asarray(valid)


def masks(valid):
    positions = L.positions_from_mask(valid)
    return {"decoder causal": A.Mask(valid, causal=True),
            "bert keys-only": A.Mask(valid, padded_queries_see_self=False),
            "modernbert local": A.Mask(valid, positions, window=5, local=jnp.asarray(True)),
            "modernbert global": A.Mask(valid, positions, window=5, local=jnp.asarray(False))}


@pytest.mark.parametrize("backend", ["splash", "cudnn"])
@pytest.mark.parametrize("kind", ["decoder causal", "bert keys-only", "modernbert local", "modernbert global"])
def test_kernel_matches_the_reference_values_and_gradients(backend, kind):
    valid = padded(left=True)
    mask = masks(valid)[kind]
    q = jnp.asarray(RNG.standard_normal((B, T, N, H)), jnp.float32)
    k, v = (jnp.asarray(RNG.standard_normal((B, T, K, H)), jnp.float32) for _ in range(2))
    weight = jnp.asarray(RNG.standard_normal((B, T, N, H)), jnp.float32) * valid[:, :, None, None]

    def loss(f):
        return lambda q, k, v: jnp.sum(f(q, k, v) * weight)

    ours = lambda q, k, v: A.attend(q, k, v, mask, backend)  # noqa: E731
    ref = lambda q, k, v: L.dot_product_attention(q, k, v, L.dense_mask(mask))  # noqa: E731
    both = jax.jit(lambda q, k, v: [(f(q, k, v) * weight, jax.grad(loss(f), (0, 1, 2))(q, k, v)) for f in (ours, ref)])
    (out, grads), (ref_out, ref_grads) = both(q, k, v)
    np.testing.assert_allclose(out, ref_out, atol=2e-6)
    for a, b, name in zip(grads, ref_grads, "qkv"):
        np.testing.assert_allclose(a, b, atol=2e-5, err_msg=f"d{name}")


def test_the_window_is_what_the_reference_masks():
    """A ±window kernel and the dense reference mask the same pairs (here with full-width keys)."""
    valid = jnp.ones((1, T), bool)
    mask = A.Mask(valid, L.positions_from_mask(valid), window=3, local=jnp.asarray(True))
    i = np.arange(T)
    np.testing.assert_array_equal(L.dense_mask(mask)[0, 0], np.abs(i[:, None] - i[None]) <= 3)
    # value v_j = one-hot(j): each output row is the attention distribution over keys
    v = jnp.eye(T, dtype=jnp.float32)[None, :, None, :]
    q = k = jnp.zeros((1, T, 1, T), jnp.float32)
    for backend in ("splash", "cudnn"):
        probs = A.attend(q, k, v, mask, backend)[0, :, 0]
        np.testing.assert_allclose(probs > 0, np.abs(i[:, None] - i[None]) <= 3)


def test_splash_runs_sharded_over_the_mesh():
    """Under a mesh the kernel runs in shard_map: batch over data x fsdp, heads over tensor."""
    mesh = mesh_lib.make_mesh({"data": 2, "fsdp": 2, "tensor": 2})
    valid = jnp.asarray(np.arange(T)[None] < np.array([[T], [T], [25], [T]]))
    mask = A.Mask(valid, causal=True)
    q = jnp.asarray(RNG.standard_normal((4, T, N, H)), jnp.float32)
    k, v = (jnp.asarray(RNG.standard_normal((4, T, K, H)), jnp.float32) for _ in range(2))
    with jax.set_mesh(mesh):
        out = jax.jit(lambda q, k, v: A.attend(q, k, v, mask, "splash"))(q, k, v)
        text = jax.jit(lambda q, k, v: A.attend(q, k, v, mask, "splash")).lower(q, k, v).as_text()
    assert "shard_map" in text or "sdy.manual_computation" in text
    ref = L.dot_product_attention(q, k, v, L.dense_mask(mask))
    np.testing.assert_allclose(out * valid[:, :, None, None], ref * valid[:, :, None, None], atol=2e-6)


def test_auto_picks_the_platform_kernel():
    assert A.resolve("auto", jnp.bfloat16) == "xla"  # CPU
    for platform, dtype, want in (("tpu", jnp.float32, "splash"), ("gpu", jnp.bfloat16, "cudnn"),
                                  ("gpu", jnp.float32, "xla")):
        mesh = AbstractMesh((1,), ("data",), axis_types=(AxisType.Auto,),
                            abstract_device=AbstractDevice(device_kind="x", num_cores=1, platform=platform))
        with jax.sharding.use_abstract_mesh(mesh):
            assert A.resolve("auto", dtype) == want
    assert A.resolve("splash", jnp.float32) == "splash"
    with pytest.raises(ValueError, match="'flash' is not one of"):
        A.resolve("flash", jnp.float32)


def _decoder(attention):
    return DecoderConfig(vocab_size=64, hidden_size=32, num_layers=2, num_heads=4, num_kv_heads=2,
                         intermediate_size=48, scan_layers=True, attention=attention)


def _modernbert(attention):
    return ClassifierConfig(EncoderConfig(vocab_size=64, hidden_size=32, num_layers=2, num_heads=4,
                                          intermediate_size=48, family="modernbert", local_attention=8,
                                          global_attn_every_n_layers=2, scan_layers=True, attention=attention))


@pytest.mark.slow  # ~40 s each on 2 busy cores: three backends compiled, two in Pallas interpret mode
@pytest.mark.parametrize("family", ["decoder", "modernbert"])
def test_models_train_the_same_with_every_backend(family):
    """Scanned models: the loss and every parameter gradient agree across backends (ModernBERT's
    scan switches between global and windowed kernels per layer; BERT's keys-only mask is covered
    kernel by kernel above)."""
    make, kind = {"decoder": (_decoder, "lm"), "modernbert": (_modernbert, "classifier")}[family]
    ids = jnp.asarray(RNG.integers(0, 64, (B, T)), jnp.int32)
    valid = padded(left=family == "decoder")

    def loss(model):
        out = model(ids, valid)
        if kind == "lm":  # real tokens only: padding positions read different keys by design
            return jnp.sum(jnp.where(valid[..., None], out, 0.0) ** 2) / 1e3
        return jnp.sum(out ** 2)

    results = {}
    for backend in ("xla", "splash", "cudnn"):
        model = hf.build_model(kind, make(backend), seed=0)
        results[backend] = nnx.jit(nnx.value_and_grad(loss))(model)
    (ref_loss, ref_grads) = results["xla"]
    for backend in ("splash", "cudnn"):
        value, grads = results[backend]
        np.testing.assert_allclose(value, ref_loss, rtol=1e-5, err_msg=backend)
        for path, a, b in zip(jax.tree_util.tree_leaves_with_path(grads), jax.tree.leaves(grads),
                              jax.tree.leaves(ref_grads)):
            np.testing.assert_allclose(a, b, atol=1e-5, rtol=1e-4, err_msg=f"{backend} {path[0]}")


def test_the_config_key_reaches_every_attention_layer():
    cfg = dataclasses.replace(_decoder("splash"), scan_layers=False)
    model = hf.build_model("lm", cfg, seed=0)
    assert {block.attn.backend for block in model.model.layers.blocks} == {"splash"}
