"""Alert flows: open from findings, run the timers, place calls, escalate, acknowledge, resolve.

Timers are rows (`next_action_at`, `awaiting_call`), claimed one at a time with
FOR UPDATE SKIP LOCKED, so any number of workers can run this and a restart loses
nothing. Every transition is written to alert_events with its reason. One alert's step that
raises is rolled back alone and backed off (`step_backoff`, with an event saying why); the
pass goes on with the others. A check-in call's
watchdog counts from when the send queue dialled it, not queued it (policy.call_watch).
Climbing the ladder and telling care managers is alerts.escalation's part.

A stored finding always ends in an alert: the transaction that opens or raises its alert (or
finds the open one already as severe) also sets the finding's `alerted_at`. A finding stored
but not yet handed over (a crash, a deploy or an error in between) waits for
`reconcile_findings`, which the worker runs on its due-work poll; a failed hand-over backs off
and the others go on. An open alert resolved between the insert that conflicts with it and the
lookup that would raise it does not drop the finding: the open is tried again. A finding of a
resident whose service has ended is handed over without an alert (`not_alerted` says why), and
such a resident is never called. Acknowledging or resolving an alert cancels its calls still
queued and its messages not yet sent, in that transaction. An emergency button's or a fire or
gas alarm's alert also takes alerts.safety's steps: the resident's call beside the escalation,
a cancel press, and findings that join the open alert of the same emergency.
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
from alerts.escalation import Escalation, Messaging, wake_at
from alerts.machine import Event, IllegalTransition, next_state
from alerts.models import RESOLUTION_OUTCOMES, AlertChanged, AlertNotFound
from alerts.outbox import SmsOutbox
from alerts.policy import (
    OUTCOME_KO,
    OUTCOME_MEANING,
    TOP_LEVEL,
    EscalationPolicy,
    after_call,
    call_watch,
)
from alerts.queries import Dongs, alert_version, dong_list
from alerts.routing import (
    CANCELS,
    holds_for_quiet_hours,
    join_partners,
    queue_of,
    quiet_hours_end,
    route_for,
)
from alerts.safety import JOIN_LOCK, SafetyAlerts, manager_words
from calls.answers import record_acted_on
from calls.dialer import cancel_waiting
from core.clock import Clock
from core.db import Database
from core.domain import AlertState, CallOutcome, Finding, Severity
from registry.assignment import check_assignee

log = logging.getLogger(__name__)

MIN_WAKE = timedelta(seconds=1)  # a pushed timer never comes due in the same poll again
OPEN_ATTEMPTS = 5  # opens tried when the conflicting open alert keeps being resolved meanwhile
RETRY_FIRST = timedelta(seconds=5)  # a finding whose hand-over failed waits this, doubling,
RETRY_MAX = timedelta(minutes=5)  # up to this, before the reconciler tries it again

# The oldest finding not yet handed to an alert and not backing off, skipping rows another pass
# holds; `skip` are this pass's own failures.
_WAITING = """
SELECT f.id, f.resident_id, f.kind, f.severity, f.raised_at, f.reason_ko, f.reason_en,
       f.details, f.alert_tries, r.home
  FROM anbu.findings f JOIN anbu.resident r ON r.id = f.resident_id
 WHERE f.alerted_at IS NULL
   AND (f.alert_retry_at IS NULL OR f.alert_retry_at <= %(now)s)
   AND (f.alert_tries > 0 OR f.stored_at <= now() - %(fresh)s)
   AND f.id <> ALL(%(skip)s::bigint[])
 ORDER BY f.id
 LIMIT 1
   FOR NO KEY UPDATE OF f SKIP LOCKED
"""


# the reconciler leaves a finding stored this recently (the database's clock) to the listener
# that is handing it over: it takes only what waited, never races a fresh one
RECONCILE_AFTER = timedelta(seconds=10)

STEP_RETRY_FIRST = timedelta(minutes=1)  # an alert whose step raised waits this, doubling,
STEP_RETRY_MAX = timedelta(minutes=30)  # up to this: a care manager still sees it open

# The alert due first, skipping rows another worker holds, alerts backing off after a failed
# step and `skip` (this pass's own failures).
_DUE_ALERT = """
SELECT a.*, c.outcome AS call_outcome, c.dial_state AS call_dial_state,
       c.dialled_at AS call_dialled_at,
       GREATEST(c.created_at, c.not_before) AS call_queued_at,
       r.dong_code, r.home,
       (SELECT d.name FROM anbu.dong d WHERE d.code = r.dong_code) AS dong_name,
       r.quiet_start, r.quiet_end, r.status AS resident_status,
       r.status_until
  FROM anbu.alerts a
  JOIN anbu.resident r ON r.id = a.resident_id
  LEFT JOIN anbu.calls c ON c.id = a.last_call_id
 WHERE a.state <> 'resolved'
   AND (a.next_action_at <= %(now)s OR (a.awaiting_call AND c.outcome IS NOT NULL))
   AND (a.step_retry_at IS NULL OR a.step_retry_at <= %(now)s)
   AND a.id <> ALL(%(skip)s::bigint[])
   AND (%(only)s::bigint[] IS NULL OR a.id = ANY(%(only)s::bigint[]))
 ORDER BY a.next_action_at NULLS LAST
 LIMIT 1
   FOR NO KEY UPDATE OF a SKIP LOCKED
"""


def step_backoff(failures: int) -> timedelta:
    """How long an alert whose step raised `failures` times in a row waits for the next try."""
    wait: timedelta = STEP_RETRY_FIRST * 2 ** min(max(failures - 1, 0), 16)
    return min(wait, STEP_RETRY_MAX)


def reassign_reason(before: int | None, to_manager_id: int, note: str = "") -> str:
    """The timeline's words for a hand-over, Korean then English (as alerts.absence writes
    them), then the note as the supervisor typed it."""
    ko_from = f"담당자 #{before}" if before else "행정동 공동 담당"
    en_from = f"care manager #{before}" if before else "the dong's care managers"
    ko = f"담당자 변경: {ko_from} → 담당자 #{to_manager_id}"
    en = f"reassigned: {en_from} → care manager #{to_manager_id}"
    return f"{ko} / {en}" + (f" — {note}" if note else "")


def _stop_waiting(conn: psycopg.Connection[Any], alert_id: int, now: datetime, why: str) -> None:
    """A care manager took or closed the alert: in that transaction, its calls still waiting in
    the send queue (the resident's check-in, care managers' voice calls) are cancelled, and its
    SMS and voice notifications not yet sent are marked 'cancelled' (nobody needs telling now)."""
    cancelled = cancel_waiting(conn, alert_id, now, why)
    untold = conn.execute(
        """UPDATE anbu.notifications SET status = 'cancelled', updated_at = %s,
               error_code = %s
            WHERE alert_id = %s AND status = 'pending' AND channel IN ('sms', 'voice')""",
        (now, why, alert_id),
    ).rowcount
    if cancelled or untold:
        log.info("queued calls and messages of a taken alert cancelled",
                 extra={"alert_id": alert_id, "calls": len(cancelled), "messages": untold,
                        "why": why})  # fmt: skip


def _service_ended(conn: psycopg.Connection[Any], resident_id: int) -> bool:
    """The resident's service has ended. FOR SHARE waits for an end of service in progress (it
    holds the row FOR NO KEY UPDATE), so a finding handed over meanwhile sees its outcome."""
    row = conn.execute(
        "SELECT status FROM anbu.resident WHERE id = %s FOR SHARE", (resident_id,)
    ).fetchone()
    return row is not None and row[0] == "ended"


class AlertRace(RuntimeError):
    """The open alert a finding conflicted with vanished every time it was looked up."""


def retry_after(tries: int) -> timedelta:
    """How long a finding whose hand-over failed `tries` times waits for the next try."""
    wait: timedelta = RETRY_FIRST * 2 ** min(max(tries - 1, 0), 16)
    return min(wait, RETRY_MAX)


class Telephony(Messaging, Protocol):
    """What alerts need from calls/: queue a check-in call in the step's transaction and dial
    it after the step committed, and what escalation needs."""

    def queue_check_in(
        self, conn: psycopg.Connection[Any], resident_id: int, alert_id: int, attempt: int
    ) -> int: ...

    def dial_check_ins(self, alert_id: int) -> int: ...


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
        self.escalation = Escalation(telephony, policy, self.dashboard_url)
        self.safety = SafetyAlerts(telephony, self.escalation, policy, self.tz)
        self.outbox = SmsOutbox(db, telephony, clock)

    # -- findings -> alerts ------------------------------------------------------------

    def on_findings(self, findings: list[IncomingFinding]) -> list[int]:
        """Hand each stored finding to its alert: open one, or raise the severity of the open one;
        returns the ids of the alerts opened or raised.

        Each finding goes in its own transaction, which also marks it alerted; one whose step
        fails stays waiting for `reconcile_findings` (after a back-off) and the others go on.
        """
        return self.hand_over_findings(findings)[1]

    def hand_over_findings(self, findings: list[IncomingFinding]) -> tuple[int, list[int]]:
        """As `on_findings`, and how many findings were handed over (marked alerted by this
        pass: not one another pass holds or had, nor one whose step failed)."""
        handed = 0
        touched: list[int] = []
        for item in findings:
            try:
                done, alert_id = self._hand_over_stored(item)
            except Exception:  # e.g. the connection broke: the finding is still waiting
                log.exception("finding not alerted yet; the reconciler retries it",
                              extra={"finding_id": item.finding_id,
                                     "resident_id": item.resident_id})  # fmt: skip
                continue
            handed += done
            if alert_id is not None:
                touched.append(alert_id)
                self._send_told(alert_id)
        return handed, touched

    def reconcile_findings(self, limit: int = 100) -> int:
        """Findings stored but not yet handed to an alert (a crash, a deploy or an error between
        their commit and their alert's): each in its own transaction, claimed with
        FOR UPDATE SKIP LOCKED, oldest first. Returns how many were handed over."""
        done = 0
        skip: list[int] = []  # this pass's failures: tried again on a later pass
        for _ in range(limit):
            claimed: int | None = None
            try:
                with self.db.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
                    now = self.clock.now()
                    row = cur.execute(
                        _WAITING, {"now": now, "skip": skip, "fresh": RECONCILE_AFTER}
                    ).fetchone()
                    if row is None:
                        return done
                    claimed = int(row["id"])
                    item = IncomingFinding(
                        claimed,
                        int(row["resident_id"]),
                        Finding(str(row["home"]), str(row["kind"]),
                                Severity.parse(row["severity"]), row["raised_at"],
                                str(row["reason_ko"]), str(row["reason_en"]),
                                dict(row["details"] or {})),
                    )  # fmt: skip
                    log.warning("handing over a finding that waited",
                                extra={"finding_id": claimed, "resident_id": item.resident_id,
                                       "kind": item.finding.kind})  # fmt: skip
                    handed, _ = self._hand_over(conn, item, int(row["alert_tries"]), now, True)
            except Exception:  # e.g. the connection broke: nothing was recorded; go on
                log.exception("reconciling a finding failed", extra={"finding_id": claimed})
                handed = False
            if handed:
                done += 1
            elif claimed is not None:
                skip.append(claimed)
            else:  # no finding could even be looked for (the database is away): next tick
                return done
        return done

    def _hand_over_stored(self, item: IncomingFinding) -> tuple[bool, int | None]:
        """A finding the caller has just stored: whether it was handed over (not when another
        pass holds or had it, nor when its step failed), and the alert opened or raised."""
        with self.db.connection() as conn:
            now = self.clock.now()
            row = conn.execute(
                """SELECT alert_tries FROM anbu.findings WHERE id = %s AND alerted_at IS NULL
                   FOR NO KEY UPDATE SKIP LOCKED""",
                (item.finding_id,),
            ).fetchone()
            if row is None:  # handed over already, or being handed over by the reconciler
                return False, None
            return self._hand_over(conn, item, int(row[0]), now, late=False)

    def _hand_over(
        self,
        conn: psycopg.Connection[Any],
        item: IncomingFinding,
        tries: int,
        now: datetime,
        late: bool,
    ) -> tuple[bool, int | None]:
        """In the transaction that holds the finding's row: open or raise its alert and mark the
        finding alerted, both or neither. A failure is logged (ids only) and put off by
        `retry_after`. Returns whether it was handed over, and the alert opened or raised."""
        try:
            with conn.transaction():  # a savepoint: a failure undoes the alert's half only
                if _service_ended(conn, item.resident_id):
                    conn.execute(
                        """UPDATE anbu.findings SET alerted_at = %s, alert_retry_at = NULL,
                               not_alerted = 'service_ended' WHERE id = %s""",
                        (now, item.finding_id),
                    )
                    log.info("finding of an ended service not alerted",
                             extra={"finding_id": item.finding_id,
                                    "resident_id": item.resident_id})  # fmt: skip
                    return True, None
                alert_id, not_alerted = self._take_in(conn, item, now, late)
                conn.execute(
                    """UPDATE anbu.findings SET alerted_at = %s, alert_retry_at = NULL,
                           not_alerted = %s WHERE id = %s""",
                    (now, not_alerted, item.finding_id),
                )
        except Exception:
            retry_at = now + retry_after(tries + 1)
            conn.execute(
                """UPDATE anbu.findings SET alert_tries = alert_tries + 1, alert_retry_at = %s
                   WHERE id = %s""",
                (retry_at, item.finding_id),
            )
            log.exception("finding not alerted; tried again later",
                          extra={"finding_id": item.finding_id, "resident_id": item.resident_id,
                                 "tries": tries + 1, "retry_at": retry_at.isoformat()})  # fmt: skip
            return False, None
        return True, alert_id

    def _take_in(
        self, conn: psycopg.Connection[Any], item: IncomingFinding, now: datetime, late: bool
    ) -> tuple[int | None, str | None]:
        """Where the finding goes: a cancel press to its button's open alert (never an alert of
        its own), a finding that is part of an open alert's emergency joins it, any other
        opens or raises its own. (alert id or None, why no alert when it reached none)."""
        f = item.finding
        if f.kind in CANCELS:
            return self.safety.cancel(conn, item.resident_id, f, now)
        if join_partners(f.kind):  # a press and a line request at once: one looks, then the other
            conn.execute("SELECT pg_advisory_xact_lock(%s, %s)", (JOIN_LOCK, item.resident_id))
        joined = self.safety.join(conn, item.resident_id, f, now)
        if joined is not None:
            return joined, None
        return self._open_or_raise(conn, item, now, late), None

    def _open_or_raise(
        self, conn: psycopg.Connection[Any], item: IncomingFinding, now: datetime, late: bool
    ) -> int | None:
        """Open the finding's alert, or raise the open one's severity; the alert id, or None when
        the open alert is already as severe. The open alert may be resolved between the insert
        that conflicts with it and the lookup: then open again (OPEN_ATTEMPTS at most)."""
        for _ in range(OPEN_ATTEMPTS):
            opened = self._open(conn, item, now, late)
            if opened is not None:
                return opened
            current = self._lock_open(conn, item.resident_id, item.finding.kind)
            if current is not None:
                raised = self._raise(conn, item, current, now)
                if raised is None and route_for(item.finding.kind).escalate_now:
                    # a press or an alarm again is never dropped: its care managers hear it
                    return self.safety.pressed_again(conn, item.resident_id, item.finding, now)
                return raised
            log.info("open alert resolved meanwhile; opening again",
                     extra={"finding_id": item.finding_id, "resident_id": item.resident_id})  # fmt: skip
        raise AlertRace(item.finding_id)

    def _open(
        self, conn: psycopg.Connection[Any], item: IncomingFinding, now: datetime, late: bool
    ) -> int | None:
        """A new alert for the finding; None when one of its kind is open already."""
        f = item.finding
        route = route_for(f.kind)
        # calls and direct escalations are due now; the rest is for the dashboard only
        first_action = now if (route.call_resident or route.escalate_now) else None
        row = conn.execute(
            """INSERT INTO anbu.alerts (resident_id, kind, severity, state, opened_at,
                                        updated_at, next_action_at, finding_id, queue)
               VALUES (%s, %s, %s, 'open', %s, %s, %s, %s, %s)
               ON CONFLICT (resident_id, kind) WHERE state <> 'resolved' DO NOTHING
               RETURNING id""",
            (
                item.resident_id,
                f.kind,
                f.severity.label,
                now,
                now,
                first_action,
                item.finding_id,
                queue_of(f.kind, f.details),
            ),
        ).fetchone()
        if row is None:
            return None
        alert_id = int(row[0])
        why = f.reason_ko if route.call_resident else f"{route.label_ko}: {f.reason_ko}"
        if late:  # handed over by the reconciler: say so, and when the finding was made
            found = f.raised_at.astimezone(self.tz)
            why = f"{why} (발견 {found:%m-%d %H:%M}, 누락 복구로 열림)"
        record_event(conn, alert_id, now, "system", None, AlertState.OPEN, why)
        log.info("alert opened", extra={"alert_id": alert_id, "resident_id": item.resident_id})
        return alert_id

    def _lock_open(
        self, conn: psycopg.Connection[Any], resident_id: int, kind: str
    ) -> dict[str, Any] | None:
        """The resident's open alert of `kind`, locked; None when there is none (now)."""
        # NO KEY: a call queued meanwhile (the outbox, the send queue) references this alert
        # from another connection, and its foreign key check must not wait for this lock
        with conn.cursor(row_factory=dict_row) as cur:
            return cur.execute(
                """SELECT a.id, a.severity, a.state, a.awaiting_call, a.escalation_level,
                          r.dong_code, r.home
                   FROM anbu.alerts a JOIN anbu.resident r ON r.id = a.resident_id
                   WHERE a.resident_id = %s AND a.kind = %s AND a.state <> 'resolved'
                   FOR NO KEY UPDATE OF a""",
                (resident_id, kind),
            ).fetchone()

    def _raise(
        self,
        conn: psycopg.Connection[Any],
        item: IncomingFinding,
        current: dict[str, Any],
        now: datetime,
    ) -> int | None:
        """Raise the open alert to the finding's severity; None when it is as severe already."""
        f = item.finding
        route = route_for(f.kind)
        severity = f.severity.label
        alert_id = int(current["id"])
        old, state = Severity.parse(current["severity"]), AlertState(current["state"])
        if f.severity <= old:
            return None
        next_state(state, Event.SEVERITY_RAISED)
        conn.execute(
            """UPDATE anbu.alerts SET severity = %s, finding_id = %s, updated_at = %s
               WHERE id = %s""",
            (severity, item.finding_id, now, alert_id),
        )
        held = state in (AlertState.OPEN, AlertState.CALLING) and not current["awaiting_call"]
        if route.call_resident and held and not holds_for_quiet_hours(f.severity):
            # a call held for quiet hours or waiting to retry goes now that it is critical
            wake_at(conn, alert_id, now)
        raised = f"단계 상향 {old.korean} → {f.severity.korean}"
        record_event(conn, alert_id, now, "system", state, state, f"{raised}: {f.reason_ko}")
        if state is AlertState.ESCALATED:  # the top's reminders may have stopped: start over
            self.escalation.rearm(conn, {**current, "severity": severity}, now, raised)
        return alert_id

    # -- timers ----------------------------------------------------------------------------

    def process_due(self, limit: int = 100, only: list[int] | None = None) -> int:
        """Advance every alert whose timer is due or whose call has ended; returns how many.
        `only`: just these alerts (the urgent listener's, ahead of any backlog).

        Each alert's step runs in a savepoint of its own transaction: one that raises is rolled
        back alone, put off by `step_backoff` with an event saying why, and the pass goes on
        with the others (it is skipped for the rest of this pass even if the back-off itself
        cannot be written)."""
        done = 0
        skip: list[int] = []  # this pass's failures: never claimed twice in one pass
        while done + len(skip) < limit:
            with self.db.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
                now = self.clock.now()
                alert = cur.execute(_DUE_ALERT, {"now": now, "skip": skip, "only": only}).fetchone()
                if alert is None:
                    return done
                alert_id = int(alert["id"])
                try:
                    with conn.transaction():  # a savepoint: a failure undoes this step only
                        self._advance(conn, alert, now)
                        if alert["step_failures"]:
                            conn.execute(
                                """UPDATE anbu.alerts SET step_failures = 0, step_retry_at = NULL
                                   WHERE id = %s""",
                                (alert_id,),
                            )
                except Exception as exc:
                    skip.append(alert_id)
                    self._back_off(conn, alert, now, exc)
                    continue
            self._send_told(alert_id)
            done += 1
        return done

    def _back_off(
        self, conn: psycopg.Connection[Any], a: dict[str, Any], now: datetime, exc: Exception
    ) -> None:
        """After a step that raised: count the failure, put the alert off and say why, in the
        transaction that still holds its row. Logged with ids only; a back-off that cannot be
        written either (the database is away) is logged and left to the next pass."""
        alert_id = int(a["id"])
        failures = int(a["step_failures"]) + 1
        wait = step_backoff(failures)
        retry_at = now + wait
        log.error("alert step failed; backing off",
                  exc_info=exc,
                  extra={"alert_id": alert_id, "resident_id": a["resident_id"],
                         "failures": failures, "retry_at": retry_at.isoformat()})  # fmt: skip
        minutes = max(1, round(wait.total_seconds() / 60))
        state = AlertState(a["state"])
        try:
            with conn.transaction():
                conn.execute(
                    """UPDATE anbu.alerts SET step_failures = %s, step_retry_at = %s,
                           next_action_at = %s WHERE id = %s""",
                    (failures, retry_at, retry_at, alert_id),
                )
                record_event(conn, alert_id, now, "system", state, state,
                             f"처리 중 오류로 {minutes}분 뒤 다시 시도 ({failures}회째) / "
                             f"step failed ({type(exc).__name__}); retried in {minutes} min "
                             f"(failure {failures})")  # fmt: skip
        except Exception:
            log.exception("alert back-off not recorded; the next pass tries it again",
                          extra={"alert_id": alert_id})  # fmt: skip

    def _send_told(self, alert_id: int) -> None:
        """Send the SMS and place the care managers' calls the alert's committed step wrote, now
        rather than at the outbox job's next pass; a failure here leaves them to that job. So
        with the resident's check-in call the step queued: dialled now, else by the drainer.
        The care managers first: when a button or an alarm tells them and calls the resident in
        one step, their call must not wait behind the resident's for a call token."""
        try:
            self.outbox.send_due(alert_id=alert_id)
        except Exception:  # the rows are the truth: the outbox job sends what is left
            log.exception("sms not sent after the step; the outbox job retries",
                          extra={"alert_id": alert_id})  # fmt: skip
        try:
            self.telephony.dial_check_ins(alert_id)
        except Exception:  # the queued row is the truth: the send queue's drainer dials it
            log.exception("check-in call not dialled after the step; the drainer dials it",
                          extra={"alert_id": alert_id})  # fmt: skip

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
            said = manager_words(a["kind"], a.get("dong_name"), route)
            self.escalation.escalate(conn, a, state, to, now, level=level, reason=said)
            if route.call_resident:  # the same step: the resident's call never waits for theirs
                self.safety.call_beside(conn, a, now)
        elif state is AlertState.OPEN and not route.call_resident:
            conn.execute("UPDATE anbu.alerts SET next_action_at = NULL WHERE id = %s", (a["id"],))
        elif state in (AlertState.OPEN, AlertState.CALLING) and not a["awaiting_call"]:
            self._place_call(conn, a, state, now)
        elif state is AlertState.CALLING and a["awaiting_call"]:
            outcome = CallOutcome(a["call_outcome"]) if a["call_outcome"] else None
            if outcome is None and self._watch_pending_call(conn, a, now):
                return
            self._after_call(conn, a, outcome, now)
        elif state is AlertState.ESCALATED and a["awaiting_call"] and a["call_outcome"]:
            self.safety.answered_beside(conn, a, CallOutcome(a["call_outcome"]), now)
        elif state is AlertState.ESCALATED:
            self.escalation.climb(conn, a, now)
        else:  # acknowledged: nothing is due until the care manager resolves
            conn.execute("UPDATE anbu.alerts SET next_action_at = NULL WHERE id = %s", (a["id"],))

    def _place_call(
        self, conn: psycopg.Connection[Any], a: dict[str, Any], state: AlertState, now: datetime
    ) -> None:
        if a.get("resident_status") == "ended":  # an end of service that missed this alert
            self._close_ended(conn, a, state, now)
            return
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
        # only queued, in this transaction: _send_told dials it once the step has committed
        call_id = self.telephony.queue_check_in(conn, a["resident_id"], a["id"], attempt)
        to = next_state(state, Event.CALL_PLACED)
        conn.execute(
            """UPDATE anbu.alerts SET state = %s, call_attempts = %s, last_call_id = %s,
                   awaiting_call = true, next_action_at = %s, updated_at = %s WHERE id = %s""",
            (to.value, attempt, call_id, now + self.policy.call_watchdog, now, a["id"]),
        )
        record_event(conn, a["id"], now, "system", state, to, f"안부전화 {attempt}회차 발신")
        log.info("check-in call placed", extra={"alert_id": a["id"], "attempt": attempt})

    def _close_ended(
        self, conn: psycopg.Connection[Any], a: dict[str, Any], state: AlertState, now: datetime
    ) -> None:
        """The resident's service has ended: no call; the alert is closed as the end of service
        closes the others (outcome 'service_ended'), saying why."""
        cancel_waiting(conn, a["id"], now, "service_ended")
        to = next_state(state, Event.SERVICE_ENDED)
        conn.execute(
            """UPDATE anbu.alerts SET state = %s, resolved_at = %s, outcome = 'service_ended',
                   awaiting_call = false, next_action_at = NULL, updated_at = %s WHERE id = %s""",
            (to.value, now, now, a["id"]),
        )
        record_event(conn, a["id"], now, "system", state, to,
                     "서비스가 종료된 대상자라 안부전화를 걸지 않고 종결 / "
                     "closed: the resident's service has ended, no check-in call")  # fmt: skip
        log.info("alert of an ended service closed without a call",
                 extra={"alert_id": a["id"], "resident_id": a["resident_id"]})  # fmt: skip

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
            wake_at(conn, a["id"], max(watch.until, now + MIN_WAKE))
            return True
        waited = now - a["call_queued_at"]
        cancelled = cancel_waiting(conn, a["id"], now, "queue_timeout", purpose="check_in",
                                   details={"waited_s": int(waited.total_seconds())})  # fmt: skip
        if a["last_call_id"] not in cancelled:  # a dialler took it meanwhile: it rings now
            wake_at(conn, a["id"], now + self.policy.call_watchdog)
            return True
        state = AlertState.CALLING
        to = next_state(state, Event.CANNOT_CALL)
        minutes = int(waited.total_seconds() // 60)
        self.escalation.escalate(
            conn, a, state, to, now, level=0,
            reason=f"안부전화 {a['call_attempts']}회차가 {minutes}분 동안 발신 대기열에서 나가지 "
                   f"못해 취소함 (발신 지연) — {self.policy.step(0).label_ko}에게 알림",
        )  # fmt: skip
        return True

    def _after_call(
        self,
        conn: psycopg.Connection[Any],
        a: dict[str, Any],
        outcome: CallOutcome | None,
        now: datetime,
    ) -> None:
        state = AlertState.CALLING
        outcome = outcome or CallOutcome.NO_ANSWER  # the watchdog fired: no result is no answer
        if a["last_call_id"] is not None:  # a help answer after this one is reported late
            record_acted_on(conn, int(a["last_call_id"]), outcome)
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
            self.escalation.escalate(conn, a, state, to, now, level=level, reason=why)
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

    # -- care manager actions ------------------------------------------------------------

    def _locked_in_dong(
        self, conn: psycopg.Connection[Any], alert_id: int, dongs: Dongs, seen: int | None = None
    ) -> dict[str, Any]:
        """The alert, locked, if it is in `dongs`; AlertChanged when `seen` (the version the
        care manager acted on) is no longer its version: the lock holds off any change now."""
        with conn.cursor(row_factory=dict_row) as cur:
            row = cur.execute(
                """SELECT a.* FROM anbu.alerts a JOIN anbu.resident r ON r.id = a.resident_id
                   WHERE a.id = %s AND r.dong_code = ANY(%s) FOR NO KEY UPDATE OF a""",
                (alert_id, dong_list(dongs)),
            ).fetchone()
        if row is None:
            raise AlertNotFound(alert_id)
        if seen is not None:
            version = alert_version(conn, alert_id)
            if version != seen:
                raise AlertChanged(alert_id, row["state"], row["severity"], version)
        return row

    def acknowledge(
        self,
        alert_id: int,
        care_manager_id: int,
        dong_code: Dongs,
        note: str = "",
        seen: int | None = None,
    ) -> None:
        """The care manager takes the alert; raises IllegalTransition or AlertNotFound, and
        AlertChanged when `seen` is given and the alert changed since that version."""
        now = self.clock.now()
        with self.db.connection() as conn:
            a = self._locked_in_dong(conn, alert_id, dong_code, seen)
            state = AlertState(a["state"])
            to = _next_or_who(conn, alert_id, state, Event.ACKNOWLEDGE)
            conn.execute(
                """UPDATE anbu.alerts SET state = %s, acknowledged_by = %s, acknowledged_at = %s,
                       awaiting_call = false, next_action_at = NULL, updated_at = %s
                   WHERE id = %s""",
                (to.value, care_manager_id, now, now, alert_id),
            )
            reason = "담당자 확인" + (f": {note}" if note else "")
            record_event(conn, alert_id, now, f"care_manager:{care_manager_id}", state, to, reason)
            _stop_waiting(conn, alert_id, now, "acknowledged")

    def resolve(
        self,
        alert_id: int,
        care_manager_id: int,
        dong_code: Dongs,
        outcome: str,
        note: str = "",
        seen: int | None = None,
    ) -> None:
        """Close the alert with an outcome from RESOLUTION_OUTCOMES (AlertChanged as
        acknowledge: a severity raised since `seen` is never closed blind)."""
        if outcome not in RESOLUTION_OUTCOMES:
            raise ValueError(f"unknown outcome {outcome!r}")
        now = self.clock.now()
        with self.db.connection() as conn:
            a = self._locked_in_dong(conn, alert_id, dong_code, seen)
            state = AlertState(a["state"])
            to = _next_or_who(conn, alert_id, state, Event.RESOLVE)
            conn.execute(
                """UPDATE anbu.alerts SET state = %s, resolved_by = %s, resolved_at = %s,
                       outcome = %s, next_action_at = NULL, updated_at = %s WHERE id = %s""",
                (to.value, care_manager_id, now, outcome, now, alert_id),
            )
            reason = f"종결: {RESOLUTION_OUTCOMES[outcome][0]}" + (f" — {note}" if note else "")
            record_event(conn, alert_id, now, f"care_manager:{care_manager_id}", state, to, reason)
            _stop_waiting(conn, alert_id, now, "resolved")

    def reassign(
        self,
        alert_id: int,
        care_manager_id: int,
        dongs: Dongs,
        to_manager_id: int,
        note: str = "",
        seen: int | None = None,
    ) -> None:
        """Hand the alert to another active care manager of the resident's dong (within `dongs`,
        a supervisor's district), audited with who and why; AlertNotFound outside `dongs`,
        InvalidChange when the care manager named is not one of them (check_assignee),
        IllegalTransition once resolved. The state does not change."""
        now = self.clock.now()
        with self.db.connection() as conn:
            a = self._locked_in_dong(conn, alert_id, dongs, seen)
            _next_or_who(conn, alert_id, AlertState(a["state"]), Event.REASSIGN)  # once resolved
            dong = conn.execute(
                "SELECT dong_code FROM anbu.resident WHERE id = %s", (a["resident_id"],)
            ).fetchone()
            assert dong is not None  # _locked_in_dong joined it
            check_assignee(conn, str(dong[0]), dong_list(dongs), to_manager_id)
            conn.execute(
                "UPDATE anbu.alerts SET assigned_to = %s, updated_at = %s WHERE id = %s",
                (to_manager_id, now, alert_id),
            )
            state = AlertState(a["state"])
            before = a["assigned_to"]
            reason = reassign_reason(before, to_manager_id, note)
            record_event(
                conn, alert_id, now, f"care_manager:{care_manager_id}", state, state, reason
            )
            log.info(
                "alert reassigned",
                extra={"alert_id": alert_id, "care_manager_id": care_manager_id,
                       "assigned_to": to_manager_id},
            )  # fmt: skip


def _next_or_who(
    conn: psycopg.Connection[Any], alert_id: int, state: AlertState, event: Event
) -> AlertState:
    """next_state; refused, the IllegalTransition says when the alert came to its state and who
    brought it there (its latest event into that state), for the care manager acting second."""
    try:
        return next_state(state, event)
    except IllegalTransition as refused:
        last = conn.execute(
            """SELECT at, actor FROM anbu.alert_events WHERE alert_id = %s AND to_state = %s
               ORDER BY at DESC, id DESC LIMIT 1""",
            (alert_id, state.value),
        ).fetchone()
        if last is None:
            raise
        raise IllegalTransition(state, event, last[0], str(last[1])) from refused
