"""A dong with no active care manager: an alert there still reaches a person. The step's roles
are looked for in the dong, then the dong's own supervisors and admins, then its district's; each
fallback is written to the alert's audit, and an alert nobody can be told about says so there
too. Real PostgreSQL, the real twilio client and the local phone network."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest

import registry
from alerts.policy import EscalationPolicy
from alerts.service import AlertService
from core.clock import VirtualClock
from tests.calls_support import CallsRig, calls_rig

MONDAY_10 = datetime(2026, 3, 2, 1, 0, tzinfo=UTC)  # Monday 10:00 Asia/Seoul
EMPTY, NEIGHBOUR, ELSEWHERE = "1111051500", "1111053000", "1114055000"
RESIDENT = "+821055507777"
LEFT_MANAGER = "+821099990071"  # the dong's manager, no longer active
DISTRICT_SUPERVISOR = "+821099990072"  # supervisor of the neighbouring dong, same district
OTHER_DISTRICT = "+821099990073"  # supervisor in another district: never told


@dataclass
class Rig:
    calls: CallsRig
    alerts: AlertService
    clock: VirtualClock
    resident_id: int

    def query(self, sql: str, *args: Any) -> list[tuple[Any, ...]]:
        return self.calls.query(sql, *args)

    def help_alert(self) -> int:
        """An open help request: the care managers are told at its next step."""
        [(alert_id,)] = self.query(
            """INSERT INTO anbu.alerts (resident_id, kind, severity, state, opened_at,
                   updated_at, next_action_at)
               VALUES (%s, 'checkin_help', 'warning', 'open', %s, %s, %s) RETURNING id""",
            self.resident_id,
            *[self.clock.now()] * 3,
        )
        return int(alert_id)

    def told(self, alert_id: int) -> list[tuple[str, int, str]]:
        rows = self.query(
            """SELECT m.phone, n.level, n.channel FROM anbu.notifications n
               JOIN anbu.care_manager m ON m.id = n.care_manager_id
               WHERE n.alert_id = %s ORDER BY n.level, m.phone, n.channel""",
            alert_id,
        )
        return [(str(p), int(level), str(ch)) for p, level, ch in rows]

    def reasons(self, alert_id: int) -> list[str]:
        rows = self.query(
            "SELECT reason FROM anbu.alert_events WHERE alert_id = %s ORDER BY id", alert_id
        )
        return [str(r[0]) for r in rows]


@pytest.fixture
def rig(db_url: str, unique: str) -> Iterator[Rig]:
    clock = VirtualClock(MONDAY_10)
    with calls_rig(db_url, clock=clock) as calls:
        with calls.database.connection() as conn:
            registry.add_dong(conn, EMPTY, "청운효자동", "종로구")
            registry.add_dong(conn, NEIGHBOUR, "사직동", "종로구")
            registry.add_dong(conn, ELSEWHERE, "소공동", "중구")
            left = registry.add_care_manager(
                conn, f"left-{unique}", EMPTY, "김담당", LEFT_MANAGER, "pw"
            )
            conn.execute("UPDATE anbu.care_manager SET active = false WHERE id = %s", (left,))
            registry.add_care_manager(conn, f"sup-{unique}", NEIGHBOUR, "박주무관",
                                      DISTRICT_SUPERVISOR, "pw", role="supervisor")  # fmt: skip
            registry.add_care_manager(conn, f"far-{unique}", ELSEWHERE, "최주무관",
                                      OTHER_DISTRICT, "pw", role="supervisor")  # fmt: skip
            resident = registry.add_resident(conn, f"home-{unique}", EMPTY, "이순자", RESIDENT)
        alerts = AlertService(calls.database, calls.service, EscalationPolicy(), clock, "http://d")
        yield Rig(calls, alerts, clock, resident)


def test_a_dong_without_an_active_manager_tells_its_districts_supervisor(rig: Rig) -> None:
    alert_id = rig.help_alert()
    assert rig.alerts.process_due() == 1
    assert rig.told(alert_id) == [
        (DISTRICT_SUPERVISOR, 0, "dashboard"),
        (DISTRICT_SUPERVISOR, 0, "sms"),
    ]
    assert [m.to for m in rig.calls.network.messages] == [DISTRICT_SUPERVISOR]
    reasons = rig.reasons(alert_id)
    assert any("같은 구의 구 통합돌봄 담당" in r for r in reasons), reasons
    # the left manager is not told, and no reason names a person or a number
    assert all(LEFT_MANAGER[3:] not in r and "김담당" not in r for r in reasons)


def test_the_dongs_own_supervisor_comes_before_the_district(rig: Rig, unique: str) -> None:
    with rig.calls.database.connection() as conn:
        registry.add_care_manager(conn, f"own-{unique}", EMPTY, "정주무관", "+821099990074",
                                  "pw", role="supervisor")  # fmt: skip
    alert_id = rig.help_alert()
    assert rig.alerts.process_due() == 1
    assert {p for p, _, _ in rig.told(alert_id)} == {"+821099990074"}
    assert any("이 동에 지정된 담당자가 없어 구 통합돌봄" in r for r in rig.reasons(alert_id))


def test_an_alert_nobody_can_be_told_about_says_so_in_its_audit(rig: Rig) -> None:
    rig.query("UPDATE anbu.care_manager SET active = false RETURNING id")
    alert_id = rig.help_alert()
    assert rig.alerts.process_due() == 1
    assert rig.told(alert_id) == []
    assert rig.calls.network.messages == []
    reasons = rig.reasons(alert_id)
    assert any("아무에게도 알리지 못했습니다" in r for r in reasons), reasons
    [(state,)] = rig.query("SELECT state FROM anbu.alerts WHERE id = %s", alert_id)
    assert state == "escalated"  # on the dashboard as 담당자 확인 필요, the ladder goes on
