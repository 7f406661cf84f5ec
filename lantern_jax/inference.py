"""Running trained students: fit-classifier logits and explainer generations, for evaluation, the
audit and the ablations (serving has its own batched runners in `serve/`).

Both compile outside their timings: the first batch runs once before the clock starts. Given a
`desc`, each shows a progress bar (the audit's and evaluation's long runs are otherwise silent).
"""
from __future__ import annotations

import time

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from tqdm import tqdm

from lantern_jax import guided as guided_lib
from lantern_jax.data import pointers
from lantern_jax.data.input_pipeline import prompt_ids
from lantern_jax.generate import SamplingConfig, generate_ids

_forward = nnx.jit(lambda model, ids, mask: model(ids, mask))  # one trace per model and shape


def classify(model, tokenizer, texts, *, max_length: int, batch: int = 32,
             desc: str | None = None) -> tuple[np.ndarray, float]:
    """Logits [N, 3] and the steady-state latency per pair in ms (compile excluded)."""
    fwd = _forward
    encode = lambda chunk: {k: jnp.asarray(v) for k, v in tokenizer(  # noqa: E731
        chunk + [""] * (batch - len(chunk)), truncation=True, max_length=max_length,
        padding="max_length", return_tensors="np").items() if k in ("input_ids", "attention_mask")}
    jax.block_until_ready(fwd(model, *encode(texts[:batch]).values()))  # compile outside the timing
    out, tic = [], time.perf_counter()
    for start in tqdm(range(0, len(texts), batch), desc=desc, unit="batch", disable=desc is None, leave=False):
        chunk = texts[start:start + batch]
        out.append(np.asarray(fwd(model, *encode(chunk).values()))[:len(chunk)])
    return np.concatenate(out), 1000 * (time.perf_counter() - tic) / max(len(texts), 1)


def explain(model, tokenizer, pairs, *, max_new_tokens: int, batch: int = 32, guided: bool = False,
            desc: str | None = None) -> list[str]:
    """Greedy explainer outputs for the in-house prompt of each pair; `guided`: decoded under the
    Assessment schema (lantern_jax/guided.py), so every output parses."""
    cfg = SamplingConfig(max_new_tokens=max_new_tokens)
    ids = [prompt_ids(tokenizer, pointers.inhouse_messages(p)) for p in pairs]
    texts = []
    with tqdm(total=len(ids), desc=desc, unit="pair", disable=desc is None, leave=False) as bar:
        for start in range(0, len(ids), batch):
            chunk = ids[start:start + batch]
            if guided:
                texts += guided_lib.guided_assessments(model, tokenizer, chunk, max_new_tokens=max_new_tokens)
            else:
                outs = generate_ids(model, chunk, [tokenizer.eos_token_id], cfg, pad_id=tokenizer.pad_token_id)
                texts += [tokenizer.decode(o[0], skip_special_tokens=True) for o in outs]
            bar.update(len(chunk))
    return [pointers.expand(t, p) for t, p in zip(texts, pairs)]


def generation_latency(model, tokenizer, pairs, *, max_new_tokens: int) -> float:
    """ms per generated token for one batch, measured on its second run (the first compiles)."""
    ids = [prompt_ids(tokenizer, pointers.inhouse_messages(p)) for p in pairs]
    cfg = SamplingConfig(max_new_tokens=max_new_tokens)
    run = lambda: generate_ids(model, ids, [tokenizer.eos_token_id], cfg, pad_id=tokenizer.pad_token_id)  # noqa: E731
    run()
    tic = time.perf_counter()
    tokens = sum(len(o[0]) for o in run())
    return 1000 * (time.perf_counter() - tic) / max(tokens, 1)
