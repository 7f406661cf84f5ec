"""Serving under load: micro-batched vs batch-size-1, same models, same run.

    python benchmarks/serve_load.py [--seconds 20] [--clients 64] [--mix 30] [--max-batch 32]
                                    [--max-gen-batch 4] [--max-wait-ms 5]

Builds a small random classifier (BERT, 2 layers, 64 wide, 128-token inputs) and explainer
(Llama-style decoder, 2 layers, 64 wide, 32 new tokens after the full in-house prompt)
as `save_hf` exports with a domain BPE tokenizer. For each mode it starts
`python -m lantern_jax.serve` as a subprocess and drives it from `--clients` concurrent keep-alive
loopback connections, each sending one request at a time: /v1/explain for every (mix+1)-th request
issued overall, /v1/fit (one pair) otherwise. Reports p50 / p99 latency and completed requests/s
per endpoint, and each model's mean batch size and model time per example (from /metrics); the
last line is the micro-batched / batch-1 ratio. Random weights make the explanations garbage
(each runs to its token limit): this measures serving, not quality. Both servers share a JAX
compilation cache, so the second starts fast.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import subprocess
import sys
import tempfile
import time

import numpy as np
from prometheus_client.parser import text_string_to_metric_families

from lantern_jax.data import pointers, synth
from lantern_jax.data.tokenizer import train_tokenizer


def build_exports(root: str, n_pairs: int) -> list[dict]:
    """Tokenizer + random classifier and explainer exports under `root`; returns pair records."""
    from flax import nnx  # noqa: PLC0415

    from lantern_jax.models import hf  # noqa: PLC0415
    from lantern_jax.models.decoder import DecoderConfig, DecoderLM  # noqa: PLC0415
    from lantern_jax.models.encoder import Classifier, ClassifierConfig, EncoderConfig  # noqa: PLC0415

    pairs = synth.generate_pairs(n_pairs, seed=5)
    texts = [json.dumps(pointers.inhouse_messages(p)) for p in pairs]
    tok = train_tokenizer(texts, vocab_size=2048)
    enc = EncoderConfig(vocab_size=len(tok), hidden_size=64, num_layers=2, num_heads=4, intermediate_size=128)
    hf.save_hf(Classifier(ClassifierConfig(enc), rngs=nnx.Rngs(0)), os.path.join(root, "classifier"), tokenizer=tok)
    dec = DecoderConfig(vocab_size=len(tok), hidden_size=64, num_layers=2, num_heads=4, num_kv_heads=2,
                        intermediate_size=128, max_position_embeddings=4096)
    hf.save_hf(DecoderLM(dec, rngs=nnx.Rngs(1)), os.path.join(root, "explainer"), tokenizer=tok)
    return [p.to_dict() for p in pairs]


class Server:
    """`python -m lantern_jax.serve` in a subprocess on a free port."""

    def __init__(self, root: str, cache: str, max_batch: int, max_gen_batch: int, max_wait_ms: float):
        self.log = open(os.path.join(root, f"server-batch{max_batch}.log"), "w")
        cmd = [sys.executable, "-m", "lantern_jax.serve", "--classifier", os.path.join(root, "classifier"),
               "--explainer", os.path.join(root, "explainer"), "--port", "0", "--max-batch", str(max_batch),
               "--max-gen-batch", str(max_gen_batch), "--max-wait-ms", str(max_wait_ms),
               "--classifier-max-length", "128", "--max-new-tokens", "32", "--prompt-buckets", "1024,2048",
               "--timeout-s", "120", "--compile-cache", cache, "--log-level", "warning"]
        env = {**os.environ, "JAX_PLATFORMS": "cpu"}
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=self.log, text=True, env=env)
        line = self.proc.stdout.readline()  # printed once every bucket is compiled
        match = re.search(r"listening on (http://\S+)", line)
        if not match:
            self.stop()
            with open(self.log.name) as f:
                raise RuntimeError(f"server did not start:\n{f.read()[-3000:]}")
        self.url = match.group(1)

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


class Connection:
    """A bare HTTP/1.1 keep-alive connection: prebuilt request bytes out, (status, body) back.
    httpx costs more CPU per request than the server it would be measuring on two cores."""

    def __init__(self, host: str, port: int):
        self.host, self.port = host, port
        self.reader = self.writer = None

    async def request(self, method: str, path: str, body: bytes = b"") -> tuple[int, bytes]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        head = (f"{method} {path} HTTP/1.1\r\nhost: {self.host}\r\ncontent-type: application/json\r\n"
                f"content-length: {len(body)}\r\n\r\n").encode()
        self.writer.write(head + body)
        header = await self.reader.readuntil(b"\r\n\r\n")
        status = int(header[9:12])
        length = int(re.search(rb"(?i)content-length: *(\d+)", header).group(1))
        payload = await self.reader.readexactly(length)
        if re.search(rb"(?i)connection: *close", header):
            self.close()
        return status, payload

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


async def drive(url: str, records: list[dict], clients: int, seconds: float, mix: int) -> dict:
    """Closed-loop load from `clients` connections; latencies of 200s per endpoint, failures
    counted, mean batch sizes read from /metrics afterwards."""
    host, port = re.match(r"http://([^:/]+):(\d+)", url).groups()
    fit_bodies = [json.dumps({"pairs": [r]}).encode() for r in records]
    explain_bodies = [json.dumps({"pair": r}).encode() for r in records]
    results = {"/v1/fit": {"latency": [], "errors": 0}, "/v1/explain": {"latency": [], "errors": 0}}
    issued = {"n": 0}
    connections = [Connection(host, int(port)) for _ in range(clients)]
    for body in fit_bodies[:4]:  # touch every code path once before timing
        assert (await connections[0].request("POST", "/v1/fit", body))[0] == 200
    assert (await connections[0].request("POST", "/v1/explain", explain_bodies[0]))[0] == 200
    deadline = time.perf_counter() + seconds

    async def one_client(conn: Connection):
        while time.perf_counter() < deadline:
            k = issued["n"]
            issued["n"] += 1
            explain = k % (mix + 1) == mix
            path = "/v1/explain" if explain else "/v1/fit"
            body = (explain_bodies if explain else fit_bodies)[k % len(records)]
            tic = time.perf_counter()
            try:
                ok = (await conn.request("POST", path, body))[0] == 200
            except (OSError, asyncio.IncompleteReadError, ValueError, AttributeError):
                conn.close()
                ok = False
            if ok:
                results[path]["latency"].append(time.perf_counter() - tic)
            else:
                results[path]["errors"] += 1

    start = time.perf_counter()
    await asyncio.gather(*(one_client(c) for c in connections))
    elapsed = time.perf_counter() - start
    metrics = (await connections[0].request("GET", "/metrics"))[1].decode()
    for c in connections:
        c.close()
    return {"results": results, "elapsed": elapsed, "models": model_stats(metrics)}


def model_stats(metrics: str) -> dict[str, dict[str, float]]:
    """Per model, from /metrics: mean batch size and model time per example (ms)."""
    samples = [s for family in text_string_to_metric_families(metrics) for s in family.samples]

    def read(name):
        return {s.labels["model"]: s.value for s in samples if s.name == name}
    sizes, batches = read("lantern_batch_size_sum"), read("lantern_batch_size_count")
    seconds = read("lantern_batch_duration_seconds_sum")
    return {m: {"batch": sizes[m] / batches[m], "ms_per_example": 1000 * seconds[m] / sizes[m]}
            for m in sizes if batches.get(m)}


def summarize(run: dict) -> dict[str, dict[str, float]]:
    out = {}
    for path, r in run["results"].items():
        lat = np.asarray(r["latency"]) * 1000
        out[path] = {"n": len(lat), "errors": r["errors"], "rps": len(lat) / run["elapsed"],
                     "p50": float(np.percentile(lat, 50)) if len(lat) else float("nan"),
                     "p99": float(np.percentile(lat, 99)) if len(lat) else float("nan")}
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=20.0, help="load duration per mode")
    ap.add_argument("--clients", type=int, default=64)
    ap.add_argument("--mix", type=int, default=30, help="fit requests per explain request")
    ap.add_argument("--max-batch", type=int, default=32)
    ap.add_argument("--max-gen-batch", type=int, default=4)
    ap.add_argument("--max-wait-ms", type=float, default=5.0)
    ap.add_argument("--pairs", type=int, default=64)
    args = ap.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="serve_load_") as root:
        tic = time.perf_counter()
        records = build_exports(root, args.pairs)
        print(f"models built in {time.perf_counter() - tic:.0f} s; {args.clients} clients, "
              f"{args.mix}:1 fit:explain, {args.seconds:g} s per mode", flush=True)
        cache = os.path.join(root, "jax_cache")
        modes = {"micro-batched": (args.max_batch, args.max_gen_batch), "batch-1": (1, 1)}
        table = {}
        for name, (max_batch, max_gen_batch) in modes.items():
            tic = time.perf_counter()
            server = Server(root, cache, max_batch, max_gen_batch, args.max_wait_ms)
            started = time.perf_counter() - tic
            try:
                run = asyncio.run(drive(server.url, records, args.clients, args.seconds, args.mix))
            finally:
                server.stop()
            table[name] = summarize(run)
            models = "; ".join(f"{m}: mean batch {v['batch']:.1f}, {v['ms_per_example']:.1f} ms model time "
                               f"per example" for m, v in run["models"].items())
            print(f"\n{name} (max batch {max_batch} fit / {max_gen_batch} explain; server ready in "
                  f"{started:.0f} s)\n  {models}")
            for path, s in table[name].items():
                print(f"  {path:12s} {s['n']:6d} ok {s['errors']:4d} failed   {s['rps']:7.1f} req/s   "
                      f"p50 {s['p50']:8.1f} ms   p99 {s['p99']:8.1f} ms", flush=True)
        fast, slow = table["micro-batched"], table["batch-1"]
        ratio = {p: fast[p]["rps"] / slow[p]["rps"] if slow[p]["rps"] else float("inf") for p in fast}
        p99 = {p: slow[p]["p99"] / fast[p]["p99"] for p in fast}
        print(f"\nratio micro-batched / batch-1: /v1/fit {ratio['/v1/fit']:.2f}x req/s "
              f"({p99['/v1/fit']:.2f}x lower p99), /v1/explain {ratio['/v1/explain']:.2f}x req/s "
              f"({p99['/v1/explain']:.2f}x lower p99)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
