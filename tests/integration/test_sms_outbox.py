"""Care managers' SMS go through an outbox: the escalation step writes them, under a
deterministic key, in the alert's transaction, and they are sent after it commits. A rolled-back
step texts nobody, a replayed step texts nobody twice, a slow carrier never holds the alert's
lock, a refusal is kept with its reason and never retried (the dashboard notification stands and
the ladder goes on), a carrier hiccup is retried with a growing wait, a send whose worker died is
sent again after its lease, an SMS whose reply was lost is sent again and marked as possibly
doubled, and two worker processes send each message exactly once.

Real PostgreSQL, the real twilio client and the local phone network throughout.
"""

from __future__ import annotations

import multiprocessing
import threading
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from psycopg.rows import dict_row

import registry
from alerts.outbox import RETRY_FIRST, RETRY_MAX, SEND_TRIES, SENDING_LEASE, SmsOutbox
from alerts.policy import EscalationPolicy
from alerts.service import AlertService
from calls.client import make_twilio_client
from calls.service import CallService
from core.clock import VirtualClock
from core.config import Settings
from core.db import Database
from core.domain import AlertState
from simulators.phone import REPLY_RESET
from tests.calls_support import CallsRig, calls_rig

DONG = "1111051500"
RESIDENT = "+821055506666"
MANAGER = "+821099990061"
MANAGER_2 = "+821099990062"
SUPERVISOR = "+821099990063"
MONDAY_10 = datetime(2026, 3, 2, 1, 0, tzinfo=UTC)  # Monday 10:00 Asia/Seoul
POLICY = EscalationPolicy()


class WorkerDied(BaseException):
    """The process ends here: nothing in anbu catches it, as nothing survives a kill -9."""


@dataclass
class Rig:
    calls: CallsRig
    alerts: AlertService
    clock: VirtualClock
    resident_id: int
    managers: dict[str, int]

    def query(self, sql: str, *args: Any) -> list[tuple[Any, ...]]:
        return self.calls.query(sql, *args)

    def alert(self, kind: str = "checkin_help") -> int:
        """An open alert that goes to the care managers at its next step (the resident asked)."""
        with self.calls.database.connection() as conn:
            row = conn.execute(
                """INSERT INTO anbu.alerts (resident_id, kind, severity, state, opened_at,
                       updated_at, next_action_at)
                   VALUES (%s, %s, 'warning', 'open', %s, %s, %s) RETURNING id""",
                (self.resident_id, kind, *[self.clock.now()] * 3),
            ).fetchone()
            assert row is not None
            return int(row[0])

    def sms(self, alert_id: int) -> list[tuple[Any, ...]]:
        return self.query(
            """SELECT care_manager_id, level, status, attempts, error_code, error
               FROM anbu.notifications WHERE alert_id = %s AND channel = 'sms'
               ORDER BY level, care_manager_id""",
            alert_id,
        )


@pytest.fixture
def rig(db_url: str) -> Iterator[Rig]:
    clock = VirtualClock(MONDAY_10)
    with calls_rig(db_url, clock=clock) as calls:
        with calls.database.connection() as conn:
            registry.add_dong(conn, DONG, "청운효자동", "종로구")
            managers = {
                "manager": registry.add_care_manager(conn, "m1", DONG, "김담당", MANAGER, "pw"),
                "supervisor": registry.add_care_manager(
                    conn, "s1", DONG, "박주무관", SUPERVISOR, "pw", role="supervisor"
                ),
            }
            resident = registry.add_resident(conn, "home-sms", DONG, "이순자", RESIDENT)
        alerts = AlertService(calls.database, calls.service, POLICY, clock, "http://dash.test")
        yield Rig(calls, alerts, clock, resident, managers)


def _locked_alert(conn: psycopg.Connection[Any], alert_id: int) -> dict[str, Any]:
    """The alert row as the due-work pass holds it (with what the SMS names)."""
    with conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute(
            """SELECT a.*, r.dong_code, r.home FROM anbu.alerts a
               JOIN anbu.resident r ON r.id = a.resident_id
               WHERE a.id = %s FOR NO KEY UPDATE OF a""",
            (alert_id,),
        ).fetchone()
    assert row is not None
    return row


def _escalate(rig: Rig, conn: psycopg.Connection[Any], alert_id: int, level: int = 0) -> None:
    a = _locked_alert(conn, alert_id)
    state = AlertState(a["state"])
    rig.alerts.escalation.escalate(conn, a, state, AlertState.ESCALATED, rig.clock.now(),
                                   level=level, reason="안부전화 도움 요청")  # fmt: skip


def test_a_rolled_back_step_texts_nobody(rig: Rig) -> None:
    alert_id = rig.alert()
    died = pytest.raises(RuntimeError, match="died before commit")
    with died, rig.calls.database.connection() as conn:
        _escalate(rig, conn, alert_id)
        [(written,)] = conn.execute(
            "SELECT count(*) FROM anbu.notifications WHERE alert_id = %s", (alert_id,)
        ).fetchall()
        assert written == 2  # the manager's SMS and dashboard notification, in the step
        raise RuntimeError("the pass died before commit")
    assert rig.alerts.outbox.send_due().sent == 0  # nothing was left to send
    assert rig.calls.network.messages == []
    assert rig.query("SELECT 1 FROM anbu.notifications WHERE alert_id = %s", alert_id) == []


def test_a_replayed_step_writes_once_and_texts_once(rig: Rig) -> None:
    alert_id = rig.alert()
    for _ in range(2):  # the same step, replayed a second later (a retried pass)
        with rig.calls.database.connection() as conn:
            _escalate(rig, conn, alert_id, level=0)
        rig.alerts.outbox.send_due()
        rig.clock.advance(timedelta(seconds=1))
    assert [m.to for m in rig.calls.network.messages] == [MANAGER]
    rows = rig.query(
        "SELECT channel, level, status FROM anbu.notifications WHERE alert_id = %s ORDER BY id",
        alert_id,
    )
    assert rows == [("sms", 0, "sent"), ("dashboard", 0, "sent")]


def test_a_slow_carrier_does_not_hold_the_alert_lock(rig: Rig) -> None:
    alert_id = rig.alert()
    gate = rig.calls.network.hold_sms()  # the carrier takes the request and keeps it
    outcome: dict[str, Any] = {}

    def due_pass() -> None:
        try:
            outcome["done"] = rig.alerts.process_due()
        except BaseException as exc:  # reported below: a thread's crash must fail the test
            outcome["error"] = exc

    worker = threading.Thread(target=due_pass)
    worker.start()
    try:
        assert gate.wait_for_waiting(1), "the SMS never reached the carrier"
        with psycopg.connect(rig.calls.database.conninfo) as conn:
            # the alert's step committed: another transaction takes its lock without waiting
            [(state,)] = conn.execute(
                "SELECT state FROM anbu.alerts WHERE id = %s FOR UPDATE NOWAIT", (alert_id,)
            ).fetchall()
            assert state == "escalated"
            [(status, attempts)] = conn.execute(
                """SELECT status, attempts FROM anbu.notifications
                   WHERE alert_id = %s AND channel = 'sms'""",
                (alert_id,),
            ).fetchall()
            assert (status, attempts) == ("sending", 1)  # the attempt is recorded first
            [(holding,)] = conn.execute(
                """SELECT count(*) FROM pg_stat_activity
                   WHERE datname = current_database() AND pid <> pg_backend_pid()
                     AND state IN ('idle in transaction', 'idle in transaction (aborted)')"""
            ).fetchall()
            assert holding == 0  # no transaction is left open while the carrier is slow
    finally:
        gate.open()
        worker.join(30)
    assert not worker.is_alive() and "error" not in outcome, outcome
    assert outcome["done"] == 1
    assert rig.sms(alert_id) == [(rig.managers["manager"], 0, "sent", 1, None, None)]


def test_a_refused_sms_is_failed_with_its_reason_and_the_next_step_is_told_at_once(
    rig: Rig,
) -> None:
    """The fallback for a refused SMS: nobody of the step could be texted, so the ladder does not
    wait ack_timeout for an acknowledgement nobody can give; the supervisor is told in the same
    pass. The refused SMS is never retried."""
    rig.calls.network.refuse_sms(MANAGER, 21610)
    alert_id = rig.alert()
    assert rig.alerts.process_due() == 2  # level 0, then level 1 at once
    manager, supervisor = rig.managers["manager"], rig.managers["supervisor"]
    (cm, level, status, attempts, code, error), *_ = rig.sms(alert_id)
    assert (cm, level, status, attempts, code) == (manager, 0, "failed", 1, "21610")
    assert "HTTP 400" in error and "unsubscribed" in error and MANAGER[3:] not in error
    # the dashboard notification stands, and the alert's audit says whose SMS did not go and why
    # the next step came early
    dashboard = rig.query(
        """SELECT status FROM anbu.notifications WHERE alert_id = %s AND channel = 'dashboard'
           AND care_manager_id = %s AND level = 0""",
        alert_id,
        manager,
    )
    assert dashboard == [("sent",)]
    reasons = [r[0] for r in rig.query(
        "SELECT reason FROM anbu.alert_events WHERE alert_id = %s ORDER BY id", alert_id)]  # fmt: skip
    refused = [n for n, r in enumerate(reasons) if f"담당자 #{manager}에게 문자 발송 실패" in r]
    early = [n for n, r in enumerate(reasons) if "다음 단계에 바로 알림" in r]
    assert refused and early and refused[0] < early[0], reasons
    assert len(early) == 1  # level 1 reached the supervisor: no second early climb
    assert [m.to for m in rig.calls.network.messages] == [SUPERVISOR]
    assert [r[:3] for r in rig.sms(alert_id)] == [
        (manager, 0, "failed"),
        (manager, 1, "failed"),
        (supervisor, 1, "sent"),
    ]
    # the supervisor was reached: level 1 waits for an acknowledgement as usual
    [(level, next_at)] = rig.query(
        "SELECT escalation_level, next_action_at FROM anbu.alerts WHERE id = %s", alert_id
    )
    assert (level, next_at) == (1, rig.clock.now() + POLICY.ack_timeout)
    # never retried: not by the outbox job when the next step is due
    rig.clock.advance(POLICY.ack_timeout)
    assert rig.alerts.outbox.send_due().sent == 0
    assert [r[3] for r in rig.sms(alert_id)] == [1, 1, 1]


def test_one_refused_sms_of_a_step_another_manager_got_does_not_climb(rig: Rig) -> None:
    with rig.calls.database.connection() as conn:
        second = registry.add_care_manager(conn, "m2", DONG, "최담당", MANAGER_2, "pw")
    rig.calls.network.refuse_sms(MANAGER, 21610)
    alert_id = rig.alert()
    assert rig.alerts.process_due() == 1
    assert [r[:3] for r in rig.sms(alert_id)] == [
        (rig.managers["manager"], 0, "failed"),
        (second, 0, "sent"),
    ]
    [(next_at,)] = rig.query("SELECT next_action_at FROM anbu.alerts WHERE id = %s", alert_id)
    assert next_at == rig.clock.now() + POLICY.ack_timeout
    assert rig.alerts.process_due() == 0
    assert [m.to for m in rig.calls.network.messages] == [MANAGER_2]


def test_a_carrier_hiccup_is_retried_with_a_growing_wait_then_given_up(rig: Rig) -> None:
    outbox = rig.alerts.outbox
    rig.calls.network.fail_next_sms(503)
    alert_id = rig.alert()
    rig.alerts.process_due()
    [(_, _, status, attempts, code, _)] = rig.sms(alert_id)
    assert (status, attempts, code) == ("pending", 1, "20503")
    rig.clock.advance(RETRY_FIRST - timedelta(seconds=1))
    assert outbox.send_due().sent == 0  # not due yet
    rig.clock.advance(timedelta(seconds=1))
    assert outbox.send_due().sent == 1
    assert [m.to for m in rig.calls.network.messages] == [MANAGER]
    assert rig.sms(alert_id)[0][2:4] == ("sent", 2)

    # a carrier that never recovers: SEND_TRIES attempts, then failed, not retried forever
    second = rig.alert("checkin_unwell")
    for _ in range(SEND_TRIES):
        rig.calls.network.fail_next_sms(503)
    rig.alerts.process_due()
    for _ in range(SEND_TRIES):
        rig.clock.advance(RETRY_MAX)
        outbox.send_due()
    [(_, _, status, attempts, _, error)] = rig.sms(second)
    assert (status, attempts) == ("failed", SEND_TRIES)
    assert "gave up" in error
    assert len(rig.calls.network.messages) == 1


def test_a_send_whose_worker_died_is_sent_again_after_its_lease(
    rig: Rig, monkeypatch: pytest.MonkeyPatch
) -> None:
    alert_id = rig.alert()
    with monkeypatch.context() as m:  # the worker dies after recording the attempt
        m.setattr(CallService, "send_sms", _dies)
        with pytest.raises(WorkerDied, match="killed mid-send"):
            rig.alerts.process_due()
    assert rig.sms(alert_id)[0][2:4] == ("sending", 1)
    assert rig.calls.network.messages == []
    rig.clock.advance(SENDING_LEASE - timedelta(seconds=1))
    assert rig.alerts.outbox.send_due().reclaimed == 0  # it may still be sending
    rig.clock.advance(timedelta(seconds=1))
    done = rig.alerts.outbox.send_due()
    assert (done.reclaimed, done.sent) == (1, 1)
    assert [m.to for m in rig.calls.network.messages] == [MANAGER]
    [(status, attempts, interrupted)] = rig.query(
        """SELECT status, attempts, interrupted FROM anbu.notifications
           WHERE alert_id = %s AND channel = 'sms'""",
        alert_id,
    )
    assert (status, attempts, interrupted) == ("sent", 2, 1)


def _dies(self: CallService, to: str, body: str) -> str | None:
    raise WorkerDied("killed mid-send")


def _outbox_worker(db_url: str, settings_json: str, now: str) -> int:
    """One worker process: send due SMS until none is left; returns how many it sent."""
    settings = Settings.model_validate_json(settings_json)
    db = Database(db_url, min_size=1, max_size=2)
    db.open()
    try:
        clock = VirtualClock(datetime.fromisoformat(now))
        service = CallService(db, make_twilio_client(settings), settings, clock)
        outbox = SmsOutbox(db, service, clock)
        sent = 0
        while (done := outbox.send_due(limit=5)).sent:
            sent += done.sent
        return sent
    finally:
        db.close()


def test_two_worker_processes_send_each_sms_exactly_once(rig: Rig, db_url: str) -> None:
    with rig.calls.database.connection() as conn:
        registry.add_care_manager(conn, "m2", DONG, "정담당", MANAGER_2, "pw")
        residents = [
            registry.add_resident(conn, f"home-{i}", DONG, "주민", f"+8210555100{i:02d}")
            for i in range(20)
        ]
    alert_ids = []
    for resident in residents:  # 20 alerts, each told to 2 managers: 40 SMS waiting
        rig.resident_id = resident
        alert_id = rig.alert()
        with rig.calls.database.connection() as conn:
            _escalate(rig, conn, alert_id)
        alert_ids.append(alert_id)
    gate = rig.calls.network.hold_sms()
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=2, mp_context=ctx) as pool:
        args = (db_url, rig.calls.settings.model_dump_json(), rig.clock.now().isoformat())
        futures = [pool.submit(_outbox_worker, *args) for _ in range(2)]
        try:
            # both workers are in the middle of a send at once: they really run side by side
            assert gate.wait_for_waiting(2, timeout=60), "the two workers never overlapped"
        finally:
            gate.open()
        sent = [f.result(timeout=120) for f in futures]  # a worker's exception fails here
    assert sum(sent) == 40 and min(sent) >= 1, sent
    messages = rig.calls.network.messages
    told = sorted((m.to, m.body.split("#")[1].split(" ")[0]) for m in messages)
    expected = sorted((to, str(a)) for a in alert_ids for to in (MANAGER, MANAGER_2))
    assert told == expected  # each manager told of each alert, once
    rows = rig.query(
        "SELECT status, attempts, count(*) FROM anbu.notifications WHERE channel = 'sms' "
        "GROUP BY status, attempts"
    )
    assert rows == [("sent", 1, 40)]


def test_an_sms_whose_reply_was_lost_is_sent_again_and_marked_so(rig: Rig) -> None:
    rig.calls.network.lose_next_reply(REPLY_RESET, "Messages.json")  # sent, then reset
    alert_id = rig.alert()
    rig.alerts.process_due()
    [(_, _, status, attempts, _, error)] = rig.sms(alert_id)
    assert (status, attempts) == ("pending", 1)
    assert "may have been sent" in error  # a second copy is possible, and the row says so
    rig.clock.advance(RETRY_FIRST)
    assert rig.alerts.outbox.send_due().sent == 1
    assert [m.to for m in rig.calls.network.messages] == [MANAGER, MANAGER]
    assert rig.sms(alert_id)[0][2:4] == ("sent", 2)
