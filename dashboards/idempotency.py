"""`Idempotency-Key` on the API's POSTs (issue 22): a client that sends a write again with the
same key (a retry after an answer lost on the network, a second tap) gets the first answer
again, and the write is done once.

How (core/migrations/0082_api_idempotency.sql):
- `IdempotencyKeys` (middleware, inside the body limit) reads the key and fingerprints the
  request: an HMAC, under the session secret, of method, path, query, If-Match, Content-Type
  and body.
- Once the principal is known (`claim`, from dashboards.deps.api_manager after the token or
  session is checked) the key is claimed in a transaction of its own: a key new to the
  principal (or finished more than a day ago) is claimed; one whose holder died before acting
  (its 60 s lease ran out with nothing marked) is taken over under a new lease; any other is
  answered at once (below) and the route never runs. A live holder renews its lease every
  15 s from the event loop, so only a dead one loses it.
- While the request runs, each database block it opens (core.db.watched) is one transaction,
  and the one that wrote marks `applied_at` in itself, under the claim's lease: the act and its
  mark commit together or not at all. A lease a retry took over fails the mark, which rolls the
  act back: two holders never both act.
- The answer is kept before it is sent (the body sealed under the data key, as care notes are),
  with what the principal might see then (role, dongs, scopes). A refusal or failure that wrote
  (or locked) no row gives the key back: the retry asks again.

A retry with the same key and the same request gets the kept answer with `Idempotent-Replayed:
true` (409 idempotency_grant_changed when the principal's role, dongs or scopes changed since);
with another request, 422 idempotency_key_reused; while the first still runs, 409
idempotency_in_progress with Retry-After. An answer that showed a secret once (a route marked
`x-idempotent-answer: withheld` in the spec) is not kept: 409 idempotency_answer_withheld. One
lost because the server stopped or failed between acting and answering is 409
idempotency_answer_lost. Neither is carried out twice. Routes marked `unkeyed` (the password
change, logout) and those that name no principal (/api/v1/token) ignore the key.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import re
import uuid
from dataclasses import dataclass
from typing import Any

import psycopg
from fastapi import Request
from fastapi.responses import JSONResponse, Response
from psycopg.pq import TransactionStatus
from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from alerts import retention
from core.crypto import DataKeyError, Keyring
from core.db import Database, watched
from dashboards.edge import replaying
from dashboards.problems import refused
from registry.key_rotation import api_answer_field

log = logging.getLogger(__name__)

HEADER = "Idempotency-Key"
REPLAYED = "Idempotent-Replayed"
WITHHELD = {"x-idempotent-answer": "withheld"}
"""A POST route's `openapi_extra` when its answer shows a secret once: that answer is not kept."""
UNKEYED = {"x-idempotent-answer": "unkeyed"}
"""A POST route's `openapi_extra` when a key would keep a password or a token for nothing (a
password change; a logout): the header is ignored there and not documented."""
KEY = re.compile(r"[\x21-\x7e]{1,255}")  # visible ASCII, as header values travel
KEEP_HOURS = retention.API_KEYS_KEPT_HOURS
LEASE_S = retention.API_KEY_LEASE_S
FORGET_PER_CLAIM = 10  # each claim also forgets this many keys past their day (and the
# worker's nightly job all of them)
HEARTBEAT_S = 15  # a live holder renews its lease this often: only a dead one loses it
BODY_KEPT_MAX = 256 * 1024  # a larger answer is not kept (as one that failed)
RETRY_AFTER_S = 2
PREFIX = "/api/v1/"
_KEPT_HEADERS = ("content-type", "location", "etag", "cache-control")

_CLAIM = """
INSERT INTO anbu.api_idempotency AS i
       (principal_id, key, fingerprint, grant_hash, path, lease, first_at, claimed_at)
VALUES (%(principal)s, %(key)s, %(fingerprint)s, %(grant)s, %(path)s, %(lease)s, now(), now())
ON CONFLICT (principal_id, key) DO UPDATE
   SET fingerprint = EXCLUDED.fingerprint, grant_hash = EXCLUDED.grant_hash,
       path = EXCLUDED.path, lease = EXCLUDED.lease, first_at = now(), claimed_at = now(),
       applied_at = NULL, finished_at = NULL, status = NULL, headers = NULL, body = NULL,
       body_key_id = NULL, kept = NULL
 WHERE (i.finished_at IS NOT NULL AND i.first_at < now() - make_interval(hours => %(keep)s))
    OR (i.finished_at IS NULL AND i.claimed_at < now() - make_interval(secs => %(lease_s)s)
        AND ((i.fingerprint = EXCLUDED.fingerprint AND i.applied_at IS NULL)
             OR i.first_at < now() - make_interval(hours => %(keep)s)))
RETURNING i.lease
"""
_HELD = """
SELECT fingerprint, grant_hash, applied_at IS NOT NULL, kept, status, headers, body,
       body_key_id, claimed_at < now() - make_interval(secs => %(lease_s)s)
  FROM anbu.api_idempotency
 WHERE principal_id = %(principal)s AND key = %(key)s
"""
_MARK = """
UPDATE anbu.api_idempotency SET applied_at = coalesce(applied_at, now())
 WHERE principal_id = %(principal)s AND key = %(key)s AND lease = %(lease)s
   AND finished_at IS NULL
"""
_RENEW = """
UPDATE anbu.api_idempotency SET claimed_at = now()
 WHERE principal_id = %(principal)s AND key = %(key)s AND lease = %(lease)s
   AND finished_at IS NULL
"""
_GIVE_BACK = """
DELETE FROM anbu.api_idempotency
 WHERE principal_id = %(principal)s AND key = %(key)s AND lease = %(lease)s
   AND finished_at IS NULL AND applied_at IS NULL
"""
_KEEP = """
UPDATE anbu.api_idempotency
   SET finished_at = now(), kept = %(kept)s, status = %(status)s, headers = %(headers)s,
       body = %(body)s, body_key_id = %(body_key_id)s
 WHERE principal_id = %(principal)s AND key = %(key)s AND lease = %(lease)s
   AND finished_at IS NULL
"""


class Answered(Exception):
    """The request is answered from its key; its route does not run."""

    def __init__(self, response: Response) -> None:
        super().__init__(response.status_code)
        self.response = response


def _refusal(status: int, key: str, retry: bool = False) -> JSONResponse:
    """problems.refused's answer, with Retry-After when the retry should wait."""
    answer = refused(status, key)
    if retry:
        answer.headers["Retry-After"] = str(RETRY_AFTER_S)
    return answer


@dataclass(eq=False)
class Pending:
    """A keyed POST: its key and fingerprint, then its claim; a core.db.Watch over the blocks
    the request opens."""

    key: str
    fingerprint: bytes
    path: str
    principal_id: int | None = None
    lease: uuid.UUID | None = None
    lost: bool = False  # a retry took the claim over: this request must not act

    def _params(self) -> dict[str, Any]:
        return {"principal": self.principal_id, "key": self.key, "lease": self.lease}

    def opened(self, conn: psycopg.Connection[Any]) -> None:
        """Begin at once: a `conn.transaction()` inside the block is then a savepoint, so the
        block is one transaction and its commit carries the mark (see committing)."""
        if self.lease is not None and conn.info.transaction_status == TransactionStatus.IDLE:
            conn.execute("SELECT 1")

    def committing(self, conn: psycopg.Connection[Any]) -> None:
        """A block that wrote marks the claim applied in its own transaction, under the lease."""
        if self.lease is None or conn.info.transaction_status != TransactionStatus.INTRANS:
            return
        row = conn.execute("SELECT pg_current_xact_id_if_assigned() IS NOT NULL").fetchone()
        if not (row and row[0]):
            return  # it only read
        if conn.execute(_MARK, self._params()).rowcount != 1:
            self.lost = True
            raise Answered(_refusal(409, "idempotency_in_progress", retry=True))


def fingerprint(
    secret: str, method: str, path: str, query: bytes, headers: Any, body: bytes
) -> bytes:
    """What makes two requests the same request: method, path, query, `If-Match`,
    `Content-Type` and body, each length-prefixed, under an HMAC keyed by the session secret
    (a guess at a note's text cannot be checked against the table without it)."""
    mac = hmac.new(hashlib.sha256(b"anbu idempotency\0" + secret.encode()).digest(),
                   digestmod=hashlib.sha256)  # fmt: skip
    given = dict(headers)
    parts = (method.encode(), path.encode(), query, given.get(b"if-match", b""),
             given.get(b"content-type", b""), body)  # fmt: skip
    for part in parts:
        mac.update(len(part).to_bytes(8, "big") + part)
    return mac.digest()


def grant_of(manager: Any) -> bytes:
    """What the principal may see and do now (role, dong, district, dongs, scopes): a kept
    answer is replayed only while it is the same."""
    held = (manager.role, manager.dong_code, manager.district, sorted(manager.district_dongs),
            sorted(manager.scopes))  # fmt: skip
    return hashlib.sha256(json.dumps(held).encode()).digest()


def _pending(scope: Scope) -> Pending | None:
    found = scope.get("state", {}).get("idempotency")
    return found if isinstance(found, Pending) else None


def _keyring(deps: Any) -> Keyring | None:
    """The web app's data keys (dashboards.deps.Deps), None when none is configured."""
    return Keyring.from_settings(deps.settings) if deps.settings.data_key else None


def claim(request: Request, manager: Any) -> None:
    """Claim the request's key for the principal `manager` (dashboards.auth.CareManager), once
    it is known; raises Answered when the key was used before (its kept answer, or why not).
    No key, or a route that takes none: nothing."""
    pending = _pending(request.scope)
    if pending is None or pending.principal_id is not None or _marked(request.scope, UNKEYED):
        return
    db: Database = request.app.state.deps.db
    params = {
        "principal": manager.id, "key": pending.key, "fingerprint": pending.fingerprint,
        "grant": grant_of(manager), "path": pending.path, "keep": KEEP_HOURS, "lease_s": LEASE_S,
    }  # fmt: skip
    for _ in range(3):  # a holder may give its key back between the insert and the look
        lease = uuid.uuid4()
        with db.connection() as conn:
            if conn.execute(_CLAIM, {**params, "lease": lease}).fetchone() is not None:
                held = None
            else:
                held = conn.execute(_HELD, params).fetchone()
                if held is None:
                    continue
        if held is None:
            with db.connection() as conn:  # its own transaction: no lock held with the claim's
                retention.forget_api_keys(conn, FORGET_PER_CLAIM)
            pending.principal_id, pending.lease = manager.id, lease
            return
        keyring = _keyring(request.app.state.deps)
        answer = _to_retry(held, pending, manager.id, params["grant"], keyring)
        raise Answered(answer)
    raise Answered(_refusal(409, "idempotency_in_progress", retry=True))


def _to_retry(
    held: tuple[Any, ...], pending: Pending, principal_id: int, grant: bytes,
    keyring: Keyring | None,
) -> Response:  # fmt: skip
    """The answer to a request whose key was claimed before."""
    fingerprint, granted, applied, kept, status, headers, body, body_key_id, stale = held
    if not hmac.compare_digest(bytes(fingerprint), pending.fingerprint):
        return _refusal(422, "idempotency_key_reused")
    if kept == "answer":
        if not hmac.compare_digest(bytes(granted), grant):
            return _refusal(409, "idempotency_grant_changed")
        try:
            content = _open(keyring, api_answer_field(principal_id, pending.key), body, body_key_id)
        except DataKeyError:
            log.error("kept API answer could not be opened", extra={"principal_id": principal_id})
            return _refusal(409, "idempotency_answer_lost")
        return Response(content, status_code=status, headers={**headers, REPLAYED: "true"})
    if kept == "withheld":
        return _refusal(409, "idempotency_answer_withheld")
    if kept == "lost" or (applied and stale):
        return _refusal(409, "idempotency_answer_lost")
    return _refusal(409, "idempotency_in_progress", retry=True)


def _open(keyring: Keyring | None, field: str, body: bytes | None, key_id: str | None) -> bytes:
    if body is None:
        return b""
    if key_id is None:
        return bytes(body)
    if keyring is None:
        raise DataKeyError("no data key configured to open a kept answer")
    return keyring.open(bytes(body), key_id, field).encode("latin-1")


def _seal(keyring: Keyring | None, field: str, body: bytes) -> tuple[bytes, str | None]:
    if keyring is None:  # only where no data key is configured (tests; `serve web` needs one)
        return body, None
    sealed = keyring.seal(body.decode("latin-1"), field)
    return sealed.blob, sealed.key_id


def _finish(
    db: Database,
    keyring: Keyring | None,
    pending: Pending,
    status: int,
    headers: list[tuple[bytes, bytes]],
    body: bytes,
    withheld: bool,
) -> None:
    """Keep the answer of a claimed request, or give its key back; never raises (the answer
    is sent whatever happens here)."""
    if pending.lease is None or pending.lost or pending.principal_id is None:
        return
    params = pending._params()
    try:
        with db.connection() as conn:
            if status >= 400 or len(body) > BODY_KEPT_MAX:
                # a refusal or failure that wrote nothing decided nothing: the retry asks again
                gone = conn.execute(_GIVE_BACK, params).rowcount
                if gone:
                    return
            stored: dict[str, Any] = {"kept": "lost", "status": None, "headers": None,
                                      "body": None, "body_key_id": None}  # fmt: skip
            if status >= 500 or len(body) > BODY_KEPT_MAX:
                pass  # it wrote, then failed (or answered too much to keep): never run again
            elif withheld and status < 300:
                stored["kept"] = "withheld"
            else:
                names = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in headers}
                blob, key_id = _seal(keyring, api_answer_field(pending.principal_id, pending.key),
                                     body)  # fmt: skip
                stored = {
                    "kept": "answer",
                    "status": status,
                    "headers": json.dumps({k: names[k] for k in _KEPT_HEADERS if k in names}),
                    "body": blob,
                    "body_key_id": key_id,
                }
            conn.execute(_KEEP, {**params, **stored})
    except Exception as exc:
        # the retry then finds the key applied and unanswered (answer_lost) or, when nothing
        # was written, free again once the lease runs out
        log.error("API answer could not be kept", extra={"principal_id": pending.principal_id,
                                                         "error": type(exc).__name__})  # fmt: skip


def _renew(db: Database, pending: Pending) -> None:
    with db.connection() as conn:
        conn.execute(_RENEW, pending._params())


async def _heartbeat(db: Database, pending: Pending) -> None:
    """Renew the claim's lease while its holder runs: only a dead holder's is taken over.
    Started outside the watch (a renewal is not the request's write)."""
    while True:
        await asyncio.sleep(HEARTBEAT_S)
        if pending.lease is not None and not pending.lost:
            try:
                await asyncio.to_thread(_renew, db, pending)
            except Exception as exc:  # the next beat tries again
                log.warning("API key lease not renewed", extra={"error": type(exc).__name__})


PARAMETER: dict[str, Any] = {
    "name": HEADER,
    "in": "header",
    "required": False,
    "schema": {"type": "string", "minLength": 1, "maxLength": 255, "pattern": "^[!-~]+$"},
    "description": "Sent again with the same key (a retry after a lost answer), the first "
    "answer is replayed with `Idempotent-Replayed: true` and nothing is done twice; a key is "
    "the caller's, remembered 24 hours. The same key with another request: 422 "
    "idempotency_key_reused; while the first runs: 409 idempotency_in_progress with "
    "Retry-After; an answer that showed a secret once is not kept (409 "
    "idempotency_answer_withheld); one lost to a server failure after the write: 409 "
    "idempotency_answer_lost; a kept answer after the caller's role, dongs or scopes changed: "
    "409 idempotency_grant_changed. A refusal that changed nothing is not kept: the retry "
    "asks again.",
}


def add_to_spec(spec: dict[str, Any]) -> dict[str, Any]:
    """Document the header on every POST under /api/v1/ that names its caller (has security),
    but those that take none."""
    for path, operations in spec.get("paths", {}).items():
        post = operations.get("post") if path.startswith(PREFIX) else None
        if not isinstance(post, dict) or not post.get("security"):
            continue
        if post.get("x-idempotent-answer") == UNKEYED["x-idempotent-answer"]:
            continue
        parameters = post.setdefault("parameters", [])
        if not any(p.get("name") == HEADER for p in parameters):
            parameters.append(PARAMETER)
    return spec


def _marked(scope: Scope, marker: dict[str, str]) -> bool:
    """Whether the route asked for (FastAPI sets it in the scope before any dependency) is
    marked so in its `openapi_extra`."""
    extra = getattr(scope.get("route"), "openapi_extra", None) or {}
    return all(extra.get(k) == v for k, v in marker.items())


class IdempotencyKeys:
    """ASGI middleware: a POST under /api/v1/ with an Idempotency-Key is fingerprinted, watched
    while it runs and its answer kept (see the module's docstring). Inside the body limit,
    which has read the whole body."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or scope["method"] != "POST"
            or not scope["path"].startswith(PREFIX)
        ):
            await self.app(scope, receive, send)
            return
        given = [v for k, v in scope.get("headers", ()) if k == b"idempotency-key"]
        if not given:
            await self.app(scope, receive, send)
            return
        key = given[0].decode("latin-1")
        if len(given) > 1 or not KEY.fullmatch(key):
            await _refusal(400, "idempotency_key_invalid")(scope, receive, send)
            return
        chunks: list[bytes] = []
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client went away before it finished sending
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        deps = scope["app"].state.deps
        pending = Pending(
            key,
            fingerprint(deps.settings.session_secret, scope["method"], scope["path"],
                        scope["query_string"], scope.get("headers", ()), body),
            scope["path"],
        )  # fmt: skip
        scope.setdefault("state", {})["idempotency"] = pending
        replay = replaying(body, receive)
        start: Message | None = None
        parts: list[bytes] = []

        async def hold(message: Message) -> None:  # the answer is kept before it is sent
            nonlocal start
            if message["type"] == "http.response.start":
                start = message
            elif message["type"] == "http.response.body":
                parts.append(message.get("body", b""))

        beat = asyncio.create_task(_heartbeat(deps.db, pending))  # outside the watch
        try:
            keyring = _keyring(deps)
            with watched(pending):
                await self.app(scope, replay, hold)
        except Exception:
            await run_in_threadpool(_finish, deps.db, None, pending, 500, [], b"", False)
            raise
        finally:
            beat.cancel()
        status = start["status"] if start else 500
        answer = b"".join(parts)
        headers = list(start.get("headers", [])) if start else []
        withheld = _marked(scope, WITHHELD)
        await run_in_threadpool(
            _finish, deps.db, keyring, pending, status, headers, answer, withheld
        )
        if start is None:
            return
        await send(start)
        await send({"type": "http.response.body", "body": answer, "more_body": False})
