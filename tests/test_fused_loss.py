"""The vocabulary-blocked LM-head loss (distill/fused_loss.py) against the sequence-chunked path
(distill/losses.py), values and gradients at fp32, with chunks and blocks that don't divide the
sequence or the vocabulary (their last slices overlap)."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from lantern_jax.config import train_config
from lantern_jax.distill import fused_loss as F
from lantern_jax.distill import losses, objectives
from lantern_jax.models.decoder import DecoderConfig, DecoderLM

RNG = np.random.default_rng(0)
B, T, D, V, K = 2, 13, 6, 37, 5
SIZES = dict(chunk_size=5, block_size=8)


def inputs(teacher_vocab=V):
    hidden = jnp.asarray(RNG.standard_normal((B, T, D)), jnp.float32)
    w = jnp.asarray(RNG.standard_normal((D, V)), jnp.float32)
    labels = jnp.asarray(RNG.integers(0, V, (B, T)), jnp.int32)
    mask = jnp.asarray(RNG.random((B, T)) > 0.3, jnp.float32)
    t_hidden = jnp.asarray(RNG.standard_normal((B, T, 4)), jnp.float32)
    t_w = jnp.asarray(RNG.standard_normal((4, teacher_vocab)) * 2, jnp.float32)
    return hidden, w, labels, mask, t_hidden, t_w


def reference(hidden, w, labels, mask, teacher, name, **kw):
    """λ_sft·CE + λ_kd·KD through losses.fused_divergence (sequence chunks, full vocabulary)."""
    w_kd, w_ce = kw.pop("kd_weight"), kw.pop("ce_weight")
    out = losses.fused_divergence(name, hidden, w, teacher, mask, labels=labels, chunk_size=4, **kw)
    return w_kd * out.kd + w_ce * out.ce, out


def check(ours_fn, ref_fn, hidden, w):
    (loss, metrics), grads = jax.jit(jax.value_and_grad(ours_fn, argnums=(0, 1), has_aux=True))(hidden, w)
    (ref_loss, ref), ref_grads = jax.jit(jax.value_and_grad(ref_fn, argnums=(0, 1), has_aux=True))(hidden, w)
    np.testing.assert_allclose(loss, ref_loss, rtol=2e-5)
    np.testing.assert_allclose(metrics["kd"], ref.kd, rtol=2e-5, atol=1e-7)
    np.testing.assert_allclose(metrics["ce"], ref.ce, rtol=2e-5)
    for a, b, name in zip(grads, ref_grads, ("hidden", "unembedding")):
        np.testing.assert_allclose(a, b, rtol=2e-4, atol=2e-6, err_msg=name)


@pytest.mark.parametrize("name,params", [("forward_kl", {}), ("reverse_kl", {}), ("tvd", {}),
                                         ("jsd", {"beta": 0.3}), ("skew_kl", {"alpha": 0.1}),
                                         ("skew_reverse_kl", {"alpha": 0.2})])
def test_dense_teacher_head_matches_the_chunked_path(name, params):
    """Online KD: the teacher as hidden states and an unembedding with a wider vocabulary."""
    hidden, w, labels, mask, t_hidden, t_w = inputs(teacher_vocab=V + 3)
    kw = dict(temperature=2.0, kd_weight=0.7 * 4, ce_weight=0.5, **params)
    t_logits = jnp.einsum("btd,dv->btv", t_hidden, t_w)[..., :V]  # what objectives.match_vocab gives
    check(lambda h, u: F.lm_head_loss(h, u, labels, mask, teacher=F.Head(t_hidden, t_w), divergence=name,
                                      params=params, **{k: v for k, v in kw.items() if k not in params}, **SIZES),
          lambda h, u: reference(h, u, labels, mask, t_logits, name, **kw), hidden, w)


@pytest.mark.parametrize("estimator", ["renorm", "tail"])
def test_sparse_top_k_teacher_matches_the_chunked_path(estimator):
    hidden, w, labels, mask, _, _ = inputs()
    ids = jnp.asarray(np.stack([RNG.permutation(V)[:K] for _ in range(B * T)]).reshape(B, T, K), jnp.int32)
    logprobs = jax.nn.log_softmax(jnp.asarray(RNG.standard_normal((B, T, V)) * 2, jnp.float32))
    top = losses.TopK(ids, jnp.take_along_axis(logprobs, ids, -1))
    kw = dict(temperature=1.5, kd_weight=1.3, ce_weight=0.4, estimator=estimator)
    check(lambda h, u: F.lm_head_loss(h, u, labels, mask, teacher=top, divergence="tvd", **kw, **SIZES),
          lambda h, u: reference(h, u, labels, mask, top, "tvd", **kw), hidden, w)


def test_dense_teacher_logits_and_global_normaliser():
    hidden, w, labels, mask, t_hidden, t_w = inputs()
    t_logits = jnp.einsum("btd,dv->btv", t_hidden, t_w)
    kw = dict(kd_weight=1.0, ce_weight=1.0, num_valid=40.0)
    check(lambda h, u: F.lm_head_loss(h, u, labels, mask, teacher=t_logits, **kw, **SIZES),
          lambda h, u: reference(h, u, labels, mask, t_logits, "forward_kl", **kw), hidden, w)


def test_cross_entropy_alone_with_label_smoothing():
    hidden, w, labels, mask, _, _ = inputs()

    def ref(h, u):
        ce = losses.fused_cross_entropy(h, u, labels, mask, label_smoothing=0.1, chunk_size=4)
        return ce, losses.KDLosses(jnp.zeros(()), ce)

    check(lambda h, u: F.lm_head_loss(h, u, labels, mask, label_smoothing=0.1, **SIZES), ref, hidden, w)


def test_bf16_operands_accumulate_in_fp32_and_return_fp32_weight_gradients():
    hidden, w, labels, mask, t_hidden, t_w = inputs(teacher_vocab=V)
    fn = lambda h, u: F.lm_head_loss(h, u, labels, mask, teacher=F.Head(t_hidden.astype(jnp.bfloat16), t_w),  # noqa: E731
                                     divergence="tvd", **SIZES)[0]
    loss, (dh, dw) = jax.value_and_grad(fn, argnums=(0, 1))(hidden.astype(jnp.bfloat16), w)
    ref = reference(hidden, w, labels, mask, jnp.einsum("btd,dv->btv", t_hidden, t_w), "tvd",
                    kd_weight=1.0, ce_weight=1.0)[0]
    assert dh.dtype == jnp.bfloat16 and dw.dtype == jnp.float32
    np.testing.assert_allclose(loss, ref, rtol=2e-2)
    # the head's products take bf16 operands into fp32 [rows, chunk, block] logits; no [.., V] logits
    dots = [line for line in jax.jit(fn).lower(hidden.astype(jnp.bfloat16), w).as_text().splitlines()
            if "dot_general" in line]
    assert any("tensor<2x5x8xf32>" in d and "bf16" in d for d in dots)
    assert not any(f"x{V}xf32>" in d.rpartition("->")[2] and "2x" in d.rpartition("->")[2] for d in dots)


def test_lm_head_choice():
    assert not F.blocked("auto") and F.blocked("blocked") and not F.blocked("chunked")  # CPU: auto is chunked
    with pytest.raises(ValueError, match="'fused' is not one of"):
        F.blocked("fused")


@pytest.mark.parametrize("task,online", [("explainer_kd", True), ("explainer_kd", False), ("teacher_sft", False)])
def test_objectives_give_the_same_loss_and_gradients_through_either_head(task, online):
    """`loss.lm_head=blocked` against `chunked` in the objectives themselves: an online teacher with a
    wider vocabulary, the offline top-k, and SFT's cross-entropy."""
    small = dict(hidden_size=16, num_layers=1, num_heads=2, num_kv_heads=1, intermediate_size=32)
    student = DecoderLM(DecoderConfig(vocab_size=24, **small), rngs=nnx.Rngs(0))
    teacher = DecoderLM(DecoderConfig(vocab_size=32, **small), rngs=nnx.Rngs(1)) if online else None
    ids = jnp.asarray(RNG.integers(0, 24, (2, 6)), jnp.int32)
    batch = {"input_ids": ids, "attention_mask": jnp.ones_like(ids), "labels": jnp.roll(ids, -1, 1),
             "loss_mask": jnp.asarray(RNG.random((2, 6)) > 0.2, jnp.float32)}
    if task == "explainer_kd" and not online:
        batch["teacher_ids"] = jnp.asarray(RNG.integers(0, 24, (2, 6, 3)), jnp.int32)
        batch["teacher_logprobs"] = jnp.log(jnp.full((2, 6, 3), 0.3, jnp.float32))
    results = {}
    for head in ("chunked", "blocked"):
        cfg = train_config(task)
        cfg.loss.update(lm_head=head, **({"divergence": "tvd", "temperature": 2.0, "estimator": "tail"}
                                         if task == "explainer_kd" else {}))
        objective = objectives.for_config(cfg)
        fn = lambda m: objective.loss(m, batch, 0, jnp.float32(9), teacher)  # noqa: E731
        results[head] = nnx.value_and_grad(fn, has_aux=True)(student)
    (loss, metrics), grads = results["blocked"]
    (ref_loss, ref_metrics), ref_grads = results["chunked"]
    np.testing.assert_allclose(loss, ref_loss, rtol=1e-5)
    for k in ref_metrics:
        np.testing.assert_allclose(metrics[k], ref_metrics[k], rtol=1e-5, err_msg=k)
    for a, b in zip(jax.tree.leaves(grads), jax.tree.leaves(ref_grads)):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
