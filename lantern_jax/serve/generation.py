"""The decoder behind /v1/explain and /v1/chat/completions: batched requests -> generations.

One `generate_ids` call serves a whole micro-batch whatever each request's temperature, top_p,
seed or token limit (they travel as per-row arrays); /v1/explain requests asking for `guided`
decoding go through `guided.guided_ids` as one batch beside it. The program depends only on the (batch,
prompt length) bucket: the new-token budget is the server's `max_new_tokens` (each row stops at
its own limit) and the top-20 logprobs are always computed (requests keep what they asked for).
`warmup()` compiles every bucket at startup.

Text is built from the tokens' bytes (`token_bytes.py`), so the logprob entries' bytes add up to
the text exactly, which is how OpenAI clients find a character's token.
"""
from __future__ import annotations

import codecs
import dataclasses
import itertools
import time
from collections.abc import Mapping, Sequence

import numpy as np

from lantern_jax import guided
from lantern_jax.data.input_pipeline import prompt_ids
from lantern_jax.generate import SamplingConfig, generate_ids
from lantern_jax.models.hf import stop_token_ids
from lantern_jax.models.decoder import DecoderLM
from lantern_jax.serve.schemas import MAX_TOP_LOGPROBS
from lantern_jax.data.token_bytes import token_bytes_table


@dataclasses.dataclass(frozen=True)
class GenRequest:
    prompt_ids: tuple[int, ...]
    sampling: SamplingConfig  # temperature, top_k, top_p, seed; max_new_tokens = this request's limit
    stop: tuple[str, ...] = ()  # stop strings, cut from the text after generation
    top_logprobs: int | None = None  # None: no logprobs; else alternatives per token (0..20)
    guided: bool = False  # an Assessment decoded under its schema (lantern_jax/guided.py), greedy


@dataclasses.dataclass
class GenOutput:
    text: str
    token_ids: list[int]
    finish_reason: str  # "stop" (stop token or string) | "length"
    prompt_tokens: int
    completion_tokens: int
    logprobs: list[dict] | None  # OpenAI `choices[0].logprobs.content`


class Generator:
    """`generator.run(requests) -> outputs`, one `generate_ids` call per batch."""

    def __init__(self, model: DecoderLM, tokenizer, *, max_new_tokens: int, batch_buckets: Sequence[int],
                 prompt_buckets: Sequence[int]):
        if not getattr(tokenizer, "chat_template", None):
            raise ValueError("the explainer's tokenizer has no chat template: prompts can't be built")
        self.model, self.tokenizer = model, tokenizer
        self.max_new_tokens = max_new_tokens
        self.batch_buckets, self.prompt_buckets = tuple(batch_buckets), tuple(prompt_buckets)
        self.max_prompt_tokens = self.prompt_buckets[-1]
        self.stop_ids = stop_token_ids(tokenizer)
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else self.stop_ids[0]
        self._bytes = token_bytes_table(tokenizer, model.cfg.vocab_size)
        self._budget = SamplingConfig(max_new_tokens=max_new_tokens, top_logprobs=MAX_TOP_LOGPROBS)

    def guided_problem(self) -> str | None:
        """Why this server can't decode guided Assessments (its token budget), or None."""
        return guided.budget_problem(self.tokenizer, self.model.cfg.vocab_size, self.max_new_tokens)

    def prompt_ids(self, messages: Sequence[Mapping[str, str]]) -> list[int]:
        return prompt_ids(self.tokenizer, messages)

    def shapes(self) -> list[tuple[int, int]]:
        return list(itertools.product(self.batch_buckets, self.prompt_buckets))

    def warmup(self) -> float:
        """Compiles every (batch, prompt length) bucket (one token each); returns the seconds."""
        tic = time.perf_counter()
        for B, T in self.shapes():
            prompts = [[self.pad_id] * T] * B
            rows = [SamplingConfig(max_new_tokens=1, temperature=1.0 if i == 0 else 0.0) for i in range(B)]
            generate_ids(self.model, prompts, self.stop_ids, self._budget, self.pad_id, rows=rows,
                         batch_buckets=self.batch_buckets, length_buckets=self.prompt_buckets)
        return time.perf_counter() - tic

    def run(self, requests: Sequence[GenRequest]) -> list[GenOutput]:
        outputs: list[GenOutput | None] = [None] * len(requests)
        free = [i for i, r in enumerate(requests) if not r.guided]
        if free:
            outs = generate_ids(self.model, [list(requests[i].prompt_ids) for i in free], self.stop_ids,
                                self._budget, self.pad_id, rows=[requests[i].sampling for i in free],
                                batch_buckets=self.batch_buckets, length_buckets=self.prompt_buckets)
            for i, o in zip(free, outs):
                outputs[i] = self._finish(requests[i], *o)
        schema = [i for i, r in enumerate(requests) if r.guided]
        if schema:
            outs = guided.guided_ids(self.model, self.tokenizer, [list(requests[i].prompt_ids) for i in schema],
                                     max_new_tokens=self.max_new_tokens, pad_id=self.pad_id,
                                     batch_buckets=self.batch_buckets, length_buckets=self.prompt_buckets)
            for i, tokens in zip(schema, outs):
                raw = b"".join(self._bytes[t] for t in tokens)
                outputs[i] = GenOutput(text=raw.decode("utf-8", errors="replace"), token_ids=tokens,
                                       finish_reason="stop", prompt_tokens=len(requests[i].prompt_ids),
                                       completion_tokens=len(tokens), logprobs=None)
        return outputs

    def pieces(self, out: GenOutput) -> list[str]:
        """`out.text` cut at its tokens, one piece per token (a character split across tokens comes
        with its last byte), for streaming: the pieces join to the text exactly."""
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        pieces, used = [], 0
        for t in out.token_ids:
            piece = decoder.decode(self._bytes[t] if t < len(self._bytes) else b"")
            piece = piece[:max(len(out.text) - used, 0)]  # a stop string may end inside a token
            pieces.append(piece)
            used += len(piece)
        if pieces:  # an incomplete character at the end decodes as U+FFFD, as in the text
            pieces[-1] += decoder.decode(b"", final=True)[:max(len(out.text) - used, 0)]
        if "".join(pieces) != out.text:  # replacement characters fell differently: one piece, still exact
            return [out.text] + [""] * (len(out.token_ids) - 1) if out.token_ids else [out.text]
        return pieces

    # -- one row --------------------------------------------------------------------------------
    def _finish(self, request: GenRequest, tokens, lps, top_ids, top_lps) -> GenOutput:
        generated = len(tokens)
        stopped = generated > 0 and int(tokens[-1]) in self.stop_ids
        body = [int(t) for t in (tokens[:-1] if stopped else tokens)]
        pieces = [self._bytes[t] if t < len(self._bytes) else b"" for t in body]
        raw = b"".join(pieces)
        cut = _first_stop(raw, request.stop)
        if cut is not None:  # keep the tokens that start before the stop string
            starts = np.cumsum([0] + [len(p) for p in pieces[:-1]]) if pieces else np.zeros(0)
            keep = int(np.sum(starts < cut)) if cut > 0 else 0
            body, pieces, raw, stopped = body[:keep], pieces[:keep], raw[:cut], True
            generated = keep
        logprobs = None
        if request.top_logprobs is not None:
            logprobs = [self._entry(t, piece, lps[j], top_ids[j], top_lps[j], request.top_logprobs)
                        for j, (t, piece) in enumerate(zip(body, pieces))]
        return GenOutput(text=raw.decode("utf-8", errors="replace"), token_ids=body,
                         finish_reason="stop" if stopped else "length", prompt_tokens=len(request.prompt_ids),
                         completion_tokens=generated, logprobs=logprobs)

    def _token(self, token_id: int, piece: bytes | None = None) -> dict:
        raw = piece if piece is not None else (self._bytes[token_id] if token_id < len(self._bytes) else b"")
        return {"token": raw.decode("utf-8", errors="replace"), "bytes": list(raw)}

    def _entry(self, token_id, piece, logprob, top_ids, top_lps, k: int) -> dict:
        alternatives = [{**self._token(int(i)), "logprob": float(lp)} for i, lp in zip(top_ids[:k], top_lps[:k])]
        return {**self._token(token_id, piece), "logprob": float(logprob), "top_logprobs": alternatives}


def _first_stop(raw: bytes, stops: Sequence[str]) -> int | None:
    """Byte offset of the earliest stop string in `raw`, or None."""
    hits = [raw.find(s.encode("utf-8")) for s in stops]
    hits = [h for h in hits if h >= 0]
    return min(hits) if hits else None
