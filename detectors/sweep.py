"""The minute sweep: score every home's silence at once and record the findings that are new.

Reads `anbu.home_activity` (never raw readings) joined with `anbu.resident` and the home's
learned routine in `anbu.baselines` (per-slot levels; a home without one, or in its grace
period, is judged by the fixed rule). A silence that began with the entrance door (the door
is the latest activity, no motion after it) is an outing and raises no inactivity: it is
judged by "not back" (detectors.routine's rule, the offline replay's). Each morning a home with
a learned routine and nothing since the night's anchor, past its usual wake time, is "not up".
A finding is new when no finding of the same resident, kind and severity was raised at or
after the start of what it is about (the home's last activity, i.e. within the current
silence; for "not up", the night's anchor). Sweeps are serialised by a transaction-level
advisory lock, and the insert re-checks inside the statement, so two sweeps running at once
never raise the same finding twice.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
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
from detectors.learning import Baseline
from detectors.levels import learned_levels, start_slots
from detectors.routine import RoutinePolicy
from detectors.routine_live import Due, due_not_back, due_not_up, morning_bound

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
       r.watch_h_max, r.warning_h_max, r.critical_h_max, c.changed_at, g.down
  FROM anbu.home_activity a
  JOIN anbu.resident r ON r.id = a.resident_id
  LEFT JOIN anbu.baselines b ON b.resident_id = r.id AND NOT b.grace
  LEFT JOIN (SELECT resident_id, max(at) AS changed_at FROM anbu.resident_changes
              WHERE field = 'status' GROUP BY resident_id) c ON c.resident_id = r.id
  LEFT JOIN (SELECT resident_id, bool_and(online IS FALSE) AS down
               FROM anbu.gateway GROUP BY resident_id) g ON g.resident_id = r.id
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
SELECT n.resident_id, n.kind, n.severity, %(now)s, n.reason_ko, n.reason_en, n.details
  FROM unnest(%(resident_ids)s::bigint[], %(kinds)s::text[], %(severities)s::text[],
              %(since)s::timestamptz[], %(reasons_ko)s::text[], %(reasons_en)s::text[],
              %(details)s::jsonb[])
       AS n(resident_id, kind, severity, since, reason_ko, reason_en, details)
 WHERE NOT EXISTS (
       SELECT 1 FROM anbu.findings f
        WHERE f.resident_id = n.resident_id AND f.kind = n.kind
          AND f.severity = n.severity AND f.raised_at >= n.since)
ON CONFLICT (resident_id, kind, severity, raised_at) DO NOTHING
RETURNING id, resident_id, kind
"""
# The few fields of a learned routine that "not back" and "not up" read, for the homes that
# may be due one (out long enough, or silent since before the night): never the whole model.
_ROUTINES = """
SELECT resident_id, learned_at, history_days, grace, (model->>'anchor_slot')::int,
       (model->>'wake_h')::float8, (model->'out_h'->>0)::float8
  FROM anbu.baselines WHERE resident_id = ANY(%s)
"""


@dataclass(frozen=True, slots=True)
class _Silence:
    """A home's running silence as the routine checks see it."""

    resident_id: int
    home: str
    start: datetime  # what counts (a status change may have moved it past the last activity)
    held: tuple[str, datetime] | None  # the away / hospital status holding findings back


@dataclass(slots=True)
class _Homes:
    """The homes at home, as columns for the vectorised inactivity levels."""

    ids: list[int] = field(default_factory=list)
    homes: list[str] = field(default_factory=list)
    since: list[datetime] = field(default_factory=list)
    watch: list[list[float]] = field(default_factory=list)
    step: list[list[float]] = field(default_factory=list)
    usual: list[list[float]] = field(default_factory=list)
    caps: list[tuple[float, float, float]] = field(default_factory=list)
    held: dict[int, tuple[str, datetime]] = field(default_factory=dict)  # row -> its status


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


def sweep(
    conn: psycopg.Connection[Any],
    now: datetime,
    policy: InactivityPolicy,
    routine: RoutinePolicy | None = None,
) -> list[NewFinding]:
    """Score all homes at `now`; store and return only the findings new to their silence.

    Runs inside the caller's transaction (commit is the caller's, e.g. `db.connection()`).
    `routine` holds the "not back" and "not up" rules (default: the offline replay's).
    """
    conn.execute("SELECT pg_advisory_xact_lock(%s)", (SWEEP_LOCK,))
    routine = routine or RoutinePolicy(fixed=policy)
    tz = ZoneInfo(policy.timezone)
    out_before = now - timedelta(hours=routine.not_back_min_h)  # no outing is judged sooner
    morning = morning_bound(now.timestamp(), tz, routine)
    t = _Homes()
    outings: list[_Silence] = []
    mornings: list[_Silence] = []
    for row in conn.execute(_HOMES):
        resident_id, home, status, status_until, last_activity, door, motion = row[:7]
        if row[14]:  # every gateway of the home is down: its data is missing, not its resident
            continue  # (unknown_status asks for a call; buffered readings arrive on return)
        start = silence_start(last_activity, status, status_until, now, row[13])
        hold = None if start is not None else (str(status), status_until)
        silence = _Silence(int(resident_id), str(home), start or last_activity, hold)
        if door is not None and door >= last_activity and (motion is None or motion < door):
            if silence.start <= out_before:
                outings.append(silence)
            continue  # out: the door closed behind the resident; not back, never inactivity
        if row[7] is not None and morning is not None and silence.start.timestamp() < morning:
            mornings.append(silence)
        if hold is not None:  # suppressed: scored all the same, to record what it held back
            t.held[len(t.ids)] = hold
        t.ids.append(silence.resident_id)
        t.homes.append(silence.home)
        t.since.append(silence.start)
        t.watch.append(_row(row[7]))
        t.step.append(_row(row[8]))
        t.usual.append(_row(row[9]))
        t.caps.append((_hours(row[10]), _hours(row[11]), _hours(row[12])))
    found: list[tuple[int, Finding, datetime]] = []
    if t.ids:
        found += _inactivity(conn, now, policy, t)
    if outings or mornings:
        found += _routine_checks(conn, now, routine, tz, outings, mornings)
    return _store(conn, now, found)


def _inactivity(
    conn: psycopg.Connection[Any], now: datetime, policy: InactivityPolicy, t: _Homes
) -> list[tuple[int, Finding, datetime]]:
    """The vectorised inactivity levels: (resident, finding, silence start) for each raised."""
    since_s = np.array([s.timestamp() for s in t.since])
    offset = now.astimezone(ZoneInfo(policy.timezone)).utcoffset()
    slots = start_slots(since_s, offset.total_seconds() if offset else 0.0)
    watch_a = np.array(t.watch, dtype=np.float64)
    levels = learned_levels(
        since_s,
        now.timestamp(),
        slots,
        watch_a,
        np.array(t.step, dtype=np.float64),
        policy,
        override_h=np.array(t.caps, dtype=np.float64),
    )
    _record_suppressed(conn, now, levels, t.held, t.ids, t.since)
    raised = [i for i in np.flatnonzero(levels != NO_SEVERITY).tolist() if i not in t.held]
    found: list[tuple[int, Finding, datetime]] = []
    for i in raised:
        score = score_inactivity(t.since[i], now, policy)
        assert score is not None
        score = replace(score, severity=Severity(int(levels[i])))
        finding = to_finding(t.homes[i], score)
        u = t.usual[i][int(slots[i])]
        if not math.isnan(watch_a[i, slots[i]]) and not math.isnan(u):
            hours = score.reason_ko.split("시간째")[0]
            ko = (f"평소 이 시간에는 {_minutes(u)} 안에 움직임이 있는데 "
                  f"{hours}시간째 움직임이 없습니다")  # fmt: skip
            en = f"Usually active within {_minutes_en(u)} at this time; {score.reason_en}"
            details = {**finding.details, "rule": "learned", "usual_h": round(u, 2)}
            finding = replace(finding, reason_ko=ko, reason_en=en, details=details)
        found.append((t.ids[i], finding, t.since[i]))
    return found


def _routine_checks(
    conn: psycopg.Connection[Any],
    now: datetime,
    policy: RoutinePolicy,
    tz: ZoneInfo,
    outings: list[_Silence],
    mornings: list[_Silence],
) -> list[tuple[int, Finding, datetime]]:
    """ "Not back" for homes out long enough, "not up" for homes silent since before the night.

    Whatever an away or hospital status holds back is recorded in `anbu.suppressions`.
    """
    baselines = _baselines(conn, [s.resident_id for s in outings + mornings])
    t = now.timestamp()
    due: list[tuple[_Silence, Due]] = []
    for s in outings:
        d = due_not_back(baselines.get(s.resident_id), s.start.timestamp(), t, policy)
        if d is not None:
            due.append((s, d))
    for s in mornings:
        d = due_not_up(baselines.get(s.resident_id), s.start.timestamp(), t, tz, policy)
        if d is not None:
            due.append((s, d))
    kept = [(s, d) for s, d in due if s.held is not None]
    if kept:
        conn.execute(
            _SUPPRESSED,
            (
                [s.resident_id for s, _ in kept],
                [d.crossing.kind for _, d in kept],
                [d.crossing.severity.label for _, d in kept],
                [s.start for s, _ in kept],
                [now] * len(kept),
                [s.held[0] for s, _ in kept if s.held is not None],
                [s.held[1] for s, _ in kept if s.held is not None],
            ),
        )
    found: list[tuple[int, Finding, datetime]] = []
    for s, d in due:
        if s.held is not None:
            continue
        c = d.crossing
        details = {
            "rule": c.rule,
            "silence_s": round(max(t - s.start.timestamp(), 0.0)),
            "last_activity_at": s.start.astimezone(UTC).isoformat(),
            "since": datetime.fromtimestamp(d.since, UTC).isoformat(),
        }
        finding = Finding(s.home, c.kind, c.severity, now, c.reason_ko, c.reason_en, details)
        found.append((s.resident_id, finding, datetime.fromtimestamp(d.since, UTC)))
    return found


def _baselines(conn: psycopg.Connection[Any], ids: list[int]) -> dict[int, Baseline]:
    """The routine fields of these homes' baselines (a home without one is absent)."""
    out: dict[int, Baseline] = {}
    for rid, learned_at, days, grace, anchor, wake, longest_out in conn.execute(_ROUTINES, (ids,)):
        out[int(rid)] = Baseline(
            learned_at=learned_at.timestamp(),
            history_days=float(days),
            grace=bool(grace),
            out_h=(_hours(longest_out), float("nan")),
            anchor_slot=8 if anchor is None else int(anchor),
            wake_h=_hours(wake),
        )
    return out


def _store(
    conn: psycopg.Connection[Any], now: datetime, found: list[tuple[int, Finding, datetime]]
) -> list[NewFinding]:
    """Insert the findings not yet raised in their stretch; return those stored, by id."""
    if not found:
        return []
    params = {
        "now": now,
        "resident_ids": [rid for rid, _, _ in found],
        "kinds": [f.kind for _, f, _ in found],
        "severities": [f.severity.label for _, f, _ in found],
        "since": [since for _, _, since in found],
        "reasons_ko": [f.reason_ko for _, f, _ in found],
        "reasons_en": [f.reason_en for _, f, _ in found],
        "details": [json.dumps(f.details) for _, f, _ in found],
    }
    by_key = {(rid, f.kind): f for rid, f, _ in found}
    new = [
        NewFinding(int(finding_id), int(rid), by_key[(int(rid), str(kind))])
        for finding_id, rid, kind in conn.execute(_INSERT, params)
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
