"""The conversation of a routine call, step by step; the only writer of anbu.call_answers.

Each step is one webhook: the answer to one question (calls.conversation.hear), stored, and what
the call says next. A step's URL names the question and whether it was asked again, so no state
lives in the web process: a retried or replayed request stores the same answer again (one row per
call and question) and says the same next words. Risk words raise the call's answer through
CallService (the only writer of anbu.calls), in the same transaction as the answer. A stated
need, or a wish to talk to a person, is an answer here; alerts/intake turns it into a service
request in the dong's queue.
"""

from __future__ import annotations

import logging
import time as timer
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, time
from typing import Any
from zoneinfo import ZoneInfo

import psycopg

from calls.conversation import (
    MAX_SPEECH,
    NEEDS,
    PERSON,
    UNCLEAR,
    AnswerModel,
    Ask,
    Heard,
    Programme,
    hear,
    programme,
    shipped_model,
)
from calls.twiml import DESPAIR_CLOSING, NOT_CONNECTED
from calls.understanding import despairs
from core.clock import Clock
from core.db import Database, retryable
from core.domain import CallOutcome

log = logging.getLogger(__name__)

# CallService.raise_answer: raise a call's answer in the caller's transaction; what it is now
RaiseAnswer = Callable[[psycopg.Connection[Any], int, CallOutcome, datetime], CallOutcome | None]


@dataclass(frozen=True, slots=True)
class Step:
    """What the call does after an answer: ask `ask` (again in simpler words when `tries` is 2,
    for the need's words when `then`), or end with `closing` (an outcome's, or the programme's
    own words when `words` is set)."""

    ask: Ask | None = None
    tries: int = 1
    then: bool = False
    closing: CallOutcome | None = None
    words: str | None = None
    connect: str | None = None  # put the resident through to this number (상담사 연결)


class Talk:
    """The routine conversation: which question comes next, and each answer stored."""

    def __init__(
        self,
        db: Database,
        clock: Clock,
        tz: ZoneInfo,
        raise_answer: RaiseAnswer,
        script_path: str | None = None,
    ) -> None:
        self.db = db
        self.clock = clock
        self.tz = tz
        self.raise_answer = raise_answer
        self.programme: Programme = programme(script_path)

    def model(self) -> AnswerModel:
        """The answer classifier (trained from the shipped answers once per process)."""
        return shipped_model()

    def _today(self) -> date:
        return self.clock.now().astimezone(self.tz).date()

    def first(self, call_id: int) -> tuple[Ask, bool] | None:
        """The first question of a routine call whose resident said they are all right, and
        whether it is the resident's weekly conversation (carried in every answer's URL: a call
        past midnight keeps its questions); None when the day asks none, or the resident
        already talked that day (one conversation a day)."""
        day = self._today()
        midnight = datetime.combine(day, time(0), tzinfo=self.tz)
        with self.db.connection() as conn:
            row = conn.execute(
                """SELECT c.resident_id,
                          c.purpose = 'routine' AND r.language = 'ko'
                          AND NOT EXISTS (SELECT 1 FROM anbu.call_answers a
                                          WHERE a.resident_id = c.resident_id
                                            AND a.answered_at >= %s AND a.call_id <> c.id)
                   FROM anbu.calls c JOIN anbu.resident r ON r.id = c.resident_id
                   WHERE c.id = %s""",
                (midnight, call_id),
            ).fetchone()
        if row is None or not row[1]:
            return None
        weekly = self.programme.weekly(day, int(row[0]))
        questions = self.programme.asked(weekly)
        return (questions[0], weekly) if questions else None

    def answer(
        self, call_id: int, question_id: str, digits: str | None, speech: str | None,
        tries: int, then: bool, weekly: bool = False,
    ) -> Step:  # fmt: skip
        """Store the answer to `question_id` (asked `tries` times; `then`: the need's words) of
        the conversation (`weekly`: the resident's weekly one), and say what comes next. Risk
        words are heard even when the answer cannot be stored (the database away) or the
        question is unknown (a script changed between two web instances): the call's closing
        says what to do, and nothing is hidden."""
        speech = speech[:MAX_SPEECH] if speech else speech
        ask = self.programme.question(question_id)
        if ask is None:
            ask = UNKNOWN  # risk words still count; anything else closes the call kindly
        heard = hear(ask, digits, speech, self.model() if speech else None, then=then)
        if heard.label == UNCLEAR and tries < 2 and ask is not UNKNOWN and not heard.unwell:
            return Step(ask=ask, tries=2, then=then)  # once more, in simpler words
        if heard.label == "some":
            return Step(ask=ask, tries=1, then=True)  # "있어요": what is it?
        if heard.label == UNCLEAR and ask.kind == "need" and (then or speech):
            heard = Heard("other", 0.0)  # a need said twice and not understood: read by a person
        label = "risk" if heard.risk is not None else heard.label
        after = None if ask is UNKNOWN else self.programme.after(ask.id, weekly)
        closing = heard.ends or after is None or heard.risk is not None or heard.label == PERSON
        asked = self.programme.asked(weekly)
        # the call's earlier answers are read at its close only when it has any: the first
        # question of the day (every day's one question, the meal) has none before it
        earlier = closing and not (asked and asked[0].id == ask.id)
        try:
            concerned = self._store(call_id, ask, label, heard, tries, digits, speech, earlier)
        except psycopg.Error as exc:
            log.critical("conversation answer not stored",
                         extra={"call_id": call_id, "question": question_id,
                                "error": type(exc).__name__, "risk": str(heard.risk)})  # fmt: skip
            if heard.risk is not None:
                return Step(closing=heard.risk, words=DESPAIR_CLOSING if despairs(speech) else None)
            raise
        log.info("conversation answer", extra={"call_id": call_id, "question": question_id,
                                               "label": label, "tries": tries})  # fmt: skip
        if heard.risk is not None:
            words = DESPAIR_CLOSING if despairs(speech) else None
            return Step(closing=heard.risk, words=words)
        if heard.label == PERSON:  # put through to their care manager, who was told as well
            try:
                person = self._person_for(call_id)
            except psycopg.Error as exc:  # (PoolTimeout is one) stored and raised: say so
                log.warning("no number read to put the resident through",
                            extra={"call_id": call_id, "error": type(exc).__name__})  # fmt: skip
                person = None
            if person is None:  # nobody to put through to: say so, and who will call
                return Step(closing=CallOutcome.HELP, words=NOT_CONNECTED)
            return Step(closing=CallOutcome.HELP, connect=person)
        if heard.ends or after is None:
            if concerned:
                return Step(words=self.programme.closing_concern)
            return Step(
                words=self.programme.ended_early if heard.ends else self.programme.closing_ok
            )
        return Step(ask=after)

    def _person_for(self, call_id: int) -> str | None:
        """The phone of the resident's own care manager, else of an active care manager of their
        dong (never logged); None when there is none."""
        with self.db.connection() as conn:
            row = conn.execute(
                """SELECT m.phone FROM anbu.calls c
                   JOIN anbu.resident r ON r.id = c.resident_id
                   JOIN anbu.care_manager m ON m.dong_code = r.dong_code AND m.active
                                           AND m.role <> 'technician'
                   WHERE c.id = %s
                   ORDER BY m.id = r.care_manager_id DESC, m.role = 'manager' DESC, m.id
                   LIMIT 1""",
                (call_id,),
            ).fetchone()
        return str(row[0]) if row and row[0] else None

    def _store(
        self, call_id: int, ask: Ask, label: str, heard: Heard, tries: int, digits: str | None,
        speech: str | None, earlier: bool,
    ) -> bool:  # fmt: skip
        """The answer stored once (a replay or a retry changes nothing already stored) and the
        call raised, in one transaction, tried STORE_TRIES times; whether the call holds an
        answer the care manager should hear of (its earlier answers read when `earlier`)."""
        for attempt in range(1, STORE_TRIES + 1):
            try:
                return self._store_once(call_id, ask, label, heard, tries, digits, speech, earlier)
            except psycopg.Error as exc:
                if attempt == STORE_TRIES or not retryable(exc):
                    raise
                timer.sleep(0.05 * attempt)
        raise AssertionError("unreachable")

    def _store_once(
        self, call_id: int, ask: Ask, label: str, heard: Heard, tries: int, digits: str | None,
        speech: str | None, earlier: bool,
    ) -> bool:  # fmt: skip
        """One statement for a plain answer (the round's most common webhook); the call row
        locked first only when the answer raises the call (two answers of one call never
        deadlock), and the call's earlier answers read only when it closes after others."""
        now = self.clock.now()
        raising = heard.risk or (CallOutcome.HELP if heard.label == PERSON else None)
        raising = raising or (CallOutcome.UNWELL if heard.unwell else None)
        with self.db.connection() as conn:
            if (
                raising is not None
                and conn.execute(
                    "SELECT 1 FROM anbu.calls WHERE id = %s FOR UPDATE", (call_id,)
                ).fetchone()
                is None
            ):
                return False
            if ask is not UNKNOWN:
                conn.execute(
                    """INSERT INTO anbu.call_answers (call_id, question, resident_id, label,
                                                      confidence, tries, digits, speech,
                                                      answered_at)
                       SELECT id, %s, resident_id, %s, %s, %s, %s, %s, %s
                       FROM anbu.calls WHERE id = %s
                       ON CONFLICT (call_id, question) DO NOTHING""",
                    (ask.id, label, heard.confidence, tries, digits, speech, now, call_id),
                )  # fmt: skip
            if raising is not None:
                self.raise_answer(conn, call_id, raising, now)
            concerned = heard.unwell or label in NEEDS or label == ask.concern
            if earlier and not concerned:
                concerns = [(q.id, q.concern) for q in self.programme.questions if q.concern]
                row = conn.execute(
                    """SELECT EXISTS (SELECT 1 FROM anbu.call_answers a
                                      WHERE a.call_id = %s
                                        AND (a.label = ANY(%s)
                                             OR (a.question, a.label) IN (SELECT * FROM unnest(
                                                     %s::text[], %s::text[]))))""",
                    (call_id, list(NEEDS), [q for q, _ in concerns], [c for _, c in concerns]),
                ).fetchone()
                concerned = bool(row and row[0])
        return concerned


# A question the script no longer has (changed between two web instances): its answer is heard
# for risk words only, and the call closes.
UNKNOWN = Ask(id="unknown", kind="yes_no", every="day", ask="", simpler="")
STORE_TRIES = 3
