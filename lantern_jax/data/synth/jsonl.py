"""D_base JSONL: atomic writes, and reads that name FILE:LINE for malformed input."""
from __future__ import annotations

import json
import os
import pathlib
from typing import Iterable, Iterator

from lantern_jax.data.schema import DataError, Pair, pair_from_record


def write_pairs(path: str | os.PathLike, pairs: Iterable[Pair]) -> int:
    """Write pairs as JSONL atomically (temp file + rename): a crash never leaves a partial file
    and never clobbers what was there. Returns the number of records written."""
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    count = 0
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            for pair in pairs:
                f.write(json.dumps(pair.to_dict(), ensure_ascii=False, separators=(",", ":")) + "\n")
                count += 1
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return count


def iter_pairs(path: str | os.PathLike) -> Iterator[Pair]:
    """Pairs from a D_base JSONL file; malformed input raises DataError('FILE:LINE: what is wrong')."""
    path = pathlib.Path(path)
    if not path.is_file():
        raise DataError(f"{path}: D_base file not found")
    with open(path, "rb") as f:  # decoded per line, so bytes that aren't UTF-8 are reported with their line
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line.decode("utf-8"))
            except UnicodeDecodeError as e:
                raise DataError(f"{path}:{lineno}: not UTF-8 text (byte {line[e.start]:#04x} at column "
                                f"{e.start + 1})") from None
            except json.JSONDecodeError as e:
                raise DataError(f"{path}:{lineno}: invalid JSON ({e.msg} at column {e.colno})") from None
            try:
                yield pair_from_record(record)
            except DataError as e:
                raise DataError(f"{path}:{lineno}: {e}") from None


def read_pairs(path: str | os.PathLike, *, nonempty: bool = False) -> list[Pair]:
    """The pairs of a D_base JSONL file; a repeated pair_id (or, with `nonempty`, no pair at all) is
    a DataError naming the file."""
    pairs, seen = [], set()
    for n, pair in enumerate(iter_pairs(path), 1):
        if pair.pair_id in seen:
            raise DataError(f"{path}: duplicate pair_id {pair.pair_id!r} (record {n})")
        seen.add(pair.pair_id)
        pairs.append(pair)
    if nonempty and not pairs:
        raise DataError(f"{path}: no pairs")
    return pairs
