"""Greedy generation tokens/s: our jitted KV-cache decoder vs transformers' PyTorch `generate`,
same SmolLM2-135M-Instruct weights, same prompts, batch 1 and 8, 128 new tokens.

    python benchmarks/generate_vs_hf.py [--new-tokens 128] [--repeats 3] [--threads N]

Both sides generate exactly `--new-tokens` tokens (no stop token) after a warm-up run (compile /
allocator), outputs are compared token for token, and the median of `--repeats` timed runs is
reported. Each batch size also prints the time per decode step and, per framework, the time of the
step's matrix products alone (every weight matrix applied to the batch's rows, independently): their
ratio is what the two frameworks' kernels allow. The last line is the ratio ours / transformers.
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import numpy as np

QUESTIONS = ["What does a data engineer do?", "Name two skills of a welder.",
             "Is a nurse with 5 years of ICU experience a fit for a charge nurse role?",
             "Write a short job ad for a barista.", "What is a preventive maintenance plan?",
             "Explain what a forklift certification is.", "Summarise the duties of a payroll clerk.",
             "What makes a good software tester?"]


def read_bandwidth(n_bytes: int = 1 << 29, repeats: int = 5) -> float:
    """Bytes/s XLA reads on this machine: a jitted sum over an f32 array the size of a few models."""
    import jax
    import jax.numpy as jnp

    x = jnp.ones(n_bytes // 4, jnp.float32)
    total = jax.jit(jnp.sum)
    total(x).block_until_ready()
    best = min(_seconds(lambda: total(x).block_until_ready()) for _ in range(repeats))
    return n_bytes / best


def matmul_seconds_ours(model, batch: int, repeats: int = 5) -> float:
    """One decode step's matrix products alone: every Dense of `model` and the output head applied
    to `batch` rows, in one jitted call. What XLA's kernels need for a step at this batch size."""
    import jax
    from flax import nnx

    from lantern_jax.models import layers as L

    graphdef, state = nnx.split(model)
    widths = sorted({d.kernel.shape[0] for _, d in nnx.iter_modules(model) if isinstance(d, L.Dense)}
                    | {model.cfg.hidden_size})
    xs = {w: jax.random.normal(jax.random.key(w), (batch, w)) for w in widths}

    @jax.jit
    def products(state, xs):
        m = nnx.merge(graphdef, state)
        dense = [d for _, d in nnx.iter_modules(m) if isinstance(d, L.Dense)]
        return [d(xs[d.kernel.shape[0]]) for d in dense] + [m.logits(xs[m.cfg.hidden_size])]

    jax.block_until_ready(products(state, xs))
    return min(_seconds(lambda: jax.block_until_ready(products(state, xs))) for _ in range(repeats))


def matmul_seconds_theirs(ref, batch: int, repeats: int = 5) -> float:
    """The same for the PyTorch model: every nn.Linear (the LM head included) on `batch` rows."""
    import torch

    linears = [m for m in ref.modules() if isinstance(m, torch.nn.Linear)]
    xs = {m.in_features: torch.randn(batch, m.in_features) for m in linears}
    with torch.no_grad():
        run = lambda: [m(xs[m.in_features]) for m in linears]  # noqa: E731
        run()
        return min(_seconds(run) for _ in range(repeats))


def _seconds(fn) -> float:
    tic = time.perf_counter()
    fn()
    return time.perf_counter() - tic


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--new-tokens", type=int, default=128)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0: torch default)")
    args = ap.parse_args()

    import jax
    import torch
    import transformers
    from flax import nnx

    from lantern_jax.generate import SamplingConfig, generate_ids
    from lantern_jax.models import gguf, hf, sources

    if args.threads:
        torch.set_num_threads(args.threads)
    model, tok = sources.load_gguf(gguf.smollm2_gguf_path())
    with tempfile.TemporaryDirectory() as export:
        hf.save_hf(model, export, tokenizer=tok)
        ref = transformers.LlamaForCausalLM.from_pretrained(export).eval()
    prompts = [tok(tok.apply_chat_template([{"role": "user", "content": q}], tokenize=False,
                                           add_generation_prompt=True), add_special_tokens=False)["input_ids"]
               for q in QUESTIONS]
    N = args.new_tokens
    cfg = SamplingConfig(max_new_tokens=N)
    print(f"SmolLM2-135M-Instruct, greedy, {N} new tokens, torch threads {torch.get_num_threads()}")

    def ours(batch):
        return [o[0].tolist() for o in generate_ids(model, batch, [], cfg, pad_id=tok.pad_token_id)]

    def theirs(batch):
        width = max(map(len, batch))  # left padding, as batched decoder generation needs
        ids = torch.tensor([[tok.pad_token_id] * (width - len(p)) + p for p in batch])
        mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in batch])
        with torch.no_grad():
            out = ref.generate(ids, attention_mask=mask, max_new_tokens=N, min_new_tokens=N,
                               do_sample=False, pad_token_id=tok.pad_token_id)
        return out[:, width:].tolist()

    def timed(fn, batch):
        result = fn(batch)  # warm-up
        times = []
        for _ in range(args.repeats):
            tic = time.perf_counter()
            result = fn(batch)
            times.append(time.perf_counter() - tic)
        return result, statistics.median(times)

    ratios = []
    for B in (1, 8):
        batch = prompts[:B]
        (a, ta), (b, tb) = timed(ours, batch), timed(theirs, batch)
        same = sum(x == y for x, y in zip(a, b))
        first_diff = [next((i for i, (u, v) in enumerate(zip(x, y)) if u != v), None) for x, y in zip(a, b)]
        tps_ours, tps_hf = B * N / ta, B * N / tb
        ratios.append(tps_ours / tps_hf)
        if B == 1:
            ratio_b1_tps = (tps_ours, tps_hf)
        print(f"batch {B}: ours {tps_ours:7.1f} tok/s ({ta:.2f}s)  transformers {tps_hf:7.1f} tok/s ({tb:.2f}s)  "
              f"identical outputs {same}/{B}" + ("" if same == B else f" (first differing token: {first_diff})"))
        # Decoding is matrix products over all weights each step: their time alone in each
        # framework (run independently, so threads may overlap them) is what its kernels allow.
        mm_ours, mm_hf = matmul_seconds_ours(model, B), matmul_seconds_theirs(ref, B)
        print(f"  per step: ours {1e3 * ta / N:.1f} ms, transformers {1e3 * tb / N:.1f} ms; their matrix "
              f"products alone: ours {1e3 * mm_ours:.1f} ms, transformers {1e3 * mm_hf:.1f} ms "
              f"(kernel ratio {mm_hf / mm_ours:.2f}x)")
    # batch-1 decoding reads every weight once per token: bandwidth / weight bytes bounds it
    weights = sum(x.size * x.dtype.itemsize for x in jax.tree.leaves(nnx.state(model, nnx.Param)))
    bound = read_bandwidth() / weights
    print(f"batch-1 bound from memory bandwidth: {bound:.1f} tok/s ({weights / 1e6:.0f} MB of fp32 weights); "
          f"ours at {100 * ratio_b1_tps[0] / bound:.0f} % of it, transformers at {100 * ratio_b1_tps[1] / bound:.0f} %")
    print("ratio ours/transformers: " + ", ".join(f"batch {b} {r:.2f}x" for b, r in zip((1, 8), ratios))
          + " (goal >= 3x)")


if __name__ == "__main__":
    np.set_printoptions(precision=3)
    main()
