"""The outbox: care managers' texts and voice calls leave after the alert's transaction commits.

SmsOutbox claims due SMS and voice calls one at a time with FOR UPDATE SKIP LOCKED and records
the attempt ('sending', committed) before asking Twilio, so any number of workers send each
message once, and a slow phone API never holds an alert's row or its connection. A voice call
is queued in calls/ under the key (alert, care manager, step): placing it again after a crash
between commit and call, or after a lost lease, finds the queued call and rings nobody twice.
A carrier that cannot be reached is tried again with a growing wait; a refusal is final, kept
with its reason and written to the alert's audit trail, while the dashboard notification
stands and the ladder's timer goes on regardless. A send whose worker died before it could
record the result is sent again after a lease, and the row counts the interruption. A care
manager's acknowledgement or resolution marks the alert's messages not yet sent 'cancelled'
(AlertService, in its transaction); the claim skips those of a taken alert in any case.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import psycopg

from alerts.audit import record_event
from alerts.escalation import Messaging
from alerts.policy import TOP_LEVEL
from calls.sms import SmsNotSent, SmsRefused
from core.clock import Clock
from core.db import Database
from core.domain import AlertState

log = logging.getLogger(__name__)


SEND_TRIES = 6  # attempts before a message the carrier cannot take is given up as failed
RETRY_FIRST = timedelta(seconds=30)  # the wait after a failed attempt, doubling,
RETRY_MAX = timedelta(minutes=10)  # up to this
SENDING_LEASE = timedelta(minutes=2)  # a send unsettled this long lost its worker (HTTP: 10 s)

_CLAIM = """
UPDATE anbu.notifications n
   SET status = 'sending', attempts = n.attempts + 1, sending_at = %(now)s, updated_at = %(now)s
  FROM (SELECT id FROM anbu.notifications p
         WHERE status = 'pending' AND channel IN ('sms', 'voice')
           AND next_attempt_at <= %(now)s {only}
           AND NOT EXISTS (SELECT 1 FROM anbu.alerts a WHERE a.id = p.alert_id
                            AND a.state IN ('acknowledged', 'resolved'))
         ORDER BY next_attempt_at, id
         LIMIT 1
           FOR UPDATE SKIP LOCKED) due
 WHERE n.id = due.id
RETURNING n.id, n.alert_id, n.care_manager_id, n.body, n.attempts,
          (SELECT m.phone FROM anbu.care_manager m WHERE m.id = n.care_manager_id),
          n.channel, n.level
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
RETURNING n.id, n.alert_id, n.care_manager_id, n.status, n.error, n.channel
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
    channel: str = "sms"
    level: int = 0


@dataclass(frozen=True, slots=True)
class _Result:
    status: str  # sent | failed | pending
    sid: str | None = None
    code: str | None = None
    error: str | None = None
    next_at: datetime | None = None


class SmsOutbox:
    """Sends the SMS and places the voice calls that escalation steps wrote, after their
    transactions committed."""

    def __init__(self, db: Database, messaging: Messaging, clock: Clock) -> None:
        self.db = db
        self.messaging = messaging
        self.clock = clock

    def send_due(self, limit: int = 200, alert_id: int | None = None) -> OutboxPass:
        """Send up to `limit` due SMS and voice calls (only `alert_id`'s, when given: the pass
        that just wrote them), each claimed alone; first hand back sends whose worker died (the
        job's pass)."""
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
        """Take one due message and record the attempt; committed before Twilio is asked."""
        only = "AND alert_id = %(alert)s" if alert_id is not None else ""
        with self.db.connection() as conn:
            row = conn.execute(
                _CLAIM.format(only=only), {"now": self.clock.now(), "alert": alert_id}
            ).fetchone()
        if row is None:
            return None
        return _Claimed(int(row[0]), int(row[1]), int(row[2]), str(row[3]), int(row[4]), row[5],
                        str(row[6]), int(row[7] or 0))  # fmt: skip

    def _send(self, c: _Claimed) -> _Result:
        if c.channel == "voice":
            return self._call(c)
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

    def _call(self, c: _Claimed) -> _Result:
        """Queue (once per alert, care manager and step) and dial the care manager's call; the
        dialler settles telephony errors on the call itself, so what raises here is ours."""
        try:
            call_id = self.messaging.call_care_manager(
                c.alert_id, c.care_manager_id, c.body, step=c.level
            )
        except LookupError as exc:
            return _Result("failed", code="no_alert", error=f"알림 없음 (no such alert): {exc}")
        except Exception as exc:  # e.g. the database went away: the call may not be queued
            if c.attempt >= SEND_TRIES:
                why = f"{c.attempt}회 시도 후 중단 (gave up): {type(exc).__name__}"
                return _Result("failed", code="not_queued", error=why)
            at = self.clock.now() + send_retry_after(c.attempt)
            return _Result("pending", code="not_queued", error=type(exc).__name__, next_at=at)
        return _Result("sent", sid=str(call_id))

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
                _record_undelivered(conn, c.alert_id, c.care_manager_id, r.error or "", now,
                                    c.channel)  # fmt: skip
                _climb_if_nobody_texted(conn, c.id, now)
        log.info(c.channel + " " + r.status,
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
            for nid, alert_id, care_manager_id, status, error, channel in rows:
                if status == "failed":  # its tries are spent: say so, as for any failure
                    _record_undelivered(conn, alert_id, care_manager_id, error, now, channel)
                    _climb_if_nobody_texted(conn, nid, now)
        for nid, alert_id, _, status, _, _ in rows:
            log.warning("outbox send interrupted; outcome unknown",
                        extra={"notification_id": nid, "alert_id": alert_id,
                               "status": status})  # fmt: skip
        return len(rows)


def _record_undelivered(
    conn: psycopg.Connection[Any],
    alert_id: int,
    care_manager_id: int,
    why: str,
    now: datetime,
    channel: str = "sms",
) -> None:
    """The alert's audit says whose SMS or call did not go and why; its dashboard notification
    stands."""
    row = conn.execute(  # locked as every other writer of its timeline (an alert's version)
        "SELECT state FROM anbu.alerts WHERE id = %s FOR NO KEY UPDATE", (alert_id,)
    ).fetchone()
    if row is None:
        return
    state = AlertState(row[0])
    what = "전화 발신" if channel == "voice" else "문자 발송"
    record_event(conn, alert_id, now, "system", state, state,
                 f"담당자 #{care_manager_id}에게 {what} 실패: {why} — 대시보드 알림은 "
                 "표시됨, 다음 단계는 예정대로 진행")  # fmt: skip


# The step this failed SMS belonged to reached nobody by text or voice: every SMS of its level
# and round failed and no voice call went. The alert still waits at that level (escalated, not
# acknowledged) for an acknowledgement nobody can give, so its next step is due now instead of
# after ack_timeout. Below the top only: the top's repeats keep their own pace.
_CLIMB_NOW = """
UPDATE anbu.alerts a SET next_action_at = %(now)s, updated_at = %(now)s
  FROM anbu.notifications n
 WHERE n.id = %(id)s AND a.id = n.alert_id AND a.state = 'escalated'
   AND a.escalation_level = n.level AND a.notify_round = n.round AND n.level < %(top)s
   AND a.next_action_at > %(now)s
   AND NOT EXISTS (SELECT 1 FROM anbu.notifications o
                    WHERE o.alert_id = n.alert_id AND o.level = n.level AND o.round = n.round
                      AND o.channel IN ('sms', 'voice') AND o.status <> 'failed')
RETURNING a.id, a.escalation_level
"""


def _climb_if_nobody_texted(
    conn: psycopg.Connection[Any], notification_id: int, now: datetime
) -> None:
    """The fallback for a refused (or given-up) SMS: when nobody of its step was reached, the
    ladder's next step is told at the next due pass, and the audit says why."""
    try:
        with conn.transaction():  # a savepoint: the SMS's own result is recorded whatever happens
            # The alert's row first, in its own statement: two workers settling the step's last
            # two SMS at once then judge one after the other, and the second sees the first's
            # result (under one snapshot each saw the other still sending, and nobody climbed).
            # NO KEY: a call or notification written meanwhile references this alert, and its
            # foreign key check must not wait for this lock.
            conn.execute(
                """SELECT 1 FROM anbu.alerts WHERE id =
                       (SELECT alert_id FROM anbu.notifications WHERE id = %s)
                   FOR NO KEY UPDATE""",
                (notification_id,),
            )
            row = conn.execute(
                _CLIMB_NOW, {"id": notification_id, "now": now, "top": TOP_LEVEL}
            ).fetchone()
    except psycopg.Error:  # the alert's ack_timeout still climbs; the refusal is in its audit
        log.exception("next step not brought forward", extra={"notification_id": notification_id})
        return
    if row is None:
        return
    state = AlertState.ESCALATED
    record_event(conn, int(row[0]), now, "system", state, state,
                 "이 단계의 담당자 모두에게 문자가 전달되지 않아 다음 단계에 바로 알림 / "
                 "no SMS of this step was delivered: the next step is told now")  # fmt: skip
    log.warning("no sms of the step delivered; next step brought forward",
                extra={"alert_id": int(row[0]), "level": int(row[1])})  # fmt: skip
