"""A care manager sets a resident away or in hospital: on real PostgreSQL and the local phone
network, the open alerts the absence explains close with the reason recorded, their calls still
waiting in the send queue are never dialled, a help request stays open, back to active reopens
nothing, another dong's care manager changes nothing, and a failed transaction leaves no half
state."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient

import registry
from alerts import absence
from alerts.models import RESOLUTION_OUTCOMES
from alerts.policy import EscalationPolicy
from alerts.service import AlertService
from core.clock import VirtualClock
from core.config import Settings
from core.db import Database
from dashboards.app import create_app
from detectors.sweep import SUPPRESSING_STATUSES
from simulators import personas
from tests.calls_support import ACCOUNT_SID, CallsRig, calls_rig
from tests.integration.dashboard_support import bearer, seed_alert

DONG_A, DONG_B = "1111051500", "1111053000"
PASSWORD_A, PASSWORD_B = "청운-pass-A1", "사직-pass-B2"
NAME, PHONE = "김순자", "+821055507777"
NOON = datetime(2026, 11, 22, 3, 0, tzinfo=UTC)  # 12:00 in Seoul
UNTIL = "2026-11-29T18:00:00+09:00"
UNTIL_WORDS = "2026-11-29 18:00"


@dataclass
class Rig:
    calls: CallsRig
    alerts: AlertService
    clock: VirtualClock
    client: TestClient
    resident_id: int
    manager_a: int
    manager_b: int
    username_a: str
    username_b: str

    def query(self, sql: str, *args: Any) -> list[tuple[Any, ...]]:
        return self.calls.query(sql, *args)

    def alert(self, alert_id: int) -> tuple[Any, ...]:
        (row,) = self.query(
            "SELECT state, outcome, resolved_by, next_action_at FROM anbu.alerts WHERE id = %s",
            alert_id,
        )
        return row

    def status(self, username: str, password: str, body: dict[str, Any]) -> Any:
        headers = bearer(self.client, username, password)
        url = f"/api/v1/residents/{self.resident_id}/status"
        return self.client.post(url, json=body, headers=headers)


@pytest.fixture
def rig(db_url: str, unique: str) -> Iterator[Rig]:
    """Dongs A and B with a care manager each, a resident in A; calls queue behind an empty
    calls-per-second budget, so an alert's check-in call waits in the send queue."""
    clock = VirtualClock(NOON)
    with calls_rig(db_url, clock=clock, call_cps=0.001, call_inline_wait_s=0.0) as calls:
        with calls.database.connection() as conn:
            registry.add_dong(conn, DONG_A, "청운효자동", "종로구")
            registry.add_dong(conn, DONG_B, "사직동", "종로구")
            manager_a = registry.add_care_manager(
                conn, f"kim{unique}", DONG_A, "김복지", "+821000000001", PASSWORD_A
            )
            manager_b = registry.add_care_manager(
                conn, f"lee{unique}", DONG_B, "이복지", "+821000000002", PASSWORD_B
            )
            resident = registry.add_resident(conn, f"home-{unique}", DONG_A, NAME, PHONE)
            conn.execute(  # the budget is spent: calls wait in the queue
                """INSERT INTO anbu.call_rate (account, tokens, refilled_at)
                   VALUES (%s, 0, clock_timestamp())""",
                (ACCOUNT_SID,),
            )
        calls.network.set_persona(PHONE, personas.SCRIPTED["press_1"])
        alerts = AlertService(
            calls.database, calls.service, EscalationPolicy(), clock, "http://dashboard.test"
        )
        settings = Settings(database_url=db_url, session_secret=f"test-secret-{unique}")
        app = create_app(calls.database, settings, alerts)
        yield Rig(
            calls, alerts, clock, TestClient(app), resident, manager_a, manager_b,
            f"kim{unique}", f"lee{unique}",
        )  # fmt: skip


def _calling_with_a_waiting_call(rig: Rig) -> tuple[int, int]:
    """An inactivity alert whose check-in call waits in the queue: (alert id, call id)."""
    alert_id = seed_alert(rig.calls.database, rig.clock, rig.resident_id, "inactivity")
    rig.alerts.process_due()
    [(state, call_id, awaiting)] = rig.query(
        "SELECT state, last_call_id, awaiting_call FROM anbu.alerts WHERE id = %s", alert_id
    )
    assert (state, awaiting) == ("calling", True)
    assert rig.query("SELECT dial_state FROM anbu.calls WHERE id = %s", call_id) == [("waiting",)]
    return alert_id, int(call_id)


def _events(rig: Rig, alert_id: int) -> list[tuple[Any, ...]]:
    return rig.query(
        """SELECT actor, from_state, to_state, reason FROM anbu.alert_events
           WHERE alert_id = %s ORDER BY id""",
        alert_id,
    )


def test_hospital_closes_the_inactivity_alert_cancels_its_call_and_keeps_the_help_request(
    rig: Rig, caplog: pytest.LogCaptureFixture
) -> None:
    inactivity, call_id = _calling_with_a_waiting_call(rig)
    help_request = seed_alert(rig.calls.database, rig.clock, rig.resident_id, "help_request")
    rig.alerts.process_due()  # the help request goes straight to the care manager
    assert rig.alert(help_request)[0] == "escalated"
    rig.clock.advance(timedelta(minutes=1))
    now = rig.clock.now()

    with caplog.at_level(logging.DEBUG):
        response = rig.status(rig.username_a, PASSWORD_A, {"status": "hospital", "until": UNTIL})
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "hospital"

    assert rig.alert(inactivity) == ("resolved", "hospitalised", rig.manager_a, None)
    [(awaiting, resolved_at)] = rig.query(
        "SELECT awaiting_call, resolved_at FROM anbu.alerts WHERE id = %s", inactivity
    )
    assert (awaiting, resolved_at) == (False, now)
    actor, from_state, to_state, reason = _events(rig, inactivity)[-1]
    assert (actor, from_state, to_state) == (f"care_manager:{rig.manager_a}", "calling", "resolved")
    assert reason == (
        f"담당자가 {UNTIL_WORDS}까지 입원으로 상태를 바꿈: 종결, 대기 중인 전화 1건 취소 / "
        f"status set to hospital by care manager until {UNTIL_WORDS} KST: closed, "
        "1 waiting call(s) cancelled"
    )
    assert NAME not in reason and PHONE not in reason

    assert rig.query(
        "SELECT status, dial_state, dialled_at, ended_at, twilio_sid FROM anbu.calls WHERE id = %s",
        call_id,
    ) == [("canceled", "dialled", None, now, None)]
    assert rig.query(
        "SELECT status, params FROM anbu.call_events WHERE call_id = %s ORDER BY id", call_id
    ) == [("queued", {}), ("canceled", {"reason": "resident_status:hospital"})]
    assert rig.query("SELECT outcome FROM anbu.calls WHERE id = %s", call_id) == [(None,)]

    # The resident asked for help: a status never closes that.
    assert rig.alert(help_request)[0] == "escalated"

    # The budget refills and the queue drains: nobody is rung for the closed alert.
    rig.query("UPDATE anbu.call_rate SET tokens = 10 RETURNING tokens")
    assert rig.calls.service.drain_queue(0.5) == 0
    assert rig.calls.network.calls == []
    rig.clock.advance(timedelta(hours=2))
    rig.alerts.process_due()
    assert rig.alert(inactivity)[0] == "resolved"
    assert len(rig.query("SELECT id FROM anbu.calls WHERE alert_id = %s", inactivity)) == 1

    logged = " ".join(f"{r.getMessage()} {r.__dict__}" for r in caplog.records)
    assert "alerts stood down for an absence" in logged
    for secret in (NAME, PHONE, PHONE[3:]):
        assert secret not in logged


def test_again_closes_nothing_more_and_active_reopens_nothing(rig: Rig) -> None:
    inactivity, _ = _calling_with_a_waiting_call(rig)
    body = {"status": "away", "until": UNTIL}
    assert rig.status(rig.username_a, PASSWORD_A, body).status_code == 200
    assert rig.alert(inactivity)[:2] == ("resolved", "away")
    events = _events(rig, inactivity)
    assert events[-1][3].startswith(f"담당자가 {UNTIL_WORDS}까지 부재로 상태를 바꿈: 종결")
    assert f"status set to away by care manager until {UNTIL_WORDS} KST: closed" in events[-1][3]

    assert rig.status(rig.username_a, PASSWORD_A, body).status_code == 200  # the same again
    assert rig.status(rig.username_a, PASSWORD_A, {"status": "active"}).status_code == 200
    assert _events(rig, inactivity) == events
    assert rig.query("SELECT id, state FROM anbu.alerts ORDER BY id") == [(inactivity, "resolved")]
    assert rig.query("SELECT count(*) FROM anbu.calls") == [(1,)]


def test_another_dongs_care_manager_closes_nothing(rig: Rig) -> None:
    inactivity, call_id = _calling_with_a_waiting_call(rig)
    response = rig.status(rig.username_b, PASSWORD_B, {"status": "hospital", "until": UNTIL})
    assert response.status_code == 404
    assert rig.alert(inactivity)[0] == "calling"
    assert rig.query("SELECT dial_state, status FROM anbu.calls WHERE id = %s", call_id) == [
        ("waiting", "queued")
    ]
    assert rig.query("SELECT status FROM anbu.resident WHERE id = %s", rig.resident_id) == [
        ("active",)
    ]


def test_a_refused_status_closes_nothing(rig: Rig) -> None:
    inactivity, call_id = _calling_with_a_waiting_call(rig)
    response = rig.status(rig.username_a, PASSWORD_A, {"status": "hospital"})  # no end date
    assert response.status_code == 422
    assert rig.alert(inactivity)[0] == "calling"
    assert rig.query("SELECT dial_state FROM anbu.calls WHERE id = %s", call_id) == [("waiting",)]


def test_a_failed_transaction_leaves_no_half_state(rig: Rig) -> None:
    inactivity, call_id = _calling_with_a_waiting_call(rig)
    until = datetime.fromisoformat(UNTIL)
    with (
        pytest.raises(RuntimeError, match="dies before the commit"),
        rig.calls.database.connection() as conn,
    ):
        change = absence.set_status(
            conn, rig.resident_id, "hospital", until, rig.manager_a, now=rig.clock.now()
        )
        assert change.alerts.closed == [inactivity]
        assert change.alerts.cancelled_calls == [call_id]
        raise RuntimeError("the process dies before the commit")
    assert rig.alert(inactivity)[0] == "calling"
    assert rig.query("SELECT dial_state FROM anbu.calls WHERE id = %s", call_id) == [("waiting",)]
    assert rig.query("SELECT status FROM anbu.resident WHERE id = %s", rig.resident_id) == [
        ("active",)
    ]
    assert rig.query("SELECT count(*) FROM anbu.resident_changes") == [(0,)]


@pytest.mark.parametrize(
    ("kind", "closes"),
    [
        ("inactivity", True),
        ("not_up", True),
        ("not_back", True),
        ("bathroom_long_stay", True),
        ("night_activity", True),
        ("unknown_status", True),
        ("checkin_unreached", True),
        ("help_request", False),
        ("checkin_emergency", False),
        ("checkin_help", False),
        ("checkin_unwell", False),
        ("voice_message", False),
        ("device_offline", False),
        ("battery_low", False),
        ("gateway_offline", False),
        ("routine_change", False),
    ],
)
def test_which_kinds_an_absence_explains(rig: Rig, kind: str, closes: bool) -> None:
    database: Database = rig.calls.database
    alert_id = seed_alert(database, rig.clock, rig.resident_id, kind)
    rig.alerts.process_due()
    before = rig.alert(alert_id)[0]
    with database.connection() as conn:
        change = absence.set_status(
            conn, rig.resident_id, "away", datetime.fromisoformat(UNTIL), rig.manager_a,
            now=rig.clock.now(),
        )  # fmt: skip
    assert change.changed == ["status", "status_until"]
    assert change.alerts.closed == ([alert_id] if closes else [])
    assert rig.alert(alert_id)[0] == ("resolved" if closes else before)
    assert absence.explained_by_absence(kind) is closes


def test_every_suppressing_status_has_words_and_an_outcome() -> None:
    assert set(absence.ABSENCE_STATUSES) == set(SUPPRESSING_STATUSES)
    assert set(registry.SETTABLE_STATUSES) - {"active"} == set(SUPPRESSING_STATUSES)
    for _, _, outcome in absence.ABSENCE_STATUSES.values():
        assert outcome in RESOLUTION_OUTCOMES


def _ringing(rig: Rig) -> tuple[int, int]:
    """An inactivity alert whose check-in call a dialler has just claimed: it is ringing."""
    alert_id, call_id = _calling_with_a_waiting_call(rig)
    rig.query(
        """UPDATE anbu.calls SET dial_state = 'dialled', dialled_at = %s, claimed_at = %s
           WHERE id = %s RETURNING id""",
        rig.clock.now(), rig.clock.now(), call_id,
    )  # fmt: skip
    return alert_id, call_id


def test_a_ringing_call_is_left_to_end_then_the_alert_closes_without_a_retry(rig: Rig) -> None:
    inactivity, call_id = _ringing(rig)
    body = {"status": "hospital", "until": UNTIL}
    assert rig.status(rig.username_a, PASSWORD_A, body).status_code == 200
    assert rig.alert(inactivity)[0] == "calling"
    note = _events(rig, inactivity)[-1]
    assert note[:3] == (f"care_manager:{rig.manager_a}", "calling", "calling")
    assert "진행 중인 안부전화가 끝나면 종결" in note[3]
    assert "closes when the call in progress ends" in note[3]
    assert rig.status(rig.username_a, PASSWORD_A, body).status_code == 200
    assert _events(rig, inactivity).count(note) == 1  # noted once, however often it is set

    rig.calls.service.record_status(call_id, {"CallStatus": "no-answer"})
    rig.alerts.process_due()
    assert rig.alert(inactivity)[:3] == ("resolved", "hospitalised", None)
    actor, _, to_state, reason = _events(rig, inactivity)[-1]
    assert (actor, to_state) == ("system", "resolved")
    assert reason.startswith("안부전화 1회차: 받지 않음 — 담당자가")
    assert reason.endswith("closed after the call in progress ended")
    rig.clock.advance(timedelta(minutes=30))
    rig.alerts.process_due()
    assert rig.query("SELECT count(*) FROM anbu.calls") == [(1,)]  # no retry


def test_help_said_on_a_ringing_call_escalates_and_a_status_never_closes_it(rig: Rig) -> None:
    inactivity, call_id = _ringing(rig)
    body = {"status": "hospital", "until": UNTIL}
    assert rig.status(rig.username_a, PASSWORD_A, body).status_code == 200
    rig.calls.service.record_gather(call_id, {"Digits": "2"})  # "도움이 필요하시면 2번"
    rig.alerts.process_due()
    assert rig.alert(inactivity)[0] == "escalated"

    rig.clock.advance(timedelta(minutes=1))
    assert rig.status(rig.username_a, PASSWORD_A, body).status_code == 200  # set again
    assert rig.alert(inactivity)[0] == "escalated"
    assert "주민이 안부전화에서 도움을 요청해 열어 둠" in _events(rig, inactivity)[-1][3]
    rig.clock.advance(timedelta(minutes=31))
    rig.alerts.process_due()  # not acknowledged in time: it still climbs the ladder
    [(state, level)] = rig.query(
        "SELECT state, escalation_level FROM anbu.alerts WHERE id = %s", inactivity
    )
    assert (state, level) == ("escalated", 1)


def test_an_absence_set_behind_the_alerts_back_still_calls_nobody(rig: Rig) -> None:
    """Away set without the alerts being told (e.g. straight in the registry): the alert's next
    step closes it instead of calling."""
    alert_id = seed_alert(rig.calls.database, rig.clock, rig.resident_id, "not_up")
    with rig.calls.database.connection() as conn:
        registry.set_status(
            conn, rig.resident_id, "away", datetime.fromisoformat(UNTIL), rig.manager_a,
            now=rig.clock.now(),
        )  # fmt: skip
    rig.alerts.process_due()
    assert rig.alert(alert_id)[:3] == ("resolved", "away", None)
    assert rig.query("SELECT count(*) FROM anbu.calls") == [(0,)]
    assert _events(rig, alert_id)[-1][:3] == ("system", "open", "resolved")


def test_an_absence_set_behind_the_alerts_back_cancels_the_call_still_queued(rig: Rig) -> None:
    """Away set straight in the registry while the alert's check-in call waits for a token:
    the alert's watchdog closes the alert and takes the call out of the queue (calls/ does),
    instead of waiting for it to ring an empty home."""
    alert_id, call_id = _calling_with_a_waiting_call(rig)
    with rig.calls.database.connection() as conn:
        registry.set_status(
            conn, rig.resident_id, "away", datetime.fromisoformat(UNTIL), rig.manager_a,
            now=rig.clock.now(),
        )  # fmt: skip
    rig.clock.advance(EscalationPolicy().call_watchdog)
    rig.alerts.process_due()
    assert rig.alert(alert_id)[:3] == ("resolved", "away", None)
    actor, from_state, to_state, reason = _events(rig, alert_id)[-1]
    assert (actor, from_state, to_state) == ("system", "calling", "resolved")
    assert "1 waiting call(s) cancelled" in reason
    assert rig.query("SELECT status, outcome FROM anbu.calls WHERE id = %s", call_id) == [
        ("canceled", None)
    ]
    rig.query("UPDATE anbu.call_rate SET tokens = 10 RETURNING tokens")
    assert rig.calls.service.drain_queue(0.5) == 0
    assert rig.calls.network.calls == []


def _settings(rig: Rig, method: str, body: dict[str, Any] | None = None, user: str = "") -> Any:
    headers = bearer(rig.client, user or rig.username_a, PASSWORD_A if not user else PASSWORD_B)
    url = f"/api/v1/residents/{rig.resident_id}/settings"
    return rig.client.request(method, url, json=body, headers=headers)


def test_the_settings_resource_patches_puts_and_says_what_it_closed(rig: Rig) -> None:
    """PATCH one part and the rest stay; the answer names what changed and the alerts and calls
    an absence closed; GET gives what PUT takes, and PUT of it changes nothing."""
    inactivity, call_id = _calling_with_a_waiting_call(rig)
    help_request = seed_alert(rig.calls.database, rig.clock, rig.resident_id, "help_request")
    rig.alerts.process_due()
    quiet = {"quiet_hours": {"start": "22:00", "end": "07:00"}}
    first = _settings(rig, "PATCH", quiet)
    assert first.status_code == 200, first.text
    assert first.json()["changed"] == ["quiet_start", "quiet_end"]
    assert first.json()["closed_alerts"] == [] and rig.alert(inactivity)[0] == "calling"

    away = _settings(rig, "PATCH", {"status": {"status": "hospital", "until": UNTIL},
                                    "levels": {"watch_h_max": 6, "warning_h_max": 12,
                                               "critical_h_max": 24}})  # fmt: skip
    assert away.status_code == 200, away.text
    out = away.json()
    assert out["changed"] == ["status", "status_until", "watch_h_max", "warning_h_max",
                              "critical_h_max"]  # fmt: skip
    assert (out["closed_alerts"], out["cancelled_calls"]) == ([inactivity], [call_id])
    assert out["kept_open"] == [] and rig.alert(help_request)[0] == "escalated"
    assert rig.alert(inactivity)[:2] == ("resolved", "hospitalised")
    assert out["settings"]["quiet_hours"] == {"start": "22:00:00", "end": "07:00:00"}  # kept
    assert out["resident"]["status"] == "hospital"

    now = _settings(rig, "GET")
    assert now.status_code == 200 and now.json() == out["settings"]
    again = _settings(rig, "PUT", now.json())
    assert again.status_code == 200, again.text
    assert (again.json()["changed"], again.json()["closed_alerts"]) == ([], [])


def test_a_settings_change_breaking_one_rule_writes_none_of_it(rig: Rig) -> None:
    inactivity, _ = _calling_with_a_waiting_call(rig)
    body = {"status": {"status": "away", "until": UNTIL},
            "levels": {"watch_h_max": 24, "warning_h_max": 12, "critical_h_max": 6}}  # fmt: skip
    refused = _settings(rig, "PATCH", body)
    assert refused.status_code == 422, refused.text
    assert rig.alert(inactivity)[0] == "calling"  # the status part did not close it either
    assert rig.query(
        "SELECT status, watch_h_max FROM anbu.resident WHERE id = %s", rig.resident_id
    ) == [("active", None)]
    assert _settings(rig, "PUT", {"status": {"status": "active"}}).status_code == 422  # a part
    other = _settings(rig, "PATCH", {"quiet_hours": {"start": None, "end": None}},
                      user=rig.username_b)  # fmt: skip
    assert other.status_code == 404
