"""Error answers: one JSON shape on every endpoint, OpenAI's, so any client can read them:
`{"error": {"message": ..., "type": ..., "param": ..., "code": ...}}`.

Status codes: 400 body is not JSON (and every invalid /v1/chat/completions request, as OpenAI
answers), 422 a /v1/fit or /v1/explain body that is JSON but not a valid request, 404 unknown
path or model, 413 body too large, 503 model not loaded, 504 request timed out, 500 a bug.
"""
from __future__ import annotations

import re
from typing import Any

from fastapi.responses import JSONResponse

from lantern_jax.data.schema import scrub_text

# pydantic puts a union member's tag in an error's location ('str', 'list[TextPart]',
# 'function-after[_unicode(), str]'); no field of ours is named like one.
_UNION_TAG = re.compile(r"[\[\]()-]|^(str|int|float|bool|dict|list|none)$")


class ApiError(Exception):
    def __init__(self, status: int, message: str, kind: str = "invalid_request_error",
                 param: str | None = None, code: str | None = None):
        super().__init__(message)
        self.status, self.message, self.kind, self.param, self.code = status, message, kind, param, code

    def response(self) -> JSONResponse:
        return error_response(self.status, self.message, self.kind, self.param, self.code)


def error_response(status: int, message: str, kind: str, param: str | None = None,
                   code: str | None = None, headers: dict[str, str] | None = None) -> JSONResponse:
    error = {"message": message, "type": kind, "param": param, "code": code}
    return JSONResponse({"error": scrub_text(error)}, status_code=status, headers=headers)  # always encodable


def field_path(loc: tuple[Any, ...]) -> str:
    """('body', 'pairs', 0, 'job', 'title') -> 'pairs[0].job.title'."""
    path = ""
    for part in loc:
        if (part == "body" and not path) or (isinstance(part, str) and _UNION_TAG.search(part)):
            continue
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            path += ("." if path else "") + str(part)
    return path


def describe_validation(errors: list[dict[str, Any]], limit: int = 3) -> tuple[str, str | None, bool]:
    """(one-line message, the first bad field, whether the body wasn't JSON at all)."""
    if any(e.get("type") == "json_invalid" for e in errors):
        e = next(e for e in errors if e.get("type") == "json_invalid")
        where = e["loc"][-1] if e.get("loc") and isinstance(e["loc"][-1], int) else None
        detail = (e.get("ctx") or {}).get("error", "JSON decode error")
        return f"request body is not valid JSON: {detail}" + (f" at character {where}" if where is not None
                                                                else ""), None, True
    by_path: dict[str, dict[str, Any]] = {}
    for e in errors:  # a union reports one error per member at the same field: keep the first
        by_path.setdefault(field_path(tuple(e.get("loc") or ())), e)
    parts, first = [], None
    for path, e in list(by_path.items())[:limit]:
        first = first or path or None
        msg = str(e.get("msg", "invalid")).removeprefix("Value error, ")
        if e.get("type") == "missing":
            parts.append(f"missing field '{path}'" if path else "missing request body (JSON expected)")
        elif path:
            wrong_type = str(e.get("type", "")).endswith("_type") and "input" in e
            got = f" (got {_json_type(e['input'])})" if wrong_type else ""
            parts.append(f"field '{path}': {msg}{got}")
        else:
            parts.append(msg)
    more = f" (and {len(by_path) - limit} more problems)" if len(by_path) > limit else ""
    return "; ".join(parts) + more, first, False


def _json_type(value: Any) -> str:
    return {bool: "boolean", int: "number", float: "number", str: "string", list: "array", dict: "object",
            type(None): "null"}.get(type(value), type(value).__name__)
