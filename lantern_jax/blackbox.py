"""The pipeline's black-box teacher: the simulated expert behind a real OpenAI-compatible server on
loopback, reached through the real client -- or any OpenAI-compatible URL instead.

One setup for every workflow that asks it (labelling in the pipeline, judging counterfactuals in
the audit), driven by the pipeline config's `blackbox` section.
"""
from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence

import ml_collections

from lantern_jax.data.schema import Pair
from lantern_jax.teacher.client import ApiTeacher
from lantern_jax.teacher.config import TeacherConfig
from lantern_jax.teacher.server import ServerConfig, serve_in_process
from lantern_jax.teacher.simulated import ExpertConfig


def server_config(cfg: ml_collections.ConfigDict) -> ServerConfig:
    """The simulated server of a pipeline config: its seed, content errors and transport faults."""
    section = cfg.blackbox
    return ServerConfig(seed=cfg.seed, expert=ExpertConfig(seed=cfg.seed, error_rates=dict(section.error_rates)),
                        fault_rates=dict(section.fault_rates), retry_after_s=0.05)


@contextlib.contextmanager
def teacher(cfg: ml_collections.ConfigDict, pairs: Sequence[Pair], *, cache_dir: str | None = None,
            url: str | None = None, key_env: str | None = None,
            record_top_logprobs: int | None = None) -> Iterator[ApiTeacher]:
    """An `ApiTeacher` for `url`, or for the simulated expert serving `pairs` (in a child process,
    so its JSON encoding runs on its own core) while the block runs."""
    section = cfg.blackbox
    server = contextlib.nullcontext(url) if url else serve_in_process(pairs, server_config(cfg))
    with server as base_url:
        yield ApiTeacher(TeacherConfig(
            base_url=base_url, api_key_env=key_env, concurrency=section.concurrency, cache_dir=cache_dir,
            backoff_base_s=0.05, top_logprobs=section.top_logprobs,
            record_top_logprobs=section.record_top_logprobs if record_top_logprobs is None else record_top_logprobs,
            progress=False))
