"""Quality gates over teacher records, human review files, and D_seed.

Gates (each returns a one-line reason when it rejects):
  schema      the output parses as an Assessment (opening sentence aside: that is `agreement`)
  agreement   the explanation opens with the stated fit level and names no other level anywhere
  coverage    every requirement found in the posting (chain: step 1's list) has a verdict
  grounding   "met"/"partially_met" evidence quotes the profile, and every quote is in the profile
  length      the explanation has between `min_words` and `max_words` words
  duplicates  no pair labeled twice, no requirement listed twice

Review: `export_review` writes JSONL + CSV with `accept`, `reject`, `edit` columns prefilled from
the gates (1 = chosen); a reviewer flips them or puts an edited Assessment JSON (or a replacement
explanation) in `edit`. `import_review` reads either file back and `build_seed` turns accepted and
edited rows into D_seed entries: {pair_id, assessment, fit_probs, source, prompt_version,
teacher_id, decoding} (JSONL via `write_seed`).
"""
from __future__ import annotations

import csv
import dataclasses
import json
import os
import re
from collections import Counter
from typing import Any, Iterable, Mapping, Sequence

from lantern_jax.data import prompts
from lantern_jax.data.schema import FIT_LEVELS, DataError, Pair, check_text
from lantern_jax.teacher.parse import (TeacherOutputError, check_opening, parse_assessment, parse_evaluated,
                                       parse_extracted, parse_rating)
from lantern_jax.teacher.redact import redact_member

GATES = ("schema", "agreement", "coverage", "grounding", "length", "duplicates")
# Phrases that name a fit level; an explanation may only use those of its own level.
LEVEL_PHRASES = {
    "high": ("high fit", "strong fit", "strong match", "excellent match", "excellent fit", "great fit"),
    "medium": ("medium fit", "moderate fit", "partial match", "reasonable match", "partial fit"),
    "low": ("low fit", "weak fit", "weak match", "poor match", "poor fit"),
}
_QUOTE = re.compile(r"[\"\u201c\u201d]([^\"\u201c\u201d]{3,})[\"\u201c\u201d]")
_STOP = {"and", "the", "with", "for", "experience", "years", "year", "familiarity", "knowledge", "ability", "or",
         "related", "field", "in", "of", "a", "an", "to", "as", "on", "at", "strong", "working", "plus",
         "skills", "proficiency", "degree", "equivalent", "similar", "including", "such"}


@dataclasses.dataclass(frozen=True)
class GateConfig:
    min_words: int = 20
    max_words: int = 300
    coverage_min_overlap: float = 0.6  # share of a posting requirement's words an evaluated one must hold


@dataclasses.dataclass
class GateResult:
    pair_id: str
    failures: dict[str, str]  # gate -> reason
    checked: tuple[str, ...]
    assessment: dict | None  # parsed without the opening check (None when `schema` failed)

    @property
    def passed(self) -> bool:
        return not self.failures


def _norm(text: str) -> str:
    return " ".join(text.replace("\u201c", '"').replace("\u201d", '"').lower().split())


def _words(text: str) -> set[str]:
    """Content words, cut to 5 letters so inflections match ("educating" ~ "education")."""
    return {w[:5] for w in re.findall(r"[a-z0-9+#]+", text.lower()) if w not in _STOP and len(w) > 1}


def unchecked_assessment(record: Mapping[str, Any]) -> dict:
    """The record's Assessment as a dict, parsed without the opening-sentence check."""
    steps = record.get("steps")
    if steps:
        by_step = {s["step"]: s for s in steps}
        if "evaluate" not in by_step or "explain" not in by_step:
            failed = next((s["step"] for s in steps if s["step"] not in ("evaluate", "explain")), "extract")
            raise TeacherOutputError(record.get("parse_error") or f"{failed} step failed")
        reqs = parse_evaluated(by_step["evaluate"]["raw_text"])
        fit, explanation = parse_rating(by_step["explain"]["raw_text"], check_opening_sentence=False)
        return {"requirements": reqs, "fit_level": fit, "explanation": explanation}
    return parse_assessment(record.get("raw_text") or "", check_opening_sentence=False).to_dict()


# ----------------------------------------------------------------------------- the gates

def gate_agreement(a: dict) -> str | None:
    try:
        check_opening(a["fit_level"], a["explanation"])
    except TeacherOutputError as e:
        return str(e)
    text = _norm(a["explanation"])
    for level, phrases in LEVEL_PHRASES.items():
        if level == a["fit_level"]:
            continue
        for phrase in phrases:
            if re.search(rf"\b{re.escape(phrase)}\b", text):
                return f"explanation says {phrase!r} but fit_level is {a['fit_level']!r}"
    return None


def reference_requirements(record: Mapping[str, Any], pair: Pair) -> list[str]:
    """What the teacher had to evaluate: its own step-1 list in chain mode, else the posting's."""
    for step in record.get("steps") or ():
        if step["step"] == "extract":
            try:
                return [r["requirement"] for r in parse_extracted(step["raw_text"])]
            except TeacherOutputError:
                break
    return [r.text for r in prompts.extract_requirements(pair.job.description, title=pair.job.title)]


def gate_coverage(a: dict, reference: Sequence[str], min_overlap: float) -> str | None:
    """Each reference requirement must be matched by its own evaluated one (one-to-one, greedy by
    overlap), so a dropped item can't hide behind a similar neighbour."""
    evaluated = [_words(r["requirement"]) for r in a["requirements"]]
    wanted = [(text, _words(text)) for text in reference]
    scores = sorted(((len(w & got) / len(w), i, j) for i, (_, w) in enumerate(wanted) if w
                     for j, got in enumerate(evaluated)), reverse=True)
    matched, used = set(), set()
    for score, i, j in scores:
        if score >= min_overlap and i not in matched and j not in used:
            matched.add(i)
            used.add(j)
    for i, (text, w) in enumerate(wanted):
        if w and i not in matched:
            return f"posting requirement not evaluated: {text[:80]!r}"
    return None


def profile_texts(pair: Pair) -> tuple[str, ...]:
    """The profile as the teacher saw it (raw or redacted), normalised for quote matching."""
    return (_norm(prompts.render_member(pair.member)), _norm(prompts.render_member(redact_member(pair.member))))


def gate_grounding(a: dict, profiles: Sequence[str]) -> str | None:
    for r in a["requirements"]:
        quotes = [q.strip() for q in _QUOTE.findall(r["evidence"]) if q.strip()]
        if r["verdict"] in ("met", "partially_met") and not quotes:
            return f"{r['verdict']} without a quote from the profile: {r['requirement'][:60]!r}"
        for q in quotes:
            if not any(_norm(q) in p for p in profiles):
                return f"evidence quote not in the profile: {q[:60]!r}"
    return None


def gate_length(a: dict, cfg: GateConfig) -> str | None:
    n = len(a["explanation"].split())
    if n < cfg.min_words:
        return f"explanation too short ({n} words < {cfg.min_words})"
    if n > cfg.max_words:
        return f"explanation too long ({n} words > {cfg.max_words})"
    return None


class DuplicateTracker:
    """Remembers the pairs seen; flags a pair labeled twice and requirements listed twice."""

    def __init__(self):
        self.pairs: set[str] = set()

    def check(self, pair_id: str, a: dict | None) -> str | None:
        if pair_id in self.pairs:
            return f"pair {pair_id!r} labeled more than once"
        self.pairs.add(pair_id)
        seen: set[str] = set()
        for r in (a or {}).get("requirements", ()):
            key = _norm(r["requirement"])
            if key in seen:
                return f"requirement listed twice: {r['requirement'][:60]!r}"
            seen.add(key)
        return None


def check_record(record: Mapping[str, Any], pair: Pair, duplicates: DuplicateTracker,
                 cfg: GateConfig = GateConfig()) -> GateResult:
    """All gates on one record; later gates run only when the output parsed."""
    failures: dict[str, str] = {}
    try:
        a = unchecked_assessment(record)
    except TeacherOutputError as e:
        dup = duplicates.check(record["pair_id"], None)
        failures = {"schema": str(e), **({"duplicates": dup} if dup else {})}
        return GateResult(record["pair_id"], failures, ("schema", "duplicates"), None)
    checks = {
        "agreement": lambda: gate_agreement(a),
        "coverage": lambda: gate_coverage(a, reference_requirements(record, pair), cfg.coverage_min_overlap),
        "grounding": lambda: gate_grounding(a, profile_texts(pair)),
        "length": lambda: gate_length(a, cfg),
        "duplicates": lambda: duplicates.check(record["pair_id"], a),
    }
    for gate, check in checks.items():
        reason = check()
        if reason:
            failures[gate] = reason
    return GateResult(record["pair_id"], failures, GATES, a)


def run_gates(records: Iterable[Mapping[str, Any]], pairs: Mapping[str, Pair],
              cfg: GateConfig = GateConfig()) -> tuple[list[GateResult], dict[str, dict[str, int]]]:
    """**API** Gate results per record and per-gate counts {gate: {"checked", "rejected"}}."""
    duplicates = DuplicateTracker()
    results, checked, rejected = [], Counter(), Counter()
    for record in records:
        pair = pairs.get(record["pair_id"])
        if pair is None:
            raise KeyError(f"record for unknown pair {record['pair_id']!r}")
        result = check_record(record, pair, duplicates, cfg)
        results.append(result)
        checked.update(result.checked)
        rejected.update(result.failures.keys())
    counts = {g: {"checked": checked[g], "rejected": rejected[g]} for g in GATES}
    counts["all"] = {"checked": len(results), "rejected": sum(not r.passed for r in results)}
    return results, counts


def format_counts(counts: Mapping[str, Mapping[str, int]]) -> str:
    return " | ".join(f"{g} {c['rejected']}/{c['checked']}" for g, c in counts.items())


# ----------------------------------------------------------------------------- review files

REVIEW_COLUMNS = ("pair_id", "gates", "fit_level", "p_high", "p_medium", "p_low", "explanation", "requirements",
                  "accept", "reject", "edit", "note")


class ReviewFileError(DataError):
    """A review file that can't be imported; str() names the file and row (a DataError: every CLI
    reports it in one line)."""


def review_rows(records: Sequence[Mapping[str, Any]], results: Sequence[GateResult]) -> list[dict]:
    rows = []
    for record, result in zip(records, results):
        a = result.assessment or {}
        probs = record.get("fit_probs") or {}
        rows.append({
            "pair_id": record["pair_id"],
            "gates": "pass" if result.passed else "; ".join(f"{g}: {r}" for g, r in result.failures.items()),
            "fit_level": a.get("fit_level", ""),
            **{f"p_{lvl}": round(probs[lvl], 4) if lvl in probs else "" for lvl in reversed(FIT_LEVELS)},
            "explanation": a.get("explanation", record.get("raw_text", "")),
            "requirements": a.get("requirements", []),
            "accept": 1 if result.passed else 0, "reject": 0 if result.passed else 1, "edit": "", "note": "",
        })
    return rows


def export_review(records: Sequence[Mapping[str, Any]], results: Sequence[GateResult], path: str) -> tuple[str, str]:
    """**API** Writes `<path>.jsonl` and `<path>.csv` (path without extension); returns both paths."""
    base = os.path.splitext(path)[0]
    rows = review_rows(records, results)
    with open(base + ".jsonl", "w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    with open(base + ".csv", "w", encoding="utf-8", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=REVIEW_COLUMNS)
        writer.writeheader()
        for row in rows:
            writer.writerow({**row, "requirements": json.dumps(row["requirements"], ensure_ascii=False)})
    return base + ".jsonl", base + ".csv"


@dataclasses.dataclass(frozen=True)
class Decision:
    pair_id: str
    action: str  # accept | reject | edit
    edited: dict | None  # the edited Assessment (validated) for "edit"
    note: str = ""


def _flag(value: Any) -> bool:
    return str(value).strip().lower() in ("1", "x", "true", "yes", "y")


def _edited(edit: Any, row: Mapping[str, Any], where: str) -> dict:
    """An edit is a full Assessment (JSON) or a replacement explanation for the row's assessment."""
    try:
        if isinstance(edit, dict) or (isinstance(edit, str) and edit.lstrip().startswith("{")):
            text = edit if isinstance(edit, str) else json.dumps(edit)
            return parse_assessment(text).to_dict()
        reqs = row["requirements"]
        reqs = json.loads(reqs) if isinstance(reqs, str) else reqs
        text = json.dumps({"requirements": reqs, "fit_level": row["fit_level"], "explanation": str(edit)})
        return parse_assessment(text).to_dict()
    except (TeacherOutputError, ValueError, KeyError) as e:
        raise ReviewFileError(f"{where}: edit is not a valid assessment ({e})") from None


def import_review(path: str) -> list[Decision]:
    """**API** Decisions from a review file (.jsonl or .csv) as exported and then edited by a person."""
    try:
        with open(path, encoding="utf-8", newline="") as f:
            if path.endswith(".csv"):
                rows = list(csv.DictReader(f))
            else:
                rows = [json.loads(line) for line in f if line.strip()]
    except OSError as e:
        raise ReviewFileError(f"{path}: {e.strerror}") from None
    except ValueError as e:
        raise ReviewFileError(f"{path}: not JSONL ({e})") from None
    decisions, seen = [], set()
    for n, row in enumerate(rows, 2 if path.endswith(".csv") else 1):
        where = f"{path}:{n}"
        if not isinstance(row, dict) or not row.get("pair_id"):
            raise ReviewFileError(f"{where}: missing pair_id")
        try:
            check_text(row, "")  # what a reviewer wrote goes into D_seed: it must be writable text
        except DataError as e:
            raise ReviewFileError(f"{where}: {e}") from None
        if row["pair_id"] in seen:
            raise ReviewFileError(f"{where}: pair {row['pair_id']!r} appears twice")
        seen.add(row["pair_id"])
        edit = row.get("edit")
        has_edit = bool(edit) and not (isinstance(edit, str) and not edit.strip())
        chosen = [a for a, on in (("accept", _flag(row.get("accept"))), ("reject", _flag(row.get("reject"))),
                                  ("edit", has_edit)) if on]
        if has_edit and chosen == ["accept", "edit"]:
            chosen = ["edit"]  # accepting the edited version
        if len(chosen) != 1:
            raise ReviewFileError(f"{where}: choose exactly one of accept / reject / edit "
                                  f"(got {', '.join(chosen) or 'none'})")
        action = chosen[0]
        edited = _edited(edit, row, where) if action == "edit" else None
        decisions.append(Decision(row["pair_id"], action, edited, str(row.get("note") or "")))
    return decisions


def build_seed(records: Sequence[Mapping[str, Any]], decisions: Sequence[Decision]) -> list[dict]:
    """**API** D_seed entries for accepted and edited rows, with the teacher's provenance."""
    by_pair = {r["pair_id"]: r for r in records}
    seed = []
    for d in decisions:
        if d.action == "reject":
            continue
        record = by_pair.get(d.pair_id)
        if record is None:
            raise ReviewFileError(f"review decision for unknown pair {d.pair_id!r}")
        if d.action == "edit":
            assessment, source = d.edited, "edited"
        else:
            try:
                assessment = parse_assessment(json.dumps(unchecked_assessment(record))).to_dict()
            except TeacherOutputError as e:
                raise ReviewFileError(f"pair {d.pair_id!r} accepted but its output is invalid ({e}); "
                                      "reject it or put a corrected assessment in 'edit'") from None
            source = "teacher"
        seed.append({"pair_id": d.pair_id, "assessment": assessment, "fit_probs": record.get("fit_probs"),
                     "source": source, "note": d.note, "prompt_version": record.get("prompt_version"),
                     "teacher_id": record.get("teacher_id"), "decoding": record.get("decoding")})
    return seed


def d_seed_records(seed: Sequence[Mapping[str, Any]], pairs: Mapping[str, Pair], *, compress: bool = True,
                   messages=None, target=None) -> list[dict]:
    """D_seed entries as `data/datasets.py` "d_seed" records: prompt = chat messages (JSON; the
    single-call teacher prompt unless `messages(pair)` gives the in-house one), target = the
    Assessment JSON (as `target(assessment, pair)` rewrites it, e.g. `pointers.encode`),
    provenance = where the label came from."""
    messages = messages or (lambda pair: prompts.single_call_messages(pair, compress=compress))
    target = target or (lambda assessment, pair: assessment)
    records = []
    for entry in seed:
        pair = pairs[entry["pair_id"]]
        provenance = {k: entry.get(k) for k in ("source", "note", "prompt_version", "teacher_id", "decoding",
                                                "fit_probs")}
        records.append({"pair_id": entry["pair_id"],
                        "prompt": json.dumps(messages(pair), ensure_ascii=False),
                        "target": json.dumps(target(entry["assessment"], pair), ensure_ascii=False), "provenance": provenance})
    return records


def write_seed(path: str, seed: Sequence[Mapping[str, Any]]) -> None:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        for entry in seed:
            f.write(json.dumps(entry, ensure_ascii=False) + "\n")

