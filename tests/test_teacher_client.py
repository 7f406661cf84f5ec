"""The API teacher through the official openai client against the real loopback server."""
import asyncio
import gzip
import json
import logging
import math
import os
import socket
import subprocess
import sys
import time

import pytest

from lantern_jax.teacher.client import ApiTeacher, TeacherError, TeacherUnreachableError
from lantern_jax.teacher.config import TeacherConfig, TeacherConfigError
from lantern_jax.teacher.label import label_pairs, main as label_main
from lantern_jax.teacher.logprobs import fit_level_probs
from lantern_jax.teacher.server import ServerConfig, serve_in_process, serve_in_thread
from lantern_jax.teacher.simulated import ExpertConfig, SimulatedExpert
from teacher_fixtures import synth_pairs, write_pairs_file

PAIRS = synth_pairs(24)


def _config(url, **kw):
    base = dict(base_url=url, api_key_env=None, progress=False, backoff_base_s=0.01, top_logprobs=5,
                record_top_logprobs=5, concurrency=8)
    return TeacherConfig(**{**base, **kw})


def _assess(teacher, pair):
    async def once():
        try:
            return await teacher.assess(pair)
        finally:
            await teacher.aclose()
    return asyncio.run(once())


def _records(path):
    with open(path) as f:
        return [json.loads(line) for line in f]


def test_soft_labels_usage_cost_and_cache(tmp_path):
    with serve_in_thread(PAIRS, ServerConfig(seed=2, expert=ExpertConfig(seed=2))) as (url, sim):
        cfg = _config(url, cache_dir=str(tmp_path / "cache"), price_input_per_mtok=2.5, price_output_per_mtok=10)
        first = label_pairs(PAIRS[:12], ApiTeacher(cfg), str(tmp_path / "a.jsonl"), progress=False)
        assert (first.done, first.cached, first.failed) == (12, 0, 0)
        records = _records(tmp_path / "a.jsonl")
        expert = SimulatedExpert(PAIRS, ExpertConfig(seed=2))
        for record in records:
            want = expert.fit_probs(next(p for p in PAIRS if p.pair_id == record["pair_id"]))
            for level, p in want.items():
                assert record["fit_probs"][level] == pytest.approx(p, rel=2e-3, abs=1e-6)
            usage = record["usage"]
            assert record["cost_usd"] == pytest.approx((usage["prompt_tokens"] * 2.5 + usage["completion_tokens"] * 10) / 1e6)
            assert len(record["logprobs"]) == usage["completion_tokens"]
            assert all(len(t["top_logprobs"]) == 5 for t in record["logprobs"])
        assert first.stats.cost_usd == pytest.approx(sum(r["cost_usd"] for r in records))
        assert "done 12 | cached 0 | failed 0" in str(first) and "cost $" in str(first)
        requests = sim.stats()["requests"]
        again = label_pairs(PAIRS[:12], ApiTeacher(cfg), str(tmp_path / "b.jsonl"), progress=False)
        assert (again.done, again.cached) == (0, 12) and sim.stats()["requests"] == requests  # never pays twice
        by_pair = {r["pair_id"]: r["assessment"] for r in records}
        assert {r["pair_id"]: r["assessment"] for r in _records(tmp_path / "b.jsonl")} == by_pair
        hotter = _config(url, cache_dir=str(tmp_path / "cache"), temperature=0.7)
        label_pairs(PAIRS[:2], ApiTeacher(hotter), str(tmp_path / "c.jsonl"), progress=False)
        assert sim.stats()["requests"] == requests + 2  # decoding parameters are part of the cache key


def test_retries_honour_retry_after_then_give_up():
    with serve_in_thread(PAIRS[:2], ServerConfig(fault_rates={"429": 1.0}, retry_after_s=0.2)) as (url, sim):
        teacher = ApiTeacher(_config(url, max_retries=2, backoff_base_s=0.001))
        start = time.monotonic()
        with pytest.raises(TeacherError, match="after 3 attempts: HTTP 429"):
            _assess(teacher, PAIRS[0])
        assert time.monotonic() - start >= 0.4  # two waits of Retry-After, not the 1 ms backoff
        assert sim.stats()["requests"] == 3


def test_recovers_from_every_transport_fault(tmp_path):
    rates = {"429": 0.12, "500": 0.12, "malformed_body": 0.12, "drop": 0.12, "timeout": 0.08}
    with serve_in_thread(PAIRS, ServerConfig(seed=4, fault_rates=rates, retry_after_s=0.01,
                                             timeout_delay_s=2.0)) as (url, sim):
        teacher = ApiTeacher(_config(url, timeout_s=0.5, max_retries=10, logprobs=False, top_logprobs=0,
                                     record_top_logprobs=0))
        summary = label_pairs(PAIRS, teacher, str(tmp_path / "out.jsonl"), progress=False)
        assert (summary.done, summary.failed) == (len(PAIRS), 0)
        assert {"HTTP 429", "HTTP 500", "malformed response body", "connection error", "timed out"} <= set(
            summary.stats.errors)
        assert sorted(r["pair_id"] for r in _records(tmp_path / "out.jsonl")) == sorted(p.pair_id for p in PAIRS)


def test_structured_output_falls_back_to_prompt_only(tmp_path, caplog):
    with serve_in_thread(PAIRS[:4], ServerConfig(structured_output=False)) as (url, sim):
        with caplog.at_level(logging.WARNING, logger="lantern_jax.teacher"):
            summary = label_pairs(PAIRS[:4], ApiTeacher(_config(url)), str(tmp_path / "a.jsonl"), progress=False)
        assert summary.done == 4 and sum("prompt-only" in m for m in caplog.messages) == 1
        assert all(r["assessment"] for r in _records(tmp_path / "a.jsonl"))
        with pytest.raises(TeacherError, match="HTTP 400"):
            _assess(ApiTeacher(_config(url, structured_output="json_schema")), PAIRS[0])


def test_chain_mode_reuses_the_extraction_per_job(tmp_path):
    pairs = PAIRS[:9]  # three members per job
    with serve_in_thread(pairs, ServerConfig()) as (url, sim):
        summary = label_pairs(pairs, ApiTeacher(_config(url, mode="chain")), str(tmp_path / "c.jsonl"),
                              progress=False)
        assert summary.done == 9
        stats = sim.stats()
        jobs = {p.job.job_id for p in pairs}
        assert sorted(k for k in stats["by_pair"] if k.startswith("job:")) == sorted(f"job:{j}" for j in jobs)
        assert all(stats["by_pair"][f"job:{j}"] == 1 for j in jobs)
    for record in _records(tmp_path / "c.jsonl"):
        assert [s["step"] for s in record["steps"]] == ["extract", "evaluate", "explain"]
        if record["assessment"]:
            assert record["fit_probs"]["mass"] > 0.99
            assert record["assessment"]["explanation"].startswith(f"You are a {record['assessment']['fit_level']}")


def test_label_word_probabilities_from_split_tokens():
    text = '{"fit_level": "medium"}'
    content = [{"token": '{"', "logprob": 0.0}, {"token": 'fit_level": "', "logprob": 0.0},
               {"token": "med", "logprob": math.log(0.6),
                "top_logprobs": [{"token": "med", "logprob": math.log(0.6)}, {"token": "high", "logprob": math.log(0.3)},
                                 {"token": " lo", "logprob": math.log(0.05)}, {"token": "x", "logprob": math.log(0.05)}]},
               {"token": 'ium"}', "logprob": 0.0}]
    probs = fit_level_probs(content, text)
    assert probs["medium"] == pytest.approx(0.6 / 0.95) and probs["low"] == pytest.approx(0.05 / 0.95)
    assert probs["mass"] == pytest.approx(0.95)
    assert fit_level_probs(content, "no fit level here") is None and fit_level_probs(None, text) is None


def test_config_errors_are_one_line(monkeypatch):
    with pytest.raises(TeacherConfigError, match=r"unknown key\(s\) temprature") as e:
        TeacherConfig.from_mapping({"temprature": 0.1})
    assert "\n" not in str(e.value)
    with pytest.raises(TeacherConfigError, match="concurrency must be int"):
        TeacherConfig.from_mapping({"concurrency": "many"})
    with pytest.raises(TeacherConfigError, match="top_logprobs must be between 0 and 20"):
        TeacherConfig(top_logprobs=50)
    assert TeacherConfig.from_mapping({"concurrency": "32", "compress": "false"}).concurrency == 32
    monkeypatch.delenv("NO_SUCH_TEACHER_KEY", raising=False)
    with pytest.raises(TeacherConfigError) as e:
        ApiTeacher(TeacherConfig(api_key_env="NO_SUCH_TEACHER_KEY"))
    assert str(e.value).startswith("environment variable NO_SUCH_TEACHER_KEY is not set") and "\n" not in str(e.value)


def _closed_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_unreachable_server_fails_fast_with_one_line(tmp_path, capsys):
    url = f"http://127.0.0.1:{_closed_port()}/v1"
    teacher = ApiTeacher(_config(url, backoff_base_s=0.01))
    start = time.monotonic()
    with pytest.raises(TeacherUnreachableError, match="cannot reach the teacher at"):
        label_pairs(PAIRS[:3], teacher, str(tmp_path / "out.jsonl"), progress=False)
    assert time.monotonic() - start < 5
    pairs = write_pairs_file(tmp_path / "pairs.jsonl", PAIRS[:3])
    out = tmp_path / "kept.jsonl"
    out.write_text('{"pair_id": "x", "prompt_version": "old"}\n')
    code = label_main(["--pairs", pairs, "--out", str(out), "--set", f"base_url={url}", "--set", "api_key_env=none",
                       "--set", "progress=false"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith("error:")
    assert out.read_text() == '{"pair_id": "x", "prompt_version": "old"}\n'  # nothing written is lost


def _label_cli(pairs_file, out_dir, url, key):
    env = {**os.environ, "LANTERN_TEACHER_API_KEY": key}
    args = [sys.executable, "-m", "lantern_jax.teacher.label", "--pairs", pairs_file,
            "--out", str(out_dir / "records.jsonl"), "--set", f"base_url={url}",
            "--set", f"cache_dir={out_dir / 'cache'}", "--set", "backoff_base_s=0.01"]
    return subprocess.run(args, capture_output=True, text=True, env=env, timeout=120)


@pytest.mark.subprocess
def test_api_key_never_reaches_logs_caches_or_records(tmp_path):
    secret, wrong_key = "sk-test-" + "Zq8" * 12, "sk-wrong-" + "Xy7" * 10
    pairs_file = write_pairs_file(tmp_path / "pairs.jsonl", PAIRS[:6])
    # json_schema unsupported -> the client logs a warning; faults -> retries; all of it must stay key-free
    config = ServerConfig(api_key=secret, structured_output=False, fault_rates={"500": 0.2, "429": 0.1},
                          retry_after_s=0.01)
    with serve_in_thread(PAIRS[:6], config) as (url, sim):
        run = _label_cli(pairs_file, tmp_path / "ok", url, secret)
        assert run.returncode == 0, run.stderr
        assert "done 6" in run.stdout and "prompt-only" in run.stderr
        wrong = _label_cli(pairs_file, tmp_path / "wrong", url, wrong_key)
    assert wrong.returncode == 2 and "rejected the API key from LANTERN_TEACHER_API_KEY" in wrong.stderr
    assert wrong_key not in wrong.stderr and len(wrong.stderr.strip().splitlines()) == 1
    written = [run.stdout, run.stderr, wrong.stdout, wrong.stderr]
    for root, _, files in os.walk(tmp_path):
        for name in files:
            with open(os.path.join(root, name), "rb") as f:
                data = f.read()
            written.append((gzip.decompress(data) if name.endswith(".gz") else data).decode("utf-8", "replace"))
    assert len(written) > 6 + 4  # records, pairs, cache entries, outputs
    assert not any(secret in w or wrong_key in w for w in written)


def test_profiles_leave_redacted_when_redaction_applies(tmp_path):
    pairs = synth_pairs(60)
    with serve_in_thread(pairs, ServerConfig()) as (url, sim):
        label_pairs(pairs, ApiTeacher(_config(url, redact="always", logprobs=False, top_logprobs=0,
                                              record_top_logprobs=0)), str(tmp_path / "r.jsonl"), progress=False)
        seen = sim.stats()["profiles"]
        assert seen.get("redacted", 0) >= 5 and seen.get("raw_with_pii", 0) == 0
        sim.reset()
        label_pairs(pairs, ApiTeacher(_config(url, logprobs=False, top_logprobs=0, record_top_logprobs=0)),
                    str(tmp_path / "loopback.jsonl"), progress=False)
        assert sim.stats()["profiles"].get("raw_with_pii", 0) >= 5  # loopback default: sent as is
    assert ApiTeacher(_config("https://api.example.com/v1")).redact  # on by default off the machine


@pytest.mark.subprocess
def test_server_in_a_child_process_labels_the_same_and_stops(tmp_path):
    """serve_in_process (the pipeline's teacher stage): same records as the in-thread server, and
    the child is gone when the block exits."""
    import multiprocessing
    config = ServerConfig(seed=3, expert=ExpertConfig(seed=3))
    with serve_in_thread(PAIRS, config) as (url, _):
        label_pairs(PAIRS[:6], ApiTeacher(_config(url, record_top_logprobs=0)), str(tmp_path / "t.jsonl"), progress=False)
    with serve_in_process(PAIRS, config) as url:
        children = multiprocessing.active_children()
        assert len(children) == 1 and children[0].is_alive()
        label_pairs(PAIRS[:6], ApiTeacher(_config(url, record_top_logprobs=0)), str(tmp_path / "p.jsonl"), progress=False)
    assert not children[0].is_alive()
    keep = ("pair_id", "assessment", "fit_probs", "raw_text")
    thread, proc = ([{k: r[k] for k in keep} for r in _records(tmp_path / n)] for n in ("t.jsonl", "p.jsonl"))
    assert sorted(proc, key=str) == sorted(thread, key=str)
    assert all(t["top_logprobs"] == [] for r in _records(tmp_path / "p.jsonl") for t in r["logprobs"])
