"""The ablation command on a one-seed micro base: one cell of each kind of run (an explainer
divergence, λ_kd = 0, the two-stage chain, a classifier variant, compression off) trains for real
for 2 steps, is scored, lands in the table with finite numbers, and a rerun trains nothing. The
base is a copy of the session's micro run (tests/conftest.py): its shared stages are finished, so
only the cells train."""
import json
import math
import os

import pytest

from pipeline_fixtures import copy_run, run_module

pytestmark = [pytest.mark.slow, pytest.mark.subprocess, pytest.mark.real_weights,
              pytest.mark.xdist_group("micro_run")]
BASE_STAGES = ("data", "blackbox", "seed", "inhouse", "d_t")
CELLS = ("divergence/forward_kl", "kd/data_only", "stages/two_stage", "classifier/hard_only", "compression/off")
FAST = [f"--config.cells={','.join(CELLS)}",
        *(f"--config.base.{job}.{key}" for job in ("explainer", "classifier")
          for key in ("train.steps=2", "train.batch_size=4", "train.eval_batches=1", "optim.warmup_steps=1")),
        # shorter sequences: each run compiles its own steps, and compile time follows length
        "--config.base.explainer.data.max_length=192", "--config.base.classifier.data.max_length=64",
        "--config.base.classifier.model.probe_examples=16",
        "--config.uncompressed_max_length=128",
        "--config.base.evaluate.n_per_split=8", "--config.base.evaluate.n_explain=2",
        "--config.base.evaluate.max_new_tokens=16"]


def ablate(workdir):
    return run_module("lantern_jax.ablations", "--config", "configs/ablations.py:micro", "--workdir", str(workdir),
                      *FAST)


@pytest.fixture(scope="module")
def first_run(micro_run, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("ablations")
    (workdir / "base").mkdir()
    copy_run(micro_run[0], workdir / "base", BASE_STAGES)
    return workdir, ablate(workdir)


def test_each_kind_of_cell_trains_and_lands_in_the_table(first_run):
    workdir, stdout = first_run
    with open(workdir / "ablations.json") as f:
        out = json.load(f)
    rows = {f"{r['group']}/{r['cell']}": r for r in out["rows"]}
    assert set(rows) == set(CELLS)
    for name, row in rows.items():
        assert row["n_seeds"] == 1 and row["seconds"] > 0, name
        kind = "classifier" if name.startswith(("classifier", "compression")) else "explainer"
        # generation quality is undefined (nan) for a 2-step explainer that parses nothing; these
        # are defined for any trained model
        for key in {"explainer": ("eval_ce", "structure_validity"),
                    "classifier": ("accuracy_vs_teacher", "ece")}[kind]:
            assert math.isfinite(row["metrics"][key]["mean"]), (name, key)
        assert f"| {name.replace('/', ' | ')} |" in stdout
    compressed, whole = (out["runs"][rows[name]["run"]][0] for name in ("classifier/hard_only", "compression/off"))
    for key in ("input_tokens", "posting_tokens"):  # the whole posting vs its requirements
        assert whole[key] > compressed[key], key
    assert os.path.exists(workdir / "runs" / rows["stages/two_stage"]["run"] / "seed0" / "mid" / "export")
    with open(workdir / "ablations.md") as f:
        assert "| kd | data_only |" in f.read()


def test_rerun_skips_every_finished_cell(first_run):
    workdir, _ = first_run
    stdout = ablate(workdir)
    assert "[train]" not in stdout
    # the base's stages and every cell (a finished cell never reaches the uncompressed D_cls it used)
    assert stdout.count("done, skipped") == len(BASE_STAGES) + len(CELLS)
