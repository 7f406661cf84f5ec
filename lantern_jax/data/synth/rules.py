"""The generator's rules: fit level from verdicts, verdicts from a profile's degrees and dated roles,
and the word matching that decides whether a profile mentions a skill. Teachers are asked to
follow the same rules (see the package docstring)."""
from __future__ import annotations

import dataclasses
import hashlib
import random
import re
from typing import Sequence

from lantern_jax.data.taxonomy import Occupation


AS_OF = (2026, 1)  # month the posting snapshot was taken: role durations are measured up to here
SPLITS = ("train", "dev", "test", "heldout_occupation", "heldout_company")
DEFAULT_FRACTIONS = {"train": 0.7, "dev": 0.1, "test": 0.1, "heldout_occupation": 0.05,
                     "heldout_company": 0.05}
HELDOUT_GROUPS = 2  # SOC major groups held out (chosen by seed among groups with >= 20 occupations)
HELDOUT_COMPANY_SHARE = 0.15

EDUCATION_LEVELS = ("none", "high_school", "associate", "bachelor", "master", "doctorate")
REQUIRED_WEIGHT, PREFERRED_WEIGHT = 2.0, 1.0
VERDICT_VALUE = {"met": 1.0, "partially_met": 0.5, "not_met": 0.0}
HIGH_SCORE, LOW_SCORE, LOW_MISSING_SHARE = 0.75, 0.45, 1 / 3
MAX_RESAMPLES = 40


def seeded_rng(seed: int, *salt: object) -> random.Random:
    """An independent, platform-stable stream per (seed, salt...)."""
    digest = hashlib.sha256(repr((seed, *salt)).encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))


def word_set(text: str) -> set[str]:
    return {w.rstrip("s") for w in re.findall(r"[a-z0-9+#]+", text.lower()) if len(w) > 2}


def squash(text: str) -> str:
    return re.sub(r"[^a-z0-9+#]", "", text.lower())


def month_text(index: int) -> str:
    return f"{index // 12:04d}-{index % 12 + 1:02d}"


AS_OF_INDEX = AS_OF[0] * 12 + AS_OF[1] - 1
AS_OF_TEXT = month_text(AS_OF_INDEX)


@dataclasses.dataclass
class Role:
    occupation: Occupation
    start: int  # month index
    end: int | None
    title: str = ""
    company: str = ""


def education_verdict(req: dict, degrees: Sequence[tuple[str, str]]) -> tuple[str, int]:
    """(verdict, index of the deciding degree or -1) under the module's education rule."""
    need = EDUCATION_LEVELS.index(req["level"])
    best, best_i = "not_met", -1
    rank = {"met": 2, "partially_met": 1, "not_met": 0}
    for i, (level, field) in enumerate(degrees):
        have = EDUCATION_LEVELS.index(level)
        fits = field in req["fields"] or req["level"] == "high_school"
        verdict = ("met" if have >= need and fits else
                   "partially_met" if (have >= need or (have == need - 1 and fits)) and have >= 2 else "not_met")
        if rank[verdict] > rank[best]:
            best, best_i = verdict, i
    return best, best_i


def relevant_years(roles: Sequence[Role], job_occ: Occupation) -> float:
    months = 0.0
    for r in roles:
        span = (r.end if r.end is not None else AS_OF_INDEX) - r.start
        if r.occupation.code == job_occ.code:
            months += span
        elif r.occupation.code in job_occ.related:
            months += 0.5 * span
    return months / 12.0


def experience_verdict(req: dict, relevant: float) -> str:
    return "met" if relevant >= req["years"] else "partially_met" if relevant >= req["years"] / 2 else "not_met"


def fit_level(reqs: Sequence[dict], verdicts: dict[str, str]) -> tuple[str, float]:
    """The documented fit rule: (level, weighted score)."""
    weights = {r["id"]: REQUIRED_WEIGHT if r["importance"] == "required" else PREFERRED_WEIGHT for r in reqs}
    score = sum(weights[r["id"]] * VERDICT_VALUE[verdicts[r["id"]]] for r in reqs) / sum(weights.values())
    required = [r for r in reqs if r["importance"] == "required"]
    missing = sum(verdicts[r["id"]] == "not_met" for r in required)
    if score >= HIGH_SCORE and missing == 0:
        return "high", score
    if score < LOW_SCORE or missing > LOW_MISSING_SHARE * len(required):
        return "low", score
    return "medium", score


def mentions(text: str, names: set[str], word_sets: list[set[str]]) -> bool:
    squashed, words = squash(text), word_set(text)
    return any(n and (n in squashed or squashed in n) for n in names) or any(ws <= words for ws in word_sets)


def years_text(years: float) -> str:
    whole = int(years)
    return "under a year" if whole < 1 else f"{whole} year{'s' if whole != 1 else ''}"


def join_list(items: Sequence[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]
