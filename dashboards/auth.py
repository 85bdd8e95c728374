"""Who is asking: care manager login, signed API tokens, session cookies and CSRF tokens.

Pages authenticate with the signed session cookie; the JSON API with a signed bearer
token (or the same session cookie, when a header CSRF token comes with unsafe methods).
Both carry the care manager's session generation and the moment of login: logout and a
password change bump the generation, ending every session and token at once, and neither
lives longer than the absolute lifetime, however busy. Failed logins are throttled per
account name and address, per address, and capped per account name (dashboards.throttle),
each attempt counted before it is checked; supervisors and admins may add a TOTP
code. Failures never say which part was wrong. Logs carry care manager ids only.
"""

from __future__ import annotations

import hmac
import logging
import secrets
from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cached_property
from typing import Any

import psycopg
from itsdangerous import BadSignature, URLSafeSerializer
from starlette.requests import Request

import registry
from core.clock import Clock, SystemClock
from core.config import Settings
from core.crypto import Keyring
from core.db import Database
from dashboards import throttle, totp
from registry import hash_password, verify_password
from registry.care_managers import open_totp_secret

log = logging.getLogger(__name__)

SESSION_LIFETIME = timedelta(hours=12)  # absolute: from login, however busy the session
TOKEN_LIFETIME = SESSION_LIFETIME
PENDING_CODE_LIFETIME = timedelta(minutes=5)  # between a right password and its TOTP code
SESSION_USER = "care_manager_id"
SESSION_GENERATION = "generation"
SESSION_SINCE = "since"  # the login, as whole seconds since the epoch
SESSION_PENDING = "pending_code"  # {id, generation, username, since}: password right, code due
SESSION_CSRF = "csrf"
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "x-csrf-token"
_TOKEN_SALT = "anbu.api-token.v2"
TOTP_ROLES = frozenset({"supervisor", "admin"})


class NotAuthenticated(Exception):
    """No valid session or token: pages redirect to /login, the API answers 401."""


class CsrfRejected(Exception):
    """An unsafe request without the session's CSRF token."""


class LoginLocked(Exception):
    """Too many failed logins for this account name or address: refused without checking."""

    def __init__(self, until: datetime, now: datetime) -> None:
        super().__init__("login locked")
        self.retry_after_s = max(1, int((until - now).total_seconds() + 0.999))


@dataclass(frozen=True, slots=True)
class CareManager:
    """The logged-in care manager (any role); what they may see is dashboards.authz's rule."""

    id: int
    username: str
    display_name: str
    dong_code: str
    dong_name: str
    role: str
    generation: int = 0
    totp_enabled: bool = False
    district: str = ""
    district_dongs: tuple[str, ...] = ()  # every dong of their district, theirs included
    # (a service account: the dongs it was given)
    scopes: frozenset[str] = frozenset()  # a service account's (dashboards.service_accounts)

    @property
    def may_use_totp(self) -> bool:
        return self.role in TOTP_ROLES


_SELECT_MANAGER = """
    SELECT m.id, m.username, m.display_name, m.dong_code, d.name, m.role,
           m.session_generation, m.totp_secret IS NOT NULL, m.password_hash, m.totp_secret,
           d.district,
           ARRAY(SELECT x.code FROM anbu.dong x WHERE x.district = d.district ORDER BY x.code)
    FROM anbu.care_manager m JOIN anbu.dong d ON d.code = m.dong_code
    WHERE m.active AND {where}
"""


def _manager(row: tuple[Any, ...]) -> CareManager:
    return CareManager(
        int(row[0]), row[1], row[2], row[3], row[4], row[5], int(row[6]), bool(row[7]),
        row[10], tuple(row[11]),
    )  # fmt: skip


def load_care_manager(conn: psycopg.Connection[Any], care_manager_id: int) -> CareManager | None:
    """The active care manager with this id, or None."""
    row = conn.execute(_SELECT_MANAGER.format(where="m.id = %s"), (care_manager_id,)).fetchone()
    return _manager(row) if row else None


def cookie_secure(settings: Settings) -> bool:
    """Whether the session cookie is marked Secure (sent over https only)."""
    if settings.session_cookie_secure is not None:
        return settings.session_cookie_secure
    return settings.public_base_url.startswith("https://")


def _epoch(moment: datetime) -> int:
    return int(moment.timestamp())


class Authenticator:
    """Checks passwords and TOTP codes, throttles failures, issues and reads bearer tokens and
    judges sessions; holds no connection of its own."""

    def __init__(
        self,
        db: Database,
        secret: str,
        token_lifetime: timedelta = TOKEN_LIFETIME,
        *,
        clock: Clock | None = None,
        policy: throttle.ThrottlePolicy | None = None,
        keyring: Keyring | None = None,
    ) -> None:
        self.db = db
        self.token_lifetime = token_lifetime  # also the sessions' absolute lifetime
        self.clock: Clock = clock or SystemClock()
        self.policy = policy or throttle.ThrottlePolicy()
        self.keyring = keyring  # opens TOTP secrets, sealed at rest
        self._throttle_key = throttle.server_key(secret)
        self._serializer = URLSafeSerializer(secret, salt=_TOKEN_SALT)

    @classmethod
    def from_settings(
        cls, db: Database, settings: Settings, clock: Clock | None = None
    ) -> Authenticator:
        policy = throttle.ThrottlePolicy(
            pair_failures=settings.login_max_failures,
            address_failures=settings.login_address_max_failures,
            lockout=timedelta(seconds=settings.login_lockout_s),
        )
        lifetime = timedelta(hours=settings.session_lifetime_hours)
        keyring = Keyring.from_settings(settings) if settings.data_key else None
        return cls(
            db, settings.session_secret, lifetime, clock=clock, policy=policy, keyring=keyring
        )

    @cached_property
    def _dummy_hash(self) -> str:
        # Unknown usernames cost one verification too, so timing does not tell them apart.
        return hash_password(secrets.token_hex(16))

    # -- logging in ------------------------------------------------------------------------

    def _keys(self, username: str, address: str) -> throttle.Keys:
        return throttle.keys_of(self._throttle_key, username, address)

    def admit(self, username: str, address: str, now: datetime | None = None) -> None:
        """Count one attempt for the account name from this address before anything is checked;
        LoginLocked (counting nothing) while the pair or the address is locked out or the name
        has had its checks for this minute. Row-locked: concurrent attempts count one by one."""
        now = now or self.clock.now()
        with self.db.connection() as conn:
            until = throttle.admit(conn, self._keys(username, address), now, self.policy)
        if until is not None:
            log.info("login refused: locked out")
            raise LoginLocked(until, now)

    def refund(self, username: str, address: str) -> None:
        """Take back an admitted attempt that was right but is not a login yet (a right
        password waiting for its code, a right password confirming an account change)."""
        keys = self._keys(username, address)
        with self.db.connection() as conn:
            throttle.refund(conn, [keys.pair, keys.address, keys.account])

    def _succeeded(self, username: str, address: str, now: datetime) -> None:
        with self.db.connection() as conn:
            throttle.succeeded(conn, self._keys(username, address), now)

    def check_password(self, username: str, password: str, address: str) -> CareManager | None:
        """The care manager when the username and password match an active account (the
        caller asks for a TOTP code next when `totp_enabled`); LoginLocked while locked out.
        The attempt is counted first, so a burst cannot get more checks than the limit."""
        now = self.clock.now()
        self.admit(username, address, now)
        with self.db.connection() as conn:
            row = conn.execute(
                _SELECT_MANAGER.format(where="m.username = %s"), (username,)
            ).fetchone()
        if row is None:
            verify_password(self._dummy_hash, password)
            ok = False
        else:
            ok = verify_password(row[8], password)
        if not ok or row is None:
            log.info("login refused", extra={"care_manager_id": int(row[0]) if row else None})
            return None
        manager = _manager(row)
        if manager.totp_enabled:
            self.refund(username, address)  # the code is counted on its own
        else:
            self._succeeded(username, address, now)
            log.info("care manager logged in", extra={"care_manager_id": manager.id})
        return manager

    def check_code(
        self, username: str, care_manager_id: int, code: str, address: str
    ) -> CareManager | None:
        """The care manager when `code` is a fresh TOTP code of theirs (each code works once);
        throttled like passwords."""
        now = self.clock.now()
        self.admit(username, address, now)
        with self.db.connection() as conn:
            row = conn.execute(
                _SELECT_MANAGER.format(where="m.id = %s AND m.username = %s"),
                (care_manager_id, username),
            ).fetchone()
            step = None
            if row is not None and row[9]:
                secret = open_totp_secret(self.keyring, care_manager_id, row[9])
                step = totp.matching_step(secret, code, now)
            used = step is not None and registry.use_totp_step(conn, care_manager_id, step)
        if row is None or not used:
            log.info("login code refused", extra={"care_manager_id": care_manager_id})
            return None
        self._succeeded(username, address, now)
        log.info("care manager logged in with a code", extra={"care_manager_id": care_manager_id})
        return _manager(row)

    def login(
        self, username: str, password: str, address: str = "", code: str = ""
    ) -> CareManager | None:
        """One-step login (the API): the password and, for accounts that enrolled TOTP, the
        code. None when anything is wrong; LoginLocked while locked out."""
        manager = self.check_password(username, password, address)
        if manager is None or not manager.totp_enabled:
            return manager
        return self.check_code(username, manager.id, code, address)

    # -- tokens and sessions ---------------------------------------------------------------

    def issue_token(self, manager: CareManager) -> str:
        """A signed bearer token naming the care manager, their session generation and when
        it was issued."""
        payload = {"cm": manager.id, "g": manager.generation, "iat": _epoch(self.clock.now())}
        return self._serializer.dumps(payload)

    def _fresh(self, since: object) -> bool:
        if not isinstance(since, int) or isinstance(since, bool):
            return False
        issued = datetime.fromtimestamp(since, UTC)
        now = self.clock.now()
        return issued - timedelta(minutes=5) <= now and now - issued < self.token_lifetime

    def _token_claims(self, token: str) -> tuple[int, int] | None:
        try:
            data = self._serializer.loads(token)
        except BadSignature:
            return None
        if not isinstance(data, dict) or not self._fresh(data.get("iat")):
            return None
        cm, generation = data.get("cm"), data.get("g")
        if isinstance(cm, int) and isinstance(generation, int):
            return cm, generation
        return None

    def read_token(self, token: str) -> int | None:
        """The care manager id in a validly signed token still within its lifetime."""
        claims = self._token_claims(token)
        return claims[0] if claims else None

    def token_manager(self, token: str) -> CareManager | None:
        """The care manager of a valid token whose generation is still theirs."""
        claims = self._token_claims(token)
        return self._current(*claims) if claims else None

    def session_manager(self, session: Mapping[str, Any]) -> CareManager | None:
        """The care manager of a session cookie that is within its absolute lifetime and of
        their current generation."""
        user, generation = session.get(SESSION_USER), session.get(SESSION_GENERATION)
        if not (isinstance(user, int) and isinstance(generation, int)):
            return None
        if not self._fresh(session.get(SESSION_SINCE)):
            return None
        return self._current(user, generation)

    def _current(self, care_manager_id: int, generation: int) -> CareManager | None:
        manager = self.care_manager(care_manager_id)
        return manager if manager is not None and manager.generation == generation else None

    def care_manager(self, care_manager_id: int | None) -> CareManager | None:
        """The active care manager behind an id."""
        if care_manager_id is None:
            return None
        with self.db.connection() as conn:
            return load_care_manager(conn, care_manager_id)

    def pending_code(self, session: Mapping[str, Any]) -> tuple[int, str] | None:
        """(care manager id, username) of a login waiting for its TOTP code, if still fresh."""
        pending = session.get(SESSION_PENDING)
        if not isinstance(pending, dict):
            return None
        cm, username, since = pending.get("id"), pending.get("username"), pending.get("since")
        if not (isinstance(cm, int) and isinstance(username, str) and isinstance(since, int)):
            return None
        age = self.clock.now() - datetime.fromtimestamp(since, UTC)
        return (cm, username) if timedelta(0) <= age < PENDING_CODE_LIFETIME else None

    def now_epoch(self) -> int:
        return _epoch(self.clock.now())


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


def _fresh_session(session: MutableMapping[str, Any]) -> None:
    """Drop everything but the language (no fixation) and issue a new CSRF token."""
    lang = session.get("lang")
    session.clear()
    if lang:
        session["lang"] = lang
    session[SESSION_CSRF] = secrets.token_urlsafe(32)


def start_session(request: Request, manager: CareManager, since: int) -> None:
    """A fresh session for a care manager who just logged in at `since` (epoch seconds)."""
    _fresh_session(request.session)
    request.session[SESSION_USER] = manager.id
    request.session[SESSION_GENERATION] = manager.generation
    request.session[SESSION_SINCE] = since


def await_code(request: Request, manager: CareManager, since: int) -> None:
    """A fresh session that knows the password was right and waits for the TOTP code."""
    _fresh_session(request.session)
    request.session[SESSION_PENDING] = {"id": manager.id, "username": manager.username,
                                        "since": since}  # fmt: skip


def end_session(request: Request) -> None:
    lang = request.session.get("lang")
    request.session.clear()
    if lang:
        request.session["lang"] = lang


def session_user(request: Request) -> int | None:
    value = request.session.get(SESSION_USER)
    return value if isinstance(value, int) else None


def client_address(request: Request) -> str:
    """The address failures are counted against (the proxy's view when uvicorn trusts it)."""
    return request.client.host if request.client else "unknown"


def bearer_token(request: Request) -> str | None:
    """The token of an `Authorization: Bearer ...` header."""
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    return token.strip() or None if scheme.lower() == "bearer" else None
