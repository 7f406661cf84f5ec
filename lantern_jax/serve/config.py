"""Serving settings, validated up front with one-line errors naming the setting."""
from __future__ import annotations

import dataclasses

from lantern_jax.generate import BATCH_BUCKETS, LENGTH_BUCKETS
from lantern_jax.serve.fit import buckets_up_to

MIN_PROMPT_BUCKET = 256  # shorter prompts pad to 256: decode cost is in the cache, not the prompt


@dataclasses.dataclass(frozen=True)
class ServeConfig:
    max_batch: int = 32  # /v1/fit: pairs per classifier call
    max_gen_batch: int = 8  # /v1/explain + /v1/chat/completions: sequences per generate call
    max_wait_ms: float = 5.0  # how long the oldest queued example may wait for company
    max_body_bytes: int = 1 << 20
    timeout_s: float = 60.0  # per request, queueing included
    max_pairs: int = 256  # per /v1/fit request
    classifier_max_length: int = 512  # tokens; longer pair texts are truncated, as in training
    max_new_tokens: int = 512  # generation budget; larger max_tokens requests are capped to it
    max_prompt_tokens: int = 2048  # longer prompts are refused with a 4xx
    prompt_buckets: tuple[int, ...] = ()  # default: powers of two from 256 up to max_prompt_tokens
    model_name: str = "lantern-explainer"  # the `model` /v1/chat/completions answers to

    def __post_init__(self):
        positive = ("max_batch", "max_gen_batch", "max_body_bytes", "timeout_s", "max_pairs",
                    "classifier_max_length", "max_new_tokens", "max_prompt_tokens")
        for name in positive:
            if getattr(self, name) <= 0:
                raise ValueError(f"serve config: {name} must be > 0, got {getattr(self, name)!r}")
        if self.max_wait_ms < 0:
            raise ValueError(f"serve config: max_wait_ms must be >= 0, got {self.max_wait_ms!r}")
        if self.prompt_buckets and (list(self.prompt_buckets) != sorted(set(self.prompt_buckets))
                                    or self.prompt_buckets[0] <= 0):
            raise ValueError(f"serve config: prompt_buckets must be increasing positive lengths, "
                             f"got {self.prompt_buckets!r}")

    @property
    def fit_batch_buckets(self) -> tuple[int, ...]:
        return buckets_up_to(self.max_batch, BATCH_BUCKETS)

    @property
    def gen_batch_buckets(self) -> tuple[int, ...]:
        return buckets_up_to(self.max_gen_batch, BATCH_BUCKETS)

    @property
    def gen_prompt_buckets(self) -> tuple[int, ...]:
        if self.prompt_buckets:
            return self.prompt_buckets
        return buckets_up_to(self.max_prompt_tokens, [b for b in LENGTH_BUCKETS if b >= MIN_PROMPT_BUCKET])
