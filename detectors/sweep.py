"""The full scan: score every home's silence at once and record the findings that are new.

The worker's minute tick (detectors.sweep_due) judges the very same rows, by the same rules
(`judge_rows`), for the homes that have something due only; this scan is its reference.

Reads `anbu.home_activity` (never raw readings) joined with `anbu.resident` and the home's
learned routine in `anbu.baselines` (per-slot levels; a home without one, or in its grace
period, is judged by the fixed rule). The database does the sifting: it returns only the homes
silent long enough for some level (or wanted by the morning check), each with the learned
values of the slot its silence began in, never the whole routine; levels are then one numpy
pass, and only levels not yet raised in their silence become findings. A silence that began
with the entrance door (the door is the latest activity, no motion after it) is an outing and raises no inactivity: it is
judged by "not back" (detectors.routine's rule, the offline replay's). Each morning a home with
a learned routine and nothing since the night's anchor, past its usual wake time, is "not up";
a silence that began in the bathroom of a home whose bathroom silences are short is a
"bathroom long stay" at the learned bathroom watch, ahead of its first inactivity level.
A finding is new when no finding of the same resident, kind and severity was raised at or
after the start of what it is about (the home's last activity, i.e. within the current
silence; for "not up", the night's anchor). Sweeps are serialised by a transaction-level
advisory lock, under which the sweep asks which findings are new and inserts them, so two
sweeps running at once never raise the same finding twice. All homes are judged in one
savepoint; when it fails, each home is judged again in its own, so one home's bad row costs
that home's findings only (logged by resident id) and the others are still raised.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import numpy.typing as npt
import psycopg

from core.domain import Finding, Severity
from detectors.inactivity import (
    KIND,
    NO_SEVERITY,
    InactivityPolicy,
    score_inactivity,
    to_finding,
)
from detectors.learning import LearningPolicy
from detectors.levels import learned_levels
from detectors.routine import RoutinePolicy, with_coverage
from detectors.routine_live import morning_bound
from detectors.sweep_routine import Silence, record_held, routine_checks
from detectors.sweep_routine import hours_or_nan as _hours

log = logging.getLogger(__name__)

SWEEP_LOCK = 7_470_302  # advisory lock key: one inactivity sweep at a time
SUPPRESSING_STATUSES = ("away", "hospital")


class SweepFailed(RuntimeError):
    """The connection broke while judging home by home: nothing home-specific to isolate."""


@dataclass(frozen=True, slots=True)
class NewFinding:
    """A finding the sweep has just stored, with its row id."""

    finding_id: int
    resident_id: int
    finding: Finding


# Every home that may be due something now, with its silence start and the learned levels of
# that start's slot only (never the whole routine). The silence that counts starts at the last
# activity, and for inactivity (`istart`, whose slot the levels are read at) not before a sensor
# still on (a bed mat pressed, a door open) stops counting as someone there: when its learned hold
# (anbu.sensor.hold_s, else the fixed open hold) runs out, as offline; the morning check and
# outings go by the last doing only, as offline. An away or hospital stay with an end date holds findings back until then and counts
# from its end; a status a care manager changed counts from the change. Homes whose every
# gateway is down are left out (their data is missing, not their resident: unknown_status asks
# for a call), and so are homes silent for less than the earliest level any home can have,
# unless the morning check may want them.
# When the last sensor still on (a bed mat pressed, a door open) stops holding the home
# occupied: its `since` plus its learned hold (anbu.sensor.hold_s), else, as offline, the default
# hold of a sensor unseen at learning (`m.until`; NULL: none on). Only in a home with a learned
# routine (`b`): in grace offline holds every sensor 12 h, which live does not copy (a door left
# open would hide a fall for 12 h). Read by _HOMES and sweep_due.
HELD_UNTIL = """
  LEFT JOIN LATERAL (SELECT max(st.since + make_interval(secs => coalesce(s.hold_s,
                                                                        %(default_hold_s)s)))
                              AS until
                       FROM anbu.sensor_state st JOIN anbu.sensor s ON s.id = st.sensor_id
                      WHERE b.resident_id IS NOT NULL AND st.resident_id = r.id
                        AND st.value >= 1
                        AND s.kind IN ('door', 'motion', 'contact', 'appliance')) m ON true
"""
_HOMES = (
    """
WITH h AS (
SELECT r.id, r.home, r.status, r.status_until, a.last_activity_at,
       a.last_door_at >= a.last_activity_at
         AND (a.last_motion_at IS NULL OR a.last_motion_at < a.last_door_at) AS gone_out,
       a.last_room = 'bathroom' AS in_bathroom,
       b.watch_h, b.step_h, b.usual_h, b.wake_h, r.watch_h_max, r.warning_h_max, r.critical_h_max,
       r.status IN ('away', 'hospital') AND r.status_until > %(now)s AS held,
       CASE WHEN r.status IN ('away', 'hospital') AND r.status_until IS NOT NULL
            THEN CASE WHEN r.status_until > %(now)s THEN a.last_activity_at
                      ELSE GREATEST(a.last_activity_at, r.status_until) END
            WHEN c.changed_at <= %(now)s THEN GREATEST(a.last_activity_at, c.changed_at)
            ELSE a.last_activity_at END AS start,
       m.until AS held_until
  FROM anbu.home_activity a
  JOIN anbu.resident r ON r.id = a.resident_id
  LEFT JOIN anbu.baselines b ON b.resident_id = r.id AND NOT b.grace
"""  # nosec B608  # constant SQL pieces joined; values are %(name)s parameters
    + HELD_UNTIL
    + """  LEFT JOIN (SELECT resident_id, max(at) AS changed_at FROM anbu.resident_changes
              WHERE field = 'status' GROUP BY resident_id) c ON c.resident_id = r.id
  LEFT JOIN (SELECT resident_id, bool_and(online IS FALSE) AS down
               FROM anbu.gateway WHERE removed_at IS NULL GROUP BY resident_id) g
         ON g.resident_id = r.id
 WHERE r.status <> 'ended' AND g.down IS NOT TRUE
), hi AS (
SELECT h.*, GREATEST(h.start, LEAST(coalesce(h.held_until, '-infinity'), %(now)s::timestamptz))
       AS istart FROM h
)
SELECT h.id, h.home, h.status, h.status_until, h.held, h.start,
       extract(epoch FROM h.start)::float8, h.gone_out, h.watch_h IS NOT NULL,
       h.watch_h IS NOT NULL AND h.wake_h BETWEEN %(wake_lo)s AND %(wake_hi)s
         AND h.start < %(morning)s::timestamptz,
       CASE WHEN array_length(h.watch_h, 1) = 48 THEN h.watch_h[k.slot] END,
       CASE WHEN array_length(h.step_h, 1) = 48 THEN h.step_h[k.slot] END,
       CASE WHEN array_length(h.usual_h, 1) = 48 THEN h.usual_h[k.slot] END,
       h.watch_h_max, h.warning_h_max, h.critical_h_max, h.in_bathroom,
       h.istart, extract(epoch FROM h.istart)::float8
  FROM hi h, LATERAL (SELECT 1 + floor(mod(extract(epoch FROM h.istart) + %(offset_s)s::numeric,
                                           86400) / 1800)::int AS slot) k
 WHERE h.start <= %(now)s - make_interval(secs => 3600 * LEAST(%(earliest_h)s, h.watch_h_max,
                                                               h.warning_h_max, h.critical_h_max))
    OR (h.watch_h IS NOT NULL AND h.wake_h BETWEEN %(wake_lo)s AND %(wake_hi)s
        AND h.start < %(morning)s::timestamptz)
"""  # nosec B608  # constant SQL pieces joined; values are %(name)s parameters
)
# Which of these (resident, kind, severity, silence start) were already raised in their stretch:
# asked apart from the insert, since an anti-join inside it would rescan the rows it adds.
_RAISED = """
SELECT DISTINCT c.i
  FROM unnest(%s::bigint[], %s::text[], %s::text[], %s::timestamptz[])
       WITH ORDINALITY AS c(resident_id, kind, severity, since, i)
  JOIN anbu.findings f ON f.resident_id = c.resident_id AND f.kind = c.kind
                      AND f.severity = c.severity AND f.raised_at >= c.since
"""
MIN_LEVEL_H = 1.0  # no learned level comes sooner than this (a care manager's cap may)

_INSERT = """
INSERT INTO anbu.findings
       (resident_id, kind, severity, raised_at, reason_ko, reason_en, details)
SELECT n.resident_id, n.kind, n.severity, %(now)s, n.reason_ko, n.reason_en, n.details
  FROM unnest(%(resident_ids)s::bigint[], %(kinds)s::text[], %(severities)s::text[],
              %(reasons_ko)s::text[], %(reasons_en)s::text[], %(details)s::jsonb[])
       AS n(resident_id, kind, severity, reason_ko, reason_en, details)
ON CONFLICT (resident_id, kind, severity, raised_at) DO NOTHING
RETURNING id, resident_id, kind
"""


@dataclass(slots=True)
class _Homes:
    """The homes at home, as columns for the vectorised inactivity levels (the start slot's
    learned watch, step and usual hours; NaN: the fixed rule)."""

    ids: list[int] = field(default_factory=list)
    homes: list[str] = field(default_factory=list)
    since: list[datetime] = field(default_factory=list)
    since_s: list[float] = field(default_factory=list)
    watch: list[float] = field(default_factory=list)
    step: list[float] = field(default_factory=list)
    usual: list[float] = field(default_factory=list)
    caps: list[tuple[float, float, float]] = field(default_factory=list)
    held: dict[int, tuple[str, datetime]] = field(default_factory=dict)  # row -> its status


def sweep(
    conn: psycopg.Connection[Any],
    now: datetime,
    policy: InactivityPolicy,
    routine: RoutinePolicy | None = None,
) -> list[NewFinding]:
    """Score all homes at `now`; store and return only the findings new to their silence.

    Runs inside the caller's transaction (commit is the caller's, e.g. `db.connection()`).
    `routine` holds the "not back" and "not up" rules (default: the offline replay's).
    This is the full scan; the worker's minute tick (detectors.sweep_due) judges the same rows
    of only the homes that have something due.
    """
    conn.execute("SELECT pg_advisory_xact_lock(%s)", (SWEEP_LOCK,))
    routine = routine or RoutinePolicy(fixed=policy)
    rows = conn.execute(_HOMES, sweep_params(now, policy, routine)).fetchall()
    found, _ = judge_rows(conn, now, policy, routine, rows)
    return found


def sweep_params(now: datetime, policy: InactivityPolicy, routine: RoutinePolicy) -> dict[str, Any]:
    """The parameters of the sweep's query of homes at `now` (what the moment decides)."""
    tz = ZoneInfo(policy.timezone)
    morning = morning_bound(now.timestamp(), tz, routine)
    offset = now.astimezone(tz).utcoffset()
    return {
        "now": now,
        "offset_s": offset.total_seconds() if offset else 0.0,
        "earliest_h": earliest_hours(policy, routine),
        "morning": None if morning is None else datetime.fromtimestamp(morning, UTC),
        "wake_lo": routine.wake_range[0],  # a learned wake outside it is no morning (not_up)
        "wake_hi": routine.wake_range[1],
        "default_hold_s": LearningPolicy().default_hold_s,  # ... unseen at learning
    }


def earliest_hours(policy: InactivityPolicy, routine: RoutinePolicy) -> float:
    """No home is judged silent for less than this (a care manager's cap may make it less)."""
    return min(MIN_LEVEL_H, policy.watch_hours, routine.min_h)


def judge_rows(
    conn: psycopg.Connection[Any],
    now: datetime,
    policy: InactivityPolicy,
    routine: RoutinePolicy,
    rows: list[tuple[Any, ...]],
) -> tuple[list[NewFinding], list[int]]:
    """Judge these rows of `_HOMES`: the new findings stored, and the homes whose judgement failed.

    All in one savepoint; when it fails, each home in its own, so one home's bad row costs that
    home's findings only (logged by resident id).
    """
    tz = ZoneInfo(policy.timezone)
    out_before = now - timedelta(hours=routine.not_back_min_h)  # no outing is judged sooner
    try:
        with conn.transaction():  # a savepoint: one home's failure must not cost the others
            return _judge(conn, now, policy, routine, tz, out_before, rows), []
    except Exception:
        log.exception("sweep batch failed; judging each home on its own",
                      extra={"homes": len(rows)})  # fmt: skip
    found: list[NewFinding] = []
    failed: list[int] = []
    for row in rows:
        if conn.broken:  # nothing home-specific: the database went away; the next sweep tries
            raise SweepFailed(failed)
        try:
            with conn.transaction():
                found += _judge(conn, now, policy, routine, tz, out_before, [row])
        except Exception:
            failed.append(int(row[0]))
            log.exception("sweep of one home failed; the others went on",
                          extra={"resident_id": int(row[0])})  # fmt: skip
    found.sort(key=lambda n: n.finding_id)
    return found, failed


def _judge(
    conn: psycopg.Connection[Any],
    now: datetime,
    policy: InactivityPolicy,
    routine: RoutinePolicy,
    tz: ZoneInfo,
    out_before: datetime,
    rows: list[tuple[Any, ...]],
) -> list[NewFinding]:
    """Score these homes (rows of `_HOMES`); store and return the findings new to them."""
    t = _Homes()
    outings: list[Silence] = []
    mornings: list[Silence] = []
    bathrooms: list[Silence] = []
    for row in rows:
        rid, home, status, until, held, start, _start_s, gone_out, learned, wakes = row[:10]
        watch, step, usual, watch_max, warning_max, critical_max, in_bathroom = row[10:17]
        istart, istart_s = row[17:19]  # held by a sensor still on (a mat): inactivity's start
        hold = (str(status), until) if held else None
        silence = Silence(int(rid), str(home), start, hold)
        if gone_out:
            if start <= out_before:
                outings.append(silence)
            continue  # out: the door closed behind the resident; not back, never inactivity
        if wakes:  # a learned wake time, and silent since before the night's end
            mornings.append(silence)
        if learned and in_bathroom and watch is not None:
            bathrooms.append(replace(silence, start=istart, levels=(float(watch), _hours(step))))
        if hold is not None:  # suppressed: scored all the same, to record what it held back
            t.held[len(t.ids)] = hold
        t.ids.append(silence.resident_id)
        t.homes.append(silence.home)
        t.since.append(istart)
        t.since_s.append(istart_s)
        t.watch.append(_hours(watch))
        t.step.append(_hours(step))
        t.usual.append(_hours(usual))
        t.caps.append((_hours(watch_max), _hours(warning_max), _hours(critical_max)))
    found: list[tuple[int, Finding, datetime]] = []
    if t.ids:
        found += _inactivity(conn, now, policy, t)  # asks which levels are new itself
    if outings or mornings or bathrooms:
        due = routine_checks(conn, now, routine, tz, outings, mornings, bathrooms)
        already = _raised(
            conn,
            [rid for rid, _, _ in due],
            [f.kind for _, f, _ in due],
            [f.severity.label for _, f, _ in due],
            [since for _, _, since in due],
        )
        found += [x for k, x in enumerate(due) if k not in already]
    return _store(conn, now, found)


def _inactivity(
    conn: psycopg.Connection[Any],
    now: datetime,
    policy: InactivityPolicy,
    t: _Homes,
) -> list[tuple[int, Finding, datetime]]:
    """The vectorised inactivity levels: (resident, finding, silence start) for each new one."""
    since_s = np.array(t.since_s, dtype=np.float64)
    watch = np.array(t.watch, dtype=np.float64)
    levels = learned_levels(
        since_s,
        now.timestamp(),
        np.zeros(since_s.size, dtype=np.int64),  # the tables hold the start slot's column only
        watch[:, None],
        np.array(t.step, dtype=np.float64)[:, None],
        policy,
        min_h=MIN_LEVEL_H,
        override_h=np.array(t.caps, dtype=np.float64).reshape(-1, 3),
    )
    _record_suppressed(conn, now, levels, t.held, t.ids, t.since)
    raised = [i for i in np.flatnonzero(levels != NO_SEVERITY).tolist() if i not in t.held]
    if not raised:
        return []
    already = _raised(
        conn,
        [t.ids[i] for i in raised],
        [KIND] * len(raised),
        [Severity(int(levels[i])).label for i in raised],
        [t.since[i] for i in raised],
    )
    raised = [i for k, i in enumerate(raised) if k not in already]
    sees = _coverage(conn, [t.ids[i] for i in raised])
    found: list[tuple[int, Finding, datetime]] = []
    for i in raised:
        score = score_inactivity(t.since[i], now, policy)
        assert score is not None
        score = replace(score, severity=Severity(int(levels[i])))
        finding = to_finding(t.homes[i], score)
        u = t.usual[i]
        if not math.isnan(watch[i]) and not math.isnan(u):
            hours = score.reason_ko.split("시간째")[0]
            ko = (f"평소 이 시간에는 {_minutes(u)} 안에 움직임이 있는데 "
                  f"{hours}시간째 움직임이 없습니다")  # fmt: skip
            en = f"Usually active within {_minutes_en(u)} at this time; {score.reason_en}"
            details = {**finding.details, "rule": "learned", "usual_h": round(u, 2)}
            finding = replace(finding, reason_ko=ko, reason_en=en, details=details)
        if sees.get(t.ids[i]):
            ko, en = with_coverage(finding.reason_ko, finding.reason_en, sees[t.ids[i]])
            finding = replace(finding, reason_ko=ko, reason_en=en)
        found.append((t.ids[i], finding, t.since[i]))
    return found


def _coverage(conn: psycopg.Connection[Any], ids: list[int]) -> dict[int, str]:
    """What each home's sensors cannot see, as its last learning found (Baseline.sees)."""
    if not ids:
        return {}
    rows = conn.execute(
        "SELECT resident_id, model->>'sees' FROM anbu.baselines"
        " WHERE resident_id = ANY(%s::bigint[]) AND model->>'sees' <> ''",
        (ids,),
    )
    return {int(rid): str(sees) for rid, sees in rows}


def _store(
    conn: psycopg.Connection[Any], now: datetime, found: list[tuple[int, Finding, datetime]]
) -> list[NewFinding]:
    """Insert findings the sweep found new (asked by `_raised` under the sweep's advisory lock,
    so no other sweep adds one between); return those stored, by id."""
    if not found:
        return []
    params = {
        "now": now,
        "resident_ids": [rid for rid, _, _ in found],
        "kinds": [f.kind for _, f, _ in found],
        "severities": [f.severity.label for _, f, _ in found],
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


def _raised(
    conn: psycopg.Connection[Any],
    ids: list[int],
    kinds: list[str],
    severities: list[str],
    since: list[datetime],
) -> set[int]:
    """Positions (0-based) of the findings already raised at or after their silence start."""
    rows = conn.execute(_RAISED, (ids, kinds, severities, since))
    return {int(i) - 1 for (i,) in rows}


def _record_suppressed(
    conn: psycopg.Connection[Any],
    now: datetime,
    levels: npt.NDArray[np.int8],
    held: dict[int, tuple[str, datetime]],
    ids: list[int],
    since: list[datetime],
) -> None:
    """Record, once per silence and level, what an away or hospital status held back."""
    record_held(
        conn,
        now,
        [
            (ids[i], KIND, Severity(int(levels[i])).label, since[i], held[i])
            for i in held
            if levels[i] != NO_SEVERITY
        ],
    )


def _minutes(hours: float) -> str:
    return f"{round(hours * 60)}분" if hours < 1 else f"{hours:.1f}시간"


def _minutes_en(hours: float) -> str:
    return f"{round(hours * 60)} min" if hours < 1 else f"{hours:.1f} h"
