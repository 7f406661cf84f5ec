"""Run directories that may live in object storage (`gs://bucket/run` on TPU VMs).

Orbax reads and writes checkpoints at a `gs://` path directly (via etils.epath; fsspec + gcsfs
without TensorFlow). Object stores have no append, so the text logs (metrics.jsonl, TensorBoard)
and the HF export are written to a local mirror and copied up when the run ends; with a local
workdir the mirror *is* the workdir.

`prepare` is the first write of a run: it refuses, in one line and before anything is written, a
workdir that is a file, lies under a file or can't be written, and a rerun whose model differs
from the checkpoints already there (which would otherwise overwrite config.json, then fail on shapes).
"""
from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Mapping, Sequence
from typing import Any

from etils import epath

from lantern_jax.errors import LanternError


class WorkdirError(LanternError):
    """A workdir this run can't use; one line naming it."""


def is_url(path: str) -> bool:
    return "://" in str(path)


def remote(workdir: str) -> epath.Path:
    """The workdir as a path Orbax and epath accept: URLs kept as they are, local paths absolute."""
    return epath.Path(str(workdir) if is_url(workdir) else os.path.abspath(workdir))


def local(workdir: str) -> str:
    """Where this host writes logs and exports: the workdir itself, or its mirror under
    $LANTERN_LOCAL_DIR (default ~/.cache/lantern_jax/runs) for a URL workdir."""
    if not is_url(workdir):
        return os.path.abspath(workdir)
    base = os.environ.get("LANTERN_LOCAL_DIR") or os.path.expanduser("~/.cache/lantern_jax/runs")
    return os.path.join(base, str(workdir).replace("://", "/", 1))


def upload(workdir: str, *names: str) -> None:
    """Copies the local mirror's `names` (files or folders) to a URL workdir; a no-op when local."""
    if not is_url(workdir):
        return
    src_root, dst_root = local(workdir), remote(workdir)
    for name in names:
        src = os.path.join(src_root, name)
        files = [src] if os.path.isfile(src) else [
            os.path.join(d, f) for d, _, fs in os.walk(src) for f in fs]  # nothing if missing
        for f in files:
            dst = dst_root / os.path.relpath(f, src_root)
            dst.parent.mkdir(parents=True, exist_ok=True)
            epath.Path(f).copy(dst, overwrite=True)


def _local_dir_problem(path: str) -> str | None:
    """Why a local `path` can't be (or become) a writable directory, or None."""
    existing = path
    while not os.path.exists(existing):
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        return "is a file, not a directory" if existing == path else f"lies under {existing}, which is a file"
    try:
        os.makedirs(path, exist_ok=True)
        with tempfile.TemporaryFile(dir=path):  # permissions, a read-only filesystem, a full disk
            pass
    except OSError as e:
        return f"can't be written ({e.strerror})"
    return None


def _flat(d: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out = {}
    for k, v in d.items():
        if isinstance(v, Mapping):
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def _same_model(workdir: str, config_json: str, state_keys: Sequence[str], ignore: Sequence[str]) -> None:
    root = remote(workdir)
    saved_path, checkpoints = root / "config.json", root / "checkpoints"
    if not (saved_path.exists() and checkpoints.exists()
            and any(p.name.isdigit() for p in checkpoints.iterdir())):
        return
    try:
        saved = _flat(json.loads(saved_path.read_text()))
    except ValueError:
        raise WorkdirError(f"{saved_path}: not valid JSON, so its checkpoints can't be matched to this config "
                           "(restore the file or use another --workdir)") from None
    new = _flat(json.loads(config_json))
    keys = sorted(k for k in set(saved) | set(new)
                  if k.split(".")[0] in state_keys and k not in ignore and saved.get(k) != new.get(k))
    if keys:
        changes = "; ".join(f"{k}: {saved.get(k)!r} -> {new.get(k)!r}" for k in keys[:4])
        more = f" (and {len(keys) - 4} more)" if len(keys) > 4 else ""
        raise WorkdirError(f"--workdir {workdir} holds checkpoints of another model ({changes}{more}); use another "
                           "--workdir or the config that wrote them (nothing was changed)")


def prepare(workdir: str, config_json: str, *, state_keys: Sequence[str], ignore: Sequence[str] = (),
            write: bool = True) -> epath.Path:
    """Checks `workdir` for this run and (where `write`) saves `config_json` as its config.json.

    With checkpoints already there, the `state_keys` sections of the saved config (less `ignore`)
    must equal the new one's: the checkpoints hold that model's state."""
    if not is_url(workdir) and (problem := _local_dir_problem(os.path.abspath(workdir))):
        raise WorkdirError(f"--workdir {workdir} {problem}")
    _same_model(workdir, config_json, state_keys, ignore)
    root = remote(workdir)
    if write:
        root.mkdir(parents=True, exist_ok=True)
        (root / "config.json").write_text(config_json)
    return root
