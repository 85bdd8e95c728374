"""Read side of the residents' care settings, always scoped to one dong; no phone, no notes."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, time
from typing import Any

import psycopg
from psycopg.rows import dict_row

from anbu.registry import ResidentNotFound
from detectors.sweep import SUPPRESSING_STATUSES

# Never phone or notes: what is not selected cannot leak.
_SELECT = """
    SELECT id, home, display_name, dong_code, status, status_until, quiet_start, quiet_end,
           watch_h_max::numeric::float8 AS watch_h_max,
           warning_h_max::numeric::float8 AS warning_h_max,
           critical_h_max::numeric::float8 AS critical_h_max
    FROM anbu.resident
"""


@dataclass(frozen=True, slots=True)
class ResidentView:
    """A resident as their dong's care manager sees them."""

    id: int
    home: str
    display_name: str
    dong_code: str
    status: str
    status_until: datetime | None
    quiet_start: time | None
    quiet_end: time | None
    watch_h_max: float | None
    warning_h_max: float | None
    critical_h_max: float | None

    def suppresses_inactivity(self, now: datetime) -> bool:
        """Away or in hospital with an end date still ahead: the sweep raises no inactivity."""
        return (
            self.status in SUPPRESSING_STATUSES
            and self.status_until is not None
            and self.status_until > now
        )


def list_residents(conn: psycopg.Connection[Any], dong_code: str) -> list[ResidentView]:
    """Residents of `dong_code`, ended ones last, by home."""
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(
            f"{_SELECT} WHERE dong_code = %s ORDER BY (status = 'ended'), home", (dong_code,)
        ).fetchall()
    return [ResidentView(**row) for row in rows]


def get_resident(conn: psycopg.Connection[Any], resident_id: int, dong_code: str) -> ResidentView:
    """One resident of `dong_code`; ResidentNotFound for any other dong."""
    with conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute(
            f"{_SELECT} WHERE id = %s AND dong_code = %s", (resident_id, dong_code)
        ).fetchone()
    if row is None:
        raise ResidentNotFound(resident_id)
    return ResidentView(**row)
