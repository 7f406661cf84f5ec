"""Bidirectional encoders (BERT, ModernBERT) and the fit classifier.

BERT: learned absolute positions and token types, post-LayerNorm blocks, GELU MLP.
ModernBERT: pre-norm blocks, RoPE, GeGLU MLP, no biases, a final norm, and alternating global /
sliding-window attention (every `global_attn_every_n_layers`-th layer is global). Layer 0 has no
attention norm; a per-layer flag keeps the stacked blocks identical so they can be scanned.

`Classifier` pools a backbone (either encoder, or the causal `Decoder` with last-token pooling as
in the paper's best classifier) and applies a head -> fit-class logits.
"""
from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
from flax import nnx

from lantern_jax import mesh as mesh_lib
from lantern_jax.models import attention as attention_lib
from lantern_jax.models import layers as L
from lantern_jax.models.decoder import Decoder, DecoderConfig

FAMILIES = ("bert", "modernbert")
POOLINGS = ("cls", "mean", "last_token")


@dataclasses.dataclass(frozen=True)
class EncoderConfig:
    vocab_size: int
    hidden_size: int
    num_layers: int
    num_heads: int
    intermediate_size: int
    family: str = "bert"
    max_position_embeddings: int = 512
    type_vocab_size: int = 2  # BERT only
    layer_norm_eps: float = 1e-12
    hidden_act: str = "gelu"
    pad_token_id: int = 0
    # ModernBERT only
    global_rope_theta: float = 160_000.0
    local_rope_theta: float = 10_000.0
    local_attention: int = 128  # total window; a token sees +-local_attention // 2
    global_attn_every_n_layers: int = 3
    norm_bias: bool = False
    attention_bias: bool = False
    mlp_bias: bool = False
    initializer_range: float = 0.02
    dtype: str = "float32"
    param_dtype: str = "float32"
    scan_layers: bool = False
    remat: str = "none"
    attention: str = "auto"  # see attention.BACKENDS

    def __post_init__(self):
        if self.family not in FAMILIES:
            raise ValueError(f"encoder family {self.family!r} is not one of {FAMILIES}")

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_heads

    def is_global(self, layer: int) -> bool:
        return self.family == "bert" or layer % self.global_attn_every_n_layers == 0


class EncoderBlock(nnx.Module):
    def __init__(self, cfg: EncoderConfig, rngs: nnx.Rngs):
        self.modern = cfg.family == "modernbert"
        kw = dict(rngs=rngs, dtype=jnp.dtype(cfg.dtype), param_dtype=jnp.dtype(cfg.param_dtype))
        D, F, std = cfg.hidden_size, cfg.intermediate_size, cfg.initializer_range
        bias = cfg.attention_bias if self.modern else True
        mlp_bias = cfg.mlp_bias if self.modern else True
        norm_bias = cfg.norm_bias if self.modern else True
        self.attn = L.Attention(D, cfg.num_heads, cfg.num_heads, cfg.head_dim, qkv_bias=bias,
                                out_bias=bias, init_std=std, backend=cfg.attention, **kw)
        self.attn_norm = L.LayerNorm(D, eps=cfg.layer_norm_eps, use_bias=norm_bias, **kw)
        self.mlp_norm = L.LayerNorm(D, eps=cfg.layer_norm_eps, use_bias=norm_bias, **kw)
        self.up = L.Dense(D, F, ("embed", "mlp"), use_bias=mlp_bias, init_std=std, **kw)
        self.gate = (L.Dense(D, F, ("embed", "mlp"), use_bias=mlp_bias, init_std=std, **kw)
                     if self.modern else None)
        self.down = L.Dense(F, D, ("mlp", "embed"), use_bias=mlp_bias, init_std=std, **kw)
        self.act = L.activation(cfg.hidden_act)

    def __call__(self, x, flags, masks, ropes):
        if not self.modern:  # post-norm
            h, _ = self.attn(x, masks[0])
            x = self.attn_norm(x + h)
            x = self.mlp_norm(x + self.down(self.act(self.up(x))))
        else:  # pre-norm; flags pick this layer's mask/rope (global or local) and its attn norm
            is_global, has_attn_norm = flags["is_global"], flags["has_attn_norm"]
            mask = dataclasses.replace(masks[0], local=jnp.logical_not(is_global))
            rope = jax.tree.map(lambda g, l: jnp.where(is_global, g, l), ropes[0], ropes[1])
            h = jnp.where(has_attn_norm, self.attn_norm(x), x)
            x = x + self.attn(h, mask, rope)[0]
            y = self.mlp_norm(x)
            x = x + self.down(self.act(self.up(y)) * self.gate(y))
        return mesh_lib.constrain(x, ("batch", "length", "act_embed")), None


class Encoder(nnx.Module):
    """`model(input_ids, attention_mask, token_type_ids=None) -> hidden [B, T, D]`."""

    def __init__(self, cfg: EncoderConfig, *, rngs: nnx.Rngs):
        self.cfg = cfg
        kw = dict(rngs=rngs, dtype=jnp.dtype(cfg.dtype), param_dtype=jnp.dtype(cfg.param_dtype))
        D, std = cfg.hidden_size, cfg.initializer_range
        modern = cfg.family == "modernbert"
        self.embed = L.Embed(cfg.vocab_size, D, ("vocab", "embed"), init_std=std, **kw)
        if not modern:
            self.position_embed = L.Embed(cfg.max_position_embeddings, D, ("positions", "embed"),
                                          init_std=std, **kw)
            self.type_embed = L.Embed(cfg.type_vocab_size, D, ("token_types", "embed"),
                                      init_std=std, **kw)
        self.embed_norm = L.LayerNorm(D, eps=cfg.layer_norm_eps,
                                      use_bias=cfg.norm_bias if modern else True, **kw)
        self.layers = L.LayerStack(lambda r: EncoderBlock(cfg, r), cfg.num_layers, rngs=rngs,
                                   scan=cfg.scan_layers, remat=cfg.remat)
        self.final_norm = (L.LayerNorm(D, eps=cfg.layer_norm_eps, use_bias=cfg.norm_bias, **kw)
                           if modern else None)
        # BERT checkpoints carry a pooler (dense + tanh on the first token); the classifier's
        # head uses it, as BertForSequenceClassification does.
        self.pooler = (None if modern else
                       L.Dense(D, D, ("embed", None), use_bias=True, init_std=std, **kw))

    def __call__(self, input_ids, attention_mask=None, token_type_ids=None):
        cfg = self.cfg
        B, T = input_ids.shape
        valid = jnp.ones((B, T), bool) if attention_mask is None else attention_mask.astype(bool)
        positions = L.positions_from_mask(valid)
        x = self.embed(input_ids)
        flags = ropes = None
        if cfg.family == "bert":
            types = jnp.zeros_like(input_ids) if token_type_ids is None else token_type_ids
            x = x + self.position_embed(positions) + self.type_embed(types)
            # Keys only, as HF BERT: padded queries attend to the valid keys (their outputs are
            # ignored), and a [B, 1, 1, S] bias costs less than a per-query [B, 1, T, S] one.
            masks = (attention_lib.Mask(valid, padded_queries_see_self=False),)
        else:  # one mask: each layer's flag switches its window on (local) or off (global)
            masks = (attention_lib.Mask(valid, positions, window=cfg.local_attention // 2),)
            ropes = (L.rope_tables(positions, cfg.head_dim, cfg.global_rope_theta),
                     L.rope_tables(positions, cfg.head_dim, cfg.local_rope_theta))
            flags = {"is_global": jnp.array([cfg.is_global(i) for i in range(cfg.num_layers)]),
                     "has_attn_norm": jnp.arange(cfg.num_layers) > 0}
        x = mesh_lib.constrain(self.embed_norm(x), ("batch", "length", "act_embed"))
        x, _ = self.layers(x, masks, ropes, per_layer=flags)
        return x if self.final_norm is None else self.final_norm(x)


@dataclasses.dataclass(frozen=True)
class ClassifierConfig:
    """Backbone + pooling + head. Defaults follow the HF head of the backbone's family, so
    `save_hf` writes a `*ForSequenceClassification` checkpoint transformers loads as is."""
    backbone: EncoderConfig | DecoderConfig
    num_classes: int = 3
    labels: tuple[str, ...] = ("low", "medium", "high")
    pooling: str | None = None  # cls (BERT, ModernBERT) | mean | last_token (decoders)
    head: str | None = None  # "mlp" (dense -> act [-> norm] -> out) | "linear"
    head_act: str | None = None

    def __post_init__(self):
        family = getattr(self.backbone, "family", "llama")
        decoder = isinstance(self.backbone, DecoderConfig)
        defaults = dict(pooling="last_token" if decoder else "cls",
                        head="linear" if decoder else "mlp",
                        head_act="tanh" if family == "bert" else "gelu")
        for k, v in defaults.items():
            if getattr(self, k) is None:
                object.__setattr__(self, k, v)
        if self.pooling not in POOLINGS:
            raise ValueError(f"pooling {self.pooling!r} is not one of {POOLINGS}")
        if self.head not in ("mlp", "linear"):
            raise ValueError(f"classifier head {self.head!r} is not 'mlp' or 'linear'")
        if len(self.labels) != self.num_classes:
            raise ValueError(f"{len(self.labels)} labels for {self.num_classes} classes")


def pool(hidden: jax.Array, mask: jax.Array, how: str) -> jax.Array:
    """[B, T, D] -> [B, D]. Token picks use the mask, so they are right for either padding side."""
    mask = mask.astype(bool)
    if how == "mean":
        h = L.wide(hidden)
        m = mask[..., None].astype(h.dtype)
        return ((h * m).sum(1) / jnp.maximum(m.sum(1), 1.0)).astype(hidden.dtype)
    index = jnp.arange(mask.shape[1])
    pick = (jnp.argmax(mask, axis=1) if how == "cls"  # first valid token
            else jnp.argmax(jnp.where(mask, index, -1), axis=1))  # last valid token
    return jnp.take_along_axis(hidden, pick[:, None, None], axis=1)[:, 0]


class Classifier(nnx.Module):
    """`model(input_ids, attention_mask) -> logits [B, num_classes]`."""

    def __init__(self, cfg: ClassifierConfig, *, rngs: nnx.Rngs):
        self.cfg = cfg
        b = cfg.backbone
        self.backbone = Decoder(b, rngs=rngs) if isinstance(b, DecoderConfig) else Encoder(b, rngs=rngs)
        kw = dict(rngs=rngs, dtype=jnp.dtype(b.dtype), param_dtype=jnp.dtype(b.param_dtype),
                  init_std=b.initializer_range)
        D = b.hidden_size
        modern = getattr(b, "family", None) == "modernbert"
        mlp = cfg.head == "mlp"
        bert_pooler = mlp and getattr(b, "family", None) == "bert"  # the backbone's pooler is the dense
        self.dense = L.Dense(D, D, ("embed", None), use_bias=not modern, **kw) if mlp and not bert_pooler else None
        self.head_norm = (L.LayerNorm(D, eps=b.layer_norm_eps, use_bias=b.norm_bias, rngs=rngs,
                                      dtype=jnp.dtype(b.dtype)) if mlp and modern else None)
        self.act = L.activation(cfg.head_act)
        self.out = L.Dense(D, cfg.num_classes, ("embed", "classes"), use_bias=cfg.head == "mlp", **kw)

    def features(self, input_ids, attention_mask=None):
        mask = jnp.ones_like(input_ids, bool) if attention_mask is None else attention_mask
        x = pool(self.backbone(input_ids, mask), mask, self.cfg.pooling)
        dense = self.dense or (self.backbone.pooler if self.cfg.head == "mlp" else None)
        if dense is not None:
            x = self.act(dense(x))
            if self.head_norm is not None:
                x = self.head_norm(x)
        return x

    def __call__(self, input_ids, attention_mask=None):
        return L.wide(self.out(self.features(input_ids, attention_mask)))
