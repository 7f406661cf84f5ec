"""Cross-tokenizer alignment on real teacher records: the simulated teacher (Qwen tokenizer) labels
pairs through the real client with top-20 logprobs; students are Qwen itself (identity), SmolLM2's
GGUF tokenizer and a domain BPE."""
import copy
import json
import math

import numpy as np
import pytest

from lantern_jax.data import datasets, pointers, prompts
from lantern_jax.data.schema import FIT_LEVELS
from lantern_jax.data.tokenizer import train_tokenizer
from lantern_jax.models import gguf
from lantern_jax.teacher import align, token_alignment
from lantern_jax.teacher.client import ApiTeacher
from lantern_jax.teacher.config import TeacherConfig
from lantern_jax.teacher.label import label_pairs, read_records
from lantern_jax.teacher.server import serve_in_thread
from teacher_fixtures import expert_records, synth_pairs, write_pairs_file

K = 20


@pytest.fixture(scope="module")
def labeled(tmp_path_factory):
    """(pairs, teacher records) labeled through the real client and the simulated server."""
    pairs = synth_pairs(6, seed=21)
    out = tmp_path_factory.mktemp("align") / "records.jsonl"
    with serve_in_thread(pairs) as (url, _):
        config = TeacherConfig(base_url=url, api_key_env=None, progress=False, top_logprobs=K,
                               record_top_logprobs=K, concurrency=6)
        label_pairs(pairs, ApiTeacher(config), str(out), progress=False)
    records = sorted(read_records(str(out)), key=lambda r: r["pair_id"])
    assert records and all(r["logprobs"] and r["assessment"] for r in records)
    return pairs, records


@pytest.fixture(scope="module")
def records(labeled):
    return labeled[1]


@pytest.fixture(scope="module")
def qwen():
    return prompts.qwen_encoding()


@pytest.fixture(scope="module")
def smollm2():
    return gguf.load_gguf_tokenizer(gguf.smollm2_gguf_path())


@pytest.fixture(scope="module")
def domain_bpe():
    """Trained as pipeline.py does, on other pairs' prompts and teacher answers."""
    other = synth_pairs(40, seed=5)
    answers, _ = expert_records(other)
    texts = [pointers.inhouse_messages(p)[0]["content"] + "\n" + (r["raw_text"] or "") for p, r in zip(other, answers)]
    return train_tokenizer(texts, 1024)


def _expected_tail(content, text, vocab, token_ids):
    """Per student token: None off teacher boundaries, else the teacher mass that can't reach a student
    id, computed directly: along the chosen path, each teacher position's mass beyond its top-k plus
    the candidates whose bytes are unknown (U+FFFD strings), scaled by the chosen path's probability."""
    starts, pos = {}, 0
    ends = []
    for j, entry in enumerate(content):
        starts[pos] = j
        pos += len(entry["token"].encode("utf-8"))
        ends.append(pos)
    assert pos == len(text.encode("utf-8"))
    out, pos = [], 0
    for tid in token_ids:
        c, pos = pos, pos + len(vocab.token_bytes(int(tid)))
        j = starts.get(c)
        if j is None:
            out.append(None)
            continue
        tail, path = 0.0, 1.0
        while True:
            alts = content[j]["top_logprobs"]
            tail += path * (1.0 - sum(math.exp(a["logprob"]) for a in alts))
            tail += path * sum(math.exp(a["logprob"]) for a in alts if "\ufffd" in a["token"])
            if ends[j] >= pos:
                break
            path *= math.exp(content[j]["logprob"])
            j += 1
        out.append(tail)
    return out


def test_identical_tokenizers_give_the_teacher_distribution_exactly(records, qwen):
    enc = qwen._tokenizer
    for r in records:
        seq = token_alignment.align_to_student(r["logprobs"], qwen, k=K, text=r["raw_text"])
        teacher_ids = [enc.encode_single_token(t["token"].encode("utf-8")) for t in r["logprobs"]]
        assert seq.token_ids.tolist() == teacher_ids
        assert seq.kd_mask.all() and not seq.prefix_mapped.any() and not seq.unmapped.any()
        for i, entry in enumerate(r["logprobs"]):
            want = sorted(((enc.encode_single_token(a["token"].encode("utf-8")), a["logprob"])
                           for a in entry["top_logprobs"]), key=lambda t: (-t[1], t[0]))
            n = len(want)
            assert list(zip(seq.topk_ids[i, :n].tolist(), seq.topk_logprobs[i, :n].tolist())) == want  # bit-exact
            assert np.all(seq.topk_logprobs[i, n:] == -np.inf)
            assert seq.tail[i] == pytest.approx(1 - sum(math.exp(lp) for _, lp in want), abs=1e-12)


@pytest.mark.parametrize("student", ["smollm2", "domain_bpe"])
@pytest.mark.real_weights
def test_different_tokenizers_report_covered_mass_and_keep_the_tail_exact(records, student, request):
    tok = request.getfixturevalue(student)
    vocab = token_alignment.StudentVocab(tok)
    # Some candidates made unreadable (partial UTF-8 strings, no bytes): their mass must land in the tail.
    damaged = copy.deepcopy(records)
    for r in damaged:
        for entry in r["logprobs"][::7]:
            for alt in entry["top_logprobs"][1::3]:
                if alt["token"] != entry["token"]:
                    alt["token"] = "\ufffd" + alt["token"]
    for r in damaged:
        seq = token_alignment.align_to_student(r["logprobs"], vocab, k=64, text=r["raw_text"])
        assert seq.token_ids.tolist() == tok(r["raw_text"], add_special_tokens=False)["input_ids"]
        expected = _expected_tail(r["logprobs"], r["raw_text"], vocab, seq.token_ids)
        kd = np.array([e is not None for e in expected])
        assert (seq.kd_mask == kd).all() and 0.5 < kd.mean() < 1.0  # different tokenizers: some mid-token starts
        np.testing.assert_allclose(seq.tail[kd], [e for e in expected if e is not None], rtol=0, atol=1e-6)
        np.testing.assert_allclose(seq.tail, seq.unmapped + seq.teacher_missing + seq.truncated, rtol=0, atol=1e-9)
        assert seq.unmapped.sum() > 0 and not seq.truncated.any()
        # Off boundaries: a hard label (the target at probability 1), distinct padding at probability 0.
        rows = np.flatnonzero(~seq.kd_mask)
        assert (seq.topk_ids[rows, 0] == seq.token_ids[rows]).all() and (seq.topk_logprobs[rows, 0] == 0).all()
        assert np.isneginf(seq.topk_logprobs[rows, 1:]).all()
    # Cutting to k moves the cut mass into the tail, still exactly.
    seq = token_alignment.align_to_student(damaged[0]["logprobs"], vocab, k=3, text=damaged[0]["raw_text"])
    assert seq.truncated.sum() > 0
    np.testing.assert_allclose(seq.tail, seq.unmapped + seq.teacher_missing + seq.truncated, rtol=0, atol=1e-9)

    rows, report = align.align_records(records, tok, k=K)
    print(f"\n[{student}]\n{report}")
    assert report.records == len(records) and 0.5 < report.boundary_share < 1.0
    c = report.covered
    assert 0.5 < c["min"] <= c["p5"] <= c["p50"] <= c["p95"] <= 1 + 1e-9 and c["min"] <= c["mean"] <= 1
    assert report.covered["mean"] == pytest.approx(1 - report.unmapped - report.teacher_missing - report.truncated)
    assert report.labels == {"teacher": len(records), "hard": 0, "none": 0}
    assert "covered mass per KD position: mean" in str(report)


@pytest.mark.real_weights
def test_records_become_d_t_and_round_trip(records, smollm2, tmp_path):
    rows, _ = align.align_records(records, smollm2, k=K)
    eos = smollm2.eos_token_id
    for row, r in zip(rows, records):
        T = len(row["token_ids"])
        assert row["token_ids"].dtype == np.int32 and row["topk_ids"].dtype == np.int32
        assert row["topk_logprobs"].dtype == np.float32 and row["label_probs"].dtype == np.float32
        assert row["topk_ids"].shape == row["topk_logprobs"].shape == (T, K) and row["kd_mask"].shape == (T,)
        assert all(len(set(ids)) == K for ids in row["topk_ids"].tolist())  # no id counted twice
        assert row["token_ids"][-1] == eos and not row["kd_mask"][-1]  # the teacher stopped: so does the student
        assert np.all(np.exp(row["topk_logprobs"].astype(np.float64)).sum(-1) <= 1 + 1e-6)
    datasets.write_dataset("d_t", {"train": rows}, tmp_path)
    back = list(datasets.read_dataset("d_t", tmp_path, "train"))
    assert [b["pair_id"] for b in back] == [r["pair_id"] for r in rows]
    for b, row in zip(back, rows):
        for field in ("token_ids", "topk_ids", "topk_logprobs", "label_probs"):
            assert b[field].dtype == row[field].dtype
            np.testing.assert_array_equal(b[field], row[field])
        assert b["generated_text"] == row["generated_text"]


def test_label_probs_come_from_the_fit_level_token(records):
    for r in records:
        got = token_alignment.align_label_probs(r)
        fit = r["fit_probs"]
        assert got.source == "teacher" and got.probs.tolist() == pytest.approx([fit[lvl] for lvl in FIT_LEVELS])
        assert got.unmatched == pytest.approx(1 - fit["mass"])
        again = token_alignment.align_label_probs({**r, "fit_probs": None})  # read from the stored top-20 logprobs
        np.testing.assert_allclose(again.probs, got.probs, atol=1e-6)
    bare = {**records[0], "fit_probs": None, "logprobs": None}
    hard = token_alignment.align_label_probs(bare)
    assert hard.source == "hard" and hard.unmatched == 1.0
    assert FIT_LEVELS[int(np.argmax(hard.probs))] == records[0]["assessment"]["fit_level"]


def test_partial_utf8_tokens_are_placed_by_the_text(qwen):
    enc = qwen._tokenizer
    text = 'naïve 𝔘nicode ✓ 龘 {"fit_level": "high"}'
    pieces = [enc.decode_single_token_bytes(i) for i in enc.encode(text)]
    assert any(p.decode("utf-8", "replace") != p.decode("utf-8", "ignore") for p in pieces)  # some split a char
    content = []
    for n, raw in enumerate(pieces):
        token = raw.decode("utf-8", "replace")
        content.append({"token": token, "logprob": -0.1,
                        "top_logprobs": [{"token": token, "logprob": -0.1}, {"token": " job", "logprob": -3.0 - n}]})
    seq = token_alignment.align_to_student(content, qwen, k=4, text=text)
    assert seq.token_ids.tolist() == enc.encode(text) and seq.kd_mask.all()
    assert (seq.topk_ids[:, 0] == seq.token_ids).all() and np.allclose(seq.topk_logprobs[:, 0], -0.1)


def _malformed(records):
    bad_lp = copy.deepcopy(records[1])
    bad_lp["logprobs"][3]["top_logprobs"][2]["logprob"] = "-0.5"
    wrong_text = {**records[1], "raw_text": records[1]["raw_text"].replace('"', "'", 1)}
    return [(bad_lp, r"logprobs\[3\].top_logprobs\[2\]: 'logprob' must be a number"),
            (wrong_text, "teacher token 0 .* does not match the text at byte 0"),
            ({**records[1], "logprobs": None}, "no token logprobs"),
            ({**records[1], "raw_text": None}, "not a teacher record")]


def test_malformed_records_fail_with_one_line_naming_the_record(records, qwen):
    for bad, message in _malformed(records):
        with pytest.raises(token_alignment.AlignmentError, match=message) as info:
            align.align_records([records[0], bad], qwen, k=K)
        text = str(info.value)
        assert text.startswith(f"record 2 (pair_id {records[1]['pair_id']!r}): ") and "\n" not in text


def test_cli_writes_d_t_with_prompts_and_prints_the_report(labeled, tmp_path, capsys):
    pairs, records = labeled
    path = tmp_path / "records.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    pairs_file = write_pairs_file(tmp_path / "pairs.jsonl", pairs)
    assert align.main(["--records", str(path), "--tokenizer", "qwen", "--out", str(tmp_path / "data"),
                       "--pairs", pairs_file, "--k", "5"]) == 0
    out = capsys.readouterr().out
    assert "covered mass per KD position: mean" in out and "100.0% at teacher token boundaries" in out
    back = list(datasets.read_dataset("d_t", tmp_path / "data", "train"))
    by_id = {p.pair_id: p for p in pairs}
    assert [b["pair_id"] for b in back] == [r["pair_id"] for r in records]
    assert all(json.loads(b["prompt"]) == pointers.inhouse_messages(by_id[b["pair_id"]]) for b in back)
    assert back[0]["topk_ids"].shape[1] == 5

    bad, _ = _malformed(records)[0]
    path.write_text(json.dumps(records[0]) + "\n" + json.dumps(bad) + "\n")
    assert align.main(["--records", str(path), "--tokenizer", "qwen", "--out", str(tmp_path / "bad")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith(f"error: record 2 (pair_id {records[1]['pair_id']!r})")
