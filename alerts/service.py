"""Alert flows: open from findings, run the timers, place calls, escalate, acknowledge, resolve.

Timers are rows (`next_action_at`, `awaiting_call`), claimed one at a time with
FOR UPDATE SKIP LOCKED, so any number of workers can run this and a restart loses
nothing. Every transition is written to alert_events with its reason. A check-in call's
watchdog counts from when the send queue dialled it, not queued it (policy.call_watch), and
the top of the ladder is reminded a bounded number of times (policy.wait_after).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol
from zoneinfo import ZoneInfo

import psycopg
from psycopg.rows import dict_row

from alerts import absence
from alerts.audit import record_event
from alerts.machine import Event, next_state
from alerts.models import RESOLUTION_OUTCOMES, AlertNotFound
from alerts.policy import (
    OUTCOME_KO,
    OUTCOME_MEANING,
    TOP_LEVEL,
    EscalationPolicy,
    after_call,
    call_watch,
)
from alerts.routing import holds_for_quiet_hours, quiet_hours_end, route_for
from anbu.clock import Clock
from anbu.db import Database
from anbu.domain import AlertState, CallOutcome, Finding, Severity
from calls.dialer import cancel_waiting

log = logging.getLogger(__name__)

MIN_WAKE = timedelta(seconds=1)  # a pushed timer never comes due in the same poll again


class Telephony(Protocol):
    """What alerts need from calls/: place a check-in call, send an SMS."""

    def place_check_in(self, resident_id: int, alert_id: int | None, attempt: int) -> int: ...

    def send_sms(self, to: str, body: str) -> str | None: ...

    def call_care_manager(
        self, alert_id: int, care_manager_id: int, message_ko: str, step: int = 0
    ) -> int: ...


@dataclass(frozen=True, slots=True)
class IncomingFinding:
    """A finding already stored by the detectors, for a known resident."""

    finding_id: int
    resident_id: int
    finding: Finding


class AlertService:
    """The only writer of alerts, alert_events and notifications."""

    def __init__(
        self,
        db: Database,
        telephony: Telephony,
        policy: EscalationPolicy,
        clock: Clock,
        dashboard_url: str,
        timezone: str = "Asia/Seoul",
    ) -> None:
        self.tz = ZoneInfo(timezone)
        self.db = db
        self.telephony = telephony
        self.policy = policy
        self.clock = clock
        self.dashboard_url = dashboard_url.rstrip("/")

    # -- findings -> alerts ------------------------------------------------------------

    def on_findings(self, findings: list[IncomingFinding]) -> list[int]:
        """Open an alert per finding, or raise the severity of the open one; returns alert ids."""
        touched: list[int] = []
        now = self.clock.now()
        for item in findings:
            with self.db.connection() as conn:
                alert_id = self._open_or_raise(conn, item, now)
            if alert_id is not None:
                touched.append(alert_id)
        return touched

    def _open_or_raise(
        self, conn: psycopg.Connection[Any], item: IncomingFinding, now: datetime
    ) -> int | None:
        f = item.finding
        severity = f.severity.label
        route = route_for(f.kind)
        # calls and direct escalations are due now; the rest is for the dashboard only
        first_action = now if (route.call_resident or route.escalate_now) else None
        row = conn.execute(
            """INSERT INTO anbu.alerts (resident_id, kind, severity, state, opened_at,
                                        updated_at, next_action_at, finding_id)
               VALUES (%s, %s, %s, 'open', %s, %s, %s, %s)
               ON CONFLICT (resident_id, kind) WHERE state <> 'resolved' DO NOTHING
               RETURNING id""",
            (item.resident_id, f.kind, severity, now, now, first_action, item.finding_id),
        ).fetchone()
        if row is not None:
            alert_id = int(row[0])
            why = f.reason_ko if route.call_resident else f"{route.label_ko}: {f.reason_ko}"
            record_event(conn, alert_id, now, "system", None, AlertState.OPEN, why)
            log.info("alert opened", extra={"alert_id": alert_id, "resident_id": item.resident_id})
            return alert_id
        current = conn.execute(
            """SELECT id, severity, state, awaiting_call FROM anbu.alerts
               WHERE resident_id = %s AND kind = %s AND state <> 'resolved' FOR UPDATE""",
            (item.resident_id, f.kind),
        ).fetchone()
        if current is None:
            return None
        alert_id, old, state = int(current[0]), Severity.parse(current[1]), AlertState(current[2])
        if f.severity <= old:
            return None
        next_state(state, Event.SEVERITY_RAISED)
        conn.execute(
            """UPDATE anbu.alerts SET severity = %s, finding_id = %s, updated_at = %s
               WHERE id = %s""",
            (severity, item.finding_id, now, alert_id),
        )
        held = state in (AlertState.OPEN, AlertState.CALLING) and not current[3]
        if route.call_resident and held and not holds_for_quiet_hours(f.severity):
            # a call held for quiet hours or waiting to retry goes now that it is critical
            conn.execute(
                "UPDATE anbu.alerts SET next_action_at = %s WHERE id = %s", (now, alert_id)
            )
        record_event(
            conn, alert_id, now, "system", state, state,
            f"단계 상향 {old.korean} → {f.severity.korean}: {f.reason_ko}",
        )  # fmt: skip
        return alert_id

    # -- timers ----------------------------------------------------------------------------

    def process_due(self, limit: int = 100) -> int:
        """Advance every alert whose timer is due or whose call has ended; returns how many."""
        done = 0
        while done < limit:
            with self.db.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
                now = self.clock.now()
                alert = cur.execute(
                    """SELECT a.*, c.outcome AS call_outcome, c.dial_state AS call_dial_state,
                              c.dialled_at AS call_dialled_at,
                              GREATEST(c.created_at, c.not_before) AS call_queued_at,
                              r.dong_code, r.home,
                              r.quiet_start, r.quiet_end, r.status AS resident_status,
                              r.status_until
                       FROM anbu.alerts a
                       JOIN anbu.resident r ON r.id = a.resident_id
                       LEFT JOIN anbu.calls c ON c.id = a.last_call_id
                       WHERE a.state <> 'resolved'
                         AND (a.next_action_at <= %(now)s
                              OR (a.awaiting_call AND c.outcome IS NOT NULL))
                       ORDER BY a.next_action_at NULLS LAST
                       LIMIT 1
                       FOR NO KEY UPDATE OF a SKIP LOCKED""",
                    {"now": now},
                ).fetchone()
                if alert is None:
                    return done
                self._advance(conn, alert, now)
            done += 1
        return done

    def _advance(self, conn: psycopg.Connection[Any], a: dict[str, Any], now: datetime) -> None:
        state = AlertState(a["state"])
        route = route_for(a["kind"])
        may_call = state in (AlertState.OPEN, AlertState.CALLING)
        not_ringing = not a["awaiting_call"] or a["call_dial_state"] == "waiting"
        if may_call and not_ringing and self._absence_explains(a, now):
            # away or in hospital, set without closing this alert: call nobody, close it now
            absence.close(conn, a["id"], state, a["resident_status"], a["status_until"], now,
                          self.tz, actor="system", resolved_by=None)  # fmt: skip
        elif state is AlertState.OPEN and route.escalate_now:
            to = next_state(state, Event.RESIDENT_NEEDS_HELP)
            critical = Severity.parse(a["severity"]) is Severity.CRITICAL
            level = TOP_LEVEL if critical else 0
            self._escalate(conn, a, state, to, now, level=level, reason=f"{route.label_ko}")
        elif state is AlertState.OPEN and not route.call_resident:
            conn.execute("UPDATE anbu.alerts SET next_action_at = NULL WHERE id = %s", (a["id"],))
        elif state in (AlertState.OPEN, AlertState.CALLING) and not a["awaiting_call"]:
            self._place_call(conn, a, state, now)
        elif state is AlertState.CALLING and a["awaiting_call"]:
            outcome = CallOutcome(a["call_outcome"]) if a["call_outcome"] else None
            if outcome is None and self._watch_pending_call(conn, a, now):
                return
            self._after_call(conn, a, outcome, now)
        elif state is AlertState.ESCALATED:
            self._climb(conn, a, now)
        else:  # acknowledged: nothing is due until the care manager resolves
            conn.execute("UPDATE anbu.alerts SET next_action_at = NULL WHERE id = %s", (a["id"],))

    def _place_call(
        self, conn: psycopg.Connection[Any], a: dict[str, Any], state: AlertState, now: datetime
    ) -> None:
        hold_until = quiet_hours_end(now, a["quiet_start"], a["quiet_end"], self.tz)
        if hold_until is not None and holds_for_quiet_hours(Severity.parse(a["severity"])):
            conn.execute(
                "UPDATE anbu.alerts SET next_action_at = %s, updated_at = %s WHERE id = %s",
                (hold_until, now, a["id"]),
            )
            local = hold_until.astimezone(self.tz)
            record_event(conn, a["id"], now, "system", state, state,
                         f"조용한 시간이라 {local:%H:%M}까지 안부전화를 미룹니다")  # fmt: skip
            return
        attempt = int(a["call_attempts"]) + 1
        call_id = self.telephony.place_check_in(a["resident_id"], a["id"], attempt)
        to = next_state(state, Event.CALL_PLACED)
        conn.execute(
            """UPDATE anbu.alerts SET state = %s, call_attempts = %s, last_call_id = %s,
                   awaiting_call = true, next_action_at = %s, updated_at = %s WHERE id = %s""",
            (to.value, attempt, call_id, now + self.policy.call_watchdog, now, a["id"]),
        )
        record_event(conn, a["id"], now, "system", state, to, f"안부전화 {attempt}회차 발신")
        log.info("check-in call placed", extra={"alert_id": a["id"], "attempt": attempt})

    def _watch_pending_call(
        self, conn: psycopg.Connection[Any], a: dict[str, Any], now: datetime
    ) -> bool:
        """The watchdog fired before the call had a result: False when that means no answer;
        True when the call is still queued or rang less than call_watchdog ago (the timer
        moves on), or when the queue held it past max_queue_wait (cancelled; escalated)."""
        watch = call_watch(a["call_dial_state"] == "waiting", a["call_queued_at"],
                           a["call_dialled_at"], now, self.policy)  # fmt: skip
        if watch.verdict == "no_answer":
            return False
        if watch.verdict == "wait":
            assert watch.until is not None
            self._wake_at(conn, a["id"], max(watch.until, now + MIN_WAKE))
            return True
        waited = now - a["call_queued_at"]
        cancelled = cancel_waiting(conn, a["id"], now, "queue_timeout", purpose="check_in",
                                   details={"waited_s": int(waited.total_seconds())})  # fmt: skip
        if a["last_call_id"] not in cancelled:  # a dialler took it meanwhile: it rings now
            self._wake_at(conn, a["id"], now + self.policy.call_watchdog)
            return True
        state = AlertState.CALLING
        to = next_state(state, Event.CANNOT_CALL)
        minutes = int(waited.total_seconds() // 60)
        self._escalate(
            conn, a, state, to, now, level=0,
            reason=f"안부전화 {a['call_attempts']}회차가 {minutes}분 동안 발신 대기열에서 나가지 "
                   f"못해 취소함 (발신 지연) — {self.policy.step(0).label_ko}에게 알림",
        )  # fmt: skip
        return True

    def _wake_at(self, conn: psycopg.Connection[Any], alert_id: int, at: datetime | None) -> None:
        """Move the alert's timer (None: no timer) without a transition."""
        conn.execute("UPDATE anbu.alerts SET next_action_at = %s WHERE id = %s", (at, alert_id))

    def _after_call(
        self,
        conn: psycopg.Connection[Any],
        a: dict[str, Any],
        outcome: CallOutcome | None,
        now: datetime,
    ) -> None:
        state = AlertState.CALLING
        outcome = outcome or CallOutcome.NO_ANSWER  # the watchdog fired: no result is no answer
        meaning = OUTCOME_MEANING[outcome]
        said = f"안부전화 {a['call_attempts']}회차: {OUTCOME_KO[outcome]}"
        if meaning == "ok":
            to = next_state(state, Event.RESIDENT_OK)
            conn.execute(
                """UPDATE anbu.alerts SET state = %s, awaiting_call = false, next_action_at = NULL,
                       resolved_at = %s, outcome = 'resident_ok', updated_at = %s WHERE id = %s""",
                (to.value, now, now, a["id"]),
            )
            record_event(conn, a["id"], now, "resident", state, to, said)
            return
        if meaning == "unanswered" and self._absence_explains(a, now):
            # the call was ringing when a care manager recorded the absence: no retry, close
            absence.close(conn, a["id"], state, a["resident_status"], a["status_until"], now,
                          self.tz, actor="system", resolved_by=None, call=said)  # fmt: skip
            return
        action, level = after_call(outcome, int(a["call_attempts"]), self.policy)
        if action == "escalate":  # help/unwell at once, emergency at the top; else retries spent
            event = Event.RESIDENT_NEEDS_HELP if meaning == "help" else Event.RESIDENT_UNREACHED
            to = next_state(state, event)
            why = said if meaning == "help" else f"{said} — 재시도 소진, 연락 안 됨"
            self._escalate(conn, a, state, to, now, level=level, reason=why)
            return
        to = next_state(state, Event.CALL_UNANSWERED)
        conn.execute(
            """UPDATE anbu.alerts SET awaiting_call = false, next_action_at = %s, updated_at = %s
               WHERE id = %s""",
            (now + self.policy.retry_interval, now, a["id"]),
        )
        minutes = int(self.policy.retry_interval.total_seconds() // 60)
        record_event(conn, a["id"], now, "system", state, to, f"{said} — {minutes}분 뒤 다시 전화")

    def _absence_explains(self, a: dict[str, Any], now: datetime) -> bool:
        """The resident is away or in hospital, and that explains this alert's kind."""
        return absence.absent(
            a["resident_status"], a["status_until"], now
        ) and absence.explained_by_absence(a["kind"])

    def _climb(self, conn: psycopg.Connection[Any], a: dict[str, Any], now: datetime) -> None:
        state = AlertState.ESCALATED
        current = int(a["escalation_level"])
        waited = self.policy.wait_after(current)
        if waited is None:  # the top's repeats are spent (an alert timed before the cap)
            self._wake_at(conn, a["id"], None)
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
        self._escalate(conn, a, state, to, now, level=level,
                       reason=f"{minutes}분 안에 확인되지 않아 {told}")  # fmt: skip

    def _escalate(
        self,
        conn: psycopg.Connection[Any],
        a: dict[str, Any],
        state: AlertState,
        to: AlertState,
        now: datetime,
        level: int,
        reason: str,
    ) -> None:
        step = self.policy.step(level)
        wait = self.policy.wait_after(level)
        conn.execute(
            """UPDATE anbu.alerts SET state = %s, awaiting_call = false, escalation_level = %s,
                   next_action_at = %s, updated_at = %s WHERE id = %s""",
            (to.value, level, now + wait if wait is not None else None, now, a["id"]),
        )
        record_event(conn, a["id"], now, "system", state, to, reason)
        self._notify(conn, a, step.roles, now, reason, level)
        if wait is None:
            self._record_reminders_stopped(conn, a, now)

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
        level: int = 0,
    ) -> None:
        with conn.cursor(row_factory=dict_row) as cur:
            managers = cur.execute(
                """SELECT id, phone FROM anbu.care_manager
               WHERE dong_code = %s AND active AND role = ANY(%s) ORDER BY id""",
                (a["dong_code"], list(roles)),
            ).fetchall()
        severity = Severity.parse(a["severity"]).korean
        body = (
            f"[안부] {severity} 알림 #{a['id']} ({a['home']}): {reason}. "
            f"확인: {self.dashboard_url}/alerts/{a['id']}"
        )
        for m in managers:
            sid = self.telephony.send_sms(m["phone"], body)
            for channel, external in (("sms", sid), ("dashboard", None)):
                conn.execute(
                    """INSERT INTO anbu.notifications
                           (alert_id, care_manager_id, channel, body, external_id, status, created_at)
                       VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING""",
                    (a["id"], m["id"], channel, body, external,
                     "sent" if (external or channel == "dashboard") else "failed", now),
                )  # fmt: skip
            if Severity.parse(a["severity"]) is Severity.CRITICAL:
                # critical: also a voice call that asks the care manager to press 1 to take it
                call_id = self.telephony.call_care_manager(
                    a["id"], m["id"], f"{severity} 알림입니다. {reason}.", step=level
                )
                conn.execute(
                    """INSERT INTO anbu.notifications
                           (alert_id, care_manager_id, channel, body, external_id, status, created_at)
                       VALUES (%s, %s, 'voice', %s, %s, 'sent', %s) ON CONFLICT DO NOTHING""",
                    (a["id"], m["id"], body, str(call_id), now),
                )
        log.info(
            "care managers notified",
            extra={"alert_id": a["id"], "care_managers": [m["id"] for m in managers]},
        )

    # -- care manager actions ------------------------------------------------------------

    def _locked_in_dong(
        self, conn: psycopg.Connection[Any], alert_id: int, dong_code: str
    ) -> dict[str, Any]:
        with conn.cursor(row_factory=dict_row) as cur:
            row = cur.execute(
                """SELECT a.* FROM anbu.alerts a JOIN anbu.resident r ON r.id = a.resident_id
                   WHERE a.id = %s AND r.dong_code = %s FOR NO KEY UPDATE OF a""",
                (alert_id, dong_code),
            ).fetchone()
        if row is None:
            raise AlertNotFound(alert_id)
        return row

    def acknowledge(
        self, alert_id: int, care_manager_id: int, dong_code: str, note: str = ""
    ) -> None:
        """The care manager takes the alert; raises IllegalTransition or AlertNotFound."""
        now = self.clock.now()
        with self.db.connection() as conn:
            a = self._locked_in_dong(conn, alert_id, dong_code)
            state = AlertState(a["state"])
            to = next_state(state, Event.ACKNOWLEDGE)
            conn.execute(
                """UPDATE anbu.alerts SET state = %s, acknowledged_by = %s, acknowledged_at = %s,
                       awaiting_call = false, next_action_at = NULL, updated_at = %s
                   WHERE id = %s""",
                (to.value, care_manager_id, now, now, alert_id),
            )
            reason = "담당자 확인" + (f": {note}" if note else "")
            record_event(conn, alert_id, now, f"care_manager:{care_manager_id}", state, to, reason)

    def resolve(
        self, alert_id: int, care_manager_id: int, dong_code: str, outcome: str, note: str = ""
    ) -> None:
        """Close the alert with an outcome from RESOLUTION_OUTCOMES."""
        if outcome not in RESOLUTION_OUTCOMES:
            raise ValueError(f"unknown outcome {outcome!r}")
        now = self.clock.now()
        with self.db.connection() as conn:
            a = self._locked_in_dong(conn, alert_id, dong_code)
            state = AlertState(a["state"])
            to = next_state(state, Event.RESOLVE)
            conn.execute(
                """UPDATE anbu.alerts SET state = %s, resolved_by = %s, resolved_at = %s,
                       outcome = %s, next_action_at = NULL, updated_at = %s WHERE id = %s""",
                (to.value, care_manager_id, now, outcome, now, alert_id),
            )
            reason = f"종결: {RESOLUTION_OUTCOMES[outcome][0]}" + (f" — {note}" if note else "")
            record_event(conn, alert_id, now, f"care_manager:{care_manager_id}", state, to, reason)
