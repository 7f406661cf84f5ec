"""Jitted generation for our decoder: prefill + decode with a preallocated KV cache.

Prompts are left-padded into a few fixed (batch, length) buckets so new requests reuse compiled
programs. Decoding runs in one `lax.while_loop` that stops when every row has hit a stop token.
Greedy, temperature, top-k and top-p sampling; optionally each generated token's top-k logprobs
(what distillation data keeps). With `rows=`, each prompt brings its own sampling settings and
token limit as traced arrays, so a server can batch requests that differ without recompiling.
"""
from __future__ import annotations

import dataclasses
import functools
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from lantern_jax.models.decoder import DecoderLM
from lantern_jax.models.hf import stop_token_ids

LENGTH_BUCKETS = (32, 64, 128, 256, 512, 1024, 2048, 4096, 8192)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128)


@dataclasses.dataclass(frozen=True)
class SamplingConfig:
    max_new_tokens: int = 64
    temperature: float = 0.0  # 0 = greedy
    top_k: int = 0  # 0 = off
    top_p: float = 1.0
    seed: int = 0
    top_logprobs: int = 0  # keep this many (id, logprob) per generated token; 0 = none


@dataclasses.dataclass
class Generation:
    text: str
    token_ids: list[int]
    logprobs: list[float]  # of each chosen token
    top_ids: np.ndarray | None = None  # [n, k]
    top_logprobs: np.ndarray | None = None  # [n, k]


def bucket(n: int, sizes: Sequence[int]) -> int:
    for s in sizes:
        if n <= s:
            return s
    return n


def _sample(logits: jax.Array, key: jax.Array, cfg: SamplingConfig) -> jax.Array:
    if cfg.temperature == 0.0:
        return jnp.argmax(logits, axis=-1)
    logits = logits / cfg.temperature
    if cfg.top_k:
        kth = jax.lax.top_k(logits, cfg.top_k)[0][..., -1:]
        logits = jnp.where(logits < kth, -jnp.inf, logits)
    if cfg.top_p < 1.0:
        sorted_logits = jnp.sort(logits, axis=-1)[..., ::-1]
        probs = jax.nn.softmax(sorted_logits, axis=-1)
        # the smallest set whose mass reaches top_p: tokens whose preceding mass is < top_p
        kept = jnp.sum(jnp.cumsum(probs, axis=-1) - probs < cfg.top_p, axis=-1)
        cutoff = jnp.take_along_axis(sorted_logits, kept[..., None] - 1, axis=-1)
        logits = jnp.where(logits < cutoff, -jnp.inf, logits)
    return jax.random.categorical(key, logits, axis=-1)


def _sample_rows(logits: jax.Array, rows: dict[str, jax.Array], step: jax.Array) -> jax.Array:
    """`_sample` with per-row settings (temperature 0 = greedy, top_k 0 = off). Row r draws with
    key fold_in(key(seed_r), step), so its output doesn't depend on the rows batched beside it."""
    temperature = rows["temperature"]
    greedy = jnp.argmax(logits, axis=-1)

    def sampled():
        hot = temperature > 0
        scaled = logits / jnp.where(hot, temperature, 1.0)[:, None]
        ordered = jnp.sort(scaled, axis=-1)[:, ::-1]
        vocab = logits.shape[-1]
        k = jnp.where(rows["top_k"] > 0, jnp.minimum(rows["top_k"], vocab), vocab)
        kth = jnp.take_along_axis(ordered, k[:, None] - 1, axis=-1)
        ordered = jnp.where(ordered < kth, -jnp.inf, ordered)
        probs = jax.nn.softmax(ordered, axis=-1)
        kept = jnp.sum(jnp.cumsum(probs, axis=-1) - probs < rows["top_p"][:, None], axis=-1)
        kept = jnp.where(rows["top_p"] >= 1.0, vocab, jnp.maximum(kept, 1))
        cutoff = jnp.maximum(jnp.take_along_axis(ordered, kept[:, None] - 1, axis=-1), kth)
        scaled = jnp.where(scaled < cutoff, -jnp.inf, scaled)
        keys = jax.vmap(lambda s: jax.random.fold_in(jax.random.key(s), step))(rows["seed"])
        return jnp.where(hot, jax.vmap(jax.random.categorical)(keys, scaled), greedy)

    return jax.lax.cond(jnp.any(temperature > 0), sampled, lambda: greedy)


def _prefill(model: DecoderLM, ids, mask, max_new_tokens: int):
    """Runs the left-padded prompts into a fresh cache with room for `max_new_tokens` more;
    returns (last logits [B, V], cache, cache mask, next positions [B])."""
    B, T = ids.shape
    cache = model.model.init_cache(B, T + max_new_tokens)
    # New slots are marked valid up front: causality by slot index hides those not yet written.
    cache_mask = jnp.concatenate([mask, jnp.ones((B, max_new_tokens), mask.dtype)], axis=1)
    positions = jnp.maximum(jnp.cumsum(mask, axis=1) - 1, 0)
    hidden, cache = model.model(ids, cache_mask, positions=positions, cache=cache)
    # Only the last position's logits: [B, T, V] for the whole prompt would be GBs at D_t's sizes.
    return model.logits(hidden[:, -1]), cache, cache_mask, positions[:, -1] + 1


def _extend(model: DecoderLM, tok, cache_mask, cache, pos):
    """One token per row into the cache: (logits [B, V], cache)."""
    logits, cache = model(tok[:, None], cache_mask, positions=pos[:, None], cache=cache)
    return logits[:, 0], cache


@functools.partial(jax.jit, static_argnames=("graphdef", "max_new_tokens"))
def prefill(graphdef, state, ids, mask, *, max_new_tokens: int):
    """`_prefill` jitted, for decoding loops driven from the host (lantern_jax/guided.py)."""
    return _prefill(nnx.merge(graphdef, state), ids, mask, max_new_tokens)


@functools.partial(jax.jit, static_argnames=("graphdef",), donate_argnames=("cache",))
def extend(graphdef, state, tok, cache_mask, cache, pos):
    """`_extend` jitted; the cache is updated in place."""
    return _extend(nnx.merge(graphdef, state), tok, cache_mask, cache, pos)


@functools.partial(jax.jit, static_argnames=("graphdef", "cfg"))
def _generate(graphdef, state, ids, mask, stop_ids, pad_id, key, rows=None, *, cfg: SamplingConfig):
    model = nnx.merge(graphdef, state)
    B, T = ids.shape
    N = cfg.max_new_tokens
    last_logits, cache, cache_mask, next_pos = _prefill(model, ids, mask, N)
    K = max(cfg.top_logprobs, 1)

    def emit(carry, step_logits):
        i, tokens, lps, top_i, top_lp, done, key, cache, pos = carry
        key, sub = jax.random.split(key)
        logp = jax.nn.log_softmax(step_logits.astype(jnp.float32), axis=-1)
        logits32 = step_logits.astype(jnp.float32)
        picked = _sample(logits32, sub, cfg) if rows is None else _sample_rows(logits32, rows, i)
        tok = jnp.where(done, pad_id, picked)  # finished rows idle on padding
        lp = jnp.take_along_axis(logp, tok[:, None], axis=-1)[:, 0]
        k_lp, k_id = jax.lax.top_k(logp, K)
        tokens, lps = tokens.at[:, i].set(tok), lps.at[:, i].set(lp)
        top_i, top_lp = top_i.at[:, i].set(k_id), top_lp.at[:, i].set(k_lp)
        done = done | jnp.isin(tok, stop_ids)
        if rows is not None:
            done = done | (i + 1 >= rows["limit"])
        return tok, (i + 1, tokens, lps, top_i, top_lp, done, key, cache, pos)

    carry = (0, jnp.zeros((B, N), jnp.int32), jnp.zeros((B, N), jnp.float32),
             jnp.zeros((B, N, K), jnp.int32), jnp.zeros((B, N, K), jnp.float32),
             jnp.zeros((B,), bool), key, cache, next_pos)
    tok, carry = emit(carry, last_logits)

    def cond(state):
        _, carry = state
        return (carry[0] < N) & ~jnp.all(carry[5])

    def body(state):
        tok, carry = state
        i, tokens, lps, top_i, top_lp, done, key, cache, pos = carry
        step_logits, cache = _extend(model, tok, cache_mask, cache, pos)
        return emit((i, tokens, lps, top_i, top_lp, done, key, cache, pos + 1), step_logits)

    _, carry = jax.lax.while_loop(cond, body, (tok, carry))
    _, tokens, lps, top_i, top_lp, done, *_ = carry
    return tokens, lps, top_i, top_lp


def left_pad(prompts: Sequence[Sequence[int]], pad_id: int, batch_buckets: Sequence[int] = BATCH_BUCKETS,
             length_buckets: Sequence[int] = LENGTH_BUCKETS) -> tuple[np.ndarray, np.ndarray]:
    """(ids, mask) [B, T] in the smallest buckets holding the prompts, left-padded; filler rows
    beyond the prompts hold one token, so no row is all padding."""
    n, longest = len(prompts), max(len(p) for p in prompts)
    if longest == 0:
        raise ValueError("generate: empty prompt")
    B, T = bucket(n, batch_buckets), bucket(longest, length_buckets)
    ids = np.full((B, T), pad_id, np.int32)
    mask = np.zeros((B, T), np.int32)
    for i, p in enumerate(prompts):
        ids[i, T - len(p):], mask[i, T - len(p):] = p, 1
    mask[n:, -1] = 1
    return ids, mask


def generate_ids(model: DecoderLM, prompts: Sequence[Sequence[int]], stop_ids: Sequence[int],
                 cfg: SamplingConfig = SamplingConfig(), pad_id: int = 0, *,
                 rows: Sequence[SamplingConfig] | None = None,
                 batch_buckets: Sequence[int] = BATCH_BUCKETS,
                 length_buckets: Sequence[int] = LENGTH_BUCKETS):
    """Token-level API: left-pads `prompts` into buckets and returns per-prompt arrays
    (tokens [n], logprobs [n], top ids [n, k], top logprobs [n, k]) cut at the first stop token.

    `rows` (one per prompt): each prompt's temperature, top_k, top_p, seed and max_new_tokens
    (its own limit, capped by `cfg.max_new_tokens`), passed as arrays: the compiled program
    depends only on the buckets, `cfg.max_new_tokens` and `cfg.top_logprobs`.
    """
    if not prompts:
        return []
    n = len(prompts)
    ids, mask = left_pad(prompts, pad_id, batch_buckets, length_buckets)
    B = ids.shape[0]
    limits = [cfg.max_new_tokens] * n
    row_arrays = None
    if rows is not None:
        if len(rows) != n:
            raise ValueError(f"generate: {len(rows)} sampling rows for {n} prompts")
        limits = [max(1, min(r.max_new_tokens, cfg.max_new_tokens)) for r in rows]
        fill = B - n  # filler rows: greedy, done after one token

        def column(values, filler, dtype):
            return jnp.asarray(np.asarray(list(values) + [filler] * fill, dtype))

        row_arrays = {"temperature": column((r.temperature for r in rows), 0.0, np.float32),
                      "top_k": column((r.top_k for r in rows), 0, np.int32),
                      "top_p": column((r.top_p for r in rows), 1.0, np.float32),
                      "seed": column((r.seed % 2**32 for r in rows), 0, np.uint32),
                      "limit": column(limits, 1, np.int32)}
        cfg = SamplingConfig(max_new_tokens=cfg.max_new_tokens, top_logprobs=cfg.top_logprobs)
    graphdef, state = nnx.split(model)
    stops = jnp.asarray(list(stop_ids) or [-1], jnp.int32)  # no stop ids: -1 never matches
    out = _generate(graphdef, state, jnp.asarray(ids), jnp.asarray(mask), stops, jnp.int32(pad_id),
                    jax.random.key(cfg.seed), row_arrays, cfg=cfg)
    tokens, lps, top_i, top_lp = (np.asarray(x) for x in out)
    results = []
    for i in range(n):
        stop_at = np.flatnonzero(np.isin(tokens[i, :limits[i]], list(stop_ids)))
        end = int(stop_at[0]) + 1 if stop_at.size else limits[i]
        results.append((tokens[i, :end], lps[i, :end], top_i[i, :end], top_lp[i, :end]))
    return results


def generate(model: DecoderLM, tokenizer, prompts: Sequence[str],
             cfg: SamplingConfig = SamplingConfig()) -> list[Generation]:
    """Text in, `Generation`s out. Stops at the tokenizer's EOS (and `<|im_end|>` if present)."""
    encoded = [tokenizer(p, add_special_tokens=False)["input_ids"] for p in prompts]
    stops = stop_token_ids(tokenizer)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else min(stops)
    out = []
    for tokens, lps, top_i, top_lp in generate_ids(model, encoded, stops, cfg, pad):
        body = tokens[:-1] if len(tokens) and tokens[-1] in stops else tokens
        keep = cfg.top_logprobs > 0
        out.append(Generation(tokenizer.decode(body, skip_special_tokens=True), tokens.tolist(),
                              lps.tolist(), top_i if keep else None, top_lp if keep else None))
    return out
