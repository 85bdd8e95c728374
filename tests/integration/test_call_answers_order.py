"""The resident's answer, whatever order Twilio's callbacks come in, on the real PostgreSQL and
the local phone network.

A `completed` status before the gather used to settle the call as unclear and drop a later
"help"; an answering-machine result overwrote a spoken answer; a help that came after the
alert had moved on (the watchdog fired, the call had ended unclear) was stored and acted on
by nothing. An answer now always wins, the most urgent answer of a call is kept, and a help
answer that comes late raises its own finding and reaches the care manager once.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

import registry
from alerts.intake import Intake
from alerts.policy import EscalationPolicy
from alerts.service import AlertService
from core.clock import VirtualClock
from core.domain import Severity
from simulators import personas
from tests.calls_support import ACCOUNT_SID, CallsRig, calls_rig
from tests.integration.dashboard_support import seed_alert

DONG = "1111051500"
PHONE = "+821055508888"
NOON = datetime(2026, 11, 22, 3, 0, tzinfo=UTC)  # 12:00 in Seoul


@dataclass
class Rig:
    calls: CallsRig
    alerts: AlertService
    intake: Intake
    clock: VirtualClock
    resident_id: int

    def query(self, sql: str, *args: Any) -> list[tuple[Any, ...]]:
        return self.calls.query(sql, *args)

    def call(self, call_id: int) -> tuple[Any, ...]:
        (row,) = self.query(
            "SELECT outcome, answer, acted_on FROM anbu.calls WHERE id = %s", call_id
        )
        return row

    def alert(self, alert_id: int) -> tuple[Any, ...]:
        (row,) = self.query("SELECT state, awaiting_call FROM anbu.alerts WHERE id = %s", alert_id)
        return row


@pytest.fixture
def rig(db_url: str, unique: str) -> Iterator[Rig]:
    clock = VirtualClock(NOON)
    with calls_rig(db_url, clock=clock, call_cps=0.001, call_inline_wait_s=0.0) as calls:
        with calls.database.connection() as conn:
            registry.add_dong(conn, DONG, "청운효자동", "종로구")
            registry.add_care_manager(
                conn, f"kim{unique}", DONG, "김복지", "+821000000001", "answers-pass-1"
            )
            resident = registry.add_resident(conn, f"home-{unique}", DONG, "박영희", PHONE)
            conn.execute(  # the budget is spent: nothing is really dialled, the test rings
                """INSERT INTO anbu.call_rate (account, tokens, refilled_at)
                   VALUES (%s, 0, clock_timestamp())""",
                (ACCOUNT_SID,),
            )
        calls.network.set_persona(PHONE, personas.SCRIPTED["no_answer"])
        alerts = AlertService(
            calls.database, calls.service, EscalationPolicy(), clock, "http://dashboard.test"
        )
        yield Rig(calls, alerts, Intake(calls.database, alerts, clock), clock, resident)


def _ringing(rig: Rig) -> tuple[int, int]:
    """An inactivity alert whose check-in call rings now: (alert id, call id)."""
    alert_id = seed_alert(rig.calls.database, rig.clock, rig.resident_id, "inactivity")
    rig.alerts.process_due()
    [(call_id,)] = rig.query("SELECT last_call_id FROM anbu.alerts WHERE id = %s", alert_id)
    rig.query(
        """UPDATE anbu.calls SET dial_state = 'dialled', dialled_at = %s, claimed_at = %s
           WHERE id = %s RETURNING id""",
        rig.clock.now(), rig.clock.now(), call_id,
    )  # fmt: skip
    assert rig.alert(alert_id) == ("calling", True)
    return alert_id, int(call_id)


def _care_manager_told(rig: Rig) -> int:
    return len(rig.query("SELECT 1 FROM anbu.notifications"))


def test_help_after_a_completed_status_is_the_outcome(rig: Rig) -> None:
    alert_id, call_id = _ringing(rig)
    rig.calls.service.record_status(call_id, {"CallStatus": "completed"})  # callback first
    rig.calls.service.record_gather(call_id, {"Digits": "2"})  # then the answer: help
    assert rig.call(call_id)[:2] == ("help", "help")
    rig.alerts.process_due()
    assert rig.alert(alert_id)[0] == "escalated"
    assert rig.call(call_id)[2] == "help"
    assert rig.intake.report_late_answers() == 0  # acted on as help: nothing late


def test_a_machine_result_never_overwrites_a_spoken_answer(rig: Rig) -> None:
    _, call_id = _ringing(rig)
    rig.calls.service.record_gather(call_id, {"SpeechResult": "네 괜찮아요"})
    assert rig.call(call_id)[:2] == ("ok", "ok")
    rig.calls.service.record_amd(call_id, {"AnsweredBy": "machine_start"})
    rig.calls.service.record_status(call_id, {"CallStatus": "completed"})
    assert rig.call(call_id)[:2] == ("ok", "ok")


def test_a_call_keeps_its_most_urgent_answer(rig: Rig) -> None:
    _, call_id = _ringing(rig)
    rig.calls.service.record_gather(call_id, {"Digits": "1"})
    rig.calls.service.record_gather(call_id, {"SpeechResult": "도와주세요"})
    rig.calls.service.record_gather(call_id, {"Digits": "1"})
    assert rig.call(call_id)[:2] == ("help", "help")


def test_an_unclear_first_try_then_a_clear_ok_is_ok(rig: Rig) -> None:
    _, call_id = _ringing(rig)
    rig.calls.service.record_gather(call_id, {"Digits": "9"})
    assert rig.call(call_id)[:2] == ("unclear", "unclear")
    rig.calls.service.record_gather(call_id, {"Digits": "1"})
    assert rig.call(call_id)[:2] == ("ok", "ok")


def test_help_after_the_alert_acted_on_unclear_reaches_the_care_manager_once(rig: Rig) -> None:
    alert_id, call_id = _ringing(rig)
    rig.calls.service.record_status(call_id, {"CallStatus": "completed"})
    rig.alerts.process_due()  # acted on 'unclear': a retry in ten minutes, nobody told
    assert rig.alert(alert_id) == ("calling", False)
    assert rig.call(call_id)[2] == "unclear"
    told = _care_manager_told(rig)

    rig.clock.advance(timedelta(seconds=20))
    rig.calls.service.record_gather(call_id, {"SpeechResult": "아이고 도와줘"})
    assert rig.intake.report_late_answers() == 1
    [(severity, reason)] = rig.query(
        """SELECT severity, reason_ko FROM anbu.findings
           WHERE resident_id = %s AND kind = 'checkin_help'""",
        rig.resident_id,
    )
    assert severity == Severity.WARNING.label
    assert reason.startswith("안부전화 응답 후속 확인: 도움 요청 (음성, ")
    rig.alerts.process_due()
    [(state,)] = rig.query(
        "SELECT state FROM anbu.alerts WHERE resident_id = %s AND kind = 'checkin_help'",
        rig.resident_id,
    )
    assert state == "escalated"
    assert _care_manager_told(rig) > told
    assert rig.intake.report_late_answers() == 0  # reported once


def test_help_after_the_watchdog_fired_is_reported(rig: Rig) -> None:
    _, call_id = _ringing(rig)
    rig.clock.advance(timedelta(minutes=30))  # no callback at all: the watchdog fires
    rig.alerts.process_due()
    assert rig.call(call_id)[2] == "no_answer"
    rig.calls.service.record_gather(call_id, {"Digits": "2"})
    assert rig.call(call_id)[:2] == ("help", "help")
    assert rig.intake.report_late_answers() == 1


def test_help_on_a_call_nobody_acted_on_is_reported_after_a_grace(rig: Rig) -> None:
    """The alert was closed while its call rang (a care manager resolved it): nobody is left
    to act on the call, so its help answer is reported once the grace has passed."""
    alert_id, call_id = _ringing(rig)
    rig.query(
        "UPDATE anbu.alerts SET state = 'resolved', awaiting_call = false WHERE id = %s "
        "RETURNING id",
        alert_id,
    )
    rig.calls.service.record_gather(call_id, {"Digits": "2"})
    assert rig.intake.report_late_answers() == 0  # a consumer may still act on it
    rig.clock.advance(timedelta(minutes=3))
    assert rig.intake.report_late_answers() == 1


def test_a_care_manager_pressing_2_on_an_alert_call_is_no_help_request(rig: Rig) -> None:
    """On a care manager's alert call the keys mean something else: never the resident's help."""
    _, call_id = _ringing(rig)
    rig.query("UPDATE anbu.calls SET purpose = 'manager_alert' WHERE id = %s RETURNING id", call_id)
    rig.calls.service.record_gather(call_id, {"Digits": "2"})
    rig.clock.advance(timedelta(minutes=3))
    assert rig.intake.report_late_answers() == 0
