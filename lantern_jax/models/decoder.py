"""Llama / Qwen2 family causal decoder (RMSNorm, RoPE, grouped-query attention, SwiGLU).

`Decoder` returns hidden states (it doubles as a last-token-pooled classifier backbone);
`DecoderLM` adds the output embedding. Positions come from the attention mask, so left- and
right-padded batches give each sequence the outputs it has unpadded. A `KVCache` per layer turns
the same forward into prefill and one-token decode.
"""
from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
from flax import nnx

from lantern_jax import mesh as mesh_lib
from lantern_jax.models import attention as attention_lib
from lantern_jax.models import layers as L


@dataclasses.dataclass(frozen=True)
class DecoderConfig:
    vocab_size: int
    hidden_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    intermediate_size: int
    head_dim: int | None = None  # default hidden_size // num_heads
    family: str = "llama"  # "llama" | "qwen2": decides the HF names and biases written by save_hf
    rope_theta: float = 10_000.0
    rms_norm_eps: float = 1e-5
    max_position_embeddings: int = 2048
    tie_word_embeddings: bool = False
    qkv_bias: bool = False  # Qwen2: True
    out_bias: bool = False
    mlp_bias: bool = False
    hidden_act: str = "silu"
    bos_token_id: int | None = None
    eos_token_id: int | list[int] | None = None
    pad_token_id: int | None = None
    initializer_range: float = 0.02
    dtype: str = "float32"  # compute dtype
    param_dtype: str = "float32"
    scan_layers: bool = False
    remat: str = "none"  # see layers.REMAT_POLICIES
    attention: str = "auto"  # see attention.BACKENDS

    @property
    def dims_per_head(self) -> int:
        return self.head_dim or self.hidden_size // self.num_heads

    def num_params(self, *, with_embeddings: bool = True) -> int:
        D, F, H = self.hidden_size, self.intermediate_size, self.dims_per_head
        attn = D * H * (2 * self.num_heads + 2 * self.num_kv_heads)
        per_layer = attn + 3 * D * F + 2 * D
        emb = self.vocab_size * D * (1 if self.tie_word_embeddings else 2) if with_embeddings else 0
        return self.num_layers * per_layer + D + emb


class DecoderBlock(nnx.Module):
    def __init__(self, cfg: DecoderConfig, rngs: nnx.Rngs):
        kw = dict(rngs=rngs, dtype=jnp.dtype(cfg.dtype), param_dtype=jnp.dtype(cfg.param_dtype))
        D, F = cfg.hidden_size, cfg.intermediate_size
        self.attn_norm = L.RMSNorm(D, eps=cfg.rms_norm_eps, **kw)
        self.attn = L.Attention(D, cfg.num_heads, cfg.num_kv_heads, cfg.dims_per_head,
                                qkv_bias=cfg.qkv_bias, out_bias=cfg.out_bias,
                                init_std=cfg.initializer_range, backend=cfg.attention, **kw)
        self.mlp_norm = L.RMSNorm(D, eps=cfg.rms_norm_eps, **kw)
        dense = dict(use_bias=cfg.mlp_bias, init_std=cfg.initializer_range, **kw)
        self.gate = L.Dense(D, F, ("embed", "mlp"), **dense)
        self.up = L.Dense(D, F, ("embed", "mlp"), **dense)
        self.down = L.Dense(F, D, ("mlp", "embed"), **dense)
        self.act = L.activation(cfg.hidden_act)

    def __call__(self, x, cache, mask, rope):
        h, cache = self.attn(self.attn_norm(x), mask, rope, cache)
        x = x + h
        y = self.mlp_norm(x)
        x = x + self.down(self.act(self.gate(y)) * self.up(y))
        return mesh_lib.constrain(x, ("batch", "length", "act_embed")), cache


class Decoder(nnx.Module):
    """Token embedding -> blocks -> final RMSNorm. Returns hidden states [B, T, D]."""

    def __init__(self, cfg: DecoderConfig, *, rngs: nnx.Rngs):
        self.cfg = cfg
        kw = dict(rngs=rngs, dtype=jnp.dtype(cfg.dtype), param_dtype=jnp.dtype(cfg.param_dtype))
        self.embed = L.Embed(cfg.vocab_size, cfg.hidden_size, ("vocab", "embed"),
                             init_std=cfg.initializer_range, **kw)
        self.layers = L.LayerStack(lambda r: DecoderBlock(cfg, r), cfg.num_layers, rngs=rngs,
                                   scan=cfg.scan_layers, remat=cfg.remat)
        self.final_norm = L.RMSNorm(cfg.hidden_size, eps=cfg.rms_norm_eps, **kw)

    def init_cache(self, batch: int, length: int, dtype=None):
        """Preallocated KV caches: a tuple with one KVCache per layer (each updated in place
        while decoding), or one KVCache stacked on a leading layer axis for scanned layers."""
        cfg = self.cfg
        make = lambda: L.KVCache.zeros(batch, length, cfg.num_kv_heads, cfg.dims_per_head,  # noqa: E731
                                       dtype or jnp.dtype(cfg.dtype))
        if not cfg.scan_layers:
            return tuple(make() for _ in range(cfg.num_layers))
        return jax.tree.map(lambda a: jnp.broadcast_to(a, (cfg.num_layers,) + a.shape), make())

    def __call__(self, input_ids: jax.Array, attention_mask: jax.Array | None = None, *,
                 positions: jax.Array | None = None, cache: L.KVCache | None = None):
        """Without a cache: causal attention over `input_ids` [B, T] with padding mask [B, T].

        With a cache (from `init_cache`) `attention_mask` [B, S_max] marks the valid slots
        (prompt padding off, generated tokens on) and `positions` [B, T] must be given; returns
        (hidden, new_cache). T > 1 is a prefill into the empty cache (slots 0 .. T-1, the prompt
        attending to itself); T == 1 decodes one token at slot cache.index over the whole cache.
        """
        B, T = input_ids.shape
        if cache is None or T > 1:
            valid = jnp.ones((B, T), bool) if attention_mask is None else attention_mask[:, :T].astype(bool)
            positions = L.positions_from_mask(valid) if positions is None else positions
            mask = attention_lib.Mask(valid, causal=True)
        else:
            if attention_mask is None or positions is None:
                raise ValueError("cached decoding needs attention_mask over the cache and positions")
            S = attention_mask.shape[1]
            first = cache[0] if isinstance(cache, tuple) else cache
            slot = jnp.reshape(first.index, (-1,))[0]  # every layer's cache sits at the same slot
            q_index = jnp.full((B, 1), slot)
            kv_index = jnp.broadcast_to(jnp.arange(S), (B, S))
            mask = L.attention_mask(None, attention_mask.astype(bool), causal=True,
                                    q_index=q_index, kv_index=kv_index)
        rope = L.rope_tables(positions, self.cfg.dims_per_head, self.cfg.rope_theta)
        x = mesh_lib.constrain(self.embed(input_ids), ("batch", "length", "act_embed"))
        x, cache = self.layers(x, mask, rope, per_layer=cache)
        x = self.final_norm(x)
        return x if cache is None else (x, cache)


class DecoderLM(nnx.Module):
    """Causal LM: `model(input_ids, attention_mask=None) -> logits [B, T, V]`."""

    def __init__(self, cfg: DecoderConfig, *, rngs: nnx.Rngs):
        self.cfg = cfg
        self.model = Decoder(cfg, rngs=rngs)
        if not cfg.tie_word_embeddings:
            self.lm_head = L.Dense(cfg.hidden_size, cfg.vocab_size, ("embed", "vocab"),
                                   use_bias=False, rngs=rngs, dtype=jnp.dtype(cfg.dtype),
                                   param_dtype=jnp.dtype(cfg.param_dtype),
                                   init_std=cfg.initializer_range)

    def unembedding(self) -> jax.Array:
        """The [D, V] output matrix, for losses that produce logits chunk by chunk."""
        if self.cfg.tie_word_embeddings:
            return self.model.embed.embedding[...].T
        return self.lm_head.kernel[...]

    def logits(self, hidden: jax.Array) -> jax.Array:
        if self.cfg.tie_word_embeddings:
            return self.model.embed.attend(hidden)
        return self.lm_head(hidden)

    def __call__(self, input_ids, attention_mask=None, *, positions=None, cache=None):
        out = self.model(input_ids, attention_mask, positions=positions, cache=cache)
        if cache is None:
            return self.logits(out)
        hidden, cache = out
        return self.logits(hidden), cache
