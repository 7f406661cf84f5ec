"""ASGI middleware: request metrics (outermost, so every answer is counted) and the body limit.

Plain ASGI rather than Starlette's BaseHTTPMiddleware: no extra task per request, and the body
limit can answer 413 before reading an oversized body (Content-Length) or as soon as a chunked
one passes the limit.
"""
from __future__ import annotations

import json
import time
from collections.abc import Iterable

from lantern_jax.serve.metrics import ServerMetrics


class MetricsMiddleware:
    """Counts requests by endpoint and status and times them. Unknown paths share one label, so
    a scanner can't grow the label set."""

    def __init__(self, app, metrics: ServerMetrics, endpoints: Iterable[str]):
        self.app, self.metrics, self.endpoints = app, metrics, frozenset(endpoints)

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        endpoint = scope["path"] if scope["path"] in self.endpoints else "other"
        status = {"code": 500}
        tic = time.perf_counter()

        async def send_and_note(message):
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_note)
        finally:
            self.metrics.requests.labels(endpoint=endpoint, status=str(status["code"])).inc()
            self.metrics.latency.labels(endpoint=endpoint).observe(time.perf_counter() - tic)


class BodyLimitMiddleware:
    """Answers 413 to bodies over `max_bytes`; smaller bodies are replayed to the app unchanged."""

    def __init__(self, app, max_bytes: int):
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["method"] not in ("POST", "PUT", "PATCH"):
            return await self.app(scope, receive, send)
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            return await self._too_large(send, int(declared))
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                return await self._too_large(send, None)
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body, replayed = b"".join(chunks), False

        async def replay():
            nonlocal replayed
            if replayed:
                return await receive()  # after the body: wait for the disconnect as usual
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)

    async def _too_large(self, send, declared: int | None) -> None:
        size = f"{declared} bytes" if declared is not None else "more than that"
        payload = json.dumps({"error": {
            "message": f"request body too large: {size}; this server takes at most {self.max_bytes} bytes",
            "type": "invalid_request_error", "param": None, "code": "body_too_large"}}).encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", str(len(payload)).encode()), (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": payload})
