"""The 돌봄콜 line: residents call the programme's number; the only writer of anbu.incoming_calls.

A caller is recognised by the number they call from (never logged), checked and put in E.164
first: a withheld number (`anonymous`, empty) or one that is not a Korean number matches
nobody. 2 is a help request for
their dong care manager (2 is help on every line, as on the check-in call), 1 leaves a message:
said and recognised as Korean speech, or recorded when nothing was recognised; alerts/intake
turns both into alerts. Unknown callers are told how to reach the city.
"""

from __future__ import annotations

import logging

from calls.understanding import SpeechModel, understand
from core.clock import Clock
from core.db import Database
from core.domain import CallOutcome
from registry.phones import InvalidPhone, parse_phone

log = logging.getLogger(__name__)

CHOICES = {"2": "help", "1": "message"}


class IncomingLine:
    """Records calls to the line and what the caller chose."""

    def __init__(self, db: Database, clock: Clock) -> None:
        self.db = db
        self.clock = clock

    def answer(self, sid: str, caller: str) -> int | None:
        """Store the incoming call; returns the caller's resident id, None when unknown."""
        now = self.clock.now()
        with self.db.connection() as conn:
            number = caller_number(caller)
            row = None
            if number is not None:
                row = conn.execute(
                    """SELECT id FROM anbu.resident
                       WHERE %(n)s IN (phone, mobile_phone, landline_phone)
                       ORDER BY status = 'ended', id LIMIT 1""",
                    {"n": number},
                ).fetchone()
            resident_id = int(row[0]) if row else None
            conn.execute(
                """INSERT INTO anbu.incoming_calls (twilio_sid, resident_id, received_at, updated_at)
                   VALUES (%s, %s, %s, %s) ON CONFLICT (twilio_sid) DO NOTHING""",
                (sid, resident_id, now, now),
            )
        log.info("line call", extra={"resident_id": resident_id, "known": resident_id is not None})
        return resident_id

    def choose(self, sid: str, digits: str) -> str | None:
        """The caller's menu choice ('help' or 'message'); None for another key or call."""
        choice = CHOICES.get(digits.strip())
        if choice is None:
            return None
        with self.db.connection() as conn:
            row = conn.execute(
                """UPDATE anbu.incoming_calls SET choice = COALESCE(choice, %s), updated_at = %s
                   WHERE twilio_sid = %s AND resident_id IS NOT NULL RETURNING resident_id""",
                (choice, self.clock.now(), sid),
            ).fetchone()
        if row is None:
            return None
        log.info("line choice", extra={"resident_id": row[0], "choice": choice})
        return choice

    def recorded(self, sid: str, recording_url: str | None) -> bool:
        with self.db.connection() as conn:
            row = conn.execute(
                """UPDATE anbu.incoming_calls SET recording_url = %s, updated_at = %s
                   WHERE twilio_sid = %s AND choice = 'message' RETURNING id""",
                (recording_url, self.clock.now(), sid),
            ).fetchone()
        return row is not None

    def transcribed(self, sid: str, text: str, model: SpeechModel | None) -> CallOutcome | None:
        """Store a message's text and what it means (a risk word makes it urgent). A message
        keeps its most urgent reading: an empty or milder transcript posted later changes
        nothing. Text that comes after the message was reported (a recording, reported at 주의,
        then a recogniser's transcript) is reported again when it reads as more urgent."""
        text = text.strip()[:MAX_MESSAGE]
        if not text:
            return None
        outcome = understand(text, model)
        rank = URGENCY.get(outcome, 1)
        with self.db.connection() as conn:
            row = conn.execute(
                """UPDATE anbu.incoming_calls SET transcript = %(text)s, outcome = %(outcome)s,
                       updated_at = %(now)s,
                       reported_at = CASE WHEN %(rank)s > CASE
                               WHEN reported_at IS NULL THEN 0
                               WHEN outcome = 'emergency' THEN 3
                               WHEN outcome IN ('help', 'unwell') OR transcript IS NULL THEN 2
                               ELSE 1 END
                           THEN NULL ELSE reported_at END
                   WHERE twilio_sid = %(sid)s AND choice = 'message'
                     AND %(rank)s >= CASE WHEN outcome = 'emergency' THEN 3
                                          WHEN outcome IN ('help', 'unwell') THEN 2
                                          ELSE 1 END
                   RETURNING id""",
                {"text": text, "outcome": outcome.value, "now": self.clock.now(), "rank": rank,
                 "sid": sid},
            ).fetchone()  # fmt: skip
        return outcome if row else None


MAX_MESSAGE = 2000  # characters of a message's text kept (a minute of speech is far less)
# how urgent a message reads (what alerts/intake files it at: 관심 1, 주의 2, 심각 3)
URGENCY = {CallOutcome.EMERGENCY: 3, CallOutcome.HELP: 2, CallOutcome.UNWELL: 2}


def caller_number(caller: str) -> str | None:
    """The caller's number in E.164, or None when withheld or not a Korean number."""
    try:
        return parse_phone(caller).e164
    except InvalidPhone:
        return None
