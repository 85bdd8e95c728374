"""Alert check-in calls with the richer outcomes: emergency climbs to the top of the ladder at
once, unwell reaches the dong care manager, unclear is retried once then unreached."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import psycopg
import pytest

import registry
from alerts.policy import TOP_LEVEL, EscalationPolicy
from alerts.service import AlertService
from core.clock import VirtualClock
from simulators import personas
from tests.calls_support import CallsRig, calls_rig

DONG = "1111051500"
PHONE = "+821055503333"
NOON = datetime(2026, 3, 2, 3, 0, tzinfo=UTC)  # 12:00 in Seoul


def _run(rig: CallsRig, alerts: AlertService) -> None:
    alerts.process_due()
    assert rig.network.wait_idle(20)
    alerts.process_due()


@pytest.mark.parametrize(
    ("persona", "state", "level", "calls"),
    [
        ("says_emergency", "escalated", TOP_LEVEL, 1),
        ("says_unwell", "escalated", 0, 1),
        ("says_later", "calling", 0, 1),  # retried in ten minutes
        ("press_1", "resolved", 0, 1),
    ],
)
def test_outcome_decides_the_alert(
    db_url: str, persona: str, state: str, level: int, calls: int
) -> None:
    with psycopg.connect(db_url) as conn:
        registry.add_dong(conn, DONG, "청운효자동", "종로구")
        rid = registry.add_resident(conn, "h-alert", DONG, "정복순", PHONE)
        registry.add_care_manager(conn, "cm-x", DONG, "한담당", "+821099990003", "pw")
        conn.execute(
            """INSERT INTO anbu.alerts (resident_id, kind, severity, state, opened_at, updated_at,
                   next_action_at) VALUES (%s, 'inactivity', 'warning', 'open', %s, %s, %s)""",
            (rid, NOON, NOON, NOON),
        )
    clock = VirtualClock(NOON)
    with calls_rig(db_url, clock=clock) as rig:
        rig.network.set_persona(PHONE, personas.SCRIPTED[persona])
        alerts = AlertService(rig.database, rig.service, EscalationPolicy(), clock,
                              rig.settings.public_base_url)  # fmt: skip
        _run(rig, alerts)
        assert rig.query("SELECT state, escalation_level FROM anbu.alerts") == [(state, level)]
        assert len(rig.network.calls) == calls


def test_unclear_is_retried_once_then_escalated(db_url: str) -> None:
    with psycopg.connect(db_url) as conn:
        registry.add_dong(conn, DONG, "청운효자동", "종로구")
        rid = registry.add_resident(conn, "h-alert", DONG, "정복순", PHONE)
        conn.execute(
            """INSERT INTO anbu.alerts (resident_id, kind, severity, state, opened_at, updated_at,
                   next_action_at) VALUES (%s, 'inactivity', 'warning', 'open', %s, %s, %s)""",
            (rid, NOON, NOON, NOON),
        )
    clock = VirtualClock(NOON)
    with calls_rig(db_url, clock=clock) as rig:
        rig.network.set_persona(PHONE, personas.SCRIPTED["mumbles"])
        alerts = AlertService(rig.database, rig.service, EscalationPolicy(call_retries=2), clock,
                              rig.settings.public_base_url)  # fmt: skip
        _run(rig, alerts)
        assert rig.query("SELECT state FROM anbu.alerts") == [("calling",)]
        clock.advance(timedelta(minutes=10))
        _run(rig, alerts)
        assert rig.query("SELECT state FROM anbu.alerts") == [("escalated",)]
        assert len(rig.network.calls) == 2  # not three: unclear has one retry
