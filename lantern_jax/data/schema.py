"""Data contracts shared by every stage: postings, profiles, pairs and the teacher's Assessment.

Plain frozen dataclasses with dict round-trips, so records serialise to JSON / tfds without a
framework. Students and teachers only ever see rendered text; `truth` fields are generator-only.
"""
from __future__ import annotations

import dataclasses
import re
from typing import Any

from lantern_jax.errors import LanternError

FIT_LEVELS = ("low", "medium", "high")  # ordinal: index order is low < medium < high
VERDICTS = ("met", "partially_met", "not_met", "unknown")
IMPORTANCE = ("required", "preferred")
EXPLANATION_OPENING = "You are a {fit_level} fit for this job."


class DataError(LanternError):
    """Bad input data, with a one-line message that names where (file:line) and what is wrong."""


# Text the system ingests can hold lone UTF-16 surrogates: JSON allows the escape "\ud800" and
# Python's json decodes it into a str that no UTF-8 file, tokenizer or HTTP body can hold. (A valid
# pair is decoded into one code point, so whatever is left in this range is lone.)
_SURROGATE = re.compile("[\ud800-\udfff]")


def text_problem(text: str) -> str | None:
    """Why `text` is not writable Unicode (a lone surrogate, where), or None."""
    bad = _SURROGATE.search(text)
    return None if bad is None else f"is not valid Unicode (lone surrogate U+{ord(bad.group()):04X} at character {bad.start()})"


def scrub_text(value: Any) -> Any:
    """`value` with every lone surrogate in its strings (nested in lists and dicts too) replaced by
    U+FFFD, what a UTF-8 decoder makes of bytes that are not text."""
    if isinstance(value, str):
        return _SURROGATE.sub("\ufffd", value)
    if isinstance(value, list):
        return [scrub_text(v) for v in value]
    if isinstance(value, dict):
        return {scrub_text(k): scrub_text(v) for k, v in value.items()}
    return value


def check_text(value: Any, where: str) -> None:
    """Raises DataError naming the first string under `value` (path from `where`) that is not valid Unicode."""
    if isinstance(value, str):
        problem = text_problem(value)
        if problem:
            raise DataError(f"field '{where}' {problem}" if where else f"text {problem}")
    elif isinstance(value, list):
        for i, v in enumerate(value):
            check_text(v, f"{where}[{i}]")
    elif isinstance(value, dict):
        for k, v in value.items():
            check_text(k, where)
            check_text(v, f"{where}.{k}" if where else str(k))


def _from_dict(cls, d: dict[str, Any]):
    names = {f.name for f in dataclasses.fields(cls)}
    return cls(**{k: v for k, v in d.items() if k in names})


@dataclasses.dataclass(frozen=True)
class Requirement:
    """One requirement extracted from a posting, with the verdict against a profile."""
    requirement: str
    importance: str  # one of IMPORTANCE
    verdict: str  # one of VERDICTS
    evidence: str

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class Assessment:
    """The teacher's output and the explainer's target format (docs/architecture.md, data contracts)."""
    requirements: tuple[Requirement, ...]
    fit_level: str  # one of FIT_LEVELS
    explanation: str  # opens with EXPLANATION_OPENING

    def to_dict(self) -> dict[str, Any]:
        return {"requirements": [r.to_dict() for r in self.requirements],
                "fit_level": self.fit_level, "explanation": self.explanation}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Assessment:
        """Builds without validation; `teacher.parse.parse_assessment` is the validating path."""
        reqs = tuple(_from_dict(Requirement, r) for r in d["requirements"])
        return cls(requirements=reqs, fit_level=d["fit_level"], explanation=d["explanation"])


# JSON schema of an Assessment, used for structured output (`response_format`) and documentation.
ASSESSMENT_JSON_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["requirements", "fit_level", "explanation"],
    "properties": {
        "requirements": {
            "type": "array",
            "items": {
                "type": "object",
                "additionalProperties": False,
                "required": ["requirement", "importance", "verdict", "evidence"],
                "properties": {
                    "requirement": {"type": "string"},
                    "importance": {"type": "string", "enum": list(IMPORTANCE)},
                    "verdict": {"type": "string", "enum": list(VERDICTS)},
                    "evidence": {"type": "string"},
                },
            },
        },
        "fit_level": {"type": "string", "enum": list(FIT_LEVELS)},
        "explanation": {"type": "string"},
    },
}


@dataclasses.dataclass(frozen=True)
class JobPosting:
    job_id: str
    title: str
    company: str
    location: str
    description: str  # full posting text, boilerplate included
    truth: dict[str, Any] | None = None  # generator-only: structured requirements, occupation codes

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> JobPosting:
        return _from_dict(cls, d)


@dataclasses.dataclass(frozen=True)
class Experience:
    title: str
    company: str
    start: str  # "YYYY-MM"
    end: str | None  # "YYYY-MM", or None for a current role
    description: str

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class Education:
    degree: str
    field: str
    school: str
    year: int

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class MemberProfile:
    member_id: str
    name: str
    headline: str
    summary: str
    experience: tuple[Experience, ...]
    education: tuple[Education, ...]
    skills: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "experience": [e.to_dict() for e in self.experience],
                "education": [e.to_dict() for e in self.education], "skills": list(self.skills)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> MemberProfile:
        return cls(member_id=d["member_id"], name=d["name"], headline=d["headline"],
                   summary=d["summary"],
                   experience=tuple(_from_dict(Experience, e) for e in d["experience"]),
                   education=tuple(_from_dict(Education, e) for e in d["education"]),
                   skills=tuple(d["skills"]))


@dataclasses.dataclass(frozen=True)
class Pair:
    """A D_base record: one member against one job."""
    pair_id: str
    job: JobPosting
    member: MemberProfile
    truth: dict[str, Any] | None = None  # generator-only: per-requirement verdicts, fit level

    def to_dict(self) -> dict[str, Any]:
        return {"pair_id": self.pair_id, "job": self.job.to_dict(),
                "member": self.member.to_dict(), "truth": self.truth}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Pair:
        return cls(pair_id=d["pair_id"], job=JobPosting.from_dict(d["job"]),
                   member=MemberProfile.from_dict(d["member"]), truth=d.get("truth"))


# Required keys of a serialised Pair and the JSON types they must have (used to reject malformed
# D_base records with the offending field named, before any dataclass is built).
_PAIR_FIELDS: dict[str, tuple[type, ...]] = {"pair_id": (str,), "job": (dict,), "member": (dict,)}
_JOB_FIELDS: dict[str, tuple[type, ...]] = {
    "job_id": (str,), "title": (str,), "company": (str,), "location": (str,), "description": (str,)}
_MEMBER_FIELDS: dict[str, tuple[type, ...]] = {
    "member_id": (str,), "name": (str,), "headline": (str,), "summary": (str,), "experience": (list,),
    "education": (list,), "skills": (list,)}
_EXPERIENCE_FIELDS: dict[str, tuple[type, ...]] = {
    "title": (str,), "company": (str,), "start": (str,), "end": (str, type(None)), "description": (str,)}
_EDUCATION_FIELDS: dict[str, tuple[type, ...]] = {
    "degree": (str,), "field": (str,), "school": (str,), "year": (int,)}


def _check_fields(d: Any, fields: dict[str, tuple[type, ...]], where: str) -> None:
    if not isinstance(d, dict):
        raise DataError(f"{where or 'record'} must be a JSON object, got {type(d).__name__}")
    for name, types in fields.items():
        path = f"{where}.{name}" if where else name
        if name not in d:
            raise DataError(f"missing field '{path}'")
        if not isinstance(d[name], types) or (int in types and isinstance(d[name], bool)):
            raise DataError(f"field '{path}' must be {' or '.join(t.__name__ for t in types)}, "
                            f"got {type(d[name]).__name__}")


def pair_from_record(d: Any) -> Pair:
    """A Pair from its dict form, raising DataError naming the first missing or mistyped field."""
    _check_fields(d, _PAIR_FIELDS, "")
    _check_fields(d["job"], _JOB_FIELDS, "job")
    _check_fields(d["member"], _MEMBER_FIELDS, "member")
    for i, e in enumerate(d["member"]["experience"]):
        _check_fields(e, _EXPERIENCE_FIELDS, f"member.experience[{i}]")
    for i, e in enumerate(d["member"]["education"]):
        _check_fields(e, _EDUCATION_FIELDS, f"member.education[{i}]")
    for i, s in enumerate(d["member"]["skills"]):
        if not isinstance(s, str):
            raise DataError(f"field 'member.skills[{i}]' must be str, got {type(s).__name__}")
    for name, value in (("truth", d.get("truth")), ("job.truth", d["job"].get("truth"))):
        if value is not None and not isinstance(value, dict):
            raise DataError(f"field '{name}' must be an object or null, got {type(value).__name__}")
    check_text(d, "")
    return Pair.from_dict(d)
