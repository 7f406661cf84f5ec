"""What the routes work with: the loaded models, their micro-batchers, the metrics; and loading
them from `save_hf` exports (with every shape bucket compiled before the first request)."""
from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Awaitable

from lantern_jax.models import sources
from lantern_jax.models.decoder import DecoderLM
from lantern_jax.models.encoder import Classifier
from lantern_jax.serve.batcher import MicroBatcher
from lantern_jax.serve.config import ServeConfig
from lantern_jax.serve.errors import ApiError
from lantern_jax.serve.fit import FitScorer
from lantern_jax.serve.generation import Generator
from lantern_jax.serve.metrics import ServerMetrics

log = logging.getLogger("lantern_jax.serve")


class Service:
    """The loaded models, their batchers and the metrics; what the routes work with."""

    def __init__(self, config: ServeConfig, scorer: FitScorer | None, generator: Generator | None):
        if scorer is None and generator is None:
            raise ValueError("serve: load a classifier, an explainer or both")
        self.config, self.scorer, self.generator = config, scorer, generator
        self.metrics = ServerMetrics()
        self.started = time.time()
        wait = config.max_wait_ms / 1000
        self.fit_batcher = (MicroBatcher("classifier", scorer.predict, max_batch=config.max_batch,
                                         max_wait_s=wait, metrics=self.metrics) if scorer else None)
        self.gen_batcher = (MicroBatcher("explainer", self._generate, max_batch=config.max_gen_batch,
                                         max_wait_s=wait, metrics=self.metrics) if generator else None)

    def _generate(self, requests):
        outs = self.generator.run(requests)
        self.metrics.tokens.inc(sum(o.completion_tokens for o in outs))
        return outs

    def warmup(self) -> None:
        """Compiles every shape bucket, so no request waits on a compile."""
        for name, model in (("classifier", self.scorer), ("explainer", self.generator)):
            if model is not None:
                log.info("warm-up: compiling %d %s buckets", len(model.shapes()), name)
                seconds = model.warmup()
                log.info("warm-up: %s ready in %.1f s", name, seconds)

    def batchers(self) -> list[MicroBatcher]:
        return [b for b in (self.fit_batcher, self.gen_batcher) if b]

    async def within_timeout(self, work: Awaitable):
        try:
            async with asyncio.timeout(self.config.timeout_s):
                return await work
        except TimeoutError:
            raise ApiError(504, f"request did not finish within {self.config.timeout_s:g} s (server busy); "
                                "try again later", "timeout", code="timeout") from None

    def need_scorer(self) -> FitScorer:
        if self.scorer is None:
            raise ApiError(503, "no classifier is loaded on this server (start it with --classifier)",
                           "model_unavailable")
        return self.scorer

    def need_generator(self) -> Generator:
        if self.generator is None:
            raise ApiError(503, "no explainer is loaded on this server (start it with --explainer)",
                           "model_unavailable")
        return self.generator

    def prompt(self, messages, *, param: str, status: int) -> list[int]:
        """Chat-templated prompt ids; a prompt longer than the largest bucket answers `status`."""
        ids = self.need_generator().prompt_ids(messages)
        limit = self.generator.max_prompt_tokens
        if len(ids) > limit:
            raise ApiError(status, f"the prompt is {len(ids)} tokens; this server takes prompts of at most "
                                   f"{limit} tokens", param=param, code="context_length_exceeded")
        return ids


def load_service(config: ServeConfig, *, classifier: str | os.PathLike | None = None,
                 explainer: str | os.PathLike | None = None, warmup: bool = True) -> Service:
    """Models from `save_hf` export folders (config, safetensors and tokenizer files)."""
    scorer = generator = None
    if classifier is not None:
        model, tokenizer = sources.load(classifier)
        if not isinstance(model, Classifier):
            raise ValueError(f"--classifier {classifier}: holds a {type(model).__name__}, not a classifier export")
        scorer = FitScorer(model, tokenizer, max_length=config.classifier_max_length,
                           batch_buckets=config.fit_batch_buckets)
    if explainer is not None:
        model, tokenizer = sources.load(explainer)
        if not isinstance(model, DecoderLM):
            raise ValueError(f"--explainer {explainer}: holds a {type(model).__name__}, not a causal LM export")
        generator = Generator(model, tokenizer, max_new_tokens=config.max_new_tokens,
                              batch_buckets=config.gen_batch_buckets, prompt_buckets=config.gen_prompt_buckets)
    service = Service(config, scorer, generator)
    if warmup:
        service.warmup()
    return service
