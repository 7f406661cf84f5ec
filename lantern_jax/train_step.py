"""The pieces of a training step: the optimizer, the jitted train / eval steps (with gradient
accumulation), and the FLOP accounting behind tokens/s and MFU. With LoRA (`lantern_jax.lora`) the
optimizer, the gradients and the accounting cover the adapters only."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_collections
import optax
from flax import nnx

from lantern_jax import lora
from lantern_jax.distill import objectives

# Dense bf16 peak FLOP/s per chip, for MFU.
PEAK_FLOPS = {"TPU v4": 275e12, "TPU v5 lite": 197e12, "TPU v5e": 197e12, "TPU v5p": 459e12,
              "TPU v6 lite": 918e12, "NVIDIA H100": 989e12, "NVIDIA H200": 989e12,
              "NVIDIA A100": 312e12}


def param_count(model) -> int:
    return sum(x.size for x in jax.tree.leaves(nnx.state(model, nnx.Param)))


def flops_per_token(model, seq_len: int, *, training: bool) -> float:
    """2N per token forward (6N with backward), N = parameters in matmuls (the input embedding
    is a gather and doesn't count, a tied unembedding does), plus attention's T-dependent matmuls.
    LoRA's frozen base gets no weight gradient: 4N for it, 6N for the adapters."""
    cfg = getattr(model.cfg, "backbone", model.cfg)
    D, L = cfg.hidden_size, cfg.num_layers
    n = param_count(model) - cfg.vocab_size * D
    if getattr(cfg, "tie_word_embeddings", False) and not hasattr(model.cfg, "backbone"):
        n += cfg.vocab_size * D
    attention = 2 * 2 * L * seq_len * D  # q·k and p·v per token, forward
    forward = 2 * n + attention
    if not training:
        return forward
    adapters = sum(x.size for x in jax.tree.leaves(nnx.state(model, nnx.LoRAParam)))
    frozen = n - adapters if adapters else 0  # LoRA's base: no weight gradient, 2N less
    return 3 * forward - 2 * frozen


def optimizer_for(model, ocfg: ml_collections.ConfigDict, steps: int) -> nnx.Optimizer:
    lr = optax.warmup_cosine_decay_schedule(
        0.0, ocfg.lr, min(ocfg.warmup_steps, max(steps - 1, 1)), max(steps, 2),
        end_value=ocfg.lr * ocfg.min_lr_ratio)
    decay_mask = lambda params: jax.tree.map(lambda p: p.ndim >= 2, params)  # not norms, biases
    tx = optax.chain(optax.clip_by_global_norm(ocfg.clip_norm),
                     optax.adamw(lr, b1=ocfg.b1, b2=ocfg.b2, weight_decay=ocfg.weight_decay,
                                 mask=decay_mask))
    return nnx.Optimizer(model, tx, wrt=lora.trainable(model))  # LoRA: the adapters only


def make_steps(cfg: ml_collections.ConfigDict, objective: objectives.Objective | None = None):
    """(train_step, eval_step), jitted. The train step donates the model and optimizer (updated in
    place); an online teacher is an argument of the step, run under stop_gradient inside it, and
    donated too: nnx.jit hands every module argument's state back, so undonated the teacher would
    come back as a copy each step (`lantern_jax.aot` shows it: outputs - aliased = the metrics)."""
    objective = objective or objectives.for_config(cfg)
    accum = cfg.optim.grad_accum

    def loss_and_grads(model, batch, step, num_valid, teacher, wrt):
        def loss_fn(m, b):
            return objective.loss(m, b, step, num_valid, teacher)

        if accum == 1:
            return nnx.value_and_grad(loss_fn, argnums=nnx.DiffState(0, wrt), has_aux=True)(model, batch)
        # Micro-batch a takes rows a, a+A, a+2A, ...: every micro-batch spans all data shards.
        micro = jax.tree.map(lambda x: x.reshape(x.shape[0] // accum, accum, *x.shape[1:]).swapaxes(0, 1),
                             batch)
        graphdef, params, rest = nnx.split(model, wrt, ...)

        def one(carry, mb):
            (loss, metrics), grads = jax.value_and_grad(
                lambda p: loss_fn(nnx.merge(graphdef, p, rest), mb), has_aux=True)(params)
            return jax.tree.map(jnp.add, carry, ((loss, metrics), grads)), None

        zero = jax.eval_shape(lambda: jax.value_and_grad(
            lambda p: loss_fn(nnx.merge(graphdef, p, rest), jax.tree.map(lambda x: x[0], micro)),
            has_aux=True)(params))
        zero = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), zero)
        (loss, metrics), grads = jax.lax.scan(one, zero, micro)[0]
        # schedule values (lambda, temperature) were summed over micro-batches: average them back
        metrics = {k: v / accum if k in objective.averaged_metrics else v for k, v in metrics.items()}
        return (loss, metrics), grads

    @nnx.jit(donate_argnums=(0, 1, 4))
    def train_step(model, optimizer, batch, step, teacher=None):
        num_valid = objective.valid_count(batch)
        (loss, metrics), grads = loss_and_grads(model, batch, step, num_valid, teacher, optimizer.wrt)
        optimizer.update(model, grads)
        return {**metrics, "loss": loss, "grad_norm": optax.global_norm(grads), "valid": num_valid}

    @nnx.jit
    def eval_step(model, batch, teacher=None):
        num_valid = objective.valid_count(batch)
        loss, metrics = objective.loss(model, batch, jnp.asarray(0), num_valid, teacher)
        return {**metrics, "loss": loss, "valid": num_valid}

    return train_step, eval_step
