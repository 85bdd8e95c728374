"""Nightly learning against the database: each home's readings in, its baseline row out.

Reads `anbu.readings` (the rolling window before `now`) per home, learns with the pure
detectors.learning, upserts `anbu.baselines`. `register_jobs` adds the 03:00 Asia/Seoul job.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import psycopg

from detectors.evidence import DOOR, ROOMS, Evidence, Row, build_evidence
from detectors.learning import Baseline, LearningPolicy, learn

log = logging.getLogger(__name__)

_HOMES = "SELECT id, created_at FROM anbu.resident WHERE status <> 'ended' ORDER BY id"
_READINGS = """
SELECT r.ts, s.gateway_id || '/' || s.vendor_id, s.kind, s.room, r.value
  FROM anbu.readings r
  JOIN anbu.sensor s ON s.id = r.sensor_id
  JOIN anbu.gateway g ON g.id = s.gateway_id
 WHERE g.resident_id = %s AND r.ts >= %s AND r.ts < %s
 ORDER BY r.ts
"""
_FIRST = """
SELECT min(r.ts) FROM anbu.readings r JOIN anbu.sensor s ON s.id = r.sensor_id
  JOIN anbu.gateway g ON g.id = s.gateway_id WHERE g.resident_id = %s AND r.ts < %s
"""
_UPSERT = """
INSERT INTO anbu.baselines
       (resident_id, learned_at, history_days, grace, watch_h, step_h, usual_h, model,
        anchor_slot, wake_h, out_h, bathroom_h)
VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
ON CONFLICT (resident_id) DO UPDATE SET learned_at = excluded.learned_at,
       history_days = excluded.history_days, grace = excluded.grace,
       watch_h = excluded.watch_h, step_h = excluded.step_h, usual_h = excluded.usual_h,
       model = excluded.model, anchor_slot = excluded.anchor_slot, wake_h = excluded.wake_h,
       out_h = excluded.out_h, bathroom_h = excluded.bathroom_h
"""


def store_baseline(
    conn: psycopg.Connection[Any], resident_id: int, learned_at: datetime, baseline: Baseline
) -> None:
    """Store a home's baseline: the whole model, and the columns the live sweep reads."""
    conn.execute(
        _UPSERT,
        (
            resident_id,
            learned_at,
            baseline.history_days,
            baseline.grace,
            list(baseline.watch_h) or None,
            list(baseline.step_h) or None,
            list(baseline.usual_h) or None,
            json.dumps(baseline.to_json()),
            baseline.anchor_slot,
            _or_none(baseline.wake_h),
            _or_none(baseline.out_h[0]),
            _or_none(baseline.bathroom_h[0]),
        ),
    )


def _or_none(v: float) -> float | None:
    return None if math.isnan(v) else v


def home_rows(
    conn: psycopg.Connection[Any], resident_id: int, lo: datetime, hi: datetime
) -> list[Row]:
    """One home's readings in [lo, hi) as evidence rows, sensors named `<gateway>/<vendor id>`."""
    return [
        (ts.timestamp(), str(sensor), str(kind), str(room), float(value))
        for ts, sensor, kind, room, value in conn.execute(_READINGS, (resident_id, lo, hi))
    ]


def learn_home(
    conn: psycopg.Connection[Any], resident_id: int, now: datetime, policy: LearningPolicy
) -> Baseline:
    """Learn one home from its readings before `now` and store the baseline."""
    tz = ZoneInfo("Asia/Seoul")
    lo = now - timedelta(days=policy.window_days + 1)
    rows = home_rows(conn, resident_id, lo, now)
    first = conn.execute(_FIRST, (resident_id, now)).fetchone()
    ev = build_evidence(rows)
    if first is not None and first[0] is not None:  # history began before the window
        ev = replace(ev, first_t=first[0].timestamp())
    baseline = learn(ev, now.timestamp(), tz, policy)
    _mark_automatic(conn, resident_id, baseline)
    _forget_automatic_activity(conn, resident_id, ev, baseline, now)
    store_baseline(conn, resident_id, now, baseline)
    return baseline


_AUTOMATIC = """
UPDATE anbu.sensor s SET automatic = n.automatic, hold_s = n.hold_s
  FROM unnest(%s::text[], %s::boolean[], %s::real[]) AS n(sensor, automatic, hold_s),
       anbu.gateway g
 WHERE g.id = s.gateway_id AND g.resident_id = %s
   AND s.gateway_id || '/' || s.vendor_id = n.sensor
   AND (s.automatic <> n.automatic OR s.hold_s IS DISTINCT FROM n.hold_s)
"""


def _mark_automatic(conn: psycopg.Connection[Any], resident_id: int, baseline: Baseline) -> None:
    """Tell ingest which plugs switch by themselves, so their steps stop counting as activity.

    A baseline that has judged its plugs decides (a new home's too, once it has a few days of
    data); ingest picks the flags up when it next reloads the registry. The learned holds go
    with them, for the live sweep (NULL in grace: the fixed open hold, as offline).
    """
    if not baseline.sensors:
        return
    holds: list[float | None] = (
        [float(h) for h in baseline.hold_s]
        if len(baseline.hold_s) == len(baseline.sensors)
        else [None] * len(baseline.sensors)
    )
    conn.execute(_AUTOMATIC, (list(baseline.sensors), list(baseline.automatic), holds, resident_id))


# Compare-and-set: only while the home's last activity is still the one learning read (ingest
# may have stored a newer one since; activity times only move forward otherwise).
_MOVE_BACK = """
UPDATE anbu.home_activity SET last_activity_at = %s, last_room = %s
 WHERE resident_id = %s AND last_activity_at = %s
"""


def _forget_automatic_activity(
    conn: psycopg.Connection[Any], resident_id: int, ev: Evidence, baseline: Baseline, now: datetime
) -> None:
    """A plug just found switching by itself stops counting backwards too, as offline: when the
    home's last activity is such a plug's step (a new home's fridge kept it "active" while its
    resident lay still), the silence counts again from the resident's last doing."""
    if not any(baseline.automatic) or ev.event_t.size == 0:
        return
    # ingest's order: the home's due row before its activity row (a trigger on the one writes
    # the other), so that the two never wait on each other
    conn.execute(
        "SELECT 1 FROM anbu.sweep_due WHERE resident_id = %s FOR NO KEY UPDATE", (resident_id,)
    )
    row = conn.execute(
        "SELECT last_activity_at FROM anbu.home_activity WHERE resident_id = %s", (resident_id,)
    ).fetchone()
    if row is None or row[0] is None or row[0] > now:
        return  # newer than the readings learning read: ingest's, by the new flags
    auto = baseline.automatic_array(ev)
    last = row[0].timestamp()
    near = np.abs(ev.event_t - last) <= 1.0
    if not np.any(near & auto[ev.event_sensor]):
        return  # the last activity is not a self-switching plug's
    person = np.flatnonzero(~auto[ev.event_sensor] & (ev.event_t <= last))
    if person.size == 0:
        return  # nothing of the resident in the window: leave it to the fixed rule's ceiling
    k = int(person[-1])
    if ev.sensor_kind[ev.event_sensor[k]] == DOOR:
        return  # the door last: the sweep would read an outing; the fridge's silence is surer
    at = datetime.fromtimestamp(float(ev.event_t[k]), UTC)
    room = ROOMS[int(ev.sensor_room[ev.event_sensor[k]])]
    conn.execute(_MOVE_BACK, (at, room, resident_id, row[0]))


def learn_all(db: Any, now: datetime, policy: LearningPolicy | None = None) -> int:
    """Learn every active home, one transaction each; returns how many were learned.

    A home whose learning raises keeps its previous baseline (its transaction is rolled back,
    logged by resident id) and the rest of the homes are still learned that night."""
    policy = policy or LearningPolicy()
    with db.connection() as conn:
        ids = [int(r[0]) for r in conn.execute(_HOMES)]
    failed: list[int] = []
    for rid in ids:
        try:
            with db.connection() as conn:
                learn_home(conn, rid, now, policy)
        except Exception:
            failed.append(rid)
            log.exception("learning one home failed; the others go on",
                          extra={"resident_id": rid})  # fmt: skip
    learned = len(ids) - len(failed)
    log.info("baselines learned", extra={"homes": learned, "failed": failed})
    return learned


def register_jobs(scheduler: Any, db: Any, now: Callable[[], datetime]) -> None:
    """Add the nightly learning (03:00 Asia/Seoul) to an APScheduler scheduler."""
    scheduler.add_job(
        lambda: learn_all(db, now()),
        "cron",
        hour=3,
        minute=0,
        timezone="Asia/Seoul",
        id="learn_baselines",
        max_instances=1,
        coalesce=True,
    )
