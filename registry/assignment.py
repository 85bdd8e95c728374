"""Who looks after a resident: a supervisor hands a resident to another care manager of the
district. Audited in anbu.resident_changes (field 'care_manager_id', ids only)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import psycopg

from registry.changes import InvalidChange, ResidentEnded, ResidentNotFound

log = logging.getLogger(__name__)

ASSIGNABLE_ROLES = ("manager", "supervisor", "admin")  # a technician looks after no resident


def assignable(conn: psycopg.Connection[Any], dongs: Sequence[str]) -> list[tuple[int, str, str]]:
    """(id, display name, dong code) of the active care managers of `dongs`, by dong and name."""
    rows = conn.execute(
        """SELECT id, display_name, dong_code FROM anbu.care_manager
            WHERE active AND role = ANY(%s) AND dong_code = ANY(%s)
            ORDER BY dong_code, display_name, id""",
        (list(ASSIGNABLE_ROLES), list(dongs)),
    ).fetchall()
    return [(int(r[0]), str(r[1]), str(r[2])) for r in rows]


def reassign_resident(
    conn: psycopg.Connection[Any],
    resident_id: int,
    dongs: Sequence[str],
    to_manager_id: int,
    by_manager_id: int,
    at: datetime,
) -> bool:
    """Make `to_manager_id` the resident's care manager, in the caller's transaction; both must
    be of `dongs`. ResidentNotFound outside them, ResidentEnded after the end of service,
    InvalidChange for a care manager who is not assignable there. False when nothing changed."""
    row = conn.execute(
        """SELECT status, care_manager_id FROM anbu.resident
            WHERE id = %s AND dong_code = ANY(%s) FOR NO KEY UPDATE""",
        (resident_id, list(dongs)),
    ).fetchone()
    if row is None:
        raise ResidentNotFound(resident_id)
    if row[0] == "ended":
        raise ResidentEnded("resident_ended", "this resident's service has ended")
    if to_manager_id not in {m[0] for m in assignable(conn, dongs)}:
        raise InvalidChange("assignee_unknown", "no such care manager here")
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
