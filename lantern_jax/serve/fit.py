"""The fit classifier behind /v1/fit: pair texts -> class probabilities, in fixed shape buckets.

Texts are tokenized as in training (`input_pipeline.classifier_example`: special tokens added,
truncated at `max_length`), right-padded to the smallest (batch, length) bucket that holds them,
and run through one jitted forward per bucket. Every bucket is compiled by `warmup()` at startup,
so no request ever waits on a compile.

Tokenizing is paid per token, and a pair text runs well past the classifier's window, most of it
cut by truncation (costs and lengths: docs/benchmarks.md, serving), so only a prefix is tokenized:
the text up to a line break well past `max_length` tokens' worth of characters. Our tokenizers (byte-level BPE, WordPiece) split at
whitespace before merging, so the tokens before that break are the full text's; a prefix that
comes out shorter than `max_length` tokens is redone on the full text. The result equals
tokenizing the whole text (checked in tests/test_serve.py).
"""
from __future__ import annotations

import itertools
import re
import time
from collections.abc import Sequence

import jax
import numpy as np
from flax import nnx

from lantern_jax.generate import bucket
from lantern_jax.models.encoder import Classifier

LENGTH_BUCKETS = (128, 256, 512, 1024, 2048, 4096, 8192)
CHARS_PER_TOKEN = 6  # generous: BPE / WordPiece tokens of prose average 3-5 characters
_SAFE_BREAK = re.compile(r"(?<=\S)\n(?=\S)")  # a lone line break: no whitespace run to re-split


def buckets_up_to(limit: int, sizes: Sequence[int]) -> tuple[int, ...]:
    """The sizes below `limit`, then `limit` itself: every count up to `limit` has a bucket."""
    return tuple(s for s in sizes if s < limit) + (limit,)


class FitScorer:
    """`scorer.predict(texts) -> probabilities [n, num_classes]` (rows follow `scorer.labels`)."""

    def __init__(self, model: Classifier, tokenizer, *, max_length: int, batch_buckets: Sequence[int]):
        self.tokenizer = tokenizer
        self.labels = tuple(model.cfg.labels)
        backbone_limit = getattr(model.cfg.backbone, "max_position_embeddings", max_length)
        self.max_length = min(max_length, backbone_limit)
        self.batch_buckets = tuple(batch_buckets)
        self.length_buckets = buckets_up_to(self.max_length, LENGTH_BUCKETS)
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        graphdef, self._state = nnx.split(model)

        @jax.jit
        def probabilities(state, ids, mask):
            return jax.nn.softmax(nnx.merge(graphdef, state)(ids, mask).astype(np.float32), axis=-1)

        self._forward = probabilities

    def shapes(self) -> list[tuple[int, int]]:
        return list(itertools.product(self.batch_buckets, self.length_buckets))

    def warmup(self) -> float:
        """Compiles every (batch, length) bucket; returns the seconds it took."""
        tic = time.perf_counter()
        for B, T in self.shapes():
            ids, mask = np.full((B, T), self.pad_id, np.int32), np.ones((B, T), np.int32)
            jax.block_until_ready(self._forward(self._state, ids, mask))
        return time.perf_counter() - tic

    def _prefix(self, text: str) -> str:
        match = _SAFE_BREAK.search(text, self.max_length * CHARS_PER_TOKEN)
        return text[:match.end()] if match else text

    def _tokenize(self, texts: Sequence[str]) -> list[list[int]]:
        return self.tokenizer(list(texts), truncation=True, max_length=self.max_length)["input_ids"]

    def encode(self, texts: Sequence[str]) -> list[list[int]]:
        prefixes = [self._prefix(t) for t in texts]
        encoded = self._tokenize(prefixes)
        short = [i for i, (e, p, t) in enumerate(zip(encoded, prefixes, texts))
                 if len(e) < self.max_length and len(p) < len(t)]
        for i, e in zip(short, self._tokenize([texts[i] for i in short]) if short else []):
            encoded[i] = e
        return encoded

    def predict(self, texts: Sequence[str]) -> np.ndarray:
        encoded = self.encode(texts)
        n = len(encoded)
        if n > self.batch_buckets[-1]:
            raise ValueError(f"{n} texts exceed the largest batch bucket {self.batch_buckets[-1]}")
        B = bucket(n, self.batch_buckets)
        T = bucket(max(len(e) for e in encoded), self.length_buckets)
        ids = np.full((B, T), self.pad_id, np.int32)
        mask = np.zeros((B, T), np.int32)
        for i, e in enumerate(encoded):
            ids[i, :len(e)], mask[i, :len(e)] = e, 1
        mask[n:, 0] = 1  # filler rows: one token, so no row attends to nothing
        return np.asarray(self._forward(self._state, ids, mask))[:n]
