"""Idempotency-Key on the API's writes: a retried POST, PUT, PATCH or DELETE is done once.

A client (the city's system, a phone on a bad network) that sends a write with an
`Idempotency-Key` header and sends it again with the same key, because the first answer was
lost, gets the first answer again, marked `Idempotent-Replayed: true`, and nothing is done
twice. The same key with a different request is refused (422, `idempotency_key_reused`); while
the first is still running the second waits its turn (409, `idempotency_in_progress`, with
Retry-After). Keys belong to the bearer token that sent them (anbu.idempotency_keys keeps a
digest of it, never the token) and last a day. An answer of 500 or more is not kept: the
request may be tried again. A first request whose process died mid-way is taken over after
IN_FLIGHT_S. Without the header nothing changes; with it, a request must carry a bearer token
(a browser's session cookie changes as it goes, so it cannot own a key).
"""

from __future__ import annotations

import hashlib
import json
import re
from datetime import UTC, datetime, timedelta
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from core.db import Database

KEY = re.compile(r"[\x21-\x7e]{1,255}")  # printable ASCII, no spaces
WRITES = (b"POST", b"PUT", b"PATCH", b"DELETE")
KEPT = timedelta(hours=24)
IN_FLIGHT_S = 60.0
PURGE_BATCH = 100

_CLAIM = """
INSERT INTO anbu.idempotency_keys (owner, key, request_hash, created_at)
VALUES (%(owner)s, %(key)s, %(hash)s, %(now)s)
ON CONFLICT (owner, key) DO UPDATE SET request_hash = EXCLUDED.request_hash,
    status = NULL, content_type = NULL, body = NULL, created_at = EXCLUDED.created_at
  WHERE anbu.idempotency_keys.created_at < %(expired)s
     OR (anbu.idempotency_keys.status IS NULL AND anbu.idempotency_keys.created_at < %(stale)s)
RETURNING 1
"""


class Idempotency:
    """ASGI middleware for /api/ writes carrying an Idempotency-Key (see the module)."""

    def __init__(self, app: ASGIApp, db: Database) -> None:
        self.app = app
        self.db = db

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = dict(scope.get("headers", ())) if scope["type"] == "http" else {}
        given = headers.get(b"idempotency-key")
        if (
            given is None
            or scope["method"].encode() not in WRITES
            or not scope["path"].startswith("/api/")
        ):
            await self.app(scope, receive, send)
            return
        key = given.decode("latin-1")
        auth = headers.get(b"authorization", b"")
        if not KEY.fullmatch(key) or not auth.lower().startswith(b"bearer "):
            why = "Idempotency-Key: 1-255 printable characters, with a bearer token"
            await _answer(send, 400, {"detail": why, "code": "bad_idempotency_key"})
            return
        body, replay = await _whole_body(receive)
        owner = hashlib.sha256(auth).digest()
        parts = [scope["method"].encode(), scope["path"].encode(), scope.get("query_string", b"")]
        digest = hashlib.sha256(b"\0".join([*parts, body])).digest()
        now = datetime.now(UTC)
        claimed = await run_in_threadpool(self._claim, owner, key, digest, now)
        if not claimed:
            found = await run_in_threadpool(self._find, owner, key)
            await self._earlier(send, found, digest)
            return
        status, kind, chunks = 0, "", []

        async def keep(message: Message) -> None:
            nonlocal status, kind
            if message["type"] == "http.response.start":
                status = int(message["status"])
                for name, value in message.get("headers", ()):
                    if name.lower() == b"content-type":
                        kind = value.decode("latin-1")
            elif message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))
            await send(message)

        try:
            await self.app(scope, replay, keep)
        except BaseException:
            await run_in_threadpool(self._forget, owner, key)
            raise
        if status >= 500 or status == 0:
            await run_in_threadpool(self._forget, owner, key)
        else:
            await run_in_threadpool(self._keep, owner, key, status, kind, b"".join(chunks))

    async def _earlier(self, send: Send, found: Any, digest: bytes) -> None:
        if found is None:  # forgotten meanwhile (a failed first attempt): try again
            await _answer(send, 409, _busy(), retry=True)
        elif bytes(found[0]) != digest:
            await _answer(send, 422, {
                "detail": "이 Idempotency-Key는 다른 요청에 이미 쓰였습니다.",
                "detail_en": "This Idempotency-Key was used for another request.",
                "code": "idempotency_key_reused",
            })  # fmt: skip
        elif found[1] is None:
            await _answer(send, 409, _busy(), retry=True)
        else:
            data = bytes(found[3] or b"")
            headers = [(b"content-type", (found[2] or "application/json").encode()),
                       (b"content-length", b"%d" % len(data)),
                       (b"idempotent-replayed", b"true")]  # fmt: skip
            await send({"type": "http.response.start", "status": int(found[1]),
                        "headers": headers})  # fmt: skip
            await send({"type": "http.response.body", "body": data})

    # -- the table (in the thread pool) ------------------------------------------------------

    def _claim(self, owner: bytes, key: str, digest: bytes, now: datetime) -> bool:
        with self.db.connection() as conn:
            conn.execute(  # a day's keys at most: a few expired ones go with each new one
                """DELETE FROM anbu.idempotency_keys WHERE ctid IN (
                       SELECT ctid FROM anbu.idempotency_keys WHERE created_at < %s LIMIT %s)""",
                (now - KEPT, PURGE_BATCH),
            )
            row = conn.execute(_CLAIM, {
                "owner": owner, "key": key, "hash": digest, "now": now,
                "expired": now - KEPT, "stale": now - timedelta(seconds=IN_FLIGHT_S),
            }).fetchone()  # fmt: skip
        return row is not None

    def _find(self, owner: bytes, key: str) -> Any:
        with self.db.connection() as conn:
            return conn.execute(
                """SELECT request_hash, status, content_type, body FROM anbu.idempotency_keys
                   WHERE owner = %s AND key = %s""",
                (owner, key),
            ).fetchone()

    def _keep(self, owner: bytes, key: str, status: int, kind: str, body: bytes) -> None:
        with self.db.connection() as conn:
            conn.execute(
                """UPDATE anbu.idempotency_keys SET status = %s, content_type = %s, body = %s
                   WHERE owner = %s AND key = %s""",
                (status, kind or None, body, owner, key),
            )

    def _forget(self, owner: bytes, key: str) -> None:
        with self.db.connection() as conn:
            conn.execute(
                "DELETE FROM anbu.idempotency_keys WHERE owner = %s AND key = %s AND status IS NULL",
                (owner, key),
            )


def _busy() -> dict[str, str]:
    return {
        "detail": "같은 요청을 아직 처리하고 있습니다. 잠시 뒤 다시 보내 주세요.",
        "detail_en": "The same request is still being handled; send it again shortly.",
        "code": "idempotency_in_progress",
    }


async def _whole_body(receive: Receive) -> tuple[bytes, Receive]:
    """The request's body (BodyLimit, outside, has capped it) and a receive that gives it again."""
    chunks = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    body = b"".join(chunks)
    delivered = False

    async def replay() -> Message:
        nonlocal delivered
        if not delivered:
            delivered = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return body, replay


async def _answer(send: Send, status: int, body: dict[str, str], retry: bool = False) -> None:
    """A refusal as JSON (dashboards.problems, outside, makes it a problem)."""
    data = json.dumps(body, ensure_ascii=False).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(data))]
    if retry:
        headers.append((b"retry-after", b"1"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": data})
