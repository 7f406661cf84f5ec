"""Teacher configuration: one flat dataclass, validated, with one-line errors naming the key.

The API key itself is never stored here, only the name of the environment variable holding it.
"""
from __future__ import annotations

import dataclasses
import json
from typing import Any, Mapping

from lantern_jax.teacher.redact import REDACT_MODES

MODES = ("single", "chain")
STRUCTURED = ("auto", "json_schema", "none")


class TeacherConfigError(ValueError):
    """Bad teacher configuration; str() is one line naming the key."""


@dataclasses.dataclass(frozen=True)
class TeacherConfig:
    base_url: str = "http://127.0.0.1:8011/v1"
    model: str = "lantern-sim-expert"
    api_key_env: str | None = "LANTERN_TEACHER_API_KEY"  # None: send a placeholder (local servers)
    mode: str = "single"  # single call, or the extract -> evaluate -> explain chain
    compress: bool = True  # send the posting's requirements instead of its full text
    structured_output: str = "auto"  # json_schema response_format when the server takes it
    temperature: float = 0.0
    top_p: float = 1.0
    max_tokens: int = 2048
    seed: int | None = 0
    logprobs: bool = True
    top_logprobs: int = 20  # the API maximum
    record_top_logprobs: int = 5  # alternatives per token kept in teacher records (cache keeps all)
    concurrency: int = 16
    max_retries: int = 8
    backoff_base_s: float = 0.5
    backoff_max_s: float = 30.0
    timeout_s: float = 120.0
    cache_dir: str | None = None  # on-disk response cache; None disables it
    price_input_per_mtok: float = 0.0  # USD per million prompt tokens
    price_output_per_mtok: float = 0.0
    redact: str = "non_loopback"  # PII redaction of profiles: non_loopback | always | never
    progress: bool = True

    def __post_init__(self):
        checks = [
            (self.mode in MODES, "mode", f"one of {', '.join(MODES)}"),
            (self.structured_output in STRUCTURED, "structured_output", f"one of {', '.join(STRUCTURED)}"),
            (self.redact in REDACT_MODES, "redact", f"one of {', '.join(REDACT_MODES)}"),
            (0 <= self.top_logprobs <= 20, "top_logprobs", "between 0 and 20"),
            (0 <= self.record_top_logprobs <= self.top_logprobs or not self.logprobs, "record_top_logprobs",
             "between 0 and top_logprobs"),
            (self.concurrency >= 1, "concurrency", ">= 1"),
            (self.max_retries >= 0, "max_retries", ">= 0"),
            (self.timeout_s > 0, "timeout_s", "> 0"),
            (self.max_tokens >= 1, "max_tokens", ">= 1"),
            (self.base_url.startswith(("http://", "https://")), "base_url", "an http(s) URL"),
        ]
        for ok, key, want in checks:
            if not ok:
                raise TeacherConfigError(f"teacher config: {key} must be {want}, got {getattr(self, key)!r}")

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any] | None = None, **overrides: Any) -> TeacherConfig:
        """From a dict / ConfigDict; unknown keys and wrong types fail with the key named."""
        merged = {**dict(values or {}), **overrides}
        fields = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(merged) - set(fields))
        if unknown:
            raise TeacherConfigError(f"teacher config: unknown key(s) {', '.join(unknown)} "
                                     f"(known: {', '.join(fields)})")
        return cls(**{k: _coerce(fields[k], v) for k, v in merged.items()})

    @classmethod
    def from_json_file(cls, path: str, **overrides: Any) -> TeacherConfig:
        try:
            with open(path, encoding="utf-8") as f:
                values = json.load(f)
        except OSError as e:
            raise TeacherConfigError(f"teacher config {path}: {e.strerror}") from None
        except ValueError as e:
            raise TeacherConfigError(f"teacher config {path}: not valid JSON ({e})") from None
        if not isinstance(values, dict):
            raise TeacherConfigError(f"teacher config {path}: expected a JSON object")
        return cls.from_mapping(values, **overrides)

    def decoding(self) -> dict[str, Any]:
        """Everything that changes the teacher's output: part of the cache key and of every record."""
        return {"mode": self.mode, "compress": self.compress, "structured_output": self.structured_output,
                "temperature": self.temperature, "top_p": self.top_p, "max_tokens": self.max_tokens,
                "seed": self.seed, "logprobs": self.logprobs,
                "top_logprobs": self.top_logprobs if self.logprobs else 0, "redact": self.redact}


def _coerce(field: dataclasses.Field, value: Any) -> Any:
    """Strings from the command line -> the field's type; other values must already have it."""
    nullable = "None" in str(field.type)
    if value is None or (nullable and isinstance(value, str) and value.strip().lower() in ("", "none", "null")):
        if nullable:
            return None
        raise TeacherConfigError(f"teacher config: {field.name} can't be empty")
    kind = {"str": str, "int": int, "float": float, "bool": bool}[str(field.type).split(" ")[0]]
    try:
        if isinstance(value, str) and kind is not str:
            if kind is bool:
                if value.strip().lower() not in ("true", "false", "1", "0", "yes", "no"):
                    raise ValueError
                return value.strip().lower() in ("true", "1", "yes")
            return kind(value)
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            return float(value)
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise ValueError
        return value
    except ValueError:
        raise TeacherConfigError(f"teacher config: {field.name} must be {kind.__name__}, got {value!r}") from None
