"""Care managers' credentials: password rules, password changes, sessions and TOTP secrets.

The registry is the only writer of `anbu.care_manager`. A care manager's sessions and tokens
carry the `session_generation` they were issued under; every function here that changes how
they log in bumps it, which ends all their sessions and tokens at once.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import re
import secrets
import unicodedata
from datetime import datetime, timedelta
from functools import cache
from importlib import resources
from typing import Any

import psycopg

from core.crypto import DataKeyMissing, Keyring
from registry.changes import InvalidChange
from registry.enrolment import add_care_manager, hash_password, verify_password

log = logging.getLogger(__name__)

PASSWORD_MIN_LENGTH = 12
TOTP_ENROLMENT_LIFETIME = timedelta(minutes=10)  # a setup key shown, until its first code
_SEALED_PREFIX = "sealed:v1:"
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


def _sealed_field(kind: str, care_manager_id: int) -> str:
    # the associated data: a sealed secret opens only for its own care manager and purpose
    return f"{kind}:{int(care_manager_id)}"


def seal_totp_secret(keyring: Keyring | None, care_manager_id: int, secret: str) -> str:
    """`secret` sealed for storage: 'sealed:v1:<key id>:<base64 of nonce, ciphertext, tag>'."""
    if keyring is None:
        raise DataKeyMissing("ANBU_DATA_KEY is not set: TOTP secrets are sealed with it")
    sealed = keyring.seal(secret, _sealed_field("totp_secret", care_manager_id))
    return f"{_SEALED_PREFIX}{sealed.key_id}:{base64.urlsafe_b64encode(sealed.blob).decode()}"


def open_totp_secret(keyring: Keyring | None, care_manager_id: int, stored: str) -> str:
    """The base32 secret of a stored value; a value stored before sealing is read as it is
    (until `anbu keys rotate` seals it). DataKeyError when no configured key opens it."""
    return _open(keyring, "totp_secret", care_manager_id, stored)


def _open(keyring: Keyring | None, kind: str, care_manager_id: int, stored: str) -> str:
    if not stored.startswith(_SEALED_PREFIX):
        return stored
    if keyring is None:
        raise DataKeyMissing("ANBU_DATA_KEY is not set: TOTP secrets are sealed with it")
    key_id, _, blob = stored.removeprefix(_SEALED_PREFIX).partition(":")
    return keyring.open(
        base64.urlsafe_b64decode(blob), key_id, _sealed_field(kind, care_manager_id)
    )


def set_totp_secret(
    conn: psycopg.Connection[Any],
    care_manager_id: int,
    secret: str | None,
    step: int = 0,
    keyring: Keyring | None = None,
) -> int:
    """Enrol (a base32 secret, confirmed with the code of `step`, stored sealed under the
    keyring) or remove (None) a TOTP authenticator; ends every other session. The new session
    generation."""
    stored = seal_totp_secret(keyring, care_manager_id, secret) if secret else None
    row = conn.execute(
        """UPDATE anbu.care_manager
           SET totp_secret = %s, totp_last_step = %s,
               session_generation = session_generation + 1
           WHERE id = %s AND active RETURNING session_generation""",
        (stored, step, care_manager_id),
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


# -- a TOTP enrolment under way: the new secret stays in the database, sealed -----------------


def _ref_hash(reference: str) -> str:
    return hashlib.sha256(reference.encode("utf-8")).hexdigest()


def start_totp_enrolment(
    conn: psycopg.Connection[Any],
    keyring: Keyring | None,
    care_manager_id: int,
    secret: str,
    now: datetime,
) -> str:
    """Keep `secret` (sealed) until its first code confirms it or it expires; the random
    reference the session holds instead of the secret. An earlier enrolment of theirs ends."""
    reference = secrets.token_urlsafe(32)
    sealed = _seal_pending(keyring, care_manager_id, secret)
    conn.execute("DELETE FROM anbu.totp_enrolment WHERE expires_at <= %s", (now,))
    conn.execute("DELETE FROM anbu.totp_enrolment WHERE care_manager_id = %s", (care_manager_id,))
    conn.execute(
        """INSERT INTO anbu.totp_enrolment (ref_hash, care_manager_id, secret_sealed, expires_at)
           VALUES (%s, %s, %s, %s)""",
        (_ref_hash(reference), care_manager_id, sealed, now + TOTP_ENROLMENT_LIFETIME),
    )
    return reference


def _seal_pending(keyring: Keyring | None, care_manager_id: int, secret: str) -> str:
    if keyring is None:
        raise DataKeyMissing("ANBU_DATA_KEY is not set: TOTP secrets are sealed with it")
    sealed = keyring.seal(secret, _sealed_field("totp_enrolment", care_manager_id))
    return f"{_SEALED_PREFIX}{sealed.key_id}:{base64.urlsafe_b64encode(sealed.blob).decode()}"


def pending_totp_secret(
    conn: psycopg.Connection[Any],
    keyring: Keyring | None,
    care_manager_id: int,
    reference: object,
    now: datetime,
) -> str | None:
    """The secret of this care manager's enrolment under way with this reference, if fresh."""
    if not isinstance(reference, str) or not reference:
        return None
    row = conn.execute(
        """SELECT secret_sealed FROM anbu.totp_enrolment
           WHERE ref_hash = %s AND care_manager_id = %s AND expires_at > %s""",
        (_ref_hash(reference), care_manager_id, now),
    ).fetchone()
    return _open(keyring, "totp_enrolment", care_manager_id, row[0]) if row else None


def end_totp_enrolment(conn: psycopg.Connection[Any], care_manager_id: int) -> None:
    conn.execute("DELETE FROM anbu.totp_enrolment WHERE care_manager_id = %s", (care_manager_id,))


def rotate_totp_secrets(conn: psycopg.Connection[Any], keyring: Keyring) -> int:
    """Re-seal under the current key every TOTP secret under another key or still in plain
    text; enrolments under way under another key are dropped (they last minutes). How many
    secrets were re-sealed."""
    current = f"{_SEALED_PREFIX}{keyring.current_id}:%"
    with conn.transaction():
        rows = conn.execute(
            """SELECT id, totp_secret FROM anbu.care_manager
               WHERE totp_secret IS NOT NULL AND totp_secret NOT LIKE %s
               ORDER BY id FOR UPDATE""",
            (current,),
        ).fetchall()
        for care_manager_id, stored in rows:
            secret = open_totp_secret(keyring, care_manager_id, stored)
            conn.execute(
                "UPDATE anbu.care_manager SET totp_secret = %s WHERE id = %s",
                (seal_totp_secret(keyring, care_manager_id, secret), care_manager_id),
            )
        conn.execute("DELETE FROM anbu.totp_enrolment WHERE secret_sealed NOT LIKE %s", (current,))
    if rows:
        log.info("TOTP secrets re-sealed", extra={"care_managers": len(rows)})
    return len(rows)
