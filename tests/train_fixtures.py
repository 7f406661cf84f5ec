"""Small real datasets for trainer tests: synth pairs -> D_seed / D_t / D_cls tfds builds, and a
domain tokenizer trained on them. Targets come from the generator's latent truth (what a perfect
teacher would write), top-k distributions from a smoothed one-hot on those targets."""
from __future__ import annotations

import json
import os

import numpy as np

from lantern_jax.data import datasets, synth
from lantern_jax.data.schema import EXPLANATION_OPENING, FIT_LEVELS
from lantern_jax.data.tokenizer import train_tokenizer


def truth_assessment(pair, max_requirements: int | None = None) -> str:
    reqs = [{"requirement": r["text"], "importance": r["importance"],
             "verdict": pair.truth["verdicts"][r["id"]], "evidence": pair.truth["evidence"][r["id"]]}
            for r in pair.job.truth["requirements"][:max_requirements]]
    fit = pair.truth["fit_level"]
    return json.dumps({"requirements": reqs, "fit_level": fit,
                       "explanation": EXPLANATION_OPENING.format(fit_level=fit)})


def compact_prompt(pair, max_requirements: int | None = None) -> str:
    job = "\n".join(r["text"] for r in pair.job.truth["requirements"][:max_requirements])
    member = "; ".join(pair.member.skills[:6])
    return json.dumps([{"role": "user", "content": f"JOB: {pair.job.title}\n{job}\nMEMBER: "
                                                   f"{pair.member.headline}. {member}"}])


def build(root: str, n_train: int = 48, n_dev: int = 16, vocab: int = 512, k: int = 4,
          max_requirements: int | None = None):
    """Writes d_seed, d_t, d_cls under root/data and a tokenizer under root/tokenizer."""
    target = lambda p: truth_assessment(p, max_requirements)  # noqa: E731
    prompt = lambda p: compact_prompt(p, max_requirements)  # noqa: E731
    pairs = {"train": synth.generate_pairs(n_train, seed=0, split="train"),
             "dev": synth.generate_pairs(n_dev, seed=0, split="dev")}
    texts = [prompt(p) + target(p) for ps in pairs.values() for p in ps]
    tok = train_tokenizer(texts, vocab_size=vocab)
    tok.save_pretrained(os.path.join(root, "tokenizer"))
    data_dir = os.path.join(root, "data")
    rng = np.random.default_rng(0)
    seed, dt, cls = {}, {}, {}
    for split, ps in pairs.items():
        seed[split] = [{"pair_id": p.pair_id, "prompt": prompt(p), "target": target(p),
                        "provenance": {"teacher": "truth"}} for p in ps]
        dt[split] = []
        for p in ps:
            ids = tok(target(p), add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
            top = np.stack([np.r_[i, rng.choice(vocab, k - 1, replace=False)] for i in ids]).astype(np.int32)
            lp = np.log(np.r_[0.85, np.full(k - 1, 0.1 / (k - 1))])[None].repeat(len(ids), 0)
            dt[split].append({"pair_id": p.pair_id, "prompt": prompt(p),
                              "generated_text": target(p), "token_ids": np.asarray(ids, np.int32),
                              "topk_ids": top, "topk_logprobs": lp.astype(np.float32),
                              "label_probs": np.eye(3, dtype=np.float32)[FIT_LEVELS.index(p.truth["fit_level"])]})
        cls[split] = [{"pair_id": p.pair_id, "text": json.loads(prompt(p))[0]["content"],
                       "label": p.truth["fit_level"],
                       "soft_label": (0.8 * np.eye(3)[FIT_LEVELS.index(p.truth["fit_level"])] + 0.2 / 3).astype(np.float32)}
                      for p in ps]
    datasets.write_dataset("d_seed", seed, data_dir)
    datasets.write_dataset("d_t", dt, data_dir)
    datasets.write_dataset("d_cls", cls, data_dir)
    return data_dir, os.path.join(root, "tokenizer")


def answering_decoder(cfg, answer_id: int, end_id: int):
    """A decoder whose greedy output is `answer_id` then `end_id` whatever the context: attention and
    MLP outputs zeroed, embeddings and head hand-set (any token -> answer -> end of turn)."""
    from flax import nnx  # noqa: PLC0415
    from lantern_jax.models.decoder import DecoderLM  # noqa: PLC0415
    model = DecoderLM(cfg, rngs=nnx.Rngs(0))
    for block in model.model.layers.blocks:
        block.attn.o.kernel[...] = np.zeros(block.attn.o.kernel.shape, np.float32)
        block.down.kernel[...] = np.zeros(block.down.kernel.shape, np.float32)
    embed = np.zeros((cfg.vocab_size, cfg.hidden_size), np.float32)
    embed[:, 0] = 1.0
    embed[answer_id] = np.eye(cfg.hidden_size)[1]
    head = np.zeros((cfg.hidden_size, cfg.vocab_size), np.float32)
    head[0, answer_id] = head[1, end_id] = 4.0  # x RMS-normalised one-hot (sqrt(64) = 8): logit 32
    model.model.embed.embedding[...] = embed
    model.lm_head.kernel[...] = head
    return model
