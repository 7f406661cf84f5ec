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
from lantern_jax.data.synth.generate import generate_pairs, make_splits
from lantern_jax.data.synth.jobs import SplitPlan, render_posting, requirement_share, split_plan
from lantern_jax.data.synth.jsonl import iter_pairs, read_pairs, write_pairs
from lantern_jax.data.synth.phrases import FIRST_NAMES, past_tense
from lantern_jax.data.synth.rules import (AS_OF, DEFAULT_FRACTIONS, EDUCATION_LEVELS, SPLITS, fit_level, mentions,
                                          seeded_rng, squash, word_set)

__all__ = ["AS_OF", "DEFAULT_FRACTIONS", "EDUCATION_LEVELS", "FIRST_NAMES", "SPLITS", "SplitPlan", "fit_level",
           "generate_pairs", "iter_pairs", "make_splits", "mentions", "past_tense", "read_pairs", "render_posting",
           "requirement_share", "seeded_rng", "split_plan", "squash", "word_set", "write_pairs"]
