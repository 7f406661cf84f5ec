"""JSONL record files (teacher records, D_t records): one JSON object a line, sharded by process.

Writers append and flush a line at a time, so a killed writer leaves at most one torn last line;
readers take complete lines only. Each process writes its own shard of the pairs (by a stable hash
of the pair id, independent of file order).
"""
from __future__ import annotations

import hashlib
import json
import os
from typing import Any

from lantern_jax.data.schema import DataError


def shard_of(pair_id: str, process_count: int) -> int:
    """Stable shard of a pair, independent of file order."""
    return int(hashlib.sha1(pair_id.encode("utf-8")).hexdigest()[:8], 16) % process_count


def shard_path(out: str, process_index: int, process_count: int) -> str:
    if process_count == 1:
        return out
    stem, ext = os.path.splitext(out)
    return f"{stem}-{process_index:05d}-of-{process_count:05d}{ext or '.jsonl'}"


def read_jsonl(path: str, *, missing_ok: bool = False) -> list[dict[str, Any]]:
    """The complete lines of `path` as dicts (a torn last line is left out); a line that is not a
    JSON object is a DataError naming path:line. A missing file is [] when `missing_ok`."""
    if missing_ok and not os.path.exists(path):
        return []
    records = []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.endswith("\n") or not line.strip():
                continue
            try:
                record = json.loads(line)
            except ValueError as e:
                raise DataError(f"{path}:{n}: not JSON ({e})") from None
            if not isinstance(record, dict):
                raise DataError(f"{path}:{n}: not a JSON object")
            records.append(record)
    return records
