"""The worker's minute sweep: judge only the homes that have something due, not every home.

`anbu.sweep_due` holds, per home with activity, the moment the full scan (detectors.sweep) may
next have something to say about it (detectors.due computes it after judging the home); the
triggers of migration 0061 pull it in when what it came from changes: activity (a new silence
is due no sooner than its start plus the home's lead), the resident's status, its end, level
caps and quiet hours, a status change, the learned routine, gateways going down or up. Each
tick reads the homes due by `now` through the index, judges those the full scan would score
with the very same rows and rules (detectors.sweep.judge_rows), and writes their next due time,
unless the row changed under it meanwhile (then the trigger's time stands: early, never late).
So a tick raises exactly what the full scan would, reading a few thousand homes, not millions.

A full pass, which judges every home like the full scan and rebuilds every due time, runs on
the first tick of a process (the due times were computed by another one, under its policy),
when the clock stepped back behind the last tick (levels a skipped minute would have raised
are due again) and when the UTC offset changed (start slots move); it says so in the log, with
why. A policy other than the one the due times were computed under, on a later tick, is
another worker running with other settings: an error in the log, and the due times stand
(two workers rebuilding them in turn would make every tick a full pass).

One worker sweeps at a time (an advisory lock; another one finding it taken skips the
minute), and the moment judged is read once the lock is held, so two workers' ticks never
see the clock step back. No due time is written more than an hour ahead (MAX_AHEAD_S). The
tick never waits for a home's row: one that a batch of ingest holds is being pulled in by a
trigger (or is due already) and is judged at the next tick; other lock waits are bounded
(LOCK_TIMEOUT) and the tick is retried.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import psycopg

from detectors.due import DueColumns, due_times
from detectors.inactivity import InactivityPolicy
from detectors.routine import RoutinePolicy
from detectors.sweep import (
    HELD_UNTIL,
    MIN_LEVEL_H,
    SUPPRESSING_STATUSES,
    SWEEP_LOCK,
    NewFinding,
    earliest_hours,
    judge_rows,
    sweep_params,
)

log = logging.getLogger(__name__)

MAX_AHEAD_S = 3600.0  # no due time further ahead: a change no trigger saw is an hour late at most
# A home's cap is its own point of the last quarter of that hour (the golden ratio of its id),
# so the homes a full pass wrote are not all due again in one minute an hour later.
_SPREAD = 0.25
_GOLDEN = 0.6180339887498949
LOCK_TIMEOUT = "2s"  # the longest the tick waits for any lock before it is retried
TRIES = 3
CHUNK = 5000  # homes locked and written at a time, in ascending order

# The homes due by now (every home in a full pass), with the version of their row as read.
_DUE = """
SELECT resident_id, xmin::text::bigint FROM anbu.sweep_due
 WHERE %(all)s OR due_at <= %(now)s OR resident_id = ANY(%(left)s::bigint[])
"""
# A home with activity but no row (written before the triggers, or lost) gets one, due at once.
_ADD_MISSING = """
INSERT INTO anbu.sweep_due (resident_id, due_at)
SELECT a.resident_id, '-infinity' FROM anbu.home_activity a
 WHERE NOT EXISTS (SELECT 1 FROM anbu.sweep_due d WHERE d.resident_id = a.resident_id)
ON CONFLICT (resident_id) DO NOTHING
"""
# Each of those homes with the row the full scan's query (detectors.sweep._HOMES) gives it,
# whether that query returns it (`wanted`) and what the due time needs besides. The row's
# expressions are _HOMES's, per home; the gateway and status-change lookups are per home (an
# index probe each), not an aggregate over every home. A home left out by _HOMES (service
# ended, every gateway down) is not `present`: it waits for a change.
_DUE_HOMES = (
    """
WITH h AS (
SELECT d.resident_id AS due_id, d.seen, r.id IS NOT NULL AND g.down IS NOT TRUE AS present,
       r.id, r.home, r.status, r.status_until, a.last_activity_at,
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
       c.changed_at, b.resident_id IS NOT NULL AS has_routine, b.anchor_slot, b.out_h,
       b.bathroom_h, m.until AS held_until
  FROM unnest(%(ids)b::bigint[], %(seen)b::bigint[]) AS d(resident_id, seen)
  LEFT JOIN anbu.home_activity a ON a.resident_id = d.resident_id
  LEFT JOIN anbu.resident r ON r.id = a.resident_id AND r.status <> 'ended'
  LEFT JOIN anbu.baselines b ON b.resident_id = r.id AND NOT b.grace
"""  # nosec B608  # constant SQL pieces joined; values are %(name)s parameters
    + HELD_UNTIL
    + """  LEFT JOIN LATERAL (SELECT max(x.at) AS changed_at FROM anbu.resident_changes x
                      WHERE x.resident_id = r.id AND x.field = 'status') c ON true
  LEFT JOIN LATERAL (SELECT bool_and(gw.online IS FALSE) AS down FROM anbu.gateway gw
                      WHERE gw.resident_id = r.id AND gw.removed_at IS NULL) g ON true
), hi AS (
SELECT h.*, GREATEST(h.start, LEAST(coalesce(h.held_until, '-infinity'), %(now)s::timestamptz))
       AS istart FROM h
), k AS (
SELECT h.*, 1 + floor(mod(extract(epoch FROM h.istart) + %(offset_s)s::numeric, 86400)
                      / 1800)::int AS slot
  FROM hi h
)
SELECT k.due_id, k.seen, k.present,
       coalesce(k.start <= %(now)s - make_interval(secs => 3600 * LEAST(%(earliest_h)s,
                                      k.watch_h_max, k.warning_h_max, k.critical_h_max))
                OR (k.watch_h IS NOT NULL AND k.wake_h BETWEEN %(wake_lo)s AND %(wake_hi)s
                    AND k.start < %(morning)s::timestamptz), false),
       k.id, k.home, k.status, k.status_until, k.held, k.start,
       extract(epoch FROM k.start)::float8, k.gone_out, k.watch_h IS NOT NULL,
       k.watch_h IS NOT NULL AND k.wake_h BETWEEN %(wake_lo)s AND %(wake_hi)s
         AND k.start < %(morning)s::timestamptz,
       CASE WHEN array_length(k.watch_h, 1) = 48 THEN k.watch_h[k.slot] END,
       CASE WHEN array_length(k.step_h, 1) = 48 THEN k.step_h[k.slot] END,
       CASE WHEN array_length(k.usual_h, 1) = 48 THEN k.usual_h[k.slot] END,
       k.watch_h_max, k.warning_h_max, k.critical_h_max, k.in_bathroom,
       k.istart, extract(epoch FROM k.istart)::float8,
       extract(epoch FROM k.changed_at)::float8, k.has_routine, k.anchor_slot, k.wake_h, k.out_h,
       k.bathroom_h
  FROM k
"""  # nosec B608  # constant SQL pieces joined; values are %(name)s parameters
)
_ROW = slice(4, 23)  # the columns of detectors.sweep._HOMES, in its order
# Locked in ascending order, skipping a row another transaction holds: ingest locks the rows of
# a batch's homes before writing anything (ingest.store), and its triggers then write them to
# a due time no later than the one read, which stands; a home left so is judged next tick.
# Written only where the row is still the version read: a trigger that wrote it meanwhile
# (activity, a status change) keeps its due time, which is the earlier one.
_LOCK = """
SELECT resident_id FROM anbu.sweep_due WHERE resident_id = ANY(%b)
 ORDER BY resident_id FOR NO KEY UPDATE SKIP LOCKED
"""
_WRITE = """
UPDATE anbu.sweep_due d SET due_at = to_timestamp(v.due), lead_s = v.lead
  FROM unnest(%b::bigint[], %b::float8[], %b::float8[], %b::bigint[]) AS v(id, due, lead, seen)
 WHERE d.resident_id = v.id AND d.xmin::text::bigint = v.seen
"""
_STATE = "SELECT last_now, utc_offset_s, policy FROM anbu.sweep_state"
_SAVE_STATE = """
INSERT INTO anbu.sweep_state (id, last_now, utc_offset_s, policy) VALUES (true, %s, %s, %s)
ON CONFLICT (id) DO UPDATE SET last_now = excluded.last_now,
    utc_offset_s = excluded.utc_offset_s, policy = excluded.policy
"""


@dataclass(frozen=True, slots=True)
class Tick:
    """What one tick did: a full pass (and why) or the homes due; how many it read and judged."""

    full: str | None
    homes: int
    judged: int
    seconds: float


class DueSweep:
    """The minute sweep over the homes due; one object per worker process."""

    def __init__(self, policy: InactivityPolicy, routine: RoutinePolicy | None = None) -> None:
        self.policy = policy
        self.routine = routine or RoutinePolicy(fixed=policy)
        self.last: Tick | None = None
        self._left: set[int] = set()  # homes read but not written (rows held): judged next tick
        self._other_policy = False
        self._recorded = ""
        self.skipped = 0

    def tick(
        self, conn: psycopg.Connection[Any], now: datetime | Callable[[], datetime]
    ) -> list[NewFinding]:
        """Judge the homes due at `now` (every home in a full pass); store and return the
        findings new to their silence, as the full scan would. The caller commits.

        `now` is best the clock itself (read once this worker holds the sweep); when another
        worker is sweeping, this tick does nothing and returns no findings (counted in
        `skipped`; `last` stays the last tick done)."""
        began = time.perf_counter()
        if not conn.autocommit:  # in the caller's transaction: a lock refused undoes the try only
            conn.execute("SELECT 1")
        for attempt in range(1, TRIES + 1):
            try:
                with conn.transaction():
                    return self._tick(conn, now, began)
            except psycopg.errors.LockNotAvailable:
                if attempt == TRIES:
                    raise
                log.warning("sweep: a lock was not granted in %s, tick retried", LOCK_TIMEOUT)
        raise AssertionError("unreachable")

    def _tick(
        self,
        conn: psycopg.Connection[Any],
        clock: datetime | Callable[[], datetime],
        began: float,
    ) -> list[NewFinding]:
        timeout = conn.execute("SELECT current_setting('lock_timeout')").fetchone()
        conn.execute("SELECT set_config('lock_timeout', %s, true)", (LOCK_TIMEOUT,))
        held = conn.execute("SELECT pg_try_advisory_xact_lock(%s)", (SWEEP_LOCK,)).fetchone()
        if not (held and held[0]):  # another worker is sweeping: this minute is its
            self.skipped += 1
            _restore(conn, timeout)
            return []
        now = clock() if callable(clock) else clock
        params = sweep_params(now, self.policy, self.routine)
        full = self._full_pass(conn, now, float(params["offset_s"]))
        if full is not None:
            conn.execute(_ADD_MISSING)
        left = sorted(self._left)
        # never prepared: a generic plan would read the whole table for a handful of homes
        due = conn.execute(
            _DUE, {"all": full is not None, "now": now, "left": left}, prepare=False
        ).fetchall()
        rows_read = (
            conn.execute(
                _DUE_HOMES,
                {**params, "ids": [r[0] for r in due], "seen": [r[1] for r in due]},
                prepare=False,
            ).fetchall()
            if due
            else []
        )
        judged = [r[_ROW] for r in rows_read if r[2] and r[3]]
        found, failed = judge_rows(conn, now, self.policy, self.routine, judged)
        self._left = self._write(conn, now, rows_read, set(failed))
        policy = self._recorded if self._other_policy else self._policy_key()
        conn.execute(_SAVE_STATE, (now, params["offset_s"], policy))
        _restore(conn, timeout)
        self.last = Tick(full, len(rows_read), len(judged), time.perf_counter() - began)
        if full is not None:
            log.info("sweep: full pass rebuilt the due time of every home (%s)", full,
                     extra={"homes": len(rows_read), "seconds": round(self.last.seconds, 2)})  # fmt: skip
        return found

    def _policy_key(self) -> str:
        return repr((self.policy, self.routine, MIN_LEVEL_H))

    def _full_pass(
        self, conn: psycopg.Connection[Any], now: datetime, offset_s: float
    ) -> str | None:
        """Why this tick must judge every home, or None when the due times hold."""
        row = conn.execute(_STATE).fetchone()
        was, self._other_policy = self._other_policy, False
        if self.last is None:
            return "first tick since this worker started"
        if row is None:
            return "no earlier sweep recorded"
        last_now, last_offset, policy = row
        if now < last_now:
            return f"the clock stepped back from {last_now.isoformat()} to {now.isoformat()}"
        if float(last_offset) != offset_s:
            return "the UTC offset changed"
        if policy != self._policy_key():
            # another worker with other settings: rebuilding here, there, here... would make
            # every tick a full pass; the due times stand (early or late by an hour at most)
            self._other_policy, self._recorded = True, str(policy)
            if not was:
                log.error("sweep: another worker computes the due times under another policy; "
                          "they are kept, not rebuilt: run every worker with the same settings")  # fmt: skip
        return None

    def _write(
        self,
        conn: psycopg.Connection[Any],
        now: datetime,
        rows: list[tuple[Any, ...]],
        failed: set[int],
    ) -> set[int]:
        """The next due time of every home read, but those whose judgement failed (still due),
        in ascending chunks; returns the homes whose row another transaction held (not
        written: judged again next tick)."""
        present = [r for r in rows if r[2] and int(r[0]) not in failed]
        absent = [r for r in rows if not r[2]]  # left out: looked at again within the hour
        due, lead = (
            due_times(
                _columns(present),
                now.timestamp(),
                self.policy,
                self.routine,
                ZoneInfo(self.policy.timezone),
                MIN_LEVEL_H,
                earliest_hours(self.policy, self.routine),
            )
            if present
            else (np.zeros(0), np.zeros(0))
        )
        at_s = now.timestamp()

        def cap(rid: int, d: float) -> float:
            latest = at_s + MAX_AHEAD_S * (1.0 - _SPREAD * ((rid * _GOLDEN) % 1.0))
            return d if d < latest else latest  # NaN and +inf too

        todo = sorted(
            [
                (int(r[0]), cap(int(r[0]), d), float(ld), int(r[1]))
                for r, d, ld in zip(present, due.tolist(), lead.tolist(), strict=True)
            ]
            + [(int(r[0]), cap(int(r[0]), math.inf), 0.0, int(r[1])) for r in absent]
        )
        held: set[int] = set()
        for at in range(0, len(todo), CHUNK):
            chunk = todo[at : at + CHUNK]
            ids = [t[0] for t in chunk]
            got = {r[0] for r in conn.execute(_LOCK, (ids,), prepare=False).fetchall()}
            held.update(i for i in ids if i not in got)
            mine = [t for t in chunk if t[0] in got]
            if mine:
                cols = list(zip(*mine, strict=True))
                conn.execute(_WRITE, (list(cols[0]), list(cols[1]), list(cols[2]),
                                      list(cols[3])), prepare=False)  # fmt: skip
        return held


def _restore(conn: psycopg.Connection[Any], timeout: tuple[Any, ...] | None) -> None:
    """The caller's lock_timeout again, for the rest of its transaction."""
    if timeout is not None:
        conn.execute("SELECT set_config('lock_timeout', %s, true)", (timeout[0],))


def _columns(rows: list[tuple[Any, ...]]) -> DueColumns:
    """The due times' inputs from rows of `_DUE_HOMES` (homes present)."""

    def col(k: int) -> np.ndarray:
        return np.array([math.nan if r[k] is None else float(r[k]) for r in rows], np.float64)

    def flag(k: int) -> np.ndarray:
        return np.array([bool(r[k]) for r in rows], np.bool_)

    hold_end = np.array(
        [
            r[7].timestamp() if r[6] in SUPPRESSING_STATUSES and r[7] is not None else math.nan
            for r in rows
        ],
        np.float64,
    )
    return DueColumns(
        start_s=col(10),
        istart_s=col(22),
        hold_end_s=hold_end,
        changed_s=col(23),
        gone_out=flag(11),
        wanted=flag(3),
        wakes=flag(13),
        has_routine=flag(24),
        learned=flag(12),
        watch=col(14),
        step=col(15),
        caps=np.column_stack([col(17), col(18), col(19)]),
        in_bathroom=flag(20),
        anchor_slot=col(25),
        wake_h=col(26),
        out_h=col(27),
        bathroom_h=col(28),
    )
