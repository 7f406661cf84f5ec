"""Bad input, tried as a new user would: every case gets one line naming the input and what is wrong
(a distinct exit status or HTTP code), and nothing already written changes.

Cases run in-process through each CLI's `main(argv)` (the same code path, no interpreter start-up);
one runs as a real process: the read-only workdir, which needs a private read-only mount.
"""
from __future__ import annotations

import hashlib
import json
import os
import pathlib
import shutil
import subprocess
import sys

import httpx
import jax
import numpy as np
import pytest
from fastapi import FastAPI
from fastapi.responses import Response

import train_fixtures
from pipeline_fixtures import xla_flags
from lantern_jax import config as config_lib
from lantern_jax import train as train_lib
from lantern_jax.train_log import read_metrics
from lantern_jax.data import datasets, pointers, prompts
from lantern_jax.data.schema import DataError
from lantern_jax.serve.runner import serve_in_thread as serve_app
from lantern_jax.teacher.cache import ResponseCache, cache_key
from lantern_jax.teacher.client import ApiTeacher
from lantern_jax.teacher.config import TeacherConfig
from lantern_jax.teacher.label import label_pairs, main as label_main, read_pairs, read_records
from lantern_jax.teacher.parse import TeacherOutputError, parse_assessment
from lantern_jax.teacher.server import PairIndex, ServerConfig, serve_in_thread as serve_teacher
from lantern_jax.guard import NonFiniteError
from lantern_jax.storage import WorkdirError
from teacher_fixtures import synth_pairs, write_pairs_file

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

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


def test_a_review_file_with_bad_text_is_one_line_naming_file_row_and_field(tmp_path):
    from lantern_jax.teacher.hitl import ReviewFileError, import_review
    review = tmp_path / "review.jsonl"
    rows = [{"pair_id": "p0", "accept": "1", "note": "fine"}, {"pair_id": "p1", "reject": "1", "note": "bad \udc80"}]
    review.write_text("".join(json.dumps(r) + "\n" for r in rows))  # the JSON escape, as an editor may save it
    with pytest.raises(ReviewFileError) as e:
        import_review(str(review))
    one_line(str(e.value), f"{review}:2: field 'note' is not valid Unicode (lone surrogate U+DC80 at character 4)")
    assert isinstance(e.value, DataError)  # so the pipeline's CLI answers it in one line, exit 2


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


# ----------------------------------------------------------------------------- training: config, workdir, checkpoints

def kd_config(data, **overrides):
    data_dir, tokenizer = data
    cfg = config_lib.load_config(os.path.join(ROOT, "configs/explainer_kd.py:local"))
    cfg.model.tokenizer = tokenizer
    cfg.model.init.update(hidden_size=32, num_layers=2, num_heads=4, num_kv_heads=2, intermediate_size=64)
    cfg.data.update(dir=data_dir, topk=4, max_length=160)
    cfg.train.update(steps=12, batch_size=8, log_every=1, eval_every=100, eval_batches=1, checkpoint_every=4,
                     keep_checkpoints=3, export=False)
    cfg.optim.update(lr=3e-3, warmup_steps=2)
    config_lib.apply_overrides(cfg, [f"{k}={v}" for k, v in overrides.items()])
    return cfg


def cli_args(data, workdir, *overrides):
    data_dir, tokenizer = data
    return ["--config", os.path.join(ROOT, "configs/explainer_kd.py:local"), "--workdir", str(workdir),
            f"--config.data.dir={data_dir}", f"--config.model.tokenizer={tokenizer}", "--config.data.topk=4",
            *overrides]


def train_losses(workdir) -> dict[int, float]:
    return {r["step"]: r["loss"] for r in read_metrics(str(workdir)).get("train", [])}


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return train_fixtures.build(str(tmp_path_factory.mktemp("bad_inputs_train")))


# The tests that train share one worker under `--dist loadgroup`: the module fixtures below train
# once per process, so spreading them would train the reference run twice.
TRAINING = pytest.mark.xdist_group("bad_inputs_training")


@pytest.fixture(scope="module")
def finished_run(data, tmp_path_factory):
    """12 steps, checkpoints at 4, 8 and 12 (one device: the reference the reruns are compared with)."""
    workdir = tmp_path_factory.mktemp("finished") / "run"
    train_lib.train(kd_config(data), str(workdir), devices=jax.devices()[:1])
    assert sorted(os.listdir(workdir / "checkpoints")) == ["12", "4", "8"]
    return workdir


@pytest.mark.parametrize("override,message", [
    ("optim.lr=nan", "config key 'optim.lr' must be finite, got 'nan'"),
    ("optim.lr=1e999", "config key 'optim.lr' must be finite, got '1e999'"),
    ("train.keep_checkpoints=0", "config key 'train.keep_checkpoints' must be positive"),
    ("optim.grad_accum=4", "batch size 8 with optim.grad_accum=4 gives micro-batches of 2, which is not divisible "
                           "by the data-parallel size 8"),
])
@TRAINING
def test_bad_training_values_are_one_line_and_exit_2_before_anything_is_written(data, tmp_path, capsys,
                                                                                override, message):
    workdir = tmp_path / "run"
    assert train_lib.main(cli_args(data, workdir, f"--config.{override}")) == 2
    one_line(capsys.readouterr().err, f"error: {message}")
    assert not workdir.exists()


@TRAINING
def test_a_workdir_that_is_a_file_or_under_one_is_one_line(data, tmp_path, capsys):
    afile = tmp_path / "notes.txt"
    afile.write_text("mine\n")
    for workdir, message in ((afile, "is a file, not a directory"),
                             (afile / "runs" / "kd", f"lies under {afile}, which is a file")):
        assert train_lib.main(cli_args(data, workdir)) == 2
        one_line(capsys.readouterr().err, f"error: --workdir {workdir} {message}")
    assert afile.read_text() == "mine\n"


@TRAINING
@pytest.mark.slow
@pytest.mark.subprocess
@pytest.mark.skipif(shutil.which("unshare") is None, reason="needs unshare(1) for a read-only mount")
def test_a_read_only_workdir_is_one_line_from_the_cli(data, finished_run, tmp_path):
    """A real read-only filesystem (a bind mount in a private mount namespace): permissions alone
    don't stop root, which these machines run tests as."""
    workdir = tmp_path / "ro"
    shutil.copytree(finished_run, workdir)
    before = snapshot(workdir)
    mount = f'mount --bind "{workdir}" "{workdir}" && mount -o remount,ro,bind "{workdir}" && exec "$0" "$@"'
    cmd = ["unshare", "--mount", "sh", "-c", mount, sys.executable, "-m", "lantern_jax.train",
           *cli_args(data, workdir, "--config.train.steps=16")]
    env = {**os.environ, "XLA_FLAGS": xla_flags(1)}
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    if "mount" in proc.stderr and proc.returncode != 2:
        pytest.skip(f"no private mounts here: {proc.stderr.strip()[:200]}")
    assert proc.returncode == 2, proc.stderr[-2000:]
    one_line(proc.stderr.strip().splitlines()[-1], f"error: --workdir {workdir} can't be written (Read-only file system)")
    assert snapshot(workdir) == before


@TRAINING
@pytest.mark.slow
def test_damaged_checkpoints_fall_back_to_the_newest_that_restores(data, finished_run, tmp_path, caplog):
    """Step 12 with an emptied data_iter file and step 8 with truncated arrays: the rerun says why it
    skips each, resumes from step 4 and recomputes steps 5..12 bit for bit; the damaged steps are
    kept beside the new ones."""
    workdir = tmp_path / "run"
    shutil.copytree(finished_run, workdir)
    ckpts = workdir / "checkpoints"
    (ckpts / "12" / "data_iter" / "process_0-of-1.json").write_text("")
    for f in (ckpts / "8" / "state").rglob("*"):
        if f.is_file() and f.parent.name == "d":
            f.write_bytes(f.read_bytes()[:f.stat().st_size // 2])
    damaged = {step: snapshot(ckpts / step) for step in ("8", "12")}
    with caplog.at_level("WARNING", logger="lantern_jax.checkpoint"):
        train_lib.train(kd_config(data), str(workdir), devices=jax.devices()[:1])
    warnings = [r.getMessage() for r in caplog.records if r.name == "lantern_jax.checkpoint"]
    assert [w.split(" (")[0] for w in warnings[:2]] == ["checkpoint step 12 can't be restored",
                                                        "checkpoint step 8 can't be restored"]
    assert "JSONDecodeError" in warnings[0] and "is not valid for value of size" in warnings[1]
    assert all("\n" not in w for w in warnings)
    assert f"checkpoint step 12 moved to {ckpts / '12.damaged'}; resuming from step 4" in warnings
    assert sorted(os.listdir(ckpts)) == ["12", "12.damaged", "4", "8", "8.damaged"]
    for step, files in damaged.items():  # set aside byte for byte, not deleted
        assert {k.replace(f"/{step}/", f"/{step}.damaged/"): v for k, v in files.items()} == snapshot(
            ckpts / f"{step}.damaged")
    assert train_losses(workdir) == train_losses(finished_run)


@TRAINING
@pytest.mark.slow
def test_a_rerun_with_another_model_is_refused_before_anything_is_written(data, finished_run, capsys):
    before = snapshot(finished_run)
    cfg = kd_config(data, **{"model.init.hidden_size": 48, "model.init.num_layers": 3, "train.steps": 16})
    with pytest.raises(WorkdirError) as e:
        train_lib.train(cfg, str(finished_run), devices=jax.devices()[:1])
    one_line(str(e.value), f"--workdir {finished_run} holds checkpoints of another model",
             "model.init.hidden_size: 32 -> 48; model.init.num_layers: 2 -> 3", "nothing was changed")
    assert snapshot(finished_run) == before


@TRAINING
@pytest.mark.slow
def test_a_diverging_run_stops_at_the_first_non_finite_step_leaving_finite_checkpoints(data, tmp_path, caplog):
    """lr=1e30 (finite, so accepted) blows the weights up within a few steps. The dev split (16
    pairs) is smaller than the batch (32): said once, not skipped silently."""
    workdir = tmp_path / "run"
    cfg = kd_config(data, **{"optim.lr": 1e30, "train.batch_size": 32, "train.checkpoint_every": 1,
                             "train.log_every": 4, "data.max_length": 96})
    with caplog.at_level("WARNING", logger="lantern_jax.train"), pytest.raises(NonFiniteError) as e:
        train_lib.train(cfg, str(workdir), devices=jax.devices()[:1])
    message = one_line(str(e.value), "non-finite", "training stopped and checkpoint step")
    step = int(message.split(":")[0].removeprefix("step "))
    assert f"checkpoint step {step - 1} (finite) is the latest" in message
    assert sorted(int(s) for s in os.listdir(workdir / "checkpoints")) == list(range(1, step))
    assert "config key 'data.eval_split': 'dev' holds 16 examples per process, fewer than one batch of " \
           "train.batch_size=32: this run has no eval metrics" in caplog.text
    lines = (workdir / "metrics.jsonl").read_text().splitlines()
    assert all(json.loads(line, parse_constant=lambda c: pytest.fail(f"bare {c} in metrics.jsonl")) for line in lines)
    restored = saved_arrays(cfg, workdir, step - 1)
    assert all(np.isfinite(x).all() for x in jax.tree.leaves(restored))


def saved_arrays(cfg, workdir, step):
    """The arrays of checkpoint `step`, restored through Orbax as saved (no model built)."""
    import orbax.checkpoint as ocp
    with ocp.CheckpointManager(workdir / "checkpoints") as manager:
        return manager.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore()))["state"]


# ----------------------------------------------------------------------------- HTTP: the serving app

@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """Classifier + explainer exports of random tiny models; nothing here reaches them (no warm-up)."""
    from flax import nnx

    from lantern_jax.data.tokenizer import train_tokenizer
    from lantern_jax.models import hf
    from lantern_jax.models.decoder import DecoderConfig, DecoderLM
    from lantern_jax.models.encoder import Classifier, ClassifierConfig, EncoderConfig
    from lantern_jax.serve.app import create_app
    from lantern_jax.serve.config import ServeConfig
    from lantern_jax.serve.service import load_service

    root = tmp_path_factory.mktemp("served")
    pairs = synth_pairs(2)
    tok = train_tokenizer([json.dumps(pointers.inhouse_messages(p)) for p in pairs], vocab_size=400)
    dec = DecoderConfig(vocab_size=len(tok), hidden_size=16, num_layers=1, num_heads=2, num_kv_heads=1,
                        intermediate_size=32, max_position_embeddings=4096)
    hf.save_hf(DecoderLM(dec, rngs=nnx.Rngs(0)), root / "explainer", tokenizer=tok)
    enc = EncoderConfig(vocab_size=len(tok), hidden_size=16, num_layers=1, num_heads=2, intermediate_size=32)
    hf.save_hf(Classifier(ClassifierConfig(enc), rngs=nnx.Rngs(1)), root / "classifier", tokenizer=tok)
    service = load_service(ServeConfig(max_new_tokens=8, prompt_buckets=(2048,)), classifier=root / "classifier",
                           explainer=root / "explainer", warmup=False)
    with serve_app(create_app(service)) as url:
        yield url, service, pairs[0].to_dict()


def _with(record: dict, path: str, value) -> dict:
    out = json.loads(json.dumps(record))
    *parents, last = path.split(".")
    node = out
    for key in parents:
        node = node[int(key)] if key.isdigit() else node[key]
    node[int(last) if last.isdigit() else last] = value
    return out


def test_bad_http_requests_get_a_4xx_naming_the_field_and_are_counted(served):
    url, service, pair = served
    chat = {"messages": [{"role": "user", "content": "hi"}]}
    cases = [  # (path, body as JSON text (\\ud800 stays an escape), content type, status, param, message)
        ("/v1/explain", {"pair": _with(pair, "member.summary", "\ud800")}, None, 422, "pair.member.summary",
         "field 'pair.member.summary': is not valid Unicode (lone surrogate U+D800 at character 0)"),
        ("/v1/fit", {"pairs": [_with(pair, "job.title", "QA \udfff")]}, None, 422, "pairs[0].job.title",
         "is not valid Unicode (lone surrogate U+DFFF at character 3)"),
        ("/v1/fit", {"pairs": [_with(pair, "member.skills.0", "\ud83d")]}, None, 422, "pairs[0].member.skills[0]",
         "lone surrogate U+D83D"),
        ("/v1/chat/completions", _with(chat, "messages.0.content", "hi \ud800"), None, 400, "messages[0].content",
         "field 'messages[0].content': is not valid Unicode (lone surrogate U+D800 at character 3)"),
        ("/v1/chat/completions", _with(chat, "messages.0.content", [{"type": "text", "text": "\ud800"}]), None, 400,
         "messages[0].content[0].text", "is not valid Unicode"),
        ("/v1/explain", {"pair": pair, "guided": "yes"}, None, 422, "guided",
         "field 'guided': Input should be a valid boolean (got string)"),
        ("/v1/chat/completions", {**chat, "temperature": "0.5"}, None, 400, "temperature",
         "field 'temperature': Input should be a valid number (got string)"),
        ("/v1/chat/completions", {**chat, "stream": "yes"}, None, 400, "stream", "Input should be a valid boolean"),
        ("/v1/fit", {"pairs": [pair]}, "text/plain", 400, "Content-Type",
         "request body must be JSON (Content-Type: application/json), got Content-Type 'text/plain'"),
    ]
    metric = "lantern_http_requests_total"
    before = {(c[0], c[3]): service.metrics.sample(metric, endpoint=c[0], status=str(c[3])) for c in cases}
    for path, body, content_type, status, param, message in cases:
        r = httpx.post(url + path, content=json.dumps(body).encode(),
                       headers={"content-type": content_type or "application/json"}, timeout=30)
        assert r.status_code == status, (path, r.text)
        error = r.json()["error"]
        assert error["param"] == param, error
        one_line(error["message"], message)
    for (path, status), count in before.items():
        expected = sum(1 for c in cases if (c[0], c[3]) == (path, status))
        assert service.metrics.sample(metric, endpoint=path, status=str(status)) - count == expected
    exposition = httpx.get(url + "/metrics").text  # what a Prometheus server scrapes
    assert f'{metric}{{endpoint="/v1/chat/completions",status="400"}}' in exposition
    assert httpx.get(url + "/healthz").json()["status"] == "ok"
