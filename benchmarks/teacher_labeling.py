"""Teacher labeling throughput: concurrency 64 against concurrency 1 (goal: >= 30x).

    python benchmarks/teacher_labeling.py [--pairs 400] [--latency-ms 50] [--top-logprobs 0]

Starts the simulated teacher (`python -m lantern_jax.teacher.server`) on loopback with 50 ms of
injected latency per request, labels real D_base pairs through the whole labeling path (prompt
rendering, the openai client, parsing, records on disk; no response cache), once with one request
in flight and once with 64. A warm-up pass first lets the server memoise its deterministic answers,
so both runs see the same server cost. The speed-up is bounded by CPU per request: with latency L
and c ms of CPU per request on the busiest process, the ceiling is about (L + c) / c. The ratio is
printed last.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time

from lantern_jax.data import synth
from lantern_jax.teacher.client import ApiTeacher
from lantern_jax.teacher.config import TeacherConfig
from lantern_jax.teacher.label import label_pairs


def _start_server(pairs_file: str, latency_ms: float) -> tuple[subprocess.Popen, str]:
    server = subprocess.Popen([sys.executable, "-m", "lantern_jax.teacher.server", "--pairs", pairs_file,
                               "--port", "0", "--latency-ms", str(latency_ms)], stdout=subprocess.PIPE, text=True)
    line = server.stdout.readline()
    if "listening on " not in line:
        server.kill()
        raise SystemExit(f"error: the simulated teacher did not start ({line.strip() or 'no output'})")
    return server, line.split("listening on ", 1)[1].strip()


def _run(url: str, pairs, concurrency: int, top_logprobs: int, workdir: str) -> tuple[float, float]:
    """(pairs per second, client CPU ms per pair) for one labeling run."""
    config = TeacherConfig(base_url=url, api_key_env=None, concurrency=concurrency, logprobs=top_logprobs > 0,
                           top_logprobs=top_logprobs, record_top_logprobs=min(top_logprobs, 5), progress=False)
    out = os.path.join(workdir, f"records-c{concurrency}-{time.monotonic_ns()}.jsonl")
    cpu, start = time.process_time(), time.perf_counter()
    summary = label_pairs(pairs, ApiTeacher(config), out, progress=False)
    wall = time.perf_counter() - start
    if summary.done != len(pairs):
        raise SystemExit(f"error: labeled {summary.done} of {len(pairs)} pairs ({summary})")
    return len(pairs) / wall, (time.process_time() - cpu) / len(pairs) * 1000


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=400, help="pairs labeled at concurrency 64")
    parser.add_argument("--serial-pairs", type=int, default=48, help="pairs labeled at concurrency 1")
    parser.add_argument("--latency-ms", type=float, default=50.0)
    parser.add_argument("--top-logprobs", type=int, default=0, help="0: no logprobs (transport-bound run)")
    args = parser.parse_args(argv)
    pairs = synth.generate_pairs(args.pairs, seed=0)
    with tempfile.TemporaryDirectory() as workdir:
        pairs_file = os.path.join(workdir, "pairs.jsonl")
        synth.write_pairs(pairs_file, pairs)
        server, url = _start_server(pairs_file, args.latency_ms)
        try:
            _run(url, pairs, 64, args.top_logprobs, workdir)  # warm-up: the server memoises its answers
            serial, serial_cpu = _run(url, pairs[:args.serial_pairs], 1, args.top_logprobs, workdir)
            wide, wide_cpu = _run(url, pairs, 64, args.top_logprobs, workdir)
        finally:
            server.terminate()
            server.wait(timeout=10)
    print(f"simulated teacher on loopback, {args.latency_ms:g} ms latency, top_logprobs={args.top_logprobs}, "
          f"{os.cpu_count()} CPUs")
    print(f"concurrency  1: {serial:7.1f} pairs/s  ({args.serial_pairs} pairs, client CPU {serial_cpu:.2f} ms/pair)")
    print(f"concurrency 64: {wide:7.1f} pairs/s  ({args.pairs} pairs, client CPU {wide_cpu:.2f} ms/pair)")
    print(f"speed-up concurrency 64 / 1: {wide / serial:.1f}x (goal >= 30x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
