"""Label pairs with any teacher into teacher records: sharded by process, resumable, append-only.

    python -m lantern_jax.teacher.label --pairs pairs.jsonl --out records.jsonl \
        [--config teacher.json] [--set concurrency=32 --set cache_dir=cache] \
        [--process-index 0 --process-count 1]

A teacher is any object with `teacher_id`, `decoding` (dict), `async assess(pair) -> TeacherResult`
and optionally `preflight()`, `aclose()`, `stats`, `config.concurrency` (`ApiTeacher` has them all).
Each process labels the pairs whose id hashes to its index and appends one JSON line per pair to
its own file; a rerun skips the pairs already there, so every pair appears exactly once. A line torn
by a kill is moved to `<out>.torn` and redone. Transport failures are not written (a rerun retries
them); outputs that fail to parse are written with their `parse_error` (the gates judge them).
"""
from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import dataclasses
import datetime
import json
import logging
import os
import sys
from typing import Any, Iterable, Sequence

from lantern_jax.data import prompts, synth
from lantern_jax.data.records import read_jsonl, shard_of, shard_path
from lantern_jax.data.schema import DataError, Pair
from lantern_jax.teacher.client import (ApiTeacher, TeacherAuthError, TeacherError, TeacherResult, TeacherStats,
                                        TeacherUnreachableError, summary_line)
from lantern_jax.teacher.config import TeacherConfig, TeacherConfigError


class OutputFileError(ValueError):
    pass


def read_pairs(path: str) -> list[Pair]:
    """**API** Pairs from D_base JSONL; malformed, duplicated or empty files raise `DataError` naming
    file:line and the problem."""
    return synth.read_pairs(path, nonempty=True)


class RecordWriter:
    """Append-only JSONL of teacher records; knows which pairs it already holds. The file is
    created with the first record, so a run that fails before labeling anything (a rejected key,
    an unreachable server) leaves no empty output behind."""

    def __init__(self, path: str, provenance: dict[str, Any]):
        self.path = path
        self.done: set[str] = set()
        self._f = None
        if os.path.exists(path):
            self._load(provenance)

    def _load(self, provenance: dict[str, Any]) -> None:
        with open(self.path, "rb") as f:
            data = f.read()
        keep = data.rfind(b"\n") + 1
        if keep < len(data):  # a line torn by a kill: set aside, the pair is labeled again
            with open(self.path + ".torn", "ab") as torn:
                torn.write(data[keep:] + b"\n")
            with open(self.path, "r+b") as f:
                f.truncate(keep)
        for n, line in enumerate(data[:keep].splitlines(), 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
                pair_id = record["pair_id"]
            except (ValueError, KeyError, TypeError):
                raise OutputFileError(f"{self.path}:{n}: not a teacher record; refusing to append to it") from None
            mismatch = [k for k, v in provenance.items() if record.get(k) != v]
            if mismatch:
                raise OutputFileError(f"{self.path}: holds records with a different {', '.join(mismatch)}; "
                                      "use another --out (nothing was changed)")
            self.done.add(pair_id)

    def open(self) -> None:
        if self._f is None:
            os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
            self._f = open(self.path, "a", encoding="utf-8")

    def append(self, record: dict[str, Any]) -> None:
        self.open()
        self._f.write(json.dumps(record, ensure_ascii=False) + "\n")
        self._f.flush()  # on disk for any later process, even if this one is killed
        self.done.add(record["pair_id"])

    def close(self) -> None:
        if self._f is not None:
            self._f.close()


def read_records(out: str, process_count: int = 1) -> list[dict[str, Any]]:
    """**API** Every teacher record written for `out` by all `process_count` shards (complete lines only)."""
    records = []
    for index in range(process_count):
        path = shard_path(out, index, process_count)
        if not os.path.exists(path):
            raise OutputFileError(f"{path}: no teacher records (was shard {index} labeled?)")
        records += read_jsonl(path)
    return records


@dataclasses.dataclass
class LabelSummary:
    path: str
    shard_pairs: int
    already: int  # in the output before this run
    done: int  # labeled by calling the teacher
    cached: int  # labeled from the response cache alone
    failed: int
    stats: TeacherStats

    def __str__(self) -> str:
        resumed = f" | resumed past {self.already}" if self.already else ""
        return summary_line(self.stats, self.done, self.cached, self.failed) + resumed + f" -> {self.path}"


def make_record(teacher, result: TeacherResult) -> dict[str, Any]:
    """A teacher record (docs/architecture.md, data contracts): provenance travels with the data."""
    return {
        "pair_id": result.pair_id, "prompt_version": prompts.PROMPT_VERSION, "teacher_id": teacher.teacher_id,
        "decoding": teacher.decoding, "raw_text": result.raw_text, "assessment": result.assessment,
        "parse_error": result.parse_error, "fit_probs": result.fit_probs, "logprobs": result.logprobs,
        "usage": result.usage, "cost_usd": result.cost_usd, "cached": result.cached,
        "finish_reason": result.finish_reason, "steps": result.steps,
        "labeled_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }


async def label_pairs_async(pairs: Sequence[Pair], teacher, out: str, *, process_index: int = 0,
                            process_count: int = 1, progress: bool = True) -> LabelSummary:
    """**API** Labels this process's shard of `pairs` into `shard_path(out, ...)`; returns the summary."""
    if not 0 <= process_index < process_count:
        raise ValueError(f"process_index {process_index} not in [0, {process_count})")
    path = shard_path(out, process_index, process_count)
    shard = [p for p in pairs if shard_of(p.pair_id, process_count) == process_index]
    writer = RecordWriter(path, {"prompt_version": prompts.PROMPT_VERSION, "teacher_id": teacher.teacher_id,
                                 "decoding": teacher.decoding})
    pending = [p for p in shard if p.pair_id not in writer.done]
    stats = getattr(teacher, "stats", None) or TeacherStats()
    summary = LabelSummary(path, len(shard), len(shard) - len(pending), 0, 0, 0, stats)
    workers = getattr(getattr(teacher, "config", None), "concurrency", 16)
    if pending and hasattr(teacher, "preflight"):
        try:
            await teacher.preflight()  # an unreachable server or a bad key: one line, before anything else
        except BaseException:
            writer.close()
            if hasattr(teacher, "aclose"):
                await teacher.aclose()
            raise
    from tqdm import tqdm
    bar = tqdm(total=len(shard), initial=summary.already, desc="teacher", unit="pair", disable=not progress,
               dynamic_ncols=True, leave=False)
    queue = iter(pending)
    streak = {"failures": 0}  # failures in a row: a dead server or a wrong model fails every pair
    give_up_after = max(8, 2 * workers)

    async def worker():
        for pair in queue:
            try:
                result = await teacher.assess(pair)
            except (TeacherAuthError, TeacherUnreachableError):
                raise
            except TeacherError as e:
                summary.failed += 1
                streak["failures"] += 1
                if streak["failures"] >= give_up_after:
                    raise TeacherUnreachableError(f"the teacher failed {streak['failures']} pairs in a row, "
                                                  f"stopping ({e}); records so far are kept in {path}") from None
                bar.set_postfix(cached=summary.cached, failed=summary.failed, refresh=False)
                continue
            streak["failures"] = 0
            writer.append(make_record(teacher, result))
            if result.cached:
                summary.cached += 1
            else:
                summary.done += 1
            bar.update(1)
            bar.set_postfix(cached=summary.cached, failed=summary.failed, refresh=False)

    try:
        if pending:
            async with asyncio.TaskGroup() as group:
                for _ in range(min(workers, len(pending))):
                    group.create_task(worker())
        writer.open()  # a finished shard has its file, even one with no pairs
    except* (TeacherAuthError, TeacherUnreachableError) as group_error:
        raise group_error.exceptions[0] from None
    finally:
        bar.close()
        writer.close()
        if hasattr(teacher, "aclose"):
            await teacher.aclose()
    return summary


def run_sync(make_coroutine):
    """Runs `make_coroutine()` to completion from synchronous code (on uvloop when installed).
    Where an event loop already runs in this thread (a Jupyter cell), in a worker thread's loop."""
    try:
        import uvloop
        factory = uvloop.new_event_loop
    except ImportError:
        factory = None

    def run():
        with asyncio.Runner(loop_factory=factory) as runner:
            return runner.run(make_coroutine())

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return run()
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(run).result()


def label_pairs(pairs: Sequence[Pair], teacher, out: str, **kwargs) -> LabelSummary:
    """**API** Synchronous wrapper of `label_pairs_async`."""
    return run_sync(lambda: label_pairs_async(pairs, teacher, out, **kwargs))


def _overrides(items: Iterable[str]) -> dict[str, str]:
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise TeacherConfigError(f"--set expects key=value, got {item!r}")
        out[key.strip()] = value
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Label D_base pairs with an OpenAI-compatible teacher.")
    parser.add_argument("--pairs", required=True, help="JSONL of Pair.to_dict()")
    parser.add_argument("--out", required=True, help="teacher records JSONL (per-process suffix when sharded)")
    parser.add_argument("--config", help="teacher config JSON (keys of TeacherConfig)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config key")
    parser.add_argument("--process-index", type=int, default=0)
    parser.add_argument("--process-count", type=int, default=1)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    try:
        overrides = _overrides(args.set)
        config = (TeacherConfig.from_json_file(args.config, **overrides) if args.config
                  else TeacherConfig.from_mapping(overrides))
        pairs = read_pairs(args.pairs)
        teacher = ApiTeacher(config)
        summary = label_pairs(pairs, teacher, args.out, process_index=args.process_index,
                              process_count=args.process_count, progress=config.progress)
    except (DataError, TeacherConfigError, TeacherError, OutputFileError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"interrupted: records written so far are kept in {args.out}", file=sys.stderr)
        return 130
    print(summary)
    return 1 if summary.failed else 0


if __name__ == "__main__":
    sys.exit(main())
