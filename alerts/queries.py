"""Read-side queries for care managers: always scoped to a set of dongs (one care manager's
dong, or a supervisor's district: dashboards.authz decides which)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg.rows import dict_row

from alerts.models import AlertDetail, AlertEventView, AlertNotFound, AlertView, CallView
from alerts.routing import CARE
from core.db import keyset_page, keyset_params
from core.domain import AlertState
from detectors.health import UNKNOWN_STATUS

_SELECT = """
    SELECT a.id, a.resident_id, r.home, r.dong_code, a.kind, a.severity, a.state, a.opened_at,
           a.updated_at, a.call_attempts, f.reason_ko, f.reason_en, a.acknowledged_at,
           a.acknowledged_by, a.resolved_at, a.resolved_by, a.outcome
    FROM anbu.alerts a
    JOIN anbu.resident r ON r.id = a.resident_id
    LEFT JOIN anbu.findings f ON f.id = a.finding_id
"""


_SELECT_VERSIONED = _SELECT.replace(
    "SELECT a.id,",
    "SELECT (SELECT coalesce(max(e.id), 0) FROM anbu.alert_events e WHERE e.alert_id = a.id)"
    " AS version, a.id,",
    1,
)

Dongs = str | Sequence[str]  # one dong, or the dongs an actor may see


def dong_list(dongs: Dongs) -> list[str]:
    """`dongs` as a list for `= ANY(%s)`."""
    return [dongs] if isinstance(dongs, str) else list(dongs)


def _view(row: dict[str, Any]) -> AlertView:
    return AlertView(**{**row, "state": AlertState(row["state"])})


_RANK = "CASE a.severity WHEN 'critical' THEN 0 WHEN 'warning' THEN 1 ELSE 2 END"
_SEVERITY_RANK = {"critical": 0, "warning": 1}  # any other severity: 2


@dataclass(frozen=True, slots=True)
class AlertFilter:
    """Which alerts a list shows. `states` empty: every state but resolved, or every state
    with `include_resolved`."""

    states: tuple[str, ...] = ()
    include_resolved: bool = False
    severities: tuple[str, ...] = ()
    kinds: tuple[str, ...] = ()
    resident_id: int | None = None
    opened_since: datetime | None = None
    opened_until: datetime | None = None
    updated_since: datetime | None = None
    queue: str | None = CARE  # the care queue's alerts (None: the technician's too)
    unobserved_apart: bool = False  # the care queue's page: see UNOBSERVED_APART


# The care queue's page shows a home that cannot be observed once, as such
# (dashboards.unobserved), with its unknown_status alert's state: that alert is left out of the
# rows only while its check-in calls run before anyone is told (open, calling) and its home is
# on that list; escalated or acknowledged, or its home observed again, it is a row like any
# other, counted and acknowledged there.
UNOBSERVED_APART = """NOT (a.kind = 'unknown_status' AND a.state IN ('open', 'calling')
     AND EXISTS (SELECT 1 FROM anbu.home_unobserved u WHERE u.resident_id = a.resident_id))"""
assert UNKNOWN_STATUS == "unknown_status"  # the kind written out above


UNACKNOWLEDGED = ("open", "calling", "escalated")  # nobody has said "I'm on it" yet


@dataclass(frozen=True, slots=True)
class AlertPage:
    """One page of a list; `next_after` is the last row's place in the order when more follow
    (the keyset the next page starts after), else None."""

    alerts: list[AlertView]
    next_after: tuple[Any, ...] | None
    total: int | None = None
    waiting: int | None = None  # of `total`, those nobody has acknowledged yet (UNACKNOWLEDGED)


def page_alerts(
    conn: psycopg.Connection[Any],
    dongs: Dongs,
    wanted: AlertFilter = AlertFilter(),
    *,
    limit: int = 50,
    after: Sequence[Any] | None = None,
    by_severity: bool = False,
    with_total: bool = False,
) -> AlertPage:
    """Alerts of residents in `dongs`, a page at a time, never silently cut: newest opened
    first (a stable order: opened_at and the id never change), or `by_severity` (resolved last,
    most severe, then newest: the care queue; an alert raised while someone pages moves to an
    earlier page). `after` is a previous page's next_after, in the same order."""
    where = ["r.dong_code = ANY(%(dongs)s)"]
    params: dict[str, Any] = {"dongs": dong_list(dongs), "n": limit + 1}
    if wanted.states:
        where.append("a.state = ANY(%(states)s)")
        params["states"] = list(wanted.states)
    elif not wanted.include_resolved:
        where.append("a.state <> 'resolved'")
    if wanted.queue is not None:
        where.append("a.queue = %(queue)s")
        params["queue"] = wanted.queue
    if wanted.unobserved_apart:
        where.append(UNOBSERVED_APART)
    for column, values in (("severity", wanted.severities), ("kind", wanted.kinds)):
        if values:
            where.append(f"a.{column} = ANY(%({column})s)")
            params[column] = list(values)
    for clause, name, value in (
        ("a.resident_id = %(resident)s", "resident", wanted.resident_id),
        ("a.opened_at >= %(opened_since)s", "opened_since", wanted.opened_since),
        ("a.opened_at < %(opened_until)s", "opened_until", wanted.opened_until),
        ("a.updated_at >= %(updated_since)s", "updated_since", wanted.updated_since),
    ):
        if value is not None:
            where.append(clause)
            params[name] = value
    filtered = " AND ".join(where)
    if by_severity:
        order = f"ORDER BY (a.state = 'resolved'), {_RANK}, a.opened_at DESC, a.id DESC"
        head = f"((a.state = 'resolved')::int, {_RANK})"
        seek = (f"({head} > (%(k0)s, %(k1)s) OR ({head} = (%(k0)s, %(k1)s)"
                " AND (a.opened_at, a.id) < (%(k2)s, %(k3)s)))")  # fmt: skip
    else:
        order = "ORDER BY a.opened_at DESC, a.id DESC"
        seek = "(a.opened_at, a.id) < (%(k0)s, %(k1)s)"
    keyed = filtered
    if after is not None:
        keyed += f" AND {seek}"
        params.update(keyset_params(after))
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(f"{_SELECT} WHERE {keyed} {order} LIMIT %(n)s", params).fetchall()
        total = waiting = None
        if with_total:
            count = (
                "SELECT count(*) AS n, count(*) FILTER (WHERE a.state = ANY(%(waiting)s)) AS w"
                " FROM anbu.alerts a JOIN anbu.resident r ON r.id = a.resident_id"
            )
            counted = cur.execute(
                f"{count} WHERE {filtered}",  # nosec B608  # constant clauses; values bound
                {**params, "waiting": list(UNACKNOWLEDGED)},
            ).fetchone()
            total = int(counted["n"]) if counted else 0
            waiting = int(counted["w"]) if counted else 0

    def place(last: AlertView) -> tuple[Any, ...]:
        if not by_severity:
            return (last.opened_at, last.id)
        resolved = int(last.state is AlertState.RESOLVED)
        return (resolved, _SEVERITY_RANK.get(last.severity, 2), last.opened_at, last.id)

    views, next_after = keyset_page([_view(r) for r in rows], limit, place)
    return AlertPage(views, next_after, total, waiting)


def alert_version(conn: psycopg.Connection[Any], alert_id: int) -> int:
    """The alert's version: the id of its last event. Every change its timeline shows (a
    transition, a severity raised, a finding joined, a reassignment...) appends an event, so
    the version moves with each and never goes back."""
    row = conn.execute(
        "SELECT coalesce(max(id), 0) FROM anbu.alert_events WHERE alert_id = %s", (alert_id,)
    ).fetchone()
    return int(row[0]) if row else 0


def assigned_to(conn: psycopg.Connection[Any], alert_id: int) -> int | None:
    """The care manager the alert was handed to; None while it is the dong's."""
    row = conn.execute("SELECT assigned_to FROM anbu.alerts WHERE id = %s", (alert_id,)).fetchone()
    return None if row is None or row[0] is None else int(row[0])


def get_alert(conn: psycopg.Connection[Any], alert_id: int, dongs: Dongs) -> AlertDetail:
    """One alert of `dongs` with its audit trail; AlertNotFound for any other dong."""
    with conn.cursor(row_factory=dict_row) as cur:
        # the version in the same statement as the severity and state shown: one snapshot, so
        # a form never carries a version newer than what its page said
        row = cur.execute(
            f"{_SELECT_VERSIONED} WHERE a.id = %s AND r.dong_code = ANY(%s)",
            (alert_id, dong_list(dongs)),
        ).fetchone()
        if row is None:
            raise AlertNotFound(alert_id)
        version = int(row.pop("version"))
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
        version=version,
        calls=[CallView(**c) for c in calls],
        notifications=int(sent["n"]) if sent else 0,
    )
