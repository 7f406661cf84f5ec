"""Run folders in object storage: URLs reach Orbax untouched, logs and exports go through a local mirror."""
import os

import grain
import optax
from flax import nnx

from lantern_jax import storage
from lantern_jax.checkpoint import Checkpointer


def test_url_workdirs_stay_urls_and_mirror_locally(tmp_path, monkeypatch):
    monkeypatch.setenv("LANTERN_LOCAL_DIR", str(tmp_path / "mirror"))
    assert str(storage.remote("gs://bucket/runs/kd")) == "gs://bucket/runs/kd"
    assert storage.local("gs://bucket/runs/kd") == str(tmp_path / "mirror" / "gs" / "bucket" / "runs" / "kd")
    assert str(storage.remote("runs/kd")) == os.path.abspath("runs/kd")
    assert storage.local("runs/kd") == os.path.abspath("runs/kd")  # local: the mirror is the workdir
    storage.upload("runs/never_created", "export")  # local workdir: nothing to copy, no error


def test_upload_copies_files_and_folders(tmp_path, monkeypatch):
    """`upload` through epath, here with a local destination standing in for the bucket."""
    monkeypatch.setenv("LANTERN_LOCAL_DIR", str(tmp_path / "mirror"))
    url = "gs://bucket/run"
    mirror = storage.local(url)
    os.makedirs(os.path.join(mirror, "export", "sub"))
    for name, text in (("metrics.jsonl", "{}\n"), ("export/config.json", "{}"), ("export/sub/w.bin", "x")):
        with open(os.path.join(mirror, name), "w") as f:
            f.write(text)
    dest = tmp_path / "bucket"
    monkeypatch.setattr(storage, "remote", lambda _: storage.epath.Path(dest))
    storage.upload(url, "metrics.jsonl", "export", "missing")
    copied = sorted(str(p.relative_to(dest)) for p in dest.rglob("*") if p.is_file())
    assert copied == ["export/config.json", "export/sub/w.bin", "metrics.jsonl"]


def test_checkpointer_keeps_local_paths_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    ckpt = Checkpointer("run", every=1, async_save=False)
    assert str(ckpt.directory) == str(tmp_path / "run" / "checkpoints")
    ckpt.close()


def test_a_second_save_of_a_step_already_written_is_a_no_op(tmp_path):
    """A SIGTERM landing right after a periodic save asks for that step again on the way out."""
    model = nnx.Linear(2, 2, rngs=nnx.Rngs(0))
    optimizer = nnx.Optimizer(model, optax.sgd(0.1), wrt=nnx.Param)
    data = iter(grain.MapDataset.range(4).to_iter_dataset())
    ckpt = Checkpointer(str(tmp_path), every=1, async_save=True)
    assert ckpt.save(8, model, optimizer, data)
    assert ckpt.save(8, model, optimizer, data, force=True) is False  # no StepAlreadyExistsError
    ckpt.wait()
    assert ckpt.latest_step() == 8
    ckpt.close()
