"""Data contracts shared by every stage: postings, profiles, pairs and the teacher's Assessment.

Plain frozen dataclasses with dict round-trips, so records serialise to JSON / tfds without a
framework. Students and teachers only ever see rendered text; `truth` fields are generator-only.
"""
from __future__ import annotations

import dataclasses
from typing import Any

FIT_LEVELS = ("low", "medium", "high")  # ordinal: index order is low < medium < high
VERDICTS = ("met", "partially_met", "not_met", "unknown")
IMPORTANCE = ("required", "preferred")
EXPLANATION_OPENING = "You are a {fit_level} fit for this job."


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
    """The teacher's output and the explainer's target format (see ARCHITECTURE.md)."""
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
