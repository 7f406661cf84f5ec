"""Hugging Face checkpoint folders <-> our NNX models: safetensors I/O and tokenizers.

API: `load_hf(path, *, dtype=None, mesh=None)`, `save_hf(model, path, dtype=...)`, `load_tokenizer(path)`,
and `model_from_state(config, tensors, ...)` (shared with GGUF files, see `models.sources`).

Config mapping lives in `hf_config`, the tensor-name tables in `hf_names`. Under a mesh, each
tensor is placed straight into its shards with `jax.make_array_from_callback`.
"""
from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import re
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from lantern_jax.models.decoder import DecoderLM
from lantern_jax.models.encoder import ClassifierConfig
from lantern_jax.models.errors import CheckpointError
from lantern_jax.models.hf_config import config_from_hf, config_to_hf
from lantern_jax.models import hf_names
from lantern_jax.models.kinds import Model, build_model, model_kind

log = logging.getLogger(__name__)


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
                     attention: str | None = None, keep_layers: tuple[int, ...] = ()) -> Model:
    """Builds our model from an HF config dict and HF-named tensors (a mapping or a getter).

    Tensors the model needs but the checkpoint lacks raise, except a classifier head (or BERT
    pooler) when loading a backbone-only checkpoint into a classifier: those keep their random
    init, and the log says so. `keep_layers` builds a model of only those layers (by index, in
    that order) with the rest of the checkpoint: a student cut from its teacher.
    """
    if keep_layers:
        config, tensors = KeptLayers.cut(config, tensors, tuple(keep_layers), source)
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
    table = hf_names.entries(abstract)
    prefix = hf_names.find_prefix(table, names, source)
    name_of = {e.hf: e.hf if e.head else prefix + e.hf for e in table}

    host: dict[str, np.ndarray] = {}
    missing_head = []
    present = set(names)
    for e in table:
        name = name_of[e.hf]
        if name not in present:
            if kind == "classifier" and hf_names.is_head_tensor(e):
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
            else:  # zeros, not np.empty: a slot no tensor fills (ModernBERT's layer 0 has no
                # attention norm) is skipped by a where() that still differentiates through it,
                # so garbage there (NaN) would turn every gradient below it into NaN
                host.setdefault(path, np.zeros(target.shape, np.float32))[layer] = part
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


class KeptLayers:
    """HF-named tensors of a checkpoint with its layers renumbered to a kept subset."""

    _LAYER = re.compile(r"^(.*\.layers?\.)(\d+)(\..*)$")

    def __init__(self, tensors, keep: tuple[int, ...]):
        self._get = tensors.__getitem__ if isinstance(tensors, Mapping) else tensors.get
        names = list(tensors.keys())
        self._source = {}
        for name in names:
            m = self._LAYER.match(name)
            if m is None:
                self._source[name] = name
            elif int(m.group(2)) in keep:
                self._source[f"{m.group(1)}{keep.index(int(m.group(2)))}{m.group(3)}"] = name

    @classmethod
    def cut(cls, config: Mapping[str, Any], tensors, keep: tuple[int, ...], source: str):
        n = config.get("num_hidden_layers", 0)
        if len(set(keep)) != len(keep) or not all(0 <= i < n for i in keep):
            raise CheckpointError(f"{source}: keep_layers {list(keep)} must be distinct indices of its {n} layers")
        per_layer = {k: [v[i] for i in keep] for k, v in config.items() if isinstance(v, list) and len(v) == n}
        return {**config, **per_layer, "num_hidden_layers": len(keep)}, cls(tensors, keep)  # e.g. layer_types

    def keys(self):
        return self._source.keys()

    def get(self, name: str) -> np.ndarray:
        return self._get(self._source[name])


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
    prefix = hf_names.backbone_prefix(model)
    for e in hf_names.entries(model):
        parts = []
        for path, layer in e.ours:
            v = _host(flat[path][...] if layer is None else flat[path][...][layer])
            parts.append(v.T if e.linear else v)
        yield (e.hf if e.head else prefix + e.hf), parts[0] if len(parts) == 1 else np.concatenate(parts, axis=0)


EXPORT_DTYPES = ("float32", "bfloat16", "float16")


def save_hf(model: Model, path: str | os.PathLike, *, tokenizer=None, dtype: str = "float32",
            max_shard_bytes: int = 4 << 30) -> None:
    """Writes config.json + safetensors (sharded with an index above `max_shard_bytes`) that
    transformers loads with no missing or unexpected keys; with `tokenizer`, its files too.

    `dtype` ("bfloat16" halves the files; loading casts back to the parameter dtype) is that of the
    stored tensors, recorded in config.json. A causal LM also gets generation_config.json: greedy,
    stopping at every end-of-turn token the tokenizer has, as our generation does."""
    from safetensors.numpy import save_file  # noqa: PLC0415

    if dtype not in EXPORT_DTYPES:
        raise CheckpointError(f"save_hf: dtype {dtype!r} is not one of {', '.join(EXPORT_DTYPES)}")
    path = os.fspath(path)
    config = {**config_to_hf(model), "dtype": dtype}
    stored = np.dtype(jnp.dtype(dtype))  # ml_dtypes' bfloat16: safetensors writes it as BF16
    tensors = {name: value.astype(stored) for name, value in hf_tensors(model)}
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
    if model_kind(model) == "lm":
        generation_config(model, tokenizer).save_pretrained(path)
    if tokenizer is not None:
        tokenizer.save_pretrained(path)


def generation_config(model: DecoderLM, tokenizer=None):
    """transformers' GenerationConfig for an exported LM: greedy, up to the context length, ending
    at the tokenizer's end-of-turn tokens (else the model's EOS)."""
    from transformers import GenerationConfig  # noqa: PLC0415

    cfg = model.cfg
    eos = stop_token_ids(tokenizer) if tokenizer is not None else [cfg.eos_token_id]
    return GenerationConfig(bos_token_id=cfg.bos_token_id, eos_token_id=[e for e in eos if e is not None],
                            pad_token_id=cfg.pad_token_id, do_sample=False,
                            max_length=cfg.max_position_embeddings)


# --- tokenizers ------------------------------------------------------------------------------

def stop_token_ids(tokenizer) -> list[int]:
    """The tokenizer's EOS plus the chat end-of-turn / end-of-text tokens it has."""
    stops = {tokenizer.eos_token_id} | {tokenizer.convert_tokens_to_ids(t)
                                        for t in ("<|im_end|>", "<|endoftext|>")
                                        if t in tokenizer.get_vocab()}
    stops.discard(None)
    return sorted(stops)


def load_tokenizer(path: str | os.PathLike):
    """A `transformers` fast tokenizer from an HF folder (GGUF files: `models.sources`).

    Padding and truncation baked into tokenizer.json are turned off: callers choose them.
    """
    path = os.fspath(path)
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
