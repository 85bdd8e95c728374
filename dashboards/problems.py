"""One error shape for the whole API: RFC 9457 problem details.

Every answer of 400 or more under /api/ is `application/problem+json`:
`{type, title, status, code, detail, detail_en, errors, instance}`, plus whatever the refusal
itself carries (an alert's state and version on a 412, an enrolment refusal's problems).
`code` is the machine-readable reason (the refusal's own where it has one, else the status's);
`detail` is Korean, `detail_en` English; `errors` lists field errors (empty when none);
`instance` is the path asked for. The refusals keep being written where they are decided; this
middleware gives them the one shape on the way out, so none can be missed. A failure nobody
handled answers 500 and a database that cannot be reached 503 with Retry-After, in the same
shape, never a stack trace.
"""

from __future__ import annotations

import json
import logging
import traceback
from http import HTTPStatus
from typing import Any

from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from core.db import retryable
from dashboards import i18n
from dashboards.edge import ERROR_PAGE, JSON_PREFIXES

log = logging.getLogger(__name__)

PROBLEM = "application/problem+json"
REFUSAL: dict[str, Any] = {"content": {PROBLEM: {"schema": {"type": "object"}}}}
"""A refusal's entry in a route's `responses` (the shape itself: ProblemDetails)."""


def refused(status: int, key: str) -> JSONResponse:
    """A refusal decided by a route: dashboards.i18n's `key` in Korean and English, `key` as its
    code (the middleware gives it the problem details shape on the way out)."""
    return JSONResponse(
        {"detail": i18n.text("ko", key), "detail_en": i18n.text("en", key), "code": key},
        status_code=status,
    )


RETRY_AFTER_S = 5

# the code of a status whose refusal names none of its own
CODES = {
    400: "bad_request",
    401: "unauthenticated",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    412: "changed",
    413: "too_large",
    415: "unsupported_media_type",
    422: "invalid",
    429: "too_many_requests",
    500: "internal",
    503: "unavailable",
}
# words for a refusal that came without any (Korean, English)
WORDS = {
    422: ("입력이 올바르지 않습니다.", "The request is not valid."),
    500: ("서버에서 오류가 났습니다. 잠시 뒤 다시 해 주세요.", "Server error; try again later."),
    503: (i18n.text("ko", "unavailable"), i18n.text("en", "unavailable")),
}


class Problem(BaseModel):
    """An API error (RFC 9457), Korean first."""

    type: str = Field(description="urn:anbu:problem:<code>")
    title: str = Field(description="The HTTP status's name")
    status: int
    code: str = Field(description="Machine-readable reason, e.g. not_found, changed, invalid")
    detail: str = Field(description="What happened, in Korean")
    detail_en: str = Field(description="The same in English")
    errors: list[Any] = Field(description="Field errors, when the input was the problem")
    instance: str = Field(description="The path asked for")
    state: str | None = Field(
        None, description="An alert's refusal (409, 412): the state the alert is in now"
    )
    changed_at: str | None = Field(
        None, description="An alert's 409: when it came to that state (UTC, ISO 8601)"
    )
    changed_by: str | None = Field(
        None,
        description="An alert's 409: who brought it there, as in its timeline "
        "(care_manager:<id>, system or resident)",
    )


def problem(status: int, path: str, body: Any = None) -> dict[str, Any]:
    """The problem document for an error answer of `status` whose JSON body was `body`."""
    fields: dict[str, Any] = dict(body) if isinstance(body, dict) else {}
    if body is not None and not isinstance(body, dict):
        fields["detail"] = body
    detail = fields.pop("detail", None)
    errors = fields.pop("errors", None)
    if isinstance(detail, list):  # FastAPI's own validation answer: the field errors
        errors, detail = (detail if errors is None else errors), None
    phrase = _phrase(status)
    ko, en = WORDS.get(status, (phrase, phrase))
    detail_en = fields.pop("detail_en", None)
    if not isinstance(detail, str):
        detail, detail_en = ko, detail_en or en
    code = fields.pop("code", None)
    code = code if isinstance(code, str) and code else CODES.get(status, f"http_{status}")
    for reserved in ("type", "title", "status", "instance"):
        fields.pop(reserved, None)
    return {
        "type": f"urn:anbu:problem:{code}",
        "title": phrase,
        "status": status,
        "code": code,
        "detail": detail,
        "detail_en": detail_en if isinstance(detail_en, str) else detail,
        "errors": errors if isinstance(errors, list) else [],
        "instance": path,
        **fields,
    }


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


class ProblemDetails:
    """ASGI middleware: an /api/ answer of 400 or more with a JSON body leaves as a problem."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or not scope["path"].startswith("/api/"):
            await self.app(scope, receive, send)
            return
        start: dict[str, Any] | None = None
        chunks: list[bytes] = []

        async def reshape(message: dict[str, Any]) -> None:
            nonlocal start
            if message["type"] == "http.response.start":
                if message["status"] >= 400 and _is_json(message.get("headers", [])):
                    start = message  # held until the body is known
                    return
                await send(message)
                return
            if start is None or message["type"] != "http.response.body":
                await send(message)
                return
            chunks.append(message.get("body", b""))
            if message.get("more_body"):
                return
            raw = b"".join(chunks)
            try:
                body = json.loads(raw) if raw else None
            except ValueError:
                body = None
            out = json.dumps(problem(start["status"], scope["path"], body), ensure_ascii=False)
            data = out.encode()
            headers = [
                (k, v)
                for k, v in start.get("headers", [])
                if k.lower() not in (b"content-type", b"content-length")
            ]
            headers += [(b"content-type", PROBLEM.encode()), (b"content-length", b"%d" % len(data))]
            await send({**start, "headers": headers})
            await send({"type": "http.response.body", "body": data})

        await self.app(scope, receive, reshape)


def _is_json(headers: list[tuple[bytes, bytes]]) -> bool:
    for name, value in headers:
        if name.lower() == b"content-type":
            kind = value.split(b";")[0].strip().lower()
            return kind in (b"application/json", PROBLEM.encode())
    return False


# whether a database failure may pass if the request is made again shortly (503, not 500)
passes = retryable


def is_page(path: str) -> bool:
    return not path.startswith(JSON_PREFIXES)


class CatchAll:
    """ASGI middleware: a failure no handler took answers 500 (a problem for the API, a page
    for people, plain words for Twilio and metrics) without its trace, and is logged by its
    kind, SQLSTATE and stack frames only: an exception's text can carry a row's values (a
    psycopg DETAIL line names the phone number it refused), and none may reach a log. Nothing
    is raised further, so no server logs it again."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def watch(message: dict[str, Any]) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, watch)
        except Exception as exc:  # the last stop: nothing above may see it
            frames = "".join(traceback.format_tb(exc.__traceback__))
            # the path as a quoted literal, cut: a caller's newline cannot start a log line
            log.error("unhandled %s (sqlstate %s) answering %s %r\n%s", type(exc).__name__,
                      getattr(exc, "sqlstate", None), scope.get("method"), scope["path"][:200],
                      frames)  # fmt: skip
            if started:  # part of the answer left already: the connection ends it
                return
            await _failed(scope["path"], send)


async def _failed(path: str, send: Any) -> None:
    ko, en = WORDS[500]
    if path.startswith("/api/"):
        kind, body = PROBLEM, json.dumps(problem(500, path, {"detail": ko, "detail_en": en}))
    elif not is_page(path):
        kind, body = "text/plain; charset=utf-8", "internal error"
    else:
        kind, body = (
            "text/html; charset=utf-8",
            ERROR_PAGE.format(status=500, detail=ko, detail_en=en),
        )
    data = body.encode()
    await send({"type": "http.response.start", "status": 500,
                "headers": [(b"content-type", kind.encode()),
                            (b"content-length", b"%d" % len(data))]})  # fmt: skip
    await send({"type": "http.response.body", "body": data})


def add_to_spec(spec: dict[str, Any]) -> dict[str, Any]:
    """Document the shape once (components.schemas.Problem) and as every /api/ operation's
    error answer (4XX and 5XX, application/problem+json)."""
    schemas = spec.setdefault("components", {}).setdefault("schemas", {})
    schemas["Problem"] = Problem.model_json_schema(ref_template="#/components/schemas/{model}")
    ref = {"schema": {"$ref": "#/components/schemas/Problem"}}
    for path, operations in spec.get("paths", {}).items():
        if not path.startswith("/api/"):
            continue
        for operation in operations.values():
            if not isinstance(operation, dict) or "responses" not in operation:
                continue
            responses = operation["responses"]
            for status, answer in responses.items():
                if status[:1] in ("4", "5") and isinstance(answer, dict):
                    answer["content"] = {PROBLEM: _with_problem(answer.get("content"), ref)}
            responses.setdefault("4XX", {"description": "A refusal", "content": {PROBLEM: ref}})
            responses.setdefault(
                "5XX", {"description": "A server problem", "content": {PROBLEM: ref}}
            )
    return spec


def _with_problem(content: Any, ref: dict[str, Any]) -> dict[str, Any]:
    """An error answer's documented body as a problem: the refusal's own fields (its schema)
    on top of Problem's; FastAPI's validation schema is replaced (the middleware reshapes it)."""
    schema = (content or {}).get("application/json", {}).get("schema")
    if not schema or str(schema.get("$ref", "")).endswith("/HTTPValidationError"):
        return ref
    return {"schema": {"allOf": [ref["schema"], schema]}}
