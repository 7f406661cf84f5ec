"""Linear-probe head init (LP-FT): the softmax regression's numbers, and the head it writes."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lantern_jax import probe
from lantern_jax.models.kinds import build_model
from lantern_jax.models.encoder import ClassifierConfig, EncoderConfig


def softmax(z):
    z = z - z.max(1, keepdims=True)
    return np.exp(z) / np.exp(z).sum(1, keepdims=True)


def test_soft_targets_are_matched_in_raw_feature_units():
    # three groups of examples, one-hot features shifted and scaled (the fit standardises them
    # and must hand back weights for the raw units), each group with its own target distribution
    rng = np.random.default_rng(0)
    groups = rng.integers(0, 3, 300)
    x = np.eye(3)[groups] * 7.0 + 100.0 + rng.normal(0, 1e-3, (300, 3))
    dists = np.array([[0.7, 0.2, 0.1], [0.1, 0.6, 0.3], [0.25, 0.25, 0.5]])
    w, b = probe.fit_softmax_regression(x, dists[groups], l2=1e-4)
    np.testing.assert_allclose(softmax(x @ w + b), dists[groups], atol=2e-3)


def test_headless_bias_fits_through_the_origin():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 3, 200)
    x = rng.normal(0, 1, (200, 8)) + 3 * np.eye(3, 8)[y]
    w, b = probe.fit_softmax_regression(x, np.eye(3)[y], l2=1.0, bias=False)
    assert np.all(b == 0) and ((x @ w).argmax(1) == y).mean() > 0.9


def test_targets_mix_hard_and_soft_labels_like_the_loss():
    batch = {"label": np.array([0, 2]), "soft_label": np.array([[0.2, 0.5, 0.3], [0.0, 0.5, 0.5]])}
    np.testing.assert_allclose(probe.probe_targets(batch, 1.0, 1.0), [[0.6, 0.25, 0.15], [0.0, 0.25, 0.75]])
    np.testing.assert_allclose(probe.probe_targets(batch, 0.0, 1.0), batch["soft_label"])
    with pytest.raises(ValueError, match="lambda_hard"):
        probe.probe_targets(batch, 0.0, 0.0)


def test_init_head_writes_the_fitted_head_into_the_model():
    # label = which of three marker tokens the text holds: linear in a random encoder's mean-pooled
    # features, so the fitted head must classify the training batches
    enc = EncoderConfig(vocab_size=64, hidden_size=32, num_layers=1, num_heads=2, intermediate_size=64,
                        max_position_embeddings=32)
    model = build_model("classifier", ClassifierConfig(enc, pooling="mean"), seed=0)
    rng = np.random.default_rng(0)
    batches = []
    for _ in range(6):
        label = rng.integers(0, 3, 16)
        ids = rng.integers(10, 64, (16, 12)).astype(np.int32)
        ids[:, :4] = (label + 1)[:, None]  # marker tokens 1, 2, 3
        batches.append({"input_ids": ids, "attention_mask": np.ones_like(ids), "label": label,
                        "soft_label": np.eye(3)[label] * 0.8 + 0.2 / 3})
    before = np.asarray(model.out.kernel.value).copy()
    fitted = probe.init_head(model, batches, lambda b: {k: jnp.asarray(v) for k, v in b.items()},
                             lambda_hard=1.0, lambda_soft=1.0, l2=1.0)
    assert fitted["probe_examples"] == 96 and fitted["probe_train_accuracy"] > 0.9
    assert not np.allclose(before, np.asarray(model.out.kernel.value))
    pred = np.concatenate([np.asarray(jax.jit(lambda i, m: model(i, m))(b["input_ids"], b["attention_mask"])).argmax(1)
                           for b in batches])
    labels = np.concatenate([b["label"] for b in batches])
    assert (pred == labels).mean() == pytest.approx(fitted["probe_train_accuracy"], abs=1 / 96)
