"""The minute sweep: score every home's silence at once and record the findings that are new.

Reads `anbu.home_activity` (never raw readings) joined with `anbu.resident` and the home's
learned routine in `anbu.baselines` (per-slot levels; a home without one, or in its grace
period, is judged by the fixed rule). A silence that began with the entrance door (the door
is the latest activity, no motion after it) is an outing and raises no inactivity. A finding is new
when no finding of the same resident, kind and severity was raised at or after the home's last
activity, i.e. within the current silence. Sweeps are serialised by a transaction-level
advisory lock, and the insert re-checks inside the statement, so two sweeps running at once
never raise the same finding twice.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import numpy.typing as npt
import psycopg

from anbu.domain import Finding, Severity
from detectors.inactivity import (
    KIND,
    NO_SEVERITY,
    InactivityPolicy,
    score_inactivity,
    to_finding,
)
from detectors.levels import learned_levels, start_slots

SWEEP_LOCK = 7_470_302  # advisory lock key: one inactivity sweep at a time
SUPPRESSING_STATUSES = ("away", "hospital")


@dataclass(frozen=True, slots=True)
class NewFinding:
    """A finding the sweep has just stored, with its row id."""

    finding_id: int
    resident_id: int
    finding: Finding


_HOMES = """
SELECT r.id, r.home, r.status, r.status_until, a.last_activity_at, a.last_door_at,
       a.last_motion_at, b.watch_h, b.step_h, b.usual_h,
       r.watch_h_max, r.warning_h_max, r.critical_h_max, c.changed_at
  FROM anbu.home_activity a
  JOIN anbu.resident r ON r.id = a.resident_id
  LEFT JOIN anbu.baselines b ON b.resident_id = r.id AND NOT b.grace
  LEFT JOIN (SELECT resident_id, max(at) AS changed_at FROM anbu.resident_changes
              WHERE field = 'status' GROUP BY resident_id) c ON c.resident_id = r.id
 WHERE r.status <> 'ended'
"""
_SUPPRESSED = """
INSERT INTO anbu.suppressions
       (resident_id, kind, severity, silence_since, reached_at, status, status_until)
SELECT * FROM unnest(%s::bigint[], %s::text[], %s::text[], %s::timestamptz[],
                     %s::timestamptz[], %s::text[], %s::timestamptz[])
ON CONFLICT (resident_id, kind, severity, silence_since) DO NOTHING
"""
SLOTS = 48
NAN_ROW = [float("nan")] * SLOTS

_INSERT = """
INSERT INTO anbu.findings
       (resident_id, kind, severity, raised_at, reason_ko, reason_en, details)
SELECT n.resident_id, %(kind)s, n.severity, %(now)s, n.reason_ko, n.reason_en, n.details
  FROM unnest(%(resident_ids)s::bigint[], %(severities)s::text[], %(since)s::timestamptz[],
              %(reasons_ko)s::text[], %(reasons_en)s::text[], %(details)s::jsonb[])
       AS n(resident_id, severity, since, reason_ko, reason_en, details)
 WHERE NOT EXISTS (
       SELECT 1 FROM anbu.findings f
        WHERE f.resident_id = n.resident_id AND f.kind = %(kind)s
          AND f.severity = n.severity AND f.raised_at >= n.since)
ON CONFLICT (resident_id, kind, severity, raised_at) DO NOTHING
RETURNING id, resident_id, severity
"""


def silence_start(
    last_activity: datetime,
    status: str,
    status_until: datetime | None,
    now: datetime,
    status_changed: datetime | None = None,
) -> datetime | None:
    """When the silence that counts began; None while away/hospital suppresses inactivity.

    A status without an end date does not suppress (nothing may silence the sweep forever).
    Once an away or hospital stay has ended, the silence is counted from its end, not from the
    last activity before the resident left; a stay a care manager ended early (the status set
    back to active) counts from that change.
    """
    if status in SUPPRESSING_STATUSES and status_until is not None:
        if status_until > now:
            return None
        return max(last_activity, status_until)
    if status_changed is not None and status_changed <= now:
        return max(last_activity, status_changed)
    return last_activity


def _is_suppressed(status: str, status_until: datetime | None, now: datetime) -> bool:
    return status in SUPPRESSING_STATUSES and status_until is not None and status_until > now


def sweep(
    conn: psycopg.Connection[Any], now: datetime, policy: InactivityPolicy
) -> list[NewFinding]:
    """Score all homes at `now`; store and return only the findings new to their silence.

    Runs inside the caller's transaction (commit is the caller's, e.g. `db.connection()`).
    """
    conn.execute("SELECT pg_advisory_xact_lock(%s)", (SWEEP_LOCK,))
    ids: list[int] = []
    homes: list[str] = []
    since: list[datetime] = []
    watch: list[list[float]] = []
    step: list[list[float]] = []
    usual: list[list[float]] = []
    caps: list[tuple[float, float, float]] = []
    held: dict[int, tuple[str, datetime]] = {}  # row -> the away / hospital status holding it
    for row in conn.execute(_HOMES):
        resident_id, home, status, status_until, last_activity, door, motion = row[:7]
        if door is not None and door >= last_activity and (motion is None or motion < door):
            continue  # out: the door closed behind the resident (not_back: offline replay)
        start = silence_start(last_activity, status, status_until, now, row[13])
        if start is None:  # suppressed: scored all the same, to record what it held back
            held[len(ids)] = (str(status), status_until)
            start = last_activity
        ids.append(int(resident_id))
        homes.append(str(home))
        since.append(start)
        watch.append(_row(row[7]))
        step.append(_row(row[8]))
        usual.append(_row(row[9]))
        caps.append((_hours(row[10]), _hours(row[11]), _hours(row[12])))
    if not ids:
        return []
    since_s = np.array([s.timestamp() for s in since])
    offset = now.astimezone(ZoneInfo(policy.timezone)).utcoffset()
    slots = start_slots(since_s, offset.total_seconds() if offset else 0.0)
    watch_a = np.array(watch, dtype=np.float64)
    levels = learned_levels(
        since_s,
        now.timestamp(),
        slots,
        watch_a,
        np.array(step, dtype=np.float64),
        policy,
        override_h=np.array(caps, dtype=np.float64),
    )
    _record_suppressed(conn, now, levels, held, ids, since)
    raised = [i for i in np.flatnonzero(levels != NO_SEVERITY).tolist() if i not in held]
    if not raised:
        return []
    findings: dict[int, Finding] = {}
    for i in raised:
        score = score_inactivity(since[i], now, policy)
        assert score is not None
        score = replace(score, severity=Severity(int(levels[i])))
        finding = to_finding(homes[i], score)
        u = usual[i][int(slots[i])]
        if not math.isnan(watch_a[i, slots[i]]) and not math.isnan(u):
            hours = score.reason_ko.split("시간째")[0]
            ko = (f"평소 이 시간에는 {_minutes(u)} 안에 움직임이 있는데 "
                  f"{hours}시간째 움직임이 없습니다")  # fmt: skip
            en = f"Usually active within {_minutes_en(u)} at this time; {score.reason_en}"
            details = {**finding.details, "rule": "learned", "usual_h": round(u, 2)}
            finding = replace(finding, reason_ko=ko, reason_en=en, details=details)
        findings[ids[i]] = finding
    params = {
        "kind": KIND,
        "now": now,
        "resident_ids": [ids[i] for i in raised],
        "severities": [findings[ids[i]].severity.label for i in raised],
        "since": [since[i] for i in raised],
        "reasons_ko": [findings[ids[i]].reason_ko for i in raised],
        "reasons_en": [findings[ids[i]].reason_en for i in raised],
        "details": [json.dumps(findings[ids[i]].details) for i in raised],
    }
    new = [
        NewFinding(int(finding_id), int(resident_id), findings[int(resident_id)])
        for finding_id, resident_id, _ in conn.execute(_INSERT, params)
    ]
    new.sort(key=lambda n: n.finding_id)
    return new


def _record_suppressed(
    conn: psycopg.Connection[Any],
    now: datetime,
    levels: npt.NDArray[np.int8],
    held: dict[int, tuple[str, datetime]],
    ids: list[int],
    since: list[datetime],
) -> None:
    """Record, once per silence and level, what an away or hospital status held back."""
    rows = [i for i in held if levels[i] != NO_SEVERITY]
    if not rows:
        return
    conn.execute(
        _SUPPRESSED,
        (
            [ids[i] for i in rows],
            [KIND] * len(rows),
            [Severity(int(levels[i])).label for i in rows],
            [since[i] for i in rows],
            [now] * len(rows),
            [held[i][0] for i in rows],
            [held[i][1] for i in rows],
        ),
    )


def _hours(value: float | None) -> float:
    return float("nan") if value is None else float(value)


def _row(values: list[float] | None) -> list[float]:
    if not values or len(values) != SLOTS:
        return NAN_ROW
    return [float("nan") if v is None else float(v) for v in values]


def _minutes(hours: float) -> str:
    return f"{round(hours * 60)}분" if hours < 1 else f"{hours:.1f}시간"


def _minutes_en(hours: float) -> str:
    return f"{round(hours * 60)} min" if hours < 1 else f"{hours:.1f} h"
