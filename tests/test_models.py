"""Model behaviour beyond parity: padding sides, scanned layers, remat, KV cache, clear errors."""
import dataclasses
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from lantern_jax.models import hf, hf_config
from lantern_jax.models import layers as L
from lantern_jax.models.decoder import DecoderConfig, DecoderLM
from lantern_jax.models.encoder import Classifier, ClassifierConfig, Encoder, EncoderConfig
from lantern_jax.models.errors import CheckpointError

DEC = DecoderConfig(vocab_size=80, hidden_size=32, num_layers=3, num_heads=4, num_kv_heads=2,
                    intermediate_size=48, family="qwen2", qkv_bias=True, rope_theta=1e4)
BERT = EncoderConfig(vocab_size=80, hidden_size=32, num_layers=2, num_heads=4, intermediate_size=40)
MODERN = EncoderConfig(vocab_size=80, hidden_size=32, num_layers=4, num_heads=4, intermediate_size=40,
                       family="modernbert", local_attention=4, layer_norm_eps=1e-5)
LENGTHS = (9, 5, 2)


def batch(side: str, lengths=LENGTHS, T=None, seed=0):
    """ids/mask padded on `side`, plus the unpadded sequences."""
    rng = np.random.default_rng(seed)
    T = T or max(lengths)
    seqs = [rng.integers(1, 80, size=n) for n in lengths]
    ids = np.zeros((len(seqs), T), np.int32)
    mask = np.zeros_like(ids)
    for i, s in enumerate(seqs):
        sl = slice(0, len(s)) if side == "right" else slice(T - len(s), T)
        ids[i, sl], mask[i, sl] = s, 1
    return jnp.asarray(ids), jnp.asarray(mask), seqs


def valid_rows(out, mask, i):
    return np.asarray(out[i])[np.asarray(mask[i]).astype(bool)]


def make(cls, cfg, **kw):
    return cls(dataclasses.replace(cfg, **kw) if kw else cfg, rngs=nnx.Rngs(0))


# Jitted calls: eager op-by-op dispatch of a whole model is slower than compiling it on this CPU.
call = nnx.jit(lambda model, ids, mask: model(ids, mask))


@pytest.mark.parametrize("cfg,cls", [(DEC, DecoderLM), (BERT, Encoder), (MODERN, Encoder)],
                         ids=["decoder", "bert", "modernbert"])
def test_left_and_right_padding_give_unpadded_outputs(cfg, cls):
    model = make(cls, cfg)
    for side in ("left", "right"):
        ids, mask, seqs = batch(side)
        out = call(model, ids, mask)
        for i, s in enumerate(seqs):
            alone = call(model, jnp.asarray(s)[None], jnp.ones((1, len(s)), jnp.int32))[0]
            np.testing.assert_allclose(valid_rows(out, mask, i), np.asarray(alone), atol=1e-5)


@pytest.mark.parametrize("cfg,cls", [(DEC, DecoderLM), (MODERN, Encoder)], ids=["decoder", "modernbert"])
def test_scanned_layers_equal_unscanned_with_remat(cfg, cls):
    ids, mask, _ = batch("right")
    plain = make(cls, cfg)
    # Same weights: copy the unscanned blocks into the stacked layout through an HF export.
    scanned = hf.model_from_state(hf_config.config_to_hf(plain), dict(hf.hf_tensors(plain)),
                                  scan_layers=True, remat="full")
    leaf = jax.tree.leaves(nnx.state(scanned, nnx.Param))
    assert any(x.shape[0] == cfg.num_layers and x.ndim >= 2 for x in leaf)  # really stacked
    # slots no checkpoint tensor fills (ModernBERT's layer 0 has no attention norm) are finite too:
    # the layer's where() differentiates through them
    assert all(np.isfinite(np.asarray(x)).all() for x in leaf)

    def loss(model):
        return jnp.sum(jnp.square(model(ids, mask)) * mask[..., None])

    np.testing.assert_allclose(call(plain, ids, mask), call(scanned, ids, mask), atol=1e-5)
    grad = nnx.jit(nnx.grad(loss))
    g_plain = dict(hf.hf_tensors(_with_grads(plain, grad(plain))))
    g_scan = dict(hf.hf_tensors(_with_grads(scanned, grad(scanned))))
    for name in g_plain:
        np.testing.assert_allclose(g_plain[name], g_scan[name], atol=1e-4, err_msg=name)


def _with_grads(model, grads):
    """A copy of `model` whose parameters are its gradients (to reuse the HF name table)."""
    graphdef, _ = nnx.split(model)
    return nnx.merge(graphdef, grads)


@pytest.mark.parametrize("scan", [False, True])
def test_kv_cache_prefill_and_decode_equal_full_recompute(scan):
    model = make(DecoderLM, DEC, scan_layers=scan)
    ids, mask, _ = batch("left", lengths=(6, 3, 1))
    B, T = ids.shape
    steps, S = 4, T + 4
    new = jnp.asarray(np.random.default_rng(1).integers(1, 80, size=(B, steps)), jnp.int32)

    full_ids = jnp.concatenate([ids, new], axis=1)
    full_mask = jnp.concatenate([mask, jnp.ones((B, steps), jnp.int32)], axis=1)
    full = call(model, full_ids, full_mask)

    cache = model.model.init_cache(B, S)
    cache_mask = full_mask  # the caller knows the slots: prompt padding off, every new token on
    positions = jnp.maximum(jnp.cumsum(full_mask, axis=1) - 1, 0)

    @jax.jit
    def run(ids, positions, cache):
        return model(ids, cache_mask, positions=positions, cache=cache)

    logits, cache = run(ids, positions[:, :T], cache)
    np.testing.assert_allclose(np.asarray(logits)[np.asarray(mask) == 1],
                               np.asarray(full[:, :T])[np.asarray(mask) == 1], atol=1e-4)
    for t in range(steps):
        step_logits, cache = run(new[:, t:t + 1], positions[:, T + t:T + t + 1], cache)
        np.testing.assert_allclose(step_logits[:, 0], full[:, T + t], atol=1e-4)
    first = cache[0] if isinstance(cache, tuple) else cache  # per-layer tuple unless scanned
    assert int(np.asarray(first.index).ravel()[0]) == S


@pytest.mark.parametrize("d_in", [48, 33], ids=["split", "odd-width"])
def test_single_row_dense_equals_matmul(d_in):
    """One row (batch-1 decoding) takes `layers.matvec`'s split product: same values and gradients."""
    dense = L.Dense(d_in, 20, ("embed", "mlp"), use_bias=True, rngs=nnx.Rngs(0))
    dense.bias.value = jax.random.normal(jax.random.key(2), (20,))
    x = jax.random.normal(jax.random.key(1), (1, 1, d_in))
    kernel, bias = dense.kernel[...], dense.bias[...]
    np.testing.assert_allclose(dense(x), x @ kernel + bias, rtol=1e-5, atol=1e-6)
    grad_ours = jax.grad(lambda x: jnp.sum(jnp.sin(dense(x))))(x)
    grad_ref = jax.grad(lambda x: jnp.sum(jnp.sin(x @ kernel + bias)))(x)
    np.testing.assert_allclose(grad_ours, grad_ref, rtol=1e-5, atol=1e-6)
    assert dense(x[0]).shape == (1, 20) and dense(jnp.tile(x, (2, 3, 1))).shape == (2, 3, 20)
    half = L.Dense(d_in, 20, ("embed", "mlp"), use_bias=False, rngs=nnx.Rngs(0), dtype=jnp.bfloat16)
    y = half(x)
    assert y.dtype == jnp.bfloat16
    np.testing.assert_allclose(y.astype(jnp.float32), x @ kernel, rtol=2e-2, atol=2e-2)


def test_classifier_pooling_is_padding_side_invariant():
    (li, lm, _), (ri, rm, _) = batch("left"), batch("right")
    ids, mask = jnp.concatenate([li, ri]), jnp.concatenate([lm, rm])  # one compile per model
    for backbone in (BERT, DEC):
        for pooling in ("cls", "mean", "last_token"):
            clf = Classifier(ClassifierConfig(backbone, pooling=pooling), rngs=nnx.Rngs(1))
            logits = call(clf, ids, mask)
            assert logits.shape == (6, 3)
            np.testing.assert_allclose(logits[:3], logits[3:], atol=1e-5,
                                       err_msg=(backbone.family, pooling))


def test_bf16_compute_keeps_fp32_params_and_is_close():
    fp32 = make(DecoderLM, DEC)
    bf16 = hf.model_from_state(hf_config.config_to_hf(fp32), dict(hf.hf_tensors(fp32)), dtype="bfloat16")
    assert all(x.dtype == jnp.float32 for x in jax.tree.leaves(nnx.state(bf16, nnx.Param)))
    ids, mask, _ = batch("right")
    a, b = call(fp32, ids, mask), call(bf16, ids, mask)
    assert b.dtype == jnp.bfloat16
    assert float(jnp.max(jnp.abs(a - b.astype(jnp.float32)))) < 0.1 * float(jnp.max(jnp.abs(a)))


# --- clear errors ----------------------------------------------------------------------------

@pytest.fixture
def exported(tmp_path):
    path = tmp_path / "model"
    hf.save_hf(make(DecoderLM, DEC), path)
    return path


def one_line_error(fn, *needles):
    with pytest.raises(CheckpointError) as e:
        fn()
    msg = str(e.value)
    assert "\n" not in msg
    for n in needles:
        assert str(n) in msg, msg
    return msg


def test_error_folder_without_config(tmp_path):
    one_line_error(lambda: hf.load_hf(tmp_path), tmp_path, "config.json")


def test_error_unsupported_model_type(exported):
    cfg = json.loads((exported / "config.json").read_text())
    (exported / "config.json").write_text(json.dumps({**cfg, "model_type": "gpt2"}))
    one_line_error(lambda: hf.load_hf(exported), "gpt2", "model_type")


def test_error_missing_and_misshapen_tensors(exported, tmp_path):
    from safetensors.numpy import load_file, save_file
    tensors = load_file(exported / "model.safetensors")
    victim = "model.layers.1.self_attn.k_proj.weight"
    save_file({k: v for k, v in tensors.items() if k != victim}, exported / "model.safetensors")
    one_line_error(lambda: hf.load_hf(exported), victim, "missing")
    save_file({**tensors, victim: tensors[victim][:, :-1].copy()}, exported / "model.safetensors")
    one_line_error(lambda: hf.load_hf(exported), victim, "shape")


def test_error_corrupt_safetensors(exported):
    path = exported / "model.safetensors"
    path.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json")
    one_line_error(lambda: hf.load_hf(exported), "model.safetensors", "corrupt")


def test_error_no_tokenizer(tmp_path):
    one_line_error(lambda: hf.load_tokenizer(tmp_path), "tokenizer")


def test_keep_layers_cuts_a_student_from_its_teachers_layers(exported):
    """A student cut from a checkpoint: the kept layers renumbered in the order given, everything
    else as saved."""
    full = dict(hf.hf_tensors(hf.load_hf(exported)))
    keep = (DEC.num_layers - 1, 0)
    cut = hf.load_hf(exported, keep_layers=keep)
    assert cut.cfg.num_layers == 2
    mine = dict(hf.hf_tensors(cut))
    renamed = {name: name for name in full if ".layers." not in name}
    for new, old in enumerate(keep):
        renamed.update({name.replace(f".layers.{old}.", f".layers.{new}."): name
                        for name in full if f".layers.{old}." in name})
    assert set(mine) == set(renamed)
    for name, value in mine.items():
        np.testing.assert_array_equal(value, full[renamed[name]])
    one_line_error(lambda: hf.load_hf(exported, keep_layers=(0, DEC.num_layers)), "keep_layers",
                   f"its {DEC.num_layers} layers")
