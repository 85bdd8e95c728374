"""Once a care manager has taken or closed an alert, nothing queued for it rings or texts: the
acknowledgement (or resolution) cancels the alert's calls still waiting in the send queue and
its SMS still pending, in its own transaction, and the send queue's claim skips (and cancels)
a call whose alert was taken by any other path. A slow token bucket never holds the timer pass:
the check-in call a step queued is left to the drainer when no token is free.

Real PostgreSQL, the real twilio client and the local phone network throughout.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest

import registry
from alerts.policy import EscalationPolicy
from alerts.service import AlertService
from core.clock import VirtualClock
from core.domain import AlertState
from tests.calls_support import CallsRig, calls_rig

DONG = "1111051500"
RESIDENT = "+821055507777"
MANAGER = "+821099990081"
SUPERVISOR = "+821099990082"
MONDAY_10 = datetime(2026, 3, 2, 1, 0, tzinfo=UTC)  # Monday 10:00 Asia/Seoul, no quiet hours


@dataclass
class Rig:
    calls: CallsRig
    alerts: AlertService
    clock: VirtualClock
    resident_id: int
    manager_id: int
    supervisor_id: int

    def query(self, sql: str, *args: Any) -> list[tuple[Any, ...]]:
        return self.calls.query(sql, *args)

    def execute(self, sql: str, *args: Any) -> None:
        with self.calls.database.connection() as conn:
            conn.execute(sql, args)

    def alert(self, kind: str = "not_up") -> int:
        """Due now: a not-up alert starts with a call to the resident."""
        with self.calls.database.connection() as conn:
            row = conn.execute(
                """INSERT INTO anbu.alerts (resident_id, kind, severity, state, opened_at,
                       updated_at, next_action_at)
                   VALUES (%s, %s, 'warning', 'open', %s, %s, %s) RETURNING id""",
                (self.resident_id, kind, *[self.clock.now()] * 3),
            ).fetchone()
            assert row is not None
            return int(row[0])

    def no_tokens(self) -> None:
        """The account's calls-per-second budget is spent: queued calls stay waiting."""
        self.execute(
            """INSERT INTO anbu.call_rate (account, tokens, refilled_at)
               VALUES (%s, 0, clock_timestamp())
               ON CONFLICT (account) DO UPDATE SET tokens = 0, refilled_at = clock_timestamp()""",
            self.calls.settings.twilio_account_sid,
        )

    def tokens(self) -> None:
        self.execute(
            "UPDATE anbu.call_rate SET tokens = 50, refilled_at = clock_timestamp()",
        )

    def rung(self) -> list[str]:
        return [c.to for c in self.calls.network.calls]

    def calls_of(self, alert_id: int) -> list[tuple[Any, ...]]:
        return self.query(
            "SELECT purpose, dial_state, status FROM anbu.calls WHERE alert_id = %s ORDER BY id",
            alert_id,
        )


def _rig(db_url: str, **overrides: Any) -> Iterator[Rig]:
    clock = VirtualClock(MONDAY_10)
    with calls_rig(db_url, clock=clock, **overrides) as calls:
        with calls.database.connection() as conn:
            registry.add_dong(conn, DONG, "청운효자동", "종로구")
            manager = registry.add_care_manager(conn, "m1", DONG, "김담당", MANAGER, "pw")
            supervisor = registry.add_care_manager(
                conn, "s1", DONG, "박주무관", SUPERVISOR, "pw", role="supervisor"
            )
            resident = registry.add_resident(conn, "home-ack", DONG, "이순자", RESIDENT)
        alerts = AlertService(calls.database, calls.service, EscalationPolicy(), clock, "http://d")
        yield Rig(calls, alerts, clock, resident, manager, supervisor)


@pytest.fixture
def rig(db_url: str) -> Iterator[Rig]:
    yield from _rig(db_url, call_cps=0.001, call_inline_wait_s=0.0)


def _queued_check_in(rig: Rig) -> int:
    """An alert whose step queued the resident's check-in call, still waiting for a token."""
    rig.no_tokens()
    alert_id = rig.alert()
    assert rig.alerts.process_due() == 1
    assert rig.calls_of(alert_id) == [("check_in", "waiting", "queued")]
    return alert_id


@pytest.mark.parametrize("how", ["acknowledge", "resolve"])
def test_a_queued_check_in_never_rings_once_the_alert_is_taken(rig: Rig, how: str) -> None:
    alert_id = _queued_check_in(rig)
    if how == "acknowledge":
        rig.alerts.acknowledge(alert_id, rig.manager_id, DONG)
    else:  # taken by an old worker that left the call queued; the resolution cancels it
        rig.execute("UPDATE anbu.alerts SET state = 'acknowledged' WHERE id = %s", alert_id)
        rig.alerts.resolve(alert_id, rig.manager_id, DONG, "false_alarm")
    assert rig.calls_of(alert_id) == [("check_in", "dialled", "canceled")]
    [(reason,)] = rig.query(
        """SELECT e.params->>'reason' FROM anbu.call_events e JOIN anbu.calls c
            ON c.id = e.call_id WHERE c.alert_id = %s AND e.status = 'canceled'""",
        alert_id,
    )
    assert reason == ("acknowledged" if how == "acknowledge" else "resolved")
    rig.tokens()
    rig.calls.service.dialler.dial_waiting()
    assert rig.rung() == []


def test_a_care_managers_queued_voice_call_is_cancelled_by_the_acknowledgement(rig: Rig) -> None:
    alert_id = rig.alert("checkin_help")
    rig.no_tokens()
    with rig.calls.database.connection() as conn:
        conn.execute(
            """INSERT INTO anbu.calls (idempotency_key, resident_id, alert_id, purpose, status,
                   created_at, updated_at, dial_state, priority, care_manager_id)
               VALUES ('mgr-voice-1', %s, %s, 'manager_alert', 'queued', %s, %s, 'waiting', 0,
                       %s)""",
            (rig.resident_id, alert_id, rig.clock.now(), rig.clock.now(), rig.manager_id),
        )
    rig.alerts.acknowledge(alert_id, rig.supervisor_id, DONG)
    assert rig.calls_of(alert_id) == [("manager_alert", "dialled", "canceled")]
    rig.tokens()
    rig.calls.service.dialler.dial_waiting()
    assert rig.rung() == []


@pytest.mark.parametrize("state", ["acknowledged", "resolved"])
def test_the_claim_skips_and_cancels_a_call_whose_alert_was_taken_elsewhere(
    rig: Rig, state: str
) -> None:
    alert_id = _queued_check_in(rig)
    # taken by a path that does not know about the queue (an old worker, a plain UPDATE)
    rig.execute("UPDATE anbu.alerts SET state = %s WHERE id = %s", state, alert_id)
    with rig.calls.database.connection() as conn:  # a routine check-in of the same resident
        conn.execute(
            """INSERT INTO anbu.calls (idempotency_key, resident_id, purpose, status,
                   created_at, updated_at, dial_state, priority)
               VALUES ('routine-ack-1', %s, 'routine', 'queued', %s, %s, 'waiting', 2)""",
            (rig.resident_id, rig.clock.now(), rig.clock.now()),
        )
    rig.tokens()
    rig.calls.service.dialler.dial_waiting()
    assert rig.calls_of(alert_id) == [("check_in", "dialled", "canceled")]
    assert rig.rung() == [RESIDENT]  # the routine call only
    [(routine,)] = rig.query("SELECT status FROM anbu.calls WHERE purpose = 'routine'")
    assert routine != "canceled"


def test_pending_sms_of_a_taken_alert_are_cancelled_not_left_pending(rig: Rig) -> None:
    alert_id = rig.alert("checkin_help")
    with rig.calls.database.connection() as conn:
        row = conn.execute(
            "SELECT a.*, r.dong_code, r.home FROM anbu.alerts a JOIN anbu.resident r"
            " ON r.id = a.resident_id WHERE a.id = %s FOR NO KEY UPDATE OF a",
            (alert_id,),
        )
        names = [d.name for d in row.description or ()]
        found = row.fetchone()
        assert found is not None
        a = dict(zip(names, found, strict=True))
        rig.alerts.escalation.escalate(conn, a, AlertState.OPEN, AlertState.ESCALATED,
                                       rig.clock.now(), level=0, reason="도움 요청")  # fmt: skip
    pending = rig.query(
        "SELECT count(*) FROM anbu.notifications WHERE alert_id = %s AND status = 'pending'"
        " AND channel IN ('sms', 'voice')",
        alert_id,
    )
    assert pending[0][0] > 0
    rig.alerts.acknowledge(alert_id, rig.manager_id, DONG)
    statuses = rig.query(
        "SELECT DISTINCT status FROM anbu.notifications WHERE alert_id = %s"
        " AND channel IN ('sms', 'voice')",
        alert_id,
    )
    assert statuses == [("cancelled",)]


def test_a_slow_token_bucket_does_not_hold_the_timer_pass(db_url: str) -> None:
    # a token every 2 s and up to 5 s of inline waiting: each alert's step used to wait ~2 s
    for rig in _rig(db_url, call_cps=0.5, call_burst_s=1.0, call_inline_wait_s=5.0):
        rig.no_tokens()
        alerts = [rig.alert("not_up"), rig.alert("no_activity")]
        started = time.monotonic()
        done = rig.alerts.process_due()
        elapsed = time.monotonic() - started
        assert elapsed < 1.5, f"the timer pass waited {elapsed:.1f} s for tokens"
        assert done == 2
        for alert_id in alerts:  # queued for the drainer, not lost
            assert rig.calls_of(alert_id) == [("check_in", "waiting", "queued")]
