"""An emergency button, a fire or gas alarm (issue 20): the care managers and a check-in call to
the resident in the same step, even in quiet hours; the resident's answer kept on the alert
(help reaches it once, an OK never closes a fire alarm); a cancel press within the grace window
turns the alert into a check-in, a later one is only noted; the 돌봄콜 line's help request and a
button press are one alert.

Real PostgreSQL, the real twilio client, anbu's webhooks and the local phone network.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from psycopg.types.json import Jsonb

import registry
from alerts.intake import Intake
from alerts.policy import TOP_LEVEL, EscalationPolicy
from alerts.safety import SafetyAlerts
from alerts.service import AlertService, IncomingFinding
from core.clock import VirtualClock
from core.db import Database
from core.domain import Finding, Severity
from dashboards import sites
from simulators import personas
from tests.calls_support import CallsRig, calls_rig
from tests.integration.dashboard_support import (
    OPENED_AT,
    PASSWORD_A,
    REASON_KO,
    Town,
    login_page,
    seed_alert,
    town,
)

__all__ = ["town"]  # the fixture

DONG = "1111051500"
RESIDENT = "+821055508811"
MANAGER = "+821099990091"
MONDAY_10 = datetime(2026, 3, 2, 1, 0, tzinfo=UTC)  # Monday 10:00 Asia/Seoul
GRACE = timedelta(seconds=120)


@dataclass
class Rig:
    calls: CallsRig
    alerts: AlertService
    clock: VirtualClock
    resident_id: int
    manager_id: int

    def query(self, sql: str, *args: Any) -> list[tuple[Any, ...]]:
        return self.calls.query(sql, *args)

    def finding(
        self, kind: str, at: datetime, severity: Severity = Severity.CRITICAL
    ) -> IncomingFinding:
        """A finding as ingest stores it, handed to the alerts."""
        details = {"sensor_id": 1, "room": "kitchen", "reading_ts": at.isoformat(), "value": 1}
        with self.calls.database.connection() as conn:
            row = conn.execute(
                """INSERT INTO anbu.findings (resident_id, kind, severity, raised_at, reason_ko,
                       reason_en, details) VALUES (%s, %s, %s, %s, %s, %s, %s) RETURNING id""",
                (self.resident_id, kind, severity.label, at, f"{kind} 감지", f"{kind} seen",
                 Jsonb(details)),
            ).fetchone()  # fmt: skip
        assert row is not None
        f = Finding("home-safe", kind, severity, at, f"{kind} 감지", f"{kind} seen", details)
        return IncomingFinding(int(row[0]), self.resident_id, f)

    def hand_over(self, kind: str, at: datetime | None = None) -> list[int]:
        return self.alerts.on_findings([self.finding(kind, at or self.clock.now())])

    def settle(self) -> None:
        """Every call placed so far ends; the alerts take their answers."""
        assert self.calls.network.wait_idle(20)
        self.alerts.process_due()

    def alerts_rows(self) -> list[tuple[Any, ...]]:
        return self.query("SELECT id, kind, state, escalation_level FROM anbu.alerts ORDER BY id")

    def events(self, alert_id: int) -> list[tuple[str, str, str]]:
        return self.query(
            "SELECT actor, to_state, reason FROM anbu.alert_events WHERE alert_id = %s ORDER BY id",
            alert_id,
        )

    def check_ins(self, alert_id: int) -> list[tuple[Any, ...]]:
        return self.query(
            """SELECT id, created_at, outcome FROM anbu.calls
                WHERE alert_id = %s AND purpose = 'check_in' ORDER BY id""",
            alert_id,
        )

    def texts_to_manager(self) -> list[str]:
        return [m.body for m in self.calls.network.messages if m.to == MANAGER]


@pytest.fixture
def rig(db_url: str) -> Iterator[Rig]:
    clock = VirtualClock(MONDAY_10)
    with calls_rig(db_url, clock=clock) as calls:
        with calls.database.connection() as conn:
            registry.add_dong(conn, DONG, "청운효자동", "종로구")
            manager = registry.add_care_manager(conn, "m-safe", DONG, "김담당", MANAGER, "pw")
            # quiet hours around 10:00: a check-in for an inactivity alert would wait
            resident = registry.add_resident(
                conn, "home-safe", DONG, "박순례", RESIDENT,
                quiet_start=time(9, 0), quiet_end=time(12, 0),
            )  # fmt: skip
        policy = EscalationPolicy(button_cancel_grace=GRACE)
        alerts = AlertService(calls.database, calls.service, policy, clock, "http://d")
        yield Rig(calls, alerts, clock, resident, manager)


def test_fire_alarm_tells_the_care_manager_and_calls_the_resident_in_one_step(rig: Rig) -> None:
    rig.calls.network.set_persona(RESIDENT, personas.PRESS_1)
    [alert_id] = rig.hand_over("fire_alarm")
    rig.alerts.process_due()
    [(_, _, state, level)] = rig.alerts_rows()
    assert (state, level) == ("escalated", TOP_LEVEL)
    assert len(rig.check_ins(alert_id)) == 1
    # the escalation and the resident's call were written by one transaction: the same step
    steps = rig.query(
        """SELECT xmin::text::bigint, reason FROM anbu.alert_events
            WHERE alert_id = %s AND from_state IS NOT NULL ORDER BY id LIMIT 2""",
        alert_id,
    )
    assert len(steps) == 2 and "화재 감지기 경보" in steps[0][1] and "동시 발신" in steps[1][1]
    assert steps[0][0] == steps[1][0]
    rig.settle()
    rung = {c.to for c in rig.calls.network.calls}
    assert {RESIDENT, MANAGER} <= rung  # quiet hours held nothing
    [resident_call] = [c for c in rig.calls.network.calls if c.to == RESIDENT]
    assert "댁의 화재 감지기가 울려 전화드렸습니다" in resident_call.heard[0]
    assert (
        "괜찮으시면 1번을 눌러 주세요. 도움이 필요하시면 2번을 눌러 주세요."
        in resident_call.heard[0]
    )
    [manager_call] = [c for c in rig.calls.network.calls if c.to == MANAGER]
    apart = abs(manager_call.created_at - resident_call.created_at)
    assert apart < timedelta(seconds=2)  # both rang once the one step committed
    # fixed spoken sentences: severity, dong, cause, first advice, the alert's number
    assert manager_call.heard[0].startswith(
        "안부 돌봄 시스템입니다. 심각 알림입니다. 청운효자동 대상자 댁, 화재 감지기 경보입니다. "
        "화재 의심: 일일구에 먼저 신고하세요. 알림 번호는 "
    )
    [sms] = rig.texts_to_manager()
    assert "청운효자동 대상자 댁 화재 감지기 경보" in sms and "119에 먼저 신고하세요" in sms
    assert "박순례" not in sms and RESIDENT not in sms
    # the resident's OK is on the timeline, and the fire alarm stays for a care manager
    [(_, _, state, _)] = rig.alerts_rows()
    assert state == "escalated"
    said = [r for a, _, r in rig.events(alert_id) if a == "resident"]
    assert len(said) == 1 and "괜찮다고 응답" in said[0]
    [(acted,)] = rig.query(
        "SELECT acted_on FROM anbu.calls WHERE alert_id = %s AND purpose = 'check_in'", alert_id
    )
    assert acted == "ok"


def test_a_fire_alarm_resident_asking_for_help_hears_to_go_out_and_call_119(rig: Rig) -> None:
    rig.calls.network.set_persona(RESIDENT, personas.PRESS_2)
    [alert_id] = rig.hand_over("fire_alarm")
    rig.alerts.process_due()
    rig.settle()
    [resident_call] = [c for c in rig.calls.network.calls if c.to == RESIDENT]
    assert resident_call.heard[0].startswith(
        "어르신, 안녕하세요. 구청 통합돌봄센터에서 안부 전화 드렸습니다."
    )
    fire_line = "연기나 불이 보이면 바로 밖으로 나가신 뒤 일일구에 전화해 주세요."
    assert fire_line in resident_call.heard[0]
    assert resident_call.heard[-1] == (
        "동 케어매니저 선생님께 바로 알리겠습니다. 연기나 불이 보이면 기다리지 마시고 "
        "바로 밖으로 나가 일일구에 전화해 주세요."
    )
    assert not any("조금만 기다려" in h for h in resident_call.heard)
    # spoken, the emergency number is 일일구; written (SMS), 119
    [manager_call] = [c for c in rig.calls.network.calls if c.to == MANAGER]
    spoken = " ".join(manager_call.heard)
    assert "화재 의심: 일일구에 먼저 신고하세요" in spoken and "119" not in spoken
    texts = rig.texts_to_manager()
    assert any("화재 의심: 119에 먼저 신고하세요" in t for t in texts)
    [helped] = [t for t in texts if "대상자 도움 요청" in t]
    assert "화재 감지기 경보 후 안부전화에서 도움 요청" in helped
    [said] = [r for a, _, r in rig.events(alert_id) if a == "resident"]
    assert said.startswith("대상자 안부전화 1회차: 도움 요청")
    assert "check-in call 1 to the resident: help" in said


def test_a_gas_alarm_nobody_answers_says_the_care_manager_was_told(rig: Rig) -> None:
    rig.calls.network.set_persona(RESIDENT, personas.SILENT)
    rig.hand_over("gas_alarm")
    rig.alerts.process_due()
    rig.settle()
    [resident_call] = [c for c in rig.calls.network.calls if c.to == RESIDENT]
    first, again, last = resident_call.heard[0], resident_call.heard[1], resident_call.heard[-1]
    safety = (
        "가스 밸브를 잠가 주세요. 전기 스위치는 만지지 마세요. 창문을 열고 밖으로 나가 주세요. "
        "밖에서 일일구에 전화해 주세요."
    )
    assert "댁의 가스 감지기가 울려 전화드렸습니다." in first and safety in first
    assert again.startswith(safety) and "괜찮으시면 1번" in again  # said again before the question
    assert last == "대답이 없으셔서 동 케어매니저 선생님께 알렸습니다. 곧 연락드리겠습니다."


def test_a_button_press_answered_by_a_machine_leaves_no_promise_to_call_again(rig: Rig) -> None:
    rig.calls.network.set_persona(RESIDENT, personas.MACHINE_START)
    rig.hand_over("help_button")
    rig.alerts.process_due()
    rig.settle()
    [resident_call] = [c for c in rig.calls.network.calls if c.to == RESIDENT]
    # who called, then that the care manager was told
    assert resident_call.heard == (
        "어르신, 안녕하세요. 구청 통합돌봄센터에서 안부 전화 드렸습니다. "
        "대답이 없으셔서 동 케어매니저 선생님께 알렸습니다. 곧 연락드리겠습니다.",
    )
    assert not any("다시 전화드리겠습니다" in h for h in resident_call.heard)


def test_a_detector_test_and_a_device_off_its_mount_are_on_the_technicians_list(
    rig: Rig,
) -> None:
    rig.hand_over("alarm_test", rig.clock.now())
    rig.hand_over("device_tamper", rig.clock.now())
    with rig.calls.database.connection() as conn:
        found = sites.device_findings(conn, DONG)
    assert sorted(f.kind for f in found) == ["alarm_test", "device_tamper"]
    assert rig.calls.network.calls == []  # neither rings anyone


def test_cancel_within_grace_turns_the_alert_into_a_check_in_that_an_ok_resolves(
    rig: Rig,
) -> None:
    rig.calls.network.set_persona(RESIDENT, personas.PRESS_1)
    pressed = rig.clock.now()
    [alert_id] = rig.hand_over("help_button", pressed)
    rig.alerts.process_due()
    rig.settle()  # the manager was rung and texted; the resident said OK
    assert rig.texts_to_manager()
    rig.clock.advance(timedelta(seconds=30))
    assert rig.hand_over("button_cancel", pressed + timedelta(seconds=30)) == [alert_id]
    [(_, _, state, _)] = rig.alerts_rows()
    assert state == "calling"
    assert any("유예 2분 이내" in r for _, to, r in rig.events(alert_id) if to == "calling")
    rig.alerts.process_due()  # follows the call already placed: its OK closes the alert
    [(_, kind, state, _)] = rig.alerts_rows()
    assert (kind, state) == ("help_button", "resolved")
    [(outcome,)] = rig.query("SELECT outcome FROM anbu.alerts WHERE id = %s", alert_id)
    assert outcome == "resident_ok"
    assert len(rig.check_ins(alert_id)) == 1  # no second call
    cancelled = [t for t in rig.texts_to_manager() if "응급호출 취소" in t]
    assert len(cancelled) == 1 and "안부전화로 확인" in cancelled[0]
    [(not_alerted,)] = rig.query(
        "SELECT not_alerted FROM anbu.findings WHERE kind = 'button_cancel'"
    )
    assert not_alerted is None


def test_no_answer_after_a_cancel_is_retried_and_escalates_again(rig: Rig) -> None:
    rig.calls.network.set_persona(RESIDENT, personas.NO_ANSWER)
    rig.calls.network.pause_lines()  # the cancel comes while the resident's phone still rings
    pressed = rig.clock.now()
    [alert_id] = rig.hand_over("help_button", pressed)
    rig.alerts.process_due()
    rig.hand_over("button_cancel", pressed + timedelta(seconds=10))
    rig.calls.network.resume_lines()
    rig.settle()
    rig.alerts.process_due()  # no answer: retried as for inactivity
    [(_, _, state, _)] = rig.alerts_rows()
    assert state == "calling"
    for _ in range(EscalationPolicy().call_retries):
        rig.clock.advance(EscalationPolicy().retry_interval)
        rig.alerts.process_due()
        rig.settle()
    [(_, _, state, level)] = rig.alerts_rows()
    assert (state, level) == ("escalated", 0)
    assert len(rig.check_ins(alert_id)) == 1 + EscalationPolicy().call_retries


def test_cancel_after_grace_is_only_an_event(rig: Rig) -> None:
    rig.calls.network.set_persona(RESIDENT, personas.PRESS_1)
    pressed = rig.clock.now()
    [alert_id] = rig.hand_over("help_button", pressed)
    rig.alerts.process_due()
    rig.settle()
    texts = len(rig.texts_to_manager())
    late = pressed + GRACE + timedelta(seconds=1)
    rig.clock.advance(late - rig.clock.now())
    assert rig.hand_over("button_cancel", late) == [alert_id]
    rig.alerts.process_due()
    assert rig.alerts_rows() == [(alert_id, "help_button", "escalated", TOP_LEVEL)]
    noted = [r for _, _, r in rig.events(alert_id) if "취소 버튼" in r]
    assert len(noted) == 1 and "유예 2분이 지나" in noted[0]
    assert len(rig.texts_to_manager()) == texts


def test_cancel_with_no_open_alert_is_recorded_and_nothing_else(rig: Rig) -> None:
    assert rig.hand_over("button_cancel") == []
    assert rig.alerts_rows() == []
    [(alerted, why)] = rig.query("SELECT alerted_at IS NOT NULL, not_alerted FROM anbu.findings")
    assert (alerted, why) == (True, "no_open_alert")
    assert rig.calls.network.calls == [] and rig.calls.network.messages == []


@pytest.mark.parametrize("first", ["help_request", "help_button"])
def test_line_help_and_a_button_press_within_ten_minutes_are_one_alert(
    rig: Rig, first: str
) -> None:
    second = "help_button" if first == "help_request" else "help_request"
    [alert_id] = rig.hand_over(first)
    rig.alerts.process_due()
    rig.settle()
    calls_before = len(rig.calls.network.calls)
    texts_before = len(rig.texts_to_manager())
    rig.clock.advance(timedelta(minutes=9))
    assert rig.hand_over(second) == [alert_id]
    rig.alerts.process_due()
    rig.settle()
    assert [(k, s) for _, k, s, _ in rig.alerts_rows()] == [(first, "escalated")]
    assert any("이 알림에 합침" in r for _, _, r in rig.events(alert_id))
    assert len(rig.calls.network.calls) == calls_before  # no second call round
    # those told hear once that the resident asked again (review of issue 20)
    assert len(rig.texts_to_manager()) == texts_before + 1


def test_a_press_after_the_window_is_an_alert_of_its_own(rig: Rig) -> None:
    [line] = rig.hand_over("help_request")
    rig.alerts.process_due()
    rig.clock.advance(timedelta(minutes=11))
    [button] = rig.hand_over("help_button")
    assert button != line
    assert [k for _, k, _, _ in rig.alerts_rows()] == ["help_request", "help_button"]


def test_help_on_the_concurrent_call_reaches_the_alert_once(rig: Rig) -> None:
    rig.calls.network.set_persona(RESIDENT, personas.PRESS_2)
    [alert_id] = rig.hand_over("gas_alarm")
    rig.alerts.process_due()
    rig.settle()
    said = [r for a, _, r in rig.events(alert_id) if a == "resident"]
    assert len(said) == 1 and "도움 요청" in said[0]
    helped = [t for t in rig.texts_to_manager() if "도움 요청" in t]
    assert len(helped) == 1
    # later passes: nothing reported late, no second alert
    rig.clock.advance(timedelta(minutes=5))
    intake = Intake(rig.calls.database, rig.alerts, rig.clock)
    assert intake.report_late_answers() == 0
    rig.alerts.process_due()
    assert [k for _, k, _, _ in rig.alerts_rows()] == ["gas_alarm"]
    assert len([r for a, _, r in rig.events(alert_id) if a == "resident"]) == 1


def test_help_after_the_alert_was_taken_joins_it_not_a_new_alert(rig: Rig) -> None:
    rig.calls.network.set_persona(RESIDENT, personas.PRESS_2)
    rig.calls.network.pause_lines()  # the resident's phone rings after the manager took it
    [alert_id] = rig.hand_over("help_button")
    rig.alerts.process_due()
    rig.alerts.acknowledge(alert_id, rig.manager_id, DONG)
    rig.calls.network.resume_lines()
    assert rig.calls.network.wait_idle(20)
    rig.alerts.process_due()  # the taken alert no longer waits for the call
    rig.clock.advance(timedelta(minutes=3))
    intake = Intake(rig.calls.database, rig.alerts, rig.clock)
    assert intake.report_late_answers() == 1
    assert intake.report_late_answers() == 0
    assert [(k, s) for _, k, s, _ in rig.alerts_rows()] == [("help_button", "acknowledged")]
    joined = [r for _, _, r in rig.events(alert_id) if "이 알림에 합침" in r]
    assert len(joined) == 1 and "도움 요청" in joined[0]
    [(alerted, why)] = rig.query(
        "SELECT alerted_at IS NOT NULL, not_alerted FROM anbu.findings WHERE kind LIKE 'checkin%%'"
    )
    assert (alerted, why) == (True, None)


def test_the_alert_page_shows_119_advice_address_and_access_notes_first(
    town: Town, database: Database
) -> None:
    clock = VirtualClock(OPENED_AT)
    alert_id = seed_alert(database, clock, town.resident_id, "fire_alarm")
    with database.connection() as conn:
        conn.execute(
            "UPDATE anbu.resident SET address = %s, access_notes = %s WHERE id = %s",
            ("서울 종로구 자하문로 1길 2", "현관 비밀번호 1234*", town.resident_id),
        )
    with TestClient(town.app) as client:
        login_page(client, town.username_a, PASSWORD_A)
        html = client.get(f"/alerts/{alert_id}").text
        plain = client.get(f"/alerts/{town.alert_id}").text  # an inactivity alert
    order = [html.find(s) for s in ("119에 먼저 신고하세요", "서울 종로구 자하문로 1길 2",
                                    "현관 비밀번호 1234*", 'class="facts"', REASON_KO)]  # fmt: skip
    assert -1 not in order and order[:3] == sorted(order[:3])
    assert order[2] < order[4]  # before the reason and the rest of the page
    assert "119에 먼저 신고하세요" not in plain and "현관 비밀번호" not in plain
    [(fields,)] = database_rows(
        database,
        """SELECT fields FROM anbu.access_log WHERE resident_id = %s AND view = 'notes'""",
        town.resident_id,
    )
    assert set(fields) == {"address", "access_notes"}


def database_rows(database: Database, sql: str, *args: Any) -> list[tuple[Any, ...]]:
    with database.connection() as conn:
        return conn.execute(sql, args).fetchall()


def test_a_cancel_before_anyone_was_told_is_a_check_in_only(rig: Rig) -> None:
    rig.calls.network.set_persona(RESIDENT, personas.PRESS_1)
    pressed = rig.clock.now()
    [alert_id] = rig.hand_over("help_button", pressed)
    rig.hand_over("button_cancel", pressed + timedelta(seconds=5))  # same batch, before a step
    rig.alerts.process_due()
    rig.settle()
    assert rig.alerts_rows() == [(alert_id, "help_button", "resolved", 0)]
    assert [c.to for c in rig.calls.network.calls] == [RESIDENT]
    assert rig.calls.network.messages == []


# -- review of issue 20: a cancel never silences a real emergency, a press is never dropped ---------


def _cancel(rig: Rig, at: datetime, sensor_id: int = 1) -> list[int]:
    """A cancel press read at `at` from `sensor_id` (the press came from sensor 1)."""
    details = {"sensor_id": sensor_id, "room": "kitchen", "reading_ts": at.isoformat(), "value": 0}
    with rig.calls.database.connection() as conn:
        row = conn.execute(
            """INSERT INTO anbu.findings (resident_id, kind, severity, raised_at, reason_ko,
                   reason_en, details)
               VALUES (%s, 'button_cancel', 'watch', %s, '취소', 'cancel', %s) RETURNING id""",
            (rig.resident_id, at, Jsonb(details)),
        ).fetchone()  # fmt: skip
    assert row is not None
    f = Finding("home-safe", "button_cancel", Severity.WATCH, at, "취소", "cancel", details)
    return rig.alerts.on_findings([IncomingFinding(int(row[0]), rig.resident_id, f)])


def _refused(rig: Rig, alert_id: int, why: str) -> None:
    """The cancel left the alert escalated at the top, with one line on its timeline saying why."""
    assert rig.alerts_rows() == [(alert_id, "help_button", "escalated", TOP_LEVEL)]
    noted = [r for _, to, r in rig.events(alert_id) if "취소 버튼" in r]
    assert len(noted) == 1 and why in noted[0], noted
    assert not any("취소" in t for t in rig.texts_to_manager())


def test_a_cancel_read_before_the_press_but_handed_over_after_it_is_refused(rig: Rig) -> None:
    rig.calls.network.pause_lines()
    pressed = rig.clock.now()
    [alert_id] = rig.hand_over("help_button", pressed)
    rig.alerts.process_due()
    assert _cancel(rig, pressed - timedelta(seconds=30)) == [alert_id]
    _refused(rig, alert_id, "호출보다 먼저 눌린")


def test_a_back_dated_cancel_arriving_after_the_window_is_refused(rig: Rig) -> None:
    rig.calls.network.pause_lines()
    pressed = rig.clock.now()
    [alert_id] = rig.hand_over("help_button", pressed)
    rig.alerts.process_due()
    rig.clock.advance(timedelta(minutes=10))  # buffered by a gateway, or its clock is wrong
    assert _cancel(rig, pressed + timedelta(seconds=20)) == [alert_id]
    _refused(rig, alert_id, "지나 도착해")


def test_a_cancel_from_another_button_is_refused(rig: Rig) -> None:
    rig.calls.network.pause_lines()
    pressed = rig.clock.now()
    [alert_id] = rig.hand_over("help_button", pressed)
    rig.alerts.process_due()
    assert _cancel(rig, pressed + timedelta(seconds=20), sensor_id=2) == [alert_id]
    _refused(rig, alert_id, "호출한 버튼이 아닌")


def test_a_cancel_after_the_resident_did_not_answer_is_refused(rig: Rig) -> None:
    rig.calls.network.set_persona(RESIDENT, personas.NO_ANSWER)
    pressed = rig.clock.now()
    [alert_id] = rig.hand_over("help_button", pressed)
    rig.alerts.process_due()
    rig.settle()
    texts = len(rig.texts_to_manager())
    assert _cancel(rig, pressed + timedelta(seconds=20)) == [alert_id]
    assert rig.alerts_rows() == [(alert_id, "help_button", "escalated", TOP_LEVEL)]
    [noted] = [r for _, _, r in rig.events(alert_id) if "취소 버튼" in r]
    assert "받지 않아" in noted
    assert len(rig.texts_to_manager()) == texts


def test_a_press_after_a_cancel_escalates_again_and_is_the_last_word(rig: Rig) -> None:
    rig.calls.network.pause_lines()  # the resident's phone rings on and on
    pressed = rig.clock.now()
    [alert_id] = rig.hand_over("help_button", pressed)
    rig.alerts.process_due()
    rig.clock.advance(timedelta(seconds=20))
    assert _cancel(rig, pressed + timedelta(seconds=20)) == [alert_id]
    assert rig.alerts_rows()[0][2] == "calling"
    rig.clock.advance(timedelta(seconds=20))
    assert rig.hand_over("help_button", pressed + timedelta(seconds=40)) == [alert_id]
    assert rig.alerts_rows() == [(alert_id, "help_button", "escalated", TOP_LEVEL)]
    assert any("다시 눌림" in r and "pressed again" in r for _, _, r in rig.events(alert_id))
    texts = rig.texts_to_manager()
    assert any("응급호출 취소" in t for t in texts)  # they heard the cancel ...
    assert "다시 눌림" in texts[-1] and "취소" not in texts[-1]  # ... and then the press again
    rig.calls.network.resume_lines()


def test_a_press_on_a_taken_alert_escalates_it_again(rig: Rig) -> None:
    rig.calls.network.pause_lines()
    [alert_id] = rig.hand_over("help_button")
    rig.alerts.process_due()
    rig.alerts.acknowledge(alert_id, rig.manager_id, DONG)
    texts = len(rig.texts_to_manager())
    rig.clock.advance(timedelta(hours=3))
    assert rig.hand_over("help_button") == [alert_id]
    assert rig.alerts_rows() == [(alert_id, "help_button", "escalated", TOP_LEVEL)]
    assert len(rig.texts_to_manager()) > texts
    assert "다시 눌림" in rig.texts_to_manager()[-1]
    rig.calls.network.resume_lines()


def test_a_fire_alarm_sounding_again_tells_the_top_again(rig: Rig) -> None:
    rig.calls.network.set_persona(RESIDENT, personas.PRESS_1)
    [alert_id] = rig.hand_over("fire_alarm")
    rig.alerts.process_due()
    rig.settle()
    texts = len(rig.texts_to_manager())
    rig.clock.advance(timedelta(minutes=2))  # cleared, then alarms again
    assert rig.hand_over("fire_alarm") == [alert_id]
    assert rig.alerts_rows() == [(alert_id, "fire_alarm", "escalated", TOP_LEVEL)]
    assert any("다시 울림" in r for _, _, r in rig.events(alert_id))
    assert len(rig.texts_to_manager()) == texts + 1 and "다시 울림" in rig.texts_to_manager()[-1]


def test_a_line_help_request_on_a_taken_button_alert_escalates_it_again(rig: Rig) -> None:
    rig.calls.network.pause_lines()
    [alert_id] = rig.hand_over("help_button")
    rig.alerts.process_due()
    rig.alerts.acknowledge(alert_id, rig.manager_id, DONG)
    rig.clock.advance(timedelta(minutes=5))
    assert rig.hand_over("help_request") == [alert_id]
    assert rig.alerts_rows() == [(alert_id, "help_button", "escalated", TOP_LEVEL)]
    rig.calls.network.resume_lines()


def test_a_line_help_request_and_a_press_at_once_are_one_alert(
    rig: Rig, monkeypatch: pytest.MonkeyPatch
) -> None:
    looked = SafetyAlerts._joinable
    both = threading.Barrier(2, timeout=3)

    def look_together(self: SafetyAlerts, *args: Any) -> Any:
        """Both hand-overs look for a partner before either opens (the race, made certain)."""
        found = looked(self, *args)
        with contextlib.suppress(threading.BrokenBarrierError):  # the other waits for its lock
            both.wait()
        return found

    monkeypatch.setattr(SafetyAlerts, "_joinable", look_together)
    rig.calls.network.pause_lines()
    found = [rig.finding(kind, rig.clock.now()) for kind in ("help_button", "help_request")]
    threads = [threading.Thread(target=rig.alerts.on_findings, args=([f],)) for f in found]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert len(rig.alerts_rows()) == 1
    rig.calls.network.resume_lines()


def test_the_reconciler_leaves_a_fresh_finding_to_its_listener(rig: Rig) -> None:
    fresh = rig.finding("help_button", rig.clock.now())  # stored; the listener is on its way
    assert rig.alerts.reconcile_findings() == 0
    assert rig.alerts_rows() == []
    _age(rig, fresh.finding_id)
    assert rig.alerts.reconcile_findings() == 1  # it waited: the listener died
    [(alert_id, *_)] = rig.alerts_rows()
    assert any("누락 복구로 열림" in r for _, _, r in rig.events(alert_id))


def _age(rig: Rig, finding_id: int) -> None:
    with rig.calls.database.connection() as conn:
        conn.execute(
            "UPDATE anbu.findings SET stored_at = stored_at - interval '1 minute' WHERE id = %s",
            (finding_id,),
        )


@pytest.mark.parametrize("ended", [False, True], ids=["resolved", "service_ended"])
def test_access_notes_are_shown_only_on_a_live_alert(
    town: Town, database: Database, ended: bool
) -> None:
    clock = VirtualClock(OPENED_AT)
    alert_id = seed_alert(database, clock, town.resident_id, "fire_alarm")
    with database.connection() as conn:
        conn.execute(
            "UPDATE anbu.resident SET address = %s, access_notes = %s WHERE id = %s",
            ("서울 종로구 자하문로 1길 2", "현관 비밀번호 1234*", town.resident_id),
        )
    with TestClient(town.app) as client:
        login_page(client, town.username_a, PASSWORD_A)
        assert "현관 비밀번호 1234*" in client.get(f"/alerts/{alert_id}").text
        with database.connection() as conn:
            if ended:
                conn.execute("UPDATE anbu.resident SET status = 'ended' WHERE id = %s",
                             (town.resident_id,))  # fmt: skip
            else:
                conn.execute("UPDATE anbu.alerts SET state = 'resolved' WHERE id = %s",
                             (alert_id,))  # fmt: skip
        html = client.get(f"/alerts/{alert_id}").text
    assert "119에 먼저 신고하세요" in html and "현관 비밀번호" not in html


# -- second review of issue 20: a press after a cancel wins; a flapping alarm pages once ------------


def test_a_cancel_handed_over_after_a_later_press_is_refused(rig: Rig) -> None:
    # press, press again 25 s later, and the cancel pressed between them handed over last (the
    # hand-over of two ingest workers, or critical first): the press after the cancel wins
    rig.calls.network.pause_lines()
    pressed = rig.clock.now()
    [alert_id] = rig.hand_over("help_button", pressed)
    rig.alerts.process_due()
    rig.clock.advance(timedelta(seconds=30))
    assert rig.hand_over("help_button", pressed + timedelta(seconds=25)) == [alert_id]
    assert _cancel(rig, pressed + timedelta(seconds=10)) == [alert_id]
    _refused(rig, alert_id, "취소 뒤에 응급호출이 다시 눌려")
    rig.calls.network.resume_lines()


def test_a_flapping_fire_alarm_pages_again_at_most_once_in_ten_minutes(rig: Rig) -> None:
    rig.calls.network.pause_lines()
    [alert_id] = rig.hand_over("fire_alarm")
    rig.alerts.process_due()
    rig.alerts.acknowledge(alert_id, rig.manager_id, DONG)
    texts = len(rig.texts_to_manager())
    rig.clock.advance(timedelta(minutes=1))
    assert rig.hand_over("fire_alarm") == [alert_id]  # alarmed again: the top is paged
    assert rig.alerts_rows() == [(alert_id, "fire_alarm", "escalated", TOP_LEVEL)]
    paged = len(rig.texts_to_manager())
    assert paged > texts
    rig.alerts.acknowledge(alert_id, rig.manager_id, DONG)
    for _ in range(5):  # clear/alarm every 31 s: lines on the timeline, nobody paged
        rig.clock.advance(timedelta(seconds=31))
        assert rig.hand_over("fire_alarm") == [alert_id]
        assert rig.alerts_rows()[0][2] == "acknowledged"
    assert len(rig.texts_to_manager()) == paged
    noted = [r for _, _, r in rig.events(alert_id) if "기록만" in r]
    assert len(noted) == 5 and "10분" in noted[0]
    rig.clock.advance(timedelta(minutes=10))  # ten minutes on, a new alarm is paged again
    assert rig.hand_over("fire_alarm") == [alert_id]
    assert rig.alerts_rows() == [(alert_id, "fire_alarm", "escalated", TOP_LEVEL)]
    assert len(rig.texts_to_manager()) > paged
    rig.calls.network.resume_lines()


def test_a_press_after_a_cancel_escalates_even_just_after_a_page_again(rig: Rig) -> None:
    rig.calls.network.pause_lines()
    pressed = rig.clock.now()
    [alert_id] = rig.hand_over("help_button", pressed)
    rig.alerts.process_due()
    rig.clock.advance(timedelta(seconds=20))
    assert rig.hand_over("help_button", pressed + timedelta(seconds=20)) == [alert_id]  # paged
    rig.clock.advance(timedelta(seconds=20))
    assert _cancel(rig, pressed + timedelta(seconds=40)) == [alert_id]
    assert rig.alerts_rows()[0][2] == "calling"
    rig.clock.advance(timedelta(seconds=20))
    assert rig.hand_over("help_button", pressed + timedelta(seconds=60)) == [alert_id]
    assert rig.alerts_rows() == [(alert_id, "help_button", "escalated", TOP_LEVEL)]
    assert "다시 눌림" in rig.texts_to_manager()[-1]
    rig.calls.network.resume_lines()
