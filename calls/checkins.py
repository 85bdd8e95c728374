"""Routine check-ins: per-resident plans, rounds as rows with a timer, calls through the queue.

schedule() turns plan slots into rounds (set-based SQL, idempotent per plan and slot);
advance() claims due rounds with FOR UPDATE SKIP LOCKED, queues their calls (respecting quiet
hours) and decides after each call. A call the send queue holds past the policy's
max_queue_wait is cancelled (calls.dialer.cancel_waiting) and counts as not reached, so the
round retries or finishes as unreached by its usual rules. One round whose step raises is
rolled back alone (a savepoint) and backed off; the others go on. Finished rounds that are not OK wait in the table for
alerts/intake to report them.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import psycopg
from psycopg.rows import dict_row

from calls.answers import record_acted_on
from calls.checkin_policy import CheckinPolicy, decide, quiet_end, watch_call
from calls.dialer import Priority, cancel_waiting
from core.clock import Clock
from core.config import Settings
from core.db import Database
from core.domain import CallOutcome

log = logging.getLogger(__name__)

LOOKBACK = timedelta(hours=1)  # slots missed while no worker ran are still called this late
MIN_WAKE = timedelta(seconds=1)  # a pushed timer never comes due in the same pass again
STEP_RETRY_FIRST = timedelta(minutes=1)  # a round whose step raised waits this, doubling,
STEP_RETRY_MAX = timedelta(minutes=30)  # up to this


def step_backoff(failures: int) -> timedelta:
    """How long a round whose step raised `failures` times in a row waits for the next try."""
    wait: timedelta = STEP_RETRY_FIRST * 2 ** min(max(failures - 1, 0), 16)
    return min(wait, STEP_RETRY_MAX)


def add_plan(
    conn: psycopg.Connection[Any], resident_id: int, weekdays: Sequence[int], local_time: time
) -> int:
    """A plan: ISO weekdays (1 = Monday) at a local time, e.g. ([1, 4], time(10))."""
    row = conn.execute(
        """INSERT INTO anbu.checkin_plans (resident_id, weekdays, local_time)
           VALUES (%s, %s::smallint[], %s) RETURNING id""",
        (resident_id, list(weekdays), local_time),
    ).fetchone()
    assert row is not None
    return int(row[0])


def policy_from(settings: Settings) -> CheckinPolicy:
    return CheckinPolicy(
        retries=settings.checkin_retries,
        unclear_retries=settings.checkin_unclear_retries,
        retry_interval=timedelta(minutes=settings.checkin_retry_minutes),
        watchdog=timedelta(seconds=max(settings.call_watchdog_s, settings.call_ring_timeout_s)),
    )


_SCHEDULE = """
WITH days AS (
    SELECT generate_series(%(d0)s::date, %(d1)s::date, interval '1 day')::date AS d
), slots AS (
    SELECT p.id AS plan_id, p.resident_id, ((d + p.local_time) AT TIME ZONE %(tz)s) AS slot
    FROM anbu.checkin_plans p
    JOIN anbu.resident r ON r.id = p.resident_id AND r.status = 'active'
    CROSS JOIN days
    WHERE p.active AND extract(isodow FROM d)::smallint = ANY(p.weekdays)
)
INSERT INTO anbu.checkin_rounds (plan_id, resident_id, slot, next_action_at)
SELECT plan_id, resident_id, slot, slot FROM slots
WHERE slot > %(since)s AND slot <= %(until)s
ON CONFLICT (plan_id, slot) DO NOTHING
"""

_DUE = """
SELECT k.id, k.resident_id, k.slot, k.attempts, k.last_call_id, k.step_failures,
       c.outcome, c.dial_state,
       c.dialled_at, GREATEST(c.created_at, c.not_before) AS queued_at,
       r.quiet_start, r.quiet_end
FROM anbu.checkin_rounds k
JOIN anbu.resident r ON r.id = k.resident_id
LEFT JOIN anbu.calls c ON c.id = k.last_call_id
WHERE k.state = 'calling' AND (k.next_action_at <= %(now)s OR c.outcome IS NOT NULL)
  AND (k.step_retry_at IS NULL OR k.step_retry_at <= %(now)s)
ORDER BY k.next_action_at
LIMIT %(n)s
FOR UPDATE OF k SKIP LOCKED
"""


class CheckinService:
    """Schedules and advances routine check-ins; the only writer of anbu.checkin_rounds."""

    def __init__(self, db: Database, settings: Settings, clock: Clock) -> None:
        self.db = db
        self.settings = settings
        self.clock = clock
        self.policy = policy_from(settings)
        self.tz = ZoneInfo(settings.timezone)

    def schedule(self, until: datetime | None = None, since: datetime | None = None) -> int:
        """Create the rounds of every plan slot in (since, until]; returns how many are new."""
        now = self.clock.now()
        until = until or now
        since = since or (now - LOOKBACK)
        with self.db.connection() as conn:
            cur = conn.execute(
                _SCHEDULE,
                {
                    "d0": since.astimezone(self.tz).date(),
                    "d1": until.astimezone(self.tz).date(),
                    "tz": self.settings.timezone,
                    "since": since,
                    "until": until,
                },
            )
            return int(cur.rowcount)

    def advance(self, limit: int = 1000) -> int:
        """Queue calls for due rounds and decide after finished calls; returns rounds touched.

        Each round's step (its decision and its call) runs in a savepoint: one that raises is
        rolled back alone and put off by `step_backoff`, and the others go on."""
        now = self.clock.now()
        with self.db.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
            rounds = cur.execute(_DUE, {"now": now, "n": limit}).fetchall()
            for k in rounds:
                try:
                    with conn.transaction():  # a savepoint: a failure undoes this round only
                        queued = self._step(cur, k, now)
                        if queued:
                            self._queue(conn, queued, now)
                        if k["step_failures"]:
                            cur.execute(
                                """UPDATE anbu.checkin_rounds SET step_failures = 0,
                                       step_retry_at = NULL WHERE id = %s""",
                                (k["id"],),
                            )
                except Exception as exc:
                    self._back_off(conn, k, now, exc)
        return len(rounds)

    def _back_off(
        self, conn: psycopg.Connection[Any], k: dict[str, Any], now: datetime, exc: Exception
    ) -> None:
        """After a round's step raised: count it and put the round off (ids only in the log)."""
        failures = int(k["step_failures"]) + 1
        retry_at = now + step_backoff(failures)
        log.error("check-in round step failed; backing off", exc_info=exc,
                  extra={"round_id": k["id"], "resident_id": k["resident_id"],
                         "failures": failures, "retry_at": retry_at.isoformat()})  # fmt: skip
        try:
            with conn.transaction():
                conn.execute(
                    """UPDATE anbu.checkin_rounds SET step_failures = %s, step_retry_at = %s,
                           next_action_at = %s WHERE id = %s""",
                    (failures, retry_at, retry_at, k["id"]),
                )
        except Exception:  # the next pass claims it again
            log.exception("round back-off not recorded", extra={"round_id": k["id"]})

    def _step(self, cur: Any, k: dict[str, Any], now: datetime) -> list[tuple[Any, ...]]:
        attempts = int(k["attempts"])
        if attempts == 0:
            return [self._call(cur, k, 1, max(k["slot"], now))]
        outcome = CallOutcome(k["outcome"]) if k["outcome"] else None
        if outcome is None and self._still_pending(cur, k, now):
            return []
        decision = decide(outcome, attempts, now, self.policy)
        if k["last_call_id"] is not None:  # a help answer after this one is reported late
            record_acted_on(
                cur.connection, int(k["last_call_id"]), outcome or CallOutcome.NO_ANSWER
            )
        if decision.state is not None:
            cur.execute(
                """UPDATE anbu.checkin_rounds SET state = %s, next_action_at = NULL,
                       finished_at = %s WHERE id = %s""",
                (decision.state, now, k["id"]),
            )
            log.info("check-in round finished",
                     extra={"round_id": k["id"], "resident_id": k["resident_id"],
                            "state": decision.state})  # fmt: skip
            return []
        assert decision.attempt is not None and decision.at is not None
        return [self._call(cur, k, decision.attempt, decision.at)]

    def _still_pending(self, cur: Any, k: dict[str, Any], now: datetime) -> bool:
        """The round's call has no result yet: True while it is still queued or rang less than
        a watchdog ago (the timer moves on); False when that means it was not reached: it rang
        with no result, or the queue held it past max_queue_wait (cancelled here)."""
        watch = watch_call(k["dial_state"] == "waiting", k["queued_at"], k["dialled_at"], now,
                           self.policy.watchdog, self.policy.max_queue_wait)  # fmt: skip
        if watch.verdict == "no_answer":
            return False
        if watch.verdict == "wait":
            assert watch.until is not None
            self._wake_at(cur, k["id"], max(watch.until, now + MIN_WAKE))
            return True
        waited = int((now - k["queued_at"]).total_seconds())
        cancelled = cancel_waiting(cur.connection, None, now, "queue_timeout", round_id=k["id"],
                                   details={"waited_s": waited})  # fmt: skip
        if k["last_call_id"] not in cancelled:  # a dialler took it meanwhile: it rings now
            self._wake_at(cur, k["id"], now + self.policy.watchdog)
            return True
        log.warning("check-in call never dialled, cancelled",
                    extra={"round_id": k["id"], "resident_id": k["resident_id"],
                           "attempt": k["attempts"], "waited_s": waited})  # fmt: skip
        return False

    def _wake_at(self, cur: Any, round_id: int, at: datetime) -> None:
        cur.execute(
            "UPDATE anbu.checkin_rounds SET next_action_at = %s WHERE id = %s", (at, round_id)
        )

    def _call(self, cur: Any, k: dict[str, Any], attempt: int, at: datetime) -> tuple[Any, ...]:
        not_before = quiet_end(at, k["quiet_start"], k["quiet_end"], self.tz)
        cur.execute(
            """UPDATE anbu.checkin_rounds SET attempts = %s, next_action_at = %s WHERE id = %s""",
            (attempt, not_before + self.policy.watchdog, k["id"]),
        )
        return (f"routine:{k['id']}:attempt:{attempt}", k["resident_id"], not_before, attempt,
                k["id"])  # fmt: skip

    def _queue(
        self, conn: psycopg.Connection[Any], rows: list[tuple[Any, ...]], now: datetime
    ) -> None:
        """Insert the calls (idempotent per round and attempt) and link them to their rounds."""
        with conn.cursor() as cur:
            cur.executemany(
                """WITH ins AS (
                       INSERT INTO anbu.calls (idempotency_key, resident_id, purpose, status,
                           created_at, updated_at, priority, not_before, dial_state, attempt,
                           round_id)
                       VALUES (%s, %s, 'routine', 'queued', %s, %s, %s, %s, 'waiting', %s, %s)
                       ON CONFLICT (idempotency_key) DO NOTHING
                       RETURNING id, round_id)
                   UPDATE anbu.checkin_rounds k SET last_call_id = ins.id
                   FROM ins WHERE k.id = ins.round_id""",
                [(key, rid, now, now, int(Priority.ROUTINE), nb, attempt, round_id)
                 for key, rid, nb, attempt, round_id in rows],
            )  # fmt: skip


def unreached_streak(conn: psycopg.Connection[Any], resident_id: int, n: int) -> bool:
    """Whether the resident's last `n` finished routine check-ins were all unreached."""
    rows = conn.execute(
        """SELECT state FROM anbu.checkin_rounds
           WHERE resident_id = %s AND finished_at IS NOT NULL
           ORDER BY slot DESC LIMIT %s""",
        (resident_id, n),
    ).fetchall()
    return len(rows) == n and all(r[0] == "unreached" for r in rows)
