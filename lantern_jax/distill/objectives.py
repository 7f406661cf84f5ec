"""Training objectives of the three tasks, with schedules for loss weights and temperature.

- teacher_sft: cross-entropy on the assessment tokens only.
- explainer_kd: λ_sft·CE + λ_kd·T²·Σ_t d(p_T, p_S) / N over assessment tokens, the teacher being
  dense logits (online, computed in the same step) or its stored top-k (offline, from D_t).
  Student logits are produced chunk by chunk from the final hidden states (`fused_divergence`).
- classifier_kd: λ_hard·CE(label smoothing) + λ_soft·T²·KL(soft labels) [+ λ_ordinal·EMD].

Every token / example mean is normalised by the *global* count of valid positions in the step's
whole batch (`num_valid`), so micro-batches and devices sum to the full-batch loss.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_collections
import optax

from lantern_jax.distill import fused_loss, losses

SCHEDULES = ("constant", "linear", "cosine")
DIVERGENCE_PARAMS = {"jsd": "beta", "skew_kl": "alpha", "skew_reverse_kl": "alpha"}


def schedule(spec) -> optax.Schedule:
    """A float (constant) or {kind, start, end, steps}: linear or cosine from start to end."""
    if isinstance(spec, (int, float)):
        return optax.constant_schedule(float(spec))
    kind = spec["kind"]
    if kind == "constant":
        return optax.constant_schedule(float(spec["start"]))
    if kind == "linear":
        return optax.linear_schedule(spec["start"], spec["end"], max(int(spec["steps"]), 1))
    if kind == "cosine":
        start, end = float(spec["start"]), float(spec["end"])
        alpha = end / start if start else 0.0
        return optax.cosine_decay_schedule(start, max(int(spec["steps"]), 1), alpha=alpha) if start else \
            optax.constant_schedule(0.0)
    raise ValueError(f"unknown schedule kind {kind!r}; expected one of {SCHEDULES}")


def _spec(value):
    return value.to_dict() if isinstance(value, ml_collections.ConfigDict) else value


def teacher_sft(model, batch, step, cfg, num_valid, teacher=None):
    del step, teacher
    hidden = model.model(batch["input_ids"], batch["attention_mask"])
    if fused_loss.blocked(cfg.lm_head):
        ce, _ = fused_loss.lm_head_loss(hidden, model.unembedding(), batch["labels"], batch["loss_mask"],
                                        num_valid=num_valid)
        return ce, {"ce": ce}
    ce = losses.fused_cross_entropy(hidden, model.unembedding(), batch["labels"], batch["loss_mask"],
                                    num_valid=num_valid)
    return ce, {"ce": ce}


def explainer_kd(model, batch, step, cfg, num_valid, teacher=None):
    """`teacher` is a teacher model (online) or None (offline: top-k in the batch)."""
    T = schedule(_spec(cfg.temperature))(step)
    lam_sft = schedule(_spec(cfg.lambda_sft))(step)
    lam_kd = schedule(_spec(cfg.lambda_kd))(step)
    blocked = fused_loss.blocked(cfg.lm_head)
    if teacher is not None and blocked:  # its logits are made block by block inside the loss
        target = fused_loss.Head(teacher.model(batch["input_ids"], batch["attention_mask"]), teacher.unembedding())
        match_vocab(target.unembedding, model.cfg.vocab_size)  # the same check (its cut columns go unread)
    elif teacher is not None:
        target = jax.lax.stop_gradient(teacher(batch["input_ids"], batch["attention_mask"]))
        target = match_vocab(target, model.cfg.vocab_size)
    else:
        target = losses.TopK(batch["teacher_ids"], batch["teacher_logprobs"])
    param = DIVERGENCE_PARAMS.get(cfg.divergence)
    params = {param: float(cfg[param])} if param else {}
    hidden = model.model(batch["input_ids"], batch["attention_mask"])
    if blocked:
        loss, out = fused_loss.lm_head_loss(hidden, model.unembedding(), batch["labels"], batch["loss_mask"],
                                            teacher=target, divergence=cfg.divergence, params=params,
                                            temperature=T, estimator=cfg.estimator, kd_weight=lam_kd * T ** 2,
                                            ce_weight=lam_sft, num_valid=num_valid, chunk_size=cfg.chunk_size)
        return loss, {**out, "lambda_kd": lam_kd, "temperature": T}
    out = losses.fused_divergence(cfg.divergence, hidden, model.unembedding(), target,
                                  batch["loss_mask"], T, labels=batch["labels"],
                                  estimator=cfg.estimator, num_valid=num_valid,
                                  chunk_size=cfg.chunk_size, **params)
    loss = lam_sft * out.ce + lam_kd * T ** 2 * out.kd
    return loss, {"ce": out.ce, "kd": out.kd, "lambda_kd": lam_kd, "temperature": T}


def match_vocab(teacher_logits: jax.Array, vocab_size: int) -> jax.Array:
    """Teacher logits over the student's vocabulary. Models sharing a tokenizer may pad their
    embedding tables differently (Qwen2.5-7B: 152,064 rows, 1.5B/0.5B: 151,936); rows past the
    tokenizer are never targets, so the teacher's extra columns are cut."""
    if teacher_logits.shape[-1] < vocab_size:
        raise ValueError(f"online teacher vocabulary ({teacher_logits.shape[-1]}) is smaller than the "
                         f"student's ({vocab_size}): online KD needs one shared tokenizer")
    return teacher_logits[..., :vocab_size]


def classifier_kd(model, batch, step, cfg, num_valid, teacher=None):
    del teacher
    T = schedule(_spec(cfg.temperature))(step)
    logits = model(batch["input_ids"], batch["attention_mask"])
    ones = jnp.ones(batch["label"].shape, jnp.float32)
    ce = losses.cross_entropy(logits, batch["label"], ones, label_smoothing=cfg.label_smoothing,
                              num_valid=num_valid)
    kl = losses.soft_label_kl(logits, batch["soft_label"], ones, temperature=T, num_valid=num_valid)
    loss = cfg.lambda_hard * ce + cfg.lambda_soft * T ** 2 * kl
    metrics = {"ce": ce, "soft_kl": kl,
               "accuracy": jnp.sum(jnp.argmax(logits, -1) == batch["label"]) / num_valid}
    if cfg.lambda_ordinal:
        emd = losses.ordinal_emd(logits, batch["soft_label"], ones, num_valid=num_valid)
        loss = loss + cfg.lambda_ordinal * emd
        metrics["ordinal_emd"] = emd
    return loss, metrics


OBJECTIVES = {"teacher_sft": teacher_sft, "explainer_kd": explainer_kd, "classifier_kd": classifier_kd}


def valid_count(task: str, batch) -> jax.Array:
    """The normaliser: valid target tokens (decoders) or examples (classifier) in the batch."""
    if task == "classifier_kd":
        return jnp.asarray(batch["label"].shape[0], jnp.float32)
    return jnp.sum(batch["loss_mask"])
