"""What care managers change on a resident: status, quiet hours and inactivity caps.

Each change is checked here (the rules are domain logic, not plumbing) and audited in
`anbu.resident_changes`, field by field, in the transaction that makes it.
"""

from __future__ import annotations

import logging
import math
from datetime import UTC, datetime, time, timedelta
from itertools import pairwise
from typing import Any

import psycopg
from psycopg import sql

from core.clock import SystemClock

log = logging.getLogger(__name__)

# -- care settings a care manager changes: status, quiet hours, inactivity caps -------------

SETTABLE_STATUSES = ("active", "away", "hospital")  # 'ended' is not a care manager's to set
STATUS_MAX_DAYS = 90  # an away or hospital stay ends by itself within this
QUIET_MAX_H = 12  # quiet hours hold non-critical calls: never most of the day
CAP_MIN_H, CAP_MAX_H = 1.0, 24.0  # the fixed 24 h ceiling applies whatever the caps say


class ResidentNotFound(LookupError):
    """No such resident in the care manager's dong (others' residents are invisible)."""


class InvalidChange(ValueError):
    """A change the registry refuses; `code` names the rule (the dashboards translate it)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


class ResidentEnded(InvalidChange):
    """The resident's service has ended: nothing of theirs is changed any more."""


def check_status(status: str, until: datetime | None, now: datetime) -> datetime | None:
    """The end date to store with `status` (None for active); InvalidChange if not allowed."""
    if status not in SETTABLE_STATUSES:
        raise InvalidChange("bad_status", f"status must be one of {', '.join(SETTABLE_STATUSES)}")
    if status == "active":
        if until is not None:
            raise InvalidChange("until_with_active", "an active resident has no end date")
        return None
    if until is None:
        raise InvalidChange("until_required", f"{status} needs an end date")
    if until.utcoffset() is None:
        raise InvalidChange("until_naive", "the end date needs a time zone")
    if until <= now:
        raise InvalidChange("until_past", "the end date must be in the future")
    if until > now + timedelta(days=STATUS_MAX_DAYS):
        raise InvalidChange(
            "until_too_far", f"the end date must be at most {STATUS_MAX_DAYS} days ahead"
        )
    return until.astimezone(UTC)


def check_quiet_hours(start: time | None, end: time | None) -> tuple[time | None, time | None]:
    """Local quiet hours to store (both or neither; to the minute; may wrap midnight)."""
    if start is None and end is None:
        return None, None
    if start is None or end is None:
        raise InvalidChange("quiet_pair", "quiet hours need both a start and an end, or neither")
    if start.tzinfo is not None or end.tzinfo is not None:
        raise InvalidChange("quiet_local", "quiet hours are local times, without a time zone")
    start, end = start.replace(second=0, microsecond=0), end.replace(second=0, microsecond=0)
    minutes = (end.hour * 60 + end.minute - start.hour * 60 - start.minute) % 1440
    if minutes == 0:
        raise InvalidChange("quiet_empty", "quiet hours cannot start and end at the same time")
    if minutes > QUIET_MAX_H * 60:
        raise InvalidChange("quiet_too_long", f"quiet hours may last at most {QUIET_MAX_H} hours")
    return start, end


def check_level_caps(
    watch_h: float | None, warning_h: float | None, critical_h: float | None
) -> tuple[float | None, float | None, float | None]:
    """Hours capping watch / warning / critical (None: no cap), to the hundredth of an hour."""
    for cap in (watch_h, warning_h, critical_h):
        if cap is not None and not (math.isfinite(cap) and CAP_MIN_H <= cap <= CAP_MAX_H):
            raise InvalidChange(
                "cap_range", f"each cap must be between {CAP_MIN_H:g} and {CAP_MAX_H:g} hours"
            )
    w, warn, crit = (
        None if cap is None else round(float(cap), 2) for cap in (watch_h, warning_h, critical_h)
    )
    given = [cap for cap in (w, warn, crit) if cap is not None]
    if any(lower > higher for lower, higher in pairwise(given)):
        raise InvalidChange("caps_not_rising", "caps must rise: watch <= warning <= critical")
    return w, warn, crit


def set_status(
    conn: psycopg.Connection[Any],
    resident_id: int,
    status: str,
    until: datetime | None,
    manager_id: int,
    *,
    now: datetime | None = None,
) -> list[str]:
    """Set active, or away / hospital until a future date; returns the fields that changed."""
    at = now if now is not None else SystemClock().now()
    stored_until = check_status(status, until, at)
    return _change(conn, resident_id, manager_id, at, status=status, status_until=stored_until)


def set_quiet_hours(
    conn: psycopg.Connection[Any],
    resident_id: int,
    start: time | None,
    end: time | None,
    manager_id: int,
    *,
    now: datetime | None = None,
) -> list[str]:
    """Set (or clear, with None) the resident's local quiet hours; returns the fields changed."""
    quiet_start, quiet_end = check_quiet_hours(start, end)
    at = now if now is not None else SystemClock().now()
    return _change(conn, resident_id, manager_id, at, quiet_start=quiet_start, quiet_end=quiet_end)


def set_level_caps(
    conn: psycopg.Connection[Any],
    resident_id: int,
    watch_h_max: float | None,
    warning_h_max: float | None,
    critical_h_max: float | None,
    manager_id: int,
    *,
    now: datetime | None = None,
) -> list[str]:
    """Set the three inactivity caps together (None clears one); returns the fields changed."""
    w, warn, crit = check_level_caps(watch_h_max, warning_h_max, critical_h_max)
    at = now if now is not None else SystemClock().now()
    return _change(
        conn, resident_id, manager_id, at, watch_h_max=w, warning_h_max=warn, critical_h_max=crit
    )


_CARE_FIELDS = (
    "status", "status_until", "quiet_start", "quiet_end",
    "watch_h_max", "warning_h_max", "critical_h_max",
)  # fmt: skip
_LOCK_RESIDENT = """
SELECT r.status, r.status_until, r.quiet_start, r.quiet_end, r.watch_h_max::numeric::float8,
       r.warning_h_max::numeric::float8, r.critical_h_max::numeric::float8
  FROM anbu.resident r
  JOIN anbu.care_manager m ON m.active OR m.role = 'service'
  JOIN anbu.dong md ON md.code = m.dong_code
  JOIN anbu.dong rd ON rd.code = r.dong_code
 WHERE r.id = %s AND m.id = %s
   AND CASE WHEN m.role = 'service'  -- a service account: its dongs, while not revoked
            THEN EXISTS (SELECT 1 FROM anbu.service_account s
                          WHERE s.care_manager_id = m.id AND s.revoked_at IS NULL
                            AND r.dong_code = ANY(s.dongs))
            ELSE m.dong_code = r.dong_code  -- a care manager's own dong; a supervisor's district:
                 OR (m.role IN ('supervisor', 'admin') AND md.district = rd.district)
       END  -- dashboards.authz
   FOR NO KEY UPDATE OF r
"""


def _audit_text(value: object) -> str | None:
    """How a care setting is written in anbu.resident_changes."""
    if value is None:
        return None
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat()
    if isinstance(value, time):
        return value.strftime("%H:%M")
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def record_changes(
    conn: psycopg.Connection[Any],
    resident_id: int,
    at: datetime,
    rows: list[tuple[str, str | None, str | None, bool]],
    *,
    care_manager_id: int | None,
    actor: str | None = None,
) -> None:
    """Append audit rows (field, old, new, masked) by a care manager or an actor such as
    'cli:kim', in the caller's transaction. Personal values must come masked."""
    with conn.cursor() as cur:
        cur.executemany(
            """INSERT INTO anbu.resident_changes
                   (resident_id, care_manager_id, actor, at, field, old_value, new_value, masked)
               VALUES (%s, %s, %s, %s, %s, %s, %s, %s)""",
            [(resident_id, care_manager_id, actor, at, f, old, new, masked)
             for f, old, new, masked in rows],
        )  # fmt: skip


def _change(
    conn: psycopg.Connection[Any], resident_id: int, manager_id: int, at: datetime, **new: Any
) -> list[str]:
    """Write the care settings that differ, each with an audit row, in the caller's transaction.

    Only a resident of the care manager's own dong is found; others raise ResidentNotFound.
    """
    row = conn.execute(_LOCK_RESIDENT, (resident_id, manager_id)).fetchone()
    if row is None:
        raise ResidentNotFound(resident_id)
    old = dict(zip(_CARE_FIELDS, row, strict=True))
    if old["status"] == "ended":
        raise ResidentEnded("resident_ended", "this resident's service has ended")
    changed = [f for f in _CARE_FIELDS if f in new and _audit_text(old[f]) != _audit_text(new[f])]
    if not changed:
        return []
    assignments = sql.SQL(", ").join(
        sql.SQL("{} = %s").format(sql.Identifier(field)) for field in changed
    )
    conn.execute(
        sql.SQL("UPDATE anbu.resident SET {} WHERE id = %s").format(assignments),
        [*(new[field] for field in changed), resident_id],
    )
    with conn.cursor() as cur:
        cur.executemany(
            """INSERT INTO anbu.resident_changes
                   (resident_id, care_manager_id, at, field, old_value, new_value)
               VALUES (%s, %s, %s, %s, %s, %s)""",
            [
                (resident_id, manager_id, at, f, _audit_text(old[f]), _audit_text(new[f]))
                for f in changed
            ],
        )
    log.info(
        "resident care settings changed",
        extra={"resident_id": resident_id, "care_manager_id": manager_id, "fields": changed},
    )
    return changed
