"""D_base: synthetic member-job pairs grounded in the taxonomy snapshot, with latent ground truth.

Jobs come from real O*NET occupations (tasks become responsibilities), carry skills linked to the
occupation (ESCO ICT links, else task/DWA-derived ESCO and Lightcast skills), years of experience,
education, sometimes a certification, a real title/company/location where the posting data has one,
and the boilerplate real postings carry (about the company, benefits, work arrangement, salary,
equal-opportunity text), so the requirements are a minority of the text (about 15-30 % of words).
Members are drawn near (same occupation), adjacent (a related occupation) or distant (another
occupation group) to the job; they phrase skills with alternative labels, list dated roles
(YYYY-MM) and education, and a quarter of summaries end with contact details (example.com emails,
555 phone numbers, URLs) for the PII redaction to remove. Everything is deterministic in (seed, split).

Latent truth (generator-only; students and teachers see rendered text only)
---------------------------------------------------------------------------
``JobPosting.truth``::

    {"occupation": "15-1252.00", "occupation_title": "Software Developers", "group": "15",
     "seniority": "junior|mid|senior", "work_arrangement": "onsite|hybrid|remote",
     "salary": [min, max] | None, "title_source": "posting|esco|onet",
     "requirements": [                       # in posting order, each text verbatim in the description
        {"id": "r0", "kind": "skill", "importance": "required|preferred", "text": "Experience with X",
         "skill": "X" (posting label), "skill_key": "esco:..|lightcast:..", "alt_labels": [...],
         "category": taxonomy category, "form": "verb|noun"},
        {"id": "r1", "kind": "experience", "importance": ..., "text": ..., "years": 5},
        {"id": "r2", "kind": "education", "importance": ..., "text": ..., "level": "bachelor",
         "field": "Computer Science", "fields": [accepted fields]},   # level in EDUCATION_LEVELS
        {"id": "r3", "kind": "certification", "importance": ..., "text": ..., "cert": label,
         "skill_key": ..., "alt_labels": [...]}]}

``Pair.truth``::

    {"closeness": "near|adjacent|distant", "member_occupation": "15-1252.00",
     "verdicts": {rid: "met|partially_met|not_met"},
     "evidence": {rid: verbatim profile text supporting the verdict, or "" when nothing does},
     "evidence_fields": {rid: "skills[3]" | "summary" | "experience[0].description" |
                         "experience[1].title" | "education[0]" | ""},
     "surfaces": {rid: how the profile words a skill/certification (often an alternative label)},
     "relevant_years": float, "score": float, "fit_level": "low|medium|high", "as_of": "2026-01"}

Evidence is verbatim: a skills entry, a sentence of the summary or of an experience description, a
role title, or "{degree} in {field}" for education (as `prompts.render_member` prints it).

Rules (also the ones a teacher is asked to follow)
--------------------------------------------------
- experience: relevant years = years in roles of the job's occupation + half the years in related
  occupations; met if >= required, partially_met if >= half of it, else not_met.
- education: met if the highest degree reaches the level in an accepted field (any field for a high
  school requirement); partially_met if it reaches the level in another field or is one level short
  in an accepted field; else not_met.
- skill / certification: met if the profile lists it (any label), partially_met if it only mentions
  coursework, learning or light exposure (or an exam in preparation), not_met if absent.
- fit level: score = sum(w * v) / sum(w), w = 2 required / 1 preferred, v = 1 met / .5 partial / 0;
  high if score >= 0.75 and no required item is not_met; low if score < 0.45 or more than a third
  of the required items are not_met; medium otherwise. Targets are drawn uniformly and members are
  resampled until the rule gives the target, so each class is about a third.

Splits: train / dev / test share occupations and companies; ``heldout_occupation`` uses SOC major
groups and ``heldout_company`` companies that never appear in the other splits (as the job's
occupation, a member's occupation, the job's company or a member's employer).
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import pathlib
import random
import re
from typing import Iterable, Iterator, Sequence

from lantern_jax.data.schema import (DataError, Education, Experience, JobPosting, MemberProfile, Pair,
                                     pair_from_record)
from lantern_jax.data.taxonomy import Occupation, Skill, Taxonomy, load_taxonomy

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

# ----------------------------------------------------------------------------- domain tables
# Typical entry education per SOC major group: (level, fields of study that fit the group).
GROUP_EDUCATION = {
    "11": ("bachelor", ["Business Administration", "Management", "Economics", "Finance"]),
    "13": ("bachelor", ["Finance", "Accounting", "Business Administration", "Economics"]),
    "15": ("bachelor", ["Computer Science", "Software Engineering", "Information Systems", "Mathematics",
                        "Statistics"]),
    "17": ("bachelor", ["Mechanical Engineering", "Electrical Engineering", "Civil Engineering",
                        "Industrial Engineering", "Architecture"]),
    "19": ("master", ["Biology", "Chemistry", "Physics", "Environmental Science", "Psychology",
                      "Economics", "Geology"]),
    "21": ("bachelor", ["Social Work", "Psychology", "Counseling", "Sociology"]),
    "23": ("bachelor", ["Law", "Legal Studies", "Political Science"]),
    "25": ("bachelor", ["Education", "Early Childhood Education", "English", "Mathematics", "History"]),
    "27": ("bachelor", ["Graphic Design", "Communications", "Journalism", "Fine Arts", "Music",
                        "Film Studies"]),
    "29": ("bachelor", ["Nursing", "Health Sciences", "Pharmacy", "Biology", "Medicine"]),
    "31": ("associate", ["Health Sciences", "Medical Assisting", "Nursing", "Physical Therapy Assisting"]),
    "33": ("high_school", ["Criminal Justice", "Fire Science", "Emergency Management"]),
    "35": ("high_school", ["Culinary Arts", "Hospitality Management"]),
    "37": ("high_school", ["Horticulture", "Facilities Management"]),
    "39": ("high_school", ["Cosmetology", "Recreation Management", "Early Childhood Education"]),
    "41": ("high_school", ["Marketing", "Business Administration", "Communications"]),
    "43": ("high_school", ["Business Administration", "Office Administration", "Accounting"]),
    "45": ("high_school", ["Agriculture", "Forestry", "Animal Science"]),
    "47": ("high_school", ["Construction Management", "Construction Technology"]),
    "49": ("associate", ["Industrial Maintenance", "Automotive Technology", "Electronics Technology"]),
    "51": ("high_school", ["Manufacturing Technology", "Industrial Technology", "Welding Technology"]),
    "53": ("high_school", ["Logistics", "Supply Chain Management", "Aviation"]),
}
# Occupations whose entry level differs from their group's (matched on the O*NET title).
TITLE_EDUCATION = ((re.compile(r"Physician|Surgeon|Psychiatrist|Dentist|Pediatrician|Optometrist|"
                               r"Podiatrist|Veterinarian|Anesthesiologist|Obstetrician"), "doctorate"),
                   (re.compile(r"Lawyer|Judge"), "doctorate"),
                   (re.compile(r"Postsecondary|Scientist|Economist|Psychologist|Nurse Practitioner|"
                               r"Physician Assistant|Pharmacist"), "master"),
                   (re.compile(r"Engineer|Architect|Analyst|Accountant|Manager"), "bachelor"),
                   (re.compile(r"Technician|Technologist|Paralegal|Assistant"), "associate"))
DEGREE_NAMES = {"high_school": ["High School Diploma"], "associate": ["Associate of Applied Science",
                "Associate of Science"], "bachelor": ["Bachelor of Science", "Bachelor of Arts"],
                "master": ["Master of Science", "Master of Arts", "Master of Business Administration"],
                "doctorate": ["Doctor of Philosophy"]}
LEVEL_PHRASE = {"high_school": "High school diploma or equivalent", "associate": "Associate degree",
                "bachelor": "Bachelor's degree", "master": "Master's degree", "doctorate": "Doctoral degree"}
ARTS_FIELDS = {"English", "History", "Fine Arts", "Music", "Communications", "Journalism", "Film Studies",
               "Psychology", "Sociology", "Political Science", "Social Work", "Education", "Counseling",
               "Early Childhood Education", "Legal Studies", "General Studies"}
BUSINESS_FIELDS = {"Business Administration", "Management", "Finance", "Accounting", "Marketing"}
ONSITE_GROUPS = {"29", "31", "33", "35", "37", "39", "45", "47", "49", "51", "53"}
TEAM_NAMES = {"11": "leadership", "13": "finance and operations", "15": "engineering",
              "17": "engineering", "19": "research", "21": "community programs", "23": "legal",
              "25": "education", "27": "creative", "29": "clinical", "31": "care", "33": "safety and security",
              "35": "kitchen", "37": "facilities", "39": "guest services", "41": "sales", "43": "operations",
              "45": "field operations", "47": "construction", "49": "maintenance", "51": "production",
              "53": "logistics"}
BASE_SALARY = {"11": 130, "13": 85, "15": 120, "17": 100, "19": 90, "21": 55, "23": 95, "25": 60, "27": 70,
               "29": 95, "31": 38, "33": 55, "35": 34, "37": 36, "39": 35, "41": 60, "43": 45, "45": 36,
               "47": 55, "49": 55, "51": 45, "53": 48}  # thousand USD a year, mid-level

FIRST_NAMES = ("Aisha", "Alejandro", "Amara", "Andrei", "Anika", "Ben", "Carmen", "Chen", "Chloe", "Daniel",
               "Dario", "Elena", "Emeka", "Fatima", "Freya", "Gabriel", "Hana", "Hiroshi", "Imani", "Isabel",
               "Jamal", "Javier", "Jin", "Julia", "Kofi", "Lars", "Layla", "Leila", "Lucas", "Mai", "Marco",
               "Maria", "Mateo", "Meera", "Mohammed", "Nadia", "Noah", "Olga", "Omar", "Priya", "Rafael",
               "Rina", "Rohan", "Sakura", "Samuel", "Sara", "Sofia", "Tariq", "Thandi", "Tomás", "Valentina",
               "Wei", "Yara", "Yusuf", "Zoe")
LAST_NAMES = ("Abebe", "Adeyemi", "Ahmed", "Andersson", "Bianchi", "Chen", "Costa", "Das", "Dubois",
              "Fernández", "Fischer", "García", "Gupta", "Haddad", "Hansen", "Hernández", "Ito", "Jensen",
              "Johnson", "Kaur", "Kim", "Kowalski", "Kumar", "Larsen", "Lee", "Lopez", "Martin", "Mendes",
              "Murphy", "Nakamura", "Nguyen", "Novak", "Okafor", "Olsen", "Patel", "Petrov", "Ramírez",
              "Rossi", "Santos", "Schmidt", "Silva", "Singh", "Smith", "Suzuki", "Tanaka", "Taylor",
              "Thompson", "Walker", "Wang", "Williams", "Yilmaz", "Zhang")
SCHOOL_PATTERNS = ("University of {city}", "{city} State University", "{city} Community College",
                   "{city} Institute of Technology", "{city} Technical College")

# ----------------------------------------------------------------------------- posting text
ABOUT_COMPANY = (
    "{company} is a team of builders, operators and problem solvers. We move quickly, we sweat the "
    "details, and we measure ourselves by the difference our work makes for the people we serve. "
    "Our teams work across offices and time zones and share one culture of ownership and candor.",
    "At {company}, we believe that great products and great services come from people who care. "
    "Since our founding we have grown into an organization trusted by customers around the world, "
    "and we are still investing in the people and the tools that got us here.",
    "{company} helps its customers do their best work. We are a growing company with a long-term "
    "view: we hire thoughtfully, we give people room to learn, and we celebrate the wins along the "
    "way. Join us and help shape what comes next.",
    "Founded on the idea that work should be both meaningful and enjoyable, {company} brings "
    "together talented people from many backgrounds. We value curiosity, clear communication and "
    "a healthy respect for the craft, whatever the team.",
)
ROLE_INTRO = (
    "We are looking for {a_title} to join our {team} team{where}. You will work closely with "
    "colleagues across the business and have a direct impact on how we deliver for our customers.",
    "As {a_title} at {company}, you will be part of a collaborative {team} team{where}. This is a "
    "great opportunity for someone who enjoys variety, ownership and steady growth.",
    "Our {team} team{where} is growing, and we are hiring {a_title} to help us raise the bar. You "
    "will take on meaningful work from your first weeks and grow with the team.",
)
BENEFITS = (
    "Competitive salary and an annual performance bonus", "Comprehensive medical, dental and vision coverage",
    "Retirement plan with a company match", "Generous paid time off and paid holidays",
    "Paid parental leave for all parents", "A yearly learning and development budget",
    "Flexible working hours", "Wellness programs and an employee assistance program",
    "Commuter benefits", "Employee discounts and team events", "Life and disability insurance",
    "Home office setup allowance", "Mental health support", "Tuition reimbursement",
)
EEO = (
    "{company} is an equal opportunity employer. We celebrate diversity and are committed to creating "
    "an inclusive environment for all employees. All qualified applicants will receive consideration "
    "for employment without regard to race, color, religion, sex, sexual orientation, gender identity, "
    "national origin, disability, age or veteran status.",
    "We are proud to be an equal opportunity workplace. Employment decisions at {company} are made "
    "without regard to race, color, religion, sex, national origin, age, disability, genetic "
    "information, veteran status or any other status protected by law. If you need an accommodation "
    "during the hiring process, please let us know.",
    "{company} provides equal employment opportunities to all applicants and employees. We do not "
    "discriminate on the basis of any protected characteristic, and we welcome applicants of every "
    "background. Reasonable accommodations are available on request.",
)
CLOSING = (
    "Do not meet every single point? Studies show that many people hold back unless they tick every "
    "box. If you are excited about this role, we encourage you to apply anyway.",
    "To apply, submit your resume through our careers page. Our recruiting team reviews every "
    "application and will get back to you within two weeks.",
    "Applications are reviewed on a rolling basis. We look forward to hearing from you.",
)
HEADINGS = {
    "about": ("About {company}", "Who we are", "About us"),
    "role": ("About the role", "The opportunity", "Your role"),
    "duties": ("What you'll do", "Responsibilities", "Key responsibilities"),
    "required": ("What you'll bring", "Requirements", "Minimum qualifications", "Qualifications"),
    "preferred": ("Nice to have", "Preferred qualifications", "Bonus points"),
    "benefits": ("What we offer", "Benefits", "Perks and benefits"),
    "logistics": ("Location and compensation", "Work arrangement", "Compensation"),
    "eeo": ("Equal opportunity", "Our commitment", "Diversity and inclusion"),
}
SKILL_PHRASES = {
    "verb": ("Proven ability to {s} independently and reliably", "Demonstrated ability to {s} in a busy environment",
             "Confidence to {s} with minimal supervision", "Ability to {s} to a consistently high standard"),
    "noun": ("Hands-on experience with {s} in a professional setting", "Proficiency in {s} and its day-to-day use",
             "Working knowledge of {s} and related best practices", "Solid, practical understanding of {s}",
             "Experience applying {s} to real-world problems"),
}
CERT_PHRASES = ("Active {s}", "Current {s} credential", "{s} (or willingness to obtain it)")

# ----------------------------------------------------------------------------- profile text
# Sentences that show a skill in a profile, for topic/tool names ("noun") and abilities ("verb").
MET_SKILL_SENTENCES = {
    "noun": ("Used {s} daily to deliver results for the team.", "Applied {s} across several projects.",
             "Relied on {s} in most assignments.", "Brought strong {s} expertise to every project."),
    "verb": ("Was regularly trusted to {s} for the whole team.", "Took the lead whenever we needed to {s}.",
             "Was asked to {s} on a weekly basis.", "Learned to {s} independently and trained new hires to do it."),
    "gerund": ("Spent a large part of each week {s}.", "Became the go-to person for {s}.",
               "Was responsible for {s} across the department."),
}
PARTIAL_SKILL_SENTENCES = {
    "noun": ("Completed an introductory course in {s}.", "Currently learning {s} through online courses.",
             "Some exposure to {s} while supporting a senior colleague.",
             "Basic familiarity with {s} from a short project."),
    "verb": ("Currently learning to {s} under supervision.", "Have occasionally helped colleagues {s}.",
             "Took a short course on how to {s}.", "Starting to {s} with guidance from a mentor."),
    "gerund": ("Some first experience {s} under supervision.", "Recently started {s} as part of a training plan."),
}
PARTIAL_CERT_SENTENCE = "Preparing for the {s} exam, expected {date}."
SUMMARY_OPENERS = ("{title} with {years} of experience, most recently at {company}.",
                   "Experienced {title} ({years}) who enjoys solving practical problems.",
                   "{title} with a track record of {years} in demanding environments.")
SUMMARY_SKILLS = ("Strengths include {skills}.", "Known for {skills}.", "Core skills: {skills}.")

CONTACT_RATE = 0.25
CONTACT_LINES = ("Reach me at {first}.{last}@example.com.", "Call me on +1 555 0{n}.",
                 "Portfolio: https://example.com/{first}-{last}", "Email: {first}{last}@example.org")
IRREGULAR_PAST = {
    "be": "was", "become": "became", "begin": "began", "bind": "bound", "break": "broke", "bring": "brought",
    "build": "built", "buy": "bought", "choose": "chose", "cut": "cut", "deal": "dealt", "dig": "dug",
    "draw": "drew", "drive": "drove", "feed": "fed", "feel": "felt", "fight": "fought", "find": "found",
    "fly": "flew", "forecast": "forecast", "get": "got", "give": "gave", "go": "went", "grind": "ground",
    "grow": "grew", "hang": "hung", "hold": "held", "keep": "kept", "know": "knew", "lay": "laid", "lead": "led",
    "lend": "lent", "let": "let", "make": "made", "meet": "met", "oversee": "oversaw", "pay": "paid",
    "put": "put", "read": "read", "rebuild": "rebuilt", "rewrite": "rewrote", "ride": "rode", "run": "ran",
    "say": "said", "see": "saw", "seek": "sought", "sell": "sold", "send": "sent", "set": "set",
    "shake": "shook", "shoot": "shot", "show": "showed", "sit": "sat", "speak": "spoke", "spend": "spent",
    "spin": "spun", "split": "split", "spread": "spread", "stand": "stood", "strike": "struck", "sweep": "swept",
    "swing": "swung", "take": "took", "teach": "taught", "tell": "told", "think": "thought", "throw": "threw",
    "undergo": "underwent", "understand": "understood", "undertake": "undertook", "weave": "wove",
    "win": "won", "wind": "wound", "withdraw": "withdrew", "write": "wrote",
}
DOUBLING = {"plan", "ship", "stop", "trim", "chip", "plug", "scrub", "mop", "rub", "tap", "pin", "jam", "tag",
            "log", "drop", "grip", "strip", "wrap", "dip", "rig", "refer", "confer", "transfer", "prefer",
            "control", "patrol", "compel", "propel", "admit", "commit", "submit", "permit", "equip", "occur",
            "deter", "program", "travel", "label", "model", "signal", "level", "cancel", "fuel", "total",
            "pat", "pot", "pad", "sum", "shop", "step", "slip", "clip", "skim", "swab", "stab", "knit", "spot",
            "net", "bag", "wed", "dam", "blot", "map", "man"}


# ----------------------------------------------------------------------------- small helpers
def _rng(seed: int, *salt: object) -> random.Random:
    """An independent, platform-stable stream per (seed, salt...)."""
    digest = hashlib.sha256(repr((seed, *salt)).encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))


def _words(text: str) -> set[str]:
    return {w.rstrip("s") for w in re.findall(r"[a-z0-9+#]+", text.lower()) if len(w) > 2}


def _squash(text: str) -> str:
    return re.sub(r"[^a-z0-9+#]", "", text.lower())


def _month(index: int) -> str:
    return f"{index // 12:04d}-{index % 12 + 1:02d}"


AS_OF_INDEX = AS_OF[0] * 12 + AS_OF[1] - 1
AS_OF_TEXT = _month(AS_OF_INDEX)


def past_tense(sentence: str) -> str:
    """'Review and analyze reports.' -> 'Reviewed and analyzed reports.' (the leading verb list only)."""
    words = sentence.split()

    def past(word: str) -> str:
        bare, tail = re.match(r"([A-Za-z-]+)(.*)", word).groups() if re.match(r"[A-Za-z]", word) else (word, "")
        low = bare.lower()
        if low in IRREGULAR_PAST:
            out = IRREGULAR_PAST[low]
        elif low.endswith("e"):
            out = low + "d"
        elif re.search(r"[^aeiou]y$", low):
            out = low[:-1] + "ied"
        elif low in DOUBLING:
            out = low + low[-1] + "ed"
        else:
            out = low + "ed"
        return (out[:1].upper() + out[1:] if bare[:1].isupper() else out) + tail

    if not words:
        return sentence
    i = 0
    words[0] = past(words[0])
    while i + 1 < len(words):  # 'Plan, direct, or coordinate ...'
        if words[i].endswith(",") and words[i + 1] not in ("or", "and") and words[i + 1].islower():
            words[i + 1] = past(words[i + 1])
            i += 1
        elif words[i + 1] in ("or", "and") and i + 2 < len(words) and (words[i].endswith(",") or i == 0):
            words[i + 2] = past(words[i + 2])
            break
        else:
            break
    return " ".join(words)


def _a(phrase: str) -> str:
    """Phrase with its indefinite article: 'an atmospheric scientist', 'a software developer'."""
    return f"{'an' if phrase[:1].lower() in 'aeiou' else 'a'} {phrase}"


def _title_case(text: str) -> str:
    return " ".join(w if w[:1].isupper() or w.lower() in ("and", "of", "in", "for") else w.capitalize()
                    for w in text.split())


# ----------------------------------------------------------------------------- split plan
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
    rng = _rng(seed, "split-plan")
    big_groups = sorted(g for g in tx.groups if len(tx.occupations_in_group(g)) >= 20)
    groups = tuple(sorted(rng.sample(big_groups, HELDOUT_GROUPS)))
    companies = sorted(tx.companies)
    held = tuple(sorted(rng.sample(companies, max(1, round(HELDOUT_COMPANY_SHARE * len(companies))))))
    return SplitPlan(heldout_groups=groups, heldout_companies=held)


# ----------------------------------------------------------------------------- jobs
@dataclasses.dataclass
class _Context:
    tx: Taxonomy
    rng: random.Random
    occupations: tuple[Occupation, ...]  # the split's own occupation pool
    background: tuple[Occupation, ...]  # occupations a distant member may come from
    companies: tuple[str, ...]
    cities: tuple[str, ...]
    verbs: frozenset[str]  # first words of O*NET tasks: tells abilities from topics


def _education_requirement(occ: Occupation) -> tuple[str, list[str]]:
    level, fields = GROUP_EDUCATION.get(occ.group, ("high_school", ["General Studies"]))
    for pattern, override in TITLE_EDUCATION:
        if pattern.search(occ.title):
            if EDUCATION_LEVELS.index(override) > EDUCATION_LEVELS.index(level) or override == "associate":
                level = override
            break
    return level, list(fields)


def _skill_text(skill: Skill, rng: random.Random) -> str:
    phrases = SKILL_PHRASES["verb" if skill.form == "verb" else "noun"]
    return rng.choice(phrases).format(s=skill.label)


def _pick_skills(occ: Occupation, rng: random.Random, n: int) -> list[Skill]:
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
        if _squash(s.label) not in names:
            names.add(_squash(s.label))
            chosen.append(s)
    return chosen


def _job_title(ctx: _Context, occ: Occupation, seniority: str, company: str) -> tuple[str, str, str | None]:
    """(title, source, location from the same real posting or None)."""
    rng = ctx.rng
    postings = [p for p in occ.postings if p.company in ctx.companies]
    if postings and rng.random() < 0.6:
        p = rng.choice(postings)
        return p.title, "posting", p.location
    if occ.alt_titles and rng.random() < 0.35:
        title, source = _title_case(rng.choice(occ.alt_titles[:6])), "esco"
    else:
        title, source = occ.display_title, "onet"
    prefix = {"junior": rng.choice(["Junior ", "Associate ", ""]), "senior": rng.choice(["Senior ", "Lead ", ""]),
              "mid": ""}[seniority]
    return prefix + title, source, None


def _seniority_of(title: str) -> str | None:
    if re.search(r"\b(Senior|Sr\.?|Lead|Staff|Principal|Head|Director|Chief)\b", title, re.I):
        return "senior"
    if re.search(r"\b(Junior|Jr\.?|Associate|Intern|Trainee|Entry)\b", title, re.I):
        return "junior"
    return None


def _location(ctx: _Context, occ: Occupation, company: str, fixed: str | None) -> tuple[str, str]:
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


def _salary(occ: Occupation, seniority: str, rng: random.Random, company: str, tx: Taxonomy,
            title: str) -> list[int]:
    for p in tx.postings_by_company.get(company, ()):
        if p.title == title and p.salary:
            return [int(p.salary[0]), int(p.salary[1])]
    base = BASE_SALARY.get(occ.group, 50) * {"junior": 0.75, "mid": 1.0, "senior": 1.35}[seniority]
    low = round(base * rng.uniform(0.85, 1.0)) * 1000
    return [low, round(low * rng.uniform(1.15, 1.4) / 1000) * 1000]


def make_job(ctx: _Context, occ: Occupation, job_id: str) -> JobPosting:
    rng = ctx.rng
    seniority = rng.choices(["junior", "mid", "senior"], [0.25, 0.45, 0.3])[0]
    company = rng.choice(ctx.companies)
    title, title_source, posting_location = _job_title(ctx, occ, seniority, company)
    if title_source == "posting":  # a real title states its own level ('Senior Accountant')
        seniority = _seniority_of(title) or seniority
    years = {"junior": rng.choice([1, 2]), "mid": rng.choice([2, 3, 4]), "senior": rng.choice([5, 6, 7, 8])}[seniority]
    location, arrangement = _location(ctx, occ, company, posting_location)

    reqs: list[dict] = []

    def add(kind: str, importance: str, text: str, **extra) -> None:
        reqs.append({"id": f"r{len(reqs)}", "kind": kind, "importance": importance, "text": text, **extra})

    n_required, n_preferred = rng.randint(3, 5), rng.randint(1, 3)
    skills = _pick_skills(occ, rng, n_required + n_preferred)
    add("experience", "required", f"{years}+ years of professional experience as {_a(occ.display_title.lower())} "
        f"or in a closely related role", years=years)
    level, fields = _education_requirement(occ)
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
        add("skill", importance, _skill_text(skill, rng), skill=skill.label, skill_key=skill.key,
            alt_labels=list(skill.alt_labels), category=skill.category, form=skill.form)
    if occ.certifications and rng.random() < 0.45:
        cert = rng.choice(occ.certifications)
        add("certification", rng.choice(["required", "preferred"]), rng.choice(CERT_PHRASES).format(s=cert.label),
            cert=cert.label, skill_key=cert.key, alt_labels=list(cert.alt_labels))
    salary = _salary(occ, seniority, rng, company, ctx.tx, title)

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
        f"{heading['role']}\n{rng.choice(ROLE_INTRO).format(a_title=_a(title), company=company, team=team, where=where)}",
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


# ----------------------------------------------------------------------------- members
@dataclasses.dataclass
class _Role:
    occupation: Occupation
    start: int  # month index
    end: int | None
    title: str = ""
    company: str = ""


def _education_verdict(req: dict, degrees: Sequence[tuple[str, str]]) -> tuple[str, int]:
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


def _relevant_years(roles: Sequence[_Role], job_occ: Occupation) -> float:
    months = 0.0
    for r in roles:
        span = (r.end if r.end is not None else AS_OF_INDEX) - r.start
        if r.occupation.code == job_occ.code:
            months += span
        elif r.occupation.code in job_occ.related:
            months += 0.5 * span
    return months / 12.0


def _experience_verdict(req: dict, relevant: float) -> str:
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


CLOSENESS_BY_TARGET = {"high": (0.75, 0.25, 0.0), "medium": (0.35, 0.5, 0.15), "low": (0.15, 0.35, 0.5)}
SKILL_STATE_BY_CLOSENESS = {  # P(met), P(partially_met) for a skill; the rest is not_met
    "near": (0.8, 0.12), "adjacent": (0.5, 0.25), "distant": (0.1, 0.2)}


@dataclasses.dataclass
class _Plan:
    closeness: str
    member_occ: Occupation
    roles: list[_Role]
    degrees: list[tuple[str, str]]  # (level, field), highest first
    states: dict[str, str]  # skill / certification requirement id -> verdict
    verdicts: dict[str, str]
    fit: str
    score: float
    relevant: float


def _plan_member(ctx: _Context, job: JobPosting, job_occ: Occupation, target: str) -> _Plan:
    rng, reqs = ctx.rng, job.truth["requirements"]
    years_req = next(r["years"] for r in reqs if r["kind"] == "experience")
    edu_req = next(r for r in reqs if r["kind"] == "education")
    plan = None
    for _ in range(MAX_RESAMPLES):
        closeness = rng.choices(("near", "adjacent", "distant"), CLOSENESS_BY_TARGET[target])[0]
        member_occ = _member_occupation(ctx, job_occ, closeness)
        total_years = max(0.5, {"high": years_req + rng.uniform(0, 6), "medium": years_req * rng.uniform(0.4, 1.6),
                                "low": rng.uniform(0.5, years_req * 1.5 + 2)}[target])
        roles = _career(ctx, member_occ, job_occ, closeness, total_years)
        degrees = _degrees(ctx, edu_req, target, member_occ)
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
        relevant = _relevant_years(roles, job_occ)
        verdicts = {}
        for r in reqs:
            if r["kind"] == "experience":
                verdicts[r["id"]] = _experience_verdict(r, relevant)
            elif r["kind"] == "education":
                verdicts[r["id"]] = _education_verdict(r, degrees)[0]
            else:
                verdicts[r["id"]] = states[r["id"]]
        fit, score = fit_level(reqs, verdicts)
        plan = _Plan(closeness, member_occ, roles, degrees, states, verdicts, fit, score, relevant)
        if fit == target:
            break
    return plan


def _member_occupation(ctx: _Context, job_occ: Occupation, closeness: str) -> Occupation:
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


def _career(ctx: _Context, member_occ: Occupation, job_occ: Occupation, closeness: str,
            total_years: float) -> list[_Role]:
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
        roles.append(_Role(occ, start + bounds[i], None if (i == len(bounds) - 2 and end == AS_OF_INDEX) else role_end))
    return roles


def _degrees(ctx: _Context, req: dict, target: str, member_occ: Occupation) -> list[tuple[str, str]]:
    rng = ctx.rng
    need = EDUCATION_LEVELS.index(req["level"])
    own_level, own_fields = _education_requirement(member_occ)
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


def _degree_name(level: str, field: str, rng: random.Random) -> str:
    if level == "doctorate" and field in ("Medicine", "Law"):
        return "Doctor of Medicine" if field == "Medicine" else "Juris Doctor"
    names = DEGREE_NAMES[level]
    if level in ("bachelor", "master"):
        kind = "Arts" if field in ARTS_FIELDS else "Business" if field in BUSINESS_FIELDS else "Science"
        names = [n for n in names if n.endswith(kind) or (kind == "Business" and n.endswith("Science"))]
    return rng.choice(names)


def _form(surface: str, verbs: frozenset[str]) -> str:
    """How a skill's wording reads: an ability ('prepare budgets'), an activity ('assessing
    students') or a topic/tool ('Budgeting'), so profile sentences stay grammatical."""
    words = surface.split()
    if len(words) > 1 and words[0] in verbs:
        return "verb"
    return "gerund" if words and words[0].islower() and words[0].endswith("ing") and len(words) > 1 else "noun"


def _avoid(reqs: Sequence[dict], verdicts: dict[str, str]) -> tuple[set[str], list[set[str]]]:
    """Names and word sets the profile must not contain: skills it does not (fully) have."""
    names, word_sets = set(), []
    for r in reqs:
        if r["kind"] in ("skill", "certification") and verdicts[r["id"]] != "met":
            for label in [r.get("skill") or r.get("cert"), *r.get("alt_labels", [])]:
                names.add(_squash(label))
                words = _words(label)
                if words:
                    word_sets.append(words)
    return names, word_sets


def _mentions(text: str, names: set[str], word_sets: list[set[str]]) -> bool:
    squashed, words = _squash(text), _words(text)
    return any(n and (n in squashed or squashed in n) for n in names) or any(ws <= words for ws in word_sets)


def _role_title(ctx: _Context, occ: Occupation, senior: bool) -> str:
    rng = ctx.rng
    options = [occ.display_title] + [_title_case(t) for t in occ.alt_titles[:6]]
    options += [p.title for p in occ.postings[:10] if len(p.title) < 40 and p.company in ctx.companies]
    title = rng.choice(options)
    if senior and not re.match(r"(Senior|Lead|Principal|Head|Chief)\b", title):
        title = "Senior " + title
    return title


def make_member(ctx: _Context, job: JobPosting, job_occ: Occupation, member_id: str,
                target: str) -> tuple[MemberProfile, dict]:
    rng = ctx.rng
    plan = _plan_member(ctx, job, job_occ, target)
    reqs = job.truth["requirements"]
    avoid_names, avoid_words = _avoid(reqs, plan.verdicts)
    name = f"{rng.choice(FIRST_NAMES)} {rng.choice(LAST_NAMES)}"

    # Roles: titles, employers, duty bullets (never mentioning skills the member lacks).
    experience: list[Experience] = []
    roles_newest = list(reversed(plan.roles))
    for i, role in enumerate(roles_newest):
        role.title = _role_title(ctx, role.occupation, senior=(i == 0 and plan.relevant + 1 > 6 and rng.random() < 0.5))
        role.company = rng.choice(ctx.companies)
    duty_sentences: list[list[str]] = []
    for role in roles_newest:
        tasks = [t for t in role.occupation.tasks if not _mentions(t, avoid_names, avoid_words)]
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
        alts = [a for a in r.get("alt_labels", []) if _squash(a) != _squash(label)]
        surface = rng.choice(alts) if alts and rng.random() < 0.85 else label
        surfaces[rid] = surface
        if verdict == "met":
            if r["kind"] == "skill" and duty_sentences and rng.random() < 0.35:
                sentence = rng.choice(MET_SKILL_SENTENCES[_form(surface, ctx.verbs)]).format(s=surface)
                j = rng.randrange(len(duty_sentences))
                duty_sentences[j].append(sentence)
                evidence[rid], fields[rid] = sentence, f"experience[{j}].description"
            else:
                skills.append(surface)
                evidence[rid], fields[rid] = surface, "skills"
        elif verdict == "partially_met":
            if r["kind"] == "certification":
                sentence = PARTIAL_CERT_SENTENCE.format(s=surface, date=_month(AS_OF_INDEX + rng.randint(2, 8)))
            else:
                sentence = rng.choice(PARTIAL_SKILL_SENTENCES[_form(surface, ctx.verbs)]).format(s=surface)
            summary_extra.append(sentence)
            evidence[rid], fields[rid] = sentence, "summary"
        else:
            evidence[rid], fields[rid] = "", ""
    # Other skills of the member's own occupation (distractors), never a missing requirement.
    own = [s for s in plan.member_occ.skills[:30] if s.form != "cert"]
    for s in rng.sample(own, min(len(own), rng.randint(4, 8))):
        surface = rng.choice(s.alt_labels) if s.alt_labels and rng.random() < 0.5 else s.label
        if not _mentions(surface, avoid_names, avoid_words) and surface not in skills:
            skills.append(surface)
    rng.shuffle(skills)
    for rid, field in fields.items():
        if field == "skills":
            fields[rid] = f"skills[{skills.index(evidence[rid])}]"

    for role, sentences in zip(roles_newest, duty_sentences):
        experience.append(Experience(title=role.title, company=role.company, start=_month(role.start),
                                     end=None if role.end is None else _month(role.end),
                                     description=" ".join(sentences)))

    education = []
    grad = plan.roles[0].start // 12 - rng.randint(0, 1)
    for level, field in plan.degrees:  # highest first, each earlier degree finished a few years before
        school = rng.choice(SCHOOL_PATTERNS).format(city=rng.choice(ctx.cities).split(",")[0])
        education.append(Education(degree=_degree_name(level, field, rng), field=field, school=school,
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
            verdict, idx = _education_verdict(r, plan.degrees)
            if idx < 0 and education:
                idx = 0
            if idx >= 0:
                e = education[idx]
                evidence[rid], fields[rid] = f"{e.degree} in {e.field}", f"education[{idx}]"
            else:
                evidence[rid], fields[rid] = "", ""

    current = roles_newest[0]
    years_text = _years_text((AS_OF_INDEX - plan.roles[0].start) / 12)
    top = [s for s in skills[:3]]
    summary = " ".join([
        rng.choice(SUMMARY_OPENERS).format(title=current.title, years=years_text, company=current.company),
        rng.choice(SUMMARY_SKILLS).format(skills=_join(top)) if top else "",
        *summary_extra,
    ]).strip()
    if rng.random() < CONTACT_RATE:  # real profiles leak contact details: redaction has work to do
        first, last = (_squash(w) for w in name.split())
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


def _years_text(years: float) -> str:
    whole = int(years)
    return "under a year" if whole < 1 else f"{whole} year{'s' if whole != 1 else ''}"


def _join(items: Sequence[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


# ----------------------------------------------------------------------------- public API
def _context(tx: Taxonomy, plan: SplitPlan, split: str, rng: random.Random) -> _Context:
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {', '.join(SPLITS)}")
    occupations = plan.occupations(tx, split)
    companies = plan.companies(tx, split)
    background = plan.occupations(tx, "train")  # distant members come from the shared pool
    cities = tuple(sorted({loc for loc in tx.locations if "," in loc and "remote" not in loc.lower()
                           and len(loc) < 40}))
    verbs = frozenset(t.split()[0].lower() for o in tx.occupations for t in o.tasks if t.split())
    return _Context(tx=tx, rng=rng, occupations=occupations, background=background,
                    companies=companies, cities=cities, verbs=verbs)


def generate_pairs(n: int, *, seed: int, split: str = "train", members_per_job: int = 3,
                   taxonomy: Taxonomy | None = None) -> list[Pair]:
    """`n` D_base pairs for `split`, deterministic in (seed, split). Each job gets up to
    `members_per_job` members; fit-level targets cycle through a shuffled low/medium/high deck."""
    tx = taxonomy or load_taxonomy()
    rng = _rng(seed, "pairs", split)
    ctx = _context(tx, split_plan(seed, tx), split, rng)
    pairs: list[Pair] = []
    job_index = 0
    targets: list[str] = []
    while len(pairs) < n:
        occ = rng.choice(ctx.occupations)
        job = make_job(ctx, occ, f"{split}-{seed}-j{job_index:05d}")
        job_index += 1
        for _ in range(min(members_per_job, n - len(pairs))):
            if not targets:
                targets = ["low", "medium", "high"]
                rng.shuffle(targets)
            i = len(pairs)
            member, truth = make_member(ctx, job, occ, f"{split}-{seed}-m{i:05d}", targets.pop())
            pairs.append(Pair(pair_id=f"{split}-{seed}-{i:05d}", job=job, member=member, truth=truth))
    return pairs


def make_splits(n_total: int, *, seed: int, fractions: dict[str, float] | None = None,
                taxonomy: Taxonomy | None = None) -> dict[str, list[Pair]]:
    """All splits, sized by `fractions` (default DEFAULT_FRACTIONS; the remainder goes to train)."""
    fractions = fractions or DEFAULT_FRACTIONS
    unknown = set(fractions) - set(SPLITS)
    if unknown:
        raise ValueError(f"unknown split(s) {sorted(unknown)}; expected some of {', '.join(SPLITS)}")
    sizes = {s: int(n_total * f) for s, f in fractions.items()}
    sizes["train"] = sizes.get("train", 0) + n_total - sum(sizes.values())
    return {s: generate_pairs(k, seed=seed, split=s, taxonomy=taxonomy) for s, k in sizes.items()}


# ----------------------------------------------------------------------------- JSONL
def write_pairs(path: str | os.PathLike, pairs: Iterable[Pair]) -> int:
    """Write pairs as JSONL atomically (temp file + rename): a crash never leaves a partial file
    and never clobbers what was there. Returns the number of records written."""
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    count = 0
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            for pair in pairs:
                f.write(json.dumps(pair.to_dict(), ensure_ascii=False, separators=(",", ":")) + "\n")
                count += 1
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return count


def iter_pairs(path: str | os.PathLike) -> Iterator[Pair]:
    """Pairs from a D_base JSONL file; malformed input raises DataError('FILE:LINE: what is wrong')."""
    path = pathlib.Path(path)
    if not path.is_file():
        raise DataError(f"{path}: D_base file not found")
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as e:
                raise DataError(f"{path}:{lineno}: invalid JSON ({e.msg} at column {e.colno})") from None
            try:
                yield pair_from_record(record)
            except DataError as e:
                raise DataError(f"{path}:{lineno}: {e}") from None


def read_pairs(path: str | os.PathLike) -> list[Pair]:
    return list(iter_pairs(path))
