"""Shared helpers for the teacher-path tests: real D_base pairs (data/synth/), generated once per
process, and simulated-teacher records built without HTTP for the gate and parser tests."""
from __future__ import annotations

import functools
import os

from lantern_jax.data import synth
from lantern_jax.data.schema import Pair
from lantern_jax.teacher.parse import TeacherOutputError, parse_assessment
from lantern_jax.teacher.simulated import ExpertConfig, SimulatedExpert


@functools.lru_cache(maxsize=None)
def _pairs(n: int, seed: int) -> tuple[Pair, ...]:
    return tuple(synth.generate_pairs(n, seed=seed))


def synth_pairs(n: int, seed: int = 7) -> list[Pair]:
    """`n` D_base train pairs (cached: the generator takes a few ms per pair)."""
    return list(_pairs(n, seed))


def write_pairs_file(path: str | os.PathLike, pairs) -> str:
    synth.write_pairs(path, pairs)
    return str(path)


def expert_records(pairs, error_rates: dict[str, float] | None = None, seed: int = 3):
    """(records shaped like label.py's, planted error names per pair) from the simulated expert."""
    expert = SimulatedExpert(pairs, ExpertConfig(seed=seed, error_rates=error_rates or {}))
    records, planted = [], {}
    for pair in pairs:
        answer = expert.answer(pair)
        raw = answer.text if answer.text is not None else answer.refusal
        try:
            assessment, error = parse_assessment(raw).to_dict(), None
        except TeacherOutputError as e:
            assessment, error = None, str(e)
        records.append({"pair_id": pair.pair_id, "raw_text": raw, "assessment": assessment, "parse_error": error,
                        "fit_probs": answer.fit_probs, "prompt_version": "test", "teacher_id": "sim",
                        "decoding": {}})
        planted[pair.pair_id] = set(answer.planted)
    return records, planted
