"""The send queue: waiting rows of anbu.calls, dialled under the account's calls-per-second budget.

Any number of worker processes share one token bucket row (anbu.call_rate, refilled by the
database clock) and claim waiting calls with FOR UPDATE SKIP LOCKED, highest priority first.
A claimed call is marked dialled in the same transaction that spends its token, so a call is
dialled at most once even if a worker dies. A call claimed but never taken by Twilio (the worker
died before the REST request) is ended by calls.lost.reap as lost (outcome FAILED), and the
alert or check-in timer retries it under a new idempotency key; a claim too old to be dialled
before the reaper could take it is failed here instead of dialled late. cancel_waiting takes an
alert's (or a routine round's) calls out of the queue before they ring, inside its caller's
transaction; as a backstop, the claim cancels instead of dialling a call about an alert that a
care manager has acknowledged or resolved (routine check-ins have no alert and are not touched).

A request Twilio refused (HTTP 4xx) or that never left (connection refused, connect timeout)
fails the call. One that may have reached Twilio (a read timeout or a reset after it was sent,
a 5xx) leaves the call dialled with its result unknown: Twilio may be ringing the resident, and
its status callbacks (addressed by anbu's call id, not the SID) settle the call, or, when none
ever comes, the lost-call reaper does.
"""

from __future__ import annotations

import enum
import logging
import math
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg.types.json import Jsonb
from twilio.base.exceptions import TwilioRestException
from twilio.rest import Client

from calls.client import TWILIO_ERRORS, may_have_reached
from calls.lost import lost_after
from core.clock import Clock
from core.config import Settings
from core.db import Database

log = logging.getLogger(__name__)

# Status callbacks asked of Twilio. 'initiated' brings the SID within a second even when the
# dial request's own reply was lost (calls.lost waits for it); 'completed' ends the call. Nothing
# reads 'ringing', and 'answered' repeats the voice request (which records in-progress itself):
# asking for them cost two of seven webhooks per answered call, a round's main load on the web.
STATUS_EVENTS = ["initiated", "completed"]


class Priority(enum.IntEnum):
    """Lower is sooner."""

    EMERGENCY = 0
    ALERT = 1
    ROUTINE = 2


@dataclass(frozen=True, slots=True)
class Claimed:
    """A call taken from the queue, with what dialling it needs."""

    id: int
    to: str
    purpose: str
    priority: int
    claimed_at: datetime


class StaleClaim(Exception):
    """A claimed call waited so long for a free dialling thread that the lost-call reaper may
    already have given it up: it is failed instead of dialled late."""


@dataclass(frozen=True, slots=True)
class DrainStep:
    """One pass over the queue: how many were dialled, and whether tokens ran short."""

    dialled: int
    tokens_short: bool
    wait_s: float


def error_code(exc: BaseException) -> dict[str, str]:
    if isinstance(exc, TwilioRestException):
        return {"code": str(exc.code), "http_status": str(exc.status)}
    return {}


# Calls about an alert (the resident's check-in, a care manager's voice call): once a care
# manager has taken or closed the alert they must not ring. The acknowledgement cancels them in
# its transaction; this is the backstop for one that did not (an older worker, a plain UPDATE).
ALERT_PURPOSES = ("check_in", "manager_alert")

_CANCEL_TAKEN = """
UPDATE anbu.calls c SET dial_state = 'dialled', status = 'canceled', ended_at = %(now)s,
                        updated_at = %(now)s
FROM (
    SELECT w.id, a.state FROM anbu.calls w JOIN anbu.alerts a ON a.id = w.alert_id
    WHERE w.dial_state = 'waiting' AND w.purpose = ANY(%(purposes)s)
      AND a.state IN ('acknowledged', 'resolved') {only}
    FOR UPDATE OF w SKIP LOCKED
) taken
WHERE c.id = taken.id
RETURNING c.id, taken.state
"""

_CLAIM = """
UPDATE anbu.calls c SET dial_state = 'dialled', dialled_at = %(now)s, claimed_at = %(now)s
FROM (
    SELECT id FROM anbu.calls w
    WHERE dial_state = 'waiting' AND (not_before IS NULL OR not_before <= %(now)s) {only}
      AND NOT (w.purpose = ANY(%(purposes)s) AND EXISTS (
               SELECT 1 FROM anbu.alerts a WHERE a.id = w.alert_id
                  AND a.state IN ('acknowledged', 'resolved')))
    ORDER BY priority, not_before NULLS FIRST, id
    LIMIT %(n)s
    FOR UPDATE SKIP LOCKED
) picked
WHERE c.id = picked.id
RETURNING c.id, c.purpose, c.priority,
          COALESCE((SELECT m.phone FROM anbu.care_manager m WHERE m.id = c.care_manager_id),
                   (SELECT r.phone FROM anbu.resident r WHERE r.id = c.resident_id))
"""


def _cancel_taken(conn: psycopg.Connection[Any], now: datetime, only: int | None) -> list[int]:
    """Cancel waiting calls about an alert a care manager has taken or closed (skipping rows
    another dialler holds), with the reason in call_events; their ids."""
    sql = _CANCEL_TAKEN.format(only="AND w.id = %(only)s" if only is not None else "")
    rows = conn.execute(
        sql, {"now": now, "only": only, "purposes": list(ALERT_PURPOSES)}
    ).fetchall()
    with conn.cursor() as cur:
        cur.executemany(
            """INSERT INTO anbu.call_events (call_id, at, status, params)
               VALUES (%s, %s, %s, %s)""",
            [(int(r[0]), now, CANCELED, Jsonb({"reason": f"alert_{r[1]}"})) for r in rows],
        )
    if rows:
        log.info("calls of taken alerts cancelled at the claim", extra={"calls": len(rows)})
    return [int(r[0]) for r in rows]


class Dialler:
    """Claims waiting calls with tokens from the shared bucket and asks Twilio to dial them."""

    def __init__(
        self,
        db: Database,
        client: Client,
        settings: Settings,
        clock: Clock,
        on_error: Callable[[int, BaseException], None],
        on_dialled: Callable[[int, str | None], None],
        on_unknown: Callable[[int, BaseException], None],
    ) -> None:
        self.db = db
        self.client = client
        self.settings = settings
        self.clock = clock
        self.on_error = on_error
        self.on_dialled = on_dialled
        self.on_unknown = on_unknown

    @property
    def cps(self) -> float:
        return max(0.001, float(self.settings.call_cps))

    def _take(
        self, conn: psycopg.Connection[Any], want: int, only: int | None
    ) -> DrainStep | list[Claimed]:
        """Spend up to `want` tokens on waiting calls (or on call `only`); one transaction."""
        account = self.settings.twilio_account_sid
        capacity = max(1.0, self.cps * self.settings.call_burst_s)
        conn.execute(
            """INSERT INTO anbu.call_rate (account, tokens, refilled_at)
               VALUES (%s, %s, clock_timestamp()) ON CONFLICT (account) DO NOTHING""",
            (account, capacity),
        )
        row = conn.execute(
            """SELECT tokens, refilled_at, clock_timestamp() FROM anbu.call_rate
               WHERE account = %s FOR UPDATE""",
            (account,),
        ).fetchone()
        assert row is not None
        tokens, refilled_at, db_now = float(row[0]), row[1], row[2]
        tokens = min(capacity, tokens + (db_now - refilled_at).total_seconds() * self.cps)
        grant = min(want, math.floor(tokens))
        claimed: list[Claimed] = []
        if grant > 0:
            now = self.clock.now()
            _cancel_taken(conn, now, only)
            sql = _CLAIM.format(only="AND id = %(only)s" if only is not None else "")
            params = {"now": now, "n": grant, "only": only, "purposes": list(ALERT_PURPOSES)}
            rows = conn.execute(sql, params).fetchall()
            claimed = sorted(
                (Claimed(int(r[0]), str(r[3]), str(r[1]), int(r[2]), now) for r in rows),
                key=lambda c: (c.priority, c.id),
            )
        tokens -= len(claimed)
        conn.execute(
            "UPDATE anbu.call_rate SET tokens = %s, refilled_at = %s WHERE account = %s",
            (tokens, db_now, account),
        )
        if claimed:
            return claimed
        short = grant == 0  # with tokens but nothing claimed, nothing is due
        return DrainStep(0, short, max(0.0, (1.0 - tokens) / self.cps) if short else 0.0)

    def _dial(self, call: Claimed) -> None:
        waited = self.clock.now() - call.claimed_at
        if waited > lost_after(self.settings) / 2:  # the request itself takes up to its timeout
            self.on_error(call.id, StaleClaim(f"claimed {waited.total_seconds():.0f} s ago"))
            return
        base = self.settings.public_base_url.rstrip("/")
        kwargs: dict[str, Any] = {}
        if call.purpose != "manager_alert":  # the care manager is a person: no detection
            kwargs = {
                "machine_detection": "Enable",
                "async_amd": "true",
                "async_amd_status_callback": f"{base}/twilio/amd/{call.id}",
                "async_amd_status_callback_method": "POST",
            }
        try:
            created = self.client.calls.create(
                to=call.to,
                from_=self.settings.twilio_from_number,
                url=f"{base}/twilio/voice/{call.id}",
                method="POST",
                status_callback=f"{base}/twilio/status/{call.id}",
                status_callback_event=STATUS_EVENTS,
                status_callback_method="POST",
                timeout=self.settings.call_ring_timeout_s,
                **kwargs,
            )
        except TWILIO_ERRORS as exc:
            if may_have_reached(exc):  # Twilio may be ringing it: callbacks or the reaper settle it
                self.on_unknown(call.id, exc)
            else:
                self.on_error(call.id, exc)
            return
        self.on_dialled(call.id, created.sid)

    def dial_waiting(self, limit: int = 1000, pool: ThreadPoolExecutor | None = None) -> DrainStep:
        """Claim as many due calls as tokens allow (at most `limit`) and dial them."""
        with self.db.connection() as conn:
            taken = self._take(conn, limit, None)
        if isinstance(taken, DrainStep):
            return taken
        if pool is None:
            for call in taken:
                self._dial(call)
        else:
            list(pool.map(self._dial, taken))
        return DrainStep(len(taken), len(taken) == limit, 0.0)

    def dial_one(self, call_id: int, wait_s: float) -> bool:
        """Dial one waiting call now, waiting up to `wait_s` for a token; False if it stays queued."""
        deadline = time.monotonic() + wait_s
        while True:
            with self.db.connection() as conn:
                taken = self._take(conn, 1, call_id)
            if not isinstance(taken, DrainStep):
                self._dial(taken[0])
                return True
            if not taken.tokens_short or time.monotonic() + taken.wait_s > deadline:
                return False
            time.sleep(taken.wait_s)

    def drain(self, budget_s: float, batch: int = 200, workers: int = 8) -> int:
        """Dial due calls for up to `budget_s` seconds, pacing on the token bucket."""
        deadline = time.monotonic() + budget_s
        total = 0
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="dial") as pool:
            while time.monotonic() < deadline:
                step = self.dial_waiting(batch, pool)
                total += step.dialled
                if step.dialled:
                    continue
                if not step.tokens_short:
                    break  # nothing due
                time.sleep(min(step.wait_s, max(0.0, deadline - time.monotonic())))
        return total


def waiting_count(conn: psycopg.Connection[Any], now: datetime) -> int:
    """Calls due and not yet dialled."""
    row = conn.execute(
        """SELECT count(*) FROM anbu.calls WHERE dial_state = 'waiting'
           AND (not_before IS NULL OR not_before <= %s)""",
        (now,),
    ).fetchone()
    return int(row[0]) if row else 0


CANCELED = "canceled"  # Twilio's word for a call ended before it rang

_CANCEL = """
UPDATE anbu.calls SET dial_state = 'dialled', status = 'canceled', ended_at = %(now)s,
                      updated_at = %(now)s
WHERE {owner} = %(owner)s AND dial_state = 'waiting'
  AND (%(purpose)s::text IS NULL OR purpose = %(purpose)s)
  AND (%(before)s::integer IS NULL OR attempt < %(before)s)
RETURNING id
"""


def cancel_waiting(
    conn: psycopg.Connection[Any],
    alert_id: int | None,
    now: datetime,
    reason: str,
    *,
    round_id: int | None = None,
    purpose: str | None = None,
    before_attempt: int | None = None,
    details: Mapping[str, Any] | None = None,
) -> list[int]:
    """Take an alert's calls (or, with alert_id None, a routine round's: `round_id`) still
    waiting in the send queue out of it, in the caller's transaction, with `reason` in
    call_events; returns their ids, oldest first.

    `purpose` and `before_attempt` narrow it (e.g. check-in attempts older than the one about
    to be placed). A dialler claims a row with FOR UPDATE SKIP LOCKED and marks it dialled in
    the same transaction: a row still waiting here is locked by this UPDATE and can no longer
    be claimed, and one already claimed is left to ring (its answer is still recorded).
    dial_state admits only waiting/dialled, so a cancelled call is 'dialled' with no
    dialled_at, status 'canceled', ended now, and no outcome: it rang nobody, so it is neither
    an answer nor a missed call, and its timer never reads it as one.
    """
    if (alert_id is None) == (round_id is None):
        raise ValueError("cancel_waiting takes either an alert or a round")
    owner = ("alert_id", alert_id) if alert_id is not None else ("round_id", round_id)
    rows = conn.execute(
        _CANCEL.format(owner=owner[0]),
        {"now": now, "owner": owner[1], "purpose": purpose, "before": before_attempt},
    ).fetchall()
    ids = sorted(int(r[0]) for r in rows)
    params = Jsonb({"reason": reason, **(details or {})})
    with conn.cursor() as cur:
        cur.executemany(
            """INSERT INTO anbu.call_events (call_id, at, status, params)
               VALUES (%s, %s, %s, %s)""",
            [(call_id, now, CANCELED, params) for call_id in ids],
        )
    return ids
