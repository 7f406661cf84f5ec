"""Schema-guided decoding: the skeleton is the training serialisation, every output parses, field
caps hold, and the model's own preferences decide the enums and the free text."""
import json

import pytest
from flax import nnx

import train_fixtures
from lantern_jax import guided
from lantern_jax.data import pointers, synth
from lantern_jax.data.schema import Assessment, Requirement
from lantern_jax.data.tokenizer import train_tokenizer
from lantern_jax.generate import SamplingConfig, generate
from lantern_jax.models.decoder import DecoderConfig, DecoderLM
from lantern_jax.teacher.parse import TeacherOutputError, parse_assessment


CAPS = guided.FieldCaps(requirement=6, evidence=5, explanation=9)


@pytest.fixture(scope="module")
def setup():
    pairs = synth.generate_pairs(6, seed=3)
    texts = [json.dumps(pointers.inhouse_messages(p)) for p in pairs]
    texts += [train_fixtures.truth_assessment(p) for p in pairs]
    tok = train_tokenizer(texts, vocab_size=1024)
    ids = [tok(json.dumps(pointers.inhouse_messages(p)), add_special_tokens=False)["input_ids"][:200] for p in pairs]
    cfg = DecoderConfig(vocab_size=len(tok), hidden_size=64, num_layers=1, num_heads=4, num_kv_heads=2,
                        intermediate_size=96, max_position_embeddings=1024)
    return tok, ids, cfg


def test_skeleton_is_the_training_serialisation():
    a = Assessment((Requirement("SQL (3+ years)", "required", "met", "Lists SQL at Acme."),
                    Requirement("Spanish", "preferred", "not_met", "No languages listed.")),
                   "medium", "You are a medium fit: SQL is met.")
    sk = guided.skeleton()
    items = [sk.open if i == 0 else sk.next_item for i in range(len(a.requirements))]
    text = "".join(f"{head}{r.requirement}{sk.before_importance}{r.importance}{sk.before_verdict}{r.verdict}"
                   f"{sk.before_evidence}{r.evidence}" for head, r in zip(items, a.requirements))
    text += f"{sk.close_items}{a.fit_level}{sk.before_explanation}{a.explanation}{sk.close}"
    assert text == json.dumps(a.to_dict(), ensure_ascii=False)


def test_random_decoder_output_always_parses(setup):
    tok, ids, cfg = setup
    model = DecoderLM(cfg, rngs=nnx.Rngs(0))
    texts = guided.guided_assessments(model, tok, ids[:3], max_new_tokens=160, caps=CAPS)
    assert len(texts) == 3
    for text in texts:
        assert len(parse_assessment(text, check_opening_sentence=False).requirements) >= 1
    # unguided, the same model writes no Assessment at all
    raw = generate(model, tok, [tok.decode(ids[0])], SamplingConfig(max_new_tokens=160))[0].text
    with pytest.raises(TeacherOutputError):
        parse_assessment(raw, check_opening_sentence=False)


def test_the_models_preferences_pick_the_enums_and_write_the_text(setup):
    """A decoder that always wants token X (then end of text): every enum where X can start an
    option takes that option, and every free-text field is exactly X."""
    tok, ids, cfg = setup
    vocab = guided.Vocabulary(tok, cfg.vocab_size)
    x = vocab.encode('not_met' + guided.skeleton().before_evidence)[0]
    assert vocab.safe[x] and all(vocab.encode(v + guided.skeleton().before_evidence)[0] != x
                                 for v in ("met", "partially_met", "unknown"))
    model = train_fixtures.answering_decoder(cfg, x, tok.eos_token_id)
    word = tok.decode([x])
    for text in guided.guided_assessments(model, tok, ids[:2], max_new_tokens=160, caps=CAPS):
        a = parse_assessment(text, check_opening_sentence=False)
        assert {r.verdict for r in a.requirements} == {"not_met"}
        assert {r.requirement for r in a.requirements} | {r.evidence for r in a.requirements} == {word}
        assert a.explanation == word


def test_a_model_that_never_stops_fills_each_field_to_its_cap(setup):
    tok, ids, cfg = setup
    vocab = guided.Vocabulary(tok, cfg.vocab_size)
    x = next(i for i in range(len(tok)) if vocab.safe[i] and len(tok.decode([i]).strip()) > 2)
    model = train_fixtures.answering_decoder(cfg, x, x)  # X, then X again, forever
    caps = CAPS
    a = parse_assessment(guided.guided_assessments(model, tok, ids[:1], max_new_tokens=160, caps=caps)[0],
                         check_opening_sentence=False)
    field = lambda n: tok.decode([x] * n, clean_up_tokenization_spaces=False).strip()  # noqa: E731
    assert {r.requirement for r in a.requirements} == {field(caps.requirement)}
    assert {r.evidence for r in a.requirements} == {field(caps.evidence)}
    assert a.explanation == field(caps.explanation)


def test_a_budget_that_cannot_hold_one_requirement_is_refused(setup):
    tok, ids, cfg = setup
    with pytest.raises(ValueError, match="max_new_tokens=40 can't hold one requirement"):
        guided.guided_assessments(DecoderLM(cfg, rngs=nnx.Rngs(0)), tok, ids[:1], max_new_tokens=40, caps=CAPS)
