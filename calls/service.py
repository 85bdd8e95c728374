"""Check-in calls and SMS through Twilio; the only writer of anbu.calls and anbu.call_events.

A call row is stored and committed before Twilio is asked to dial, under an idempotency key
that is unique in the table: a retried or concurrent request for the same key dials nobody.
Phone numbers are read from anbu.resident and never logged; logs carry call and resident ids.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import psycopg
from psycopg.types.json import Jsonb
from twilio.rest import Client

from calls import sms, twiml
from calls.client import TWILIO_ERRORS
from calls.dialer import Dialler, Priority, cancel_waiting, error_code
from calls.lost import DIAL_UNKNOWN, LostCall, cancel_if_lost, lost_after, reap
from calls.outcomes import (
    ANSWERED_BY_OUTCOMES,
    LOST_STATUS,
    STATUS_OUTCOMES,
    TERMINAL_STATUSES,
    classify_answer,
    classify_status,
    stronger_answer,
)
from calls.understanding import SpeechModel, load_utterances
from core.clock import Clock
from core.config import Settings
from core.db import Database
from core.domain import CallOutcome

log = logging.getLogger(__name__)

# (language, purpose, message_ko, alert kind): what a call says (CallService.script_of)
Script = tuple[str, str, str | None, str | None]

# Webhook parameters worth keeping in call_events; To/From/Caller and locations are left out.
KEPT_PARAMS = frozenset(
    {
        "CallSid",
        "CallStatus",
        "AnsweredBy",
        "CallDuration",
        "Digits",
        "SpeechResult",
        "Confidence",
        "SequenceNumber",
        "Timestamp",
        "CallbackSource",
        "ErrorCode",
        "SipResponseCode",
    }
)


@dataclass(frozen=True, slots=True)
class CallRecord:
    """One row of anbu.calls as the rest of anbu sees it."""

    id: int
    idempotency_key: str
    resident_id: int
    alert_id: int | None
    purpose: str
    twilio_sid: str | None
    status: str
    outcome: CallOutcome | None
    digits: str | None
    speech: str | None
    answered_by: str | None
    created_at: datetime
    ended_at: datetime | None


def idempotency_key(resident_id: int, alert_id: int | None, attempt: int, local_date: str) -> str:
    """alert:<id>:attempt:<n>, or routine:<resident>:<date> (with :attempt:<n> after the first)."""
    if alert_id is not None:
        return f"alert:{alert_id}:attempt:{attempt}"
    base = f"routine:{resident_id}:{local_date}"
    return base if attempt <= 1 else f"{base}:attempt:{attempt}"


def _kept(params: Mapping[str, str]) -> dict[str, str]:
    return {k: v for k, v in params.items() if k in KEPT_PARAMS}


class CallService:
    """Places check-in calls, sends SMS and records what Twilio reports back."""

    def __init__(self, db: Database, twilio_client: Client, settings: Settings, clock: Clock):
        self.db = db
        self.client = twilio_client
        self.settings = settings
        self.clock = clock
        self.dialler = Dialler(
            db, twilio_client, settings, clock, self._mark_failed, self._dialled, self._mark_unknown
        )
        self._speech = SpeechModel()
        self._speech_lock = threading.Lock()

    def speech_model(self) -> SpeechModel:
        """The speech classifier, trained from the shipped utterances on first use."""
        with self._speech_lock:
            if not self._speech.fitted:
                self._speech.fit(load_utterances())
            return self._speech

    def _dialled(self, call_id: int, sid: str | None) -> None:
        with self.db.connection() as conn:
            given_up = cancel_if_lost(conn, call_id, sid, self.clock.now())
        if not given_up or not sid:
            log.info("call dialled", extra={"call_id": call_id})
            return
        # Twilio took it after the reaper gave it up and its timer moved on: never ring twice.
        log.warning("lost call reached Twilio late: cancelling", extra={"call_id": call_id})
        try:  # 'completed' hangs up a call queued, ringing or already answered
            self.client.calls(sid).update(status="completed")
        except TWILIO_ERRORS as exc:  # it may already be over
            log.info("late call not ended", extra={"call_id": call_id, **error_code(exc)})

    def reap_lost_calls(self, limit: int = 500) -> list[LostCall]:
        """End calls dialled but never taken by Twilio as lost (the lost-calls job)."""
        with self.db.connection() as conn:
            lost = reap(conn, self.clock.now(), lost_after(self.settings), limit)
        for call in lost:
            log.warning("call lost before Twilio took it",
                        extra={"call_id": call.id, "resident_id": call.resident_id,
                               "alert_id": call.alert_id, "round_id": call.round_id,
                               "redial_id": call.redial_id})  # fmt: skip
        return lost

    # -- outbound ------------------------------------------------------------------------

    def enqueue(
        self,
        key: str,
        resident_id: int,
        *,
        priority: Priority,
        purpose: str,
        alert_id: int | None = None,
        attempt: int = 1,
        not_before: datetime | None = None,
        round_id: int | None = None,
        care_manager_id: int | None = None,
        message_ko: str | None = None,
    ) -> tuple[int, bool]:
        """Queue a call under an idempotency key; returns (calls.id, newly queued)."""
        with self.db.connection() as conn:
            return self._insert(
                conn, key, resident_id, priority=priority, purpose=purpose, alert_id=alert_id,
                attempt=attempt, not_before=not_before, round_id=round_id,
                care_manager_id=care_manager_id, message_ko=message_ko,
            )  # fmt: skip

    def _insert(
        self,
        conn: psycopg.Connection[Any],
        key: str,
        resident_id: int,
        *,
        priority: Priority,
        purpose: str,
        alert_id: int | None = None,
        attempt: int = 1,
        not_before: datetime | None = None,
        round_id: int | None = None,
        care_manager_id: int | None = None,
        message_ko: str | None = None,
    ) -> tuple[int, bool]:
        """enqueue's row, in the caller's transaction."""
        now = self.clock.now()
        row = conn.execute(
            """INSERT INTO anbu.calls (idempotency_key, resident_id, alert_id, purpose, status,
                   created_at, updated_at, priority, not_before, dial_state, attempt, round_id,
                   care_manager_id, message_ko)
               VALUES (%s, %s, %s, %s, 'queued', %s, %s, %s, %s, 'waiting', %s, %s, %s, %s)
               ON CONFLICT (idempotency_key) DO NOTHING
               RETURNING id""",
            (key, resident_id, alert_id, purpose, now, now, int(priority), not_before,
             attempt, round_id, care_manager_id, message_ko),
        ).fetchone()  # fmt: skip
        if row is not None:
            self._event(conn, int(row[0]), now, "queued", {})
            return int(row[0]), True
        existing = conn.execute(
            "SELECT id FROM anbu.calls WHERE idempotency_key = %s", (key,)
        ).fetchone()
        assert existing is not None
        return int(existing[0]), False

    def place_check_in(self, resident_id: int, alert_id: int | None, attempt: int) -> int:
        """Queue a check-in call once per idempotency key in a transaction of its own and dial
        it now if the CPS budget allows (else the queue drainer dials it); returns the
        calls.id. Telephony errors end the call as FAILED, never raise. An alert's step uses
        queue_check_in and dial_check_ins instead, so it never waits for Twilio holding the
        alert."""
        with self.db.connection() as conn:
            found = conn.execute(
                "SELECT 1 FROM anbu.resident WHERE id = %s", (resident_id,)
            ).fetchone()
        if found is None:
            raise LookupError(f"resident {resident_id} is not registered")
        local_date = self.clock.now().astimezone(ZoneInfo(self.settings.timezone)).date()
        key = idempotency_key(resident_id, alert_id, attempt, local_date.isoformat())
        if alert_id is not None and attempt > 1:
            self._supersede(alert_id, attempt)
        call_id, new = self.enqueue(
            key, resident_id, priority=Priority.ALERT if alert_id else Priority.ROUTINE,
            purpose="check_in" if alert_id else "routine", alert_id=alert_id, attempt=attempt,
        )  # fmt: skip
        if not new:
            log.info("check-in call already placed",
                     extra={"call_id": call_id, "resident_id": resident_id})  # fmt: skip
            return call_id
        self.dialler.dial_one(call_id, self.settings.call_inline_wait_s)
        return call_id

    def queue_check_in(
        self, conn: psycopg.Connection[Any], resident_id: int, alert_id: int, attempt: int
    ) -> int:
        """Write an alert's check-in call into the send queue in the caller's transaction (the
        alert's step, holding its row) and return its calls.id: once per (alert, attempt),
        with the alert's older attempts still waiting taken out. Nothing is dialled here:
        dial_check_ins does after the caller commits, or the queue drainer does (a worker that
        died in between), and a step rolled back leaves no call to dial."""
        now = self.clock.now()
        gone: list[int] = []
        if attempt > 1:  # the alert stopped waiting for them: dialling them would ring twice
            gone = cancel_waiting(conn, alert_id, now, "superseded", purpose="check_in",
                                  before_attempt=attempt,
                                  details={"by_attempt": attempt})  # fmt: skip
        key = idempotency_key(resident_id, alert_id, attempt, "")
        call_id, _ = self._insert(
            conn, key, resident_id, priority=Priority.ALERT, purpose="check_in",
            alert_id=alert_id, attempt=attempt,
        )  # fmt: skip
        log.info("check-in call queued",
                 extra={"call_id": call_id, "alert_id": alert_id, "superseded": gone})  # fmt: skip
        return call_id

    def dial_check_ins(self, alert_id: int) -> int:
        """Dial the alert's check-in calls still waiting in the queue, now if a token of the CPS
        budget is free (else the queue drainer dials them); returns how many were dialled. Run
        after the step that queued them committed: no transaction is open while Twilio is asked.
        A call the drainer claimed meanwhile is not dialled again; telephony errors settle the
        call, never raise."""
        with self.db.connection() as conn:
            rows = conn.execute(
                """SELECT id FROM anbu.calls
                   WHERE alert_id = %s AND purpose = 'check_in' AND dial_state = 'waiting'
                     AND (not_before IS NULL OR not_before <= %s)
                   ORDER BY id""",
                (alert_id, self.clock.now()),
            ).fetchall()
        # no waiting for a token: one alert's step must not hold the timer pass (and every
        # alert behind it); with none free, the drainer dials the call when one is
        return sum(self.dialler.dial_one(int(r[0]), 0.0) for r in rows)

    def call_care_manager(
        self, alert_id: int, care_manager_id: int, message_ko: str, step: int = 0
    ) -> int:
        """A voice call telling a care manager about a critical alert; pressing 1 takes it.
        Queued at emergency priority, once per (alert, care manager, step)."""
        with self.db.connection() as conn:
            row = conn.execute(
                "SELECT resident_id FROM anbu.alerts WHERE id = %s", (alert_id,)
            ).fetchone()
        if row is None:
            raise LookupError(f"alert {alert_id} does not exist")
        key = f"manager:{alert_id}:{care_manager_id}:step:{step}"
        call_id, new = self.enqueue(
            key, int(row[0]), priority=Priority.EMERGENCY, purpose="manager_alert",
            alert_id=alert_id, care_manager_id=care_manager_id, message_ko=message_ko,
        )  # fmt: skip
        if new:
            self.dialler.dial_one(call_id, self.settings.call_inline_wait_s)
        return call_id

    def drain_queue(self, budget_s: float | None = None) -> int:
        """Dial due queued calls for up to budget_s seconds (the worker's drainer job)."""
        budget = self.settings.call_queue_poll_s if budget_s is None else budget_s
        return self.dialler.drain(budget, workers=self.settings.call_dial_workers)

    def send_sms(self, to: str, body: str) -> str | None:
        """Send an SMS now; returns its message sid. Raises calls.sms.SmsRefused when the
        carrier refused it (final) and calls.sms.SmsNotSent when a later try may succeed."""
        try:
            return sms.send(self.client, self.settings.twilio_from_number, to, body)
        except (sms.SmsRefused, sms.SmsNotSent) as exc:
            log.warning("sms not sent", extra={"error": type(exc).__name__, "code": exc.code})
            raise

    # -- what Twilio reports ---------------------------------------------------------------

    def record_status(self, call_id: int, params: Mapping[str, str]) -> bool:
        """Store a status callback; a finished call gets its outcome unless an answer set it.
        Returns False for an unknown call."""
        with self.db.connection() as conn:
            found, ended = self._record_status(conn, call_id, params)
        if ended:
            log.info("check-in call ended", extra={"call_id": call_id, "status": ended})
        return found

    def answered(self, call_id: int, params: Mapping[str, str]) -> Script | None:
        """The voice request of an answered call: its status stored and the call's script read
        in one transaction (two cost a round of 10,000 calls 10,000 more). None for an unknown
        call or one given up as lost: hang up."""
        with self.db.connection() as conn:
            found, ended = self._record_status(conn, call_id, params)
            script = self._script_of(conn, call_id) if found else None
        if ended:
            log.info("check-in call ended", extra={"call_id": call_id, "status": ended})
        return script

    def _record_status(
        self, conn: psycopg.Connection[Any], call_id: int, params: Mapping[str, str]
    ) -> tuple[bool, str | None]:
        """(call found, the final status when this report ended the call)."""
        status = params.get("CallStatus", "")
        now = self.clock.now()
        row = conn.execute(
            "SELECT status, answered_by FROM anbu.calls WHERE id = %s FOR UPDATE", (call_id,)
        ).fetchone()
        if row is None:
            return False, None
        old_status, old_answered_by = row
        self._event(conn, call_id, now, status or "unknown", params)
        if old_status in TERMINAL_STATUSES or status not in STATUS_OUTCOMES:
            return True, None  # late or unknown reports never reopen a finished call
        answered_by = params.get("AnsweredBy") or old_answered_by
        outcome = classify_status(status, answered_by)
        terminal = status in TERMINAL_STATUSES
        conn.execute(
            """UPDATE anbu.calls SET status = %s, answered_by = %s,
                   twilio_sid = COALESCE(twilio_sid, %s),
                   outcome = COALESCE(outcome, %s),
                   ended_at = CASE WHEN %s THEN %s ELSE ended_at END,
                   updated_at = %s
               WHERE id = %s""",
            (
                status,
                answered_by,
                params.get("CallSid") or None,
                outcome.value if outcome else None,
                terminal,
                now,
                now,
                call_id,
            ),
        )
        return True, status if terminal else None

    def record_gather(self, call_id: int, params: Mapping[str, str]) -> CallOutcome | None:
        """Store the resident's answer: it becomes the call's outcome whatever the status or the
        answering machine detection said before, and a call keeps its most urgent answer.
        Returns the call's outcome (None for an unknown call or when nothing was answered)."""
        return self.gathered(call_id, params)[0]

    def gathered(
        self, call_id: int, params: Mapping[str, str]
    ) -> tuple[CallOutcome | None, Script | None]:
        """record_gather, and the call's script for the closing words, in one transaction."""
        digits = params.get("Digits") or None
        speech = params.get("SpeechResult") or None
        answer = classify_answer(digits, speech, self.speech_model() if speech else None)
        now = self.clock.now()
        with self.db.connection() as conn:
            found = conn.execute(
                "SELECT answer FROM anbu.calls WHERE id = %s FOR UPDATE", (call_id,)
            ).fetchone()
            if found is None:
                return None, None
            self._event(conn, call_id, now, "gather", params)
            if answer is not None:  # an answer wins over status and machine detection
                answer = stronger_answer(CallOutcome(found[0]) if found[0] else None, answer)
            row = conn.execute(
                """UPDATE anbu.calls SET digits = COALESCE(%s, digits),
                       speech = COALESCE(%s, speech),
                       answer = COALESCE(%s, answer),
                       outcome = COALESCE(%s, outcome), updated_at = %s
                   WHERE id = %s RETURNING outcome""",
                (digits, speech, *[answer.value if answer else None] * 2, now, call_id),
            ).fetchone()
            script = self._script_of(conn, call_id)
        outcome = CallOutcome(row[0]) if row and row[0] else None
        log.info("check-in answer", extra={"call_id": call_id, "outcome": str(outcome)})
        return outcome, script

    def raise_answer(
        self, conn: psycopg.Connection[Any], call_id: int, answer: CallOutcome, now: datetime
    ) -> CallOutcome | None:
        """Risk said later in the call (a conversation's question): the call's answer and
        outcome become the more urgent of theirs and `answer`, in the caller's transaction.
        Returns the call's answer now (None for an unknown call)."""
        row = conn.execute(
            "SELECT answer FROM anbu.calls WHERE id = %s FOR UPDATE", (call_id,)
        ).fetchone()
        if row is None:
            return None
        kept = stronger_answer(CallOutcome(row[0]) if row[0] else None, answer)
        conn.execute(
            "UPDATE anbu.calls SET answer = %s, outcome = %s, updated_at = %s WHERE id = %s",
            (kept.value, kept.value, now, call_id),
        )
        self._event(conn, call_id, now, "conversation", {})
        return kept

    def record_amd(self, call_id: int, params: Mapping[str, str]) -> CallOutcome | None:
        """Store an async answering-machine result; a machine or fax is never an answer.
        Returns the outcome it implies (None for a person or an unknown call)."""
        answered_by = params.get("AnsweredBy") or "unknown"
        implied = ANSWERED_BY_OUTCOMES.get(answered_by)
        now = self.clock.now()
        with self.db.connection() as conn:
            found = conn.execute(
                "SELECT 1 FROM anbu.calls WHERE id = %s FOR UPDATE", (call_id,)
            ).fetchone()
            if found is None:
                return None
            self._event(conn, call_id, now, "amd", params)
            conn.execute(
                """UPDATE anbu.calls SET answered_by = %s, updated_at = %s,
                       outcome = CASE WHEN %s::text IS NOT NULL AND answer IS NULL
                                           AND status <> %s THEN %s
                                      ELSE outcome END
                   WHERE id = %s""",
                (answered_by, now, implied, LOST_STATUS, implied, call_id),
            )
        return implied

    def leave_voicemail(self, call_id: int, sid: str) -> None:
        """Replace a live call's script with the short voicemail message (machine answered)."""
        script = self.script_of(call_id)
        language, about = (script[0], script[3]) if script else (self.language_of(call_id), None)
        try:
            caller = (
                self.settings.caller_name_en if language == "en" else self.settings.caller_name_ko
            )
            self.client.calls(sid).update(twiml=twiml.voicemail(language, about, caller))
        except TWILIO_ERRORS as exc:  # the call may already be over
            log.info("voicemail not left", extra={"call_id": call_id, **error_code(exc)})

    # -- reading -------------------------------------------------------------------------

    def language_of(self, call_id: int) -> str | None:
        """The called resident's language ('ko' or 'en'), None for an unknown call."""
        with self.db.connection() as conn:
            row = conn.execute(
                """SELECT r.language FROM anbu.calls c JOIN anbu.resident r ON r.id = c.resident_id
                   WHERE c.id = %s""",
                (call_id,),
            ).fetchone()
        return str(row[0]) if row else None

    def script_of(self, call_id: int) -> Script | None:
        """(language, purpose, message_ko, alert kind) of a call, None for an unknown call or
        one given up as lost (its retry may already be ringing: hang up, never ask twice)."""
        with self.db.connection() as conn:
            return self._script_of(conn, call_id)

    @staticmethod
    def _script_of(conn: psycopg.Connection[Any], call_id: int) -> Script | None:
        row = conn.execute(
            """SELECT r.language, c.purpose, c.message_ko,
                      (SELECT a.kind FROM anbu.alerts a WHERE a.id = c.alert_id)
               FROM anbu.calls c
               JOIN anbu.resident r ON r.id = c.resident_id
               WHERE c.id = %s AND c.status <> %s""",
            (call_id, LOST_STATUS),
        ).fetchone()
        return (str(row[0]), str(row[1]), row[2], row[3]) if row else None

    def get_call(self, call_id: int) -> CallRecord | None:
        """One call, or None."""
        with self.db.connection() as conn:
            row = conn.execute(
                """SELECT id, idempotency_key, resident_id, alert_id, purpose, twilio_sid, status,
                          outcome, digits, speech, answered_by, created_at, ended_at
                   FROM anbu.calls WHERE id = %s""",
                (call_id,),
            ).fetchone()
        if row is None:
            return None
        values = list(row)
        values[7] = CallOutcome(values[7]) if values[7] else None
        return CallRecord(*values)

    # -- internals -----------------------------------------------------------------------

    def _event(
        self,
        conn: psycopg.Connection[Any],
        call_id: int,
        at: datetime,
        status: str,
        params: Mapping[str, Any],
    ) -> None:
        conn.execute(
            "INSERT INTO anbu.call_events (call_id, at, status, params) VALUES (%s, %s, %s, %s)",
            (call_id, at, status, Jsonb(_kept(params) if params else {})),
        )

    def _supersede(self, alert_id: int, attempt: int) -> None:
        """Take the alert's older check-in attempts out of the queue if still waiting: the
        alert stopped waiting for them, and dialling them now would ring the resident twice."""
        with self.db.connection() as conn:
            gone = cancel_waiting(conn, alert_id, self.clock.now(), "superseded",
                                  purpose="check_in", before_attempt=attempt,
                                  details={"by_attempt": attempt})  # fmt: skip
        for call_id in gone:
            log.info("queued call superseded", extra={"call_id": call_id, "alert_id": alert_id})

    def _mark_unknown(self, call_id: int, exc: BaseException) -> None:
        """The dial request may have reached Twilio (its reply was lost): the call stays dialled
        with no result. Its callbacks, addressed by call id, settle it if Twilio placed it (an
        answer on it is stored and acted on, a care manager's 1 takes the alert); if none ever
        comes, the lost-call reaper ends it and its timer tries again."""
        now = self.clock.now()
        error = {"error": type(exc).__name__, **error_code(exc)}
        with self.db.connection() as conn:
            conn.execute(
                """INSERT INTO anbu.call_events (call_id, at, status, params)
                   VALUES (%s, %s, %s, %s)""",
                (call_id, now, DIAL_UNKNOWN, Jsonb(error)),
            )
        log.warning("call dialled, result unknown", extra={"call_id": call_id, **error})

    def _mark_failed(self, call_id: int, exc: BaseException) -> None:
        now = self.clock.now()
        error = {"error": type(exc).__name__, **error_code(exc)}
        with self.db.connection() as conn:
            conn.execute(
                """UPDATE anbu.calls SET outcome = COALESCE(outcome, 'failed'),
                       status = CASE WHEN status = %s THEN status ELSE 'failed' END,
                       ended_at = COALESCE(ended_at, %s), updated_at = %s WHERE id = %s""",
                (LOST_STATUS, now, now, call_id),
            )
            conn.execute(
                """INSERT INTO anbu.call_events (call_id, at, status, params)
                   VALUES (%s, %s, 'failed', %s)""",
                (call_id, now, Jsonb(error)),
            )
        # The exception text can quote the dialled number: log only its type and code.
        log.warning("check-in call failed to start", extra={"call_id": call_id, **error})
