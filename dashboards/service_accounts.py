"""Service accounts (issue 22): machine credentials for the city's systems.

A district admin makes one with a name, scopes (`SCOPES`) and the dongs of the district it may
see; its bearer token (`anbu_sa_<id>_<secret>`) is answered once and only its SHA-256 kept.
The account acts through a principal row of anbu.care_manager (role `service`, never active:
migration 0080), so what it writes is recorded under that id and what it reads of a resident
goes to the access log under it, as for a person. A scope grants API actions
(dashboards.authz.SCOPE_ACTIONS), nothing else: no page, no care notes, no resident card.
Revoking is at once and for good; the row stays. Use moves `last_used_at` (at most once a
minute; `uses` counts the minutes it was used in). Logs carry account ids only, never a token.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg

from dashboards.auth import CareManager
from registry import hash_password

log = logging.getLogger(__name__)

SCOPES = ("alerts:read", "alerts:write", "residents:read", "residents:write", "events:read")
TOKEN_PREFIX = "anbu_sa_"
_TOKEN = re.compile(r"anbu_sa_([1-9][0-9]{0,17})_([A-Za-z0-9_-]{43})")
NAME_MAX = 100


class ScopesRefused(ValueError):
    """A scope anbu does not have, or none."""


class DongsRefused(ValueError):
    """A dong outside the admin's district, or none."""


class AccountNotFound(LookupError):
    """No such account in the admin's district."""


@dataclass(frozen=True, slots=True)
class ServiceAccount:
    id: int
    name: str
    district: str
    scopes: tuple[str, ...]
    dongs: tuple[str, ...]
    created_by: int
    created_at: datetime
    revoked_by: int | None
    revoked_at: datetime | None
    last_used_at: datetime | None
    uses: int


_COLUMNS = """s.care_manager_id, s.name, s.district, s.scopes, s.dongs, s.created_by,
              s.created_at, s.revoked_by, s.revoked_at, s.last_used_at, s.uses"""


def _account(row: tuple[Any, ...]) -> ServiceAccount:
    return ServiceAccount(
        int(row[0]), row[1], row[2], tuple(row[3]), tuple(row[4]), int(row[5]), row[6],
        None if row[7] is None else int(row[7]), row[8], row[9], int(row[10]),
    )  # fmt: skip


def _digest(secret: str) -> bytes:
    return hashlib.sha256(secret.encode()).digest()


def create(
    conn: psycopg.Connection[Any], *, name: str, scopes: list[str], dongs: list[str],
    district: str, district_dongs: tuple[str, ...], by: int, now: datetime,
) -> tuple[ServiceAccount, str]:  # fmt: skip
    """Make an account and its principal; returns it and its token (shown once)."""
    wanted = sorted(set(scopes))
    if not wanted or any(s not in SCOPES for s in wanted):
        raise ScopesRefused(scopes)
    chosen = sorted(set(dongs))
    if not chosen or any(d not in district_dongs for d in chosen):
        raise DongsRefused(dongs)
    secret = secrets.token_urlsafe(32)  # 43 characters
    row = conn.execute(
        """INSERT INTO anbu.care_manager
               (username, dong_code, display_name, phone, password_hash, role, active)
           VALUES (%s, %s, %s, '', %s, 'service', false) RETURNING id""",
        # a password nobody knows: the row is never active, and this is a second lock
        (f"svc.{secrets.token_hex(8)}", chosen[0], name, hash_password(secrets.token_hex(32))),
    ).fetchone()
    assert row is not None
    account_id = int(row[0])
    conn.execute(
        """INSERT INTO anbu.service_account (care_manager_id, name, district, scopes, dongs,
               token_hash, created_by, created_at)
           VALUES (%s, %s, %s, %s, %s, %s, %s, %s)""",
        (account_id, name, district, wanted, chosen, _digest(secret), by, now),
    )
    return get(conn, district, account_id), f"{TOKEN_PREFIX}{account_id}_{secret}"


def get(conn: psycopg.Connection[Any], district: str, account_id: int) -> ServiceAccount:
    row = conn.execute(
        f"SELECT {_COLUMNS} FROM anbu.service_account s"  # nosec B608: constant columns
        " WHERE s.district = %s AND s.care_manager_id = %s",
        (district, account_id),
    ).fetchone()
    if row is None:
        raise AccountNotFound(account_id)
    return _account(row)


def page(
    conn: psycopg.Connection[Any], district: str, limit: int, after: tuple[Any, ...] | None
) -> tuple[list[ServiceAccount], tuple[Any, ...] | None]:
    """The district's accounts, newest first (revoked ones too), a page at a time."""
    last = after[0] if after else 2**63 - 1
    rows = conn.execute(
        f"SELECT {_COLUMNS} FROM anbu.service_account s"  # nosec B608: constant columns
        " WHERE s.district = %s AND s.care_manager_id < %s"
        " ORDER BY s.care_manager_id DESC LIMIT %s",
        (district, last, limit + 1),
    ).fetchall()
    found = [_account(r) for r in rows[:limit]]
    return found, (found[-1].id,) if len(rows) > limit else None


def revoke(
    conn: psycopg.Connection[Any], district: str, account_id: int, by: int, now: datetime
) -> ServiceAccount:
    """Revoke an account at once (again: as it was); its token never works again."""
    conn.execute(
        """UPDATE anbu.service_account SET revoked_at = %s, revoked_by = %s
            WHERE district = %s AND care_manager_id = %s AND revoked_at IS NULL""",
        (now, by, district, account_id),
    )
    return get(conn, district, account_id)


def names(conn: psycopg.Connection[Any], actors: list[str]) -> dict[int, str]:
    """The service accounts among `actors` ('care_manager:<id>' strings, as alert events and
    changes record who acted): id -> name (i18n.actor_label shows them as systems)."""
    ids = sorted({int(i) for a in actors for r, _, i in [a.partition(":")]
                  if r == "care_manager" and i.isdigit() and len(i) < 19})  # fmt: skip
    if not ids:
        return {}
    rows = conn.execute(
        "SELECT care_manager_id, name FROM anbu.service_account WHERE care_manager_id = ANY(%s)",
        (ids,),
    ).fetchall()
    return {int(i): str(n) for i, n in rows}


def principal(conn: psycopg.Connection[Any], token: str) -> CareManager | None:
    """The acting principal of a valid, unrevoked token, or None; notes its use."""
    found = _TOKEN.fullmatch(token)
    if found is None:
        return None
    account_id, secret = int(found.group(1)), found.group(2)
    row = conn.execute(
        """SELECT s.name, s.scopes, s.dongs, s.token_hash, s.district, m.username, d.name,
                  s.last_used_at IS NULL
                  OR s.last_used_at <= statement_timestamp() - interval '1 minute'
             FROM anbu.service_account s
             JOIN anbu.care_manager m ON m.id = s.care_manager_id AND m.role = 'service'
             JOIN anbu.dong d ON d.code = s.dongs[1]
            WHERE s.care_manager_id = %s AND s.revoked_at IS NULL""",
        (account_id,),
    ).fetchone()
    if row is None or not hmac.compare_digest(bytes(row[3]), _digest(secret)):
        return None
    if row[7]:  # noted once a minute, by the database's clock; never at the read's expense
        try:
            with conn.transaction():  # a savepoint: a refusal leaves the request's reads be
                conn.execute(
                    """UPDATE anbu.service_account
                          SET last_used_at = statement_timestamp(), uses = uses + 1
                        WHERE care_manager_id = %s AND (last_used_at IS NULL
                              OR last_used_at <= statement_timestamp() - interval '1 minute')""",
                    (account_id,),
                )
        except psycopg.Error:  # a read-only server, a lock or statement timeout
            log.warning("service account use not noted", extra={"service_account_id": account_id})
    dongs = tuple(row[2])
    return CareManager(
        id=account_id, username=row[5], display_name=row[0], dong_code=dongs[0],
        dong_name=row[6], role="service", district=row[4], district_dongs=dongs,
        scopes=frozenset(row[1]),
    )  # fmt: skip
