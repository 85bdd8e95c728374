"""Routine check-ins: per-resident plans, rounds as rows with a timer, calls through the queue.

schedule() turns plan slots into rounds (set-based SQL, idempotent per plan and slot) from each
plan's `scheduled_until`, so no slot is skipped after an outage: one too late to call is a
'missed' round with an event saying why (anbu.checkin_round_events, read by `round_events`);
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
from calls.checkin_policy import CheckinPolicy, decide, missed_before, quiet_end, watch_call
from calls.dialer import Priority, cancel_waiting
from core.clock import Clock
from core.config import Settings
from core.db import Database
from core.domain import CallOutcome

log = logging.getLogger(__name__)

# a plan's first tick looks back this far; after an outage, a slot this old (or from today) is
# still called, an older one from an earlier day is recorded as missed
LOOKBACK = timedelta(hours=1)
# a plan with no slot due still has its scheduled_until moved when it is this far behind, so
# that a tick after an outage rescans at most this much that was already scheduled
MARK_REFRESH = timedelta(hours=1)
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


# Each active plan's slots in (its scheduled_until, until] become rounds: called, or 'missed'
# with an event when older than `cutoff`; scheduled_until moves in the same statement. Only the
# plans with a slot to add or a mark older than `refresh_before` are locked and written (a tick
# writes a few rows, not every plan), and a plan another tick holds is skipped: two ticks at
# once never wait for each other and make each round once (the unique key (plan, slot) backs
# that up when one rescans what the other added).
_SCHEDULE = """
WITH base AS (
    SELECT p.id AS plan_id, p.resident_id, p.weekdays, p.local_time, p.scheduled_until,
           COALESCE(%(since)s, p.scheduled_until, %(fresh_since)s) AS since,
           r.status = 'active' AS calls
    FROM anbu.checkin_plans p
    JOIN anbu.resident r ON r.id = p.resident_id
    WHERE p.active
      AND (%(since)s IS NOT NULL OR p.scheduled_until IS NULL OR p.scheduled_until < %(until)s)
), slots AS (
    SELECT s.* FROM (
        SELECT b.plan_id, b.resident_id, b.since, b.calls,
               ((days.d + b.local_time) AT TIME ZONE %(tz)s) AS slot
        FROM base b
        CROSS JOIN LATERAL (
            SELECT g::date AS d
            FROM generate_series((b.since AT TIME ZONE %(tz)s)::date, %(d1)s::date,
                                 interval '1 day') g
        ) days
        WHERE extract(isodow FROM days.d)::smallint = ANY(b.weekdays)
    ) s
    WHERE s.slot > s.since AND s.slot <= %(until)s
), todo AS (
    SELECT plan_id FROM slots
    UNION
    SELECT plan_id FROM base
    WHERE scheduled_until IS NULL OR scheduled_until < %(refresh_before)s
), plans AS (
    SELECT p.id AS plan_id FROM anbu.checkin_plans p
    WHERE p.id IN (SELECT plan_id FROM todo)
      AND (%(since)s IS NOT NULL OR p.scheduled_until IS NULL OR p.scheduled_until < %(until)s)
    FOR NO KEY UPDATE SKIP LOCKED
), ins AS (
    INSERT INTO anbu.checkin_rounds (plan_id, resident_id, slot, next_action_at, state,
                                     finished_at)
    SELECT s.plan_id, s.resident_id, s.slot,
           CASE WHEN s.slot < %(cutoff)s THEN NULL ELSE s.slot END,
           CASE WHEN s.slot < %(cutoff)s THEN 'missed' ELSE 'calling' END,
           CASE WHEN s.slot < %(cutoff)s THEN %(now)s::timestamptz END
    FROM slots s JOIN plans USING (plan_id)
    WHERE s.calls
    ON CONFLICT (plan_id, slot) DO NOTHING
    RETURNING id, slot, state
), noted AS (
    INSERT INTO anbu.checkin_round_events (round_id, at, kind, reason_ko, reason_en)
    SELECT id, %(now)s, CASE WHEN state = 'missed' THEN 'missed' ELSE 'late' END,
           CASE WHEN state = 'missed'
                THEN '시스템 장애로 정기 안부전화를 걸지 못했습니다(예정: '
                     || to_char(slot AT TIME ZONE %(tz)s, 'FMMM"월 "FMDD"일 "HH24:MI')
                     || ', 당일이 지나 발신하지 않음). 대상자께 직접 안부를 확인해 주세요.'
                ELSE '시스템 장애로 정기 안부전화가 늦게 걸렸습니다(예정: '
                     || to_char(slot AT TIME ZONE %(tz)s, 'FMMM"월 "FMDD"일 "HH24:MI')
                     || ').' END,
           CASE WHEN state = 'missed'
                THEN 'routine check-in not called: no worker ran (due '
                     || to_char(slot AT TIME ZONE %(tz)s, 'FMMonth FMDD HH24:MI')
                     || ', its day is over) — please check on the resident'
                ELSE 'routine check-in called late: no worker ran (due '
                     || to_char(slot AT TIME ZONE %(tz)s, 'FMMonth FMDD HH24:MI') || ')' END
    FROM ins
    WHERE state = 'missed' OR slot < %(late)s
), moved AS (
    UPDATE anbu.checkin_plans p
       SET scheduled_until = GREATEST(p.scheduled_until, %(until)s)
      FROM plans pl WHERE p.id = pl.plan_id
)
SELECT count(*) FILTER (WHERE state = 'calling'), count(*) FILTER (WHERE state = 'missed')
FROM ins
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
        """Create the rounds of every plan slot in (scheduled until, until]; returns how many
        are new. However long no worker ran, every slot since the plan's last tick gets its
        round once: called (late) while its local day lasts or it is under LOOKBACK old, else
        recorded as missed with an event saying why. `since` overrides every plan's own mark."""
        with self.db.connection() as conn:
            called, missed = self.schedule_in(conn, until, since)
        if missed:
            log.warning("routine check-in slots missed while no worker ran",
                        extra={"missed": missed, "called_late_or_now": called})  # fmt: skip
        return called + missed

    def schedule_in(
        self,
        conn: psycopg.Connection[Any],
        until: datetime | None = None,
        since: datetime | None = None,
    ) -> tuple[int, int]:
        """schedule() in the caller's transaction; returns (rounds to call, rounds missed)."""
        now = self.clock.now()
        until = until or now
        row = conn.execute(
            _SCHEDULE,
            {
                "d1": until.astimezone(self.tz).date(),
                "tz": self.settings.timezone,
                "since": since,
                "fresh_since": now - LOOKBACK,  # a plan never scheduled yet
                "until": until,
                "now": now,
                "cutoff": missed_before(now, self.tz, LOOKBACK),
                "late": now - LOOKBACK,
                "refresh_before": until - MARK_REFRESH,
            },
        ).fetchone()
        assert row is not None
        return int(row[0]), int(row[1])

    def advance(self, limit: int = 1000) -> int:
        """Queue calls for due rounds and decide after finished calls; returns rounds touched.

        Each round's step (its decision and its call) runs in a savepoint: one that raises is
        rolled back alone and put off by `step_backoff`, and the others go on."""
        now = self.clock.now()
        with self.db.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
            rounds = cur.execute(_DUE, {"now": now, "n": limit}).fetchall()
            first = [k for k in rounds if int(k["attempts"]) == 0 and not k["step_failures"]]
            rest = rounds
            if first and self._first_calls(conn, first, now):
                taken = {k["id"] for k in first}
                rest = [k for k in rounds if k["id"] not in taken]
            for k in rest:
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

    def _first_calls(
        self, conn: psycopg.Connection[Any], rounds: list[dict[str, Any]], now: datetime
    ) -> bool:
        """The first calls of many rounds at once, as _step makes them one by one (a morning's
        10,000 rounds took six round trips each). One savepoint for all: when it
        fails, False, nothing is kept, and each round takes its own step in its own savepoint,
        so one bad round still fails alone."""
        try:
            calls = [self._call_row(k, 1, max(k["slot"], now)) for k in rounds]
            with conn.transaction():  # one savepoint for both statements
                conn.execute(
                    """UPDATE anbu.checkin_rounds k SET attempts = 1, next_action_at = d.due
                       FROM unnest(%s::bigint[], %s::timestamptz[]) AS d(id, due)
                       WHERE k.id = d.id""",
                    ([c[4] for c in calls], [c[2] + self.policy.watchdog for c in calls]),
                )
                self._queue(conn, calls, now)
        except Exception as exc:
            log.warning("first check-in calls not queued together; one round at a time",
                        extra={"rounds": len(rounds), "error": type(exc).__name__})  # fmt: skip
            return False
        return True

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
        row = self._call_row(k, attempt, at)
        cur.execute(
            """UPDATE anbu.checkin_rounds SET attempts = %s, next_action_at = %s WHERE id = %s""",
            (attempt, row[2] + self.policy.watchdog, k["id"]),
        )
        return row

    def _call_row(self, k: dict[str, Any], attempt: int, at: datetime) -> tuple[Any, ...]:
        """(idempotency key, resident, not before, attempt, round) of a round's call at `at`,
        moved past the resident's quiet hours."""
        not_before = quiet_end(at, k["quiet_start"], k["quiet_end"], self.tz)
        return (f"routine:{k['id']}:attempt:{attempt}", k["resident_id"], not_before, attempt,
                k["id"])  # fmt: skip

    def _queue(
        self, conn: psycopg.Connection[Any], rows: list[tuple[Any, ...]], now: datetime
    ) -> None:
        """Insert the calls (idempotent per round and attempt) and link them to their rounds,
        in one statement however many; ids in the order given (the due order: the most overdue
        is dialled first)."""
        keys, residents, not_before, attempts, rounds = (list(c) for c in zip(*rows, strict=True))
        conn.execute(
            """WITH ins AS (
                   INSERT INTO anbu.calls (idempotency_key, resident_id, purpose, status,
                       created_at, updated_at, priority, not_before, dial_state, attempt,
                       round_id)
                   SELECT q.key, q.resident_id, 'routine', 'queued', %(now)s, %(now)s,
                          %(priority)s, q.not_before, 'waiting', q.attempt, q.round_id
                   FROM unnest(%(keys)s::text[], %(residents)s::bigint[],
                               %(not_before)s::timestamptz[], %(attempts)s::int[],
                               %(rounds)s::bigint[])
                        WITH ORDINALITY AS q(key, resident_id, not_before, attempt, round_id, o)
                   ORDER BY q.o
                   ON CONFLICT (idempotency_key) DO NOTHING
                   RETURNING id, round_id)
               UPDATE anbu.checkin_rounds k SET last_call_id = ins.id
               FROM ins WHERE k.id = ins.round_id""",
            {"now": now, "priority": int(Priority.ROUTINE), "keys": keys,
             "residents": residents, "not_before": not_before, "attempts": attempts,
             "rounds": rounds},
        )  # fmt: skip


def unreached_streak(conn: psycopg.Connection[Any], resident_id: int, n: int) -> bool:
    """Whether the resident's last `n` finished routine check-ins were all unreached (a slot
    missed while no worker ran was never called: it neither counts nor breaks the streak)."""
    rows = conn.execute(
        """SELECT state FROM anbu.checkin_rounds
           WHERE resident_id = %s AND finished_at IS NOT NULL AND state <> 'missed'
           ORDER BY slot DESC LIMIT %s""",
        (resident_id, n),
    ).fetchall()
    return len(rows) == n and all(r[0] == "unreached" for r in rows)


def round_events(
    conn: psycopg.Connection[Any], resident_id: int, since: datetime
) -> list[tuple[datetime, datetime, str, str, str]]:
    """Why the resident's routine check-ins since `since` were missed or late, newest first:
    (slot, noted at, kind, Korean reason, English reason), for the care manager's view."""
    rows = conn.execute(
        """SELECT k.slot, e.at, e.kind, e.reason_ko, e.reason_en
           FROM anbu.checkin_round_events e JOIN anbu.checkin_rounds k ON k.id = e.round_id
           WHERE k.resident_id = %s AND k.slot >= %s ORDER BY k.slot DESC, e.id DESC""",
        (resident_id, since),
    ).fetchall()
    return [(r[0], r[1], str(r[2]), str(r[3]), str(r[4])) for r in rows]


def cancel_resident_checkins(
    conn: psycopg.Connection[Any], resident_id: int, now: datetime, reason_ko: str, reason_en: str
) -> tuple[list[int], list[int], list[int]]:
    """End a resident's routine check-ins, in the caller's transaction: plans made inactive,
    rounds still calling finished as 'cancelled' (reported: nothing for alerts to take) with an
    event saying why, and their calls still waiting in the send queue cancelled. A call a
    dialler already claimed is left to ring. Returns (plans, rounds, calls); idempotent."""
    plans = [int(r[0]) for r in conn.execute(
        """UPDATE anbu.checkin_plans SET active = false
           WHERE resident_id = %s AND active RETURNING id""", (resident_id,))]  # fmt: skip
    rounds = [int(r[0]) for r in conn.execute(
        """UPDATE anbu.checkin_rounds SET state = 'cancelled', next_action_at = NULL,
               finished_at = %s, reported_at = %s
           WHERE resident_id = %s AND state = 'calling' RETURNING id""",
        (now, now, resident_id))]  # fmt: skip
    calls: list[int] = []
    for round_id in sorted(rounds):
        calls += cancel_waiting(conn, None, now, "service_ended", round_id=round_id)
    with conn.cursor() as cur:
        cur.executemany(
            """INSERT INTO anbu.checkin_round_events (round_id, at, kind, reason_ko, reason_en)
               VALUES (%s, %s, 'cancelled', %s, %s) ON CONFLICT (round_id, kind) DO NOTHING""",
            [(round_id, now, reason_ko, reason_en) for round_id in sorted(rounds)],
        )
    return sorted(plans), sorted(rounds), calls
