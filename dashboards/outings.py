"""A resident's outings over a span, from the entrance door and the motion inside: what the
week grid marks as 외출 (out).

An outing is the time from the entrance door closing to the door's next change (the resident
back, usually) when, in between, nothing inside said anyone was there (no motion or contact
switching on, from any sensor of the home), lasting at least `OUT_MIN`. What could hide a
resident at home is never taken for an outing:
- a home without an entrance door or without a motion sensor has no outings (nothing tells
  leaving from being still);
- every motion sensor of the home must have been heard (any reading) within `HEARD_BEFORE`
  before the door closed and again after the outing ended: one sensor missing, dead or not
  yet back after a battery change, and a still resident in its room could look gone;
- the door's first change after an outing is the resident coming back: the silence after it
  is at home, unseen, not another outing (as detectors.silences says);
- an outing with no door change after it yet is not shown: still out and not back, or fallen
  out of a sensor's sight, is the sweep's "not back" question, never reassurance here.

Cost: a few index lookups per door change in the span (the home's door changes, one existence
check of the inside readings and of each motion sensor per silence of `OUT_MIN` or more),
never the home's readings one by one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from itertools import pairwise
from typing import Any

import psycopg

OUT_MIN = timedelta(minutes=15)  # a shorter absence (the bins, the mailbox) is no outing
HEARD_BEFORE = timedelta(hours=24)  # each motion sensor heard this long before leaving
INSIDE_KINDS = ("motion", "contact")  # switching on: someone is in

_SENSORS = """
SELECT s.id, s.kind FROM anbu.sensor s JOIN anbu.gateway g ON g.id = s.gateway_id
 WHERE g.resident_id = %s AND g.removed_at IS NULL AND s.kind IN ('door', 'motion', 'contact')
"""
# the doors' changes in [lo, hi], each door's state before `lo` first (a change, or the start
# of an outing already under way at `lo`)
_DOOR_CHANGES = """
WITH x AS (
    SELECT b.sensor_id, b.ts, b.value
      FROM unnest(%(doors)s::bigint[]) AS u(id),
           LATERAL (SELECT sensor_id, ts, value FROM anbu.readings
                     WHERE sensor_id = u.id AND ts < %(lo)s ORDER BY ts DESC LIMIT 1) b
    UNION ALL
    SELECT sensor_id, ts, value FROM anbu.readings
     WHERE sensor_id = ANY(%(doors)s) AND ts >= %(lo)s AND ts <= %(hi)s
), d AS (
    SELECT ts, value, lag(value) OVER (PARTITION BY sensor_id ORDER BY ts) AS prev FROM x
)
SELECT ts, value FROM d WHERE prev IS DISTINCT FROM value ORDER BY ts
"""
# per silence candidate [lo, hi): nothing inside switched on, and every motion sensor heard
# in the HEARD_BEFORE before it and again after it (a reading, or the sensor's last message)
_CHECKS = """
SELECT NOT EXISTS (SELECT 1 FROM anbu.readings x
                    WHERE x.sensor_id = ANY(%(inside)s) AND x.ts >= k.lo AND x.ts < k.hi
                      AND x.value >= 1),
       (SELECT bool_and(
                   EXISTS (SELECT 1 FROM anbu.readings y
                            WHERE y.sensor_id = m.id AND y.ts >= k.lo - %(heard)s
                              AND y.ts < k.lo)
                   AND (coalesce(st.last_reading_at >= k.hi, false)
                        OR EXISTS (SELECT 1 FROM anbu.readings z
                                    WHERE z.sensor_id = m.id AND z.ts >= k.hi
                                      AND z.ts <= %(now)s)))
          FROM unnest(%(motion)s::bigint[]) AS m(id)
          LEFT JOIN anbu.sensor_state st ON st.sensor_id = m.id)
  FROM unnest(%(los)s::timestamptz[], %(his)s::timestamptz[]) WITH ORDINALITY AS k(lo, hi, n)
 ORDER BY k.n
"""


@dataclass(frozen=True, slots=True)
class Outing:
    """The resident out: from the door closing behind them to the door's next change."""

    start: datetime
    end: datetime

    def minutes_in(self, lo: datetime, hi: datetime) -> int:
        """Whole minutes of [lo, hi) this outing takes."""
        taken = min(self.end, hi) - max(self.start, lo)
        return max(0, int(taken.total_seconds() // 60))


@dataclass(frozen=True, slots=True)
class Silence:
    """The door closed at `start` and next changed at `end`; whether nothing inside switched on
    in between (`quiet`) and every motion sensor was heard around it (`covered`)."""

    start: datetime
    end: datetime
    quiet: bool
    covered: bool


def outings_of(silences: Sequence[Silence]) -> list[Outing]:
    """The outings among a home's door-closed silences, in order: quiet, covered, at least
    OUT_MIN, and not the silence right after an outing's return (the resident home, unseen)."""
    found: list[Outing] = []
    after_outing = False
    for s in silences:
        out = s.quiet and s.covered and s.end - s.start >= OUT_MIN and not after_outing
        if out:
            found.append(Outing(s.start, s.end))
        after_outing = out
    return found


def home_outings(
    conn: psycopg.Connection[Any], resident_id: int, lo: datetime, hi: datetime
) -> list[Outing]:
    """The resident's outings that end after `lo` and by `hi` (now), from the readings."""
    sensors = conn.execute(_SENSORS, (resident_id,)).fetchall()
    doors = [int(i) for i, kind in sensors if kind == "door"]
    motion = [int(i) for i, kind in sensors if kind == "motion"]
    inside = [int(i) for i, kind in sensors if kind in INSIDE_KINDS]
    if not doors or not motion:
        return []
    changes = conn.execute(_DOOR_CHANGES, {"doors": doors, "lo": lo, "hi": hi}).fetchall()
    spans = [
        (t, following)
        for (t, value), (following, _) in pairwise(changes)
        if value < 1 and following > lo
    ]
    if not spans:
        return []
    checked = conn.execute(
        _CHECKS,
        {"inside": inside, "motion": motion, "heard": HEARD_BEFORE, "now": hi,
         "los": [a for a, _ in spans], "his": [b for _, b in spans]},
    ).fetchall()  # fmt: skip
    return outings_of(
        [Silence(a, b, bool(q), bool(c)) for (a, b), (q, c) in zip(spans, checked, strict=True)]
    )
