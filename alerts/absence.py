"""A care manager records an absence (away, in hospital): the alerts that absence explains close.

Setting a resident away or in hospital stops the sweep raising new inactivity findings; this
module closes what was already open. In the same transaction as the status change, every open
alert of a kind the absence explains is resolved (actor: the care manager, outcome `away` or
`hospitalised`, the reason in Korean then English) and its calls still waiting in the send
queue are cancelled, so nobody is rung for an absence the care manager recorded themselves.

What the resident said is never overruled by a status: help requests, check-in answers and
voice messages are other kinds and stay open, and so does an explained alert on whose check-in
call the resident asked for help. An alert whose check-in call is ringing right now closes when
that call ends, unless the resident asks for help on it (AlertService reads the answer first).
Device findings stay open too. Running it again closes nothing more; `active` closes nothing.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import psycopg
from psycopg.rows import dict_row

import registry
from alerts.audit import record_event
from alerts.machine import Event, next_state
from alerts.policy import OUTCOME_MEANING
from calls.dialer import cancel_waiting
from core.domain import AlertState
from detectors import night
from detectors.health import UNKNOWN_STATUS
from detectors.inactivity import KIND as INACTIVITY
from detectors.routine import BATHROOM, NOT_BACK, NOT_UP

log = logging.getLogger(__name__)

# Alert kinds an away or hospital status explains: the resident is not seen at home, or not
# reached there. Only these close; every other kind (help asked, a check-in answer, a voice
# message, device and site findings, a routine change to review) stays open. An allow-list on
# purpose: a kind added later is never closed by a status until it is listed here.
EXPLAINED_BY_ABSENCE: frozenset[str] = frozenset(
    {
        INACTIVITY,
        NOT_UP,
        NOT_BACK,
        BATHROOM,
        night.KIND,
        UNKNOWN_STATUS,  # the home's data is missing; the resident is known to be elsewhere
        "checkin_unreached",  # routine calls unanswered (alerts.intake): they are not at home
    }
)

# status (each of detectors.sweep.SUPPRESSING_STATUSES) -> (Korean with its particle, English,
# the resolution outcome, one of alerts.models.RESOLUTION_OUTCOMES)
ABSENCE_STATUSES: dict[str, tuple[str, str, str]] = {
    "away": ("부재로", "away", "away"),
    "hospital": ("입원으로", "hospital", "hospitalised"),
}

# Check-in answers that mean the resident asked for someone: such an alert is theirs to close.
HELP_OUTCOMES: tuple[str, ...] = tuple(
    sorted(outcome.value for outcome, meaning in OUTCOME_MEANING.items() if meaning == "help")
)


@dataclass(frozen=True, slots=True)
class StandDown:
    """What an absence did to a resident's open alerts."""

    closed: list[int] = field(default_factory=list)
    cancelled_calls: list[int] = field(default_factory=list)
    waiting_for_call: list[int] = field(default_factory=list)  # close when their call ends
    kept: list[int] = field(default_factory=list)  # the resident asked for help on a call


@dataclass(frozen=True, slots=True)
class StatusChange:
    """A status change: the registry fields that changed and what it did to alerts."""

    changed: list[str]
    alerts: StandDown


def explained_by_absence(kind: str) -> bool:
    """True when an away or hospital status explains an alert of `kind`."""
    return kind in EXPLAINED_BY_ABSENCE


def absent(status: str | None, until: datetime | None, now: datetime) -> bool:
    """Away or in hospital with the end date still ahead (the sweep's own rule)."""
    return status in ABSENCE_STATUSES and until is not None and until > now


CLOSED = ("종결", "closed")
WAITING_FOR_CALL = ("진행 중인 안부전화가 끝나면 종결", "closes when the call in progress ends")
KEPT = (
    "주민이 안부전화에서 도움을 요청해 열어 둠",
    "kept open, the resident asked for help on a check-in call",
)


def reason(
    status: str,
    until: datetime,
    tz: ZoneInfo,
    what: tuple[str, str] = CLOSED,
    *,
    cancelled: int = 0,
    call: str = "",
) -> str:
    """What an absence did to an alert and why: Korean, then English."""
    words_ko, words_en, _ = ABSENCE_STATUSES[status]
    local = until.astimezone(tz)
    at = f"{local:%Y-%m-%d %H:%M}"
    ko = f"담당자가 {at}까지 {words_ko} 상태를 바꿈: {what[0]}"
    en = f"status set to {words_en} by care manager until {at} {local.tzname()}: {what[1]}"
    if cancelled:
        ko += f", 대기 중인 전화 {cancelled}건 취소"
        en += f", {cancelled} waiting call(s) cancelled"
    if call:
        ko, en = f"{call} — {ko}", f"{en} after the call in progress ended"
    return f"{ko} / {en}"


def close(
    conn: psycopg.Connection[Any],
    alert_id: int,
    state: AlertState,
    status: str,
    until: datetime,
    now: datetime,
    tz: ZoneInfo,
    *,
    actor: str,
    resolved_by: int | None,
    call: str = "",
) -> list[int]:
    """Resolve one locked alert for the resident's absence, take its calls still waiting in the
    send queue out of it (calls/ does, in this transaction) and record why; returns the calls
    cancelled. A call a dialler already claimed is left to ring: see stand_down."""
    cancelled = cancel_waiting(conn, alert_id, now, f"resident_status:{status}")
    to = next_state(state, Event.ABSENCE_RECORDED)
    conn.execute(
        """UPDATE anbu.alerts SET state = %s, resolved_by = %s, resolved_at = %s, outcome = %s,
               awaiting_call = false, next_action_at = NULL, updated_at = %s
           WHERE id = %s""",
        (to.value, resolved_by, now, ABSENCE_STATUSES[status][2], now, alert_id),
    )
    record_event(
        conn, alert_id, now, actor, state, to,
        reason(status, until, tz, cancelled=len(cancelled), call=call),
    )  # fmt: skip
    return cancelled


def set_status(
    conn: psycopg.Connection[Any],
    resident_id: int,
    status: str,
    until: datetime | None,
    care_manager_id: int,
    *,
    now: datetime,
    timezone: str = "Asia/Seoul",
) -> StatusChange:
    """The registry's status change and its consequence for alerts, in the caller's transaction.

    Raises what `registry.set_status` raises (ResidentNotFound for another dong's
    resident, InvalidChange) before anything is written.
    """
    changed = registry.set_status(conn, resident_id, status, until, care_manager_id, now=now)
    return StatusChange(changed, stand_down(conn, resident_id, care_manager_id, now, timezone))


_LOCK_EXPLAINED = """
SELECT id FROM anbu.alerts
 WHERE resident_id = %s AND state <> 'resolved' AND kind = ANY(%s)
 ORDER BY id
   FOR NO KEY UPDATE
"""
_ASKED_FOR_HELP = """
SELECT EXISTS (SELECT 1 FROM anbu.calls WHERE alert_id = %s AND purpose = 'check_in'
                  AND outcome = ANY(%s))
"""


def stand_down(
    conn: psycopg.Connection[Any],
    resident_id: int,
    care_manager_id: int,
    now: datetime,
    timezone: str = "Asia/Seoul",
) -> StandDown:
    """Close the open alerts the resident's current absence explains and cancel their waiting
    calls, in the caller's transaction. Idempotent; does nothing unless away or in hospital."""
    row = conn.execute(
        "SELECT status, status_until FROM anbu.resident WHERE id = %s FOR NO KEY UPDATE",
        (resident_id,),
    ).fetchone()
    if row is None:
        raise registry.ResidentNotFound(resident_id)
    status, until = row
    done = StandDown()
    if not absent(status, until, now):
        return done
    tz = ZoneInfo(timezone)
    actor = f"care_manager:{care_manager_id}"
    # Lock first, then read: each later statement sees what a worker committed meanwhile.
    ids = [r[0] for r in conn.execute(_LOCK_EXPLAINED, (resident_id, sorted(EXPLAINED_BY_ABSENCE)))]
    for alert_id in ids:
        with conn.cursor(row_factory=dict_row) as cur:
            a = cur.execute(
                "SELECT state, awaiting_call, last_call_id FROM anbu.alerts WHERE id = %s",
                (alert_id,),
            ).fetchone()
            assert a is not None
            call = None
            if a["awaiting_call"] and a["last_call_id"] is not None:
                # locked, so no dialler claims it now and no answer is stored half-way
                call = cur.execute(
                    "SELECT dialled_at, outcome FROM anbu.calls WHERE id = %s FOR UPDATE",
                    (a["last_call_id"],),
                ).fetchone()
        state = AlertState(a["state"])
        asked = conn.execute(_ASKED_FOR_HELP, (alert_id, list(HELP_OUTCOMES))).fetchone()
        if asked is not None and asked[0]:
            done.kept.append(alert_id)
            _note_once(conn, alert_id, state, actor, now, reason(status, until, tz, KEPT))
        elif call is not None and call["dialled_at"] is not None and call["outcome"] is None:
            done.waiting_for_call.append(alert_id)  # ringing now: AlertService closes it after
            _note_once(
                conn, alert_id, state, actor, now, reason(status, until, tz, WAITING_FOR_CALL)
            )
        else:
            calls = close(conn, alert_id, state, status, until, now, tz, actor=actor,
                          resolved_by=care_manager_id)  # fmt: skip
            done.closed.append(alert_id)
            done.cancelled_calls.extend(calls)
    if ids:
        log.info(
            "alerts stood down for an absence",
            extra={"resident_id": resident_id, "care_manager_id": care_manager_id,
                   "status": status, "closed": done.closed, "cancelled_calls": done.cancelled_calls,
                   "waiting_for_call": done.waiting_for_call, "kept": done.kept},
        )  # fmt: skip
    return done


def _note_once(
    conn: psycopg.Connection[Any],
    alert_id: int,
    state: AlertState,
    actor: str,
    now: datetime,
    text: str,
) -> None:
    """Record why an alert stays open, once however often the same status is set."""
    seen = conn.execute(
        "SELECT 1 FROM anbu.alert_events WHERE alert_id = %s AND reason = %s LIMIT 1",
        (alert_id, text),
    ).fetchone()
    if seen is None:
        record_event(conn, alert_id, now, actor, state, state, text)
