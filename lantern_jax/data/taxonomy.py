"""Loader for the committed taxonomy snapshot (`assets/taxonomy.json.gz`, built by
`scripts/build_taxonomy.py`): O*NET occupations with tasks and work activities, ESCO and Lightcast
skills with alternative labels, ESCO occupations, real posting titles/companies/locations.

Nothing is read at import; `load_taxonomy()` parses the file once per process and caches it.
Sources and licences: `assets/ATTRIBUTION.md`.
"""
from __future__ import annotations

import dataclasses
import functools
import gzip
import json
import pathlib

from lantern_jax.data.schema import DataError

ASSET_PATH = pathlib.Path(__file__).with_name("assets") / "taxonomy.json.gz"


@dataclasses.dataclass(frozen=True)
class Skill:
    key: str  # "esco:<uuid>" or "lightcast:<id>"
    label: str
    category: str
    subcategory: str
    form: str  # "verb" (an ability: 'manage budgets'), "noun" (a topic or tool: 'Python'), "cert"
    alt_labels: tuple[str, ...]

    @property
    def source(self) -> str:
        return self.key.split(":", 1)[0]


@dataclasses.dataclass(frozen=True)
class Posting:
    """A real posting's metadata (no description text exists in the source)."""
    title: str
    company: str
    location: str
    category: str
    department: str
    salary: tuple[int, int] | None
    onet_code: str  # nearest O*NET occupation by title, or ""


@dataclasses.dataclass(frozen=True)
class EscoOccupation:
    id: str
    label: str
    alt_titles: tuple[str, ...]
    description: str
    onet_code: str  # nearest O*NET occupation, or ""
    skills: tuple[Skill, ...]  # ESCO ICT links only (empty elsewhere)


@dataclasses.dataclass(frozen=True)
class Occupation:
    code: str  # O*NET-SOC code, e.g. "15-1252.00"
    title: str  # O*NET title, e.g. "Software Developers"
    display_title: str  # singular job title, e.g. "Software Developer"
    group: str  # SOC major group, e.g. "15"
    tasks: tuple[str, ...]
    work_activities: tuple[str, ...]  # O*NET detailed work activities
    skills: tuple[Skill, ...]  # ranked: ESCO ICT links first, then task/DWA-derived
    skill_sources: str  # one char per skill: i = ESCO ICT link, t = task/DWA text, r = related occ.
    certifications: tuple[Skill, ...]
    alt_titles: tuple[str, ...]  # ESCO labels and alternative titles of matching occupations
    related: tuple[str, ...]  # codes of the nearest occupations by task text
    postings: tuple[Posting, ...]  # real postings whose title matches this occupation

    @property
    def minor_group(self) -> str:
        return self.code[:4]


@dataclasses.dataclass(frozen=True)
class Taxonomy:
    version: str
    sources: dict[str, dict[str, str]]
    groups: dict[str, str]  # SOC major group code -> name
    occupations: tuple[Occupation, ...]
    skills: tuple[Skill, ...]
    esco_occupations: tuple[EscoOccupation, ...]
    postings: tuple[Posting, ...]
    companies: tuple[str, ...]
    locations: tuple[str, ...]
    basic_skills: tuple[tuple[str, str], ...]  # O*NET cross-functional skills: (name, description)

    @functools.cached_property
    def by_code(self) -> dict[str, Occupation]:
        return {o.code: o for o in self.occupations}

    @functools.cached_property
    def skill_by_key(self) -> dict[str, Skill]:
        return {s.key: s for s in self.skills}

    def occupation(self, code: str) -> Occupation:
        try:
            return self.by_code[code]
        except KeyError:
            raise DataError(f"unknown O*NET occupation code {code!r} (taxonomy {self.version})") from None

    def occupations_in_group(self, group: str) -> tuple[Occupation, ...]:
        return tuple(o for o in self.occupations if o.group == group)

    @functools.cached_property
    def postings_by_company(self) -> dict[str, tuple[Posting, ...]]:
        out: dict[str, list[Posting]] = {}
        for p in self.postings:
            out.setdefault(p.company, []).append(p)
        return {c: tuple(ps) for c, ps in out.items()}


def _parse(raw: dict) -> Taxonomy:
    skills = tuple(Skill(key=k, label=label, category=cat, subcategory=sub, form=form, alt_labels=tuple(alts))
                   for k, label, cat, sub, form, alts in raw["skills"])
    companies, locations = raw["postings"]["companies"], raw["postings"]["locations"]
    postings = tuple(Posting(title=t, company=companies[c], location=locations[loc], category=cat,
                             department=dep, salary=tuple(sal) if sal else None, onet_code=code)
                     for t, c, loc, cat, dep, sal, code in raw["postings"]["records"])
    dwas = [title for _, title in raw["dwas"]]
    occupations = tuple(Occupation(
        code=o["code"], title=o["title"], display_title=o["display_title"], group=o["group"],
        tasks=tuple(o["tasks"]), work_activities=tuple(dwas[i] for i in o["dwas"]),
        skills=tuple(skills[i] for i in o["skills"]), skill_sources=o["skill_sources"],
        certifications=tuple(skills[i] for i in o["certifications"]), alt_titles=tuple(o["alt_titles"]),
        related=tuple(o["related"]), postings=tuple(postings[i] for i in o["postings"]),
    ) for o in raw["occupations"])
    esco = tuple(EscoOccupation(id=e["id"], label=e["label"], alt_titles=tuple(e["alt"]),
                                description=e["description"], onet_code=e["onet"],
                                skills=tuple(skills[i] for i in e["skills"]))
                 for e in raw["esco_occupations"])
    return Taxonomy(version=raw["version"], sources=raw["sources"], groups=raw["groups"],
                    occupations=occupations, skills=skills, esco_occupations=esco, postings=postings,
                    companies=tuple(companies), locations=tuple(locations),
                    basic_skills=tuple(tuple(b) for b in raw["onet_basic_skills"]))


@functools.lru_cache(maxsize=4)
def load_taxonomy(path: str | pathlib.Path | None = None) -> Taxonomy:
    """The snapshot at `path` (default: the committed asset), parsed once and cached."""
    path = pathlib.Path(path) if path else ASSET_PATH
    if not path.is_file():
        raise DataError(f"taxonomy snapshot not found: {path} (build it with scripts/build_taxonomy.py)")
    try:
        raw = json.loads(gzip.decompress(path.read_bytes()))
        return _parse(raw)
    except (OSError, ValueError, KeyError, TypeError, IndexError) as e:
        raise DataError(f"taxonomy snapshot {path} is unreadable: {type(e).__name__}: {e}") from None
