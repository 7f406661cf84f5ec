"""grain input: tfds records -> tokenised, fixed-shape examples -> per-process batches -> global arrays.

Decoder examples (teacher SFT and explainer KD) are the chat-templated prompt followed by the
assistant's target; only target tokens (and the end-of-turn token) are trained. Position j
predicts token j+1, so `labels`, `loss_mask` and the teacher's top-k are all aligned to the
*predicting* position. Encoder examples (classifier KD) are the pair text, a hard label and the
teacher's soft label probabilities. Every example is padded to `max_length`: one compiled step.
"""
from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping, Sequence
from typing import Any

import grain
import jax
import numpy as np

from lantern_jax import mesh as mesh_lib
from lantern_jax.data import datasets
from lantern_jax.data.schema import FIT_LEVELS

IGNORE = 0  # label id at untrained positions (masked out; any valid id works)


def as_messages(prompt: str) -> list[dict[str, str]]:
    """A stored prompt: a JSON list of chat messages, or plain text as one user message."""
    text = prompt.strip()
    if text.startswith("["):
        try:
            messages = json.loads(text)
            if isinstance(messages, list) and all(isinstance(m, dict) and "content" in m for m in messages):
                return messages
        except ValueError:
            pass
    return [{"role": "user", "content": prompt}]


def prompt_ids(tokenizer, messages: Sequence[Mapping[str, str]]) -> list[int]:
    text = tokenizer.apply_chat_template(list(messages), tokenize=False, add_generation_prompt=True)
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def target_ids(tokenizer, target: str) -> list[int]:
    """The assistant turn as the chat template writes it: content, then end-of-turn."""
    return tokenizer(target, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]


def decoder_example(prompt: Sequence[int], target: Sequence[int], max_length: int, *,
                    topk_ids: np.ndarray | None = None, topk_logprobs: np.ndarray | None = None,
                    k: int = 0) -> dict[str, np.ndarray]:
    """Fixed-length arrays for one (prompt, target) sequence.

    Too long: the prompt loses tokens from its start (the instructions), never the target. With
    `k`, `teacher_ids`/`teacher_logprobs` [L, k] hold the teacher's top-k for each target token.
    """
    target = list(target)[:max_length]
    prompt = list(prompt)[max(0, len(prompt) + len(target) - max_length - 1):]
    ids = prompt + target
    L, n_prompt = max_length, len(prompt)
    out = {"input_ids": np.zeros(L, np.int32), "attention_mask": np.zeros(L, np.int32),
           "labels": np.full(L, IGNORE, np.int32), "loss_mask": np.zeros(L, np.float32)}
    n_in = min(len(ids) - 1, L)
    out["input_ids"][:n_in] = ids[:n_in]
    out["attention_mask"][:n_in] = 1
    # position j predicts ids[j + 1]; trained where that is a target token
    first = n_prompt - 1
    n_t = min(len(target), L - first)
    out["labels"][first:first + n_t] = target[:n_t]
    out["loss_mask"][first:first + n_t] = 1.0
    if k:
        out["teacher_ids"] = np.zeros((L, k), np.int32)
        out["teacher_logprobs"] = np.zeros((L, k), np.float32)
        if topk_ids is not None:
            out["teacher_ids"][first:first + n_t] = np.asarray(topk_ids)[:n_t, :k]
            out["teacher_logprobs"][first:first + n_t] = np.asarray(topk_logprobs)[:n_t, :k]
    return out


def classifier_example(tokenizer, text: str, label, soft_label, max_length: int) -> dict[str, np.ndarray]:
    enc = tokenizer(text, truncation=True, max_length=max_length, padding="max_length",
                    return_tensors="np")
    label = FIT_LEVELS.index(label) if isinstance(label, str) else int(label)
    soft = np.asarray(soft_label if soft_label is not None else np.eye(3)[label], np.float32)
    return {"input_ids": enc["input_ids"][0].astype(np.int32),
            "attention_mask": enc["attention_mask"][0].astype(np.int32),
            "label": np.int32(label), "soft_label": soft}


@dataclasses.dataclass
class Featurize(grain.transforms.Map):
    """Record -> example for one task (a grain transform, so workers can run it)."""
    task: str
    tokenizer: Any
    max_length: int
    topk: int = 0

    def map(self, r: Mapping[str, Any]) -> dict[str, np.ndarray]:
        if self.task == "classifier_kd":
            return classifier_example(self.tokenizer, r["text"], r["label"], r.get("soft_label"),
                                      self.max_length)
        prompt = prompt_ids(self.tokenizer, as_messages(r["prompt"]))
        if "token_ids" in r:  # D_t: the in-house teacher's own tokens (student vocabulary)
            target = list(np.asarray(r["token_ids"]).tolist())
            return decoder_example(prompt, target, self.max_length, k=self.topk,
                                   topk_ids=r.get("topk_ids"), topk_logprobs=r.get("topk_logprobs"))
        return decoder_example(prompt, target_ids(self.tokenizer, r["target"]), self.max_length,
                               k=self.topk)


def dataset(task: str, name: str, data_dir: str, split: str, tokenizer, *, max_length: int,
            topk: int = 0, seed: int = 0, shuffle: bool = True) -> grain.MapDataset:
    """This process's shard of a split, featurized (not yet batched)."""
    ds = grain.MapDataset.source(datasets.read_dataset(name, data_dir, split))
    if shuffle:
        ds = ds.shuffle(seed=seed)
    ds = ds[jax.process_index()::jax.process_count()]
    return ds.map(Featurize(task, tokenizer, max_length, topk))


def train_iterator(ds: grain.MapDataset, global_batch: int) -> grain.DatasetIterator:
    """Endless per-process batches; the iterator's state is checkpointed with the model."""
    per_process = global_batch // jax.process_count()
    return ds.repeat().batch(per_process, drop_remainder=True).to_iter_dataset().__iter__()


def eval_batches(ds: grain.MapDataset, global_batch: int, max_batches: int | None = None):
    per_process = global_batch // jax.process_count()
    batches = ds.batch(per_process, drop_remainder=True)
    n = len(batches) if max_batches is None else min(len(batches), max_batches)
    return [batches[i] for i in range(n)]


def to_global(batch: Mapping[str, np.ndarray], mesh: jax.sharding.Mesh) -> dict[str, jax.Array]:
    """Per-process numpy batch -> global arrays split over the data-parallel axes."""
    return {k: jax.make_array_from_process_local_data(mesh_lib.batch_sharding(mesh, v.ndim), v)
            for k, v in batch.items()}
