"""The simulated teacher over real HTTP on loopback: OpenAI-shaped answers, logprobs, faults, counts."""
import json
import math
import re
from collections import Counter

import httpx
import pytest

from lantern_jax.data import prompts
from lantern_jax.teacher.parse import parse_assessment
from lantern_jax.teacher.server import ServerConfig, main as server_main, serve_in_thread
from lantern_jax.teacher.simulated import BRIDGES, CLOSINGS, ExpertConfig, SimulatedExpert, profile_segments
from teacher_fixtures import expert_records, synth_pairs, write_pairs_file

PAIRS = synth_pairs(30)


@pytest.fixture(scope="module")
def server():
    with serve_in_thread(PAIRS, ServerConfig(seed=5, expert=ExpertConfig(seed=5))) as (url, sim):
        yield url, sim


def _post(url, body, **headers):
    return httpx.post(f"{url}/chat/completions", json=body, headers=headers, timeout=30)


def test_answers_like_openai_with_calibrated_fit_token(server):
    url, sim = server
    pair = PAIRS[4]
    body = {"model": "m", "messages": prompts.single_call_messages(pair), "logprobs": True, "top_logprobs": 20,
            "response_format": {"type": "json_schema", "json_schema": {"name": "a", "schema": {}}}}
    r = _post(url, body)
    assert r.status_code == 200 and int(r.headers["x-sim-request-count"]) >= 1
    data = r.json()
    assert data["object"] == "chat.completion" and data["id"].startswith("chatcmpl-")
    choice = data["choices"][0]
    text = choice["message"]["content"]
    assessment = parse_assessment(text)
    tokens = choice["logprobs"]["content"]
    assert "".join(t["token"] for t in tokens) == text
    assert data["usage"]["completion_tokens"] == len(tokens) and data["usage"]["prompt_tokens"] > 500
    assert all(len(t["top_logprobs"]) == 20 and t["logprob"] <= 0 for t in tokens)
    assert all(t["top_logprobs"][0]["token"] == t["token"] for t in tokens if t["token"] not in ("high", "medium", "low"))
    at = next(i for i, t in enumerate(tokens) if "".join(x["token"] for x in tokens[:i]).endswith('"fit_level": "'))
    fit_token = tokens[at]
    assert fit_token["token"] == assessment.fit_level
    probs = {a["token"]: math.exp(a["logprob"]) for a in fit_token["top_logprobs"]}
    expected = SimulatedExpert(PAIRS, ExpertConfig(seed=5)).fit_probs(pair)
    for level, p in expected.items():
        assert probs[level] == pytest.approx(p, rel=1e-3, abs=1e-9)


def test_counts_requests_per_pair(server):
    url, sim = server
    before = httpx.get(url.replace("/v1", "/sim/stats")).json()["by_pair"].get(PAIRS[7].pair_id, 0)
    for _ in range(2):
        assert _post(url, {"model": "m", "messages": prompts.single_call_messages(PAIRS[7])}).status_code == 200
    stats = httpx.get(url.replace("/v1", "/sim/stats")).json()
    assert stats["by_pair"][PAIRS[7].pair_id] == before + 2 and stats["requests"] >= 2


def test_recognises_full_compressed_and_chain_prompts(server):
    url, _ = server
    pair = PAIRS[9]
    for compress in (False, True):
        r = _post(url, {"model": "m", "messages": prompts.single_call_messages(pair, compress=compress)})
        assert parse_assessment(r.json()["choices"][0]["message"]["content"]).requirements
    extracted = json.loads(re.sub(r"^```json\n|\n```$", "", _post(url, {
        "model": "m", "messages": prompts.extract_messages(pair.job)}).json()["choices"][0]["message"]["content"]))
    want = [r["text"] for r in pair.job.truth["requirements"]]
    assert [r["requirement"] for r in extracted["requirements"]] == want
    text = _post(url, {"model": "m", "messages": prompts.evaluate_messages(pair, extracted["requirements"])}
                 ).json()["choices"][0]["message"]["content"]
    evaluated = json.loads(re.sub(r"^```json\n|\n```$", "", text))["requirements"]
    truth = pair.truth["verdicts"]
    assert [r["verdict"] for r in evaluated] == [truth[r["id"]] for r in pair.job.truth["requirements"]]


def test_streams_server_sent_events_to_the_official_client(server):
    import openai
    url, _ = server
    client = openai.OpenAI(base_url=url, api_key="unused", max_retries=0)
    messages = prompts.single_call_messages(PAIRS[5])
    whole = client.chat.completions.create(model="m", messages=messages, logprobs=True, top_logprobs=3)
    chunks = list(client.chat.completions.create(model="m", messages=messages, logprobs=True, top_logprobs=3,
                                                 stream=True, stream_options={"include_usage": True}))
    assert {c.object for c in chunks} == {"chat.completion.chunk"} and chunks[0].choices[0].delta.role == "assistant"
    tokens = [c for c in chunks if c.choices and c.choices[0].logprobs and c.choices[0].logprobs.content]
    assert len(tokens) == whole.usage.completion_tokens  # one chunk per token
    assert "".join(c.choices[0].delta.content for c in tokens) == whole.choices[0].message.content
    assert [c.choices[0].logprobs.content[0].token for c in tokens] == [e.token for e in whole.choices[0].logprobs.content]
    assert all(len(c.choices[0].logprobs.content[0].top_logprobs) == 3 for c in tokens)
    assert chunks[-2].choices[0].finish_reason == "stop" and chunks[-1].usage.total_tokens == whole.usage.total_tokens
    words = list(client.chat.completions.create(model="m", messages=messages, stream=True))  # no logprobs: words
    assert 1 < len(words) < len(tokens)
    assert "".join(c.choices[0].delta.content or "" for c in words) == whole.choices[0].message.content
    with pytest.raises(openai.BadRequestError, match="field 'n'"):
        client.chat.completions.create(model="m", messages=messages, n=2)


def test_unknown_prompts_and_bad_bodies_are_400(server):
    url, _ = server
    r = _post(url, {"model": "m", "messages": [{"role": "user", "content": "Rate me please."}]})
    assert r.status_code == 400 and "matches no loaded pair" in r.json()["error"]["message"]
    assert httpx.post(f"{url}/chat/completions", content=b"{", timeout=10).status_code == 400
    r = httpx.post(f"{url}/chat/completions", content=b'{"messages": [{"role": "user", "content": "hi \\ud800"}]}',
                   timeout=10)
    assert r.status_code == 400 and r.json()["error"]["message"] == (
        "field 'messages[0].content' is not valid Unicode (lone surrogate U+D800 at character 3)")


def test_structured_output_can_be_unsupported_and_keys_required():
    with serve_in_thread(PAIRS[:2], ServerConfig(structured_output=False, api_key="k1")) as (url, _):
        body = {"model": "m", "messages": prompts.single_call_messages(PAIRS[0]),
                "response_format": {"type": "json_schema", "json_schema": {"name": "a", "schema": {}}}}
        assert _post(url, body).status_code == 401
        r = _post(url, body, authorization="Bearer k1")
        assert r.status_code == 400 and "response_format" in r.json()["error"]["message"]
        del body["response_format"]
        assert _post(url, body, authorization="Bearer k1").status_code == 200


def test_faults_are_injected_deterministically_by_seed():
    rates = {"429": 0.15, "500": 0.15, "malformed_body": 0.15, "drop": 0.1}
    outcomes = []
    for _ in range(2):
        with serve_in_thread(PAIRS[:12], ServerConfig(seed=11, fault_rates=rates, retry_after_s=0.25)) as (url, _):
            seen = []
            for pair in PAIRS[:12]:
                for _attempt in range(2):
                    try:
                        r = _post(url, {"model": "m", "messages": prompts.single_call_messages(pair)})
                    except httpx.HTTPError as e:
                        seen.append(type(e).__name__)
                        continue
                    if r.status_code == 429:
                        assert float(r.headers["retry-after"]) == 0.25 and r.headers["retry-after-ms"] == "250"
                    try:
                        r.json()
                        seen.append(r.status_code)
                    except ValueError:
                        seen.append("malformed")
            outcomes.append(seen)
    assert outcomes[0] == outcomes[1]
    kinds = Counter(outcomes[0])
    assert kinds[200] and kinds[429] and kinds[500] and kinds["malformed"] and kinds["RemoteProtocolError"]


def test_explanations_are_varied_grounded_and_calibrated():
    pairs = synth_pairs(600)
    records, _ = expert_records(pairs)
    explanations = [r["assessment"]["explanation"] for r in records]
    assert len(set(explanations)) == len(explanations)
    assert len({b for e in explanations for b in BRIDGES if b in e}) == len(BRIDGES)
    assert len({c for e in explanations for cs in CLOSINGS.values() for c in cs if c in e}) >= 5
    quoted = 0
    for pair, record in zip(pairs[:100], records[:100]):
        segments = " | ".join(profile_segments(pair))
        for r in record["assessment"]["requirements"]:
            for q in re.findall(r'"([^"]+)"', r["evidence"]):
                assert q in segments
                quoted += 1
    assert quoted > 100
    # calibration: among pairs given probability p for their argmax level, a share ~p is right
    expert = SimulatedExpert(pairs)
    bins = {}
    for pair in pairs:
        probs = expert.fit_probs(pair)
        top = max(probs, key=probs.get)
        b = bins.setdefault(min(int(probs[top] * 5), 4), [0, 0.0, 0])
        b[0] += 1
        b[1] += probs[top]
        b[2] += top == pair.truth["fit_level"]
    ece = sum(abs(conf - right) for n, conf, right in bins.values()) / len(pairs)
    assert ece < 0.06


def test_cli_reports_bad_input_in_one_line(tmp_path, capsys):
    bad = tmp_path / "pairs.jsonl"
    bad.write_text("not json\n")
    good = write_pairs_file(tmp_path / "good.jsonl", PAIRS[:2])
    for args in (["--pairs", str(bad)], ["--pairs", good, "--faults", "429=0.1,teapot=0.2"],
                 ["--pairs", good, "--errors", "typos=0.5"]):
        assert server_main([*args, "--port", "0"]) == 2
        lines = capsys.readouterr().err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error:")
