"""Reading label-word probabilities for the fit level out of OpenAI-style token logprobs.

The soft label is read at the token where the `fit_level` value starts: every alternative in that
position's top_logprobs whose text (quotes and spaces stripped) is a prefix of exactly one level
name (or starts with one) adds its probability to that level; the sum is renormalised over levels.
"""
from __future__ import annotations

import math
import re
from typing import Any, Sequence

from lantern_jax.data.schema import FIT_LEVELS

_FIT_VALUE = re.compile(r'"fit_level"\s*:\s*"')


def level_of(token: str) -> str | None:
    word = re.sub(r"[^a-z]", "", token.lower())
    if not word:
        return None
    hits = [lvl for lvl in FIT_LEVELS if lvl.startswith(word) or word.startswith(lvl)]
    return hits[0] if len(hits) == 1 else None


def _token_bytes(entry: dict[str, Any]) -> int:
    raw = entry.get("bytes")
    return len(raw) if isinstance(raw, list) else len(str(entry.get("token", "")).encode("utf-8"))


def fit_token_index(content: Sequence[dict[str, Any]], text: str) -> int | None:
    """Index of the token holding the first character of the fit_level value in `text`."""
    m = _FIT_VALUE.search(text or "")
    if m is None:
        return None
    target, offset = len(text[:m.end()].encode("utf-8")), 0
    for i, entry in enumerate(content):
        size = _token_bytes(entry)
        if offset <= target < offset + max(size, 1):
            return i
        offset += size
    return None


def fit_level_probs(content: Sequence[dict[str, Any]] | None, text: str) -> dict[str, Any] | None:
    """{"high": p, "medium": p, "low": p, "mass": covered probability} or None when unreadable."""
    if not content:
        return None
    i = fit_token_index(content, text)
    if i is None:
        return None
    entry = content[i]
    alternatives = entry.get("top_logprobs") or [entry]
    mass = dict.fromkeys(FIT_LEVELS, 0.0)
    seen = set()
    for alt in alternatives:
        token = str(alt.get("token", ""))
        level = level_of(token)
        if level is None or token in seen:
            continue
        seen.add(token)
        mass[level] += math.exp(float(alt.get("logprob", -math.inf)))
    total = sum(mass.values())
    if total <= 0:
        return None
    return {**{lvl: mass[lvl] / total for lvl in FIT_LEVELS}, "mass": min(total, 1.0)}


def compact(content: Sequence[dict[str, Any]] | None, top_k: int) -> list[dict[str, Any]] | None:
    """Token logprobs as the API returns them, trimmed to `top_k` alternatives, bytes dropped."""
    if content is None:
        return None
    return [{"token": e.get("token"), "logprob": e.get("logprob"),
             "top_logprobs": [{"token": a.get("token"), "logprob": a.get("logprob")}
                              for a in (e.get("top_logprobs") or [])[:top_k]]} for e in content]
