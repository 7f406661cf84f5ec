"""The Colab notebook runs top to bottom on CPU: it skips the install (lantern_jax is importable),
picks the micro size, runs the pipeline, shows the plots as PNG outputs, the key metrics and
report.md. Its WORKDIR is a copy of the session's micro run (tests/conftest.py), so the pipeline
cell finds every stage finished and the notebook's own cells are what runs here; the stages
themselves are tested by tests/test_pipeline.py on the same run.

The kernel is this interpreter (a kernelspec written into tmp_path that names sys.executable), so
a python3 kernelspec installed elsewhere on the machine can't pick another Python.
"""
import base64
import json
import math
import os
import sys

import nbformat
import pytest
from ipykernel.kernelspec import write_kernel_spec
from jupyter_client import KernelManager
from jupyter_client.kernelspec import KernelSpecManager
from nbclient import NotebookClient

from pipeline_fixtures import MICRO_STAGES, copy_run, xla_flags

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NOTEBOOK = os.path.join(ROOT, "notebooks", "lantern_colab_tpu.ipynb")

def read_notebook():
    return nbformat.read(NOTEBOOK, as_version=4)


def tagged(nb, tag):
    cells = [c for c in nb.cells if tag in c.metadata.get("tags", [])]
    assert len(cells) == 1, f"expected one cell tagged {tag!r}, found {len(cells)}"
    return cells[0]


def texts(cell, mime):
    return [o["data"][mime] for o in cell.outputs if o.get("output_type") in ("display_data", "execute_result")
            and mime in o.get("data", {})]


def stream(cell):
    return "".join(o.get("text", "") for o in cell.outputs if o.get("output_type") == "stream")


def test_notebook_is_clean_and_parameterised():
    nb = read_notebook()
    nbformat.validate(nb)
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, "stored outputs: clear them"
    params = tagged(nb, "parameters").source
    for name in ("SIZE", "WORKDIR", "OVERRIDES", "REPO_URL"):
        assert f"\n{name} = " in f"\n{params}", name
    assert 'SIZE = "auto"' in params
    install = tagged(nb, "install").source  # the Makefile's wheel list, not a drifting copy
    with open(os.path.join(ROOT, "Makefile")) as f:
        wheels = next(line for line in f if line.startswith("OFFLINE_WHEELS")).split(":=")[1].split()
    for wheel in wheels:
        assert f'"{wheel}"' in install, wheel


@pytest.mark.slow
@pytest.mark.subprocess
@pytest.mark.xdist_group("micro_run")
def test_notebook_runs_the_pipeline_on_cpu(micro_run, tmp_path, monkeypatch):
    nb = read_notebook()
    workdir = copy_run(micro_run[0], tmp_path / "run")
    params = tagged(nb, "parameters")
    injected = nbformat.v4.new_code_cell(  # papermill's convention: a cell after the parameters
        f'SIZE = "auto"\nWORKDIR = {str(workdir)!r}\nOVERRIDES = []',
        metadata={"tags": ["injected-parameters"]})
    nb.cells.insert(nb.cells.index(params) + 1, injected)

    # The kernel inherits this environment: one CPU device, as a CPU runtime has (not conftest's 8
    # fake ones, which would shard the tiny batches on 2 cores).
    monkeypatch.setenv("JAX_PLATFORMS", "cpu")
    monkeypatch.setenv("XLA_FLAGS", xla_flags(1))
    kernels = tmp_path / "kernels"
    write_kernel_spec(str(kernels / "python3"))  # argv: [sys.executable, -m, ipykernel_launcher, ...]
    km = KernelManager(kernel_name="python3", kernel_spec_manager=KernelSpecManager(kernel_dirs=[str(kernels)]))
    assert km.kernel_spec.argv[0] == sys.executable
    NotebookClient(nb, km=km, timeout=600, startup_timeout=120,
                   resources={"metadata": {"path": str(tmp_path)}}).execute(cleanup_kc=True)  # shuts it down

    assert "already installed" in stream(tagged(nb, "install"))
    devices = stream(tagged(nb, "devices"))
    assert "(cpu)" in devices and "size: micro" in devices, devices

    assert stream(tagged(nb, "pipeline")).count("done, skipped") == len(MICRO_STAGES)  # read the run
    ev = workdir / "evaluate"
    for stage in MICRO_STAGES:
        assert (workdir / stage / "DONE.json").exists(), stage
    for name in ("report.md", "metrics.json", "reliability.png", "confusion.png"):
        assert (ev / name).stat().st_size > 0, name
    metrics = json.loads((ev / "metrics.json").read_text())
    assert set(metrics["splits"]) == {"test", "heldout_occupation", "heldout_company"}
    for split, m in metrics["splits"].items():
        for ref in ("vs_teacher", "vs_truth"):
            c = m["classifier"][ref]
            assert c["n"] > 0 and math.isfinite(c["accuracy"]) and math.isfinite(c["macro_f1"]), (split, ref)
        assert 0 <= m["classifier"]["ece"] <= 1 and m["explainer"]["n"] == 4  # micro: n_explain 4
        assert math.isfinite(m["explainer"]["structure_validity"])
    for key in ("classifier_temperature", "classifier_ms_per_pair", "explainer_ms_per_token"):
        assert math.isfinite(metrics[key]) and metrics[key] > 0, key

    pngs = texts(tagged(nb, "plots"), "image/png")
    assert len(pngs) == len(list(ev.glob("*.png"))) >= 2  # every plot the report made, shown once
    for png in pngs:
        assert base64.b64decode(png)[:8] == b"\x89PNG\r\n\x1a\n"
    table = "".join(texts(tagged(nb, "metrics"), "text/markdown"))
    assert "| heldout_company | " in table and "ms/token" in table
    report = "".join(texts(tagged(nb, "report"), "text/markdown"))
    assert report.startswith("# LANTERN evaluation report") and "## Fit classifier" in report
    assert ".png)" not in report  # the plots are shown in their own cell
