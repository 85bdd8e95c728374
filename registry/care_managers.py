"""Care managers' credentials: password rules, password changes, sessions and TOTP secrets.

The registry is the only writer of `anbu.care_manager`. A care manager's sessions and tokens
carry the `session_generation` they were issued under; every function here that changes how
they log in bumps it, which ends all their sessions and tokens at once.
"""

from __future__ import annotations

import logging
import re
import unicodedata
from datetime import datetime
from functools import cache
from importlib import resources
from typing import Any

import psycopg

from registry.changes import InvalidChange
from registry.enrolment import add_care_manager, hash_password, verify_password

log = logging.getLogger(__name__)

PASSWORD_MIN_LENGTH = 12
PASSWORD_MAX_LENGTH = 128  # argon2 takes any length; a cap keeps hashing cheap
PASSWORD_MIN_DISTINCT = 5  # 'aaaaaaaaaaab' is twelve characters and no secret
_LEET = str.maketrans({"0": "o", "1": "i", "3": "e", "4": "a", "5": "s", "7": "t", "@": "a",
                       "$": "s", "!": "i"})  # fmt: skip
_EDGES = re.compile(r"^[\W\d_]+|[\W\d_]+$")
_SEPARATORS = re.compile(r"[\W_]+")


class WeakPassword(InvalidChange):
    """A new password the rules refuse; `code` says which rule (dashboards translate it)."""


class WrongPassword(InvalidChange):
    """The current password given to confirm a change is not the care manager's."""


class CareManagerNotFound(LookupError):
    """No active care manager with that id."""


@cache
def common_passwords() -> frozenset[str]:
    """The shipped list of common and pattern passwords, lower case."""
    text = resources.files("registry").joinpath("common_passwords.txt").read_text("utf-8")
    return frozenset(
        line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")
    )


def _variants(password: str) -> set[str]:
    """The password and what it is made of once case, separators, leetspeak and the digits
    and symbols people tack on at either end are taken away."""
    lower = unicodedata.normalize("NFKC", password).casefold()
    out = {lower, _SEPARATORS.sub("", lower)}
    for form in list(out):
        out.add(form.translate(_LEET))
    for form in list(out):
        out.add(_EDGES.sub("", form))
    return {form for form in out if form}


def _repeats_a_short_unit(password: str) -> bool:
    """'abcabcabcabc', 'passwordpassword': the same few characters again and again."""
    size = len(password)
    return any(
        size % unit == 0 and password[:unit] * (size // unit) == password
        for unit in range(1, min(size // 2, 8) + 1)
    )


def check_password(password: str, username: str = "") -> None:
    """Raise WeakPassword unless `password` may be set: long enough, not too long, varied,
    not the username and not a common password or a decoration of one."""
    if len(password) < PASSWORD_MIN_LENGTH:
        raise WeakPassword("password_short", f"at least {PASSWORD_MIN_LENGTH} characters")
    if len(password) > PASSWORD_MAX_LENGTH:
        raise WeakPassword("password_long", f"at most {PASSWORD_MAX_LENGTH} characters")
    if len(set(password)) < PASSWORD_MIN_DISTINCT or _repeats_a_short_unit(password.casefold()):
        raise WeakPassword("password_common", "too repetitive")
    variants = _variants(password)
    name = username.strip().casefold()
    if len(name) >= 4 and any(name in form for form in variants):
        raise WeakPassword("password_username", "contains the username")
    common = common_passwords()
    if any(form in common or (len(form) >= 6 and _repeats_a_short_unit(form)) for form in variants):
        raise WeakPassword("password_common", "a common password")


def enrol_care_manager(
    conn: psycopg.Connection[Any],
    username: str,
    dong_code: str,
    display_name: str,
    phone: str,
    password: str,
    role: str = "manager",
) -> int:
    """A care manager whose first password passes the rules (add_care_manager, checked)."""
    check_password(password, username)
    return add_care_manager(conn, username, dong_code, display_name, phone, password, role)


def _locked_row(conn: psycopg.Connection[Any], care_manager_id: int) -> tuple[Any, ...]:
    row = conn.execute(
        """SELECT username, password_hash FROM anbu.care_manager
           WHERE id = %s AND active FOR UPDATE""",
        (care_manager_id,),
    ).fetchone()
    if row is None:
        raise CareManagerNotFound(care_manager_id)
    return tuple(row)


def set_password(
    conn: psycopg.Connection[Any], care_manager_id: int, new_password: str, now: datetime
) -> int:
    """Set a checked password (an administrator's reset); ends every session. The new
    session generation."""
    username, _ = _locked_row(conn, care_manager_id)
    check_password(new_password, username)
    return _store_password(conn, care_manager_id, new_password, now)


def change_password(
    conn: psycopg.Connection[Any],
    care_manager_id: int,
    current_password: str,
    new_password: str,
    now: datetime,
) -> int:
    """A care manager's own change: the current password, then a checked new one; ends every
    session and token they hold. The new session generation."""
    username, password_hash = _locked_row(conn, care_manager_id)
    if not verify_password(password_hash, current_password):
        raise WrongPassword("password_wrong", "the current password is not correct")
    if new_password == current_password:
        raise WeakPassword("password_same", "the new password is the current one")
    check_password(new_password, username)
    return _store_password(conn, care_manager_id, new_password, now)


def _store_password(
    conn: psycopg.Connection[Any], care_manager_id: int, password: str, now: datetime
) -> int:
    row = conn.execute(
        """UPDATE anbu.care_manager
           SET password_hash = %s, password_changed_at = %s,
               session_generation = session_generation + 1
           WHERE id = %s RETURNING session_generation""",
        (hash_password(password), now, care_manager_id),
    ).fetchone()
    assert row is not None
    log.info("care manager password changed", extra={"care_manager_id": care_manager_id})
    return int(row[0])


def end_sessions(conn: psycopg.Connection[Any], care_manager_id: int) -> int:
    """Logout: every session and bearer token of the care manager stops working. The new
    session generation."""
    row = conn.execute(
        """UPDATE anbu.care_manager SET session_generation = session_generation + 1
           WHERE id = %s RETURNING session_generation""",
        (care_manager_id,),
    ).fetchone()
    if row is None:
        raise CareManagerNotFound(care_manager_id)
    return int(row[0])


def set_totp_secret(
    conn: psycopg.Connection[Any], care_manager_id: int, secret: str | None, step: int = 0
) -> int:
    """Enrol (a base32 secret, confirmed with the code of `step`) or remove (None) a TOTP
    authenticator; ends every other session. The new session generation."""
    row = conn.execute(
        """UPDATE anbu.care_manager
           SET totp_secret = %s, totp_last_step = %s,
               session_generation = session_generation + 1
           WHERE id = %s AND active RETURNING session_generation""",
        (secret, step, care_manager_id),
    ).fetchone()
    if row is None:
        raise CareManagerNotFound(care_manager_id)
    log.info(
        "care manager TOTP %s", "enrolled" if secret else "removed",
        extra={"care_manager_id": care_manager_id},
    )  # fmt: skip
    return int(row[0])


def use_totp_step(conn: psycopg.Connection[Any], care_manager_id: int, step: int) -> bool:
    """Record that the code of `step` was used; False when it (or a later one) already was,
    so a code seen once is never accepted again, by any replica."""
    row = conn.execute(
        """UPDATE anbu.care_manager SET totp_last_step = %s
           WHERE id = %s AND totp_last_step < %s RETURNING id""",
        (step, care_manager_id, step),
    ).fetchone()
    return row is not None
