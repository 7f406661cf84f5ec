"""Request bodies, validated by pydantic before any model sees them.

Every model is strict: a string must be a string, a boolean a boolean (`"guided": "yes"` is an
error, not `true`), and every string must be valid Unicode (a JSON `"\\ud800"` escape is refused
with its field named before it can reach a tokenizer). The pair models mirror the D_base record of
`data/schema.py` (what `pair_from_record` reads); unknown keys are ignored (records may carry
generator-only `truth`). The chat request takes the OpenAI fields this server honours; others are
ignored, as vLLM does. Validation errors name the field's path.
"""
from __future__ import annotations

from typing import Annotated, Any, Literal, Union

from pydantic import AfterValidator, BaseModel, ConfigDict, Discriminator, Field, Tag, model_validator

from lantern_jax.data.schema import ASSESSMENT_JSON_SCHEMA, Pair, check_text, pair_from_record, text_problem

MAX_TOP_LOGPROBS = 20  # the OpenAI API's maximum
MAX_CHOICES = 8  # n: each choice is one more sequence in the generation batch


def _unicode(value: str) -> str:
    if problem := text_problem(value):
        raise ValueError(problem)
    return value


def _unicode_json(value: Any) -> Any:
    check_text(value, "")  # DataError is a ValueError: pydantic reports it at the field
    return value


Text = Annotated[str, AfterValidator(_unicode)]
JsonObject = Annotated[dict, AfterValidator(_unicode_json)]


def text_or_list(item, name: str):
    """A string or a list of `item`, validated as the one the input is: errors then come from that
    member alone (its tag, 'str' or 'list[name]', is dropped from error paths by errors.field_path)."""
    return Annotated[Union[Annotated[Text, Tag("str")], Annotated[list[item], Tag(f"list[{name}]")]],
                     Discriminator(lambda v: f"list[{name}]" if isinstance(v, list) else "str")]


class _Strict(BaseModel):
    model_config = ConfigDict(strict=True, extra="ignore")


class ExperienceIn(_Strict):
    title: Text
    company: Text
    start: Text
    end: Text | None  # required key; null for a current role
    description: Text


class EducationIn(_Strict):
    degree: Text
    field: Text
    school: Text
    year: int


class JobIn(_Strict):
    job_id: Text
    title: Text
    company: Text
    location: Text
    description: Text
    truth: JsonObject | None = None


class MemberIn(_Strict):
    member_id: Text
    name: Text
    headline: Text
    summary: Text
    experience: list[ExperienceIn]
    education: list[EducationIn]
    skills: list[Text]


class PairIn(_Strict):
    pair_id: Text
    job: JobIn
    member: MemberIn
    truth: JsonObject | None = None

    def to_pair(self) -> Pair:
        return pair_from_record(self.model_dump())


class FitRequest(_Strict):
    pairs: list[PairIn] = Field(min_length=1)


class ExplainRequest(_Strict):
    pair: PairIn
    guided: bool = False  # decode under the Assessment schema: the answer always parses


class TextPart(_Strict):
    type: Literal["text"]
    text: Text


class ChatMessage(_Strict):
    role: Literal["system", "developer", "user", "assistant"]
    content: text_or_list(TextPart, "TextPart") | None = None

    def text(self) -> str:
        if isinstance(self.content, list):
            return "".join(part.text for part in self.content)
        return self.content or ""


class JsonSchemaFormat(_Strict):
    name: Text
    schema_: dict | None = Field(None, alias="schema")
    strict: bool | None = None
    description: Text | None = None


class ResponseFormat(_Strict):
    type: Literal["text", "json_schema", "json_object"]
    json_schema: JsonSchemaFormat | None = None


class StreamOptions(_Strict):
    include_usage: bool = False


class ChatCompletionRequest(_Strict):
    model: Text | None = None
    messages: list[ChatMessage] = Field(min_length=1)
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    temperature: float = Field(1.0, ge=0.0, le=2.0)  # OpenAI's default
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    seed: int | None = None
    logprobs: bool = False
    top_logprobs: int | None = Field(None, ge=0, le=MAX_TOP_LOGPROBS)
    stop: text_or_list(Text, "str") | None = None
    n: int = Field(1, ge=1, le=MAX_CHOICES)
    stream: bool = False  # server-sent events, OpenAI's chat.completion.chunk objects
    stream_options: StreamOptions | None = None
    response_format: ResponseFormat | None = None

    @model_validator(mode="after")
    def _supported(self) -> ChatCompletionRequest:
        if self.top_logprobs is not None and not self.logprobs:
            raise ValueError("top_logprobs requires logprobs=true")
        if isinstance(self.stop, list) and len(self.stop) > 4:
            raise ValueError("stop takes at most 4 sequences")
        if self.stream_options is not None and not self.stream:
            raise ValueError("stream_options requires stream=true")
        kind = self.response_format.type if self.response_format else "text"
        if kind == "json_object":
            raise ValueError("response_format 'json_object' is not supported: this server constrains decoding "
                             "to the Assessment schema only (send response_format json_schema with it)")
        if kind == "json_schema":
            spec = self.response_format.json_schema
            if spec is None or spec.schema_ != ASSESSMENT_JSON_SCHEMA:
                raise ValueError("response_format json_schema: this server decodes under the Assessment schema "
                                 "only (lantern_jax.data.schema.ASSESSMENT_JSON_SCHEMA); the schema sent differs")
            # Schema-guided decoding is greedy and yields tokens without their alternatives.
            if self.logprobs:
                raise ValueError("response_format json_schema can't be combined with logprobs on this server "
                                 "(schema-guided decoding returns no logprobs)")
            if "temperature" in self.model_fields_set and self.temperature != 0:
                raise ValueError("response_format json_schema decodes greedily on this server: "
                                 "send temperature 0 or leave it out")
            if self.stop:
                raise ValueError("response_format json_schema can't be combined with stop sequences")
        return self

    @property
    def guided(self) -> bool:
        return self.response_format is not None and self.response_format.type == "json_schema"

    def stop_sequences(self) -> tuple[str, ...]:
        stops = [self.stop] if isinstance(self.stop, str) else list(self.stop or [])
        return tuple(s for s in stops if s)

    def token_limit(self) -> int | None:
        return self.max_completion_tokens or self.max_tokens
