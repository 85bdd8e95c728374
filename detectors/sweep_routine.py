"""The live sweep's routine checks on the database: not back, not up, a long bathroom stay.

detectors.sweep finds the candidate homes (out long enough, silent since before the night, a
silence begun in the bathroom); this module reads the few learned fields those checks need
(from their own columns of `anbu.baselines`, never the whole model), asks the pure rules of
detectors.routine_live which finding is due now, and records in `anbu.suppressions` what an
away or hospital status held back, once per silence, kind and level.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import psycopg

from core.domain import Finding
from detectors.learning import Baseline
from detectors.routine import RoutinePolicy, restate
from detectors.routine_live import Due, due_bathroom, due_not_back, due_not_up

_SUPPRESSED = """
INSERT INTO anbu.suppressions
       (resident_id, kind, severity, silence_since, reached_at, status, status_until)
SELECT * FROM unnest(%s::bigint[], %s::text[], %s::text[], %s::timestamptz[],
                     %s::timestamptz[], %s::text[], %s::timestamptz[])
ON CONFLICT (resident_id, kind, severity, silence_since) DO NOTHING
"""
# The few fields of a learned routine that "not back", "not up" and the bathroom check read,
# for the homes that may be due one, from their own columns: never the whole model.
ROUTINES = """
SELECT resident_id, learned_at, history_days, grace, anchor_slot, wake_h, out_h, bathroom_h
  FROM anbu.baselines WHERE resident_id = ANY(%s)
"""


@dataclass(frozen=True, slots=True)
class Silence:
    """A home's running silence as the routine checks see it."""

    resident_id: int
    home: str
    start: datetime  # what counts (a status change may have moved it past the last activity)
    held: tuple[str, datetime] | None  # the away / hospital status holding findings back
    levels: tuple[float, float] = (math.nan, math.nan)  # the start slot's learned watch, step


def routine_checks(
    conn: psycopg.Connection[Any],
    now: datetime,
    policy: RoutinePolicy,
    tz: ZoneInfo,
    outings: list[Silence],
    mornings: list[Silence],
    bathrooms: list[Silence],
) -> list[tuple[int, Finding, datetime]]:
    """ "Not back" for homes out long enough, "not up" for homes silent since before the night,
    a long stay for homes whose silence began in the bathroom.

    Whatever an away or hospital status holds back is recorded in `anbu.suppressions`.
    """
    baselines = _baselines(conn, [s.resident_id for s in outings + mornings + bathrooms])
    t = now.timestamp()
    due: list[tuple[Silence, Due]] = []
    for s in outings:
        d = due_not_back(baselines.get(s.resident_id), s.start.timestamp(), t, policy)
        if d is not None:  # judged late (the worker was down): the reason says the real time
            due.append((s, replace(d, crossing=restate(d.crossing, s.start.timestamp(), t))))
    for s in mornings:
        d = due_not_up(baselines.get(s.resident_id), s.start.timestamp(), t, tz, policy)
        if d is not None:
            due.append((s, d))
    for s in bathrooms:
        b = baselines.get(s.resident_id)
        d = due_bathroom(b, s.start.timestamp(), t, s.levels[0], s.levels[1], policy)
        if d is not None:
            due.append((s, d))
    record_held(
        conn,
        now,
        [
            (s.resident_id, d.crossing.kind, d.crossing.severity.label, s.start, s.held)
            for s, d in due
            if s.held is not None
        ],
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
    for row in conn.execute(ROUTINES, (ids,)):
        rid, learned_at, days, grace, anchor, wake, longest_out, bathroom = row
        out[int(rid)] = Baseline(
            learned_at=learned_at.timestamp(),
            history_days=float(days),
            grace=bool(grace),
            out_h=(hours_or_nan(longest_out), float("nan")),
            bathroom_h=(hours_or_nan(bathroom), float("nan")),
            anchor_slot=8 if anchor is None else int(anchor),
            wake_h=hours_or_nan(wake),
        )
    return out


def record_held(
    conn: psycopg.Connection[Any],
    now: datetime,
    held: list[tuple[int, str, str, datetime, tuple[str, datetime | None]]],
) -> None:
    """Record (resident, kind, severity, silence start, (status, until)) held back at `now`;
    once each: a row already there for the same silence, kind and level stays as it was."""
    if not held:
        return
    conn.execute(
        _SUPPRESSED,
        (
            [h[0] for h in held],
            [h[1] for h in held],
            [h[2] for h in held],
            [h[3] for h in held],
            [now] * len(held),
            [h[4][0] for h in held],
            [h[4][1] for h in held],
        ),
    )


def hours_or_nan(value: float | None) -> float:
    return float("nan") if value is None else float(value)
