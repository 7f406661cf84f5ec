"""The in-house models' pointer form on generated pairs and the simulated teacher's Assessments:
targets cite the tagged view and `expand` gives the Assessment back; every tag is one token."""
import json

import pytest

from lantern_jax.data import pointers, synth
from lantern_jax.data.tokenizer import train_tokenizer
from lantern_jax.teacher.parse import parse_assessment
from lantern_jax.teacher.simulated import ExpertConfig, SimulatedExpert


@pytest.fixture(scope="module")
def labelled():
    pairs = synth.generate_pairs(60, seed=3)
    expert = SimulatedExpert(pairs, ExpertConfig(error_rates={}))
    return [(p, parse_assessment(expert.answer(p).text).to_dict()) for p in pairs]


def test_requirements_count_down_and_each_block_ends_with_its_tag(labelled):
    for pair, _ in labelled[:10]:
        table = pointers.blocks(pair)
        assert [n for n, *_ in table] == list(range(len(table), 0, -1))
        lines = pointers.render(pair).splitlines()
        assert lines[-1] == "[R1]" and sum(line.startswith("- ") for line in lines) == len(table)


def test_targets_cite_the_prompt_and_expand_back_to_the_assessment(labelled):
    cited = total = 0
    for pair, assessment in labelled:
        target = json.dumps(pointers.encode(assessment, pair))
        prompt = pointers.inhouse_messages(pair)[0]["content"]
        tags = [t for t in pointers.TOKENS if t in target]
        assert all(t in prompt for t in tags)  # only tags the prompt has
        cited += sum(r["requirement"].startswith("[R") for r in json.loads(target)["requirements"])
        total += len(assessment["requirements"])
        back = parse_assessment(pointers.expand(target, pair)).to_dict()
        # quotes are matched case-insensitively and come back as the profile writes them
        assert json.dumps(back).lower() == json.dumps(assessment).lower()
    assert cited == total  # the teacher's requirements are the compressed posting's


def test_a_tag_the_prompt_lacks_stays_as_written(labelled):
    pair, _ = labelled[0]
    n = len(pointers.blocks(pair))
    text = f'{{"requirement": "[R{n + 1}]", "evidence": "[R1.{pointers.MAX_EVIDENCE}] [R1]"}}'
    out = pointers.expand(text, pair)
    assert f"[R{n + 1}]" in out and "[R1]" not in out
    assert (f"[R1.{pointers.MAX_EVIDENCE}]" in out) == (len(pointers.blocks(pair)[-1][3]) < pointers.MAX_EVIDENCE)


def test_every_tag_is_one_token_of_the_domain_tokenizer(labelled):
    texts = [pointers.inhouse_messages(p)[0]["content"] for p, _ in labelled]
    tok = train_tokenizer(texts, vocab_size=512, extra_tokens=pointers.TOKENS)
    for tag in ("[R1]", "[R12]", "[R3.2]"):
        ids = tok(f"x {tag}y", add_special_tokens=False)["input_ids"]
        assert tok.convert_tokens_to_ids(tag) in ids
    prompt = texts[0]
    assert tok.decode(tok(prompt, add_special_tokens=False)["input_ids"]) == prompt
