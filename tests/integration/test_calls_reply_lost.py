"""A dial request whose reply was lost (Twilio accepted the call, then the client's read timed
out or the connection was reset) leaves the call dialled with its result unknown, not failed:
its callbacks settle it, so a resident's help on it is stored and acted on and a care manager's
1 on it takes the alert; when no callback ever comes, the lost-call reaper settles it. A request
Twilio refused, or one that never left, still fails the call at once.

The phone network really accepts and rings these calls; only its HTTP reply is withheld or
reset (PhoneNetwork.lose_next_reply), against the real twilio client with a short timeout.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest

import registry
from alerts.intake import Intake
from alerts.policy import EscalationPolicy
from alerts.service import AlertService
from calls.lost import DIAL_UNKNOWN, lost_after
from core.clock import VirtualClock
from simulators import personas
from simulators.phone import REPLY_RESET, REPLY_TIMEOUT
from simulators.servers import free_port
from tests.calls_support import CallsRig, calls_rig

DONG = "1111051500"
PHONE = "+821055507777"
MANAGER_PHONE = "+821099990007"
MONDAY_10 = datetime(2026, 3, 2, 1, 0, tzinfo=UTC)  # Monday 10:00 Asia/Seoul
TIMEOUT_S = 0.5  # the REST client's read timeout: the held reply is lost after this

FAULTS = [REPLY_TIMEOUT, REPLY_RESET]


def _seed(db_url: str) -> tuple[int, int]:
    with psycopg.connect(db_url) as conn:
        registry.add_dong(conn, DONG, "청운효자동", "종로구")
        rid = registry.add_resident(conn, "h-reply", DONG, "이순자", PHONE)
        cm = registry.add_care_manager(conn, "cm-reply", DONG, "최담당", MANAGER_PHONE, "pw")
        return rid, cm


def _alert(db_url: str, rid: int, state: str, severity: str) -> int:
    with psycopg.connect(db_url) as conn:
        row = conn.execute(
            """INSERT INTO anbu.alerts (resident_id, kind, severity, state, opened_at, updated_at,
                   next_action_at, escalation_level)
               VALUES (%s, 'inactivity', %s, %s, %s, %s, %s, %s) RETURNING id""",
            (rid, severity, state, MONDAY_10, MONDAY_10,
             MONDAY_10 if state == "open" else None, 2 if state == "escalated" else 0),
        ).fetchone()  # fmt: skip
    assert row is not None
    return int(row[0])


def _call(rig: CallsRig, call_id: int) -> tuple[Any, ...]:
    [row] = rig.query(
        "SELECT status, outcome, twilio_sid, dial_state FROM anbu.calls WHERE id = %s", call_id
    )
    return row


def _events(rig: CallsRig, call_id: int) -> list[str]:
    rows = rig.query("SELECT status FROM anbu.call_events WHERE call_id = %s ORDER BY id", call_id)
    return [r[0] for r in rows]


@pytest.mark.parametrize("fault", FAULTS)
def test_help_on_a_call_whose_reply_was_lost_is_stored_and_acted_on(
    db_url: str, fault: str
) -> None:
    rid, _ = _seed(db_url)
    clock = VirtualClock(MONDAY_10)
    with calls_rig(db_url, clock=clock, twilio_timeout_s=TIMEOUT_S) as rig:
        rig.network.set_persona(PHONE, personas.SCRIPTED["says_help"])
        rig.network.pause_lines()  # accepted, but it rings only when the test says
        rig.network.lose_next_reply(fault)
        alerts = AlertService(rig.database, rig.service, EscalationPolicy(), clock, "http://d")
        alert_id = _alert(db_url, rid, "open", "warning")

        assert alerts.process_due() == 1  # the first check-in call; its reply is lost
        [(call_id,)] = rig.query("SELECT id FROM anbu.calls WHERE alert_id = %s", alert_id)
        [accepted] = rig.network.calls
        assert _call(rig, call_id) == ("queued", None, None, "dialled")  # unknown, not failed
        assert _events(rig, call_id) == ["queued", DIAL_UNKNOWN]
        assert alerts.process_due() == 0  # the alert waits for the call, it retries nothing

        rig.network.resume_lines()
        assert rig.network.wait_idle(20)
        assert _call(rig, call_id) == ("completed", "help", accepted.sid, "dialled")
        answered = rig.network.call(accepted.sid)
        assert answered is not None
        assert answered.answers == ("보일러가 고장 나서 추워요 좀 도와주세요",)

        assert alerts.process_due() == 1  # the help answer escalates at once
        [(state,)] = rig.query("SELECT state FROM anbu.alerts WHERE id = %s", alert_id)
        assert state == "escalated"
        assert [m.to for m in rig.network.messages] == [MANAGER_PHONE]
        assert len(rig.network.calls) == 1  # the resident was rung once


@pytest.mark.parametrize("fault", FAULTS)
def test_a_care_manager_pressing_1_on_a_call_whose_reply_was_lost_takes_the_alert(
    db_url: str, fault: str
) -> None:
    rid, cm = _seed(db_url)
    clock = VirtualClock(MONDAY_10)
    with calls_rig(db_url, clock=clock, twilio_timeout_s=TIMEOUT_S) as rig:
        rig.network.set_persona(MANAGER_PHONE, personas.SCRIPTED["press_1"])
        alerts = AlertService(rig.database, rig.service, EscalationPolicy(), clock, "http://d")
        intake = Intake(rig.database, alerts, clock)
        alert_id = _alert(db_url, rid, "escalated", "critical")
        rig.network.pause_lines()
        rig.network.lose_next_reply(fault)

        call_id = rig.service.call_care_manager(alert_id, cm, "심각 알림입니다.", step=2)
        assert _call(rig, call_id)[:3] == ("queued", None, None)
        assert intake.take_manager_acks() == 0  # nothing answered yet, and nothing used up

        rig.network.resume_lines()
        assert rig.network.wait_idle(20)
        assert intake.take_manager_acks() == 1
        [(state, by)] = rig.query(
            "SELECT state, acknowledged_by FROM anbu.alerts WHERE id = %s", alert_id
        )
        assert (state, by) == ("acknowledged", cm)


def test_a_lost_reply_for_a_call_twilio_never_rang_is_settled_by_the_reaper(db_url: str) -> None:
    rid, _ = _seed(db_url)
    clock = VirtualClock(MONDAY_10)
    with calls_rig(db_url, clock=clock, twilio_timeout_s=TIMEOUT_S) as rig:
        rig.network.set_persona(PHONE, personas.SCRIPTED["says_help"])
        rig.network.pause_lines()  # no callback comes before the reaper looks
        rig.network.lose_next_reply(REPLY_RESET)
        call_id = rig.service.place_check_in(rid, None, 1)
        assert _call(rig, call_id)[:2] == ("queued", None)

        clock.advance(lost_after(rig.settings) - timedelta(seconds=1))
        assert rig.service.reap_lost_calls() == []  # still waiting for its callbacks
        clock.advance(timedelta(seconds=2))
        [lost] = rig.service.reap_lost_calls()
        assert lost.id == call_id
        assert _call(rig, call_id)[:2] == ("lost", "failed")
        [(reason,)] = rig.query(
            """SELECT params->>'reason' FROM anbu.call_events
               WHERE call_id = %s AND status = 'lost'""",
            call_id,
        )
        assert reason == "no_callback_after_lost_reply"

        rig.network.resume_lines()  # Twilio rings it after all: it hangs up, asks nothing
        assert rig.network.wait_idle(20)
        [late] = rig.network.calls
        assert late.answers == () and _call(rig, call_id)[:2] == ("lost", "failed")


def test_a_refusal_or_a_request_that_never_left_still_fails_the_call(db_url: str) -> None:
    rid, _ = _seed(db_url)
    with calls_rig(db_url, twilio_timeout_s=TIMEOUT_S) as rig:
        rig.network.set_persona(PHONE, personas.INVALID_NUMBER)  # HTTP 400, code 21211
        refused = rig.service.place_check_in(rid, None, 1)
        assert _call(rig, refused)[:3] == ("failed", "failed", None)
        [(params,)] = rig.query(
            "SELECT params FROM anbu.call_events WHERE call_id = %s AND status = 'failed'",
            refused,
        )
        assert params["http_status"] == "400"
    closed = f"http://127.0.0.1:{free_port()}"  # nothing listens: connection refused
    with calls_rig(db_url, twilio_timeout_s=TIMEOUT_S, twilio_api_base_url=closed) as rig:
        never_left = rig.service.place_check_in(rid, None, 2)
        assert _call(rig, never_left)[:3] == ("failed", "failed", None)
        assert DIAL_UNKNOWN not in _events(rig, never_left)
