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
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import psycopg

from detectors.evidence import Row, build_evidence
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
    store_baseline(conn, resident_id, now, baseline)
    return baseline


_AUTOMATIC = """
UPDATE anbu.sensor s SET automatic = n.automatic
  FROM unnest(%s::text[], %s::boolean[]) AS n(sensor, automatic), anbu.gateway g
 WHERE g.id = s.gateway_id AND g.resident_id = %s
   AND s.gateway_id || '/' || s.vendor_id = n.sensor AND s.automatic <> n.automatic
"""


def _mark_automatic(conn: psycopg.Connection[Any], resident_id: int, baseline: Baseline) -> None:
    """Tell ingest which plugs switch by themselves, so their steps stop counting as activity.

    A baseline that has judged its plugs decides (a new home's too, once it has a few days of
    data); ingest picks the flags up when it next reloads the registry.
    """
    if not baseline.sensors:
        return
    conn.execute(_AUTOMATIC, (list(baseline.sensors), list(baseline.automatic), resident_id))


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
