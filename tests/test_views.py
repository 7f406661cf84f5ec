"""Requirement <-> evidence views: tenure text, skill-name retrieval against the generator's latent
evidence, and the classifier's input built from them."""
import re

import pytest

from lantern_jax.data import synth, views
from lantern_jax.data.schema import Education, Experience, MemberProfile


@pytest.fixture(scope="module")
def pairs():
    return synth.generate_pairs(90, seed=3, split="train")


@pytest.mark.parametrize("start,end,text", [("2020-01", "2024-11", "4 yrs 10 mos"), ("2024-03", "2024-10", "7 mos"),
                                            ("2019-05", "2020-05", "1 yr"), ("2025-01", None, "1 yr"),
                                            ("2025-12", "2025-12", "0 mos")])
def test_role_duration(start, end, text):
    assert views.role_duration(start, end, as_of=(2026, 1)) == text


def test_skill_names_and_label_come_from_the_taxonomy():
    names = views.skill_names("Hands-on experience with refrigerants in a professional setting")
    assert "refrigerants" in names and "refrigeration coolants" in names
    assert views.skill_label("Proficiency in Preventive Maintenance and its day-to-day use") == "Preventive Maintenance"
    assert views.skill_names("Friendly attitude towards colleagues xyzzy") == frozenset()


def test_lexical_fallback_when_the_taxonomy_names_no_skill():
    member = MemberProfile("m", "n", "Chef", "Cooks.", (Experience("Chef", "Co", "2020-01", None, "Made soup."),),
                           (Education("Bachelor of Arts", "History", "U", 2019),), ("Quantum widget tuning",))
    found = views.skill_evidence("Experience with quantum widget tuning", member)
    assert [s.text for s in found] == ["Quantum widget tuning"]
    assert views.skill_evidence("Knowledge of underwater basket weaving", member) == []


def test_retrieval_finds_latent_evidence_and_little_else(pairs):
    hits = misses_found = met = not_met = 0
    for p in pairs:
        by_text = {r["text"]: r for r in p.job.truth["requirements"]}
        for req in views.requirements_of(p):
            r = by_text[req.text]
            if r["kind"] not in ("skill", "certification"):
                continue
            found = views.skill_evidence(req.text, p.member)
            if p.truth["verdicts"][r["id"]] == "not_met":
                not_met += 1
                misses_found += bool(found)
            else:
                met += 1
                ev = p.truth["evidence"][r["id"]]
                hits += any(ev in s.text or s.text in ev for s in found)
    assert met > 150 and not_met > 50
    assert hits / met >= 0.95
    assert misses_found / not_met <= 0.05


def test_aligned_text_puts_evidence_under_its_requirement(pairs):
    p = pairs[0]
    text = views.aligned_text(p)
    lines = text.splitlines()
    assert lines[0] == f"Job: {p.job.title}"
    for r in p.job.truth["requirements"]:
        at = lines.index(f"- {r['text']}")
        block = []
        for line in lines[at + 1:]:
            if not line.startswith("  > "):
                break
            block.append(line)
        assert block, r["text"]
        ev = p.truth["evidence"][r["id"]]
        if r["kind"] in ("skill", "certification") and p.truth["verdicts"][r["id"]] != "not_met":
            assert any(ev in line for line in block)
    short = views.aligned_text(p, short=True)
    assert len(short) < len(text) and not re.search(r"\d{4}-\d{2}", short)


def test_classifier_text_is_the_short_view_and_uncompressed_is_the_whole_pair(pairs):
    p = pairs[1]
    assert views.classifier_text(p) == views.aligned_text(p, short=True)
    assert p.member.summary not in views.classifier_text(p)
    whole = views.classifier_text(p, compress=False)
    assert p.job.description.strip() in whole and p.member.summary.strip() in whole
    for e in p.member.experience:
        assert e.description.strip() in whole
