"""The pipeline's run folder: the one place that knows where each stage reads and writes.

    <root>/data/pairs_<split>.jsonl   D_base per split          <root>/data/tfds     tfds builds
    <root>/blackbox/records.jsonl     black-box teacher records <root>/tokenizer     domain tokenizer
    <root>/<stage>/export             a trained model (HF folder) <root>/<stage>/DONE.json
"""
from __future__ import annotations

import os

from lantern_jax.data import records, synth
from lantern_jax.data.schema import Pair

SPLITS = synth.SPLITS
EVAL_SPLITS = ("test", "heldout_occupation", "heldout_company")  # what the students are judged on


class RunDir:
    def __init__(self, root: str):
        self.root = os.path.abspath(root)

    def __call__(self, *parts: str) -> str:
        return os.path.join(self.root, *parts)

    def pairs_path(self, split: str) -> str:
        return self("data", f"pairs_{split}.jsonl")

    def pairs(self, split: str) -> list[Pair]:
        return synth.read_pairs(self.pairs_path(split))

    def all_pairs(self) -> dict[str, Pair]:
        return {p.pair_id: p for s in SPLITS for p in self.pairs(s)}

    @property
    def tfds(self) -> str:
        return self("data", "tfds")

    @property
    def tokenizer(self) -> str:
        return self("tokenizer")

    def export(self, stage: str) -> str:
        return self(stage, "export")

    @property
    def blackbox_records_path(self) -> str:
        return self("blackbox", "records.jsonl")

    def blackbox_records(self) -> list[dict]:
        """The black-box teacher's records ([] before it has labelled anything)."""
        return records.read_jsonl(self.blackbox_records_path, missing_ok=True)

    def blackbox_assessments(self) -> dict[str, dict | None]:
        """pair id -> the black-box teacher's parsed Assessment (None where it did not parse)."""
        return {r["pair_id"]: r.get("assessment") for r in self.blackbox_records()}
