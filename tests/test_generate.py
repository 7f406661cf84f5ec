"""Generation: greedy decoding with the KV cache equals step-by-step full recomputation."""
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from lantern_jax.generate import SamplingConfig, bucket, generate_ids
from lantern_jax.models.decoder import DecoderConfig, DecoderLM

CFG = DecoderConfig(vocab_size=50, hidden_size=32, num_layers=2, num_heads=4, num_kv_heads=2,
                    intermediate_size=48)
forward = nnx.jit(lambda m, ids: m(ids))


def reference_greedy(model, prompt, n, stop):
    """Recomputes the whole sequence for every token (right-padded to one length: one compile;
    causal attention makes the padding after the last token irrelevant)."""
    ids = list(prompt)
    out = []
    for _ in range(n):
        padded = jnp.asarray([ids + [0] * (32 - len(ids))])
        nxt = int(np.argmax(np.asarray(forward(model, padded))[0, len(ids) - 1]))
        out.append(nxt)
        ids.append(nxt)
        if nxt in stop:
            break
    return out


def test_greedy_equals_full_recompute_and_stops():
    model = DecoderLM(CFG, rngs=nnx.Rngs(3))
    prompts = [[5, 9, 11, 3, 7], [8], [2, 4, 6]]
    n = 12
    # choose a stop token the first prompt produces midway, so stopping is exercised
    free = reference_greedy(model, prompts[0], n, stop=())
    stop = [free[4]]
    got = generate_ids(model, prompts, stop, SamplingConfig(max_new_tokens=n, top_logprobs=3))
    for p, (tokens, lps, top_i, top_lp) in zip(prompts, got):
        expected = reference_greedy(model, p, n, stop)
        assert tokens.tolist() == expected
        assert np.all(lps <= 0) and top_i.shape == (len(expected), 3)
        assert np.allclose(top_lp[:, 0], lps, atol=1e-5)  # greedy picks the top-1
    assert len(got[0][0]) <= 5  # stopped at the stop token


@pytest.mark.slow
def test_sampling_is_seeded_and_top_k_one_is_greedy():
    model = DecoderLM(CFG, rngs=nnx.Rngs(4))
    prompts = [[1, 2, 3], [4, 5]]
    a = generate_ids(model, prompts, [0], SamplingConfig(max_new_tokens=8, temperature=1.0, seed=7))
    b = generate_ids(model, prompts, [0], SamplingConfig(max_new_tokens=8, temperature=1.0, seed=7))
    assert all((x[0] == y[0]).all() for x, y in zip(a, b))
    greedy = generate_ids(model, prompts, [0], SamplingConfig(max_new_tokens=8))
    top1 = generate_ids(model, prompts, [0], SamplingConfig(max_new_tokens=8, temperature=1.0, top_k=1))
    tiny_p = generate_ids(model, prompts, [0], SamplingConfig(max_new_tokens=8, temperature=1.0, top_p=1e-6))
    for g, t, p in zip(greedy, top1, tiny_p):
        assert g[0].tolist() == t[0].tolist() == p[0].tolist()


def test_buckets():
    assert bucket(3, (1, 2, 4, 8)) == 4 and bucket(33, (32, 64)) == 64 and bucket(100, (32, 64)) == 100
