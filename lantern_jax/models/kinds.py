"""Model kinds: the class each kind builds, and the kind of a built model."""
from __future__ import annotations

from flax import nnx

from lantern_jax.models.decoder import Decoder, DecoderLM
from lantern_jax.models.encoder import Classifier, Encoder

KINDS = ("lm", "decoder", "encoder", "classifier")
Model = DecoderLM | Decoder | Encoder | Classifier
_CLASSES = {"lm": DecoderLM, "decoder": Decoder, "encoder": Encoder, "classifier": Classifier}


def model_kind(model: Model) -> str:
    for kind, cls in _CLASSES.items():
        if isinstance(model, cls):
            return kind
    raise TypeError(f"not a lantern_jax model: {type(model).__name__}")


def build_model(kind: str, cfg, *, seed: int = 0) -> Model:
    return _CLASSES[kind](cfg, rngs=nnx.Rngs(seed))
