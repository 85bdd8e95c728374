"""The resident's answers after the fact: what a call's consumer acted on, and help that came late.

An answer always wins over what the line reported, so a call's outcome can turn into help
after its alert or routine round already moved on (the watchdog fired, the call ended as
unclear, the care manager was not rung). The consumer records what it acted on; a help-class
answer stronger than that is claimed here, once, for alerts.intake to raise.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import psycopg

from core.domain import CallOutcome

# An ended call nobody acted on this long after its last word (an alert closed while it rang,
# a consumer that died) has its help answer reported all the same.
UNCLAIMED_AFTER = timedelta(minutes=2)


@dataclass(frozen=True, slots=True)
class LateAnswer:
    """A help-class answer nobody acted on: the call, the resident and what they said."""

    call_id: int
    resident_id: int
    alert_id: int | None
    answer: CallOutcome
    answered_at: datetime
    digits: str | None
    in_talk: bool = False  # the help came later in the call's conversation, said in words


def record_acted_on(conn: psycopg.Connection[Any], call_id: int, outcome: CallOutcome) -> None:
    """What the call's consumer acted on, in the consumer's own transaction."""
    conn.execute("UPDATE anbu.calls SET acted_on = %s WHERE id = %s", (outcome.value, call_id))


def claim_late_help(conn: psycopg.Connection[Any], now: datetime, limit: int) -> list[LateAnswer]:
    """Help-class answers that came after a milder outcome was acted on (or that nobody acted
    on since the call's last word), marked reported in the caller's transaction."""
    rows = conn.execute(
        """UPDATE anbu.calls c SET answer_reported_at = %(now)s
           WHERE c.id IN (
               SELECT id FROM anbu.calls
               WHERE answer IN ('help', 'unwell', 'emergency') AND answer_reported_at IS NULL
                 AND purpose IN ('check_in', 'routine')  -- the resident's, not a care manager's
                 AND (acted_on IS NULL AND updated_at <= %(stale)s
                      OR acted_on NOT IN ('help', 'unwell', 'emergency')
                      OR acted_on = 'unwell' AND answer IN ('help', 'emergency')
                      OR acted_on = 'help' AND answer = 'emergency')
               ORDER BY id LIMIT %(limit)s FOR UPDATE SKIP LOCKED)
           RETURNING c.id, c.resident_id, c.alert_id, c.answer, c.updated_at, c.digits,
                     EXISTS (SELECT 1 FROM anbu.call_answers t WHERE t.call_id = c.id
                               AND t.label IN ('risk', 'person'))""",
        {"now": now, "stale": now - UNCLAIMED_AFTER, "limit": limit},
    ).fetchall()
    return [
        LateAnswer(int(i), int(r), a, CallOutcome(ans), at, d, bool(t))
        for i, r, a, ans, at, d, t in rows
    ]
