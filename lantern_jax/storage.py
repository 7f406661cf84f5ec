"""Run directories that may live in object storage (`gs://bucket/run` on TPU VMs).

Orbax reads and writes checkpoints at a `gs://` path directly (via etils.epath; fsspec + gcsfs
without TensorFlow). Object stores have no append, so the text logs (metrics.jsonl, TensorBoard)
and the HF export are written to a local mirror and copied up when the run ends; with a local
workdir the mirror *is* the workdir.
"""
from __future__ import annotations

import os

from etils import epath


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
