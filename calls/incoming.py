"""The 돌봄콜 line: residents call the programme's number; the only writer of anbu.incoming_calls.

A caller is recognised by the number they call from (never logged), checked and put in E.164
first: a withheld number (`anonymous`, empty) or one that is not a Korean number matches
nobody. 1 is a help request for
their dong care manager, 2 leaves a recorded message with its transcript; alerts/intake turns
both into alerts. Unknown callers are told how to reach the city.
"""

from __future__ import annotations

import logging

from calls.understanding import SpeechModel, understand
from core.clock import Clock
from core.db import Database
from core.domain import CallOutcome
from registry.phones import InvalidPhone, parse_phone

log = logging.getLogger(__name__)

CHOICES = {"1": "help", "2": "message"}


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
        """Store a message's transcript and what it means (a risk word makes it urgent)."""
        outcome = understand(text, model)
        with self.db.connection() as conn:
            row = conn.execute(
                """UPDATE anbu.incoming_calls SET transcript = %s, outcome = %s, updated_at = %s
                   WHERE twilio_sid = %s AND choice = 'message' RETURNING id""",
                (text, outcome.value, self.clock.now(), sid),
            ).fetchone()
        return outcome if row else None


def caller_number(caller: str) -> str | None:
    """The caller's number in E.164, or None when withheld or not a Korean number."""
    try:
        return parse_phone(caller).e164
    except InvalidPhone:
        return None
