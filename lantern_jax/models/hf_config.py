"""Hugging Face config dicts <-> our model configs (Llama, Qwen2, BERT, ModernBERT, classifiers).

transformers' own config classes fill each family's defaults and normalise RoPE parameters, so a
config written here is one transformers reads back unchanged.
"""
from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import jax.numpy as jnp

from lantern_jax.models.decoder import DecoderConfig
from lantern_jax.models.encoder import ClassifierConfig, EncoderConfig
from lantern_jax.models.errors import CheckpointError
from lantern_jax.models.kinds import KINDS, Model, model_kind

log = logging.getLogger(__name__)

SUPPORTED_TYPES = ("bert", "modernbert", "llama", "qwen2")


def _kind_from_architectures(archs: list[str], model_type: str) -> str:
    arch = archs[0] if archs else ""
    if arch.endswith("ForSequenceClassification"):
        return "classifier"
    if model_type in ("llama", "qwen2"):
        return "decoder" if arch.endswith("Model") else "lm"
    return "encoder"  # BertModel, ModernBertModel, *ForMaskedLM (its MLM head is not loaded)


def config_from_hf(hf: Mapping[str, Any], *, kind: str | None = None, dtype=None,
                   param_dtype=None, source: str = "config") -> tuple[str, Any]:
    """(kind, our config) from an HF config dict. `kind` overrides what `architectures` says."""
    from transformers import AutoConfig  # noqa: PLC0415  (heavy import, kept out of import time)

    model_type = hf.get("model_type")
    if model_type not in SUPPORTED_TYPES:
        raise CheckpointError(f"{source}: unsupported model_type {model_type!r}; "
                              f"supported: {', '.join(SUPPORTED_TYPES)}")
    kind = kind or _kind_from_architectures(list(hf.get("architectures") or []), model_type)
    if kind not in KINDS:
        raise CheckpointError(f"{source}: unknown model kind {kind!r}; kinds: {KINDS}")
    c = AutoConfig.for_model(**dict(hf))  # fills the family's defaults, normalises rope params
    dt = {} if dtype is None else {"dtype": jnp.dtype(dtype).name}
    if param_dtype is not None:
        dt["param_dtype"] = jnp.dtype(param_dtype).name
    if model_type in ("llama", "qwen2"):
        rope = getattr(c, "rope_parameters", None) or {}
        if rope.get("rope_type", "default") != "default":
            raise CheckpointError(f"{source}: rope_type {rope.get('rope_type')!r} is not supported")
        if getattr(c, "use_sliding_window", False):
            raise CheckpointError(f"{source}: sliding-window Qwen2 attention is not supported")
        qwen = model_type == "qwen2"
        cfg = DecoderConfig(
            family=model_type, vocab_size=c.vocab_size, hidden_size=c.hidden_size,
            num_layers=c.num_hidden_layers, num_heads=c.num_attention_heads,
            num_kv_heads=c.num_key_value_heads or c.num_attention_heads,
            intermediate_size=c.intermediate_size,
            head_dim=getattr(c, "head_dim", None) or c.hidden_size // c.num_attention_heads,
            rope_theta=float(rope.get("rope_theta", getattr(c, "rope_theta", 10_000.0))),
            rms_norm_eps=c.rms_norm_eps, max_position_embeddings=c.max_position_embeddings,
            tie_word_embeddings=bool(c.tie_word_embeddings),
            qkv_bias=True if qwen else bool(c.attention_bias),
            out_bias=False if qwen else bool(c.attention_bias),
            mlp_bias=False if qwen else bool(getattr(c, "mlp_bias", False)),
            hidden_act=c.hidden_act, bos_token_id=c.bos_token_id, eos_token_id=c.eos_token_id,
            pad_token_id=c.pad_token_id, initializer_range=c.initializer_range, **dt)
    elif model_type == "bert":
        if getattr(c, "position_embedding_type", "absolute") != "absolute":
            raise CheckpointError(f"{source}: BERT position_embedding_type "
                                  f"{c.position_embedding_type!r} is not supported")
        cfg = EncoderConfig(
            family="bert", vocab_size=c.vocab_size, hidden_size=c.hidden_size,
            num_layers=c.num_hidden_layers, num_heads=c.num_attention_heads,
            intermediate_size=c.intermediate_size, max_position_embeddings=c.max_position_embeddings,
            type_vocab_size=c.type_vocab_size, layer_norm_eps=c.layer_norm_eps,
            hidden_act=c.hidden_act, pad_token_id=c.pad_token_id or 0,
            initializer_range=c.initializer_range, **dt)
    else:
        every = _global_every(list(c.layer_types), source)
        cfg = EncoderConfig(
            family="modernbert", vocab_size=c.vocab_size, hidden_size=c.hidden_size,
            num_layers=c.num_hidden_layers, num_heads=c.num_attention_heads,
            intermediate_size=c.intermediate_size, max_position_embeddings=c.max_position_embeddings,
            layer_norm_eps=c.norm_eps, hidden_act=c.hidden_activation,
            pad_token_id=c.pad_token_id or 0,
            global_rope_theta=float(c.rope_parameters["full_attention"]["rope_theta"]),
            local_rope_theta=float(c.rope_parameters["sliding_attention"]["rope_theta"]),
            local_attention=c.local_attention, global_attn_every_n_layers=every,
            norm_bias=c.norm_bias, attention_bias=c.attention_bias, mlp_bias=c.mlp_bias,
            initializer_range=c.initializer_range, **dt)
    if kind == "classifier":
        labels = hf.get("id2label") or {}
        labels = tuple(labels[k] for k in sorted(labels, key=int)) if labels else ("low", "medium", "high")
        extra = hf.get("lantern_classifier") or {}
        pooling = extra.get("pooling") or (hf.get("classifier_pooling") if model_type == "modernbert" else None)
        cfg = ClassifierConfig(backbone=cfg, num_classes=len(labels), labels=labels, pooling=pooling,
                               head=extra.get("head"), head_act=extra.get("head_act"))
    elif kind in ("lm", "decoder") and not isinstance(cfg, DecoderConfig):
        raise CheckpointError(f"{source}: kind {kind!r} needs a decoder, got model_type {model_type!r}")
    elif kind == "encoder" and isinstance(cfg, DecoderConfig):
        kind = "decoder"
    return kind, cfg


def _global_every(layer_types: list[str], source: str) -> int:
    """ModernBERT's layer pattern as 'every n-th layer is global', the only pattern we build."""
    globals_ = [i for i, t in enumerate(layer_types) if t == "full_attention"]
    every = globals_[1] if len(globals_) > 1 else len(layer_types)
    if [t == "full_attention" for t in layer_types] != [i % every == 0 for i in range(len(layer_types))]:
        raise CheckpointError(f"{source}: ModernBERT layer_types {layer_types} are not a "
                              "'global every n-th layer' pattern")
    return every


def config_to_hf(model: Model) -> dict[str, Any]:
    """The HF config dict describing `model`, built with transformers' own config classes."""
    from transformers import AutoConfig  # noqa: PLC0415

    cfg = model.cfg
    clf = cfg if isinstance(cfg, ClassifierConfig) else None
    b = clf.backbone if clf else cfg
    if isinstance(b, DecoderConfig):
        prefix = "Qwen2" if b.family == "qwen2" else "Llama"
        fields = dict(model_type=b.family, vocab_size=b.vocab_size, hidden_size=b.hidden_size,
                      intermediate_size=b.intermediate_size, num_hidden_layers=b.num_layers,
                      num_attention_heads=b.num_heads, num_key_value_heads=b.num_kv_heads,
                      head_dim=b.dims_per_head, hidden_act=b.hidden_act,
                      max_position_embeddings=b.max_position_embeddings,
                      rms_norm_eps=b.rms_norm_eps, tie_word_embeddings=b.tie_word_embeddings,
                      rope_parameters={"rope_type": "default", "rope_theta": b.rope_theta},
                      bos_token_id=b.bos_token_id, eos_token_id=b.eos_token_id,
                      pad_token_id=b.pad_token_id, initializer_range=b.initializer_range)
        if b.family == "llama":
            fields.update(attention_bias=b.qkv_bias, mlp_bias=b.mlp_bias)
            if b.qkv_bias != b.out_bias:
                raise CheckpointError("save_hf: Llama needs the same bias on q/k/v and o")
        elif not b.qkv_bias or b.out_bias or b.mlp_bias:
            raise CheckpointError("save_hf: Qwen2 has q/k/v biases only")
        arch = {"lm": "ForCausalLM", "decoder": "Model"}
    elif b.family == "bert":
        prefix = "Bert"
        fields = dict(model_type="bert", vocab_size=b.vocab_size, hidden_size=b.hidden_size,
                      num_hidden_layers=b.num_layers, num_attention_heads=b.num_heads,
                      intermediate_size=b.intermediate_size, hidden_act=b.hidden_act,
                      max_position_embeddings=b.max_position_embeddings,
                      type_vocab_size=b.type_vocab_size, layer_norm_eps=b.layer_norm_eps,
                      pad_token_id=b.pad_token_id, initializer_range=b.initializer_range)
        arch = {"encoder": "Model"}
    else:
        prefix = "ModernBert"
        fields = dict(model_type="modernbert", vocab_size=b.vocab_size, hidden_size=b.hidden_size,
                      num_hidden_layers=b.num_layers, num_attention_heads=b.num_heads,
                      intermediate_size=b.intermediate_size, hidden_activation=b.hidden_act,
                      max_position_embeddings=b.max_position_embeddings, norm_eps=b.layer_norm_eps,
                      norm_bias=b.norm_bias, attention_bias=b.attention_bias, mlp_bias=b.mlp_bias,
                      local_attention=b.local_attention, pad_token_id=b.pad_token_id,
                      layer_types=["full_attention" if b.is_global(i) else "sliding_attention"
                                   for i in range(b.num_layers)],
                      rope_parameters={
                          "full_attention": {"rope_type": "default", "rope_theta": b.global_rope_theta},
                          "sliding_attention": {"rope_type": "default", "rope_theta": b.local_rope_theta}},
                      initializer_range=b.initializer_range, classifier_bias=False,
                      classifier_activation=(clf.head_act if clf else "gelu"))
        arch = {"encoder": "Model"}
    if clf:
        fields.update(num_labels=clf.num_classes, id2label=dict(enumerate(clf.labels)),
                      label2id={l: i for i, l in enumerate(clf.labels)})
        if prefix == "ModernBert":
            fields["classifier_pooling"] = clf.pooling
        if not _hf_representable(clf):
            # transformers would load these weights into a different head; our loader reads this.
            log.warning("save_hf: classifier %s is not a standard HF head; transformers will not "
                        "reproduce its outputs", (clf.pooling, clf.head, clf.head_act))
        fields["lantern_classifier"] = {"pooling": clf.pooling, "head": clf.head,
                                        "head_act": clf.head_act}
        arch = {"classifier": "ForSequenceClassification"}
    kind = model_kind(model)
    fields["architectures"] = [prefix + arch[kind]]
    return AutoConfig.for_model(**fields).to_dict()


def _hf_representable(clf: ClassifierConfig) -> bool:
    family = getattr(clf.backbone, "family", None)
    if isinstance(clf.backbone, DecoderConfig):
        return clf.pooling == "last_token" and clf.head == "linear"
    if family == "bert":
        return clf.pooling == "cls" and clf.head == "mlp" and clf.head_act == "tanh"
    return clf.pooling in ("cls", "mean") and clf.head == "mlp"
