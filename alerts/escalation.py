"""Escalation: telling care managers, up the ladder while nobody acknowledges.

Each step is written to alert_events with its reason and told by SMS and the dashboard (and a
voice call when the alert is critical). The top of the ladder is reminded a bounded number of
times (policy.wait_after), then the reminders stop; a severity raised after they stopped tells
the top again and starts its reminders over (rearm).

A step writes its notifications in the alert's transaction under a deterministic key (alert,
care manager, channel, level, round), so a replayed step tells nobody twice; its SMS and its
care managers' voice calls are sent by alerts.outbox after that transaction commits, never
while it holds the alert.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any, Protocol

import psycopg

from alerts.audit import record_event
from alerts.machine import Event, next_state
from alerts.policy import TOP_LEVEL, EscalationPolicy
from alerts.recipients import recipients
from alerts.routing import spoken_to_manager
from core.domain import AlertState, Severity

log = logging.getLogger(__name__)


class Messaging(Protocol):
    """What the outbox needs from calls/, after the step committed: an SMS (returns its sid,
    raises calls.sms.SmsRefused or SmsNotSent), and a voice call to a care manager (queued once
    per alert, care manager and step, so placing it again after a crash rings nobody twice)."""

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

    def tell_again(
        self,
        conn: psycopg.Connection[Any],
        a: dict[str, Any],
        now: datetime,
        headline: str,
        reason: str,
        only_told: bool = False,
    ) -> list[int]:
        """A word outside the ladder, by SMS and on the dashboard, to the step of the alert's
        level (`only_told`: to the care managers an SMS or voice call of it already reached);
        the ids told. It takes a round of its own and moves the alert's round past it, so no
        ladder step after it shares its key (and a step after it is told, not deduplicated)."""
        row = conn.execute(
            """UPDATE anbu.alerts SET notify_round = notify_round + 2 WHERE id = %s
               RETURNING notify_round, escalation_level""",
            (a["id"],),
        ).fetchone()
        assert row is not None
        round_, level = int(row[0]) - 1, int(row[1])
        if only_told:
            ids = [int(r[0]) for r in conn.execute(
                """SELECT DISTINCT care_manager_id FROM anbu.notifications
                    WHERE alert_id = %s AND channel IN ('sms', 'voice')
                      AND status IN ('sending', 'sent') ORDER BY 1""",
                (a["id"],),
            )]  # fmt: skip
        else:
            roles = self.policy.step(level).roles
            ids = recipients(conn, a["id"], a["dong_code"], roles, AlertState.ESCALATED, now)
        body = f"[안부] {headline} #{a['id']} ({a['home']}): {reason}. " \
               f"확인: {self.dashboard_url}/alerts/{a['id']}"  # fmt: skip
        for care_manager_id in ids:
            for channel, status in (("sms", "pending"), ("dashboard", "sent")):
                _notification(conn, a["id"], care_manager_id, channel, body, status, now, level,
                              round_)  # fmt: skip
        log.info("care managers told outside the ladder",
                 extra={"alert_id": a["id"], "care_managers": ids, "round": round_})  # fmt: skip
        return ids

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
        """Write this step's notifications, each once per key; the SMS and voice calls wait in
        the outbox."""
        ids = recipients(conn, a["id"], a["dong_code"], roles, AlertState.ESCALATED, now)
        managers = [{"id": i} for i in ids]  # the dong's, or its stand-ins (alerts.recipients)
        severity = Severity.parse(a["severity"]).korean
        body = (
            f"[안부] {severity} 알림 #{a['id']} ({a['home']}): {reason}. "
            f"확인: {self.dashboard_url}/alerts/{a['id']}"
        )
        critical = Severity.parse(a["severity"]) is Severity.CRITICAL
        spoken = spoken_to_manager(a["id"], a.get("kind") or "", severity, a.get("dong_name"))
        for m in managers:
            for channel, status in (("sms", "pending"), ("dashboard", "sent")):
                _notification(conn, a["id"], m["id"], channel, body, status, now, level, round_)
            if critical:
                # critical: also a voice call that asks the care manager to press 1 to take it;
                # only its intent is written here (what it says is the row's body), the outbox
                # places it after commit: a slow phone API never holds this alert's row
                _notification(conn, a["id"], m["id"], "voice", spoken, "pending", now, level,
                              round_)  # fmt: skip
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
) -> bool:
    """One notification row, unless this step already wrote it; True when written now. A
    pending SMS or voice call is due at once: the outbox sends it after the caller commits."""
    row = conn.execute(
        """INSERT INTO anbu.notifications
               (alert_id, care_manager_id, channel, body, external_id, status, created_at,
                updated_at, level, round, next_attempt_at)
           VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
           ON CONFLICT (alert_id, care_manager_id, channel, level, round) DO NOTHING
           RETURNING id""",
        (alert_id, care_manager_id, channel, body, None, status, now, now, level, round_,
         now if status == "pending" else None),
    ).fetchone()  # fmt: skip
    return row is not None
