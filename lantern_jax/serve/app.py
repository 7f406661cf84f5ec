"""The FastAPI app: fit scores, explanations and an OpenAI-compatible chat endpoint.

    POST /v1/fit               {"pairs": [D_base record, ...]}
                               -> {"results": [{"pair_id", "fit_level", "probabilities": {label: p}}],
                                   "latency_ms"}
    POST /v1/explain           {"pair": D_base record, "guided": false}
                               -> {"pair_id", "fit_level", "assessment", "raw_text", "finish_reason",
                                   "usage", "latency_ms", "error"}
    POST /v1/chat/completions  OpenAI chat.completion (messages, max_tokens, temperature, top_p, seed,
                               logprobs, top_logprobs <= 20, stop, n <= 8, stream + stream_options,
                               response_format json_schema with the Assessment schema)
    GET  /v1/models, /healthz, /metrics (Prometheus, prometheus_client)

/v1/explain answers 200 whenever the model ran: an output that doesn't parse as an Assessment
comes back with `assessment: null` and `error: {"type": "model_output_unparsed", ...}` next to
the raw text. Greedy decoding would only repeat it, so a retryable 5xx would mislead clients.
`"guided": true` decodes under the Assessment schema instead (lantern_jax/guided.py): the answer
always parses; the fit level and the text are still the model's greedy choices.

On /v1/chat/completions, `response_format` json_schema (the Assessment schema, as the teacher
client sends it) takes the same schema-guided path. `stream: true` answers with server-sent events
(`chat.completion.chunk` objects, one per token, then `data: [DONE]`); the micro-batcher runs whole
sequences, so the chunks are sent once the generation is done. `n` choices are `n` sequences of
the batch, seeded `seed`, `seed + 1`, ...

Examples from concurrent requests are micro-batched per model (`batcher.py`); each request has
`timeout_s` to finish (504 after that), bodies are capped at `max_body_bytes` (413), and every
error answers with OpenAI's error shape (`errors.py`).
"""
from __future__ import annotations

import contextlib
import json
import logging
import random
import time
import uuid

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response, StreamingResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from lantern_jax.data import pointers, views
from lantern_jax.generate import SamplingConfig
from lantern_jax.serve.errors import ApiError, describe_validation, error_response
from lantern_jax.serve.generation import GenOutput, GenRequest
from lantern_jax.serve.metrics import CONTENT_TYPE
from lantern_jax.serve.middleware import BodyLimitMiddleware, MetricsMiddleware
from lantern_jax.serve.schemas import ChatCompletionRequest, ExplainRequest, FitRequest
from lantern_jax.serve.service import Service
from lantern_jax.teacher.parse import TeacherOutputError, parse_assessment

log = logging.getLogger("lantern_jax.serve")

CHAT_PATH = "/v1/chat/completions"
ENDPOINTS = ("/v1/fit", "/v1/explain", CHAT_PATH, "/v1/models", "/healthz", "/metrics")


def create_app(service: Service):
    """The ASGI app: FastAPI routes inside the body-limit and metrics middleware."""
    cfg = service.config

    @contextlib.asynccontextmanager
    async def lifespan(app):
        for b in service.batchers():
            b.start()
        yield
        for b in service.batchers():
            await b.stop()

    api = FastAPI(title="lantern_jax serving", lifespan=lifespan, docs_url=None, redoc_url=None)

    @api.exception_handler(ApiError)
    async def api_error(request: Request, e: ApiError):
        return e.response()

    @api.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, e: RequestValidationError):
        content_type = request.headers.get("content-type")
        if content_type is not None and not _json_type(content_type):
            # FastAPI parses only JSON bodies: any other type reaches validation as "no body"
            return error_response(400, f"request body must be JSON (Content-Type: application/json), got "
                                       f"Content-Type {content_type!r}", "invalid_request_error", "Content-Type")
        message, param, not_json = describe_validation(list(e.errors()))
        status = 400 if not_json or request.url.path == CHAT_PATH else 422
        return error_response(status, message, "invalid_request_error", param)

    @api.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, e: StarletteHTTPException):
        message = f"no route {request.method} {request.url.path}" if e.status_code in (404, 405) else str(e.detail)
        return error_response(e.status_code, message, "invalid_request_error")

    @api.exception_handler(Exception)
    async def server_error(request: Request, e: Exception):
        log.exception("unhandled error on %s", request.url.path)
        return error_response(500, f"internal server error ({type(e).__name__})", "server_error")

    @api.get("/healthz")
    async def healthz():
        return {"status": "ok", "classifier": service.scorer is not None, "explainer": service.generator is not None,
                "model": cfg.model_name, "uptime_s": round(time.time() - service.started, 1)}

    @api.get("/metrics")
    async def metrics():
        return Response(service.metrics.render(), media_type=CONTENT_TYPE)

    @api.get("/v1/models")
    async def models():
        listed = [{"id": cfg.model_name, "object": "model", "created": int(service.started), "owned_by": "lantern_jax"}]
        return {"object": "list", "data": listed if service.generator else []}

    @api.post("/v1/fit")
    async def fit(body: FitRequest):
        scorer = service.need_scorer()
        tic = time.perf_counter()
        if len(body.pairs) > cfg.max_pairs:
            raise ApiError(422, f"{len(body.pairs)} pairs in one request; this server takes at most {cfg.max_pairs}",
                           param="pairs")
        pairs = [p.to_pair() for p in body.pairs]
        texts = [views.classifier_text(p) for p in pairs]
        probs = await service.within_timeout(service.fit_batcher.submit_many(texts))
        results = [{"pair_id": pair.pair_id, "fit_level": scorer.labels[int(p.argmax())],
                    "probabilities": {label: float(x) for label, x in zip(scorer.labels, p)}}
                   for pair, p in zip(pairs, probs)]
        return JSONResponse({"results": results, "latency_ms": _ms(tic)})

    @api.post("/v1/explain")
    async def explain(body: ExplainRequest):
        tic = time.perf_counter()
        pair = body.pair.to_pair()
        ids = service.prompt(pointers.inhouse_messages(pair), param="pair", status=422)
        if body.guided and (problem := service.generator.guided_problem()):
            raise ApiError(400, f"guided decoding is not available on this server: {problem}", param="guided",
                           code="unsupported_value")
        request = GenRequest(tuple(ids), SamplingConfig(max_new_tokens=cfg.max_new_tokens), guided=body.guided)
        out = await service.within_timeout(service.gen_batcher.submit(request))
        try:  # guided: the structure is certain; the opening sentence is still the model's own
            assessment = parse_assessment(pointers.expand(out.text, pair), check_opening_sentence=not body.guided).to_dict()
            error = None
        except TeacherOutputError as e:
            assessment = None
            error = {"type": "model_output_unparsed", "message": f"model output did not parse: {e}"}
        return JSONResponse({"pair_id": pair.pair_id, "fit_level": assessment["fit_level"] if assessment else None,
                             "assessment": assessment, "raw_text": out.text, "finish_reason": out.finish_reason,
                             "usage": _usage(out.prompt_tokens, out.completion_tokens), "latency_ms": _ms(tic),
                             "error": error})

    @api.post(CHAT_PATH)
    async def chat_completions(body: ChatCompletionRequest):
        generator = service.need_generator()
        if body.model is not None and body.model != cfg.model_name:
            raise ApiError(404, f"model {body.model!r} is not served here; this server serves {cfg.model_name!r}",
                           param="model", code="model_not_found")
        if body.guided and (problem := generator.guided_problem()):
            raise ApiError(400, f"response_format json_schema (schema-guided decoding) is not available on this "
                                f"server: {problem}", param="response_format", code="unsupported_value")
        messages = [{"role": "system" if m.role == "developer" else m.role, "content": m.text()}
                    for m in body.messages]
        ids = service.prompt(messages, param="messages", status=400)
        limit = min(body.token_limit() or cfg.max_new_tokens, cfg.max_new_tokens)
        seed = body.seed if body.seed is not None else random.getrandbits(32)
        temperature = 0.0 if body.guided else body.temperature
        requests = [GenRequest(tuple(ids), SamplingConfig(max_new_tokens=limit, temperature=temperature,
                                                          top_p=body.top_p, seed=seed + i),
                               stop=body.stop_sequences(), guided=body.guided,
                               top_logprobs=(body.top_logprobs or 0) if body.logprobs else None)
                    for i in range(body.n)]
        outs = await service.within_timeout(service.gen_batcher.submit_many(requests))
        head = {"id": f"chatcmpl-{uuid.uuid4().hex[:24]}", "created": int(time.time()), "model": cfg.model_name,
                "system_fingerprint": "lantern_jax"}
        usage = _usage(outs[0].prompt_tokens, sum(o.completion_tokens for o in outs))
        if body.stream:
            include_usage = body.stream_options is not None and body.stream_options.include_usage
            return StreamingResponse(_sse(_chunks(head, outs, generator.pieces, body.logprobs, usage, include_usage)),
                                     media_type="text/event-stream", headers={"cache-control": "no-cache"})
        choices = [{"index": i, "message": {"role": "assistant", "content": out.text, "refusal": None},
                    "logprobs": {"content": out.logprobs, "refusal": None} if body.logprobs else None,
                    "finish_reason": out.finish_reason} for i, out in enumerate(outs)]
        return JSONResponse({**head, "object": "chat.completion", "choices": choices, "usage": usage})

    app = BodyLimitMiddleware(api, cfg.max_body_bytes)
    app = MetricsMiddleware(app, service.metrics, ENDPOINTS)
    return app


def _json_type(content_type: str) -> bool:
    kind = content_type.split(";")[0].strip().lower()
    return kind == "application/json" or (kind.startswith("application/") and kind.endswith("+json"))


def _ms(tic: float) -> float:
    return round((time.perf_counter() - tic) * 1000, 2)


def _usage(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    return {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens}


def _chunks(head: dict, outs: list[GenOutput], pieces, logprobs: bool, usage: dict, include_usage: bool):
    """OpenAI's chat.completion.chunk objects for finished generations: per choice the role, one
    chunk per token (with its logprob entry when asked), the finish reason; then the usage if asked."""
    def chunk(index, delta, finish_reason=None, entries=None):
        choice = {"index": index, "delta": delta, "logprobs": None if entries is None else
                  {"content": entries, "refusal": None}, "finish_reason": finish_reason}
        return {**head, "object": "chat.completion.chunk", "choices": [choice],
                **({"usage": None} if include_usage else {})}

    for i, out in enumerate(outs):
        yield chunk(i, {"role": "assistant", "content": ""}, entries=[] if logprobs else None)
        for j, piece in enumerate(pieces(out)):
            yield chunk(i, {"content": piece}, entries=[out.logprobs[j]] if logprobs else None)
        yield chunk(i, {}, out.finish_reason)
    if include_usage:
        yield {**head, "object": "chat.completion.chunk", "choices": [], "usage": usage}


async def _sse(events):
    for event in events:
        yield f"data: {json.dumps(event, ensure_ascii=False)}\n\n"
    yield "data: [DONE]\n\n"
