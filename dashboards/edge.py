"""The web app's edge, as plain ASGI middleware: security headers on every answer, and a cap
on request bodies enforced while they stream, before anything parses them."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from core import logs

# No inline script or style anywhere: templates load /static files only.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "object-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)
# The API's docs page is plain HTML from this server too (no CDN script: dashboards.app).
DOCS_CONTENT_SECURITY_POLICY = CONTENT_SECURITY_POLICY
DOCS_PATH = "/docs"
STATIC_PREFIX = "/static/"

SECURITY_HEADERS: tuple[tuple[str, str], ...] = (
    ("strict-transport-security", "max-age=31536000; includeSubDomains"),
    ("x-frame-options", "DENY"),
    ("x-content-type-options", "nosniff"),
    ("referrer-policy", "no-referrer"),
    ("cross-origin-opener-policy", "same-origin"),
    ("permissions-policy", "camera=(), microphone=(), geolocation=()"),
)

BODY_TOO_LARGE_KO = (
    "입력한 내용이 너무 깁니다(최대 {limit_kib}KB). 이전 화면으로 돌아가 내용을 줄이거나 "
    "나누어 저장해 주세요."
)
BODY_TOO_LARGE_EN = "The request body is too large: at most {limit} bytes are accepted."
JSON_PREFIXES = ("/api/", "/twilio/", "/metrics")
# a refusal made before the app (and its templates) could answer: 413 here, 500 in problems
ERROR_PAGE = (
    '<!doctype html><html lang="ko"><head><meta charset="utf-8"><title>{status} · 안부 anbu</title>'
    '<link rel="stylesheet" href="/static/style.css"></head><body><main>'
    '<p class="error" role="alert">{detail}</p><p lang="en">{detail_en}</p>'
    '<p><a href="/alerts">이전 화면으로</a></p></main></body></html>'
)


def _headers_for(path: str) -> list[tuple[bytes, bytes]]:
    csp = DOCS_CONTENT_SECURITY_POLICY if path == DOCS_PATH else CONTENT_SECURITY_POLICY
    pairs = [*SECURITY_HEADERS, ("content-security-policy", csp)]
    if not path.startswith(STATIC_PREFIX):  # pages, API and metrics: never kept by a cache
        pairs.append(("cache-control", "no-store"))
    return [(k.encode(), v.encode()) for k, v in pairs]


def _replace(
    headers: Iterable[tuple[bytes, bytes]], extra: list[tuple[bytes, bytes]]
) -> list[tuple[bytes, bytes]]:
    names = {name for name, _ in extra}
    return [(k, v) for k, v in headers if k.lower() not in names] + extra


def _sending_with(send: Send, extra: list[tuple[bytes, bytes]]) -> Send:
    """`send`, with `extra` headers set on the response's start."""

    async def send_with(message: Message) -> None:
        if message["type"] == "http.response.start":
            message = {**message, "headers": _replace(message.get("headers", ()), extra)}
        await send(message)

    return send_with


WELL_FORMED_ID = re.compile(r"[A-Za-z0-9._:-]{1,64}")


def request_id_of(given: str) -> str:
    """`given` (a client's or nginx's X-Request-ID) when well-formed, else a new id."""
    return given if WELL_FORMED_ID.fullmatch(given) else uuid.uuid4().hex


class RequestId:
    """Every request gets an id: the client's X-Request-ID when well-formed (nginx sends its
    $request_id), else a new one. It is answered in X-Request-ID, carried by every log line the
    request writes (core.logs) and by the access log's reads (dashboards.residents.reader_of)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = ""
        for name, value in scope.get("headers", ()):
            if name == b"x-request-id":
                given = value.decode("latin-1")
                break
        rid = request_id_of(given)
        token = logs.request_id.set(rid)
        try:
            await self.app(scope, receive, _sending_with(send, [(b"x-request-id", rid.encode())]))
        finally:
            logs.request_id.reset(token)


class SecurityHeaders:
    """Adds CSP, HSTS, frame denial, nosniff, no-referrer and no-store to every response."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        await self.app(scope, receive, _sending_with(send, _headers_for(scope.get("path", ""))))


def replaying(body: bytes, receive: Receive) -> Receive:
    """A `receive` that gives the whole `body`, already read, as one message, then what the
    client sends next (a disconnect)."""
    delivered = False

    async def replay() -> Message:
        nonlocal delivered
        if not delivered:
            delivered = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


class BodyLimit:
    """Reads a request's whole body, counting bytes as they arrive, before the app sees any of
    it; past `max_bytes` (announced by Content-Length or streamed, chunked or not) the answer
    is 413 and the app is never called."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        announced = dict(scope.get("headers", ())).get(b"content-length")
        if announced is not None and (
            not announced.strip().isdigit() or int(announced) > self.max_bytes
        ):
            await self._refuse(scope, send)
            return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                await self._refuse(scope, send)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        await self.app(scope, replaying(b"".join(chunks), receive), send)

    async def _refuse(self, scope: Scope, send: Send) -> None:
        limit = self.max_bytes
        payload = {
            "detail": BODY_TOO_LARGE_KO.format(limit_kib=max(1, limit // 1024)),
            "detail_en": BODY_TOO_LARGE_EN.format(limit=limit),
        }
        path = scope.get("path", "")
        if path.startswith(JSON_PREFIXES):
            body = json.dumps(payload, ensure_ascii=False).encode()
            content_type = b"application/json; charset=utf-8"
        else:  # a browser's form: a page it can show
            body = ERROR_PAGE.format(status=413, **payload).encode()
            content_type = b"text/html; charset=utf-8"
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", content_type),
                    (b"content-length", str(len(body)).encode()),
                    (b"connection", b"close"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})
