"""Bad input, tried as a new user would: every case gets one line naming the input and what is wrong
(a distinct exit status or HTTP code), and nothing already written changes.

Cases run in-process where the CLI has a `main(argv)` (same code path, no interpreter start-up);
the training CLI cases that need a real process share as few processes as possible.
"""
from __future__ import annotations

import hashlib
import json
import os
import pathlib
import shutil

import httpx
import numpy as np
import pytest
from fastapi import FastAPI
from fastapi.responses import Response

from lantern_jax.data import datasets, prompts
from lantern_jax.data.schema import DataError
from lantern_jax.serve.runner import serve_in_thread as serve_app
from lantern_jax.teacher.cache import ResponseCache, cache_key
from lantern_jax.teacher.client import ApiTeacher
from lantern_jax.teacher.config import TeacherConfig
from lantern_jax.teacher.label import label_pairs, main as label_main, read_pairs, read_records
from lantern_jax.teacher.parse import TeacherOutputError, parse_assessment
from lantern_jax.teacher.server import PairIndex, ServerConfig, serve_in_thread as serve_teacher
from teacher_fixtures import synth_pairs, write_pairs_file

SURROGATE = "\\ud800"  # the JSON escape of a lone surrogate: valid JSON, not text


def one_line(text: str, *names: str) -> str:
    """The message's single line, checked to name every one of `names`."""
    lines = text.strip().splitlines()
    assert len(lines) == 1, text
    for name in names:
        assert name in lines[0], (name, lines[0])
    return lines[0]


def snapshot(root) -> dict[str, str]:
    """Every file under `root` (or the file itself) with a digest of its bytes."""
    root = pathlib.Path(root)
    files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
    return {str(p): hashlib.sha256(p.read_bytes()).hexdigest() for p in files}


def assessment_text(evidence: str) -> str:
    """An Assessment as a teacher writes it (JSON text); `evidence` is pasted in raw, escapes and all."""
    return ('{"requirements": [{"requirement": "Python", "importance": "required", "verdict": "met", '
            f'"evidence": "{evidence}"}}], "fit_level": "low", '
            '"explanation": "You are a low fit for this job. Python is met."}')


# ----------------------------------------------------------------------------- teacher outputs

def test_lone_surrogate_in_a_teacher_output_is_a_parse_error_naming_the_field():
    with pytest.raises(TeacherOutputError) as e:
        parse_assessment(assessment_text(f"Uses Python {SURROGATE} daily"))
    assert one_line(str(e.value)) == ("requirements[0]: 'evidence' is not valid Unicode "
                                      "(lone surrogate U+D800 at character 12)")
    str(e.value).encode("utf-8")  # the reason itself is writable to a record


def _openai_server(pairs, contents: dict[str, str]):
    """A minimal OpenAI-compatible server answering each pair's prompt with a fixed JSON string
    literal as `content`, bytes as given: what an API returns when it cuts an emoji's surrogate pair."""
    index = PairIndex(pairs)
    app = FastAPI()

    @app.get("/v1/models")
    async def models():
        return {"object": "list", "data": []}

    @app.post("/v1/chat/completions")
    async def chat(body: dict):
        _, pair, _, _ = index.resolve("\n".join(m["content"] for m in body["messages"]))
        content = contents[pair.pair_id]
        payload = ('{"id": "c", "object": "chat.completion", "model": "m", "choices": [{"index": 0, '
                   f'"finish_reason": "stop", "message": {{"role": "assistant", "content": {content}}}}}], '
                   '"usage": {"prompt_tokens": 1, "completion_tokens": 1}}')
        return Response(payload.encode(), media_type="application/json")

    return serve_app(app)


def test_lone_surrogates_from_the_teacher_or_its_cache_never_wedge_a_shard(tmp_path):
    """A surrogate inside the teacher's JSON text is a parse error on the record; one in the HTTP
    body itself is replaced (U+FFFD); a cached response holding one (written before this fix) is
    read back and recorded. Every pair gets its record and a rerun finds nothing to do."""
    pairs = synth_pairs(3)
    in_text = json.dumps(assessment_text(f"Python {SURROGATE}"))  # the teacher's JSON text holds the escape
    in_body = json.dumps(assessment_text("Python").replace("is met", "@")).replace("@", "\\ud83d")  # the body does
    contents = {pairs[0].pair_id: in_text, pairs[1].pair_id: in_body, pairs[2].pair_id: in_text}
    cache = tmp_path / "cache"
    out = str(tmp_path / "records.jsonl")
    with _openai_server(pairs, contents) as url:
        config = TeacherConfig(base_url=url + "/v1", model="m", api_key_env=None, cache_dir=str(cache),
                               structured_output="none", logprobs=False, top_logprobs=0, progress=False,
                               max_retries=0)
        teacher = ApiTeacher(config)
        key = cache_key(prompts.PROMPT_VERSION, "m", teacher.decoding, prompts.single_call_messages(pairs[2]))
        ResponseCache(str(cache)).put(key, {"pair_id": pairs[2].pair_id, "completion": {
            "content": json.loads(in_text), "refusal": None, "finish_reason": "stop", "logprobs": None,
            "usage": {"prompt_tokens": 1, "completion_tokens": 1}, "model": "m", "cached": False}})
        summary = label_pairs(pairs, teacher, out, progress=False)
        assert (summary.done, summary.cached, summary.failed) == (2, 1, 0)
        before = snapshot(out)
        again = label_pairs(pairs, ApiTeacher(config), out, progress=False)
        assert (again.already, again.done) == (3, 0) and snapshot(out) == before
    records = {r["pair_id"]: r for r in read_records(out)}
    for p in (pairs[0], pairs[2]):
        assert records[p.pair_id]["assessment"] is None
        assert "'evidence' is not valid Unicode (lone surrogate U+D800" in records[p.pair_id]["parse_error"]
    body_level = records[pairs[1].pair_id]
    assert body_level["parse_error"] is None and "Python \ufffd" in body_level["assessment"]["explanation"]


# ----------------------------------------------------------------------------- pairs files and the labeling CLI

def test_pairs_files_with_bad_text_are_one_line_naming_file_line_and_field(tmp_path, capsys):
    pairs = synth_pairs(2)
    good = write_pairs_file(tmp_path / "pairs.jsonl", pairs)
    lines = pathlib.Path(good).read_text().splitlines()
    surrogate = tmp_path / "surrogate.jsonl"
    surrogate.write_text(lines[0] + "\n" + lines[1].replace('"summary":"', f'"summary":"{SURROGATE}', 1) + "\n")
    not_utf8 = tmp_path / "latin1.jsonl"
    not_utf8.write_bytes(lines[0].encode() + b"\n" + lines[1].encode().replace(b'"summary":"', b'"summary":"\xe9', 1))
    out = tmp_path / "out.jsonl"
    cases = [(surrogate, "surrogate.jsonl:2: field 'member.summary' is not valid Unicode (lone surrogate U+D800"),
             (not_utf8, "latin1.jsonl:2: not UTF-8 text (byte 0xe9 at column")]
    for path, message in cases:
        with pytest.raises(DataError):
            read_pairs(str(path))
        assert label_main(["--pairs", str(path), "--out", str(out), "--set", "api_key_env=none"]) == 2
        one_line(capsys.readouterr().err, "error: ", message)
    assert not out.exists()


def test_a_rejected_api_key_leaves_no_records_file(tmp_path, capsys, monkeypatch):
    pairs = synth_pairs(3)
    good = write_pairs_file(tmp_path / "pairs.jsonl", pairs)
    out = tmp_path / "sub" / "records.jsonl"
    monkeypatch.setenv("LANTERN_BAD_INPUTS_KEY", "wrong-key")
    with serve_teacher(pairs, ServerConfig(api_key="right-key")) as (url, _):
        code = label_main(["--pairs", good, "--out", str(out), "--set", f"base_url={url}",
                           "--set", "api_key_env=LANTERN_BAD_INPUTS_KEY", "--set", "progress=false"])
    assert code == 2
    message = one_line(capsys.readouterr().err, "rejected the API key from LANTERN_BAD_INPUTS_KEY", "HTTP 401")
    assert "wrong-key" not in message
    assert not out.exists() and not out.parent.exists()


# ----------------------------------------------------------------------------- datasets

SEED_RECORDS = [{"pair_id": f"p{i}", "prompt": "hello " * 40, "target": "world " * 40, "provenance": {"n": i}}
                for i in range(40)]


@pytest.fixture(scope="module")
def good_dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("datasets") / "good"
    datasets.write_dataset("d_seed", {"train": SEED_RECORDS, "dev": SEED_RECORDS[:4]}, root)
    return root


def _damaged(good_dataset, tmp_path, damage) -> tuple[pathlib.Path, pathlib.Path]:
    root = tmp_path / "data"
    shutil.copytree(good_dataset, root)
    build = datasets.dataset_path("d_seed", root)
    target = next(build.glob("d_seed-train.array_record-*"))
    damage(target, build)
    return root, target


def _truncate(f, _):
    f.write_bytes(f.read_bytes()[:len(f.read_bytes()) // 2])


def _random_bytes(f, _):
    f.write_bytes(np.random.default_rng(0).bytes(f.stat().st_size))


DAMAGE = {
    "truncated": (_truncate, "holds 0 records, dataset_info.json says 40 (the file is truncated or damaged)"),
    "random bytes": (_random_bytes, "holds 0 records, dataset_info.json says 40"),
    "0-byte file": (lambda f, _: f.write_bytes(b""), "empty file (0 bytes)"),
    "file deleted": (lambda f, _: f.unlink(), "missing (dataset_info.json lists it for dataset 'd_seed' split 'train'"),
    "0-byte dataset_info.json": (lambda _, build: (build / "dataset_info.json").write_bytes(b""),
                                 "dataset_info.json or features.json can't be read"),
}


@pytest.mark.parametrize("case", sorted(DAMAGE))
def test_a_damaged_dataset_is_one_line_naming_the_file(good_dataset, tmp_path, case):
    damage, message = DAMAGE[case]
    root, target = _damaged(good_dataset, tmp_path, damage)
    before = snapshot(root)
    with pytest.raises(DataError) as e:
        datasets.read_dataset("d_seed", root, "train")
    named = target.name if "dataset_info" not in case else "d_seed/1.0.0"
    one_line(str(e.value), named, message)
    assert snapshot(root) == before
    if "dataset_info" not in case:
        assert len(datasets.read_dataset("d_seed", root, "dev")) == 4  # the undamaged split still reads


def test_a_record_damaged_past_the_checked_ends_is_named_when_read(good_dataset, tmp_path):
    def flip_middle(f, _):
        data = bytearray(f.read_bytes())
        middle = len(bytes(data[:1 << 16]).rstrip(b"\0")) // 2  # the records fill the file's first block
        data[middle:middle + 64] = b"\xff" * 64
        f.write_bytes(bytes(data))

    root, _ = _damaged(good_dataset, tmp_path, flip_middle)
    source = datasets.read_dataset("d_seed", root, "train")  # the first and last records are intact
    with pytest.raises(DataError) as e:
        [source[i] for i in range(len(source))]
    one_line(str(e.value), "dataset 'd_seed' split 'train'", "record 20 can't be read", "hash mismatch")


def test_empty_splits_are_refused_before_anything_is_written(good_dataset, tmp_path):
    with pytest.raises(DataError) as e:
        datasets.write_dataset("d_seed", {"train": []}, tmp_path / "new")
    one_line(str(e.value), "dataset 'd_seed': split 'train' has no records")
    assert not (tmp_path / "new" / "d_seed").exists()
    root = tmp_path / "old"
    shutil.copytree(good_dataset, root)
    before = snapshot(root)
    for splits, message in (({"train": SEED_RECORDS, "dev": []}, "split 'dev' has no records"),
                            ({"train": SEED_RECORDS[:2] + [{"pair_id": "x"}]}, "d_seed/train record 2: missing field")):
        with pytest.raises(DataError) as e:
            datasets.write_dataset("d_seed", splits, root, overwrite=True)
        one_line(str(e.value), message)
        assert snapshot(root) == before  # the build it would have replaced is untouched
