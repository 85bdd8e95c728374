"""Who is asking: care manager login, signed API tokens, session cookies and CSRF tokens.

Pages authenticate with the signed session cookie; the JSON API with a signed bearer
token (or the same session cookie, when a header CSRF token comes with unsafe methods).
Failures never say which part was wrong. Logs carry care manager ids only.
"""

from __future__ import annotations

import hmac
import logging
import secrets
from dataclasses import dataclass
from datetime import timedelta
from functools import cached_property
from typing import Any

import psycopg
from itsdangerous import BadSignature, URLSafeTimedSerializer
from starlette.requests import Request

from core.db import Database
from registry import hash_password, verify_password

log = logging.getLogger(__name__)

TOKEN_LIFETIME = timedelta(hours=12)
SESSION_LIFETIME = timedelta(hours=12)
SESSION_USER = "care_manager_id"
SESSION_CSRF = "csrf"
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "x-csrf-token"
_TOKEN_SALT = "anbu.api-token.v1"


class NotAuthenticated(Exception):
    """No valid session or token: pages redirect to /login, the API answers 401."""


class CsrfRejected(Exception):
    """An unsafe request without the session's CSRF token."""


@dataclass(frozen=True, slots=True)
class CareManager:
    """The logged-in care manager; sees only their own dong."""

    id: int
    username: str
    display_name: str
    dong_code: str
    dong_name: str
    role: str


_SELECT_MANAGER = """
    SELECT m.id, m.username, m.display_name, m.dong_code, d.name, m.role, m.password_hash
    FROM anbu.care_manager m JOIN anbu.dong d ON d.code = m.dong_code
    WHERE m.active AND {where}
"""


def _manager(row: tuple[Any, ...]) -> CareManager:
    return CareManager(int(row[0]), row[1], row[2], row[3], row[4], row[5])


def load_care_manager(conn: psycopg.Connection[Any], care_manager_id: int) -> CareManager | None:
    """The active care manager with this id, or None."""
    row = conn.execute(_SELECT_MANAGER.format(where="m.id = %s"), (care_manager_id,)).fetchone()
    return _manager(row) if row else None


class Authenticator:
    """Checks passwords and issues/reads bearer tokens; holds no connection of its own."""

    def __init__(self, db: Database, secret: str, token_lifetime: timedelta = TOKEN_LIFETIME):
        self.db = db
        self.token_lifetime = token_lifetime
        self._serializer = URLSafeTimedSerializer(secret, salt=_TOKEN_SALT)

    @cached_property
    def _dummy_hash(self) -> str:
        # Unknown usernames cost one verification too, so timing does not tell them apart.
        return hash_password(secrets.token_hex(16))

    def login(self, username: str, password: str) -> CareManager | None:
        """The care manager when the username and password match an active account."""
        with self.db.connection() as conn:
            row = conn.execute(
                _SELECT_MANAGER.format(where="m.username = %s"), (username,)
            ).fetchone()
        if row is None:
            verify_password(self._dummy_hash, password)
            log.info("login refused")
            return None
        if not verify_password(row[6], password):
            log.info("login refused", extra={"care_manager_id": int(row[0])})
            return None
        manager = _manager(row)
        log.info("care manager logged in", extra={"care_manager_id": manager.id})
        return manager

    def issue_token(self, manager: CareManager) -> str:
        """A signed, timestamped bearer token naming the care manager."""
        return self._serializer.dumps({"cm": manager.id})

    def read_token(self, token: str) -> int | None:
        """The care manager id in a valid, unexpired token."""
        try:
            data = self._serializer.loads(token, max_age=int(self.token_lifetime.total_seconds()))
        except BadSignature:
            return None
        value = data.get("cm") if isinstance(data, dict) else None
        return value if isinstance(value, int) else None

    def care_manager(self, care_manager_id: int | None) -> CareManager | None:
        """The active care manager behind an id from a session or token."""
        if care_manager_id is None:
            return None
        with self.db.connection() as conn:
            return load_care_manager(conn, care_manager_id)


# -- sessions and CSRF ---------------------------------------------------------------------


def csrf_token(request: Request) -> str:
    """This session's CSRF token, created on first use."""
    token = request.session.get(SESSION_CSRF)
    if not isinstance(token, str):
        token = secrets.token_urlsafe(32)
        request.session[SESSION_CSRF] = token
    return token


def check_csrf(request: Request, submitted: str | None) -> None:
    """Raise CsrfRejected unless `submitted` is this session's CSRF token."""
    expected = request.session.get(SESSION_CSRF)
    if not (isinstance(expected, str) and submitted):
        raise CsrfRejected
    if not hmac.compare_digest(expected.encode(), submitted.encode()):
        raise CsrfRejected


def start_session(request: Request, manager: CareManager) -> None:
    """A fresh session for a care manager who just logged in (no fixation: old data dropped)."""
    lang = request.session.get("lang")
    request.session.clear()
    if lang:
        request.session["lang"] = lang
    request.session[SESSION_USER] = manager.id
    request.session[SESSION_CSRF] = secrets.token_urlsafe(32)


def end_session(request: Request) -> None:
    lang = request.session.get("lang")
    request.session.clear()
    if lang:
        request.session["lang"] = lang


def session_user(request: Request) -> int | None:
    value = request.session.get(SESSION_USER)
    return value if isinstance(value, int) else None


def bearer_token(request: Request) -> str | None:
    """The token of an `Authorization: Bearer ...` header."""
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    return token.strip() or None if scheme.lower() == "bearer" else None
