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
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, time
from typing import Any
from zoneinfo import ZoneInfo

import psycopg

from calls.conversation import (
    END,
    PERSON,
    UNCLEAR,
    AnswerModel,
    Ask,
    Heard,
    Programme,
    hear,
    load_answers,
    load_programme,
)
from core.clock import Clock
from core.db import Database
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
    raised: CallOutcome | None = None  # what the call's answer was raised to


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
        self.programme: Programme = load_programme(script_path)
        self._model = AnswerModel()
        self._lock = threading.Lock()

    def model(self) -> AnswerModel:
        """The answer classifier, trained from the shipped answers on first use."""
        with self._lock:
            if not self._model.fitted:
                self._model.fit(load_answers())
            return self._model

    def _today(self) -> date:
        return self.clock.now().astimezone(self.tz).date()

    def first(self, call_id: int) -> Ask | None:
        """The first question of a routine call whose resident said they are all right; None
        when the day asks none, or the resident already talked today (one conversation a day)."""
        questions = self.programme.for_day(self._today())
        if not questions:
            return None
        midnight = datetime.combine(self._today(), time(0), tzinfo=self.tz)
        with self.db.connection() as conn:
            row = conn.execute(
                """SELECT c.purpose = 'routine' AND r.language = 'ko'
                          AND NOT EXISTS (SELECT 1 FROM anbu.call_answers a
                                          WHERE a.resident_id = c.resident_id
                                            AND a.answered_at >= %s AND a.call_id <> c.id)
                   FROM anbu.calls c JOIN anbu.resident r ON r.id = c.resident_id
                   WHERE c.id = %s""",
                (midnight, call_id),
            ).fetchone()
        return questions[0] if row and row[0] else None

    def answer(
        self, call_id: int, question_id: str, digits: str | None, speech: str | None,
        tries: int, then: bool,
    ) -> Step:  # fmt: skip
        """Store the answer to `question_id` (asked `tries` times; `then`: the need's words)
        and say what comes next."""
        ask = self.programme.question(question_id)
        if ask is None:
            return Step(closing=CallOutcome.UNCLEAR)
        heard = hear(ask, digits, speech, self.model() if speech else None, then=then)
        if heard.label == UNCLEAR and tries < 2:
            return Step(ask=ask, tries=2, then=then)  # once more, in simpler words
        if heard.label == "some":
            return Step(ask=ask, tries=1, then=True)  # "있어요": what is it?
        now = self.clock.now()
        with self.db.connection() as conn:
            found = conn.execute(
                "SELECT resident_id FROM anbu.calls WHERE id = %s", (call_id,)
            ).fetchone()
            if found is None:
                return Step(closing=CallOutcome.UNCLEAR)
            resident_id = int(found[0])
            label = "risk" if heard.risk is not None else heard.label
            _store(conn, call_id, question_id, resident_id, label, heard, tries, digits, speech,
                   now)  # fmt: skip
            raised = None
            if heard.risk is not None:
                raised = self.raise_answer(conn, call_id, heard.risk, now)
            elif heard.label == PERSON:  # the care manager calls back: told at once
                raised = self.raise_answer(conn, call_id, CallOutcome.HELP, now)
        log.info("conversation answer", extra={"call_id": call_id, "question": question_id,
                                               "label": label, "tries": tries})  # fmt: skip
        if heard.risk is not None:
            return Step(closing=heard.risk, raised=raised)
        if heard.label == PERSON:
            return Step(closing=CallOutcome.HELP, raised=raised)
        if heard.label == END:
            return Step(words=self.programme.ended_early)
        after = self.programme.after(question_id, self._today())
        if after is None:
            return Step(words=self.programme.closing_ok)
        return Step(ask=after)


def _store(
    conn: psycopg.Connection[Any], call_id: int, question: str, resident_id: int, label: str,
    heard: Heard, tries: int, digits: str | None, speech: str | None, now: datetime,
) -> None:  # fmt: skip
    conn.execute(
        """INSERT INTO anbu.call_answers (call_id, question, resident_id, label, confidence,
                                          tries, digits, speech, answered_at)
           VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)
           ON CONFLICT (call_id, question) DO UPDATE
               SET label = EXCLUDED.label, confidence = EXCLUDED.confidence,
                   tries = EXCLUDED.tries, digits = EXCLUDED.digits,
                   speech = EXCLUDED.speech, answered_at = EXCLUDED.answered_at""",
        (call_id, question, resident_id, label, heard.confidence, tries, digits, speech, now),
    )
