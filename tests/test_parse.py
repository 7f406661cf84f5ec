"""parse_assessment: good outputs round-trip; bad ones and fuzzed text raise only TeacherOutputError."""
import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lantern_jax.data.schema import Assessment
from lantern_jax.teacher.parse import (TeacherOutputError, parse_assessment, parse_evaluated, parse_extracted,
                                       parse_rating)
from teacher_fixtures import expert_records, synth_pairs

GOOD = {"requirements": [{"requirement": "Experience with SQL", "importance": "required", "verdict": "met",
                          "evidence": 'The profile lists "SQL databases".'}],
        "fit_level": "medium",
        "explanation": "You are a medium fit for this job. Let me show the reasons: you know SQL."}


def _good_outputs():
    records, _ = expert_records(synth_pairs(60))
    return [r["raw_text"] for r in records]


def test_simulated_outputs_round_trip():
    outputs = _good_outputs()
    assert any(o.startswith("```") for o in outputs) and any(o.startswith("{") for o in outputs)
    for text in outputs:
        a = parse_assessment(text)
        again = parse_assessment(json.dumps(a.to_dict()))
        assert again == a == Assessment.from_dict(a.to_dict())
        assert a.explanation.startswith(f"You are a {a.fit_level} fit for this job.")


@pytest.mark.parametrize("wrap", [
    lambda s: s, lambda s: f"```json\n{s}\n```", lambda s: f"Here is my assessment:\n```\n{s}\n```\nThanks!",
    lambda s: f"Sure. {s}", lambda s: f"  \n{s}\n\n"])
def test_accepts_json_in_fences_and_chatter(wrap):
    assert parse_assessment(wrap(json.dumps(GOOD))).fit_level == "medium"


def _bad(**changes):
    d = json.loads(json.dumps(GOOD))
    for path, value in changes.items():
        target, *keys = path.split("__")
        obj = d if not keys else d[target][0]
        key = keys[-1] if keys else target
        if value is KeyError:
            del obj[key]
        else:
            obj[key] = value
    return json.dumps(d)


BAD = [
    "", "   ", "I'm sorry, but I can't help with that.", "null", "[]", "42", '"text"', "{", '{"requirements": [',
    json.dumps(GOOD)[:-5], json.dumps(GOOD).replace('"', "'"), json.dumps(GOOD)[:-1] + ",}",
    "```json\n{not json}\n```", "{" * 5000 + "}" * 5000, "[" * 100000, '{"a": 1' + "0" * 5000 + "}",
    _bad(fit_level="excellent"), _bad(fit_level=None), _bad(fit_level=KeyError), _bad(explanation=KeyError),
    _bad(explanation=["You are a medium fit for this job."]), _bad(requirements=[]), _bad(requirements={}),
    _bad(requirements=KeyError), _bad(requirements=["SQL"]), _bad(requirements__verdict=KeyError),
    _bad(requirements__verdict="yes"), _bad(requirements__importance="critical"),
    _bad(requirements__requirement=""), _bad(requirements__evidence=3), _bad(requirements__extra="x"),
    _bad(reasoning="step by step"), _bad(explanation="Great candidate! You are a medium fit for this job."),
    _bad(explanation="You are a high fit for this job. Really."),
    json.dumps({**GOOD, "fit_level": "low"}),
]


@pytest.mark.parametrize("text", BAD, ids=range(len(BAD)))
def test_bad_outputs_raise_one_line_teacher_output_error(text):
    with pytest.raises(TeacherOutputError) as info:
        parse_assessment(text)
    message = str(info.value)
    assert message and "\n" not in message and len(message) <= 300


def test_non_text_input():
    for value in (None, 3, b"{}", {"fit_level": "high"}):
        with pytest.raises(TeacherOutputError):
            parse_assessment(value)


def test_chain_step_parsers():
    assert parse_extracted('{"requirements": [{"requirement": "SQL", "importance": "preferred"}]}') == [
        {"requirement": "SQL", "importance": "preferred"}]
    assert parse_evaluated(json.dumps({"requirements": GOOD["requirements"]}))[0]["verdict"] == "met"
    assert parse_rating(json.dumps({"fit_level": "medium", "explanation": GOOD["explanation"]}))[0] == "medium"
    for parse, text in ((parse_extracted, '{"requirements": [{"requirement": "SQL"}]}'),
                        (parse_evaluated, '{"requirements": [{"requirement": "SQL", "importance": "required"}]}'),
                        (parse_rating, '{"fit_level": "high", "explanation": "Yes."}')):
        with pytest.raises(TeacherOutputError):
            parse(text)


JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=20),
                    lambda kids: st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=12), kids, max_size=4),
                    max_leaves=20)
KEYS = st.sampled_from(["requirements", "fit_level", "explanation", "requirement", "importance", "verdict",
                        "evidence", "high", "met"])
SHAPED = st.fixed_dictionaries({"requirements": st.lists(st.dictionaries(KEYS, JSON, max_size=5), max_size=3),
                                "fit_level": JSON, "explanation": JSON}, optional={"extra": JSON})


def _only_ours(fn, text):
    try:
        fn(text)
    except TeacherOutputError as e:
        assert "\n" not in str(e)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(st.text(max_size=300), JSON.map(json.dumps), SHAPED.map(json.dumps),
                 st.tuples(st.sampled_from([json.dumps(GOOD)]), st.integers(0, 400), st.text(max_size=3)).map(
                     lambda t: t[0][:t[1]] + t[2] + t[0][t[1] + 1:])))
def test_fuzz_raises_only_teacher_output_error(text):
    for fn in (parse_assessment, parse_extracted, parse_evaluated, parse_rating):
        _only_ours(fn, text)
        _only_ours(fn, f"```json\n{text}\n```")
