"""Request bodies, validated by pydantic before any model sees them.

The pair models mirror the D_base record of `data/schema.py` (what `pair_from_record` reads) in
strict mode: a string must be a string and a year an integer, nothing is coerced, unknown keys
are ignored (records may carry generator-only `truth`). Validation errors name the field's path.
The chat request takes the OpenAI fields this server honours; others are ignored, as vLLM does.
"""
from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from lantern_jax.data.schema import Pair, pair_from_record

MAX_TOP_LOGPROBS = 20  # the OpenAI API's maximum


class _Record(BaseModel):
    model_config = ConfigDict(strict=True, extra="ignore")


class ExperienceIn(_Record):
    title: str
    company: str
    start: str
    end: str | None  # required key; null for a current role
    description: str


class EducationIn(_Record):
    degree: str
    field: str
    school: str
    year: int


class JobIn(_Record):
    job_id: str
    title: str
    company: str
    location: str
    description: str
    truth: dict | None = None


class MemberIn(_Record):
    member_id: str
    name: str
    headline: str
    summary: str
    experience: list[ExperienceIn]
    education: list[EducationIn]
    skills: list[str]


class PairIn(_Record):
    pair_id: str
    job: JobIn
    member: MemberIn
    truth: dict | None = None

    def to_pair(self) -> Pair:
        return pair_from_record(self.model_dump())


class FitRequest(BaseModel):
    pairs: list[PairIn] = Field(min_length=1)


class ExplainRequest(BaseModel):
    pair: PairIn
    guided: bool = False  # decode under the Assessment schema: the answer always parses


class TextPart(BaseModel):
    type: Literal["text"]
    text: str


class ChatMessage(BaseModel):
    role: Literal["system", "developer", "user", "assistant"]
    content: str | list[TextPart] | None = None

    def text(self) -> str:
        if isinstance(self.content, list):
            return "".join(part.text for part in self.content)
        return self.content or ""


class ChatCompletionRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    model: str | None = None
    messages: list[ChatMessage] = Field(min_length=1)
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    temperature: float = Field(1.0, ge=0.0, le=2.0)  # OpenAI's default
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    seed: int | None = None
    logprobs: bool = False
    top_logprobs: int | None = Field(None, ge=0, le=MAX_TOP_LOGPROBS)
    stop: str | list[str] | None = None
    n: int = Field(1, ge=1)
    stream: bool = False
    response_format: dict | None = None

    @model_validator(mode="after")
    def _supported(self) -> ChatCompletionRequest:
        if self.top_logprobs is not None and not self.logprobs:
            raise ValueError("top_logprobs requires logprobs=true")
        if isinstance(self.stop, list) and len(self.stop) > 4:
            raise ValueError("stop takes at most 4 sequences")
        if self.n != 1:
            raise ValueError("n must be 1: this server returns one choice per request")
        if self.stream:
            raise ValueError("stream=true is not supported: this server answers with one JSON body")
        kind = (self.response_format or {}).get("type", "text")
        if kind != "text":
            raise ValueError(f"response_format {kind!r} is not supported: this server does not constrain "
                             "decoding (its models are trained to answer in JSON); send no response_format")
        return self

    def stop_sequences(self) -> tuple[str, ...]:
        stops = [self.stop] if isinstance(self.stop, str) else list(self.stop or [])
        return tuple(s for s in stops if s)

    def token_limit(self) -> int | None:
        return self.max_completion_tokens or self.max_tokens
