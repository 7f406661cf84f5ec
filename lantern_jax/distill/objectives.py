"""Training objectives as small strategy classes; the trainer (`train.py`) holds only the loop.

Each objective owns what differs between tasks: its config checks, the dataset it reads and the
batch fields it needs, the teacher run inside the step (if any), its loss and metrics, and the
normaliser its means use.

- TeacherSFT (teacher_sft): cross-entropy on the assessment tokens only.
- ExplainerKD (explainer_kd): λ_sft·CE + λ_kd·T²·Σ_t d(p_T, p_S) / N over assessment tokens, the
  teacher being dense logits (online: a teacher model whose forward runs in the same jitted step
  under stop_gradient) or its stored top-k (offline: D_t). Student logits are built from the
  final hidden states chunk by chunk (`losses.fused_divergence`) or, on accelerators, vocabulary
  block by block in the compute dtype (`fused_loss`; `loss.lm_head`, which SFT's CE follows too).
- ClassifierKD (classifier_kd): λ_hard·CE(label smoothing) + λ_soft·T²·KL(soft labels)
  [+ λ_ordinal·EMD].

Every token / example mean is normalised by the *global* count of valid positions in the step's
whole batch (`valid_count`), so micro-batches and devices sum to the full-batch loss.
"""
from __future__ import annotations

from typing import ClassVar

import jax
import jax.numpy as jnp
import ml_collections
import optax

from lantern_jax.config import ConfigError, one_of, require
from lantern_jax.distill import fused_loss, losses
from lantern_jax.models import sources

SCHEDULES = ("constant", "linear", "cosine")


def schedule(spec) -> optax.Schedule:
    """A float (constant) or {kind, start, end, steps}: linear or cosine from start to end."""
    if isinstance(spec, ml_collections.ConfigDict):
        spec = spec.to_dict()
    if isinstance(spec, (int, float)):
        return optax.constant_schedule(float(spec))
    kind = spec["kind"]
    if kind == "constant":
        return optax.constant_schedule(float(spec["start"]))
    if kind == "linear":
        return optax.linear_schedule(spec["start"], spec["end"], max(int(spec["steps"]), 1))
    if kind == "cosine":
        start, end = float(spec["start"]), float(spec["end"])
        if not start:
            return optax.constant_schedule(0.0)
        return optax.cosine_decay_schedule(start, max(int(spec["steps"]), 1), alpha=end / start)
    raise ValueError(f"unknown schedule kind {kind!r}; expected one of {SCHEDULES}")


def match_vocab(teacher_logits: jax.Array, vocab_size: int) -> jax.Array:
    """Teacher logits over the student's vocabulary. Models sharing a tokenizer may pad their
    embedding tables differently (Qwen2.5-7B: 152,064 rows, 1.5B/0.5B: 151,936); rows past the
    tokenizer are never targets, so the teacher's extra columns are cut."""
    if teacher_logits.shape[-1] < vocab_size:
        raise ValueError(f"online teacher vocabulary ({teacher_logits.shape[-1]}) is smaller than the "
                         f"student's ({vocab_size}): online KD needs one shared tokenizer")
    return teacher_logits[..., :vocab_size]


class Objective:
    """One training task. `cfg` is the whole train config; `loss` runs inside the jitted step."""

    task: ClassVar[str]
    model_kind: ClassVar[str] = "lm"
    # metrics that are schedule values, not sums: averaged (not summed) over micro-batches
    averaged_metrics: ClassVar[tuple[str, ...]] = ()

    def __init__(self, cfg: ml_collections.ConfigDict):
        self.cfg = cfg

    def validate(self, earlier_stages: tuple[str, ...] | None = None) -> None:
        """Task-specific config checks (ConfigError naming the key), before anything is built."""

    @property
    def topk(self) -> int:
        """Teacher top-k entries per token the input pipeline must provide (0: none)."""
        return 0

    def teacher_section(self) -> ml_collections.ConfigDict | None:
        """The model section of a teacher that runs inside the step, or None."""
        return None

    def valid_count(self, batch) -> jax.Array:
        """The normaliser: valid target tokens in the batch."""
        return jnp.sum(batch["loss_mask"])

    def loss(self, model, batch, step, num_valid, teacher=None) -> tuple[jax.Array, dict]:
        raise NotImplementedError


class TeacherSFT(Objective):
    task = "teacher_sft"

    def validate(self, earlier_stages=None):
        one_of(self.cfg, "loss.lm_head", fused_loss.HEADS)

    def loss(self, model, batch, step, num_valid, teacher=None):
        hidden = model.model(batch["input_ids"], batch["attention_mask"])
        if fused_loss.blocked(self.cfg.loss.lm_head):
            ce, _ = fused_loss.lm_head_loss(hidden, model.unembedding(), batch["labels"], batch["loss_mask"],
                                            num_valid=num_valid)
            return ce, {"ce": ce}
        ce = losses.fused_cross_entropy(hidden, model.unembedding(), batch["labels"], batch["loss_mask"],
                                        num_valid=num_valid)
        return ce, {"ce": ce}


class ExplainerKD(Objective):
    task = "explainer_kd"
    averaged_metrics = ("lambda_kd", "temperature")

    @property
    def online(self) -> bool:
        return self.cfg.teacher.mode == "online"

    def validate(self, earlier_stages=None):
        cfg = self.cfg
        one_of(cfg, "teacher.mode", ("offline", "online"))
        one_of(cfg, "loss.divergence", sorted(losses.DIVERGENCES))
        one_of(cfg, "loss.estimator", losses.ESTIMATORS)
        one_of(cfg, "loss.lm_head", fused_loss.HEADS)
        for param in losses.DIVERGENCES[cfg.loss.divergence].params:
            value = cfg.loss[param]
            require(isinstance(value, (int, float)) and 0.0 <= value <= 1.0,
                    f"config key 'loss.{param}' must be in [0, 1], got {value!r}")
        if self.online:
            require(bool(cfg.teacher.source), "config key 'teacher.source': online KD needs a teacher")
            sources.parse(cfg.teacher.source, "teacher.source", earlier_stages=earlier_stages)
        else:
            require(cfg.data.topk > 0, "config key 'data.topk': offline KD needs the teacher's top-k")

    @property
    def topk(self) -> int:
        return 0 if self.online else self.cfg.data.topk

    def teacher_section(self):
        """The online teacher's model section: the student's, with the teacher's source, stored and
        run in `teacher.dtype` (it is never updated) and without remat (it has no backward pass)."""
        if not self.online:
            return None
        cfg = self.cfg
        return ml_collections.ConfigDict({**cfg.model.to_dict(), "source": cfg.teacher.source,
                                          "dtype": cfg.teacher.dtype, "param_dtype": cfg.teacher.dtype,
                                          "remat": "none"})

    def loss(self, model, batch, step, num_valid, teacher=None):
        cfg = self.cfg.loss
        T = schedule(cfg.temperature)(step)
        lam_sft, lam_kd = schedule(cfg.lambda_sft)(step), schedule(cfg.lambda_kd)(step)
        blocked = fused_loss.blocked(cfg.lm_head)
        if teacher is not None and blocked:  # its logits are made block by block inside the loss
            target = fused_loss.Head(teacher.model(batch["input_ids"], batch["attention_mask"]), teacher.unembedding())
            match_vocab(target.unembedding, model.cfg.vocab_size)  # the same check (its cut columns go unread)
        elif teacher is not None:
            target = jax.lax.stop_gradient(teacher(batch["input_ids"], batch["attention_mask"]))
            target = match_vocab(target, model.cfg.vocab_size)
        else:
            target = losses.TopK(batch["teacher_ids"], batch["teacher_logprobs"])
        params = {p: float(cfg[p]) for p in losses.DIVERGENCES[cfg.divergence].params}
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


class ClassifierKD(Objective):
    task = "classifier_kd"
    model_kind = "classifier"

    def valid_count(self, batch):
        return jnp.asarray(batch["label"].shape[0], jnp.float32)

    def loss(self, model, batch, step, num_valid, teacher=None):
        cfg = self.cfg.loss
        T = schedule(cfg.temperature)(step)
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


OBJECTIVES: dict[str, type[Objective]] = {o.task: o for o in (TeacherSFT, ExplainerKD, ClassifierKD)}


def for_config(cfg: ml_collections.ConfigDict) -> Objective:
    """The objective of a train config (`cfg.task`), ConfigError for an unknown task."""
    if cfg.task not in OBJECTIVES:
        raise ConfigError(f"config key 'task': {cfg.task!r} is not one of {list(OBJECTIVES)}")
    return OBJECTIVES[cfg.task](cfg)
