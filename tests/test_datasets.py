"""tfds array_record builds of D_base / D_seed / D_t / D_cls: write -> read back (tfds and grain)."""
import json

import grain
import numpy as np
import pytest

from lantern_jax.data import datasets, synth
from lantern_jax.data.schema import FIT_LEVELS, DataError

K = 5


def d_t_records(n, seed=0):
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        t = 3 + i  # ragged lengths across records
        logits = rng.normal(size=(t, K)).astype(np.float32)
        out.append({"pair_id": f"p{i}", "prompt": f"prompt {i} — ünïcode", "generated_text": f"gen {i}",
                    "token_ids": rng.integers(0, 49152, size=t).astype(np.int32),
                    "topk_ids": rng.integers(0, 49152, size=(t, K)).astype(np.int32),
                    "topk_logprobs": logits - np.log(np.exp(logits).sum(-1, keepdims=True)),
                    "label_probs": np.array([0.1, 0.3, 0.6], np.float32)})
    return out


def loader(source, batch_size=None):
    ops = [grain.transforms.Batch(batch_size=batch_size)] if batch_size else []
    sampler = grain.samplers.IndexSampler(num_records=len(source), shuffle=False, num_epochs=1,
                                          shard_options=grain.sharding.NoSharding(), seed=0)
    return grain.DataLoader(data_source=source, sampler=sampler, operations=ops, worker_count=0)


def test_d_t_round_trip_keeps_arrays_exact(tmp_path):
    records = d_t_records(4)
    path = datasets.write_dataset("d_t", {"train": records, "dev": records[:1]}, tmp_path)
    assert path == tmp_path / "d_t" / "1.0.0" and any(path.glob("*.array_record*"))
    source = datasets.read_dataset("d_t", tmp_path, "train")
    assert len(source) == 4 and len(datasets.read_dataset("d_t", tmp_path, "dev")) == 1
    for want, got in zip(records, loader(source)):
        assert got["pair_id"] == want["pair_id"] and got["prompt"] == want["prompt"]
        for field, dtype in (("token_ids", np.int32), ("topk_ids", np.int32), ("topk_logprobs", np.float32),
                             ("label_probs", np.float32)):
            assert got[field].dtype == dtype
            np.testing.assert_array_equal(got[field], want[field])
        assert got["topk_ids"].shape == (len(want["token_ids"]), K)


def test_d_base_round_trips_pairs_through_grain(tmp_path):
    pairs = synth.generate_pairs(6, seed=1)
    datasets.write_dataset("d_base", {"train": pairs[:4], "test": pairs[4:]}, tmp_path)
    ds = datasets.grain_dataset("d_base", tmp_path, "train").map(datasets.record_to_pair)
    assert [p.to_dict() for p in ds] == [p.to_dict() for p in pairs[:4]]
    test = datasets.read_dataset("d_base", tmp_path, "test")
    assert [r["fit_level"] for r in test] == [p.truth["fit_level"] for p in pairs[4:]]
    shuffled = [r["pair_id"] for r in datasets.grain_dataset("d_base", tmp_path, "train", seed=7)]
    assert sorted(shuffled) == sorted(p.pair_id for p in pairs[:4])


def test_d_seed_and_d_cls_round_trip(tmp_path):
    seed_records = [{"pair_id": f"p{i}", "prompt": "assess this", "target": json.dumps({"fit_level": "high"}),
                     "provenance": {"teacher": "simulated", "prompt_version": "v1", "review": "accept"}}
                    for i in range(3)]
    datasets.write_dataset("d_seed", seed_records, tmp_path)
    got = list(datasets.read_dataset("d_seed", tmp_path, "train"))
    assert [json.loads(r["provenance"]) for r in got] == [r["provenance"] for r in seed_records]
    assert json.loads(got[0]["target"]) == {"fit_level": "high"}

    cls_records = [{"pair_id": f"p{i}", "text": f"text {i}", "label": FIT_LEVELS[i % 3],
                    "soft_label": np.array([0.2, 0.3, 0.5], np.float32)} for i in range(5)]
    datasets.write_dataset("d_cls", {"train": cls_records}, tmp_path)
    batches = list(loader(datasets.read_dataset("d_cls", tmp_path, "train"), batch_size=2))
    assert [b["soft_label"].shape for b in batches] == [(2, 3), (2, 3), (1, 3)]
    labels = np.concatenate([b["label"] for b in batches])
    np.testing.assert_array_equal(labels, [0, 1, 2, 0, 1])
    assert list(np.concatenate([b["pair_id"] for b in batches])) == [f"p{i}" for i in range(5)]


def test_tfds_data_source_reads_the_build_directly(tmp_path):
    import tensorflow_datasets as tfds

    datasets.write_dataset("d_cls", [{"pair_id": "a", "text": "t", "label": 2, "soft_label": [0, 0, 1]}], tmp_path)
    record = tfds.data_source("d_cls", data_dir=str(tmp_path), split="train")[0]
    assert record["pair_id"] == b"a" and record["label"] == 2  # raw tfds: text is bytes


def test_errors_are_one_line_and_name_the_path(tmp_path):
    with pytest.raises(DataError, match=str(tmp_path / "d_t" / "1.0.0")):
        datasets.read_dataset("d_t", tmp_path, "train")
    datasets.write_dataset("d_t", d_t_records(2), tmp_path)
    with pytest.raises(DataError, match="no split 'dev'"):
        datasets.read_dataset("d_t", tmp_path, "dev")
    with pytest.raises(DataError, match="already exists"):
        datasets.write_dataset("d_t", d_t_records(1), tmp_path)
    assert len(datasets.read_dataset("d_t", tmp_path, "train")) == 2  # the refused write kept the build
    bad = d_t_records(2)
    bad[1]["topk_ids"] = bad[1]["topk_ids"][:, :3]
    with pytest.raises(DataError, match="d_t/train record 1: field 'topk_ids' has shape"):
        datasets.write_dataset("d_t", bad, tmp_path / "other")
    missing = d_t_records(1)
    del missing[0]["label_probs"]
    with pytest.raises(DataError, match="missing field 'label_probs'") as err:
        datasets.write_dataset("d_t", missing, tmp_path / "other")
    assert "\n" not in str(err.value)
    with pytest.raises(DataError, match="unknown dataset"):
        datasets.write_dataset("d_x", [], tmp_path)
    datasets.write_dataset("d_t", d_t_records(3), tmp_path, overwrite=True)
    assert len(datasets.read_dataset("d_t", tmp_path, "train")) == 3
