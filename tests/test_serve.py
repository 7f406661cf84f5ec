"""Serving against real uvicorn servers on loopback: /v1/fit, /v1/explain, /v1/chat/completions
(through the teacher client and label.py), validation and limits, metrics, micro-batching.

Models are tiny `save_hf` exports loaded through the server's own loading path. The explainer
that must produce a parseable Assessment is a real decoder with hand-set weights: attention and
MLP outputs are zero, so each position's logits depend on its own token only; every ordinary
token predicts one added token whose text is a whole Assessment, which predicts end-of-turn.
A second server holds a random decoder of the same shape (garbage output, shared compiled programs).
"""
from __future__ import annotations

import asyncio
import dataclasses
import json
import threading
import time

import httpx
import pytest
from flax import nnx

import train_fixtures
from lantern_jax.data import pointers, prompts, synth, views
from lantern_jax.data.schema import ASSESSMENT_JSON_SCHEMA
from lantern_jax.data.tokenizer import train_tokenizer
from lantern_jax.models import hf
from lantern_jax.models.decoder import DecoderConfig, DecoderLM
from lantern_jax.models.encoder import Classifier, ClassifierConfig, EncoderConfig
from lantern_jax.serve.__main__ import main as serve_main
from lantern_jax.serve.app import create_app
from lantern_jax.serve.batcher import MicroBatcher
from lantern_jax.serve.config import ServeConfig
from lantern_jax.serve.runner import serve_in_thread
from lantern_jax.serve.schemas import PairIn
from lantern_jax.serve.service import Service, load_service
from lantern_jax.data.token_bytes import token_bytes_table
from lantern_jax.teacher.client import ApiTeacher
from lantern_jax.teacher.config import TeacherConfig
from lantern_jax.teacher.label import label_pairs, read_records

MODEL = "lantern-test-explainer"
ANSWER = json.dumps({
    "requirements": [{"requirement": "Python", "importance": "required", "verdict": "met",
                      "evidence": "Python is listed among the member's skills."}],
    "fit_level": "medium",
    "explanation": "You are a medium fit for this job. Let me show the reasons: Python is met."})
CONFIG = ServeConfig(max_batch=4, max_gen_batch=2, max_wait_ms=20, max_body_bytes=128 << 10, timeout_s=60,
                     max_pairs=8, classifier_max_length=128, max_new_tokens=24, prompt_buckets=(2048,),
                     model_name=MODEL)


@pytest.fixture(scope="module")
def pairs():
    return synth.generate_pairs(8, seed=11)


@pytest.fixture(scope="module")
def exports(tmp_path_factory, pairs):
    root = tmp_path_factory.mktemp("serve")
    texts = ([json.dumps(prompts.single_call_messages(p)) for p in pairs]
             + [json.dumps(pointers.inhouse_messages(p)) for p in pairs] + [ANSWER])
    tok = train_tokenizer(texts, vocab_size=2048)
    tok.add_tokens([ANSWER])  # an ordinary (non-special) token: decoded into the text like any other
    answer_id, end_id = tok.convert_tokens_to_ids(ANSWER), tok.eos_token_id
    dec = DecoderConfig(vocab_size=len(tok), hidden_size=64, num_layers=1, num_heads=4, num_kv_heads=2,
                        intermediate_size=96, max_position_embeddings=4096)
    hf.save_hf(train_fixtures.answering_decoder(dec, answer_id, end_id), root / "answering", tokenizer=tok)
    hf.save_hf(DecoderLM(dec, rngs=nnx.Rngs(1)), root / "random", tokenizer=tok)
    enc = EncoderConfig(vocab_size=len(tok), hidden_size=32, num_layers=1, num_heads=2, intermediate_size=64)
    hf.save_hf(Classifier(ClassifierConfig(enc), rngs=nnx.Rngs(2)), root / "classifier", tokenizer=tok)
    return root, tok


@pytest.fixture(scope="module")
def server(exports):
    """Classifier + the answering explainer."""
    root, _ = exports
    service = load_service(CONFIG, classifier=root / "classifier", explainer=root / "answering")
    with serve_in_thread(create_app(service)) as url:
        yield url, service


@pytest.fixture(scope="module")
def garbage_server(exports, server):
    """Explainer only, random weights (same shapes: its warm-up reuses the compiled programs)."""
    root, _ = exports
    service = load_service(CONFIG, explainer=root / "random")
    with serve_in_thread(create_app(service)) as url:
        yield url, service


def post(url, path, body, **kw):
    return httpx.post(url + path, json=body, timeout=60, **kw)


# ----------------------------------------------------------------------------- no server

def test_pair_model_accepts_every_d_base_record(pairs):
    for p in pairs:
        assert PairIn.model_validate(p.to_dict()).to_pair().to_dict() == p.to_dict()


def test_token_bytes_join_to_the_text(exports):
    _, tok = exports
    table = token_bytes_table(tok, len(tok))
    for text in ("café – naïve 中文 ✓", ANSWER, "<|im_end|> plain\n\ttabs"):
        ids = tok(text, add_special_tokens=False)["input_ids"]
        assert b"".join(table[i] for i in ids) == text.encode("utf-8")


def test_micro_batcher_groups_concurrent_items_and_skips_cancelled():
    sizes = []

    def process(items):
        sizes.append(len(items))
        time.sleep(0.05)
        return [x * 2 for x in items]

    async def scenario():
        batcher = MicroBatcher("double", process, max_batch=4, max_wait_s=0.02)
        batcher.start()
        try:
            doomed = asyncio.ensure_future(batcher.submit(-1))
            await asyncio.sleep(0)
            doomed.cancel()  # cancelled before its batch formed: never reaches the model
            results = await asyncio.gather(*(batcher.submit(i) for i in range(10)))
            many = await batcher.submit_many([1, 2, 3])
        finally:
            await batcher.stop()
        return results, many

    results, many = asyncio.run(scenario())
    assert results == [2 * i for i in range(10)] and many == [2, 4, 6]
    assert sum(sizes) == 13 and max(sizes) == 4 and len(sizes) <= 5, sizes


# ----------------------------------------------------------------------------- endpoints

def test_fit_scores_pairs_and_batches_concurrent_requests(server, pairs):
    url, service = server
    records = [p.to_dict() for p in pairs]
    r = post(url, "/v1/fit", {"pairs": records[:3]})
    assert r.status_code == 200, r.text
    body = r.json()
    assert [x["pair_id"] for x in body["results"]] == [p.pair_id for p in pairs[:3]]
    for x in body["results"]:
        probs = x["probabilities"]
        assert set(probs) == {"low", "medium", "high"} and abs(sum(probs.values()) - 1) < 1e-5
        assert x["fit_level"] == max(probs, key=probs.get)

    def fit_one(record, out, i):
        out[i] = post(url, "/v1/fit", {"pairs": [record]})

    before = service.metrics.sample("lantern_batch_size_count", model="classifier")
    out = [None] * 8
    threads = [threading.Thread(target=fit_one, args=(records[i], out, i)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(r.status_code == 200 for r in out)
    assert service.metrics.sample("lantern_batch_size_count", model="classifier") - before < 8  # some held several
    # a pair's scores don't depend on the batch (or padding) it was scored in
    for i in range(3):
        alone = out[i].json()["results"][0]["probabilities"]
        batched = body["results"][i]["probabilities"]
        assert all(abs(alone[k] - batched[k]) < 1e-5 for k in alone)
    # tokenizing a prefix of each pair text gives exactly the truncated full-text tokens
    texts = [views.classifier_text(p) for p in pairs]
    assert service.scorer.encode(texts) == service.scorer._tokenize(texts)


def test_explain_returns_the_parsed_assessment(server, pairs):
    url, _ = server
    r = post(url, "/v1/explain", {"pair": pairs[0].to_dict()})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["error"] is None and body["raw_text"] == ANSWER
    assert body["assessment"] == json.loads(ANSWER) and body["fit_level"] == "medium"
    assert body["pair_id"] == pairs[0].pair_id and body["finish_reason"] == "stop"
    assert body["usage"]["completion_tokens"] == 2 and body["usage"]["prompt_tokens"] > 100
    assert body["latency_ms"] > 0


def test_explain_reports_unparseable_model_output(garbage_server, pairs):
    url, _ = garbage_server
    r = post(url, "/v1/explain", {"pair": pairs[1].to_dict()})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["assessment"] is None and body["fit_level"] is None
    assert body["error"]["type"] == "model_output_unparsed"
    assert body["error"]["message"].startswith("model output did not parse")
    assert isinstance(body["raw_text"], str)
    r = post(url, "/v1/fit", {"pairs": [pairs[0].to_dict()]})
    assert r.status_code == 503 and "no classifier" in r.json()["error"]["message"]
    r = post(url, "/v1/explain", {"pair": pairs[1].to_dict(), "guided": True})  # 24 new tokens: too few
    assert r.status_code == 400 and r.json()["error"]["param"] == "guided"
    assert r.json()["error"]["message"].startswith(
        "guided decoding is not available on this server: guided: max_new_tokens=24 can't hold one requirement")


def test_guided_explain_always_parses_beside_unguided_requests(exports, pairs):
    """`"guided": true` on the random-weight explainer: an Assessment every time, batched with an
    unguided request whose raw output still comes back unparsed; a budget too small is a 400."""
    from concurrent.futures import ThreadPoolExecutor
    from lantern_jax.teacher.parse import parse_assessment
    root, _ = exports
    config = dataclasses.replace(CONFIG, max_new_tokens=256)
    with serve_in_thread(create_app(load_service(config, explainer=root / "random", warmup=False))) as url:
        bodies = [{"pair": pairs[2].to_dict(), "guided": True}, {"pair": pairs[3].to_dict()},
                  {"pair": pairs[4].to_dict(), "guided": True}]
        with ThreadPoolExecutor(3) as pool:
            guided_a, raw, guided_b = pool.map(lambda b: post(url, "/v1/explain", b), bodies)
        for r in (guided_a, guided_b):
            assert r.status_code == 200, r.text
            body = r.json()
            assert body["error"] is None and body["fit_level"] in ("low", "medium", "high")
            assert body["assessment"] == parse_assessment(body["raw_text"], check_opening_sentence=False).to_dict()
            assert 0 < body["usage"]["completion_tokens"] <= 256 and body["finish_reason"] == "stop"
        assert raw.status_code == 200 and raw.json()["error"]["type"] == "model_output_unparsed"

        # the OpenAI way to ask for it: response_format json_schema with the Assessment schema
        import openai
        client = openai.OpenAI(base_url=url + "/v1", api_key="unused", max_retries=0)
        schema = {"type": "json_schema", "json_schema": {"name": "assessment", "strict": True,
                                                         "schema": ASSESSMENT_JSON_SCHEMA}}
        chat = client.chat.completions.create(model=MODEL, messages=pointers.inhouse_messages(pairs[2]),
                                              response_format=schema)
        assert chat.choices[0].message.content == guided_a.json()["raw_text"]  # same prompt, same greedy path
        with pytest.raises(openai.BadRequestError, match="logprobs"):
            client.chat.completions.create(model=MODEL, messages=pointers.inhouse_messages(pairs[2]),
                                           response_format=schema, logprobs=True)


def test_teacher_client_labels_pairs_through_chat_completions(server, pairs, tmp_path):
    url, _ = server
    config = TeacherConfig(base_url=url + "/v1", model=MODEL, api_key_env=None, concurrency=4, max_retries=2,
                           backoff_base_s=0.01, timeout_s=60, progress=False, top_logprobs=20,
                           record_top_logprobs=5)
    out = str(tmp_path / "records.jsonl")
    summary = label_pairs(pairs[:3], ApiTeacher(config), out, progress=False)
    assert summary.failed == 0, summary
    records = read_records(out)
    assert sorted(r["pair_id"] for r in records) == sorted(p.pair_id for p in pairs[:3])
    for r in records:
        assert r["parse_error"] is None and r["assessment"] == json.loads(ANSWER)
        assert r["raw_text"] == ANSWER and r["finish_reason"] == "stop"
        assert r["logprobs"] and len(r["logprobs"][0]["top_logprobs"]) == 5
        assert r["logprobs"][0]["token"] == ANSWER and r["logprobs"][0]["logprob"] > -1e-3
        assert r["usage"]["prompt_tokens"] > 500 and r["usage"]["completion_tokens"] == 2


def test_chat_completions_openai_shape_seeds_and_stops(server, garbage_server):
    url, _ = garbage_server
    request = {"model": MODEL, "messages": [{"role": "system", "content": "Be brief."},
                                            {"role": "user", "content": [{"type": "text", "text": "Hello"}]}],
               "max_tokens": 6, "temperature": 0.8, "top_p": 0.9, "seed": 5, "logprobs": True, "top_logprobs": 3}
    r = post(url, "/v1/chat/completions", request)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["object"] == "chat.completion" and body["model"] == MODEL
    choice = body["choices"][0]
    assert choice["message"]["role"] == "assistant" and choice["finish_reason"] in ("stop", "length")
    content = choice["logprobs"]["content"]
    assert len(content) <= 6 and all(len(e["top_logprobs"]) == 3 and e["logprob"] <= 0 for e in content)
    assert all(e["top_logprobs"][0]["logprob"] >= e["top_logprobs"][-1]["logprob"] for e in content)
    text = b"".join(bytes(e["bytes"]) for e in content).decode("utf-8", errors="replace")
    assert text == choice["message"]["content"]
    usage = body["usage"]
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]

    # the same seed gives the same text, also when batched beside other requests
    def again(out, i, seed):
        out[i] = post(url, "/v1/chat/completions", {**request, "seed": seed}).json()
    out = [None] * 3
    threads = [threading.Thread(target=again, args=(out, i, s)) for i, s in enumerate((5, 6, 5))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    texts = [o["choices"][0]["message"]["content"] for o in out]
    assert texts[0] == texts[2] == choice["message"]["content"]

    answering, _ = server
    r = post(answering, "/v1/chat/completions", {"messages": [{"role": "user", "content": "Hi"}],
                                                 "temperature": 0, "stop": ['"fit_level"']})
    choice = r.json()["choices"][0]
    assert choice["finish_reason"] == "stop" and choice["logprobs"] is None
    assert choice["message"]["content"] == ANSWER[:ANSWER.index('"fit_level"')]


def test_chat_streams_server_sent_events_and_n_choices_to_the_official_client(garbage_server):
    import openai
    url, _ = garbage_server
    client = openai.OpenAI(base_url=url + "/v1", api_key="unused", max_retries=0)
    kw = dict(model=MODEL, messages=[{"role": "user", "content": "Hello"}], max_tokens=6, seed=7, temperature=0.9,
              logprobs=True, top_logprobs=2)
    whole = client.chat.completions.create(**kw)
    chunks = list(client.chat.completions.create(**kw, stream=True, stream_options={"include_usage": True}))
    assert {c.object for c in chunks} == {"chat.completion.chunk"} and len({c.id for c in chunks}) == 1
    assert chunks[0].choices[0].delta.role == "assistant"
    tokens = [c for c in chunks[1:] if c.choices and c.choices[0].logprobs and c.choices[0].logprobs.content]
    assert len(tokens) == whole.usage.completion_tokens  # one chunk per generated token
    assert "".join(c.choices[0].delta.content for c in tokens) == whole.choices[0].message.content
    assert [c.choices[0].logprobs.content[0].token for c in tokens] == [
        e.token for e in whole.choices[0].logprobs.content]
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == [
        whole.choices[0].finish_reason]
    assert chunks[-1].choices == [] and chunks[-1].usage.total_tokens == whole.usage.total_tokens

    many = client.chat.completions.create(**kw, n=3)
    assert [c.index for c in many.choices] == [0, 1, 2]
    assert many.choices[0].message.content == whole.choices[0].message.content  # choice i is seeded seed + i
    assert many.usage.prompt_tokens == whole.usage.prompt_tokens
    assert many.usage.completion_tokens == sum(len(c.logprobs.content) for c in many.choices)


def test_bad_requests_get_clear_4xx_and_the_server_keeps_serving(server, pairs):
    url, service = server
    good = pairs[2].to_dict()

    def raw(path, content, **kw):
        return httpx.post(url + path, content=content, headers={"content-type": "application/json"}, timeout=30, **kw)

    r = raw("/v1/fit", b'{"pairs": [ {"pair_id": ')
    assert r.status_code == 400 and "not valid JSON" in r.json()["error"]["message"]

    no_title = json.loads(json.dumps(good))
    del no_title["job"]["title"]
    r = post(url, "/v1/fit", {"pairs": [good, no_title]})
    assert r.status_code == 422
    assert "missing field 'pairs[1].job.title'" in r.json()["error"]["message"]
    assert r.json()["error"]["param"] == "pairs[1].job.title"

    bad_year = json.loads(json.dumps(good))
    bad_year["member"]["education"] = [{"degree": "BSc", "field": "CS", "school": "X", "year": "2019"}]
    r = post(url, "/v1/fit", {"pairs": [bad_year]})
    assert r.status_code == 422
    message = r.json()["error"]["message"]
    assert "pairs[0].member.education[0].year" in message and "got string" in message

    cases = [
        ("/v1/fit", {"pairs": []}, 422, "at least 1"),
        ("/v1/fit", {"pairs": [good] * 9}, 422, "at most 8"),
        ("/v1/fit", [good], 422, "valid dictionary"),
        ("/v1/explain", {"pairs": [good]}, 422, "missing field 'pair'"),
        ("/v1/chat/completions", {"model": MODEL, "messages": []}, 400, "messages"),
        ("/v1/chat/completions", {"messages": [{"role": "user", "content": "x"}], "logprobs": True,
                                  "top_logprobs": 21}, 400, "top_logprobs"),
        ("/v1/chat/completions", {"messages": [{"role": "user", "content": "x"}], "top_logprobs": 2},
         400, "requires logprobs"),
        ("/v1/chat/completions", {"messages": [{"role": "user", "content": "x"}], "response_format": {
            "type": "json_schema", "json_schema": {"name": "a", "schema": {}}}}, 400, "response_format"),
        ("/v1/chat/completions", {"messages": [{"role": "robot", "content": "x"}]}, 400, "messages[0].role"),
        ("/v1/chat/completions", {"messages": [{"role": "user", "content": "x"}], "n": 9}, 400, "field 'n'"),
        ("/v1/chat/completions", {"messages": [{"role": "user", "content": "x"}], "temperature": "0.5"}, 400,
         "field 'temperature': Input should be a valid number (got string)"),
        ("/v1/chat/completions", {"messages": [{"role": "user", "content": "x"}],
                                  "stream_options": {"include_usage": True}}, 400, "requires stream=true"),
        ("/v1/chat/completions", {"messages": [{"role": "user", "content": "x"}],
                                  "response_format": {"type": "json_object"}}, 400, "'json_object' is not supported"),
        ("/v1/chat/completions", {"model": "gpt-9", "messages": [{"role": "user", "content": "x"}]},
         404, "not served here"),
        ("/v1/chat/completions", {"messages": [{"role": "user", "content": "word " * 3000}]}, 400,
         "at most 2048 tokens"),
        ("/v1/nowhere", {}, 404, "no route"),
    ]
    for path, body, status, fragment in cases:
        r = post(url, path, body)
        assert r.status_code == status, (path, body, r.text)
        error = r.json()["error"]
        assert fragment in error["message"], (fragment, error)
        assert set(error) == {"message", "type", "param", "code"}

    huge = json.dumps({"pairs": [good] * 40}).encode()
    assert len(huge) > CONFIG.max_body_bytes
    r = raw("/v1/fit", huge)
    assert r.status_code == 413 and "too large" in r.json()["error"]["message"]
    r = raw("/v1/fit", iter([huge[i:i + 8192] for i in range(0, len(huge), 8192)]))  # chunked, no length
    assert r.status_code == 413

    r = post(url, "/v1/fit", {"pairs": [good]})
    assert r.status_code == 200 and r.json()["results"][0]["pair_id"] == good["pair_id"]
    assert post(url, "/v1/explain", {"pair": good}).json()["assessment"] is not None
    m = service.metrics
    assert m.sample("lantern_http_requests_total", endpoint="/v1/fit", status="413") == 2
    assert m.sample("lantern_http_requests_total", endpoint="/v1/fit", status="422") >= 5
    assert m.sample("lantern_http_requests_total", endpoint="other", status="404") == 1


def test_timeout_answers_504_and_frees_the_queue(garbage_server, pairs):
    _, slow = garbage_server
    service = Service(dataclasses.replace(CONFIG, timeout_s=0.001), None, slow.generator)
    with serve_in_thread(create_app(service)) as url:
        r = post(url, "/v1/explain", {"pair": pairs[0].to_dict()})
        assert r.status_code == 504 and r.json()["error"]["type"] == "timeout"
        assert httpx.get(url + "/healthz").json()["status"] == "ok"


def test_health_models_and_prometheus_metrics(server, pairs):
    from prometheus_client.parser import text_string_to_metric_families  # test-only reader

    url, _ = server
    post(url, "/v1/fit", {"pairs": []})  # 422; and one that succeeds, whatever ran before on this worker
    assert post(url, "/v1/fit", {"pairs": [pairs[0].to_dict()]}).status_code == 200
    health = httpx.get(url + "/healthz").json()
    assert health["status"] == "ok" and health["classifier"] and health["explainer"]
    assert httpx.get(url + "/v1/models").json()["data"][0]["id"] == MODEL
    r = httpx.get(url + "/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    families = {f.name: f for f in text_string_to_metric_families(r.text)}
    assert {"lantern_http_requests", "lantern_http_request_duration_seconds", "lantern_batch_size",
            "lantern_queue_depth"} <= set(families)
    statuses = {(s.labels["endpoint"], s.labels["status"]) for s in families["lantern_http_requests"].samples}
    assert ("/v1/fit", "200") in statuses and ("/v1/fit", "422") in statuses
    sizes = [s for s in families["lantern_batch_size"].samples
             if s.name == "lantern_batch_size_count" and s.labels["model"] == "classifier"]
    assert sizes and sizes[0].value >= 1


def test_cli_fails_in_one_line_on_bad_arguments(exports, capsys):
    root, _ = exports
    assert serve_main(["--explainer", str(root / "classifier"), "--port", "0"]) == 2
    assert capsys.readouterr().err.strip() == (f"error: --explainer {root / 'classifier'}: holds a Classifier, "
                                               "not a causal LM export")
    assert serve_main(["--classifier", str(root / "nowhere"), "--port", "0"]) == 2
    assert "nowhere: not a directory" in capsys.readouterr().err
    assert serve_main(["--classifier", str(root / "classifier"), "--max-batch", "0"]) == 2
    assert "max_batch must be > 0" in capsys.readouterr().err
