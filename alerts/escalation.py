"""Escalation: telling care managers, up the ladder while nobody acknowledges.

Each step is written to alert_events with its reason and told by SMS and the dashboard (and a
voice call when the alert is critical). The top of the ladder is reminded a bounded number of
times (policy.wait_after), then the reminders stop; a severity raised after they stopped tells
the top again and starts its reminders over (rearm).

A step writes its notifications in the alert's transaction under a deterministic key (alert,
care manager, channel, level, round), so a replayed step tells nobody twice; its SMS are sent
by SmsOutbox after that transaction commits, never while it holds the alert.

SmsOutbox claims due SMS one at a time with FOR UPDATE SKIP LOCKED and records the attempt
('sending', committed) before asking Twilio, so any number of workers send each message once.
A carrier that cannot be reached is tried again with a growing wait; a refusal is final, kept
with its reason and written to the alert's audit trail, while the dashboard notification
stands and the ladder's timer goes on regardless. A send whose worker died before it could
record the result is sent again after a lease, and the row counts the interruption.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

import psycopg
from psycopg.rows import dict_row

from alerts.audit import record_event
from alerts.machine import Event, next_state
from alerts.policy import TOP_LEVEL, EscalationPolicy
from calls.sms import SmsNotSent, SmsRefused
from core.clock import Clock
from core.db import Database
from core.domain import AlertState, Severity

log = logging.getLogger(__name__)


class Messaging(Protocol):
    """What escalation needs from calls/: an SMS (sent by the outbox after commit; returns its
    sid, raises calls.sms.SmsRefused or SmsNotSent), and a voice call to a care manager."""

    def send_sms(self, to: str, body: str) -> str | None: ...

    def call_care_manager(
        self, alert_id: int, care_manager_id: int, message_ko: str, step: int = 0
    ) -> int: ...


def wake_at(conn: psycopg.Connection[Any], alert_id: int, at: datetime | None) -> None:
    """Move the alert's timer (None: no timer) without a transition."""
    conn.execute("UPDATE anbu.alerts SET next_action_at = %s WHERE id = %s", (at, alert_id))


class Escalation:
    """Escalates alerts and notifies care managers, in the caller's transaction.

    `a` is the alert's row with its resident's dong_code and home (what the SMS names).
    """

    def __init__(self, messaging: Messaging, policy: EscalationPolicy, dashboard_url: str) -> None:
        self.messaging = messaging
        self.policy = policy
        self.dashboard_url = dashboard_url.rstrip("/")

    def climb(self, conn: psycopg.Connection[Any], a: dict[str, Any], now: datetime) -> None:
        """Nobody acknowledged in time: tell the next step, or the top once more."""
        state = AlertState.ESCALATED
        current = int(a["escalation_level"])
        waited = self.policy.wait_after(current)
        if waited is None:  # the top's repeats are spent (an alert timed before the cap)
            wake_at(conn, a["id"], None)
            self._record_reminders_stopped(conn, a, now)
            return
        to = next_state(state, Event.ACK_OVERDUE)
        level = current + 1
        minutes = int(waited.total_seconds() // 60)
        who = self.policy.step(level).label_ko
        repeat = self.policy.repeat_of(level)
        told = (
            f"{who}에게 다시 알림 (최상위 단계 재알림 {repeat}/{len(self.policy.top_repeats)}회)"
            if repeat
            else f"{who}에게 알림"
        )
        self.escalate(conn, a, state, to, now, level=level,
                      reason=f"{minutes}분 안에 확인되지 않아 {told}")  # fmt: skip

    def escalate(
        self,
        conn: psycopg.Connection[Any],
        a: dict[str, Any],
        state: AlertState,
        to: AlertState,
        now: datetime,
        level: int,
        reason: str,
        afresh: bool = False,
    ) -> None:
        """Move the alert to `to` at ladder `level`, record why, and tell that step (`afresh`: a
        step told before is told again, in a new notification round)."""
        step = self.policy.step(level)
        wait = self.policy.wait_after(level)
        row = conn.execute(
            """UPDATE anbu.alerts SET state = %s, awaiting_call = false, escalation_level = %s,
                   next_action_at = %s, updated_at = %s, notify_round = notify_round + %s
               WHERE id = %s RETURNING notify_round""",
            (to.value, level, now + wait if wait is not None else None, now, int(afresh),
             a["id"]),
        ).fetchone()  # fmt: skip
        assert row is not None
        record_event(conn, a["id"], now, "system", state, to, reason)
        self._notify(conn, a, step.roles, now, reason, level, int(row[0]))
        if wait is None:
            self._record_reminders_stopped(conn, a, now)

    def rearm(
        self, conn: psycopg.Connection[Any], a: dict[str, Any], now: datetime, raised: str
    ) -> bool:
        """The escalated alert's severity rose (`raised` says how): if the top's reminders had
        stopped, tell the top now and start its reminders over; True when it did.

        escalation_level returns to the top, so the repeat count starts again. That reuses the
        top's voice-call keys, which are still free: only a critical alert rings care managers,
        and a critical alert's severity cannot rise any more.
        """
        if self.policy.wait_after(int(a["escalation_level"])) is not None:
            return False  # still climbing or reminding: the next step tells the new severity
        state = AlertState.ESCALATED
        who = self.policy.step(TOP_LEVEL).label_ko
        self.escalate(conn, a, state, next_state(state, Event.SEVERITY_RAISED), now,
                      level=TOP_LEVEL,
                      reason=f"{raised} — {who}에게 다시 알리고 자동 재알림을 다시 시작함",
                      afresh=True)  # fmt: skip
        return True

    def _record_reminders_stopped(
        self, conn: psycopg.Connection[Any], a: dict[str, Any], now: datetime
    ) -> None:
        """The top of the ladder was told as often as the policy allows: no more reminders;
        the alert stays escalated on the dong's dashboard until someone takes it."""
        told = len(self.policy.top_repeats)
        state = AlertState.ESCALATED
        record_event(
            conn, a["id"], now, "system", state, state,
            f"{self.policy.step(TOP_LEVEL).label_ko}에게 {told}회 다시 알렸으나 확인되지 않음: "
            "자동 재알림을 멈춤 — 담당자가 확인할 때까지 '담당자 확인 필요'로 남음",
        )  # fmt: skip

    def _notify(
        self,
        conn: psycopg.Connection[Any],
        a: dict[str, Any],
        roles: tuple[str, ...],
        now: datetime,
        reason: str,
        level: int,
        round_: int,
    ) -> None:
        """Write this step's notifications, each once per key; the SMS wait in the outbox."""
        with conn.cursor(row_factory=dict_row) as cur:
            managers = cur.execute(
                """SELECT id FROM anbu.care_manager
               WHERE dong_code = %s AND active AND role = ANY(%s) ORDER BY id""",
                (a["dong_code"], list(roles)),
            ).fetchall()
        severity = Severity.parse(a["severity"]).korean
        body = (
            f"[안부] {severity} 알림 #{a['id']} ({a['home']}): {reason}. "
            f"확인: {self.dashboard_url}/alerts/{a['id']}"
        )
        critical = Severity.parse(a["severity"]) is Severity.CRITICAL
        for m in managers:
            for channel, status in (("sms", "pending"), ("dashboard", "sent")):
                _notification(conn, a["id"], m["id"], channel, body, status, now, level, round_)
            if critical:
                # critical: also a voice call that asks the care manager to press 1 to take it
                call_id = self.messaging.call_care_manager(
                    a["id"], m["id"], f"{severity} 알림입니다. {reason}.", step=level
                )
                _notification(conn, a["id"], m["id"], "voice", body, "sent", now, level, round_,
                              external_id=str(call_id))  # fmt: skip
        log.info(
            "care managers notified",
            extra={"alert_id": a["id"], "care_managers": [m["id"] for m in managers],
                   "level": level, "round": round_},
        )  # fmt: skip


def _notification(
    conn: psycopg.Connection[Any],
    alert_id: int,
    care_manager_id: int,
    channel: str,
    body: str,
    status: str,
    now: datetime,
    level: int,
    round_: int,
    external_id: str | None = None,
) -> bool:
    """One notification row, unless this step already wrote it; True when written now. A
    pending SMS is due at once: the outbox sends it after the caller commits."""
    row = conn.execute(
        """INSERT INTO anbu.notifications
               (alert_id, care_manager_id, channel, body, external_id, status, created_at,
                updated_at, level, round, next_attempt_at)
           VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
           ON CONFLICT (alert_id, care_manager_id, channel, level, round) DO NOTHING
           RETURNING id""",
        (alert_id, care_manager_id, channel, body, external_id, status, now, now, level, round_,
         now if status == "pending" else None),
    ).fetchone()  # fmt: skip
    return row is not None


# -- the SMS outbox ------------------------------------------------------------------------

SEND_TRIES = 6  # attempts before a message the carrier cannot take is given up as failed
RETRY_FIRST = timedelta(seconds=30)  # the wait after a failed attempt, doubling,
RETRY_MAX = timedelta(minutes=10)  # up to this
SENDING_LEASE = timedelta(minutes=2)  # a send unsettled this long lost its worker (HTTP: 10 s)

_CLAIM = """
UPDATE anbu.notifications n
   SET status = 'sending', attempts = n.attempts + 1, sending_at = %(now)s, updated_at = %(now)s
  FROM (SELECT id FROM anbu.notifications
         WHERE status = 'pending' AND channel = 'sms' AND next_attempt_at <= %(now)s {only}
         ORDER BY next_attempt_at, id
         LIMIT 1
           FOR UPDATE SKIP LOCKED) due
 WHERE n.id = due.id
RETURNING n.id, n.alert_id, n.care_manager_id, n.body, n.attempts,
          (SELECT m.phone FROM anbu.care_manager m WHERE m.id = n.care_manager_id)
"""

# Sends whose worker died between recording the attempt and its result: the message may or
# may not have gone. Sent again (a care manager told twice beats one never told), counted.
_RECLAIM = """
UPDATE anbu.notifications n
   SET status = CASE WHEN n.attempts >= %(tries)s THEN 'failed' ELSE 'pending' END,
       next_attempt_at = %(now)s, interrupted = n.interrupted + 1, error_code = 'interrupted',
       error = '발송 중 작업이 중단되어 전달 여부를 알 수 없음 (sending interrupted)',
       updated_at = %(now)s
  FROM (SELECT id FROM anbu.notifications
         WHERE status = 'sending' AND sending_at <= %(cutoff)s
         ORDER BY sending_at LIMIT %(n)s
           FOR UPDATE SKIP LOCKED) stale
 WHERE n.id = stale.id
RETURNING n.id, n.alert_id, n.care_manager_id, n.status, n.error
"""

_SETTLE = """
UPDATE anbu.notifications
   SET status = %(status)s, external_id = COALESCE(%(sid)s, external_id),
       sent_at = CASE WHEN %(status)s = 'sent' THEN %(now)s ELSE sent_at END,
       error_code = %(code)s, error = %(error)s, next_attempt_at = %(next)s, updated_at = %(now)s
 WHERE id = %(id)s AND status = 'sending' AND attempts = %(attempt)s
RETURNING id
"""


def send_retry_after(attempts: int) -> timedelta:
    """How long an SMS the carrier could not take after `attempts` tries waits for the next."""
    wait: timedelta = RETRY_FIRST * 2 ** min(max(attempts - 1, 0), 16)
    return min(wait, RETRY_MAX)


@dataclass(frozen=True, slots=True)
class OutboxPass:
    """What one pass over the outbox did."""

    sent: int = 0
    failed: int = 0
    retrying: int = 0
    reclaimed: int = 0


@dataclass(frozen=True, slots=True)
class _Claimed:
    id: int
    alert_id: int
    care_manager_id: int
    body: str
    attempt: int
    phone: str | None


@dataclass(frozen=True, slots=True)
class _Result:
    status: str  # sent | failed | pending
    sid: str | None = None
    code: str | None = None
    error: str | None = None
    next_at: datetime | None = None


class SmsOutbox:
    """Sends the SMS that escalation steps wrote, after their transactions committed."""

    def __init__(self, db: Database, messaging: Messaging, clock: Clock) -> None:
        self.db = db
        self.messaging = messaging
        self.clock = clock

    def send_due(self, limit: int = 200, alert_id: int | None = None) -> OutboxPass:
        """Send up to `limit` due SMS (only `alert_id`'s, when given: the pass that just wrote
        them), each claimed alone; first hand back sends whose worker died (the job's pass)."""
        reclaimed = self._reclaim(limit) if alert_id is None else 0
        done = {"sent": 0, "failed": 0, "pending": 0}
        for _ in range(limit):
            claimed = self._claim(alert_id)
            if claimed is None:
                break
            result = self._send(claimed)
            self._settle(claimed, result)
            done[result.status] += 1
        return OutboxPass(done["sent"], done["failed"], done["pending"], reclaimed)

    def _claim(self, alert_id: int | None) -> _Claimed | None:
        """Take one due SMS and record the attempt; committed before Twilio is asked."""
        only = "AND alert_id = %(alert)s" if alert_id is not None else ""
        with self.db.connection() as conn:
            row = conn.execute(
                _CLAIM.format(only=only), {"now": self.clock.now(), "alert": alert_id}
            ).fetchone()
        if row is None:
            return None
        return _Claimed(int(row[0]), int(row[1]), int(row[2]), str(row[3]), int(row[4]), row[5])

    def _send(self, c: _Claimed) -> _Result:
        if not c.phone:
            return _Result(
                "failed", code="no_phone", error="담당자 전화번호 없음 (no phone number)"
            )
        try:
            sid = self.messaging.send_sms(c.phone, c.body)
        except SmsRefused as exc:
            return _Result("failed", code=exc.code, error=exc.reason)
        except SmsNotSent as exc:
            if c.attempt >= SEND_TRIES:
                why = f"{c.attempt}회 시도 후 중단 (gave up): {exc.reason}"
                return _Result("failed", code=exc.code, error=why)
            at = self.clock.now() + send_retry_after(c.attempt)
            why = (
                f"{exc.reason} (전달 여부 모름, may have been sent)"
                if exc.maybe_sent
                else exc.reason
            )
            return _Result("pending", code=exc.code, error=why, next_at=at)
        return _Result("sent", sid=sid)

    def _settle(self, c: _Claimed, r: _Result) -> None:
        now = self.clock.now()
        with self.db.connection() as conn:
            row = conn.execute(
                _SETTLE,
                {"status": r.status, "sid": r.sid, "now": now, "code": r.code, "error": r.error,
                 "next": r.next_at, "id": c.id, "attempt": c.attempt},
            ).fetchone()  # fmt: skip
            if row is None:  # its lease ran out mid-send and another pass took it back
                log.warning("sms settled after its lease ran out; it may be sent twice",
                            extra={"notification_id": c.id, "alert_id": c.alert_id})  # fmt: skip
                return
            if r.status == "failed":
                _record_undelivered(conn, c.alert_id, c.care_manager_id, r.error or "", now)
        log.info("sms " + r.status,
                 extra={"notification_id": c.id, "alert_id": c.alert_id,
                        "care_manager_id": c.care_manager_id, "attempt": c.attempt,
                        "code": r.code})  # fmt: skip

    def _reclaim(self, limit: int) -> int:
        now = self.clock.now()
        with self.db.connection() as conn:
            rows = conn.execute(
                _RECLAIM,
                {"tries": SEND_TRIES, "now": now, "cutoff": now - SENDING_LEASE, "n": limit},
            ).fetchall()
            for _, alert_id, care_manager_id, status, error in rows:
                if status == "failed":  # its tries are spent: say so, as for any failure
                    _record_undelivered(conn, alert_id, care_manager_id, error, now)
        for nid, alert_id, _, status, _ in rows:
            log.warning("sms send interrupted; outcome unknown",
                        extra={"notification_id": nid, "alert_id": alert_id,
                               "status": status})  # fmt: skip
        return len(rows)


def _record_undelivered(
    conn: psycopg.Connection[Any], alert_id: int, care_manager_id: int, why: str, now: datetime
) -> None:
    """The alert's audit says whose SMS did not go and why; its dashboard notification stands."""
    row = conn.execute("SELECT state FROM anbu.alerts WHERE id = %s", (alert_id,)).fetchone()
    if row is None:
        return
    state = AlertState(row[0])
    record_event(conn, alert_id, now, "system", state, state,
                 f"담당자 #{care_manager_id}에게 문자 발송 실패: {why} — 대시보드 알림은 "
                 "표시됨, 다음 단계는 예정대로 진행")  # fmt: skip
