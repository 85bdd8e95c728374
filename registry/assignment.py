"""Who looks after a resident: a supervisor hands a resident to another care manager of the
district. Audited in anbu.resident_changes (field 'care_manager_id', ids only)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime
from typing import Any, NamedTuple

import psycopg

from registry.changes import InvalidChange, ResidentEnded, ResidentNotFound

log = logging.getLogger(__name__)

ASSIGNABLE_ROLES = ("manager", "supervisor", "admin")  # a technician looks after no resident


class Assignee(NamedTuple):
    """A care manager a resident or an alert can be handed to, as a picker shows them."""

    id: int
    display_name: str
    dong_code: str
    dong_name: str


def assignable(conn: psycopg.Connection[Any], dongs: Sequence[str]) -> list[Assignee]:
    """The active care managers of `dongs` who look after residents (never a technician), by
    dong name and their name."""
    rows = conn.execute(
        """SELECT m.id, m.display_name, m.dong_code, d.name FROM anbu.care_manager m
             JOIN anbu.dong d ON d.code = m.dong_code
            WHERE m.active AND m.role = ANY(%s) AND m.dong_code = ANY(%s)
            ORDER BY d.name, m.display_name, m.id""",
        (list(ASSIGNABLE_ROLES), list(dongs)),
    ).fetchall()
    return [Assignee(int(r[0]), str(r[1]), str(r[2]), str(r[3])) for r in rows]


def care_manager_of(conn: psycopg.Connection[Any], resident_id: int) -> int | None:
    """The resident's own care manager; None when the dong's care managers share them."""
    row = conn.execute(
        "SELECT care_manager_id FROM anbu.resident WHERE id = %s", (resident_id,)
    ).fetchone()
    return None if row is None or row[0] is None else int(row[0])


def check_assignee(
    conn: psycopg.Connection[Any], dong: str, dongs: Sequence[str], manager_id: int
) -> None:
    """`manager_id` looks after residents of `dong` (the resident's own): active, not a
    technician, of that dong. InvalidChange 'assignee_not_in_dong' for one of another dong of
    `dongs`, 'assignee_unknown' for anyone else."""
    if manager_id in {m[0] for m in assignable(conn, [dong])}:
        return
    if manager_id in {m[0] for m in assignable(conn, dongs)}:
        raise InvalidChange("assignee_not_in_dong", "not a care manager of the resident's dong")
    raise InvalidChange("assignee_unknown", "no such care manager here")


def reassign_resident(
    conn: psycopg.Connection[Any],
    resident_id: int,
    dongs: Sequence[str],
    to_manager_id: int,
    by_manager_id: int,
    at: datetime,
) -> bool:
    """Make `to_manager_id` the resident's care manager, in the caller's transaction; the
    resident must be of `dongs` and the care manager of the resident's own dong.
    ResidentNotFound outside them, ResidentEnded after the end of service, InvalidChange for a
    care manager who is not assignable there (check_assignee). False when nothing changed."""
    row = conn.execute(
        """SELECT status, care_manager_id, dong_code FROM anbu.resident
            WHERE id = %s AND dong_code = ANY(%s) FOR NO KEY UPDATE""",
        (resident_id, list(dongs)),
    ).fetchone()
    if row is None:
        raise ResidentNotFound(resident_id)
    if row[0] == "ended":
        raise ResidentEnded("resident_ended", "this resident's service has ended")
    check_assignee(conn, str(row[2]), dongs, to_manager_id)
    if row[1] == to_manager_id:
        return False
    conn.execute(
        "UPDATE anbu.resident SET care_manager_id = %s WHERE id = %s", (to_manager_id, resident_id)
    )
    conn.execute(
        """INSERT INTO anbu.resident_changes
               (resident_id, care_manager_id, at, field, old_value, new_value)
           VALUES (%s, %s, %s, 'care_manager_id', %s, %s)""",
        (resident_id, by_manager_id, at, None if row[1] is None else str(row[1]),
         str(to_manager_id)),
    )  # fmt: skip
    log.info(
        "resident reassigned",
        extra={"resident_id": resident_id, "care_manager_id": by_manager_id,
               "assigned_to": to_manager_id},
    )  # fmt: skip
    return True
