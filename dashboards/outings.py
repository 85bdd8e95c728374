"""A resident's outings over a span, from the entrance door and the motion inside: what the
week grid marks as 외출 (out).

An outing is the time from the entrance door closing to the door's next change (the resident
back, usually) when, in between, nothing inside said anyone was there (no motion or contact
switching on, from any sensor of the home), lasting at least `OUT_MIN`. It is a guess from
sensors, shown as one (외출 추정): a resident lying still behind a closed door and one who went
out look the same to a door and a motion sensor. So what could hide a resident at home is never
taken for an outing, and the guess is made only where the evidence for it is whole:
- a home with exactly one door sensor, in the entrance, and a motion sensor (two doors, a door
  of another room taken for the entrance, nothing inside to see by: no outings);
- someone moving inside in the `MOVING_WITHIN` before the door closed (a person left), and
  again in the `MOVING_WITHIN` after the door's next change (a person came in): a door that
  opens with nobody moving after it (a neighbour, the wind, a flapping sensor) is no return;
- every motion sensor of the home heard (any reading) within `HEARD_BEFORE` before the door
  closed and again after the outing ended, and no finding about the home's devices or gateway
  (offline, silent, battery) raised from `HEARD_BEFORE` before it to its end: a sensor that
  could have been blind meanwhile and a still resident in its room could look gone;
- no finding about the resident (inactivity, not up, not back...) raised during it: the
  system's own doubt is never painted over as an outing;
- the door's first change after an outing is the resident coming back: the silence after it
  is at home, unseen, not another outing (as detectors.silences says), and no outing follows
  one until someone has been seen moving inside;
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
MOVING_WITHIN = timedelta(minutes=10)  # someone moving inside this near the door's changes
INSIDE_KINDS = ("motion", "contact")  # switching on: someone is in
DEVICE_FINDINGS = ("device%", "gateway%", "battery%", "site%")  # a sensor maybe blind

_SENSORS = """
SELECT s.id, s.kind, s.room FROM anbu.sensor s JOIN anbu.gateway g ON g.id = s.gateway_id
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
# per silence candidate [lo, hi): nothing inside switched on; someone moving inside just
# before it and just after it; no finding about the resident during it nor about the home's
# devices around it; every motion sensor heard in the HEARD_BEFORE before it and again after it
# (a reading, or the sensor's last message)
_CHECKS = """
SELECT NOT EXISTS (SELECT 1 FROM anbu.readings x
                    WHERE x.sensor_id = ANY(%(inside)s) AND x.ts >= k.lo AND x.ts < k.hi
                      AND x.value >= 1),
       EXISTS (SELECT 1 FROM anbu.readings x
                WHERE x.sensor_id = ANY(%(inside)s) AND x.ts >= k.lo - %(moving)s
                  AND x.ts <= k.lo AND x.value >= 1)
       AND EXISTS (SELECT 1 FROM anbu.readings x
                    WHERE x.sensor_id = ANY(%(inside)s) AND x.ts >= k.hi
                      AND x.ts <= k.hi + %(moving)s AND x.value >= 1),
       NOT EXISTS (SELECT 1 FROM anbu.findings f
                    WHERE f.resident_id = %(resident)s
                      AND ((f.raised_at >= k.lo AND f.raised_at <= k.hi
                            AND NOT f.kind LIKE ANY (%(device_kinds)s))
                        OR (f.raised_at >= k.lo - %(heard)s AND f.raised_at <= k.hi
                            AND f.kind LIKE ANY (%(device_kinds)s)))),
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
    in between (`quiet`), someone moved inside just before and just after it (`framed`), no
    finding doubts it (`undoubted`) and every motion sensor was heard around it (`covered`)."""

    start: datetime
    end: datetime
    quiet: bool
    covered: bool
    framed: bool = True
    undoubted: bool = True


def outings_of(silences: Sequence[Silence]) -> list[Outing]:
    """The outings among a home's door-closed silences, in order: quiet, framed, undoubted,
    covered, at least OUT_MIN; after one, none until someone was seen moving inside (a silence
    that was not quiet): the silences after a return are at home, unseen."""
    found: list[Outing] = []
    after_outing = False
    for s in silences:
        sure = s.quiet and s.framed and s.undoubted and s.covered
        out = sure and s.end - s.start >= OUT_MIN and not after_outing
        if out:
            found.append(Outing(s.start, s.end))
        after_outing = out or (after_outing and s.quiet)
    return found


def home_outings(
    conn: psycopg.Connection[Any], resident_id: int, lo: datetime, hi: datetime
) -> list[Outing]:
    """The resident's outings that end after `lo` and by `hi` (now), from the readings."""
    sensors = conn.execute(_SENSORS, (resident_id,)).fetchall()
    doors = [(int(i), room) for i, kind, room in sensors if kind == "door"]
    motion = [int(i) for i, kind, _ in sensors if kind == "motion"]
    inside = [int(i) for i, kind, _ in sensors if kind in INSIDE_KINDS]
    if len(doors) != 1 or doors[0][1] != "entrance" or not motion:
        return []  # which door is the way out, and that it is the only one, must be known
    door = [doors[0][0]]
    # from a day before `lo`: an outing ending just before it still keeps the next silence home
    changes = conn.execute(
        _DOOR_CHANGES, {"doors": door, "lo": lo - timedelta(days=1), "hi": hi}
    ).fetchall()
    spans = [(t, following) for (t, value), (following, _) in pairwise(changes) if value < 1]
    if not spans:
        return []
    checked = conn.execute(
        _CHECKS,
        {"inside": inside, "motion": motion, "heard": HEARD_BEFORE, "now": hi,
         "moving": MOVING_WITHIN, "resident": resident_id, "device_kinds": list(DEVICE_FINDINGS),
         "los": [a for a, _ in spans], "his": [b for _, b in spans]},
    ).fetchall()  # fmt: skip
    silences = [
        Silence(a, b, bool(q), bool(c), framed=bool(f), undoubted=bool(u))
        for (a, b), (q, f, u, c) in zip(spans, checked, strict=True)
    ]
    return [o for o in outings_of(silences) if o.end > lo]
