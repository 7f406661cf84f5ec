"""D_t: the fine-tuned in-house teacher labels D_base, keeping its top-k per generated token.

Generation runs in batches with our KV-cache decoder; each record holds the pair id, the prompt,
the generated text and token ids, the top-k (ids, logprobs) of every generated token in the
shared student vocabulary, the fit-level label probabilities read at the fit-level token, and the
parsed Assessment or the parse error. Records are appended to one JSONL per process (pairs are
sharded by id as in `label.py`); a rerun skips pairs already written, so it resumes.
"""
from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Sequence

import jax
import numpy as np
from tqdm import tqdm

from lantern_jax.data import pointers
from lantern_jax.data.input_pipeline import prompt_ids
from lantern_jax.data.records import shard_of, shard_path
from lantern_jax.data.schema import FIT_LEVELS, Pair
from lantern_jax.generate import SamplingConfig, generate_ids
from lantern_jax.teacher.logprobs import level_of
from lantern_jax.teacher.parse import TeacherOutputError, parse_assessment

_FIT_VALUE = re.compile(r'"fit_level"\s*:\s*"')


def fit_token_position(tokenizer, token_ids: Sequence[int]) -> int | None:
    """Index of the generated token holding the first character of the fit_level value."""
    text = tokenizer.decode(token_ids, skip_special_tokens=True)
    m = _FIT_VALUE.search(text)
    if m is None:
        return None
    lo, hi = 0, len(token_ids)  # smallest prefix whose decoded text reaches past the match
    while lo < hi:
        mid = (lo + hi) // 2
        if len(tokenizer.decode(token_ids[:mid + 1], skip_special_tokens=True)) > m.end():
            hi = mid
        else:
            lo = mid + 1
    return lo if lo < len(token_ids) else None


def label_probs(tokenizer, token_ids, top_ids, top_logprobs) -> np.ndarray | None:
    """[low, medium, high] from the top-k at the fit-level token (renormalised over levels)."""
    i = fit_token_position(tokenizer, list(token_ids))
    if i is None:
        return None
    mass = np.zeros(len(FIT_LEVELS))
    for tid, lp in zip(top_ids[i], top_logprobs[i]):
        level = level_of(tokenizer.decode([int(tid)]))
        if level is not None:
            mass[FIT_LEVELS.index(level)] += math.exp(float(lp))
    return mass / mass.sum() if mass.sum() > 0 else None


def produce(model, tokenizer, pairs: Sequence[Pair], out: str, *, topk: int = 20,
            max_new_tokens: int = 512, batch_size: int = 32, teacher_id: str = "inhouse",
            process_index: int | None = None, process_count: int | None = None,
            log_every: int = 1) -> dict[str, float]:
    """Labels this process's share of `pairs` into `out` (JSONL); returns a summary. A progress
    bar counts pairs (`log_every=0` hides it)."""
    pi = jax.process_index() if process_index is None else process_index
    pc = jax.process_count() if process_count is None else process_count
    path = shard_path(out, pi, pc)
    done = _done_ids(path)
    todo = [p for p in pairs if shard_of(p.pair_id, pc) == pi and p.pair_id not in done]
    sampling = SamplingConfig(max_new_tokens=max_new_tokens, top_logprobs=topk)
    stop = [tokenizer.eos_token_id]
    parsed = written = 0
    bar = tqdm(total=len(done) + len(todo), initial=len(done), desc="d_t", unit="pair", disable=not log_every,
               dynamic_ncols=True)
    with bar, open(path, "a") as f:
        for start in range(0, len(todo), batch_size):
            batch = todo[start:start + batch_size]
            messages = [pointers.inhouse_messages(p) for p in batch]
            outs = generate_ids(model, [prompt_ids(tokenizer, m) for m in messages], stop, sampling,
                                pad_id=tokenizer.pad_token_id)
            for pair, msgs, (tokens, _, top_i, top_lp) in zip(batch, messages, outs):
                text = tokenizer.decode(tokens, skip_special_tokens=True)
                try:
                    assessment, error = parse_assessment(pointers.expand(text, pair)).to_dict(), None
                    parsed += 1
                except TeacherOutputError as e:
                    assessment, error = None, str(e)
                probs = label_probs(tokenizer, tokens, top_i, top_lp)
                f.write(json.dumps({
                    "pair_id": pair.pair_id, "teacher_id": teacher_id,
                    "decoding": {"max_new_tokens": max_new_tokens, "temperature": 0.0, "top_logprobs": topk},
                    "prompt": json.dumps(msgs), "generated_text": text,
                    "token_ids": np.asarray(tokens).tolist(), "topk_ids": np.asarray(top_i).tolist(),
                    "topk_logprobs": np.round(np.asarray(top_lp, np.float64), 6).tolist(),
                    "label_probs": None if probs is None else probs.tolist(),
                    "assessment": assessment, "parse_error": error}) + "\n")
                written += 1
            f.flush()
            bar.update(len(batch))
            bar.set_postfix(parsed=f"{parsed}/{written}", refresh=False)
    return {"written": written, "skipped": len(done), "parsed": parsed,
            "parse_rate": parsed / written if written else float("nan")}


def _done_ids(path: str) -> set[str]:
    """Pair ids already written; a torn last line (a kill mid-write) is dropped and redone."""
    if not os.path.exists(path):
        return set()
    done, good = set(), 0
    with open(path, "rb") as f:
        data = f.read()
    for line in data.split(b"\n"):
        if not line.strip():
            continue
        try:
            done.add(json.loads(line)["pair_id"])
            good += len(line) + 1
        except (ValueError, KeyError):
            break
    if good < len(data):  # truncate the torn tail so appends start on a clean line
        with open(path, "r+b") as f:
            f.truncate(good)
    return done


def d_t_record(r: dict, topk: int) -> dict:
    """A labeled record in the D_t dataset layout (arrays, fixed k)."""
    probs = r["label_probs"] or [1 / 3] * 3
    return {"pair_id": r["pair_id"], "prompt": r["prompt"], "generated_text": r["generated_text"],
            "token_ids": np.asarray(r["token_ids"], np.int32),
            "topk_ids": np.asarray(r["topk_ids"], np.int32)[:, :topk],
            "topk_logprobs": np.asarray(r["topk_logprobs"], np.float32)[:, :topk],
            "label_probs": np.asarray(probs, np.float32)}
