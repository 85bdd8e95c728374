"""The resident's check-in call of an alert step is dialled after the step commits, never inside
it: the step writes the call's intent (a queued row of anbu.calls under the key alert, attempt)
in the alert's transaction, and the call is dialled once that transaction has committed, by the
worker that wrote it or, when that worker died, by the send queue's drainer. A phone API that
stalls on the call holds neither the alert's row nor a transaction, so another worker
acknowledges the alert meanwhile; a step rolled back rings nobody; a worker killed between the
commit and the dial has the call placed once when the next one starts; one killed after
dialling and before recording it never has it placed twice, and the alert still reads the
call's outcome.

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
from alerts.policy import EscalationPolicy
from alerts.service import AlertService
from calls.client import make_twilio_client
from calls.service import CallService
from core.clock import VirtualClock
from core.domain import AlertState
from simulators.phone import REPLY_TIMEOUT
from tests.calls_support import CallsRig, calls_rig

DONG = "1111051500"
RESIDENT = "+821055506666"
MANAGER = "+821099990072"
MONDAY_10 = datetime(2026, 3, 2, 1, 0, tzinfo=UTC)  # Monday 10:00 Asia/Seoul, no quiet hours
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

    def not_up_alert(self) -> int:
        """The resident is not up this morning: due now, the ladder starts with a call to her."""
        with self.calls.database.connection() as conn:
            row = conn.execute(
                """INSERT INTO anbu.alerts (resident_id, kind, severity, state, opened_at,
                       updated_at, next_action_at)
                   VALUES (%s, 'not_up', 'warning', 'open', %s, %s, %s) RETURNING id""",
                (self.resident_id, *[self.clock.now()] * 3),
            ).fetchone()
            assert row is not None
            return int(row[0])

    def rung(self) -> list[str]:
        return [c.to for c in self.calls.network.calls if c.to == RESIDENT]

    def alert(self, alert_id: int) -> tuple[Any, ...]:
        [row] = self.query(
            """SELECT state, call_attempts, awaiting_call, last_call_id, outcome
               FROM anbu.alerts WHERE id = %s""",
            alert_id,
        )
        return row

    def check_ins(self, alert_id: int) -> list[tuple[Any, ...]]:
        return self.query(
            """SELECT id, idempotency_key, dial_state, twilio_sid FROM anbu.calls
               WHERE alert_id = %s AND purpose = 'check_in' ORDER BY id""",
            alert_id,
        )

    def restarted(self) -> tuple[CallService, AlertService]:
        """The next worker: its own call service and alert service over the same database."""
        settings = self.calls.settings
        client = make_twilio_client(settings, STALL_S)
        calls = CallService(self.calls.database, client, settings, self.clock)
        alerts = AlertService(
            self.calls.database, calls, EscalationPolicy(), self.clock, "http://dash.test"
        )
        return calls, alerts


@pytest.fixture
def rig(db_url: str) -> Iterator[Rig]:
    clock = VirtualClock(MONDAY_10)
    with calls_rig(db_url, clock=clock, twilio_timeout_s=STALL_S) as calls:
        with calls.database.connection() as conn:
            registry.add_dong(conn, DONG, "청운효자동", "종로구")
            manager = registry.add_care_manager(conn, "m-res", DONG, "김담당", MANAGER, "pw")
            resident = registry.add_resident(conn, "home-res", DONG, "오순자", RESIDENT)
        alerts = AlertService(
            calls.database, calls.service, EscalationPolicy(), clock, "http://dash.test"
        )
        yield Rig(calls, alerts, clock, manager, resident)


def _run(name: str, job: Any, results: dict[str, Any]) -> threading.Thread:
    def target() -> None:
        try:
            results[name] = job()
        except BaseException as exc:  # reported by the test: a thread's crash must fail it
            results[name + "_error"] = exc

    thread = threading.Thread(target=target, name=name)
    thread.start()
    return thread


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


def test_a_stalled_check_in_call_holds_no_transaction_nor_the_alert(rig: Rig, db_url: str) -> None:
    alert_id = rig.not_up_alert()
    rig.calls.network.pause_lines()  # accepted, not ringing: no webhook touches the database
    rig.calls.network.lose_next_reply(REPLY_TIMEOUT)  # the call is placed; the reply never comes
    results: dict[str, Any] = {}
    due = _run("due", rig.alerts.process_due, results)
    try:
        rig.calls.wait_until("the resident's phone to be dialled", lambda: rig.rung() == [RESIDENT])
        assert due.is_alive()  # its worker is still waiting for the phone API
        with psycopg.connect(db_url, autocommit=True) as conn:
            [(open_tx,)] = conn.execute(
                """SELECT count(*) FROM pg_stat_activity
                   WHERE datname = current_database() AND pid <> pg_backend_pid()
                     AND backend_type = 'client backend'
                     AND (xact_start IS NOT NULL OR state LIKE 'idle in transaction%')"""
            ).fetchall()
            [(alert_locks,)] = conn.execute(
                """SELECT count(*) FROM pg_locks l JOIN pg_class c ON c.oid = l.relation
                   JOIN pg_namespace n ON n.oid = c.relnamespace
                   WHERE n.nspname = 'anbu' AND c.relname = 'alerts'
                     AND l.pid <> pg_backend_pid()"""
            ).fetchall()
        assert due.is_alive(), "the phone API stopped stalling before the check was made"
        assert open_tx == 0  # no transaction is held open while the phone API stalls
        assert alert_locks == 0  # nor any lock on the alerts table, let alone the alert's row
        assert rig.alert(alert_id)[:4] == ("calling", 1, True, rig.check_ins(alert_id)[0][0])

        # another worker, a care manager pressing "확인" on the dashboard
        ack = _run("ack", lambda: rig.alerts.acknowledge(alert_id, rig.manager_id, DONG, "확인"),
                   results)  # fmt: skip
        assert _blocked_or_done(db_url, ack) == "done", "the acknowledgement waited for the call"
        assert due.is_alive(), "the phone API stopped stalling before the check was made"
        assert "ack_error" not in results, results
    finally:
        rig.calls.network.release_replies()
        rig.calls.network.resume_lines()
        due.join(STALL_S + 30)
    assert not due.is_alive() and "due_error" not in results, results
    assert results["due"] == 1
    assert rig.alert(alert_id)[0] == "acknowledged"
    [(_, key, dial_state, _)] = rig.check_ins(alert_id)
    assert (key, dial_state) == (f"alert:{alert_id}:attempt:1", "dialled")
    assert rig.calls.network.wait_idle(20)
    assert rig.rung() == [RESIDENT]


def test_a_rolled_back_step_rings_nobody(rig: Rig) -> None:
    alert_id = rig.not_up_alert()
    died = pytest.raises(RuntimeError, match="died before commit")
    with died, rig.calls.database.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
        a = cur.execute(
            """SELECT a.*, r.quiet_start, r.quiet_end FROM anbu.alerts a
               JOIN anbu.resident r ON r.id = a.resident_id
               WHERE a.id = %s FOR NO KEY UPDATE OF a""",
            (alert_id,),
        ).fetchone()
        assert a is not None
        rig.alerts._place_call(conn, a, AlertState.OPEN, rig.clock.now())
        raise RuntimeError("the pass died before commit")
    assert rig.calls.service.drain_queue(budget_s=5.0) == 0
    assert rig.check_ins(alert_id) == []
    assert rig.rung() == []
    assert rig.alert(alert_id)[:2] == ("open", 0)


def test_a_worker_killed_between_commit_and_dial_places_the_call_once_on_restart(
    rig: Rig, monkeypatch: pytest.MonkeyPatch
) -> None:
    alert_id = rig.not_up_alert()

    def killed(*_: Any) -> bool:
        raise WorkerDied("killed before the call was dialled")

    monkeypatch.setattr(rig.calls.service.dialler, "dial_one", killed)
    with pytest.raises(WorkerDied, match="before the call was dialled"):
        rig.alerts.process_due()
    [(call_id, key, dial_state, sid)] = rig.check_ins(alert_id)
    assert (key, dial_state, sid) == (f"alert:{alert_id}:attempt:1", "waiting", None)
    assert rig.alert(alert_id)[:4] == ("calling", 1, True, call_id)  # the step committed
    assert rig.rung() == []

    # the next worker starts: its send queue's drainer dials the call the step queued
    calls, alerts = rig.restarted()
    assert calls.drain_queue(budget_s=5.0) == 1
    assert rig.calls.network.wait_idle(20)
    assert rig.rung() == [RESIDENT]
    assert calls.drain_queue(budget_s=5.0) == 0  # nothing twice
    # the resident pressed 1: the alert reads the call's outcome as it always did
    assert alerts.process_due() == 1
    assert rig.alert(alert_id)[0] == "resolved" and rig.alert(alert_id)[4] == "resident_ok"
    assert rig.rung() == [RESIDENT]


def test_a_call_dialled_but_never_recorded_is_not_placed_twice(
    rig: Rig, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The worker died after Twilio took the call but before it recorded the SID: the claim
    committed before the request says the call left, so no worker dials it again, and its
    callbacks (addressed by call id) still bring the resident's answer to the alert."""
    alert_id = rig.not_up_alert()

    def killed(*_: Any) -> None:
        raise WorkerDied("killed after the dial, before it was recorded")

    monkeypatch.setattr(rig.calls.service.dialler, "on_dialled", killed)
    with pytest.raises(WorkerDied, match="before it was recorded"):
        rig.alerts.process_due()
    [(call_id, _, dial_state, _)] = rig.check_ins(alert_id)
    assert dial_state == "dialled"
    assert rig.alert(alert_id)[:4] == ("calling", 1, True, call_id)  # the step committed
    assert rig.calls.network.wait_idle(20)
    assert rig.rung() == [RESIDENT]

    calls, alerts = rig.restarted()
    assert calls.drain_queue(budget_s=5.0) == 0
    assert alerts.process_due() == 1  # the answer came by callback: resolved, no new call
    assert rig.alert(alert_id)[0] == "resolved" and rig.alert(alert_id)[4] == "resident_ok"
    assert [(c[0], c[2]) for c in rig.check_ins(alert_id)] == [(call_id, "dialled")]
    assert calls.drain_queue(budget_s=5.0) == 0
    assert rig.rung() == [RESIDENT]  # once
