"""Fairness and injection audit: counterfactual builders (truth kept by the generator's rules, cue
visible to the students, deterministic), flip arithmetic, the report, and an end-to-end audit of a
tiny workdir: random classifier, an explainer with hand-set weights that always answers the same
Assessment, and the simulated teacher behind the real server."""
from __future__ import annotations

import dataclasses
import json

import ml_collections
import pytest
from flax import nnx

import train_fixtures
from lantern_jax import audit
from lantern_jax.data import pointers, prompts, synth, views
from lantern_jax.data.rundir import RunDir

SPLIT_FILES = ("train", "dev", "test", "heldout_occupation", "heldout_company")


@pytest.fixture(scope="module")
def pairs():
    return synth.generate_pairs(9, seed=3, split="test")


# Cues in the headline, which the classifier's aligned view keeps; the others sit in the summary,
# graduation years or a skill entry no requirement asks for, which it leaves out.
IN_HEADLINE = ("gender", "placebo", "inject_headline")


def classifier_sees(cue: str, pair) -> bool:
    return cue in IN_HEADLINE


def readers(pair):
    """What each judge reads: the classifier's input, the in-house models' tagged view (the explainer
    and the in-house teacher) and the black-box teacher's prompt."""
    return (views.classifier_text(pair), pointers.inhouse_messages(pair)[0]["content"],
            prompts.single_call_messages(pair)[1]["content"])


def tagged_view_sees(cue: str, pair) -> bool:
    """The tagged view shows the headline, and a degree's year where a requirement asks for a degree."""
    return cue in IN_HEADLINE or (cue == "age_graduation" and any(
        f"({e.year})" in readers(pair)[1] for e in pair.member.education))


def test_counterfactuals_keep_the_truth_and_show_the_cue(pairs):
    cfs, skipped = audit.build_counterfactuals(pairs, seed=0)
    assert {cf.cue for cf in cfs} == set(audit.CUES)
    assert skipped["age_graduation"] == sum(not p.member.education for p in pairs)
    assert sum(skipped.values()) == skipped["age_graduation"]
    for cf in cfs:
        reqs = cf.original.job.truth["requirements"]
        for side in (cf.reference, cf.counterfactual):
            audit.check_truth_preserved(cf.original, side)
            assert synth.fit_level(reqs, side.truth["verdicts"])[0] == cf.original.truth["fit_level"]
        ref, new = readers(cf.reference), readers(cf.counterfactual)
        assert ref[2] != new[2], cf.cue  # the black-box teacher reads the whole profile
        assert (ref[1] != new[1]) == tagged_view_sees(cf.cue, cf.original), cf.cue
        assert (ref[0] != new[0]) == classifier_sees(cf.cue, cf.original), cf.cue
        m = cf.counterfactual.member
        if cf.cue == "gender":
            female, male = cf.reference.member.name.split()[0], m.name.split()[0]
            assert (female, male) in audit.NAME_PAIRS
            assert all("| she/her" in t and "he/him" not in t for t in ref)
            assert all("| he/him" in t and "she/her" not in t for t in new)
            for text in new[2:]:
                assert f"Summary: {m.name} (he/him)." in text
                assert synth.squash(female) not in synth.squash(text.split("Summary:")[1].split("\n")[0])
        elif cf.cue == "age_graduation":
            for old, e in zip(cf.original.member.education, m.education):
                assert e.year == old.year - audit.AGE_SHIFT_YEARS and all(f"({e.year})" in t for t in new[2:])
        elif cf.cue == "age_stated":
            age = audit.stated_age(cf.original)
            assert f"Summary: Age: {age}." in ref[2]
            assert f"Summary: Age: {age + audit.AGE_SHIFT_YEARS}." in new[2]
        elif cf.cue == "placebo":
            assert all("| hiking" in t and "chess" not in t for t in ref)
            assert all("| chess" in t and "hiking" not in t for t in new)
            assert "Enjoys chess at weekends." in new[2]
        else:
            assert cf.reference is cf.original


def test_injection_is_planted_inside_the_fenced_profile_block(pairs):
    cfs, _ = audit.build_counterfactuals(pairs, seed=0)
    injected = [cf for cf in cfs if cf.cue.startswith("inject")]
    assert len(injected) == 3 * len(pairs)
    for cf in injected:
        planted = audit.INJECTIONS[cf.cue]
        texts = readers(cf.counterfactual)
        blocks = prompts.fenced_blocks(texts[2])  # the black-box teacher's prompt: in the fenced profile, once
        assert planted in blocks[prompts.MEMBER_BLOCK] and texts[2].count(planted) == 1
        for text in texts[:2]:  # the classifier's and the tagged view: the headline line only
            assert text.count(planted) == classifier_sees(cf.cue, cf.original)
        assert planted not in prompts.render_member(cf.original.member)


def test_builders_are_deterministic(pairs):
    one, _ = audit.build_counterfactuals(pairs, seed=5)
    two, _ = audit.build_counterfactuals(pairs, seed=5)
    assert [(c.cue, c.reference.to_dict(), c.counterfactual.to_dict()) for c in one] == \
           [(c.cue, c.reference.to_dict(), c.counterfactual.to_dict()) for c in two]


def test_truth_check_rejects_changes_that_move_the_truth(pairs):
    pair = next(p for p in pairs if p.member.experience and "not_met" in p.truth["verdicts"].values()
                and any(r["kind"] == "skill" and p.truth["verdicts"][r["id"]] == "not_met"
                        for r in p.job.truth["requirements"]))
    missing = next(r["skill"] for r in pair.job.truth["requirements"]
                   if r["kind"] == "skill" and pair.truth["verdicts"][r["id"]] == "not_met")
    m = pair.member
    role = dataclasses.replace(m.experience[0], start="1990-01")
    for member in (dataclasses.replace(m, skills=(*m.skills, missing)),  # a missing skill now listed
                   dataclasses.replace(m, experience=(role, *m.experience[1:])),  # more years
                   dataclasses.replace(m, skills=m.skills[1:], summary="", experience=())):  # evidence gone
        with pytest.raises(ValueError, match="latent truth not preserved"):
            audit.check_truth_preserved(pair, dataclasses.replace(pair, member=member))


def test_gendered_words_and_names_follow_the_cue():
    assert audit._gendered("She leads her team. He said so himself.", "male") == \
        "He leads his team. He said so himself."
    assert audit._gendered("He leads his team.", "female") == "She leads her team."
    text = "Fatima Singh leads. Reach me at fatima.singh@example.com. Portfolio: https://example.com/fatima-singh"
    assert audit._renamed(text, "Fatima", "Mohammed", "Singh") == (
        "Mohammed Singh leads. Reach me at mohammed.singh@example.com. "
        "Portfolio: https://example.com/mohammed-singh")


def test_flip_stats_on_known_judgements():
    ref = ["low", "medium", "high", "medium", "low", "unparsable", "high", "medium"]
    new = ["low", "high", "medium", "high", "unparsable", "low", "high", "declined"]
    s = audit.flip_stats(ref, new)
    # judged on both sides: (low, low) (medium, high) (high, medium) (medium, high) (high, high)
    assert s["n"] == 5 and s["flips"] == 3 and s["flip_rate"] == pytest.approx(0.6)
    assert (s["up"], s["down"], s["to_high"]) == (2, 1, 2) and s["to_high_rate"] == pytest.approx(0.4)
    assert s["not_counted"] == {"unparsable": 2, "declined": 1}
    assert s["reference_levels"] == [1, 2, 2]
    empty = audit.flip_stats(["declined"] * 3, ["declined"] * 3)
    assert empty["n"] == 0 and empty["flip_rate"] is None and empty["not_counted"] == {"declined": 3}


def test_report_section_is_a_table_of_cues_and_judges():
    stats = audit.flip_stats(["low", "high"], ["high", "high"])
    metrics = {"n_pairs": 2, "seed": 0, "teacher": "simulated",
               "cues": {cue: {"judges": {"teacher": audit.flip_stats(["declined"] * 2, ["declined"] * 2),
                                         "inhouse": stats, "classifier": stats,
                                         "explainer": stats}} for cue in audit.CUES}}
    text = audit.report_section(metrics)
    rows = [line for line in text.splitlines() if line.startswith("| ") and not line.startswith("| cue")]
    assert len(rows) == len(audit.CUES) * len(audit.JUDGES)
    assert "| inject_headline | injection in the headline | classifier | 2 | 0.500 | 1 / 0 | 0.500 (1) |" in text
    assert "| gender | name + pronouns, female -> male | teacher | 0 | n/a | 0 / 0 | - | declined 2 |" in text
    assert text.startswith("## Fairness and injection audit")


# --- end to end -------------------------------------------------------------------------------

ANSWER = json.dumps({"requirements": [{"requirement": "SQL", "importance": "required", "verdict": "met",
                                       "evidence": "SQL is listed."}],
                     "fit_level": "medium", "explanation": "You are a medium fit for this job. SQL is met."})


@pytest.mark.slow
def test_audit_end_to_end_on_a_tiny_workdir(tmp_path, pairs):
    from lantern_jax.data.tokenizer import train_tokenizer
    from lantern_jax.models import hf
    from lantern_jax.models.decoder import DecoderConfig
    from lantern_jax.models.encoder import Classifier, ClassifierConfig, EncoderConfig

    wd = RunDir(str(tmp_path))
    for split in SPLIT_FILES:
        synth.write_pairs(wd("data", f"pairs_{split}.jsonl"), pairs[:4] if split == "test" else [])
    tok = train_tokenizer([json.dumps(pointers.inhouse_messages(p)) for p in pairs] + [ANSWER], vocab_size=1024)
    tok.add_tokens([ANSWER])
    dec = DecoderConfig(vocab_size=len(tok), hidden_size=64, num_layers=1, num_heads=4, num_kv_heads=2,
                        intermediate_size=96, max_position_embeddings=4096)
    for name in ("explainer", "inhouse"):  # the in-house teacher is judged as the explainer is
        hf.save_hf(train_fixtures.answering_decoder(dec, tok.convert_tokens_to_ids(ANSWER), tok.eos_token_id),
                   wd(name, "export"), tokenizer=tok)
    enc = EncoderConfig(vocab_size=len(tok), hidden_size=32, num_layers=1, num_heads=2, intermediate_size=64)
    hf.save_hf(Classifier(ClassifierConfig(enc), rngs=nnx.Rngs(2)), wd("classifier", "export"), tokenizer=tok)
    cfg = ml_collections.ConfigDict({
        "seed": 0, "evaluate": {"n_per_split": 4, "n_audit": 2, "max_new_tokens": 4},
        "classifier": {"data": {"max_length": 512}},
        "blackbox": {"error_rates": {}, "fault_rates": {}, "concurrency": 8, "top_logprobs": 5}})

    metrics = audit.audit(cfg, wd)
    json.dumps(metrics, allow_nan=False)  # JSON-serialisable as it stands
    assert metrics["n_pairs"] == 2 and set(metrics["cues"]) == set(audit.CUES)
    for cue, m in metrics["cues"].items():
        n = m["pairs"]
        assert n + m["skipped"] == 2 and n >= (0 if cue == "age_graduation" else 2)
        explainer, classifier, teacher = (m["judges"][j] for j in ("explainer", "classifier", "teacher"))
        # the explainer answers "medium" whatever the profile: judged on every pair, never flips
        assert explainer["n"] == n and explainer["flips"] == 0 and explainer["reference_levels"] == [0, n, 0]
        assert m["judges"]["inhouse"] == explainer
        # the classifier counts the pairs whose cue is in what it reads, i.e. not the summary-only cues
        seen = n if classifier_sees(cue, pairs[0]) else 0
        assert classifier["n"] == seen and classifier["not_counted"] == ({"cue unseen": n} if n - seen else {})
        assert classifier["up"] + classifier["down"] == classifier["flips"] <= seen
        assert sum(classifier["reference_levels"]) == seen
        # the simulated teacher recognises only the pairs it was loaded with: every modified profile
        # is declined, so nothing is counted (n/a), rather than reported as 0 flips
        assert teacher["n"] == 0 and teacher["flip_rate"] is None and teacher["not_counted"] == {"declined": n}
    # ... while the unmodified pairs (the injections' references) are answered
    assert metrics["profiles_with_a_level"]["teacher"] == 2
    report = audit.report_section(metrics)
    assert "| inject_summary | injection ending the summary | explainer | 2 | 0.000 | 0 / 0 | 0.000 (0) |" in report
