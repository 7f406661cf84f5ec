"""OpenAI-compatible HTTP server for the simulated expert, on loopback.

    python -m lantern_jax.teacher.server --pairs FILE.jsonl --port 8011 [--seed 0]
        [--errors malformed_json=0.05,refusal=0.01] [--faults 429=0.1,500=0.05,timeout=0.02,drop=0.02,
        malformed_body=0.02] [--latency-ms 50] [--retry-after-s 0.05] [--no-structured-output]

It recognises the pair a prompt is about from the fenced blocks rendered by `data/prompts.py`
(indexed by their text, redacted variants included), answers the single call and each chain
sub-task, and returns `choices[0].logprobs.content[*].top_logprobs` (up to 20) with the calibrated
fit-level distribution at the fit-level token, `usage`, and honours `response_format` json_schema.
`stream: true` answers with server-sent events (`chat.completion.chunk` objects, one per token
when logprobs are asked, else per word; `stream_options.include_usage` adds the usage chunk).
The expert is deterministic, so `n` > 1 is refused (400) rather than answered with copies.
Transport faults are drawn per request from (seed, prompt, attempt number), so a run is
reproducible whatever the arrival order. `GET /sim/stats` reports request counts (per pair too);
every response carries `x-sim-request-count`.
"""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import hashlib
import json
import logging
import os
import random
import re
import socket
import sys
import threading
import time
from collections import Counter
from typing import Iterator, Sequence

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

from lantern_jax.data import prompts, synth
from lantern_jax.data.schema import DataError, Pair, check_text
from lantern_jax.teacher.redact import redact_member
from lantern_jax.teacher.simulated import ExpertConfig, SimulatedExpert, parse_error_rates, token_logprobs

FAULTS = ("429", "500", "timeout", "drop", "malformed_body")
MODEL_NAME = "lantern-sim-expert"


@dataclasses.dataclass(frozen=True)
class ServerConfig:
    seed: int = 0
    model: str = MODEL_NAME
    structured_output: bool = True  # False: answer response_format json_schema with a 400, like older servers
    latency_s: float = 0.0  # added to every request
    fault_rates: dict[str, float] = dataclasses.field(default_factory=dict)  # name in FAULTS -> rate
    retry_after_s: float = 0.05  # sent with 429s
    timeout_delay_s: float = 30.0  # how long a "timeout" request hangs before answering
    api_key: str | None = None  # when set, requests must carry "Authorization: Bearer <api_key>"
    expert: ExpertConfig = ExpertConfig()

    def __post_init__(self):
        unknown = sorted(set(self.fault_rates) - set(FAULTS))
        if unknown:
            raise ValueError(f"unknown fault(s) {unknown}; known: {', '.join(FAULTS)}")


def _digest(text: str) -> str:
    return hashlib.sha1(text.encode("utf-8")).hexdigest()


class PairIndex:
    """Finds the pair (or job) a prompt is about from its fenced blocks."""

    def __init__(self, pairs: Sequence[Pair]):
        self.pairs = {p.pair_id: p for p in pairs}
        self.job_blocks: dict[str, str] = {}  # digest of a rendered job block body -> job_id
        self.headers: dict[str, set[str]] = {}  # digest of the job header -> job_ids
        self.members: dict[str, set[str]] = {}  # digest of a member block body -> member_ids
        self.redacted_only: set[str] = set()  # digests of redacted profiles that differ from the raw one
        self.raw_with_pii: set[str] = set()  # digests of raw profiles that redaction would change
        self.by_ids: dict[tuple[str, str], str] = {}  # (job_id, member_id) -> pair_id
        self.job_pair: dict[str, str] = {}  # job_id -> a pair holding the job
        for p in pairs:
            for compress in (False, True):
                body = prompts.fenced_blocks(prompts.render_job(p.job, compress=compress))
                self.job_blocks[_digest(next(iter(body.values())))] = p.job.job_id
            self.headers.setdefault(_digest(prompts.job_header(p.job)), set()).add(p.job.job_id)
            raw, redacted = (_digest(prompts.fenced_blocks(prompts.render_member(m))[prompts.MEMBER_BLOCK])
                             for m in (p.member, redact_member(p.member)))
            for digest in {raw, redacted}:
                self.members.setdefault(digest, set()).add(p.member.member_id)
            if raw != redacted:
                self.redacted_only.add(redacted)
                self.raw_with_pii.add(raw)
            self.by_ids[(p.job.job_id, p.member.member_id)] = p.pair_id
            self.job_pair.setdefault(p.job.job_id, p.pair_id)

    def resolve(self, text: str) -> tuple[str, Pair, list[dict] | None, str | None] | None:
        """(step, pair, items from an intermediate block, how the profile arrived: raw / raw_with_pii /
        redacted) or None for an unknown prompt."""
        blocks = prompts.fenced_blocks(text)
        job_ids: set[str] = set()
        step, items = None, None
        for name in (prompts.JOB_BLOCK, prompts.REQUIREMENTS_BLOCK):
            if name in blocks:
                step = "single"
                hit = self.job_blocks.get(_digest(blocks[name]))
                job_ids = {hit} if hit else self.headers.get(_digest(_header(blocks[name])), set())
        for name, kind in ((prompts.EXTRACTED_BLOCK, "evaluate"), (prompts.EVALUATED_BLOCK, "explain")):
            if name in blocks:
                step = kind
                head, _, rest = blocks[name].partition("\n\n")
                job_ids = self.headers.get(_digest(head), set())
                try:
                    items = [r for r in json.loads(rest)["requirements"] if isinstance(r, dict)]
                except (ValueError, KeyError, TypeError):
                    items = []
        if step is None or not job_ids:
            return None
        if prompts.MEMBER_BLOCK not in blocks:
            if step != "single":
                return None
            job_id = sorted(job_ids)[0]
            return "extract", self.pairs[self.job_pair[job_id]], None, None
        member_digest = _digest(blocks[prompts.MEMBER_BLOCK])
        profile = ("redacted" if member_digest in self.redacted_only
                   else "raw_with_pii" if member_digest in self.raw_with_pii else "raw")
        member_ids = self.members.get(member_digest, set())
        for job_id in sorted(job_ids):
            for member_id in sorted(member_ids):
                pair_id = self.by_ids.get((job_id, member_id))
                if pair_id:
                    return step, self.pairs[pair_id], items, profile
        return None


def _header(body: str) -> str:
    return "\n".join(body.split("\n")[:3])


class _Dropped(Exception):
    """Raised mid-body to make uvicorn drop the connection (an injected fault)."""


class _QuietDrops(logging.Filter):
    """Hides uvicorn's error logs for faults injected on purpose (dropped connections, requests
    still hanging in a "timeout" fault at shutdown)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if "graceful shutdown exceeded" in record.getMessage():
            return False
        pending = [record.exc_info[1]] if record.exc_info else []
        while pending:
            exc = pending.pop()
            if isinstance(exc, _Dropped):
                return False
            pending += list(getattr(exc, "exceptions", ())) + [e for e in (exc.__cause__, exc.__context__) if e]
        return True


class SimulatedTeacherServer:
    """The simulated expert behind /v1/chat/completions, with fault injection and counters."""

    def __init__(self, pairs: Sequence[Pair], config: ServerConfig = ServerConfig()):
        self.config = config
        self.index = PairIndex(pairs)
        self.expert = SimulatedExpert(pairs, config.expert)
        self.attempts: Counter[str] = Counter()  # prompt digest -> requests seen
        self.by_pair: Counter[str] = Counter()
        self.by_outcome: Counter[str] = Counter()
        self.profiles_seen: Counter[str] = Counter()  # raw / raw_with_pii / redacted profiles received
        self.requests = 0
        self._tails: dict[str, bytes] = {}
        self._resolved: dict[str, tuple | None] = {}

    # -- pieces ---------------------------------------------------------------------------------
    def _fault(self, digest: str, attempt: int) -> str | None:
        rng = random.Random(f"{self.config.seed}:fault:{digest}:{attempt}")
        draw, edge = rng.random(), 0.0
        for name in FAULTS:
            edge += self.config.fault_rates.get(name, 0.0)
            if draw < edge:
                return name
        return None

    def _body_tail(self, body: dict, digest: str, step: str, pair: Pair, items) -> bytes:
        """`"choices": ..., "usage": ...` as JSON bytes: deterministic, so built once per distinct request
        (`digest` is that of the raw request body)."""
        key = digest
        if key in self._tails:
            return self._tails[key]
        fmt = body.get("response_format") or {}
        structured = isinstance(fmt, dict) and fmt.get("type") == "json_schema"
        want_logprobs = bool(body.get("logprobs"))
        top_k = min(int(body.get("top_logprobs") or 0), 20) if want_logprobs else None
        max_tokens = body.get("max_completion_tokens") or body.get("max_tokens")
        answer = self.expert.answer(pair, step, items, structured)
        content, n_tokens, truncated = token_logprobs(answer.text or "", answer.fit_level, answer.fit_probs, top_k,
                                                      f"{self.config.seed}:tok:{key}", max_tokens)
        text = "".join(c["token"] for c in content) if truncated else answer.text
        prompt_tokens = prompts.messages_tokens(body["messages"])
        tail = {
            "choices": [{"index": 0, "finish_reason": "length" if truncated else answer.finish_reason,
                         "message": {"role": "assistant", "content": text, "refusal": answer.refusal},
                         "logprobs": {"content": content, "refusal": None} if want_logprobs else None}],
            "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": n_tokens,
                      "total_tokens": prompt_tokens + n_tokens},
        }
        self._tails[key] = json.dumps(tail)[1:-1].encode("utf-8")
        return self._tails[key]

    def completion_bytes(self, body: dict, digest: str, step: str, pair: Pair, items) -> bytes:
        """A chat.completion response body (OpenAI's shape)."""
        head = {"id": f"chatcmpl-sim-{digest[:12]}-{self.attempts[digest]}", "object": "chat.completion",
                "created": int(time.time()), "model": self.config.model,
                "system_fingerprint": f"sim-{self.config.seed}"}
        return json.dumps(head)[:-1].encode("utf-8") + b", " + self._body_tail(body, digest, step, pair, items) + b"}"

    @staticmethod
    def stream_events(payload: bytes, include_usage: bool) -> list[bytes]:
        """A chat.completion body as the server-sent events a streaming request gets."""
        done = json.loads(payload)
        choice = done["choices"][0]
        head = {k: done[k] for k in ("id", "created", "model", "system_fingerprint")}
        extra = {"usage": None} if include_usage else {}

        def chunk(delta, finish_reason=None, entries=None):
            return {**head, "object": "chat.completion.chunk", **extra, "choices": [{
                "index": 0, "delta": delta, "finish_reason": finish_reason,
                "logprobs": None if entries is None else {"content": entries, "refusal": None}}]}

        logprobs = (choice.get("logprobs") or {}).get("content")
        message = choice["message"]
        events = [chunk({"role": "assistant", "content": ""}, entries=[] if logprobs is not None else None)]
        if message["refusal"] is not None:
            events.append(chunk({"refusal": message["refusal"]}))
        elif logprobs:  # one chunk per token, as the API streams them
            events += [chunk({"content": entry["token"]}, entries=[entry]) for entry in logprobs]
        else:
            events += [chunk({"content": word}) for word in re.findall(r"\S*\s*", message["content"] or "") if word]
        events.append(chunk({}, choice["finish_reason"]))
        if include_usage:
            events.append({**head, "object": "chat.completion.chunk", "choices": [], "usage": done["usage"]})
        return [f"data: {json.dumps(e)}\n\n".encode() for e in events] + [b"data: [DONE]\n\n"]

    def stats(self) -> dict:
        return {"requests": self.requests, "by_pair": dict(self.by_pair), "by_outcome": dict(self.by_outcome),
                "profiles": dict(self.profiles_seen)}

    def reset(self) -> None:
        self.requests = 0
        self.by_pair.clear()
        self.by_outcome.clear()
        self.profiles_seen.clear()

    # -- HTTP -----------------------------------------------------------------------------------
    def app(self):
        app = FastAPI(title="lantern_jax simulated teacher", docs_url=None, redoc_url=None)
        cfg = self.config

        def error(status: int, message: str, kind: str, headers: dict | None = None):
            payload = {"error": {"message": message, "type": kind, "param": None, "code": None}}
            return JSONResponse(payload, status_code=status, headers=headers)

        @app.get("/health")
        async def health():
            return {"ok": True}

        @app.get("/v1/models")
        async def models(request: Request):
            if cfg.api_key is not None and request.headers.get("authorization") != f"Bearer {cfg.api_key}":
                return error(401, "Incorrect API key provided", "invalid_request_error")
            return {"object": "list", "data": [{"id": cfg.model, "object": "model", "owned_by": "lantern_jax"}]}

        @app.get("/sim/stats")
        async def stats():
            return self.stats()

        @app.post("/sim/reset")
        async def reset():
            self.reset()
            return self.stats()

        @app.post("/v1/chat/completions")
        async def chat(request: Request):
            self.requests += 1
            count = {"x-sim-request-count": str(self.requests)}
            if cfg.api_key is not None and request.headers.get("authorization") != f"Bearer {cfg.api_key}":
                self.by_outcome["unauthorized"] += 1
                return error(401, "Incorrect API key provided", "invalid_request_error", count)
            try:
                raw = await request.body()
                body = json.loads(raw)
                messages = body["messages"]
                text = "\n".join(str(m.get("content") or "") for m in messages if m.get("role") == "user")
            except (ValueError, KeyError, TypeError, AttributeError):
                self.by_outcome["bad_request"] += 1
                return error(400, "request body must be JSON with 'messages'", "invalid_request_error", count)
            try:
                check_text(body, "")  # a "\ud800" escape can't be hashed, tokenized or echoed
            except DataError as e:
                self.by_outcome["bad_request"] += 1
                return error(400, str(e), "invalid_request_error", count)
            n, stream = body.get("n", 1), body.get("stream", False)
            if n != 1 or type(n) is not int:
                self.by_outcome["bad_request"] += 1
                return error(400, f"field 'n': the simulated teacher is deterministic and answers one choice; "
                                  f"send n=1 (got {n!r})", "invalid_request_error", count)
            if not isinstance(stream, bool):
                self.by_outcome["bad_request"] += 1
                return error(400, f"field 'stream' must be a boolean, got {stream!r}", "invalid_request_error", count)
            fmt = body.get("response_format") or {}
            if fmt.get("type") == "json_schema" and not cfg.structured_output:
                self.by_outcome["unsupported_format"] += 1
                return error(400, "response_format json_schema is not supported by this server",
                             "invalid_request_error", count)
            text_digest = _digest(text)
            if text_digest not in self._resolved:
                self._resolved[text_digest] = self.index.resolve(text)
            resolved = self._resolved[text_digest]
            if resolved is None:
                self.by_outcome["unknown_prompt"] += 1
                return error(400, "simulated teacher: the prompt matches no loaded pair", "invalid_request_error",
                             count)
            step, pair, items, profile = resolved
            if profile:
                self.profiles_seen[profile] += 1
            self.by_pair[pair.pair_id if step != "extract" else f"job:{pair.job.job_id}"] += 1
            digest = hashlib.sha1(raw).hexdigest()  # a retry resends the same bytes
            attempt = self.attempts[digest]
            self.attempts[digest] += 1
            fault = self._fault(digest, attempt)
            self.by_outcome[fault or "ok"] += 1
            if cfg.latency_s:
                await asyncio.sleep(cfg.latency_s)
            if fault == "429":
                return error(429, "Rate limit reached, retry later", "rate_limit_exceeded",
                             {**count, "retry-after": f"{cfg.retry_after_s:g}",
                              "retry-after-ms": str(int(cfg.retry_after_s * 1000))})
            if fault == "500":
                return error(500, "The server had an error while processing your request", "server_error", count)
            if fault == "timeout":
                await asyncio.sleep(cfg.timeout_delay_s)
            payload = self.completion_bytes(body, digest, step, pair, items)
            if stream:
                events = self.stream_events(payload, bool((body.get("stream_options") or {}).get("include_usage")))

                async def sse() -> Iterator[bytes]:
                    for i, event in enumerate(events):
                        if fault in ("drop", "malformed_body") and i == len(events) // 2:
                            if fault == "drop":
                                raise _Dropped("injected dropped connection")
                            yield event[:len(event) // 2]  # a torn event, then the stream ends
                            return
                        yield event
                return StreamingResponse(sse(), media_type="text/event-stream", headers=count)
            if fault == "malformed_body":
                cut = random.Random(f"{cfg.seed}:cut:{digest}:{attempt}").randrange(1, len(payload) // 2)
                return Response(payload[:cut], media_type="application/json", headers=count)
            if fault == "drop":
                async def broken() -> Iterator[bytes]:
                    yield payload[: len(payload) // 3]
                    raise _Dropped("injected dropped connection")
                return StreamingResponse(broken(), media_type="application/json", headers=count)
            return Response(payload, media_type="application/json", headers=count)

        return app


# ----------------------------------------------------------------------------- running

def _uvicorn_server(app, host: str, port: int):
    import uvicorn
    for name in ("uvicorn.error", "uvicorn.access"):
        logging.getLogger(name).addFilter(_QuietDrops())
    config = uvicorn.Config(app, host=host, port=port, log_level="warning", access_log=False, lifespan="off",
                            timeout_graceful_shutdown=1, loop="auto")
    return uvicorn.Server(config)


def _listen(host: str, port: int) -> socket.socket:
    """A listening socket. TCP_NODELAY (inherited by accepted sockets) avoids 40 ms Nagle /
    delayed-ACK stalls between the header and body writes of each response."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.bind((host, port))
    sock.listen(2048)  # connections queue from now on, before uvicorn starts accepting
    return sock


@contextlib.contextmanager
def serve_in_thread(pairs: Sequence[Pair], config: ServerConfig = ServerConfig(),
                    host: str = "127.0.0.1") -> Iterator[tuple[str, SimulatedTeacherServer]]:
    """Runs the server on a free loopback port in a thread; yields (base_url, server)."""
    sim = SimulatedTeacherServer(pairs, config)
    sock = _listen(host, 0)
    port = sock.getsockname()[1]
    server = _uvicorn_server(sim.app(), host, port)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("simulated teacher server did not start")
        time.sleep(0.01)
    try:
        yield f"http://{host}:{port}/v1", sim
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


def _serve_child(pairs: Sequence[Pair], config: ServerConfig, host: str, conn) -> None:
    sim = SimulatedTeacherServer(pairs, config)
    sock = _listen(host, 0)
    port = sock.getsockname()[1]
    conn.send(port)
    conn.close()
    _uvicorn_server(sim.app(), host, port).run(sockets=[sock])


@contextlib.contextmanager
def serve_in_process(pairs: Sequence[Pair], config: ServerConfig = ServerConfig(),
                     host: str = "127.0.0.1", start_timeout_s: float = 60.0) -> Iterator[str]:
    """Runs the server in a child process on a free loopback port; yields its base_url.

    For bulk labeling: the server's JSON encoding (hundreds of top-logprob entries per response)
    then runs on its own core instead of sharing the client's GIL, which halves the teacher stage
    on 2 cores. Spawned, not forked: the parent may hold JAX's threads."""
    import multiprocessing

    ctx = multiprocessing.get_context("spawn")
    parent, child = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_serve_child, args=(list(pairs), config, host, child), daemon=True)
    proc.start()
    child.close()
    try:
        if not parent.poll(start_timeout_s):
            raise RuntimeError(f"simulated teacher server did not start within {start_timeout_s:g}s")
        try:
            port = parent.recv()
        except EOFError:
            raise RuntimeError(f"simulated teacher server exited at start (status {proc.exitcode})") from None
        yield f"http://{host}:{port}/v1"
    finally:
        proc.terminate()  # uvicorn shuts down on SIGTERM
        proc.join(timeout=10)
        if proc.is_alive():
            proc.kill()
            proc.join()


def _rates(spec: str, what: str) -> dict[str, float]:
    rates = {}
    for item in filter(None, (s.strip() for s in spec.split(","))):
        name, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"--{what}: expected name=rate, got {item!r}")
        rates[name.strip()] = float(value)
    return rates


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="OpenAI-compatible simulated LANTERN teacher (loopback).")
    parser.add_argument("--pairs", required=True, help="D_base pairs, JSONL of Pair.to_dict()")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8011, help="0 picks a free port")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--model", default=MODEL_NAME)
    parser.add_argument("--noise", type=float, default=ExpertConfig.noise, help="teacher's fit-level noise (s.d.)")
    parser.add_argument("--errors", default="", help="content error rates, e.g. malformed_json=0.05,refusal=0.01")
    parser.add_argument("--faults", default="", help=f"transport fault rates over {', '.join(FAULTS)}")
    parser.add_argument("--latency-ms", type=float, default=0.0)
    parser.add_argument("--retry-after-s", type=float, default=0.05)
    parser.add_argument("--timeout-delay-s", type=float, default=30.0)
    parser.add_argument("--no-structured-output", action="store_true")
    parser.add_argument("--api-key-env", help="require the key held in this environment variable")
    args = parser.parse_args(argv)
    try:
        pairs = synth.read_pairs(args.pairs, nonempty=True)
        config = ServerConfig(seed=args.seed, model=args.model, structured_output=not args.no_structured_output,
                              latency_s=args.latency_ms / 1000, fault_rates=_rates(args.faults, "faults"),
                              retry_after_s=args.retry_after_s, timeout_delay_s=args.timeout_delay_s,
                              api_key=os.environ.get(args.api_key_env) if args.api_key_env else None,
                              expert=ExpertConfig(seed=args.seed, noise=args.noise,
                                                  error_rates=parse_error_rates(args.errors)))
    except (DataError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    sim = SimulatedTeacherServer(pairs, config)
    try:
        sock = _listen(args.host, args.port)
    except OSError as e:
        print(f"error: cannot listen on {args.host}:{args.port}: {e.strerror}", file=sys.stderr)
        return 2
    port = sock.getsockname()[1]
    print(f"simulated teacher: {len(pairs)} pairs, listening on http://{args.host}:{port}/v1", flush=True)
    _uvicorn_server(sim.app(), args.host, port).run(sockets=[sock])
    return 0


if __name__ == "__main__":
    sys.exit(main())
