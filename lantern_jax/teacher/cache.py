"""On-disk cache of teacher responses, so a rerun never pays twice.

Keyed by prompt version, model, decoding parameters and the exact messages (which hold the pair).
One gzip'd JSON file per response, written atomically (temp file + rename): a process killed
mid-write leaves either the old state or the complete entry, never a torn one that is trusted.
"""
from __future__ import annotations

import gzip
import hashlib
import json
import os
import tempfile
from typing import Any, Sequence


def cache_key(prompt_version: str, model: str, decoding: dict[str, Any], messages: Sequence[dict]) -> str:
    material = json.dumps({"prompt_version": prompt_version, "model": model, "decoding": decoding,
                           "messages": list(messages)}, sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(material.encode("utf-8")).hexdigest()


class ResponseCache:
    def __init__(self, directory: str):
        self.directory = directory
        os.makedirs(directory, exist_ok=True)

    def _path(self, key: str) -> str:
        return os.path.join(self.directory, key[:2], f"{key}.json.gz")

    def get(self, key: str) -> dict[str, Any] | None:
        try:
            with gzip.open(self._path(key), "rt", encoding="utf-8") as f:
                return json.load(f)
        except FileNotFoundError:
            return None
        except (OSError, EOFError, ValueError):  # unreadable entry: a miss, rewritten on success
            return None

    def put(self, key: str, entry: dict[str, Any]) -> None:
        path = self._path(key)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=1) as f:
                f.write(json.dumps(entry, ensure_ascii=False).encode("utf-8"))
            os.replace(tmp, path)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise

    def entries(self):
        """Every cached entry (for audits and tests)."""
        for root, _, files in os.walk(self.directory):
            for name in files:
                if name.endswith(".json.gz"):
                    entry = self.get(name[:-len(".json.gz")])
                    if entry is not None:
                        yield entry
