"""Linear-probe head init for a pretrained classifier (LP-FT, Kumar et al., ICLR 2022).

A randomly initialised head on a few hundred fit labels spends the first fine-tuning steps (and
the backbone's pretrained features) learning the class prior; here the head starts as the
softmax regression fitted on the frozen backbone's features of the training examples, so
fine-tuning starts above chance and moves the backbone less. The regression is small (hidden
size x 3) and solved exactly with L-BFGS on the host in float64.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jax.experimental.multihost_utils import process_allgather
from scipy import optimize


def fit_softmax_regression(x: np.ndarray, targets: np.ndarray, l2: float = 1.0, *,
                           bias: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """W [D, C], b [C] minimising mean soft cross-entropy(targets, softmax(x W + b)) + l2/2n |W|²
    on standardised features; returned in the raw features' units. `bias=False` (a head without
    one) fits b = 0 and scales the features without centring them."""
    x = np.asarray(x, np.float64)
    targets = np.asarray(targets, np.float64)
    n, d = x.shape
    c = targets.shape[1]
    mu, sd = (x.mean(0) if bias else np.zeros(d)), x.std(0) + 1e-6
    z = (x - mu) / sd

    def loss_and_grad(w):
        kernel, b = w[:d * c].reshape(d, c), w[d * c:]
        logits = z @ kernel + b
        logits -= logits.max(1, keepdims=True)
        logp = logits - np.log(np.exp(logits).sum(1, keepdims=True))
        loss = -(targets * logp).sum() / n + l2 * (kernel ** 2).sum() / (2 * n)
        g = (np.exp(logp) - targets) / n  # d loss / d logits (targets sum to 1)
        return loss, np.concatenate([(z.T @ g + l2 * kernel / n).ravel(), g.sum(0) if bias else np.zeros(c)])

    w = optimize.minimize(loss_and_grad, np.zeros(d * c + c), jac=True, method="L-BFGS-B",
                          options={"maxiter": 500}).x
    kernel, b = w[:d * c].reshape(d, c), w[d * c:]
    return kernel / sd[:, None], b - (mu / sd) @ kernel


def probe_targets(batch, lambda_hard: float, lambda_soft: float) -> np.ndarray:
    """The classifier loss's own mix of hard and soft labels, as one target distribution."""
    hard = np.eye(batch["soft_label"].shape[-1])[np.asarray(batch["label"])]
    total = lambda_hard + lambda_soft
    if total <= 0:
        raise ValueError("probe init: loss.lambda_hard + loss.lambda_soft must be > 0")
    return (lambda_hard * hard + lambda_soft * np.asarray(batch["soft_label"])) / total


def init_head(model, batches, place, *, lambda_hard: float, lambda_soft: float, l2: float = 100.0) -> dict:
    """Sets `model.out` to the probe fitted on `batches` (host batches; `place` makes them global
    arrays); returns the probe's training accuracy and example count."""
    features = nnx.jit(lambda m, ids, mask: m.features(ids, mask))
    xs, ts = [], []
    for b in batches:  # every process fits the same head: on all processes' examples
        g = place({k: b[k] for k in ("input_ids", "attention_mask")})
        xs.append(np.asarray(process_allgather(features(model, g["input_ids"], g["attention_mask"]), tiled=True),
                             np.float64))
        ts.append(np.asarray(process_allgather(probe_targets(b, lambda_hard, lambda_soft), tiled=True)))
    x, t = np.concatenate(xs), np.concatenate(ts)
    out = model.out
    has_bias = getattr(out, "bias", None) is not None
    kernel, bias = fit_softmax_regression(x, t, l2, bias=has_bias)
    out.kernel.value = jax.device_put(jnp.asarray(kernel, out.kernel.value.dtype), out.kernel.value.sharding)
    if has_bias:
        out.bias.value = jax.device_put(jnp.asarray(bias, out.bias.value.dtype), out.bias.value.sharding)
    accuracy = float(((x @ kernel + bias).argmax(1) == t.argmax(1)).mean())
    return {"probe_examples": len(x), "probe_train_accuracy": accuracy}
