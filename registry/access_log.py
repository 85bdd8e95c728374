"""Who looked at whom: the append-only `anbu.access_log`, its only writer and its reader.

A row is one read of a resident's card, notes or calls by a person (a care manager's session or
token) or by a named actor (`cli:<os user>` exporting notes): who, when (the database's clock),
which resident and which view and field classes, from which request and address. Rows carry ids
and classes only, never a name or a value. Supervisors list their district's rows, newest first,
paged by a keyset cursor (the last id seen).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg.rows import dict_row

VIEWS = ("card", "activity", "notes", "alert", "export")
SUPERVISING_ROLES = ("supervisor", "admin")
PAGE_MAX = 200


@dataclass(frozen=True, slots=True)
class Reader:
    """Who reads and from where: a care manager (id) or a named actor; request id, address."""

    care_manager_id: int | None = None
    actor: str | None = None
    request_id: str | None = None
    client: str | None = None

    def __post_init__(self) -> None:
        if self.care_manager_id is None and not self.actor:
            raise ValueError("a reader is a care manager or a named actor")


def record_access(
    conn: psycopg.Connection[Any],
    reader: Reader,
    resident_id: int,
    view: str,
    fields: Sequence[str] = (),
) -> None:
    """One read of one resident, in the caller's transaction (so with the read itself)."""
    record_accesses(conn, reader, [resident_id], view, fields)


def record_accesses(
    conn: psycopg.Connection[Any],
    reader: Reader,
    resident_ids: Iterable[int],
    view: str,
    fields: Sequence[str] = (),
) -> int:
    """One row per resident read at once (an export); the resident's dong is taken as it is now.
    Returns the rows written."""
    if view not in VIEWS:
        raise ValueError(f"unknown view {view!r}; expected one of {VIEWS}")
    cur = conn.execute(
        """INSERT INTO anbu.access_log (care_manager_id, actor, resident_id, dong_code, view,
                                        fields, request_id, client)
           SELECT %s, %s, r.id, r.dong_code, %s, %s, %s, %s
             FROM anbu.resident r WHERE r.id = ANY(%s) ORDER BY r.id""",
        (
            reader.care_manager_id, reader.actor, view, list(fields), reader.request_id,
            reader.client, list(resident_ids),
        ),
    )  # fmt: skip
    return cur.rowcount


@dataclass(frozen=True, slots=True)
class AccessRow:
    """One recorded read, as a supervisor sees it (the reader by username, the resident by
    home: no resident's name)."""

    id: int
    at: datetime
    care_manager_id: int | None
    care_manager_username: str | None
    service: bool | None  # the reader is a service account (a city system), not a person
    actor: str | None
    resident_id: int
    home: str | None
    dong_code: str
    view: str
    fields: tuple[str, ...]
    request_id: str | None
    client: str | None


@dataclass(frozen=True, slots=True)
class AccessPage:
    rows: list[AccessRow]
    next_before: int | None  # pass as `before` for the next (older) page; None: no more


def supervised_district(conn: psycopg.Connection[Any], care_manager_id: int) -> str | None:
    """The district an active supervisor or admin oversees (their dong's); None otherwise."""
    row = conn.execute(
        """SELECT d.district FROM anbu.care_manager m JOIN anbu.dong d ON d.code = m.dong_code
            WHERE m.id = %s AND m.active AND m.role = ANY(%s)""",
        (care_manager_id, list(SUPERVISING_ROLES)),
    ).fetchone()
    return str(row[0]) if row else None


def list_access(
    conn: psycopg.Connection[Any],
    district: str,
    *,
    resident_id: int | None = None,
    care_manager_id: int | None = None,
    before: int | None = None,
    limit: int = 50,
) -> AccessPage:
    """The district's recorded reads, newest first, optionally of one resident or by one care
    manager; `before` is the cursor of the previous page."""
    limit = max(1, min(limit, PAGE_MAX))
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(
            # a service account by the name its admin gave it (its username is a random one)
            """SELECT l.id, l.at, l.care_manager_id,
                      CASE WHEN m.role = 'service' THEN m.display_name ELSE m.username END
                        AS care_manager_username, m.role = 'service' AS service,
                      l.actor, l.resident_id, r.home, l.dong_code, l.view, l.fields,
                      l.request_id, l.client
                 FROM anbu.access_log l
                 LEFT JOIN anbu.care_manager m ON m.id = l.care_manager_id
                 LEFT JOIN anbu.resident r ON r.id = l.resident_id
                WHERE l.dong_code IN (SELECT code FROM anbu.dong WHERE district = %(district)s)
                  AND (%(resident)s::bigint IS NULL OR l.resident_id = %(resident)s)
                  AND (%(manager)s::bigint IS NULL OR l.care_manager_id = %(manager)s)
                  AND (%(before)s::bigint IS NULL OR l.id < %(before)s)
                ORDER BY l.id DESC LIMIT %(limit)s""",
            {
                "district": district, "resident": resident_id, "manager": care_manager_id,
                "before": before, "limit": limit + 1,
            },
        ).fetchall()  # fmt: skip
    more = len(rows) > limit
    found = [AccessRow(**{**r, "fields": tuple(r["fields"])}) for r in rows[:limit]]
    return AccessPage(found, found[-1].id if more else None)
