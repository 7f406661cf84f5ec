"""API teacher: any OpenAI-compatible chat endpoint (OpenAI, Azure, vLLM, the simulated expert).

Built on the official `openai` async client with its own retries switched off, because ours honour
`Retry-After`, add jitter, and also retry malformed bodies and dropped connections. Structured
output (json_schema) is used where the server takes it, prompt-only JSON otherwise. Responses are
cached on disk (see cache.py) before anything else happens to them, so a killed run never pays
twice. The API key is read from the environment variable named in the config and kept only inside
the HTTP client: it is never logged, cached, recorded or put in an exception's text.
"""
from __future__ import annotations

import asyncio
import dataclasses
import email.utils
import json
import logging
import os
import random
import re
import time
from collections import Counter
from typing import Any, Sequence
from urllib.parse import urlsplit

from lantern_jax.data import prompts
from lantern_jax.data.schema import Assessment, Pair, Requirement, scrub_text
from lantern_jax.teacher.cache import ResponseCache, cache_key
from lantern_jax.teacher.config import TeacherConfig, TeacherConfigError
from lantern_jax.teacher.logprobs import compact, fit_level_probs
from lantern_jax.teacher.parse import (TeacherOutputError, parse_assessment, parse_evaluated, parse_extracted,
                                       parse_rating)
from lantern_jax.teacher.redact import redact_pair, should_redact

log = logging.getLogger("lantern_jax.teacher")
# A lone surrogate can reach a JSON body as an escape (the six characters \ud800) or as its raw bytes
# (json decodes with surrogatepass); neither is text a cache, a record or a tokenizer can hold.
_MAYBE_SURROGATE = re.compile(rb"\\u[dD][89a-fA-F]|\xed[\xa0-\xbf]")


class TeacherError(RuntimeError):
    """A failure of the teacher call itself (not of its output); str() is one line."""


class TeacherUnreachableError(TeacherError):
    pass


class TeacherAuthError(TeacherError):
    pass


@dataclasses.dataclass
class Completion:
    content: str | None
    refusal: str | None
    finish_reason: str | None
    logprobs: list[dict] | None
    usage: dict[str, int]
    model: str
    cached: bool

    @property
    def text(self) -> str:
        return self.content if self.content is not None else (self.refusal or "")


@dataclasses.dataclass
class TeacherResult:
    """One pair's outcome; label.py turns it into a teacher record."""
    pair_id: str
    raw_text: str
    assessment: dict | None
    parse_error: str | None
    fit_probs: dict | None
    logprobs: list[dict] | None
    usage: dict[str, int]
    cost_usd: float
    cached: bool
    finish_reason: str | None
    steps: list[dict] | None = None  # chain mode: each sub-task's raw text and usage


@dataclasses.dataclass
class TeacherStats:
    requests: int = 0  # HTTP requests sent, retries included
    responses: int = 0  # successful responses paid for in this run
    cached_responses: int = 0
    retries: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
    errors: Counter = dataclasses.field(default_factory=Counter)


def _retry_after(headers) -> float | None:
    if headers is None:
        return None
    for name, scale in (("retry-after-ms", 0.001), ("retry-after", 1.0)):
        value = headers.get(name)
        if value is None:
            continue
        try:
            return max(float(value) * scale, 0.0)
        except ValueError:
            parsed = email.utils.parsedate_tz(value)
            if parsed is not None:
                return max(email.utils.mktime_tz(parsed) - time.time(), 0.0)
    return None


class ApiTeacher:
    """**API** `await ApiTeacher(config).assess(pair) -> TeacherResult`."""

    def __init__(self, config: TeacherConfig):
        self.config = config
        self._api_key = self._read_key(config)
        url = urlsplit(config.base_url)
        self.teacher_id = f"{config.model}@{url.hostname}"  # no userinfo; a port change keeps the teacher
        self.decoding = config.decoding()
        self.redact = should_redact(config.redact, config.base_url)
        self.cache = ResponseCache(config.cache_dir) if config.cache_dir else None
        self.stats = TeacherStats()
        self._use_schema = config.structured_output != "none"
        self._client = None
        self._slots: asyncio.Semaphore | None = None
        self._inflight: dict[str, asyncio.Future] = {}
        self._shared: dict[str, Completion] = {}

    def __repr__(self) -> str:  # no key in reprs, tracebacks or logs
        return f"ApiTeacher({self.teacher_id!r})"

    @staticmethod
    def _read_key(config: TeacherConfig) -> str:
        if config.api_key_env is None:
            return "not-needed"
        key = os.environ.get(config.api_key_env)
        if not key:
            raise TeacherConfigError(f"environment variable {config.api_key_env} is not set "
                                     f"(teacher config api_key_env names the variable holding the API key)")
        return key

    def _scrub(self, text: str) -> str:
        text = " ".join(str(text).split())
        return text.replace(self._api_key, "***") if len(self._api_key) >= 4 else text

    def _http(self):
        if self._client is None:
            import openai
            self._client = openai.AsyncOpenAI(base_url=self.config.base_url, api_key=self._api_key,
                                              max_retries=0, timeout=self.config.timeout_s)
            self._slots = asyncio.Semaphore(self.config.concurrency)
        return self._client

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.close()
            self._client = None

    # -- transport ------------------------------------------------------------------------------
    async def preflight(self) -> None:
        """Fails fast, with one line, when the server can't be reached at all."""
        import openai
        client = self._http()
        last = None
        for attempt in range(3):
            try:
                await client.models.list(timeout=min(self.config.timeout_s, 10.0))
                return
            except openai.APITimeoutError:
                last = "timed out"
            except openai.APIConnectionError as e:
                last = self._scrub(str(e.__cause__ or "connection failed"))[:120]
            except (openai.AuthenticationError, openai.PermissionDeniedError) as e:
                raise TeacherAuthError(f"the teacher at {self.config.base_url} rejected the API key from "
                                       f"{self.config.api_key_env} (HTTP {e.status_code})") from None
            except (openai.APIStatusError, openai.APIResponseValidationError, ValueError):
                return  # it answered: some servers lack /models
            await asyncio.sleep(self._backoff(attempt))
        raise TeacherUnreachableError(f"cannot reach the teacher at {self.config.base_url} ({last})")

    def _backoff(self, attempt: int) -> float:
        cap = min(self.config.backoff_max_s, self.config.backoff_base_s * 2 ** attempt)
        return cap * random.uniform(0.5, 1.0)  # jitter spreads retries of many workers apart

    def _request(self, messages: Sequence[dict], step: str) -> dict[str, Any]:
        cfg = self.config
        kwargs: dict[str, Any] = {"model": cfg.model, "messages": list(messages), "temperature": cfg.temperature,
                                  "top_p": cfg.top_p, "max_tokens": cfg.max_tokens}
        if cfg.seed is not None:
            kwargs["seed"] = cfg.seed
        if cfg.logprobs:
            kwargs["logprobs"] = True
            if cfg.top_logprobs:
                kwargs["top_logprobs"] = cfg.top_logprobs
        if self._use_schema:
            kwargs["response_format"] = {"type": "json_schema", "json_schema": {
                "name": f"lantern_{step}", "strict": True, "schema": prompts.STEP_SCHEMAS[step]}}
        return kwargs

    async def _send(self, messages: Sequence[dict], step: str) -> Completion:
        """One completion with retries; raises TeacherError when they run out."""
        import httpx2  # the openai SDK's HTTP layer
        import openai
        client = self._http()
        last, attempt = "no attempt", 0
        while True:
            delay = None
            request = self._request(messages, step)
            try:
                async with self._slots:
                    self.stats.requests += 1
                    # The SDK's documented raw-request path: same auth, base URL, timeout and error
                    # classes as `chat.completions.create`, without re-validating our (already plain
                    # JSON) params against its TypedDicts on every call.
                    response = await client.post("/chat/completions", body=request, cast_to=httpx2.Response)
                    body = response.content
                data = json.loads(body)
                if _MAYBE_SURROGATE.search(body):  # rare: only then walk the (logprob-heavy) body
                    data = scrub_text(data)
                return self._completion(data)
            except openai.APITimeoutError:
                last = "timed out"
            except openai.APIConnectionError as e:
                last = f"connection error ({type(e.__cause__).__name__ if e.__cause__ else 'dropped'})"
            except openai.RateLimitError as e:
                last, delay = "HTTP 429", _retry_after(e.response.headers)
            except (openai.AuthenticationError, openai.PermissionDeniedError) as e:
                raise TeacherAuthError(f"the teacher at {self.config.base_url} rejected the API key from "
                                       f"{self.config.api_key_env} (HTTP {e.status_code})") from None
            except openai.APIStatusError as e:
                if e.status_code == 400 and "response_format" in request and self.config.structured_output == "auto" \
                        and "response_format" in self._scrub(e.message):
                    if self._use_schema:  # concurrent requests may all learn it: say it once
                        self._use_schema = False
                        log.warning("teacher: %s does not take json_schema response_format; using prompt-only JSON",
                                    self.config.base_url)
                    continue  # resent at once without the schema; not a failed attempt
                last = f"HTTP {e.status_code}"
                if e.status_code < 500 and e.status_code not in (408, 409):
                    raise TeacherError(f"teacher request failed: HTTP {e.status_code}: "
                                       f"{self._scrub(e.message)[:200]}") from None
                delay = _retry_after(e.response.headers)
            except (openai.APIResponseValidationError, ValueError, KeyError, IndexError, TypeError, AttributeError) as e:
                last = f"malformed response body ({type(e).__name__})"
            self.stats.errors[last.split(" (")[0]] += 1
            if attempt >= self.config.max_retries:
                raise TeacherError(f"teacher request failed after {attempt + 1} attempts: {last}")
            self.stats.retries += 1
            wait = self._backoff(attempt) if delay is None else min(delay, self.config.backoff_max_s)
            attempt += 1
            await asyncio.sleep(wait)

    @staticmethod
    def _completion(data: dict) -> Completion:
        """The fields we use from an OpenAI chat.completion body, checked (a bad body raises and is retried).

        Read from the JSON directly: building the SDK's pydantic models for thousands of top-logprob
        entries costs more CPU than the rest of the request.
        """
        choice = data["choices"][0]
        message = choice["message"]
        content, refusal = message.get("content"), message.get("refusal")
        if not isinstance(content, (str, type(None))) or not isinstance(refusal, (str, type(None))):
            raise TypeError("message content is not text")
        logprobs = (choice.get("logprobs") or {}).get("content")
        if logprobs is not None and not (isinstance(logprobs, list) and all(
                isinstance(t, dict) and "token" in t and "logprob" in t for t in logprobs)):
            raise TypeError("logprobs.content is not a list of tokens")
        usage = data.get("usage") or {}
        return Completion(
            content=content, refusal=refusal, finish_reason=choice.get("finish_reason"), logprobs=logprobs,
            model=str(data.get("model", "")), cached=False,
            usage={"prompt_tokens": int(usage.get("prompt_tokens") or 0),
                   "completion_tokens": int(usage.get("completion_tokens") or 0)})

    async def complete(self, messages: Sequence[dict], step: str, pair_id: str) -> Completion:
        """Cached completion: a cache hit sends nothing; concurrent identical prompts share one call."""
        key = cache_key(prompts.PROMPT_VERSION, self.config.model, self.decoding, messages)
        if self.cache is not None:
            entry = self.cache.get(key)
            if entry is not None:
                self.stats.cached_responses += 1
                return Completion(**{**entry["completion"], "cached": True})
        if key in self._shared:
            return self._shared[key]
        if key in self._inflight:
            completion = await asyncio.shield(self._inflight[key])
            return dataclasses.replace(completion, cached=True)
        future = asyncio.get_running_loop().create_future()
        self._inflight[key] = future
        try:
            completion = await self._send(messages, step)
        except asyncio.CancelledError:
            future.cancel()
            raise
        except BaseException as e:
            future.set_exception(e)
            future.exception()  # mark retrieved: waiters re-raise it, asyncio doesn't log it as lost
            raise
        finally:
            self._inflight.pop(key, None)
        self.stats.responses += 1
        self.stats.prompt_tokens += completion.usage["prompt_tokens"]
        self.stats.completion_tokens += completion.usage["completion_tokens"]
        self.stats.cost_usd += self.cost(completion.usage)
        if self.cache is not None:
            self.cache.put(key, {"pair_id": pair_id, "step": step, "prompt_version": prompts.PROMPT_VERSION,
                                 "model": self.config.model, "decoding": self.decoding,
                                 "completion": {**vars(completion), "cached": False}})  # shallow: no deep copy
        if step == "extract":  # one extraction per job serves all its members, cache or not
            self._shared[key] = dataclasses.replace(completion, cached=True)
        future.set_result(completion)
        return completion

    def cost(self, usage: dict[str, int]) -> float:
        return (usage["prompt_tokens"] * self.config.price_input_per_mtok
                + usage["completion_tokens"] * self.config.price_output_per_mtok) / 1e6

    # -- assessing a pair ---------------------------------------------------------------------
    async def assess(self, pair: Pair) -> TeacherResult:
        """The teacher's Assessment of one pair (parse failures are results, not exceptions)."""
        sent = redact_pair(pair) if self.redact else pair
        if self.config.mode == "chain":
            return await self._assess_chain(pair.pair_id, sent)
        done = await self.complete(prompts.single_call_messages(sent, compress=self.config.compress),
                                   "single", pair.pair_id)
        try:
            assessment, error = parse_assessment(done.text).to_dict(), None
        except TeacherOutputError as e:
            assessment, error = None, str(e)
        return self._result(pair.pair_id, done, [done], assessment, error)

    async def _assess_chain(self, pair_id: str, pair: Pair) -> TeacherResult:
        calls: list[Completion] = []
        steps = (("extract", lambda: prompts.extract_messages(pair.job), parse_extracted),
                 ("evaluate", lambda: prompts.evaluate_messages(pair, state["extract"]), parse_evaluated),
                 ("explain", lambda: prompts.explain_messages(pair, state["evaluate"]), parse_rating))
        state: dict[str, Any] = {}
        for name, messages, parse in steps:
            done = await self.complete(messages(), name, pair_id)
            calls.append(done)
            try:
                state[name] = parse(done.text)
            except TeacherOutputError as e:
                return self._result(pair_id, done, calls, None, f"{name} step: {e}")
        fit, explanation = state["explain"]
        assessment = Assessment(tuple(Requirement(**r) for r in state["evaluate"]), fit, explanation)
        return self._result(pair_id, calls[-1], calls, assessment.to_dict(), None)

    def _result(self, pair_id: str, last: Completion, calls: Sequence[Completion], assessment, error):
        usage = {k: sum(c.usage[k] for c in calls) for k in ("prompt_tokens", "completion_tokens")}
        steps = None
        if self.config.mode == "chain":
            steps = [{"step": s, "raw_text": c.text, "finish_reason": c.finish_reason, "usage": c.usage,
                      "cached": c.cached} for s, c in zip(prompts.CHAIN_STEPS, calls)]
        probs = fit_level_probs(last.logprobs, last.text)
        return TeacherResult(
            pair_id=pair_id, raw_text=last.text, assessment=assessment, parse_error=error, fit_probs=probs,
            logprobs=compact(last.logprobs, self.config.record_top_logprobs), usage=usage,
            cost_usd=self.cost(usage), cached=all(c.cached for c in calls), finish_reason=last.finish_reason,
            steps=steps)


def summary_line(stats: TeacherStats, done: int, cached: int, failed: int) -> str:
    retries = f", {stats.retries} retries" if stats.retries else ""
    return (f"teacher: done {done} | cached {cached} | failed {failed} | tokens in {stats.prompt_tokens:,} "
            f"out {stats.completion_tokens:,} | cost ${stats.cost_usd:.4f} | {stats.requests} requests{retries}")

