"""Quality gates measured on simulated outputs with planted errors; review export/import -> D_seed."""
import csv
import json

import pytest

from lantern_jax.teacher.hitl import (GATES, ReviewFileError, build_seed, d_seed_records, export_review,
                                      format_counts, import_review, run_gates, write_seed)
from lantern_jax.teacher.simulated import CONTENT_ERRORS, FORMAT_ERRORS, SimulatedExpert
from teacher_fixtures import expert_records, synth_pairs

# The planted error kinds each gate is responsible for.
GATE_OF = {"malformed_json": "schema", "truncation": "schema", "refusal": "schema", "disagreement": "agreement",
           "dropped_requirement": "coverage", "fabricated_evidence": "grounding", "rambling": "length",
           "terse": "length", "duplicate_requirement": "duplicates"}


def test_each_gate_catches_its_planted_errors():
    pairs = synth_pairs(600)
    rates = {name: 0.07 for name in GATE_OF}
    records, planted = expert_records(pairs, rates)
    results, counts = run_gates(records, {p.pair_id: p for p in pairs})
    clean = [r for r in results if not planted[r.pair_id]]
    assert len(clean) > 300
    report = []
    for gate in GATES:
        kinds = {k for k, g in GATE_OF.items() if g == gate}
        # a schema failure hides the other gates (nothing parsed to check), so those don't count
        mine = [r for r in results if planted[r.pair_id] & kinds
                and (gate == "schema" or not planted[r.pair_id] & {"malformed_json", "truncation", "refusal"})]
        caught = sum(gate in r.failures for r in mine) / len(mine)
        false = sum(gate in r.failures for r in clean) / len(clean)
        report.append(f"{gate}: caught {caught:.1%} of {len(mine)}, false rejections {false:.1%}")
        assert len(mine) >= 20 and caught >= 0.95 and false <= 0.02, report[-1]
    print("\n".join(report))
    assert counts["all"]["checked"] == len(pairs) and "schema" in format_counts(counts)


def test_every_error_mode_is_plantable():
    assert set(GATE_OF) | {"wrong_verdict"} == set(CONTENT_ERRORS + FORMAT_ERRORS)
    pairs = synth_pairs(60)
    records, planted = expert_records(pairs, {"wrong_verdict": 1.0})
    truth = {p.pair_id: p for p in pairs}
    for record in records:
        verdicts = [r["verdict"] for r in record["assessment"]["requirements"]]
        want = [truth[record["pair_id"]].truth["verdicts"][r["id"]]
                for r in truth[record["pair_id"]].job.truth["requirements"]]
        assert verdicts != want and planted[record["pair_id"]] == {"wrong_verdict"}


def test_duplicate_pairs_and_chain_records():
    pairs = synth_pairs(12)
    expert = SimulatedExpert(pairs)
    records = []
    for pair in pairs[:6]:  # chain-mode records: the gates read the step outputs
        extract = expert.answer(pair, "extract")
        items = json.loads(extract.text.strip("`").removeprefix("json"))["requirements"]
        evaluate = expert.answer(pair, "evaluate", items)
        evaluated = json.loads(evaluate.text.strip("`").removeprefix("json"))["requirements"]
        explain = expert.answer(pair, "explain", evaluated)
        steps = [{"step": s, "raw_text": a.text} for s, a in (("extract", extract), ("evaluate", evaluate),
                                                              ("explain", explain))]
        records.append({"pair_id": pair.pair_id, "raw_text": explain.text, "steps": steps})
    records.append(dict(records[0]))  # the same pair labeled twice
    results, counts = run_gates(records, {p.pair_id: p for p in pairs})
    assert all(r.passed for r in results[:6]), [r.failures for r in results[:6]]
    assert "labeled more than once" in results[6].failures["duplicates"]
    assert counts["duplicates"] == {"checked": 7, "rejected": 1}


def test_review_round_trip_to_seed(tmp_path):
    pairs = synth_pairs(30)
    records, planted = expert_records(pairs, {"fabricated_evidence": 0.3, "malformed_json": 0.2})
    results, _ = run_gates(records, {p.pair_id: p for p in pairs})
    jsonl, csv_path = export_review(records, results, str(tmp_path / "review"))
    with open(csv_path, newline="") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["pair_id", "gates", "fit_level", "p_high", "p_medium", "p_low", "explanation",
                             "requirements", "accept", "reject", "edit", "note"]
    passed = [r for r in results if r.passed]
    failed = [r for r in results if not r.passed]
    assert passed and failed and all(row["accept"] == "1" for row in rows if row["gates"] == "pass")
    # a reviewer rejects one good row, rewrites the explanation of another, repairs a rejected one
    by_id = {row["pair_id"]: row for row in rows}
    by_id[passed[0].pair_id].update(accept="0", reject="1", note="tone")
    fit = by_id[passed[1].pair_id]["fit_level"]
    by_id[passed[1].pair_id].update(accept="0", edit=f"You are a {fit} fit for this job. Shorter, clearer reasons.")
    repaired = next(r for r in failed if r.assessment is not None)
    fixed = dict(repaired.assessment)
    fixed["requirements"] = [dict(q, evidence="Not shown.", verdict="not_met") for q in fixed["requirements"]]
    by_id[repaired.pair_id].update(reject="0", edit=json.dumps(fixed))
    with open(csv_path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    decisions = import_review(csv_path)
    seed = build_seed(records, decisions)
    seed_ids = {s["pair_id"] for s in seed}
    assert passed[0].pair_id not in seed_ids and repaired.pair_id in seed_ids
    assert len(seed) == len(passed) - 1 + 1
    edited = {s["pair_id"]: s for s in seed if s["source"] == "edited"}
    assert edited[passed[1].pair_id]["assessment"]["explanation"].endswith("Shorter, clearer reasons.")
    write_seed(str(tmp_path / "seed.jsonl"), seed)
    d_seed = d_seed_records(seed, {p.pair_id: p for p in pairs})
    assert json.loads(d_seed[0]["target"]) == seed[0]["assessment"]
    assert json.loads(d_seed[0]["prompt"])[0]["role"] == "system" and d_seed[0]["provenance"]["source"]
    assert len(open(tmp_path / "seed.jsonl").readlines()) == len(seed)
    assert len(import_review(jsonl)) == len(records)  # the JSONL twin reads back as is


def test_review_import_errors_name_file_and_row(tmp_path):
    pairs = synth_pairs(6)
    records, _ = expert_records(pairs)
    results, _ = run_gates(records, {p.pair_id: p for p in pairs})
    jsonl, _ = export_review(records, results, str(tmp_path / "r.jsonl"))
    rows = [json.loads(line) for line in open(jsonl)]
    for change, message in (({"accept": 1, "reject": 1}, "choose exactly one"),
                            ({"accept": 0, "edit": "Nice profile."}, "edit is not a valid assessment"),
                            ({"pair_id": ""}, "missing pair_id")):
        bad = [dict(rows[0]), {**rows[1], **change}]
        path = tmp_path / "bad.jsonl"
        path.write_text("".join(json.dumps(r) + "\n" for r in bad))
        with pytest.raises(ReviewFileError) as e:
            import_review(str(path))
        assert f"bad.jsonl:2: {message}" in str(e.value) and "\n" not in str(e.value)
