"""Alerts a person must act on at once (an emergency button, a fire or gas alarm): the care
manager and the resident's check-in call in the same step, the call's answer kept on the
alert, a cancel press within the district's grace window turned into a check-in, and the
돌봄콜 line's help request and a button press of one resident made one alert.

Everything here runs in the caller's transaction, holding the alert's row (FOR NO KEY UPDATE,
as alerts.service does); messages wait in the outbox and calls in the send queue until it
commits. Logs carry ids only.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any, Protocol
from zoneinfo import ZoneInfo

import psycopg
from psycopg.rows import dict_row

from alerts.audit import record_event
from alerts.escalation import Escalation
from alerts.machine import Event, next_state
from alerts.policy import OUTCOME_KO, OUTCOME_MEANING, TOP_LEVEL, EscalationPolicy
from alerts.routing import CANCELS, FIRST_ADVICE, JOIN_WINDOW, Route, join_partners, route_for
from calls.answers import record_acted_on
from calls.dialer import cancel_waiting
from core.domain import AlertState, CallOutcome, Finding, Severity

log = logging.getLogger(__name__)

HELP_ANSWERS = ("help", "unwell", "emergency")  # what the resident said that is never an OK
UNANSWERED = ("no_answer", "busy", "failed", "voicemail")  # the call ended without the resident
# a cancel must arrive (server clock) within the grace window of the alert's opening and this
CANCEL_ARRIVAL_SLACK = timedelta(seconds=30)
# advisory lock namespace (two-int form, key 2 = the resident): one help request or button
# press of a resident at a time looks for its partner alert and opens its own
JOIN_LOCK = 7_470_320

REALERT_EVERY = timedelta(minutes=10)
"""A press, an alarm or a help request again on an open alert tells its care managers again
at most once per this: a detector flapping alarm/clear every half minute is one page, then
lines on the timeline. A press after a cancel (the alert being checked by a call) always
escalates: it is the resident saying it is real."""
_REALERTED = "다시 알림 보냄 / told again"
"""The timeline line that marks a re-alert (what REALERT_EVERY counts from)."""

# The resident's open alert of some kinds, with what a step needs: the dong (its name for the
# care manager's message), when it was pressed (its finding), and what its call heard.
_LOCK = """
SELECT a.*, r.dong_code, r.home, d.name AS dong_name,
       COALESCE(f.raised_at, a.opened_at) AS pressed_at, f.details AS pressed_details,
       c.answer AS call_answer, c.outcome AS call_outcome
  FROM anbu.alerts a
  JOIN anbu.resident r ON r.id = a.resident_id
  JOIN anbu.dong d ON d.code = r.dong_code
  LEFT JOIN anbu.findings f ON f.id = a.finding_id
  LEFT JOIN anbu.calls c ON c.id = a.last_call_id
 WHERE a.resident_id = %(resident)s AND a.state <> 'resolved' AND {which}
 ORDER BY a.opened_at
 LIMIT 1
   FOR NO KEY UPDATE OF a
"""


def _minutes(seconds: int) -> str:
    """A grace window as people say it: 120 -> "2", 90 -> "1.5"."""
    return f"{seconds / 60:g}"


class CheckInQueue(Protocol):
    """What this needs from calls/: the resident's check-in call, queued in the transaction."""

    def queue_check_in(
        self, conn: psycopg.Connection[Any], resident_id: int, alert_id: int, attempt: int
    ) -> int: ...


def manager_words(kind: str, dong_name: str | None, route: Route) -> str:
    """What the care manager's SMS and voice call say happened: the kind in Korean, where (the
    dong, never a name or a number) and, for these kinds, the 119 advice first."""
    advice = FIRST_ADVICE.get(kind)
    if advice is None:
        return route.label_ko
    where = f"{dong_name} 대상자 댁" if dong_name else "대상자 댁"
    return f"{where} {route.label_ko} — {advice[0]}"


class SafetyAlerts:
    """The parts of the ladder that only urgent device and line alerts take."""

    def __init__(
        self,
        calls: CheckInQueue,
        escalation: Escalation,
        policy: EscalationPolicy,
        tz: ZoneInfo,
    ) -> None:
        self.calls = calls
        self.escalation = escalation
        self.policy = policy
        self.tz = tz

    # -- the step that escalates ------------------------------------------------------------

    def call_beside(self, conn: psycopg.Connection[Any], a: dict[str, Any], now: datetime) -> None:
        """Queue the resident's check-in call in the step that told the care managers: both go
        out once it commits, neither waits for the other, and quiet hours never hold it. The
        alert waits for the call's answer while it stays escalated (answered_beside)."""
        if a.get("resident_status") == "ended":
            return
        attempt = int(a["call_attempts"]) + 1
        call_id = self.calls.queue_check_in(conn, a["resident_id"], a["id"], attempt)
        conn.execute(
            """UPDATE anbu.alerts SET call_attempts = %s, last_call_id = %s, awaiting_call = true,
                   updated_at = %s WHERE id = %s""",
            (attempt, call_id, now, a["id"]),
        )
        state = AlertState.ESCALATED
        record_event(conn, a["id"], now, "system", state, state,
                     f"대상자에게 안부전화 {attempt}회차 동시 발신 / "
                     f"check-in call {attempt} to the resident at the same time")  # fmt: skip
        log.info("check-in call placed beside the escalation",
                 extra={"alert_id": a["id"], "attempt": attempt})  # fmt: skip

    def answered_beside(
        self, conn: psycopg.Connection[Any], a: dict[str, Any], outcome: CallOutcome, now: datetime
    ) -> None:
        """The call placed beside the escalation ended: what the resident said is kept on the
        alert. Help, unwell or an emergency tells the care managers again at once; an OK is
        noted but never closes the alert (a care manager does); no answer is noted only."""
        state = AlertState.ESCALATED
        to = next_state(state, Event.RESIDENT_ANSWERED)
        record_acted_on(conn, int(a["last_call_id"]), outcome)
        conn.execute(
            "UPDATE anbu.alerts SET awaiting_call = false, updated_at = %s WHERE id = %s",
            (now, a["id"]),
        )
        meaning = OUTCOME_MEANING[outcome]
        n = a["call_attempts"]
        said = f"대상자 안부전화 {n}회차: {OUTCOME_KO[outcome]}"
        said_en = f"check-in call {n} to the resident: {outcome.value}"
        label = route_for(a["kind"]).label_ko
        if meaning == "ok":
            reason = (f"{said} — {label} 알림은 담당자가 확인해 종결합니다 / {said_en}; "
                      "a care manager closes the alert")  # fmt: skip
        elif meaning == "help":
            reason = f"{said} — 담당자에게 다시 알림 / {said_en}; the care managers told again"
            self.escalation.tell_again(conn, a, now, "대상자 도움 요청",
                                       f"{label} 후 안부전화에서 {OUTCOME_KO[outcome]}")  # fmt: skip
        else:
            reason = f"{said} / {said_en}"
        actor = "resident" if meaning in ("ok", "help") else "system"
        record_event(conn, a["id"], now, actor, state, to, reason)
        log.info("answer of the call beside an escalation kept",
                 extra={"alert_id": a["id"], "outcome": outcome.value})  # fmt: skip

    # -- a cancel press ---------------------------------------------------------------------

    def cancel(
        self, conn: psycopg.Connection[Any], resident_id: int, f: Finding, now: datetime
    ) -> tuple[int | None, str | None]:
        """A cancel press: within the grace window after the press, the button alert becomes a
        check-in following the call already placed, or placing it if its step has not run yet
        (an OK closes it, no answer escalates again as for inactivity), and the care managers
        already told get an SMS saying so; later, or once a person or the resident's own words have it, only a line on
        its timeline. (alert id, None), or (None, why) when no button alert is open."""
        kind = CANCELS[f.kind]
        with conn.cursor(row_factory=dict_row) as cur:
            a = cur.execute(
                _LOCK.format(which="a.kind = %(kind)s"), {"resident": resident_id, "kind": kind}
            ).fetchone()
        if a is None:
            log.info("cancel press with no open alert", extra={"resident_id": resident_id})
            return None, "no_open_alert"
        state = AlertState(a["state"])
        after = int((f.raised_at - a["pressed_at"]).total_seconds())  # < 0: read before it
        grace = int(self.policy.button_cancel_grace.total_seconds())
        when = f"{after}초 뒤" if after >= 0 else f"{-after}초 전"
        pressed = f"응급호출 취소 버튼이 눌림 (호출 {when})"
        kept = self._cancel_refused(conn, a, state, after, grace) or self._cancel_suspect(
            conn, a, f, now, grace
        )
        if kept is not None:
            record_event(conn, a["id"], now, "resident", state, state, f"{pressed} — {kept[0]} / "
                         f"cancel pressed {after} s from the press: {kept[1]}")  # fmt: skip
            return int(a["id"]), None
        to = next_state(state, Event.BUTTON_CANCELLED)
        # nobody needs telling what is no longer so: the care managers not reached yet are not
        # rung or texted; those already reached hear that it was cancelled
        cancel_waiting(conn, a["id"], now, "button_cancelled", purpose="manager_alert")
        conn.execute(
            """UPDATE anbu.notifications SET status = 'cancelled', updated_at = %s,
                   error_code = 'button_cancelled'
                WHERE alert_id = %s AND status = 'pending' AND channel IN ('sms', 'voice')""",
            (now, a["id"]),
        )
        told = self.escalation.tell_again(
            conn, a, now, "응급호출 취소",
            "대상자가 응급호출을 취소했습니다. 안부전화로 확인 중이며, "
            "받지 않으면 다시 알려 드립니다",
            only_told=True,
        )  # fmt: skip
        conn.execute(
            """UPDATE anbu.alerts SET state = %s, escalation_level = 0,
                   awaiting_call = last_call_id IS NOT NULL, next_action_at = %s, updated_at = %s
               WHERE id = %s""",
            (to.value, now, now, a["id"]),
        )
        record_event(conn, a["id"], now, "resident", state, to,
                     f"{pressed} — 유예 {_minutes(grace)}분 이내라 안부전화로 확인합니다 (알린 "
                     f"담당자 {len(told)}명에게 취소 문자) / cancelled within the "
                     f"{_minutes(grace)} min grace window: checked by the resident's call")  # fmt: skip
        log.info("button alert turned into a check-in",
                 extra={"alert_id": a["id"], "after_s": after, "told": told})  # fmt: skip
        return int(a["id"]), None

    def _cancel_suspect(
        self, conn: psycopg.Connection[Any], a: dict[str, Any], f: Finding, now: datetime,
        grace: int,
    ) -> tuple[str, str] | None:  # fmt: skip
        """Why a cancel that cannot be the resident's own answer to this press leaves the alert
        as it is (Korean, English), or None: read before the press (two ingest workers can hand
        it over after it), pressed before another press (stored, handed over or not: the press
        after it wins, whatever order they are handed over in), arriving long after the window
        (buffered or back-dated: the server's clock, not the reading's), from another button,
        or after the resident's call went unanswered."""
        if f.raised_at < a["pressed_at"]:
            return ("취소가 호출보다 먼저 눌린 것이라 알림은 그대로 둡니다",
                    "the cancel was read before the press, the alert stands")  # fmt: skip
        later = conn.execute(
            """SELECT 1 FROM anbu.findings WHERE resident_id = %s AND kind = %s
                  AND raised_at > %s LIMIT 1""",
            (a["resident_id"], CANCELS[f.kind], f.raised_at),
        ).fetchone()
        if later is not None:
            return ("취소 뒤에 응급호출이 다시 눌려 알림은 그대로 둡니다",
                    "the button was pressed again after the cancel, the alert stands")  # fmt: skip
        if now - a["opened_at"] > timedelta(seconds=grace) + CANCEL_ARRIVAL_SLACK:
            return (f"취소가 유예 {_minutes(grace)}분이 지나 도착해 알림은 그대로 둡니다",
                    f"the cancel arrived after the {grace} s grace window, the alert stands")  # fmt: skip
        pressed_on = (a["pressed_details"] or {}).get("sensor_id")
        if pressed_on is None or f.details.get("sensor_id") != pressed_on:
            return ("호출한 버튼이 아닌 기기의 취소라 알림은 그대로 둡니다",
                    "the cancel came from another device than the press, the alert stands")  # fmt: skip
        if a["call_outcome"] in UNANSWERED:
            return ("대상자가 안부전화를 받지 않아 알림은 그대로 둡니다",
                    "the resident did not answer the call, the alert stands")  # fmt: skip
        return None

    def _cancel_refused(
        self, conn: psycopg.Connection[Any], a: dict[str, Any], state: AlertState, after: int,
        grace: int,
    ) -> tuple[str, str] | None:  # fmt: skip
        """Why a cancel press leaves the alert as it is (Korean, English), or None."""
        if after > grace:
            return (f"유예 {_minutes(grace)}분이 지나 알림은 그대로 둡니다",
                    f"after the {_minutes(grace)} min grace window, the alert stands")  # fmt: skip
        if state not in (AlertState.OPEN, AlertState.ESCALATED):
            return ("이미 담당자가 확인했거나 안부전화로 확인 중이라 그대로 둡니다",
                    "already taken or being checked by a call")  # fmt: skip
        if a["call_answer"] in HELP_ANSWERS or a["call_outcome"] in HELP_ANSWERS:
            return ("대상자가 전화로 도움을 요청해 그대로 둡니다",
                    "the resident asked for help on the call")  # fmt: skip
        asked = conn.execute(
            """SELECT 1 FROM anbu.findings WHERE resident_id = %s AND kind = ANY(%s)
                  AND raised_at >= %s LIMIT 1""",
            (a["resident_id"], list(join_partners(a["kind"])), a["pressed_at"] - JOIN_WINDOW),
        ).fetchone()
        if asked is not None:
            return ("대상자가 돌봄콜로도 도움을 요청해 그대로 둡니다",
                    "the resident also asked for help on the care line")  # fmt: skip
        return None

    # -- one emergency, one alert -----------------------------------------------------------

    def join(
        self, conn: psycopg.Connection[Any], resident_id: int, f: Finding, now: datetime
    ) -> int | None:
        """The open alert this finding belongs to, joined (a line on its timeline, its severity
        raised if the finding is worse), or None when it opens or raises its own: a help
        request and a button press of one resident within JOIN_WINDOW, and help said on an
        urgent alert's own call after the alert stopped waiting for it (alerts.intake's late
        answer names the alert)."""
        a = self._joinable(conn, resident_id, f)
        if a is None:
            return None
        alert_id = int(a["id"])
        state = AlertState(a["state"])
        next_state(state, Event.JOINED)
        route = route_for(f.kind)
        old = Severity.parse(a["severity"])
        raised = ""
        if f.severity > old:
            conn.execute("UPDATE anbu.alerts SET severity = %s WHERE id = %s",
                         (f.severity.label, alert_id))  # fmt: skip
            raised = f" (단계 상향 {old.korean} → {f.severity.korean})"
        conn.execute("UPDATE anbu.alerts SET updated_at = %s WHERE id = %s", (now, alert_id))
        record_event(conn, alert_id, now, "system", state, state,
                     f"{route.label_ko} 접수, 이 알림에 합침{raised}: {f.reason_ko} / "
                     f"joined: {f.reason_en}")  # fmt: skip
        log.info("finding joined an open alert",
                 extra={"alert_id": alert_id, "resident_id": resident_id, "kind": f.kind})  # fmt: skip
        named = "alert_id" in f.details
        if not route.escalate_now and (named or not route_for(a["kind"]).escalate_now):
            return alert_id
        a = {**a, "severity": max(f.severity, old).label}
        if not named:  # a line's help request or a press on a button alert: told again
            self.tell_again_now(conn, a, now, f"{route.label_ko}: {f.reason_ko}")
        elif state is AlertState.CALLING:  # being checked by a call: the resident asks for help
            to = next_state(state, Event.RESIDENT_NEEDS_HELP)
            critical = max(f.severity, old) is Severity.CRITICAL
            self.escalation.escalate(conn, a, state, to, now,
                                     level=TOP_LEVEL if critical else 0,
                                     reason=f"{route.label_ko}: {f.reason_ko}")  # fmt: skip
        elif state is not AlertState.OPEN:
            # help said on the alert's own call: those told hear it (the open one tells itself)
            self.escalation.tell_again(conn, a, now, f"{route.label_ko}", f.reason_ko)
        return alert_id

    def pressed_again(
        self, conn: psycopg.Connection[Any], resident_id: int, f: Finding, now: datetime
    ) -> int | None:
        """A button pressed, or a fire or gas alarm sounding, again while its alert is open (as
        severe already, so nothing was raised): a line on its timeline, and the care managers
        told again (after a cancel, or once a person took it, the ladder again: a care manager
        must never be left with 'cancelled' as the last word of a real press). The alert id."""
        with conn.cursor(row_factory=dict_row) as cur:
            a = cur.execute(
                _LOCK.format(which="a.kind = %(kind)s"), {"resident": resident_id, "kind": f.kind}
            ).fetchone()
        if a is None:
            return None
        state = AlertState(a["state"])
        label = route_for(f.kind).label_ko
        again_ko, again_en = ("다시 눌림", "pressed again") if f.kind in CANCELS.values() \
            else ("다시 울림", "alarmed again")  # fmt: skip
        record_event(conn, a["id"], now, "system", state, state,
                     f"{label} {again_ko}: {f.reason_ko} / {again_en}: {f.reason_en}")  # fmt: skip
        conn.execute("UPDATE anbu.alerts SET updated_at = %s WHERE id = %s", (now, a["id"]))
        self.tell_again_now(conn, a, now, f"{label} {again_ko}: {f.reason_ko}")
        log.info("press or alarm again on an open alert",
                 extra={"alert_id": a["id"], "resident_id": resident_id, "kind": f.kind})  # fmt: skip
        return int(a["id"])

    def tell_again_now(
        self, conn: psycopg.Connection[Any], a: dict[str, Any], now: datetime, reason: str
    ) -> None:
        """A new sign of the emergency on its open alert: being checked by a call after a cancel,
        or taken by a person, it escalates again (a critical one to the top); escalated, the
        top is told (a critical one below the top climbs there); open, its first step tells."""
        state = AlertState(a["state"])
        to = next_state(state, Event.PRESSED_AGAIN)
        if state is AlertState.OPEN:
            return
        if state is not AlertState.CALLING and self._realerted_since(conn, a, now - REALERT_EVERY):
            every = int(REALERT_EVERY.total_seconds() // 60)
            record_event(conn, a["id"], now, "system", state, state,
                         f"{every}분 안에 이미 다시 알려 이번에는 기록만 합니다 / told again "
                         f"within the last {every} min: noted only")  # fmt: skip
            log.info("re-alert within the limit noted only", extra={"alert_id": a["id"]})
            return
        critical = Severity.parse(a["severity"]) is Severity.CRITICAL
        level = int(a["escalation_level"])
        if state is AlertState.ESCALATED and (level >= TOP_LEVEL or not critical):
            self.escalation.tell_again(conn, a, now, "다시 알림", reason)
        else:
            self.escalation.escalate(conn, a, state, to, now,
                                     level=TOP_LEVEL if critical else level, reason=reason,
                                     afresh=True)  # fmt: skip
        record_event(conn, a["id"], now, "system", to, to, _REALERTED)

    @staticmethod
    def _realerted_since(conn: psycopg.Connection[Any], a: dict[str, Any], since: datetime) -> bool:
        """Whether tell_again_now told the alert's care managers again after `since`."""
        return (
            conn.execute(
                """SELECT 1 FROM anbu.alert_events
                    WHERE alert_id = %s AND at > %s AND reason = %s LIMIT 1""",
                (a["id"], since, _REALERTED),
            ).fetchone()
            is not None
        )

    def _joinable(
        self, conn: psycopg.Connection[Any], resident_id: int, f: Finding
    ) -> dict[str, Any] | None:
        """The open alert `f` joins, locked; None when it has none to join."""
        named = f.details.get("alert_id")
        with conn.cursor(row_factory=dict_row) as cur:
            if named is not None and f.kind.startswith("checkin_"):
                a = cur.execute(_LOCK.format(which="a.id = %(id)s"),
                                {"resident": resident_id, "id": int(named)}).fetchone()  # fmt: skip
                if a is None:
                    return None
                route = route_for(a["kind"])
                return a if route.escalate_now and route.call_resident else None
            partners = join_partners(f.kind)
            if not partners:
                return None
            own = cur.execute(
                """SELECT 1 FROM anbu.alerts WHERE resident_id = %s AND kind = %s
                      AND state <> 'resolved'""",
                (resident_id, f.kind),
            ).fetchone()
            if own is not None:  # its own kind's alert is open: raised there, as ever
                return None
            return cur.execute(
                _LOCK.format(which="a.kind = ANY(%(kinds)s) AND a.opened_at >= %(since)s"),
                {"resident": resident_id, "kinds": sorted(partners),
                 "since": f.raised_at - JOIN_WINDOW},
            ).fetchone()  # fmt: skip
