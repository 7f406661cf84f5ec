"""D_t production: the in-house teacher's records hold its generation and per-token top-k, are
sharded by process, and a rerun (e.g. after a kill, with a torn last line) completes each shard
with every pair exactly once."""
import json

import numpy as np
from flax import nnx

from lantern_jax.data import datasets, pointers, synth
from lantern_jax.data.tokenizer import train_tokenizer
from lantern_jax.models.decoder import DecoderConfig, DecoderLM
from lantern_jax.teacher import inhouse
from lantern_jax.teacher.label import shard_path


def test_produce_sharded_resumable_and_d_t_ready(tmp_path):
    pairs = synth.generate_pairs(10, seed=1)
    tok = train_tokenizer([pointers.inhouse_messages(p)[0]["content"] for p in pairs], vocab_size=512)
    model = DecoderLM(DecoderConfig(vocab_size=len(tok), hidden_size=32, num_layers=1, num_heads=2,
                                    num_kv_heads=1, intermediate_size=64, tie_word_embeddings=True),
                      rngs=nnx.Rngs(0))
    out = str(tmp_path / "d_t.jsonl")
    kw = dict(topk=4, max_new_tokens=6, batch_size=4, process_count=2, log_every=0)
    first = inhouse.produce(model, tok, pairs[:4], out, process_index=0, **kw)
    with open(shard_path(out, 0, 2), "a") as f:
        f.write('{"pair_id": "torn')  # a kill mid-write
    again = inhouse.produce(model, tok, pairs, out, process_index=0, **kw)
    assert again["skipped"] == first["written"]
    other = inhouse.produce(model, tok, pairs, out, process_index=1, **kw)
    records = [json.loads(line) for p in tmp_path.iterdir() for line in p.read_text().splitlines()]
    assert sorted(r["pair_id"] for r in records) == sorted(p.pair_id for p in pairs)  # each once
    assert first["written"] + again["written"] + other["written"] == len(pairs)
    r = records[0]
    n = len(r["token_ids"])
    assert 1 <= n <= 6 and np.asarray(r["topk_ids"]).shape == (n, 4)
    assert np.allclose(np.asarray(r["topk_logprobs"])[:, 0], np.max(r["topk_logprobs"], axis=1))
    assert r["parse_error"] and r["assessment"] is None  # a random model doesn't write JSON
    datasets.write_dataset("d_t", {"train": [inhouse.d_t_record(r, 4) for r in records]}, tmp_path / "tfds")
    back = datasets.read_dataset("d_t", tmp_path / "tfds", "train")
    assert len(back) == len(pairs) and back[0]["topk_ids"].shape[1] == 4
