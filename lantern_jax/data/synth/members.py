"""Member profiles drawn near / adjacent / distant to a job, resampled until the fit rule gives the
target level; their evidence for each requirement is recorded verbatim."""
from __future__ import annotations

import dataclasses
import random
import re
from typing import Sequence

from lantern_jax.data.schema import Education, Experience, JobPosting, MemberProfile
from lantern_jax.data.synth.jobs import Context, education_requirement
from lantern_jax.data.synth.phrases import ARTS_FIELDS, BUSINESS_FIELDS, CONTACT_LINES, CONTACT_RATE, DEGREE_NAMES, FIRST_NAMES, GROUP_EDUCATION, LAST_NAMES, MET_SKILL_SENTENCES, PARTIAL_CERT_SENTENCE, PARTIAL_SKILL_SENTENCES, SCHOOL_PATTERNS, SUMMARY_OPENERS, SUMMARY_SKILLS, past_tense, title_case
from lantern_jax.data.synth.rules import AS_OF_INDEX, AS_OF_TEXT, EDUCATION_LEVELS, MAX_RESAMPLES, Role, education_verdict, experience_verdict, fit_level, join_list, mentions, month_text, relevant_years, squash, word_set, years_text
from lantern_jax.data.taxonomy import Occupation


CLOSENESS_BY_TARGET = {"high": (0.75, 0.25, 0.0), "medium": (0.35, 0.5, 0.15), "low": (0.15, 0.35, 0.5)}
SKILL_STATE_BY_CLOSENESS = {  # P(met), P(partially_met) for a skill; the rest is not_met
    "near": (0.8, 0.12), "adjacent": (0.5, 0.25), "distant": (0.1, 0.2)}


@dataclasses.dataclass
class Plan:
    closeness: str
    member_occ: Occupation
    roles: list[Role]
    degrees: list[tuple[str, str]]  # (level, field), highest first
    states: dict[str, str]  # skill / certification requirement id -> verdict
    verdicts: dict[str, str]
    fit: str
    score: float
    relevant: float


def plan_member(ctx: Context, job: JobPosting, job_occ: Occupation, target: str) -> Plan:
    rng, reqs = ctx.rng, job.truth["requirements"]
    years_req = next(r["years"] for r in reqs if r["kind"] == "experience")
    edu_req = next(r for r in reqs if r["kind"] == "education")
    plan = None
    for _ in range(MAX_RESAMPLES):
        closeness = rng.choices(("near", "adjacent", "distant"), CLOSENESS_BY_TARGET[target])[0]
        member_occ = member_occupation(ctx, job_occ, closeness)
        total_years = max(0.5, {"high": years_req + rng.uniform(0, 6), "medium": years_req * rng.uniform(0.4, 1.6),
                                "low": rng.uniform(0.5, years_req * 1.5 + 2)}[target])
        roles = career(ctx, member_occ, job_occ, closeness, total_years)
        degrees = degrees_for(ctx, edu_req, target, member_occ)
        p_met, p_partial = SKILL_STATE_BY_CLOSENESS[closeness]
        if target == "high":
            p_met, p_partial = max(p_met, 0.9), 0.08
        elif target == "low":
            p_met, p_partial = min(p_met, 0.35), 0.2
        states = {}
        for r in reqs:
            if r["kind"] in ("skill", "certification"):
                u = rng.random()
                states[r["id"]] = "met" if u < p_met else "partially_met" if u < p_met + p_partial else "not_met"
        relevant = relevant_years(roles, job_occ)
        verdicts = {}
        for r in reqs:
            if r["kind"] == "experience":
                verdicts[r["id"]] = experience_verdict(r, relevant)
            elif r["kind"] == "education":
                verdicts[r["id"]] = education_verdict(r, degrees)[0]
            else:
                verdicts[r["id"]] = states[r["id"]]
        fit, score = fit_level(reqs, verdicts)
        plan = Plan(closeness, member_occ, roles, degrees, states, verdicts, fit, score, relevant)
        if fit == target:
            break
    return plan


def member_occupation(ctx: Context, job_occ: Occupation, closeness: str) -> Occupation:
    rng = ctx.rng
    if closeness == "near":
        return job_occ
    if closeness == "adjacent":
        pool = {o.code for o in ctx.occupations}
        related = [ctx.tx.by_code[c] for c in job_occ.related if c in pool]
        if not related:
            related = [o for o in ctx.occupations if o.minor_group == job_occ.minor_group and o.code != job_occ.code]
        if related:
            return rng.choice(related)
    others = [o for o in ctx.background if o.group != job_occ.group]
    return rng.choice(others)


def career(ctx: Context, member_occ: Occupation, job_occ: Occupation, closeness: str,
            total_years: float) -> list[Role]:
    """Roles oldest first, ending now (or a few months ago), summing to about `total_years`."""
    rng = ctx.rng
    months = max(6, round(total_years * 12))
    end = AS_OF_INDEX if rng.random() < 0.8 else AS_OF_INDEX - rng.randint(1, 5)
    n_roles = max(1, min(4, months // 24 + rng.choice([0, 1])))
    cuts = sorted(rng.sample(range(1, months), n_roles - 1)) if n_roles > 1 and months > n_roles else []
    bounds = [0, *cuts, months]
    start = end - months
    roles = []
    for i in range(len(bounds) - 1):
        occ = member_occ
        if closeness == "adjacent" and i == 0 and len(bounds) > 2 and rng.random() < 0.3:
            occ = job_occ  # an early stint in the job's own occupation
        role_end = start + bounds[i + 1]
        roles.append(Role(occ, start + bounds[i], None if (i == len(bounds) - 2 and end == AS_OF_INDEX) else role_end))
    return roles


def degrees_for(ctx: Context, req: dict, target: str, member_occ: Occupation) -> list[tuple[str, str]]:
    rng = ctx.rng
    need = EDUCATION_LEVELS.index(req["level"])
    own_level, own_fields = education_requirement(member_occ)
    unrelated = [f for g, (_, fs) in GROUP_EDUCATION.items() for f in fs if f not in req["fields"]]
    outcome = rng.choices(["meets", "other_field", "short", "none"],
                          {"high": [0.9, 0.05, 0.05, 0.0], "medium": [0.55, 0.2, 0.2, 0.05],
                           "low": [0.3, 0.25, 0.2, 0.25]}[target])[0]
    if outcome == "meets":
        level = min(len(EDUCATION_LEVELS) - 1, need + rng.choice([0, 0, 0, 1]))
        field = rng.choice(req["fields"])
    elif outcome == "other_field":
        level, field = max(need, EDUCATION_LEVELS.index(own_level)), rng.choice(own_fields + unrelated[:3])
    elif outcome == "short":
        level, field = need - 1, rng.choice(req["fields"])
    else:
        level, field = 1 if need > 2 else 0, rng.choice(unrelated)
    level = max(0, min(level, len(EDUCATION_LEVELS) - 1))
    if level == 0:
        return []
    if level == 1:
        return [("high_school", "General Studies")]
    degrees = [(EDUCATION_LEVELS[level], field)]
    if level >= 4 and rng.random() < 0.7:
        degrees.append(("bachelor", field))
    return degrees


def degree_name(level: str, field: str, rng: random.Random) -> str:
    if level == "doctorate" and field in ("Medicine", "Law"):
        return "Doctor of Medicine" if field == "Medicine" else "Juris Doctor"
    names = DEGREE_NAMES[level]
    if level in ("bachelor", "master"):
        kind = "Arts" if field in ARTS_FIELDS else "Business" if field in BUSINESS_FIELDS else "Science"
        names = [n for n in names if n.endswith(kind) or (kind == "Business" and n.endswith("Science"))]
    return rng.choice(names)


def wording_form(surface: str, verbs: frozenset[str]) -> str:
    """How a skill's wording reads: an ability ('prepare budgets'), an activity ('assessing
    students') or a topic/tool ('Budgeting'), so profile sentences stay grammatical."""
    words = surface.split()
    if len(words) > 1 and words[0] in verbs:
        return "verb"
    return "gerund" if words and words[0].islower() and words[0].endswith("ing") and len(words) > 1 else "noun"


def avoid_terms(reqs: Sequence[dict], verdicts: dict[str, str]) -> tuple[set[str], list[set[str]]]:
    """Names and word sets the profile must not contain: skills it does not (fully) have."""
    names, word_sets = set(), []
    for r in reqs:
        if r["kind"] in ("skill", "certification") and verdicts[r["id"]] != "met":
            for label in [r.get("skill") or r.get("cert"), *r.get("alt_labels", [])]:
                names.add(squash(label))
                words = word_set(label)
                if words:
                    word_sets.append(words)
    return names, word_sets


def role_title(ctx: Context, occ: Occupation, senior: bool) -> str:
    rng = ctx.rng
    options = [occ.display_title] + [title_case(t) for t in occ.alt_titles[:6]]
    options += [p.title for p in occ.postings[:10] if len(p.title) < 40 and p.company in ctx.companies]
    title = rng.choice(options)
    if senior and not re.match(r"(Senior|Lead|Principal|Head|Chief)\b", title):
        title = "Senior " + title
    return title


def make_member(ctx: Context, job: JobPosting, job_occ: Occupation, member_id: str,
                target: str) -> tuple[MemberProfile, dict]:
    rng = ctx.rng
    plan = plan_member(ctx, job, job_occ, target)
    reqs = job.truth["requirements"]
    avoid_names, avoid_words = avoid_terms(reqs, plan.verdicts)
    name = f"{rng.choice(FIRST_NAMES)} {rng.choice(LAST_NAMES)}"

    # Roles: titles, employers, duty bullets (never mentioning skills the member lacks).
    experience: list[Experience] = []
    roles_newest = list(reversed(plan.roles))
    for i, role in enumerate(roles_newest):
        role.title = role_title(ctx, role.occupation, senior=(i == 0 and plan.relevant + 1 > 6 and rng.random() < 0.5))
        role.company = rng.choice(ctx.companies)
    duty_sentences: list[list[str]] = []
    for role in roles_newest:
        tasks = [t for t in role.occupation.tasks if not mentions(t, avoid_names, avoid_words)]
        picked = rng.sample(tasks, min(len(tasks), rng.randint(2, 3)))
        duty_sentences.append([past_tense(t) for t in picked])

    # Skills: met ones worded with an alternative label where one exists.
    skills: list[str] = []
    evidence, fields, surfaces = {}, {}, {}
    summary_extra: list[str] = []
    for r in reqs:
        rid, verdict = r["id"], plan.verdicts[r["id"]]
        if r["kind"] not in ("skill", "certification"):
            continue
        label = r.get("skill") or r.get("cert")
        alts = [a for a in r.get("alt_labels", []) if squash(a) != squash(label)]
        surface = rng.choice(alts) if alts and rng.random() < 0.85 else label
        surfaces[rid] = surface
        if verdict == "met":
            if r["kind"] == "skill" and duty_sentences and rng.random() < 0.35:
                sentence = rng.choice(MET_SKILL_SENTENCES[wording_form(surface, ctx.verbs)]).format(s=surface)
                j = rng.randrange(len(duty_sentences))
                duty_sentences[j].append(sentence)
                evidence[rid], fields[rid] = sentence, f"experience[{j}].description"
            else:
                skills.append(surface)
                evidence[rid], fields[rid] = surface, "skills"
        elif verdict == "partially_met":
            if r["kind"] == "certification":
                sentence = PARTIAL_CERT_SENTENCE.format(s=surface, date=month_text(AS_OF_INDEX + rng.randint(2, 8)))
            else:
                sentence = rng.choice(PARTIAL_SKILL_SENTENCES[wording_form(surface, ctx.verbs)]).format(s=surface)
            summary_extra.append(sentence)
            evidence[rid], fields[rid] = sentence, "summary"
        else:
            evidence[rid], fields[rid] = "", ""
    # Other skills of the member's own occupation (distractors), never a missing requirement.
    own = [s for s in plan.member_occ.skills[:30] if s.form != "cert"]
    for s in rng.sample(own, min(len(own), rng.randint(4, 8))):
        surface = rng.choice(s.alt_labels) if s.alt_labels and rng.random() < 0.5 else s.label
        if not mentions(surface, avoid_names, avoid_words) and surface not in skills:
            skills.append(surface)
    rng.shuffle(skills)
    for rid, field in fields.items():
        if field == "skills":
            fields[rid] = f"skills[{skills.index(evidence[rid])}]"

    for role, sentences in zip(roles_newest, duty_sentences):
        experience.append(Experience(title=role.title, company=role.company, start=month_text(role.start),
                                     end=None if role.end is None else month_text(role.end),
                                     description=" ".join(sentences)))

    education = []
    grad = plan.roles[0].start // 12 - rng.randint(0, 1)
    for level, field in plan.degrees:  # highest first, each earlier degree finished a few years before
        school = rng.choice(SCHOOL_PATTERNS).format(city=rng.choice(ctx.cities).split(",")[0])
        education.append(Education(degree=degree_name(level, field, rng), field=field, school=school,
                                   year=int(grad)))
        grad -= rng.randint(2, 4)

    # Evidence for experience and education, by the same rules that decided the verdicts.
    for r in reqs:
        rid = r["id"]
        if r["kind"] == "experience":
            idx = next((i for i, role in enumerate(roles_newest)
                        if role.occupation.code == job_occ.code or role.occupation.code in job_occ.related), None)
            if idx is None:
                evidence[rid], fields[rid] = "", ""
            else:
                evidence[rid], fields[rid] = roles_newest[idx].title, f"experience[{idx}].title"
        elif r["kind"] == "education":
            verdict, idx = education_verdict(r, plan.degrees)
            if idx < 0 and education:
                idx = 0
            if idx >= 0:
                e = education[idx]
                evidence[rid], fields[rid] = f"{e.degree} in {e.field}", f"education[{idx}]"
            else:
                evidence[rid], fields[rid] = "", ""

    current = roles_newest[0]
    tenure = years_text((AS_OF_INDEX - plan.roles[0].start) / 12)
    top = [s for s in skills[:3]]
    summary = " ".join([
        rng.choice(SUMMARY_OPENERS).format(title=current.title, years=tenure, company=current.company),
        rng.choice(SUMMARY_SKILLS).format(skills=join_list(top)) if top else "",
        *summary_extra,
    ]).strip()
    if rng.random() < CONTACT_RATE:  # real profiles leak contact details: redaction has work to do
        first, last = (squash(w) for w in name.split())
        summary += " " + rng.choice(CONTACT_LINES).format(first=first, last=last, n=rng.randint(100, 199))
    summary = re.sub(r"\s+", " ", summary)
    headline = (f"{current.title} at {current.company}" if rng.random() < 0.5 or not top
                else f"{current.title} | {' | '.join(top[:2])}")
    member = MemberProfile(member_id=member_id, name=name, headline=headline, summary=summary,
                           experience=tuple(experience), education=tuple(education), skills=tuple(skills))
    truth = {"closeness": plan.closeness, "member_occupation": plan.member_occ.code,
             "verdicts": dict(plan.verdicts), "evidence": evidence, "evidence_fields": fields,
             "surfaces": surfaces, "relevant_years": round(plan.relevant, 2), "score": round(plan.score, 4),
             "fit_level": plan.fit, "as_of": AS_OF_TEXT}
    return member, truth
