"""Lost calls: claimed and marked dialled, but Twilio never took them (the worker died between
the claim's commit and the REST request, or the request hung). No callback will ever come.
A dial request whose reply was lost (a read timeout or a reset after it was sent) waits here
too: if Twilio placed the call its callbacks settle it first; if none comes, it is lost.

reap() ends such a call as status 'lost', outcome FAILED (never reassurance, "not reached" to
the alert ladder and the check-in rounds, which then place a fresh attempt under a new
idempotency key) and records why in call_events. A call with a Twilio SID reached Twilio and is
never lost; nor is one any webhook touched (a status callback stores the SID and a status, AMD
and answers fill answered_by, digits, speech), so the row alone decides, no event scan.
A care manager's alert call has no timer of its own to retry it: a lost one is queued again,
once, unless the alert was taken or closed meanwhile.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from calls.outcomes import LOST_STATUS
from core.config import Settings

# call_events status of a dial request whose reply was lost: Twilio may or may not have the call.
DIAL_UNKNOWN = "dial_unknown"

MIN_LOST_AFTER = timedelta(seconds=60)  # far beyond calls.client.HTTP_TIMEOUT_S in any setup
REDIAL_SUFFIX = ":redial"


def lost_after(settings: Settings) -> timedelta:
    """How long a dialled call may go without a SID or any callback before it is lost: the
    call watchdog, the same wait after which the alert and check-in timers count no result as
    no answer (and which the demo scales with its clock)."""
    watchdog = max(settings.call_watchdog_s, float(settings.call_ring_timeout_s))
    return max(MIN_LOST_AFTER, timedelta(seconds=watchdog))


@dataclass(frozen=True, slots=True)
class LostCall:
    """A call given up as lost, and the redial queued for it (care manager calls only)."""

    id: int
    resident_id: int
    purpose: str
    alert_id: int | None
    round_id: int | None
    claimed_at: datetime
    redial_id: int | None


_REAP = """
WITH lost AS (
    SELECT c.id FROM anbu.calls c
    WHERE c.twilio_sid IS NULL AND c.dial_state = 'dialled' AND c.status = 'queued'
      AND c.outcome IS NULL AND c.answered_by IS NULL AND c.digits IS NULL
      AND c.speech IS NULL AND c.claimed_at <= %(cutoff)s
    ORDER BY c.claimed_at, c.id
    LIMIT %(n)s
    FOR UPDATE SKIP LOCKED
)
UPDATE anbu.calls c SET status = %(lost)s, outcome = 'failed', ended_at = %(now)s,
                        updated_at = %(now)s
FROM lost
WHERE c.id = lost.id AND c.twilio_sid IS NULL AND c.status = 'queued' AND c.outcome IS NULL
RETURNING c.id, c.resident_id, c.purpose, c.alert_id, c.round_id, c.claimed_at,
          c.idempotency_key,
          EXISTS (SELECT 1 FROM anbu.call_events e
                  WHERE e.call_id = c.id AND e.status = %(unknown)s) AS reply_lost
"""

_REDIAL = """
INSERT INTO anbu.calls (idempotency_key, resident_id, alert_id, purpose, status, created_at,
    updated_at, priority, not_before, dial_state, attempt, round_id, care_manager_id, message_ko)
SELECT c.idempotency_key || %(suffix)s, c.resident_id, c.alert_id, c.purpose, 'queued',
       %(now)s, %(now)s, c.priority, NULL, 'waiting', c.attempt, c.round_id, c.care_manager_id,
       c.message_ko
FROM anbu.calls c WHERE c.id = %(id)s
  AND NOT EXISTS (SELECT 1 FROM anbu.alerts a  -- someone already took or closed the alert
                  WHERE a.id = c.alert_id AND a.state IN ('acknowledged', 'resolved'))
ON CONFLICT (idempotency_key) DO NOTHING
RETURNING id
"""


def _event(
    conn: psycopg.Connection[Any], call_id: int, at: datetime, status: str, params: dict[str, Any]
) -> None:
    conn.execute(
        "INSERT INTO anbu.call_events (call_id, at, status, params) VALUES (%s, %s, %s, %s)",
        (call_id, at, status, Jsonb(params)),
    )


def reap(
    conn: psycopg.Connection[Any], now: datetime, after: timedelta, limit: int = 500
) -> list[LostCall]:
    """End every call dialled at least `after` ago that Twilio never took; one transaction."""
    rows = conn.execute(
        _REAP,
        {"cutoff": now - after, "n": limit, "lost": LOST_STATUS, "now": now,
         "unknown": DIAL_UNKNOWN},
    ).fetchall()  # fmt: skip
    lost: list[LostCall] = []
    for call_id, resident_id, purpose, alert_id, round_id, claimed_at, key, reply_lost in rows:
        waited = int((now - claimed_at).total_seconds())
        # a lost reply whose call never called back: Twilio did not place it after all
        reason = "no_callback_after_lost_reply" if reply_lost else "never_reached_twilio"
        _event(conn, call_id, now, LOST_STATUS, {"reason": reason, "dialled_s_ago": waited})
        redial_id: int | None = None
        if purpose == "manager_alert" and not str(key).endswith(REDIAL_SUFFIX):
            row = conn.execute(_REDIAL, {"suffix": REDIAL_SUFFIX, "now": now, "id": call_id})
            found = row.fetchone()
            if found is not None:
                redial_id = int(found[0])
                _event(conn, redial_id, now, "queued", {"redial_of": call_id})
        lost.append(
            LostCall(call_id, resident_id, purpose, alert_id, round_id, claimed_at, redial_id)
        )
    return lost


def cancel_if_lost(
    conn: psycopg.Connection[Any], call_id: int, sid: str | None, now: datetime
) -> bool:
    """Store the SID Twilio gave a call; True when the call had already been given up as lost
    (its replacement may be ringing), so Twilio must cancel it. Waits for a reaper holding it."""
    row = conn.execute(
        """UPDATE anbu.calls SET twilio_sid = COALESCE(twilio_sid, %s), updated_at = %s
           WHERE id = %s RETURNING status""",
        (sid, now, call_id),
    ).fetchone()
    if row is None or row[0] != LOST_STATUS:
        return False
    _event(conn, call_id, now, "late_sid", {"CallSid": sid or "", "action": "cancel"})
    return True
