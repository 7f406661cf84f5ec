"""Job postings: requirements from an occupation's linked skills, experience, education and
certification, rendered inside the boilerplate real postings carry; and the split plan that holds
occupation groups and companies out."""
from __future__ import annotations

import dataclasses
import random
import re
from typing import Sequence

from lantern_jax.data.schema import JobPosting
from lantern_jax.data.synth.phrases import ABOUT_COMPANY, BASE_SALARY, BENEFITS, CERT_PHRASES, CLOSING, EEO, GROUP_EDUCATION, HEADINGS, LEVEL_PHRASE, ONSITE_GROUPS, ROLE_INTRO, SKILL_PHRASES, TEAM_NAMES, TITLE_EDUCATION, title_case, with_article
from lantern_jax.data.synth.rules import EDUCATION_LEVELS, HELDOUT_COMPANY_SHARE, HELDOUT_GROUPS, seeded_rng, squash
from lantern_jax.data.taxonomy import Occupation, Skill, Taxonomy, load_taxonomy


@dataclasses.dataclass(frozen=True)
class SplitPlan:
    """Which occupation groups and companies are held out for generalisation tests."""
    heldout_groups: tuple[str, ...]
    heldout_companies: tuple[str, ...]

    def occupations(self, tx: Taxonomy, split: str) -> tuple[Occupation, ...]:
        held = split == "heldout_occupation"
        return tuple(o for o in tx.occupations if (o.group in self.heldout_groups) == held)

    def companies(self, tx: Taxonomy, split: str) -> tuple[str, ...]:
        held = split == "heldout_company"
        return tuple(c for c in tx.companies if (c in self.heldout_companies) == held)


def split_plan(seed: int, tx: Taxonomy | None = None) -> SplitPlan:
    tx = tx or load_taxonomy()
    rng = seeded_rng(seed, "split-plan")
    big_groups = sorted(g for g in tx.groups if len(tx.occupations_in_group(g)) >= 20)
    groups = tuple(sorted(rng.sample(big_groups, HELDOUT_GROUPS)))
    companies = sorted(tx.companies)
    held = tuple(sorted(rng.sample(companies, max(1, round(HELDOUT_COMPANY_SHARE * len(companies))))))
    return SplitPlan(heldout_groups=groups, heldout_companies=held)


@dataclasses.dataclass
class Context:
    tx: Taxonomy
    rng: random.Random
    occupations: tuple[Occupation, ...]  # the split's own occupation pool
    background: tuple[Occupation, ...]  # occupations a distant member may come from
    companies: tuple[str, ...]
    cities: tuple[str, ...]
    verbs: frozenset[str]  # first words of O*NET tasks: tells abilities from topics


def education_requirement(occ: Occupation) -> tuple[str, list[str]]:
    level, fields = GROUP_EDUCATION.get(occ.group, ("high_school", ["General Studies"]))
    for pattern, override in TITLE_EDUCATION:
        if pattern.search(occ.title):
            if EDUCATION_LEVELS.index(override) > EDUCATION_LEVELS.index(level) or override == "associate":
                level = override
            break
    return level, list(fields)


def skill_text(skill: Skill, rng: random.Random) -> str:
    phrases = SKILL_PHRASES["verb" if skill.form == "verb" else "noun"]
    return rng.choice(phrases).format(s=skill.label)


def pick_skills(occ: Occupation, rng: random.Random, n: int) -> list[Skill]:
    """Top-ranked linked skills, favouring ones with alternative labels (how members word them)."""
    pool = [s for s in occ.skills[:24] if s.form != "cert"]
    weights = [(2.0 if s.alt_labels else 1.0) / (1.0 + 0.08 * i) for i, s in enumerate(pool)]
    chosen: list[Skill] = []
    names: set[str] = set()
    while pool and len(chosen) < n:
        s = rng.choices(pool, weights)[0]
        i = pool.index(s)
        pool.pop(i)
        weights.pop(i)
        if squash(s.label) not in names:
            names.add(squash(s.label))
            chosen.append(s)
    return chosen


def job_title(ctx: Context, occ: Occupation, seniority: str, company: str) -> tuple[str, str, str | None]:
    """(title, source, location from the same real posting or None)."""
    rng = ctx.rng
    postings = [p for p in occ.postings if p.company in ctx.companies]
    if postings and rng.random() < 0.6:
        p = rng.choice(postings)
        return p.title, "posting", p.location
    if occ.alt_titles and rng.random() < 0.35:
        title, source = title_case(rng.choice(occ.alt_titles[:6])), "esco"
    else:
        title, source = occ.display_title, "onet"
    prefix = {"junior": rng.choice(["Junior ", "Associate ", ""]), "senior": rng.choice(["Senior ", "Lead ", ""]),
              "mid": ""}[seniority]
    return prefix + title, source, None


def seniority_of(title: str) -> str | None:
    if re.search(r"\b(Senior|Sr\.?|Lead|Staff|Principal|Head|Director|Chief)\b", title, re.I):
        return "senior"
    if re.search(r"\b(Junior|Jr\.?|Associate|Intern|Trainee|Entry)\b", title, re.I):
        return "junior"
    return None


def location_for(ctx: Context, occ: Occupation, company: str, fixed: str | None) -> tuple[str, str]:
    rng = ctx.rng
    onsite_only = occ.group in ONSITE_GROUPS
    if fixed and not (onsite_only and "remote" in fixed.lower()):
        location = fixed
    else:
        options = [p.location for p in ctx.tx.postings_by_company.get(company, ())
                   if not (onsite_only and "remote" in p.location.lower())]
        location = rng.choice(options) if options else rng.choice(ctx.cities)
    if "remote" in location.lower():
        return location, "remote"
    return location, "onsite" if onsite_only else rng.choice(["onsite", "hybrid", "hybrid", "remote"])


def salary_for(occ: Occupation, seniority: str, rng: random.Random, company: str, tx: Taxonomy,
            title: str) -> list[int]:
    for p in tx.postings_by_company.get(company, ()):
        if p.title == title and p.salary:
            return [int(p.salary[0]), int(p.salary[1])]
    base = BASE_SALARY.get(occ.group, 50) * {"junior": 0.75, "mid": 1.0, "senior": 1.35}[seniority]
    low = round(base * rng.uniform(0.85, 1.0)) * 1000
    return [low, round(low * rng.uniform(1.15, 1.4) / 1000) * 1000]


def make_job(ctx: Context, occ: Occupation, job_id: str) -> JobPosting:
    rng = ctx.rng
    seniority = rng.choices(["junior", "mid", "senior"], [0.25, 0.45, 0.3])[0]
    company = rng.choice(ctx.companies)
    title, title_source, posting_location = job_title(ctx, occ, seniority, company)
    if title_source == "posting":  # a real title states its own level ('Senior Accountant')
        seniority = seniority_of(title) or seniority
    years = {"junior": rng.choice([1, 2]), "mid": rng.choice([2, 3, 4]), "senior": rng.choice([5, 6, 7, 8])}[seniority]
    location, arrangement = location_for(ctx, occ, company, posting_location)

    reqs: list[dict] = []

    def add(kind: str, importance: str, text: str, **extra) -> None:
        reqs.append({"id": f"r{len(reqs)}", "kind": kind, "importance": importance, "text": text, **extra})

    n_required, n_preferred = rng.randint(3, 5), rng.randint(1, 3)
    skills = pick_skills(occ, rng, n_required + n_preferred)
    add("experience", "required", f"{years}+ years of professional experience as {with_article(occ.display_title.lower())} "
        f"or in a closely related role", years=years)
    level, fields = education_requirement(occ)
    field = rng.choice(fields)
    if level == "high_school":
        edu_text = LEVEL_PHRASE[level]
    else:
        others = [f for f in fields if f != field]
        alt = f", {rng.choice(others)}" if others and rng.random() < 0.5 else ""
        edu_text = f"{LEVEL_PHRASE[level]} in {field}{alt} or a related field"
    edu_importance = "required" if level != "high_school" or rng.random() < 0.7 else "preferred"
    add("education", edu_importance, edu_text, level=level, field=field, fields=fields)
    for i, skill in enumerate(skills):
        importance = "required" if i < n_required else "preferred"
        add("skill", importance, skill_text(skill, rng), skill=skill.label, skill_key=skill.key,
            alt_labels=list(skill.alt_labels), category=skill.category, form=skill.form)
    if occ.certifications and rng.random() < 0.45:
        cert = rng.choice(occ.certifications)
        add("certification", rng.choice(["required", "preferred"]), rng.choice(CERT_PHRASES).format(s=cert.label),
            cert=cert.label, skill_key=cert.key, alt_labels=list(cert.alt_labels))
    salary = salary_for(occ, seniority, rng, company, ctx.tx, title)

    truth = {"occupation": occ.code, "occupation_title": occ.title, "group": occ.group,
             "seniority": seniority, "work_arrangement": arrangement, "salary": salary,
             "title_source": title_source, "requirements": reqs}
    description = render_posting(rng, occ, title, company, location, arrangement, salary, reqs)
    return JobPosting(job_id=job_id, title=title, company=company, location=location,
                      description=description, truth=truth)


def render_posting(rng: random.Random, occ: Occupation, title: str, company: str, location: str,
                   arrangement: str, salary: Sequence[int], reqs: Sequence[dict]) -> str:
    """The full natural posting: boilerplate around duties and the requirement bullets."""
    team = TEAM_NAMES.get(occ.group, "operations")
    where = {"remote": " (fully remote)", "hybrid": f" in {location.split(',')[0]}",
             "onsite": f" in {location.split(',')[0]}"}[arrangement]
    duties = rng.sample(occ.tasks, min(len(occ.tasks), rng.randint(4, 6)))
    benefits = rng.sample(BENEFITS, rng.randint(4, 6))
    required = [r["text"] for r in reqs if r["importance"] == "required"]
    preferred = [r["text"] for r in reqs if r["importance"] == "preferred"]
    arrangement_line = {"remote": "This is a remote position; occasional travel for team offsites.",
                        "hybrid": f"This is a hybrid role based in {location}, with three days a week in the office.",
                        "onsite": f"This role is based on site in {location}."}[arrangement]
    pay = (f"The base salary range for this position is ${salary[0]:,} to ${salary[1]:,} per year. "
           "Final compensation depends on experience, skills and location.")
    heading = {k: rng.choice(v).format(company=company) for k, v in HEADINGS.items()}
    sections = [
        f"{title}\n{company} · {location}",
        f"{heading['about']}\n{rng.choice(ABOUT_COMPANY).format(company=company)}",
        f"{heading['role']}\n{rng.choice(ROLE_INTRO).format(a_title=with_article(title), company=company, team=team, where=where)}",
        f"{heading['duties']}\n" + "\n".join(f"- {d}" for d in duties),
        f"{heading['required']}\n" + "\n".join(f"- {t}" for t in required),
    ]
    if preferred:
        sections.append(f"{heading['preferred']}\n" + "\n".join(f"- {t}" for t in preferred))
    sections += [
        f"{heading['benefits']}\n" + "\n".join(f"- {b}" for b in benefits),
        f"{heading['logistics']}\n{arrangement_line} {pay}",
        f"{heading['eeo']}\n{rng.choice(EEO).format(company=company)}",
        rng.choice(CLOSING),
    ]
    return "\n\n".join(sections)


def requirement_share(job: JobPosting) -> float:
    """Share of the posting's words that are requirement text (what compression keeps)."""
    total = len(job.description.split())
    req = sum(len(r["text"].split()) for r in (job.truth or {}).get("requirements", []))
    return req / max(total, 1)
