"""Hourly activity per home (`anbu.activity_hourly`): what the timeline, the weekly report and
Grafana read, so that none of them scans the raw readings.

A pass finds the (home, hour) pairs touched by readings received since the last pass (with an
overlap for transactions that committed late) and recomputes those hours whole from
`anbu.readings`, so a reading buffered by a gateway for hours lands in its own hour, and a pass
repeated changes nothing. `rebuild` recomputes a span of reading time (after a dead-letter
replay of old messages, say). Activity is what ingest counts for `home_activity`
(ingest.state): motion or contact at 1 (not an "on" repeating the one before that
core.domain.repeat_is_nobody finds nobody new, but for its timer test: the hours count an
events-only sensor's every "on"; whether the sensor reported an "off" in the day before is read
from `sensor_state.off_at`, its latest, so a rebuild of old hours counts such repeats), a door or appliance changing value, a plug stepping
by POWER_STEP_W or more, nothing from a plug learning marked automatic; the previous value of a
sensor is its last reading before the hour, then each earlier reading of the hour.

The daily rows (`anbu.activity_daily`, what the weekly review reads for past days) follow the
hours by triggers (migration 0076) in whatever transaction writes them; `keep_daily` only names
the zone whose local days they are.
"""

from __future__ import annotations

import logging
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import psycopg

from core.domain import HEARTBEAT_MIN_GAP_S, OFF_MEMORY_S, REPEAT_SAME_S
from detectors.evidence import POWER_STEP_W

log = logging.getLogger(__name__)

MARK = "activity_hourly"
SUMMARY_EVERY_S = 300.0  # how often the worker summarises what was received
OVERLAP = timedelta(minutes=10)  # readings committed this long after they were received
FIRST_PASS = timedelta(hours=26)  # what the very first pass looks back over

_TOUCHED_SINCE = """
SELECT DISTINCT g.resident_id, date_trunc('hour', r.ts)
  FROM anbu.readings r
  JOIN anbu.sensor s ON s.id = r.sensor_id
  JOIN anbu.gateway g ON g.id = s.gateway_id
 WHERE r.received_at >= %s AND g.resident_id IS NOT NULL
"""
_TOUCHED_BETWEEN = """
SELECT DISTINCT g.resident_id, date_trunc('hour', r.ts)
  FROM anbu.readings r
  JOIN anbu.sensor s ON s.id = r.sensor_id
  JOIN anbu.gateway g ON g.id = s.gateway_id
 WHERE r.ts >= %s AND r.ts < %s AND g.resident_id IS NOT NULL
"""
# a reading that is a person's doing (`prev`: the sensor's reading before it), and the hour's
# figures from those: one rule for the stored hours and the hours read live
_ACT = f"""NOT automatic AND CASE
               WHEN kind IN ('motion', 'contact') THEN value = 1 AND (
                   prev IS DISTINCT FROM 1 OR ts - prev_ts >= interval '{REPEAT_SAME_S} s' AND (
                       ts - prev_ts < interval '{HEARTBEAT_MIN_GAP_S} s' OR off_at IS NULL OR off_at >= ts
                       OR off_at < ts - interval '{OFF_MEMORY_S} s'))
               WHEN kind IN ('door', 'appliance') THEN prev IS NULL OR value <> prev
               ELSE prev IS NULL OR abs(value - prev) >= %(step)s
           END"""
_COUNTS = """count(*) FILTER (WHERE act),
       count(*) FILTER (WHERE act AND kind = 'motion'),
       count(*) FILTER (WHERE act AND kind = 'door'),
       count(*) FILTER (WHERE act AND kind = 'power'),
       count(*),
       coalesce(array_agg(DISTINCT room ORDER BY room) FILTER (WHERE act), '{}')"""
_RECOMPUTE_TEMPLATE = """
WITH k AS (
    SELECT * FROM unnest(%(ids)s::bigint[], %(hours)s::timestamptz[]) AS k(resident_id, hour)
), ks AS (
    SELECT k.resident_id, k.hour, s.id AS sensor_id, s.kind, s.room, s.automatic,
           b.value AS before, b.ts AS before_ts, st.off_at
      FROM k
      JOIN anbu.gateway g ON g.resident_id = k.resident_id
      JOIN anbu.sensor s ON s.gateway_id = g.id
      LEFT JOIN anbu.sensor_state st ON st.sensor_id = s.id
      LEFT JOIN LATERAL (SELECT p.value, p.ts FROM anbu.readings p
                          WHERE p.sensor_id = s.id AND p.ts < k.hour
                          ORDER BY p.ts DESC LIMIT 1) b ON true
), r AS (
    SELECT ks.resident_id, ks.hour, ks.kind, ks.room, ks.automatic, x.value, x.ts, ks.off_at,
           coalesce(lag(x.value) OVER w, ks.before) AS prev,
           coalesce(lag(x.ts) OVER w, ks.before_ts) AS prev_ts
      FROM ks
      JOIN anbu.readings x ON x.sensor_id = ks.sensor_id
                          AND x.ts >= ks.hour AND x.ts < ks.hour + interval '1 hour'
    WINDOW w AS (PARTITION BY ks.resident_id, ks.hour, ks.sensor_id ORDER BY x.ts)
), a AS (
    SELECT resident_id, hour, kind, room, {ACT} AS act FROM r
)
INSERT INTO anbu.activity_hourly AS h
       (resident_id, hour, activity, motion, door, power_steps, readings, rooms)
SELECT resident_id, hour, {COUNTS}
  FROM a GROUP BY resident_id, hour
ON CONFLICT (resident_id, hour) DO UPDATE
   SET activity = excluded.activity, motion = excluded.motion, door = excluded.door,
       power_steps = excluded.power_steps, readings = excluded.readings, rooms = excluded.rooms
"""
_RECOMPUTE = _RECOMPUTE_TEMPLATE.replace("{ACT}", _ACT).replace("{COUNTS}", _COUNTS)
# One home's hours in [lo, hi) from the readings, as _RECOMPUTE would write them, written nowhere:
# a sensor's reading before `lo` starts its chain, lag() the rest (the last reading before each
# hour, then each earlier one of the hour: the same previous value, read in one range per sensor)
_LIVE_TEMPLATE = """
WITH r AS (
    SELECT date_trunc('hour', x.ts) AS hour, s.kind, s.room, s.automatic, x.value, x.ts,
           st.off_at,
           coalesce(lag(x.value) OVER w, b.value) AS prev,
           coalesce(lag(x.ts) OVER w, b.ts) AS prev_ts
      FROM anbu.gateway g
      JOIN anbu.sensor s ON s.gateway_id = g.id
      LEFT JOIN anbu.sensor_state st ON st.sensor_id = s.id
      LEFT JOIN LATERAL (SELECT p.value, p.ts FROM anbu.readings p
                          WHERE p.sensor_id = s.id AND p.ts < %(lo)s
                          ORDER BY p.ts DESC LIMIT 1) b ON true
      JOIN anbu.readings x ON x.sensor_id = s.id AND x.ts >= %(lo)s AND x.ts < %(hi)s
     WHERE g.resident_id = %(rid)s
    WINDOW w AS (PARTITION BY s.id ORDER BY x.ts)
), a AS (
    SELECT hour, kind, room, {ACT} AS act FROM r
)
SELECT hour, {COUNTS}
  FROM a GROUP BY hour ORDER BY hour
"""
_LIVE = _LIVE_TEMPLATE.replace("{ACT}", _ACT).replace("{COUNTS}", _COUNTS)


def summarize(conn: psycopg.Connection[Any], now: datetime) -> int:
    """One pass: recompute every hour touched by readings received since the last pass.

    Returns how many (home, hour) rows were written. The mark moves in the same transaction.
    """
    row = conn.execute(
        "SELECT through FROM anbu.summary_marks WHERE name = %s FOR UPDATE", (MARK,)
    ).fetchone()
    since = (row[0] if row is not None else now - FIRST_PASS) - OVERLAP
    keys = conn.execute(_TOUCHED_SINCE, (since,)).fetchall()
    written = _recompute(conn, keys)
    mark_summarised(conn, now)
    log.info("activity summarised", extra={"hours": written})
    return written


def mark_summarised(conn: psycopg.Connection[Any], through: datetime) -> None:
    """Record that what was received before `through` is summarised (the mark never moves
    back): after a `rebuild` of everything up to now, the next pass starts there."""
    conn.execute(
        """INSERT INTO anbu.summary_marks (name, through) VALUES (%s, %s)
           ON CONFLICT (name) DO UPDATE SET through = GREATEST(anbu.summary_marks.through,
                                                               excluded.through)""",
        (MARK, through),
    )


def summarised_from(conn: psycopg.Connection[Any]) -> datetime | None:
    """The first hour a pass may not have summarised yet: readings received after the mark
    (less the overlap for late commits) land in it or later. None: no pass yet."""
    row = conn.execute("SELECT through FROM anbu.summary_marks WHERE name = %s", (MARK,)).fetchone()
    if row is None:
        return None
    through: datetime = (row[0] - OVERLAP).astimezone(UTC)
    return through.replace(minute=0, second=0, microsecond=0)


def live_hours(
    conn: psycopg.Connection[Any], resident_id: int, lo: datetime, hi: datetime
) -> list[tuple[Any, ...]]:
    """One home's hours in [lo, hi) (whole UTC hours) recomputed from the readings now, as a
    pass would store them, stored nowhere: (hour, activity, motion, door, power_steps,
    readings, rooms), hours with no reading absent. For the hours a pass has not reached yet."""
    params = {"rid": resident_id, "lo": lo, "hi": hi, "step": POWER_STEP_W}
    return conn.execute(_LIVE, params).fetchall()


KEEP_LOCK_TIMEOUT = "5s"  # listing a zone waits this long for the hours' writers, then next pass


def keep_daily(conn: psycopg.Connection[Any], tz: ZoneInfo, since: date | None = None) -> None:
    """Keep `anbu.activity_daily` in the local days of `tz` (the first time: summed from the
    hours already there from `since`, six weeks back by default, writers of hours waiting
    meanwhile). Its own transaction: a lock not granted within KEEP_LOCK_TIMEOUT raises."""
    with conn.transaction():
        conn.execute("SELECT set_config('lock_timeout', %s, true)", (KEEP_LOCK_TIMEOUT,))
        conn.execute("SELECT anbu.keep_activity_daily(%s, %s)", (tz.key, since))


def rebuild(conn: psycopg.Connection[Any], lo: datetime, hi: datetime) -> int:
    """Recompute every home's hours with readings timed in [lo, hi)."""
    return _recompute(conn, conn.execute(_TOUCHED_BETWEEN, (lo, hi)).fetchall())


def _recompute(conn: psycopg.Connection[Any], keys: list[tuple[Any, ...]]) -> int:
    if not keys:
        return 0
    params = {"ids": [int(k[0]) for k in keys], "hours": [k[1] for k in keys], "step": POWER_STEP_W}
    return conn.execute(_RECOMPUTE, params).rowcount
