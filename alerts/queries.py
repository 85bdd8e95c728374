"""Read-side queries for care managers: always scoped to a set of dongs (one care manager's
dong, or a supervisor's district: dashboards.authz decides which)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import psycopg
from psycopg.rows import dict_row

from alerts.models import AlertDetail, AlertEventView, AlertNotFound, AlertView, CallView
from core.domain import AlertState

_SELECT = """
    SELECT a.id, a.resident_id, r.home, r.dong_code, a.kind, a.severity, a.state, a.opened_at,
           a.updated_at, a.call_attempts, f.reason_ko, f.reason_en
    FROM anbu.alerts a
    JOIN anbu.resident r ON r.id = a.resident_id
    LEFT JOIN anbu.findings f ON f.id = a.finding_id
"""


Dongs = str | Sequence[str]  # one dong, or the dongs an actor may see


def dong_list(dongs: Dongs) -> list[str]:
    """`dongs` as a list for `= ANY(%s)`."""
    return [dongs] if isinstance(dongs, str) else list(dongs)


def _view(row: dict[str, Any]) -> AlertView:
    return AlertView(**{**row, "state": AlertState(row["state"])})


def list_alerts(
    conn: psycopg.Connection[Any], dongs: Dongs, include_resolved: bool = False, limit: int = 200
) -> list[AlertView]:
    """Alerts of residents in `dongs`, most severe and newest first."""
    where = "WHERE r.dong_code = ANY(%s)" + (
        "" if include_resolved else " AND a.state <> 'resolved'"
    )
    order = """ORDER BY (a.state = 'resolved'),
                 CASE a.severity WHEN 'critical' THEN 0 WHEN 'warning' THEN 1 ELSE 2 END,
                 a.opened_at DESC LIMIT %s"""
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(f"{_SELECT} {where} {order}", (dong_list(dongs), limit)).fetchall()
    return [_view(r) for r in rows]


def assigned_to(conn: psycopg.Connection[Any], alert_id: int) -> int | None:
    """The care manager the alert was handed to; None while it is the dong's."""
    row = conn.execute("SELECT assigned_to FROM anbu.alerts WHERE id = %s", (alert_id,)).fetchone()
    return None if row is None or row[0] is None else int(row[0])


def get_alert(conn: psycopg.Connection[Any], alert_id: int, dongs: Dongs) -> AlertDetail:
    """One alert of `dongs` with its audit trail; AlertNotFound for any other dong."""
    with conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute(
            f"{_SELECT} WHERE a.id = %s AND r.dong_code = ANY(%s)", (alert_id, dong_list(dongs))
        ).fetchone()
        if row is None:
            raise AlertNotFound(alert_id)
        name = cur.execute(
            "SELECT display_name FROM anbu.resident WHERE id = %s", (row["resident_id"],)
        ).fetchone()
        events = cur.execute(
            """SELECT at, actor, from_state, to_state, reason FROM anbu.alert_events
               WHERE alert_id = %s ORDER BY at, id""",
            (alert_id,),
        ).fetchall()
        calls = cur.execute(
            """SELECT id, created_at, status, outcome FROM anbu.calls
               WHERE alert_id = %s ORDER BY id""",
            (alert_id,),
        ).fetchall()
        sent = cur.execute(
            "SELECT count(*) AS n FROM anbu.notifications WHERE alert_id = %s", (alert_id,)
        ).fetchone()
    return AlertDetail(
        alert=_view(row),
        resident_name=str(name["display_name"]) if name else "",
        events=[AlertEventView(**e) for e in events],
        calls=[CallView(**c) for c in calls],
        notifications=int(sent["n"]) if sent else 0,
    )
