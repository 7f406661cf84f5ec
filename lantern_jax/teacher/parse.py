"""Validating parser for teacher outputs: text -> Assessment, or a one-line TeacherOutputError.

Accepts a bare JSON object, one inside a ``` fenced block, or one surrounded by chatter. Checks the
schema, enum values, that every requirement has a verdict, and that the explanation opens with the
stated fit level. On arbitrary input it raises nothing but `TeacherOutputError`.
"""
from __future__ import annotations

import json
import re
from typing import Any

from lantern_jax.data.schema import (EXPLANATION_OPENING, FIT_LEVELS, IMPORTANCE, VERDICTS, Assessment,
                                     Requirement, scrub_text, text_problem)

_FENCED = re.compile(r"```(?:json|JSON)?\s*\n?(.*?)```", re.S)
_REQUIREMENT_KEYS = ("requirement", "importance", "verdict", "evidence")


class TeacherOutputError(ValueError):
    """A teacher output that is not a valid Assessment; str() is a one-line reason."""

    def __init__(self, reason: str):
        super().__init__(scrub_text(" ".join(str(reason).split())[:300]))  # always writable to a record


def _preview(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _json_object(text: str) -> dict:
    """The first JSON object in `text`: fenced block first, else from the first '{'."""
    if not isinstance(text, str):
        raise TeacherOutputError(f"expected text, got {type(text).__name__}")
    if not text.strip():
        raise TeacherOutputError("empty output")
    candidates = [m.group(1) for m in _FENCED.finditer(text)] + [text]
    decoder = json.JSONDecoder()
    last_error = "no JSON object found"
    for candidate in candidates:
        start = candidate.find("{")
        if start < 0:
            continue
        try:
            value, _ = decoder.raw_decode(candidate, start)
        except json.JSONDecodeError as e:
            truncated = e.pos >= len(candidate.rstrip()) - 1
            last_error = f"{'truncated' if truncated else 'malformed'} JSON: {e.msg} at char {e.pos}"
            continue
        except (RecursionError, ValueError) as e:  # absurd nesting, over-long integer literals
            last_error = f"malformed JSON: {type(e).__name__}"
            continue
        if isinstance(value, dict):
            return value
        last_error = "JSON value is not an object"
    raise TeacherOutputError(last_error)


def _string(d: dict, key: str, where: str, allowed: tuple[str, ...] | None = None) -> str:
    if key not in d:
        raise TeacherOutputError(f"{where}: missing {key!r}")
    value = d[key]
    if not isinstance(value, str):
        raise TeacherOutputError(f"{where}: {key!r} must be a string, got {_preview(value)}")
    if allowed is not None and value not in allowed:
        raise TeacherOutputError(f"{where}: {key!r} is {_preview(value)}, expected one of {'|'.join(allowed)}")
    if problem := text_problem(value):  # a "\ud800" escape: JSON, but no text a record or tokenizer can hold
        raise TeacherOutputError(f"{where}: {key!r} {problem}")
    return value


def _no_extra_keys(d: dict, allowed: tuple[str, ...], where: str) -> None:
    extra = sorted(str(k) for k in d if k not in allowed)
    if extra:
        raise TeacherOutputError(f"{where}: unexpected key(s) {', '.join(_preview(k) for k in extra[:3])}")


def _requirement(item: Any, i: int, need_verdict: bool) -> dict:
    where = f"requirements[{i}]"
    if not isinstance(item, dict):
        raise TeacherOutputError(f"{where} is not an object")
    keys = _REQUIREMENT_KEYS if need_verdict else _REQUIREMENT_KEYS[:2]
    _no_extra_keys(item, keys, where)
    out = {"requirement": _string(item, "requirement", where),
           "importance": _string(item, "importance", where, IMPORTANCE)}
    if not out["requirement"].strip():
        raise TeacherOutputError(f"{where}: empty requirement")
    if need_verdict:
        out["verdict"] = _string(item, "verdict", where, VERDICTS)
        out["evidence"] = _string(item, "evidence", where)
    return out


def _requirements(obj: dict, need_verdict: bool) -> list[dict]:
    items = obj.get("requirements")
    if "requirements" not in obj:
        raise TeacherOutputError("missing 'requirements'")
    if not isinstance(items, list):
        raise TeacherOutputError(f"'requirements' must be a list, got {_preview(items)}")
    if not items:
        raise TeacherOutputError("'requirements' is empty")
    return [_requirement(item, i, need_verdict) for i, item in enumerate(items)]


def check_opening(fit_level: str, explanation: str) -> None:
    """Raises unless the explanation opens with the product sentence for `fit_level`."""
    opening = EXPLANATION_OPENING.format(fit_level=fit_level)
    if not explanation.lstrip().startswith(opening):
        head = explanation.strip()[:60]
        raise TeacherOutputError(f"explanation does not open with {opening!r}: {head!r}")


def _fit_and_explanation(obj: dict, check: bool) -> tuple[str, str]:
    fit = _string(obj, "fit_level", "output", FIT_LEVELS)
    explanation = _string(obj, "explanation", "output")
    if check:
        check_opening(fit, explanation)
    return fit, explanation.strip()


def _guarded(fn, *args):
    try:
        return fn(*args)
    except TeacherOutputError:
        raise
    except Exception as e:  # last line of defence: arbitrary input must only ever raise ours
        raise TeacherOutputError(f"unparseable output ({type(e).__name__})") from None


def parse_assessment(text: str, *, check_opening_sentence: bool = True) -> Assessment:
    """**API** A validated Assessment from a teacher's text, else `TeacherOutputError`.

    `check_opening_sentence=False` lets the quality gates report label/explanation disagreement
    separately from schema errors.
    """
    def parse():
        obj = _json_object(text)
        _no_extra_keys(obj, ("requirements", "fit_level", "explanation"), "output")
        reqs = _requirements(obj, need_verdict=True)
        fit, explanation = _fit_and_explanation(obj, check_opening_sentence)
        return Assessment(requirements=tuple(Requirement(**r) for r in reqs), fit_level=fit,
                          explanation=explanation)
    return _guarded(parse)


def parse_extracted(text: str) -> list[dict]:
    """Chain step 1 output: [{"requirement", "importance"}]."""
    return _guarded(lambda: _requirements(_only(_json_object(text), ("requirements",)), need_verdict=False))


def parse_evaluated(text: str) -> list[dict]:
    """Chain step 2 output: [{"requirement", "importance", "verdict", "evidence"}]."""
    return _guarded(lambda: _requirements(_only(_json_object(text), ("requirements",)), need_verdict=True))


def parse_rating(text: str, *, check_opening_sentence: bool = True) -> tuple[str, str]:
    """Chain step 3 output: (fit_level, explanation)."""
    return _guarded(lambda: _fit_and_explanation(_only(_json_object(text), ("fit_level", "explanation")),
                                                 check_opening_sentence))


def _only(obj: dict, keys: tuple[str, ...]) -> dict:
    _no_extra_keys(obj, keys, "output")
    return obj
