"""Greedy generation with the real SmolLM2-135M-Instruct weights equals transformers' PyTorch
`generate`, token for token (3 chat prompts, 32 new tokens); ours runs them as one padded batch."""
import pytest

torch = pytest.importorskip("torch")
import transformers  # noqa: E402

from lantern_jax.generate import SamplingConfig, generate_ids  # noqa: E402
from lantern_jax.models import gguf, hf, sources  # noqa: E402

pytestmark = [pytest.mark.slow, pytest.mark.real_weights]

PROMPTS = ["What does a data engineer do?",
           "Is a nurse with 5 years of ICU experience a good fit for an ICU charge nurse role?",
           "Name two skills of a welder."]


def test_greedy_equals_transformers_generate(tmp_path):
    try:
        model, tok = sources.load_gguf(gguf.smollm2_gguf_path())
    except FileNotFoundError as e:
        pytest.skip(str(e))
    hf.save_hf(model, tmp_path, tokenizer=tok)
    ref = transformers.LlamaForCausalLM.from_pretrained(tmp_path).eval()
    prompts = [tok(tok.apply_chat_template([{"role": "user", "content": p}], tokenize=False,
                                           add_generation_prompt=True), add_special_tokens=False)["input_ids"]
               for p in PROMPTS]
    ours = generate_ids(model, prompts, [], SamplingConfig(max_new_tokens=32), pad_id=tok.pad_token_id)
    for ids, (tokens, *_) in zip(prompts, ours):
        with torch.no_grad():
            out = ref.generate(torch.tensor([ids]), attention_mask=torch.ones(1, len(ids), dtype=torch.long),
                               max_new_tokens=32, min_new_tokens=32, do_sample=False,
                               pad_token_id=tok.pad_token_id)
        expected = out[0, len(ids):].tolist()
        assert tokens.tolist() == expected, (tok.decode(tokens), tok.decode(expected))
