"""Requirement <-> evidence views of a pair: each compressed requirement followed by the profile
text that bears on it.

A small model reading "requirements, then the whole profile" must learn to find, for every
requirement, the profile sentence that proves it (often worded with another label of the same
skill) before it can judge anything. Here that retrieval is done when the input is built, the way
LANTERN's prompts put each requirement next to what to check it against; the model is left the
judgement: is the evidence a full match, a weaker one (a course, an exam in preparation, fewer
years, a degree one level short or in another field) or missing, and what do the verdicts add up
to. Nothing here reads `truth`: only the rendered posting and profile, and the skills taxonomy the
posting's and the profile's skill names come from (as a job site's skill standardiser would).

- `classifier_text(pair)`: what the fit classifier reads, in training, evaluation and serving.
- `aligned_text(pair)`: requirement, then `> evidence` lines (`short`: fewer tokens).
- `role_duration(start, end)`: "4 yrs 10 mos", as profiles show tenure.
"""
from __future__ import annotations

import dataclasses
import functools
import re
from collections.abc import Sequence

from lantern_jax.data import prompts
from lantern_jax.data.schema import IMPORTANCE, MemberProfile, Pair
from lantern_jax.data.synth.rules import AS_OF
from lantern_jax.data.taxonomy import load_taxonomy

_YEARS = re.compile(r"\b(\d+)\+?\s*(?:-\s*\d+\s*)?years?\b", re.I)
_DEGREE = re.compile(r"\b(degree|diploma|bachelor|master|doctora|ph\.?d|associate degree|GED)\b", re.I)
_WORD = re.compile(r"[a-z0-9+#]+")
_SENTENCE = re.compile(r"(?<=[.!?])\s+")
NOTHING = "nothing in the profile"


def _months(text: str) -> int:
    year, month = text.split("-")
    return int(year) * 12 + int(month) - 1


def role_duration(start: str, end: str | None, as_of: tuple[int, int] = AS_OF) -> str:
    """Tenure of a role as a profile shows it: '4 yrs 10 mos', '7 mos', '1 yr'. A current role
    runs to `as_of`, the month the profiles were snapshot."""
    stop = _months(end) if end else as_of[0] * 12 + as_of[1] - 1
    months = max(0, stop - _months(start))
    years, rest = divmod(months, 12)
    parts = ([f"{years} yr{'s' if years != 1 else ''}"] if years else []) + \
            ([f"{rest} mo{'s' if rest != 1 else ''}"] if rest or not years else [])
    return " ".join(parts)


@dataclasses.dataclass(frozen=True)
class Segment:
    text: str
    kind: str  # "skill" | "summary" | "duty"


def segments(member: MemberProfile) -> list[Segment]:
    """Quotable profile pieces a skill requirement can be checked against."""
    out = [Segment(s, "skill") for s in member.skills]
    out += [Segment(s, "duty") for e in member.experience for s in _SENTENCE.split(e.description) if s]
    out += [Segment(s, "summary") for s in _SENTENCE.split(member.summary) if s]
    return out


# --- skill names: the taxonomy's labels and alternative labels ---------------------------------

def _norm(text: str) -> str:
    return " ".join(_WORD.findall(text.lower()))


@functools.lru_cache(maxsize=1)
def _label_index() -> tuple[dict[str, frozenset[str]], int]:
    """{normalised skill label: every name of the skill(s) with that label}, longest label in words."""
    index: dict[str, set[str]] = {}
    for s in load_taxonomy().skills:
        names = {_norm(n) for n in (s.label, *s.alt_labels) if _norm(n)}
        index.setdefault(_norm(s.label), set()).update(names)
    longest = max(len(k.split()) for k in index)
    return {k: frozenset(v) for k, v in index.items()}, longest


def skill_names(requirement: str) -> frozenset[str]:
    """All names of the taxonomy skill a requirement asks for (its longest label found in the
    text), or an empty set when the text names none."""
    return _skill_match(requirement)[1]


def skill_label(requirement: str) -> str | None:
    """The words of a requirement that name a taxonomy skill ("Hands-on experience with SQL in a
    professional setting" -> "SQL"), as written there; None when it names none."""
    return _skill_match(requirement)[0]


@functools.lru_cache(maxsize=65536)
def _skill_match(requirement: str) -> tuple[str | None, frozenset[str]]:
    index, longest = _label_index()
    raw = re.findall(r"[A-Za-z0-9+#]+", requirement)
    words = [w.lower() for w in raw]
    for n in range(min(longest, len(words)), 0, -1):
        for i in range(len(words) - n + 1):
            names = index.get(" ".join(words[i:i + n]))
            if names and not (n == 1 and len(words[i]) < 3):
                return " ".join(raw[i:i + n]), names
    return None, frozenset()


def _contains(text: str, name: str) -> bool:
    return f" {name} " in f" {text} "


def _lexical_match(requirement: str, segs: Sequence[Segment]) -> list[Segment]:
    """Fallback for requirements naming no taxonomy skill: segments sharing most content words."""
    want = {w[:5] for w in _norm(requirement).split() if len(w) > 3} - _FILLER
    if not want:
        return []
    scored = [(len(want & {w[:5] for w in _norm(s.text).split()}) / len(want), s) for s in segs]
    best = max((sc for sc, _ in scored), default=0.0)
    return [s for sc, s in scored if sc >= 0.5 and sc == best][:2]


_FILLER = {w[:5] for w in ("experience", "knowledge", "working", "proficiency", "understanding", "hands",
                           "professional", "setting", "practices", "related", "ability", "proven",
                           "demonstrated", "confidence", "solid", "practical", "applying", "problems",
                           "independently", "reliably", "environment", "supervision", "consistently",
                           "standard", "active", "current", "credential", "willingness", "obtain")}


def skill_evidence(requirement: str, member: MemberProfile, limit: int = 2) -> list[Segment]:
    """Profile pieces naming the skill or certification a requirement asks for (by any of its
    taxonomy names), skills entries first; word overlap when the taxonomy doesn't know it."""
    segs = segments(member)
    names = skill_names(requirement)
    if not names:
        return _lexical_match(requirement, segs)
    def rank(s: Segment) -> int | None:
        text = _norm(s.text)
        if s.kind == "skill" and text in names:
            return 0  # the skill itself, under any of its names
        if any(_contains(text, n) for n in names):  # a sentence naming it, or a broader skill
            return {"duty": 1, "summary": 2, "skill": 3}[s.kind]
        return None

    ranked = sorted((r, i) for i, r in enumerate(map(rank, segs)) if r is not None)
    return [segs[i] for _, i in ranked[:limit]]


# --- the views ------------------------------------------------------------------------------

def experience_lines(member: MemberProfile, *, company: bool = False, dates: bool = True) -> list[str]:
    """One line per role: title (at company) (start to end): tenure."""
    out = []
    for e in member.experience:
        where = f" at {e.company}" if company else ""
        when = f" ({e.start} to {e.end or 'present'})" if dates else ""
        out.append(f"{e.title}{where}{when}: {role_duration(e.start, e.end)}")
    return out


def education_lines(member: MemberProfile, *, year: bool = True) -> list[str]:
    return [f"{e.degree} in {e.field}{f' ({e.year})' if year else ''}" for e in member.education]


def evidence_items(requirement: str, member: MemberProfile, *, short: bool = False) -> list[tuple[str, str]]:
    """(quote, line) for each profile piece one requirement is checked against: roles with tenure
    for years of experience (quoted by title), degrees for education, the naming sentences or
    skills entries otherwise. The quote is what an Assessment's evidence cites; the line is how a
    view shows it. `short` leaves out dates and keeps one skill piece."""
    if _YEARS.search(requirement):
        return [(e.title, line) for e, line in zip(member.experience, experience_lines(member, dates=not short))]
    if _DEGREE.search(requirement):
        return [(f"{e.degree} in {e.field}", line)
                for e, line in zip(member.education, education_lines(member, year=not short))]
    found = skill_evidence(requirement, member, limit=1 if short else 2)
    return [(s.text, f'"{s.text}"' if s.kind != "skill" else f"skill: {s.text}") for s in found]


def evidence_for(requirement: str, member: MemberProfile, *, short: bool = False) -> list[str]:
    """The lines of `evidence_items`, or what their absence says."""
    lines = [line for _, line in evidence_items(requirement, member, short=short)]
    if lines:
        return lines
    return ["no degree listed" if _DEGREE.search(requirement) and not _YEARS.search(requirement) else NOTHING]


def requirements_of(pair: Pair) -> list[prompts.ExtractedRequirement]:
    """The compressed posting's requirements (rules over the posting text, as in the prompts)."""
    return prompts.extract_requirements(pair.job.description, title=pair.job.title)


def aligned_text(pair: Pair, *, short: bool = False) -> str:
    """The classifier's input: job title, then each requirement by importance, each followed by
    its evidence lines ('> ...'). `short`: a skill requirement is written as the skill it names
    and roles and degrees without dates (fewer tokens: the encoder's cost is linear in them)."""
    lines = [f"Job: {pair.job.title}", f"Member: {pair.member.headline}"]
    reqs = requirements_of(pair)
    for kind in IMPORTANCE:
        group = [r for r in reqs if r.importance == kind]
        if not group:
            continue
        lines.append(f"{kind.capitalize()}:")
        for r in group:
            named = skill_label(r.text) if short and not (_YEARS.search(r.text) or _DEGREE.search(r.text)) else None
            lines.append(f"- {named or r.text}")
            lines += [f"  > {e}" for e in evidence_for(r.text, pair.member, short=short)]
    return "\n".join(lines)


def classifier_text(pair: Pair, compress: bool = True) -> str:
    """What the fit classifier reads, in training, evaluation and serving: the short aligned view,
    each requirement next to its evidence, which fits MiniLM's window in ~225 tokens.
    `compress=False` is the input without LANTERN's compression: the whole posting, then the whole
    profile (the compression ablation), which leaves the matching to the model."""
    if not compress:
        return f"{prompts.render_job(pair.job, compress=False)}\n\n{prompts.render_member(pair.member)}"
    return aligned_text(pair, short=True)
