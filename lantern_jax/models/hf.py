"""Hugging Face checkpoints <-> our NNX models.

API: `load_hf(path, *, dtype=None, mesh=None)`, `save_hf(model, path)`, `load_tokenizer(path)`,
and `model_from_state(config, tensors, ...)` (shared with the GGUF reader).

One table per family maps HF tensor names to our parameter paths. An entry may join several of
our tensors into one HF tensor (ModernBERT's fused Wqkv and Wi), split along HF's output rows.
Linear weights are transposed (torch stores [out, in]; our kernels are [in, out]). Under a mesh,
each tensor is placed straight into its shards with `jax.make_array_from_callback`.
"""
from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from lantern_jax.models.decoder import Decoder, DecoderConfig, DecoderLM
from lantern_jax.models.encoder import Classifier, ClassifierConfig, Encoder, EncoderConfig
from lantern_jax.models.errors import CheckpointError

log = logging.getLogger(__name__)

SUPPORTED_TYPES = ("bert", "modernbert", "llama", "qwen2")
KINDS = ("lm", "decoder", "encoder", "classifier")
Model = DecoderLM | Decoder | Encoder | Classifier


# --- configs ---------------------------------------------------------------------------------

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


def model_kind(model: Model) -> str:
    for cls, kind in ((DecoderLM, "lm"), (Decoder, "decoder"), (Encoder, "encoder"),
                      (Classifier, "classifier")):
        if isinstance(model, cls):
            return kind
    raise TypeError(f"not a lantern_jax model: {type(model).__name__}")


def build_model(kind: str, cfg, *, seed: int = 0) -> Model:
    cls = {"lm": DecoderLM, "decoder": Decoder, "encoder": Encoder, "classifier": Classifier}[kind]
    return cls(cfg, rngs=nnx.Rngs(seed))


# --- name tables -----------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Entry:
    """One HF tensor <-> one or more of our parameters (joined along HF's dim 0).

    `hf` is relative to the backbone (no "model." / "bert." prefix) unless `head` is set: task
    heads (lm_head, score, classifier) sit at the top level of every HF checkpoint.
    """
    hf: str
    ours: tuple[tuple[str, int | None], ...]  # (our path, layer index within a scanned stack)
    linear: bool  # HF [out, in] <-> our [in, out]
    head: bool = False


def backbone_prefix(model: Model) -> str:
    """Where HF puts the backbone in this architecture (what save_hf writes)."""
    kind = model_kind(model)
    b = model.cfg.backbone if kind == "classifier" else model.cfg
    if kind in ("encoder", "decoder"):
        return ""
    return "bert." if getattr(b, "family", None) == "bert" else "model."


def _layer_path(stack: str, i: int, suffix: str, scanned: bool) -> tuple[str, int | None]:
    return (f"{stack}.blocks.{suffix}", i) if scanned else (f"{stack}.blocks.{i}.{suffix}", None)


def _entries(model: Model) -> list[Entry]:
    """The full table for `model`: HF names (with the architecture's prefix) <-> our paths."""
    kind = model_kind(model)
    cfg = model.cfg
    b = cfg.backbone if kind == "classifier" else cfg
    ours_root = {"lm": "model", "decoder": "", "encoder": "", "classifier": "backbone"}[kind]
    out: list[Entry] = []

    def add(hf: str, ours: str | list[str], linear: bool = False, layer: int | None = None):
        paths = [ours] if isinstance(ours, str) else ours
        resolved = []
        for p in paths:
            if layer is None:
                resolved.append(((f"{ours_root}." if ours_root else "") + p, None))
            else:
                path, idx = _layer_path(f"{ours_root}.layers" if ours_root else "layers", layer, p,
                                        b.scan_layers)
                resolved.append((path, idx))
        out.append(Entry(hf, tuple(resolved), linear))

    def dense(hf: str, ours: str, bias: bool, layer=None):
        add(f"{hf}.weight", f"{ours}.kernel", True, layer)
        if bias:
            add(f"{hf}.bias", f"{ours}.bias", False, layer)

    if isinstance(b, DecoderConfig):
        add("embed_tokens.weight", "embed.embedding")
        add("norm.weight", "final_norm.scale")
        for i in range(b.num_layers):
            lp = f"layers.{i}."
            add(lp + "input_layernorm.weight", "attn_norm.scale", layer=i)
            add(lp + "post_attention_layernorm.weight", "mlp_norm.scale", layer=i)
            for n in "qkv":
                dense(f"{lp}self_attn.{n}_proj", f"attn.{n}", b.qkv_bias, i)
            dense(f"{lp}self_attn.o_proj", "attn.o", b.out_bias, i)
            for n in ("gate", "up", "down"):
                dense(f"{lp}mlp.{n}_proj", n, b.mlp_bias, i)
        if kind == "lm" and not b.tie_word_embeddings:
            out.append(Entry("lm_head.weight", (("lm_head.kernel", None),), True, head=True))
    elif b.family == "bert":
        e = "embeddings."
        add(e + "word_embeddings.weight", "embed.embedding")
        add(e + "position_embeddings.weight", "position_embed.embedding")
        add(e + "token_type_embeddings.weight", "type_embed.embedding")
        add(e + "LayerNorm.weight", "embed_norm.scale")
        add(e + "LayerNorm.bias", "embed_norm.bias")
        for i in range(b.num_layers):
            lp = f"encoder.layer.{i}."
            for hf_n, n in (("query", "q"), ("key", "k"), ("value", "v")):
                dense(f"{lp}attention.self.{hf_n}", f"attn.{n}", True, i)
            dense(lp + "attention.output.dense", "attn.o", True, i)
            add(lp + "attention.output.LayerNorm.weight", "attn_norm.scale", layer=i)
            add(lp + "attention.output.LayerNorm.bias", "attn_norm.bias", layer=i)
            dense(lp + "intermediate.dense", "up", True, i)
            dense(lp + "output.dense", "down", True, i)
            add(lp + "output.LayerNorm.weight", "mlp_norm.scale", layer=i)
            add(lp + "output.LayerNorm.bias", "mlp_norm.bias", layer=i)
        dense("pooler.dense", "pooler", True)
    else:  # modernbert
        nb = b.norm_bias
        add("embeddings.tok_embeddings.weight", "embed.embedding")
        add("embeddings.norm.weight", "embed_norm.scale")
        if nb:
            add("embeddings.norm.bias", "embed_norm.bias")
        for i in range(b.num_layers):
            lp = f"layers.{i}."
            norms = (["attn_norm"] if i > 0 else []) + ["mlp_norm"]
            for n in norms:
                add(f"{lp}{n}.weight", f"{n}.scale", layer=i)
                if nb:
                    add(f"{lp}{n}.bias", f"{n}.bias", layer=i)
            add(lp + "attn.Wqkv.weight", ["attn.q.kernel", "attn.k.kernel", "attn.v.kernel"], True, i)
            if b.attention_bias:
                add(lp + "attn.Wqkv.bias", ["attn.q.bias", "attn.k.bias", "attn.v.bias"], False, i)
            dense(lp + "attn.Wo", "attn.o", b.attention_bias, i)
            add(lp + "mlp.Wi.weight", ["up.kernel", "gate.kernel"], True, i)
            if b.mlp_bias:
                add(lp + "mlp.Wi.bias", ["up.bias", "gate.bias"], False, i)
            dense(lp + "mlp.Wo", "down", b.mlp_bias, i)
        add("final_norm.weight", "final_norm.scale")
        if nb:
            add("final_norm.bias", "final_norm.bias")
    if kind == "classifier":  # named as in the family's *ForSequenceClassification
        head = []
        if model.dense is not None:
            head += [("head.dense.weight", "dense.kernel", True)]
            head += [("head.dense.bias", "dense.bias", False)] if model.dense.bias is not None else []
        if model.head_norm is not None:
            head += [("head.norm.weight", "head_norm.scale", False)]
            head += [("head.norm.bias", "head_norm.bias", False)] if model.head_norm.bias is not None else []
        out_name = "score" if isinstance(b, DecoderConfig) else "classifier"
        head += [(f"{out_name}.weight", "out.kernel", True)]
        head += [(f"{out_name}.bias", "out.bias", False)] if model.out.bias is not None else []
        out.extend(Entry(h, ((o, None),), lin, head=True) for h, o, lin in head)
    return out


# --- reading ---------------------------------------------------------------------------------

class SafetensorsReader:
    """Lazy reads from `model.safetensors` or a sharded `model.safetensors.index.json`."""

    def __init__(self, path: str):
        from safetensors import safe_open  # noqa: PLC0415

        self._open = safe_open
        self._handles: dict[str, Any] = {}
        single = os.path.join(path, "model.safetensors")
        index = os.path.join(path, "model.safetensors.index.json")
        if os.path.exists(index):
            try:
                with open(index) as f:
                    weight_map = json.load(f)["weight_map"]
            except (OSError, ValueError, KeyError) as e:
                raise CheckpointError(f"{index}: not a safetensors index ({e})") from None
            self.files = {k: os.path.join(path, v) for k, v in weight_map.items()}
        elif os.path.exists(single):
            self.files = {k: single for k in self._keys(single)}
        else:
            raise CheckpointError(f"{path}: no model.safetensors or model.safetensors.index.json")

    def _handle(self, file: str):
        if file not in self._handles:
            try:
                self._handles[file] = self._open(file, framework="numpy")
            except Exception as e:  # safetensors raises its own error types for corrupt headers
                raise CheckpointError(f"{file}: corrupt or unreadable safetensors file "
                                      f"({str(e).splitlines()[0] if str(e) else type(e).__name__})") from None
        return self._handles[file]

    def _keys(self, file: str) -> list[str]:
        return list(self._handle(file).keys())

    def keys(self) -> list[str]:
        return list(self.files)

    def get(self, name: str) -> np.ndarray:
        file = self.files[name]
        try:
            return self._handle(file).get_tensor(name)
        except Exception as e:
            raise CheckpointError(f"{file}: tensor {name!r} is unreadable ({e})") from None


def _flat_params(model_or_state) -> dict[str, nnx.Variable]:
    state = model_or_state if isinstance(model_or_state, nnx.State) else nnx.state(model_or_state, nnx.Param)
    return {_dotted(path): v for path, v in nnx.to_flat_state(state)}


def _place(value: np.ndarray, abstract) -> jax.Array:
    """Puts a host array onto the abstract parameter's sharding (straight into shards)."""
    sharding = getattr(abstract, "sharding", None)
    value = value.astype(abstract.dtype)
    if sharding is None or not hasattr(sharding, "mesh"):
        return jnp.asarray(value)
    return jax.make_array_from_callback(value.shape, sharding, lambda idx: value[idx])


def model_from_state(config: Mapping[str, Any], tensors: Callable[[str], np.ndarray] | Mapping[str, np.ndarray],
                     *, dtype=None, param_dtype=None, mesh: jax.sharding.Mesh | None = None,
                     kind: str | None = None, source: str = "checkpoint", seed: int = 0,
                     scan_layers: bool | None = None, remat: str | None = None,
                     attention: str | None = None) -> Model:
    """Builds our model from an HF config dict and HF-named tensors (a mapping or a getter).

    Tensors the model needs but the checkpoint lacks raise, except a classifier head (or BERT
    pooler) when loading a backbone-only checkpoint into a classifier: those keep their random
    init, and the log says so.
    """
    kind, cfg = config_from_hf(config, kind=kind, dtype=dtype, param_dtype=param_dtype, source=source)
    overrides = {k: v for k, v in (("scan_layers", scan_layers), ("remat", remat), ("attention", attention))
                 if v is not None}
    if overrides:
        if isinstance(cfg, ClassifierConfig):
            cfg = dataclasses.replace(cfg, backbone=dataclasses.replace(cfg.backbone, **overrides))
        else:
            cfg = dataclasses.replace(cfg, **overrides)
    names = list(tensors.keys()) if isinstance(tensors, Mapping) else list(getattr(tensors, "keys")())
    get = tensors.__getitem__ if isinstance(tensors, Mapping) else tensors.get

    def create():
        return build_model(kind, cfg, seed=seed)

    with jax.set_mesh(mesh) if mesh is not None else contextlib.nullcontext():
        abstract = nnx.eval_shape(create)
    graphdef, abs_state = nnx.split(abstract)
    if mesh is not None:
        abs_state = jax.tree.map(lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s),
                                 abs_state, nnx.get_named_sharding(abs_state, mesh))
    flat = _flat_params(abs_state)
    entries = _entries(abstract)
    prefix = _find_prefix(entries, names, source)
    name_of = {e.hf: e.hf if e.head else prefix + e.hf for e in entries}

    host: dict[str, np.ndarray] = {}
    missing_head = []
    present = set(names)
    for e in entries:
        name = name_of[e.hf]
        if name not in present:
            if kind == "classifier" and _is_head_tensor(e):
                missing_head.append(e.hf)
                continue
            raise CheckpointError(f"{source}: missing tensor {name!r}")
        value = np.asarray(get(name))
        parts = np.split(value, len(e.ours), axis=0) if len(e.ours) > 1 and value.ndim else [value]
        for (path, layer), part in zip(e.ours, parts):
            part = part.T if e.linear else part
            target = flat[path]
            expected = target.shape[1:] if layer is not None else target.shape
            if tuple(part.shape) != tuple(expected):
                raise CheckpointError(f"{source}: tensor {name!r} has shape {tuple(value.shape)}, "
                                      f"expected one giving {tuple(expected)} for {path}")
            if layer is None:
                host[path] = part
            else:
                host.setdefault(path, np.empty(target.shape, np.float32))[layer] = part
    if missing_head:
        log.info("%s: classifier head not in checkpoint, initialised randomly: %s", source, missing_head)
    used = set(name_of.values())
    unused = [n for n in names if n not in used and not n.endswith("position_ids")]
    if unused:
        log.info("%s: %d checkpoint tensors not used (e.g. %s)", source, len(unused), unused[:3])

    if len(host) < len(flat):  # a head missing from the checkpoint keeps a (sharded) random init
        with jax.set_mesh(mesh) if mesh is not None else contextlib.nullcontext():
            graphdef, state = nnx.split(create())
    else:
        state = abs_state
    loaded = [(path, var.replace(_place(host[key], flat[key])) if (key := _dotted(path)) in host else var)
              for path, var in nnx.to_flat_state(state)]
    return nnx.merge(graphdef, nnx.from_flat_state(loaded))


def _dotted(path: tuple) -> str:
    return ".".join(str(k) for k in path)


def _is_head_tensor(e: Entry) -> bool:
    """Classifier head parameters (and BERT's pooler, which the head uses) may start random."""
    return e.head or all(p.startswith("backbone.pooler") for p, _ in e.ours)


def _find_prefix(entries: list[Entry], names: list[str], source: str) -> str:
    """The backbone prefix this checkpoint uses: bare models have none, task models one."""
    probe = next(e.hf for e in entries if not e.head)
    have = set(names)
    for prefix in ("", "model.", "bert."):
        if prefix + probe in have:
            return prefix
    raise CheckpointError(f"{source}: missing tensor {probe!r} (also looked under model. / bert.)")


def _open_dir(path: str | os.PathLike) -> tuple[dict[str, Any], SafetensorsReader]:
    path = os.fspath(path)
    if not os.path.isdir(path):
        raise CheckpointError(f"{path}: not a directory")
    cfg_file = os.path.join(path, "config.json")
    if not os.path.exists(cfg_file):
        raise CheckpointError(f"{path}: no config.json")
    try:
        with open(cfg_file) as f:
            config = json.load(f)
    except ValueError as e:
        raise CheckpointError(f"{cfg_file}: invalid JSON ({e})") from None
    return config, SafetensorsReader(path)


def load_hf(path: str | os.PathLike, *, dtype=None, mesh: jax.sharding.Mesh | None = None,
            kind: str | None = None, **kwargs) -> Model:
    """Loads an HF checkpoint folder (config.json + safetensors) into our model.

    `kind` overrides what `architectures` implies (e.g. "classifier" on a bare encoder, whose
    head then starts random). `dtype` is the compute dtype; parameters stay float32 unless
    `param_dtype` is given. Under `mesh`, tensors go straight to their shards.
    """
    config, reader = _open_dir(path)
    return model_from_state(config, reader, dtype=dtype, mesh=mesh, kind=kind,
                            source=os.fspath(path), **kwargs)


# --- writing ---------------------------------------------------------------------------------

def _host(x: jax.Array) -> np.ndarray:
    if jax.process_count() > 1 and not x.is_fully_addressable:
        from jax.experimental import multihost_utils  # noqa: PLC0415
        x = multihost_utils.process_allgather(x, tiled=True)
    return np.asarray(jax.device_get(x), dtype=np.float32)


def hf_tensors(model: Model) -> Iterator[tuple[str, np.ndarray]]:
    """(HF name, float32 array) for every tensor of `model`, in HF layout."""
    flat = _flat_params(model)
    prefix = backbone_prefix(model)
    for e in _entries(model):
        parts = []
        for path, layer in e.ours:
            v = _host(flat[path][...] if layer is None else flat[path][...][layer])
            parts.append(v.T if e.linear else v)
        yield (e.hf if e.head else prefix + e.hf), parts[0] if len(parts) == 1 else np.concatenate(parts, axis=0)


def save_hf(model: Model, path: str | os.PathLike, *, tokenizer=None,
            max_shard_bytes: int = 4 << 30) -> None:
    """Writes config.json + safetensors (sharded with an index above `max_shard_bytes`) that
    transformers loads with no missing or unexpected keys; with `tokenizer`, its files too."""
    from safetensors.numpy import save_file  # noqa: PLC0415

    path = os.fspath(path)
    config = config_to_hf(model)
    tensors = dict(hf_tensors(model))
    if jax.process_index() != 0:
        return
    os.makedirs(path, exist_ok=True)
    shards, current, size = [], {}, 0
    for name, value in tensors.items():
        if current and size + value.nbytes > max_shard_bytes:
            shards.append(current)
            current, size = {}, 0
        current[name] = np.ascontiguousarray(value)
        size += value.nbytes
    shards.append(current)
    meta = {"format": "pt"}  # transformers expects this marker on safetensors it loads
    if len(shards) == 1:
        save_file(shards[0], os.path.join(path, "model.safetensors"), metadata=meta)
    else:
        weight_map = {}
        for i, shard in enumerate(shards):
            fname = f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors"
            save_file(shard, os.path.join(path, fname), metadata=meta)
            weight_map.update({k: fname for k in shard})
        total = sum(v.nbytes for v in tensors.values())
        with open(os.path.join(path, "model.safetensors.index.json"), "w") as f:
            json.dump({"metadata": {"total_size": total}, "weight_map": weight_map}, f, indent=2)
    with open(os.path.join(path, "config.json"), "w") as f:
        json.dump(config, f, indent=2, sort_keys=True)
    if tokenizer is not None:
        tokenizer.save_pretrained(path)


# --- tokenizers ------------------------------------------------------------------------------

def load_tokenizer(path: str | os.PathLike):
    """A `transformers` fast tokenizer from an HF folder, or rebuilt from a GGUF file.

    Padding and truncation baked into tokenizer.json are turned off: callers choose them.
    """
    path = os.fspath(path)
    if path.endswith(".gguf"):
        from lantern_jax.models.gguf import read_gguf  # noqa: PLC0415
        return read_gguf(path).tokenizer
    if not os.path.isdir(path) or not (os.path.exists(os.path.join(path, "tokenizer.json"))
                                       or os.path.exists(os.path.join(path, "vocab.txt"))):
        raise CheckpointError(f"{path}: no tokenizer.json or vocab.txt")
    from transformers import AutoTokenizer  # noqa: PLC0415
    tok = AutoTokenizer.from_pretrained(path)
    backend = getattr(tok, "backend_tokenizer", None) or getattr(tok, "_tokenizer", None)
    if backend is not None:
        backend.no_padding()
        backend.no_truncation()
    return tok
