"""Labeling: faults, a SIGKILL midway and a restart; sharding; resumability; bad input in one line."""
import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter

import pytest

from lantern_jax.data import prompts
from lantern_jax.teacher.cache import ResponseCache
from lantern_jax.teacher.client import ApiTeacher, TeacherUnreachableError
from lantern_jax.teacher.config import TeacherConfig
from lantern_jax.teacher.label import (OutputFileError, RecordWriter, label_pairs, main as label_main, read_records,
                                       shard_path)
from lantern_jax.teacher.server import ServerConfig, serve_in_thread
from teacher_fixtures import synth_pairs, write_pairs_file

FAULTS = {"429": 0.05, "500": 0.05, "timeout": 0.03, "malformed_body": 0.04, "drop": 0.03}


def _lines(path):
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [line for line in f.read().split("\n") if line]


@pytest.mark.subprocess
def test_kill_midway_then_restart_labels_each_pair_once_without_paying_twice(tmp_path):
    pairs = synth_pairs(200)
    pairs_file = write_pairs_file(tmp_path / "pairs.jsonl", pairs)
    out, cache = tmp_path / "records.jsonl", tmp_path / "cache"
    server = ServerConfig(seed=9, fault_rates=FAULTS, retry_after_s=0.02, timeout_delay_s=2.0, latency_s=0.02)
    with serve_in_thread(pairs, server) as (url, sim):
        args = [sys.executable, "-m", "lantern_jax.teacher.label", "--pairs", pairs_file, "--out", str(out),
                "--set", f"base_url={url}", "--set", "api_key_env=none", "--set", f"cache_dir={cache}",
                "--set", "concurrency=16", "--set", "logprobs=false", "--set", "timeout_s=0.8",
                "--set", "backoff_base_s=0.01", "--set", "max_retries=12", "--set", "progress=false"]
        first = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 120
        while len(_lines(out)) < 60 and first.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        first.send_signal(signal.SIGKILL)
        first.communicate()
        assert first.returncode == -signal.SIGKILL
        time.sleep(0.3)  # requests already on the wire reach the server's counters
        kept = _lines(out)
        assert 60 <= len(kept) < len(pairs)
        cached = {e["pair_id"] for e in ResponseCache(str(cache)).entries()}
        before = dict(sim.stats()["by_pair"])

        second = subprocess.run(args, capture_output=True, text=True, timeout=180)
        assert second.returncode == 0, second.stderr
        after = sim.stats()["by_pair"]
        assert sim.stats()["by_outcome"].keys() >= {"ok", "429", "500", "timeout", "malformed_body", "drop"}
    summary = second.stdout.strip().splitlines()[-1]
    assert "failed 0" in summary and "resumed past" in summary
    complete = [json.loads(line) for line in _lines(out)[:len(kept) - 1]]  # the last kept line may be torn
    assert [json.dumps(r) for r in complete] == [json.dumps(json.loads(line)) for line in kept[:len(kept) - 1]]
    records = [json.loads(line) for line in _lines(out)]
    counts = Counter(r["pair_id"] for r in records)
    assert set(counts) == {p.pair_id for p in pairs} and set(counts.values()) == {1}
    assert not [pid for pid in cached if after.get(pid, 0) != before.get(pid, 0)]  # cached: never asked again
    fresh = [pid for pid in counts if pid not in cached]
    assert all(after[pid] >= 1 for pid in fresh)
    record = records[0]
    assert {"pair_id", "prompt_version", "teacher_id", "decoding", "raw_text", "assessment", "parse_error",
            "fit_probs", "logprobs", "usage", "cost_usd", "labeled_at"} <= set(record)
    assert record["prompt_version"] == prompts.PROMPT_VERSION and record["decoding"]["logprobs"] is False


def _config(url, **kw):
    return TeacherConfig(**{"base_url": url, "api_key_env": None, "progress": False, "top_logprobs": 0,
                            "logprobs": False, "backoff_base_s": 0.01, **kw})


def test_shards_by_process_are_disjoint_and_complete(tmp_path):
    pairs = synth_pairs(30)
    with serve_in_thread(pairs, ServerConfig()) as (url, _):
        for index in range(2):
            label_pairs(pairs, ApiTeacher(_config(url)), str(tmp_path / "r.jsonl"), process_index=index,
                        process_count=2, progress=False)
    shards = [[json.loads(line)["pair_id"] for line in _lines(shard_path(str(tmp_path / "r.jsonl"), i, 2))]
              for i in range(2)]
    assert sorted(r["pair_id"] for r in read_records(str(tmp_path / "r.jsonl"), 2)) == sorted(sum(shards, []))
    assert shard_path("r.jsonl", 1, 2) == "r-00001-of-00002.jsonl"
    assert shards[0] and shards[1] and not set(shards[0]) & set(shards[1])
    assert sorted(shards[0] + shards[1]) == sorted(p.pair_id for p in pairs)


def test_failed_pairs_are_retried_by_the_next_run_and_torn_lines_redone(tmp_path):
    pairs = synth_pairs(8)
    out = tmp_path / "r.jsonl"
    with serve_in_thread(pairs, ServerConfig(fault_rates={"500": 1.0})) as (url, _):
        summary = label_pairs(pairs, ApiTeacher(_config(url, max_retries=1)), str(out), progress=False)
    assert (summary.done, summary.failed) == (0, 8) and _lines(out) == []
    many = synth_pairs(30)
    with serve_in_thread(many, ServerConfig(fault_rates={"500": 1.0})) as (url, _):
        with pytest.raises(TeacherUnreachableError, match="failed 8 pairs in a row"):  # not 30 slow failures
            label_pairs(many, ApiTeacher(_config(url, max_retries=0, concurrency=2)), str(tmp_path / "x.jsonl"),
                        progress=False)
    with serve_in_thread(pairs, ServerConfig()) as (url, _):
        label_pairs(pairs[:5], ApiTeacher(_config(url)), str(out), progress=False)
        with open(out, "a") as f:
            f.write('{"pair_id": "' + pairs[6].pair_id + '", "raw_te')  # a kill mid-line
        summary = label_pairs(pairs, ApiTeacher(_config(url)), str(out), progress=False)
    assert (summary.already, summary.done) == (5, 3)
    assert sorted(json.loads(line)["pair_id"] for line in _lines(out)) == sorted(p.pair_id for p in pairs)
    assert '"raw_te' in open(str(out) + ".torn").read()


def test_refuses_to_mix_teachers_in_one_file(tmp_path):
    pairs = synth_pairs(4)
    out = tmp_path / "r.jsonl"
    line = json.dumps({"pair_id": pairs[0].pair_id, "prompt_version": "lantern-prompts-v0",
                       "teacher_id": "x@y", "decoding": {}}) + "\n"
    out.write_text(line)
    with pytest.raises(OutputFileError, match="different prompt_version, teacher_id, decoding"):
        RecordWriter(str(out), {"prompt_version": prompts.PROMPT_VERSION, "teacher_id": "m@h", "decoding": {"a": 1}})
    assert out.read_text() == line


def test_bad_input_gets_one_clear_line(tmp_path, capsys):
    pairs = synth_pairs(4)
    good = write_pairs_file(tmp_path / "pairs.jsonl", pairs)
    out = tmp_path / "out.jsonl"
    out.write_text("")
    broken = tmp_path / "broken.jsonl"
    broken.write_text(open(good).readline() + '{"pair_id": "p1", "job": {}}\n')
    dup = tmp_path / "dup.jsonl"
    dup.write_text(open(good).readline() * 2)
    config = tmp_path / "teacher.json"
    config.write_text(json.dumps({"model": "m", "temprature": 0.2}))
    cases = [(["--pairs", str(broken)], "broken.jsonl:2:"), (["--pairs", str(tmp_path / "none.jsonl")], "not found"),
             (["--pairs", str(dup)], "duplicate pair_id"), (["--pairs", good, "--config", str(config)], "temprature"),
             (["--pairs", good, "--set", "concurrency=lots"], "concurrency must be int"),
             (["--pairs", good, "--set", "api_key_env=NO_SUCH_KEY_VAR_X"], "NO_SUCH_KEY_VAR_X is not set")]
    for args, message in cases:
        assert label_main([*args, "--out", str(out)]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("error:") and message in err[0], err
    assert out.read_text() == ""


def test_run_sync_works_inside_a_running_event_loop():
    """A Jupyter cell runs inside the kernel's event loop: the sync wrappers must still work there."""
    import asyncio
    from lantern_jax.teacher.label import run_sync

    async def answer():
        await asyncio.sleep(0)
        return 42

    async def cell():  # synchronous code called from within a running loop, as a notebook cell is
        return run_sync(answer)

    assert run_sync(answer) == 42
    assert asyncio.run(cell()) == 42
