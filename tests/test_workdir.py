"""Workdirs in object storage: URLs reach Orbax untouched, logs and exports go through a local mirror."""
import os

from lantern_jax import workdir as workdir_lib
from lantern_jax.checkpoint import Checkpointer


def test_url_workdirs_stay_urls_and_mirror_locally(tmp_path, monkeypatch):
    monkeypatch.setenv("LANTERN_LOCAL_DIR", str(tmp_path / "mirror"))
    assert str(workdir_lib.remote("gs://bucket/runs/kd")) == "gs://bucket/runs/kd"
    assert workdir_lib.local("gs://bucket/runs/kd") == str(tmp_path / "mirror" / "gs" / "bucket" / "runs" / "kd")
    assert str(workdir_lib.remote("runs/kd")) == os.path.abspath("runs/kd")
    assert workdir_lib.local("runs/kd") == os.path.abspath("runs/kd")  # local: the mirror is the workdir
    workdir_lib.upload("runs/never_created", "export")  # local workdir: nothing to copy, no error


def test_upload_copies_files_and_folders(tmp_path, monkeypatch):
    """`upload` through epath, here with a local destination standing in for the bucket."""
    monkeypatch.setenv("LANTERN_LOCAL_DIR", str(tmp_path / "mirror"))
    url = "gs://bucket/run"
    mirror = workdir_lib.local(url)
    os.makedirs(os.path.join(mirror, "export", "sub"))
    for name, text in (("metrics.jsonl", "{}\n"), ("export/config.json", "{}"), ("export/sub/w.bin", "x")):
        with open(os.path.join(mirror, name), "w") as f:
            f.write(text)
    dest = tmp_path / "bucket"
    monkeypatch.setattr(workdir_lib, "remote", lambda _: workdir_lib.epath.Path(dest))
    workdir_lib.upload(url, "metrics.jsonl", "export", "missing")
    copied = sorted(str(p.relative_to(dest)) for p in dest.rglob("*") if p.is_file())
    assert copied == ["export/config.json", "export/sub/w.bin", "metrics.jsonl"]


def test_checkpointer_keeps_local_paths_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    ckpt = Checkpointer("run", every=1, async_save=False)
    assert str(ckpt.directory) == str(tmp_path / "run" / "checkpoints")
    ckpt.close()
