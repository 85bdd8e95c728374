"""A care manager's voice call on a critical alert is placed after the alert's step commits,
never inside it: the step writes the call's intent (a 'voice' notification under the key alert,
care manager, channel, level, round) and the outbox places it. A phone API that stalls on that
call holds neither the alert's row nor a transaction, so another worker acknowledges the alert
meanwhile; a step rolled back rings nobody; a worker killed between the commit and the call
places it once when the next one starts, and a call whose result was never recorded is not
placed twice.

Real PostgreSQL, the real twilio client and the local phone network throughout.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import psycopg
import pytest
from psycopg.rows import dict_row

import registry
from alerts.outbox import SENDING_LEASE, SmsOutbox
from alerts.policy import TOP_LEVEL, EscalationPolicy
from alerts.service import AlertService
from core.clock import VirtualClock
from core.domain import AlertState
from simulators.phone import REPLY_TIMEOUT
from tests.calls_support import CallsRig, calls_rig

DONG = "1111051500"
RESIDENT = "+821055504444"
MANAGER = "+821099990071"
MONDAY_10 = datetime(2026, 3, 2, 1, 0, tzinfo=UTC)  # Monday 10:00 Asia/Seoul
STALL_S = 5.0  # the REST client's read timeout: how long the stalled call holds its worker


class WorkerDied(BaseException):
    """The process ends here: nothing in anbu catches it, as nothing survives a kill -9."""


@dataclass
class Rig:
    calls: CallsRig
    alerts: AlertService
    clock: VirtualClock
    manager_id: int
    resident_id: int

    def query(self, sql: str, *args: Any) -> list[tuple[Any, ...]]:
        return self.calls.query(sql, *args)

    def critical_alert(self) -> int:
        """A resident's help request: due now, straight to the top of the ladder, rung."""
        with self.calls.database.connection() as conn:
            row = conn.execute(
                """INSERT INTO anbu.alerts (resident_id, kind, severity, state, opened_at,
                       updated_at, next_action_at)
                   VALUES (%s, 'help_request', 'critical', 'open', %s, %s, %s) RETURNING id""",
                (self.resident_id, *[self.clock.now()] * 3),
            ).fetchone()
            assert row is not None
            return int(row[0])

    def rung(self) -> list[str]:
        return [c.to for c in self.calls.network.calls if c.to == MANAGER]

    def manager_calls(self, alert_id: int) -> list[tuple[Any, ...]]:
        return self.query(
            """SELECT id, idempotency_key FROM anbu.calls
               WHERE alert_id = %s AND purpose = 'manager_alert' ORDER BY id""",
            alert_id,
        )

    def voice(self, alert_id: int) -> list[tuple[Any, ...]]:
        return self.query(
            """SELECT level, status, attempts, external_id FROM anbu.notifications
               WHERE alert_id = %s AND channel = 'voice' ORDER BY id""",
            alert_id,
        )


@pytest.fixture
def rig(db_url: str) -> Iterator[Rig]:
    clock = VirtualClock(MONDAY_10)
    with calls_rig(db_url, clock=clock, twilio_timeout_s=STALL_S) as calls:
        with calls.database.connection() as conn:
            registry.add_dong(conn, DONG, "청운효자동", "종로구")
            manager = registry.add_care_manager(conn, "m1", DONG, "김담당", MANAGER, "pw")
            resident = registry.add_resident(conn, "home-voice", DONG, "오순자", RESIDENT)
        alerts = AlertService(
            calls.database, calls.service, EscalationPolicy(), clock, "http://dash.test"
        )
        yield Rig(calls, alerts, clock, manager, resident)


def _blocked_or_done(db_url: str, worker: threading.Thread) -> str:
    """Wait until the worker ends ('done') or a session of this database waits on a lock."""
    deadline = time.monotonic() + 30
    while worker.is_alive():
        with psycopg.connect(db_url, autocommit=True) as conn:
            [(waiting,)] = conn.execute(
                """SELECT count(*) FROM pg_stat_activity
                   WHERE datname = current_database() AND wait_event_type = 'Lock'"""
            ).fetchall()
        if waiting:
            return "blocked"
        assert time.monotonic() < deadline, "the worker neither ended nor waited on a lock"
        worker.join(0.05)
    return "done"


def test_a_stalled_manager_call_does_not_keep_the_alert_from_another_worker(
    rig: Rig, db_url: str
) -> None:
    alert_id = rig.critical_alert()
    rig.calls.network.lose_next_reply(REPLY_TIMEOUT)  # the call is placed; the reply never comes
    results: dict[str, Any] = {}

    def run(name: str, job: Any) -> threading.Thread:
        def target() -> None:
            try:
                results[name] = job()
            except BaseException as exc:  # reported below: a thread's crash must fail the test
                results[name + "_error"] = exc

        thread = threading.Thread(target=target, name=name)
        thread.start()
        return thread

    due = run("due", rig.alerts.process_due)
    try:
        rig.calls.wait_until("the manager's phone to be dialled", lambda: rig.rung() == [MANAGER])
        assert due.is_alive()  # its worker is still waiting for the phone API
        with psycopg.connect(db_url, autocommit=True) as conn:
            [(open_tx,)] = conn.execute(
                """SELECT count(*) FROM pg_stat_activity
                   WHERE datname = current_database()
                     AND state IN ('idle in transaction', 'idle in transaction (aborted)')"""
            ).fetchall()
        assert open_tx == 0  # no transaction is held open while the phone API stalls

        # another worker, a care manager pressing "확인" on the dashboard
        ack = run("ack", lambda: rig.alerts.acknowledge(alert_id, rig.manager_id, DONG, "확인"))
        assert _blocked_or_done(db_url, ack) == "done", "the acknowledgement waited for the call"
        assert due.is_alive(), "the phone API stopped stalling before the check was made"
        assert "ack_error" not in results, results
    finally:
        rig.calls.network.release_replies()
        due.join(STALL_S + 30)
    assert not due.is_alive() and "due_error" not in results, results
    assert results["due"] == 1
    [(state,)] = rig.query("SELECT state FROM anbu.alerts WHERE id = %s", alert_id)
    assert state == "acknowledged"
    [(call_id, key)] = rig.manager_calls(alert_id)
    assert key == f"manager:{alert_id}:{rig.manager_id}:step:{TOP_LEVEL}"
    assert rig.voice(alert_id) == [(TOP_LEVEL, "sent", 1, str(call_id))]


def test_a_rolled_back_step_rings_nobody(rig: Rig) -> None:
    alert_id = rig.critical_alert()
    died = pytest.raises(RuntimeError, match="died before commit")
    with died, rig.calls.database.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
        a = cur.execute(
            """SELECT a.id, a.severity, a.state, a.awaiting_call, a.escalation_level,
                      r.dong_code, r.home
               FROM anbu.alerts a JOIN anbu.resident r ON r.id = a.resident_id
               WHERE a.id = %s FOR NO KEY UPDATE OF a""",
            (alert_id,),
        ).fetchone()
        assert a is not None
        rig.alerts.escalation.escalate(conn, a, AlertState.OPEN, AlertState.ESCALATED,
                                       rig.clock.now(), level=TOP_LEVEL, reason="도움 요청")  # fmt: skip
        raise RuntimeError("the pass died before commit")
    assert rig.alerts.outbox.send_due().sent == 0
    assert rig.manager_calls(alert_id) == []
    assert rig.rung() == []


def test_a_worker_killed_between_commit_and_call_places_it_once_on_restart(
    rig: Rig, monkeypatch: pytest.MonkeyPatch
) -> None:
    alert_id = rig.critical_alert()

    def killed(_alert_id: int) -> None:
        raise WorkerDied("killed after the step committed, before anything was sent")

    monkeypatch.setattr(rig.alerts, "_send_told", killed)
    with pytest.raises(WorkerDied, match="before anything was sent"):
        rig.alerts.process_due()
    [(state, level)] = rig.query(
        "SELECT state, escalation_level FROM anbu.alerts WHERE id = %s", alert_id
    )
    assert (state, level) == ("escalated", TOP_LEVEL)  # the step committed
    assert rig.voice(alert_id) == [(TOP_LEVEL, "pending", 0, None)]  # the call's intent
    assert rig.manager_calls(alert_id) == [] and rig.rung() == []

    # the next worker starts: its outbox job places the call
    restarted = SmsOutbox(rig.calls.database, rig.calls.service, rig.clock)
    done = restarted.send_due()
    assert (done.sent, done.failed, done.retrying) == (2, 0, 0)  # the SMS and the call
    [(call_id, _)] = rig.manager_calls(alert_id)
    assert rig.voice(alert_id) == [(TOP_LEVEL, "sent", 1, str(call_id))]
    assert rig.calls.network.wait_idle(20)
    assert rig.rung() == [MANAGER]
    assert restarted.send_due().sent == 0  # nothing twice
    assert rig.rung() == [MANAGER]


def test_a_call_whose_result_was_never_recorded_is_not_placed_twice(
    rig: Rig, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The worker died after placing the call but before recording it: after the lease the
    outbox tries again, finds the call queued under its key and rings nobody a second time."""
    alert_id = rig.critical_alert()
    outbox = rig.alerts.outbox
    real_settle = outbox._settle

    def settle(c: Any, r: Any) -> None:
        if c.channel == "voice":
            raise WorkerDied("killed after the call, before its result was recorded")
        real_settle(c, r)

    monkeypatch.setattr(outbox, "_settle", settle)
    with pytest.raises(WorkerDied, match="before its result was recorded"):
        rig.alerts.process_due()
    monkeypatch.setattr(outbox, "_settle", real_settle)
    assert rig.voice(alert_id) == [(TOP_LEVEL, "sending", 1, None)]
    assert rig.calls.network.wait_idle(20)
    assert rig.rung() == [MANAGER]

    rig.clock.advance(SENDING_LEASE)
    done = outbox.send_due()
    assert (done.reclaimed, done.sent) == (1, 1)
    [(call_id, _)] = rig.manager_calls(alert_id)
    assert rig.voice(alert_id) == [(TOP_LEVEL, "sent", 2, str(call_id))]
    assert rig.calls.network.wait_idle(20)
    assert rig.rung() == [MANAGER]  # once
