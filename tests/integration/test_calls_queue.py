"""The send queue: the CPS budget is shared through the database, priorities hold, and no
resident is called twice for one step, even with two worker processes."""

from __future__ import annotations

import multiprocessing
from collections import Counter
from datetime import UTC, datetime

import psycopg

import registry
from calls.client import make_twilio_client
from calls.dialer import _CLAIM, ALERT_PURPOSES, Priority
from calls.service import CallService
from core.clock import SystemClock
from core.db import Database
from tests.calls_support import CallsRig, calls_rig

DONG = "1111051500"


def _residents(db_url: str, n: int) -> list[int]:
    with psycopg.connect(db_url) as conn:
        registry.add_dong(conn, DONG, "청운효자동", "종로구")
        return [
            registry.add_resident(conn, f"q-{i}", DONG, f"주민{i}", f"+8210777{i:05d}")
            for i in range(n)
        ]


def _queue_routine(rig: CallsRig, residents: list[int]) -> None:
    for rid in residents:
        rig.service.enqueue(f"routine:test:{rid}", rid, priority=Priority.ROUTINE,
                            purpose="routine")  # fmt: skip


def _dialled_at(rig: CallsRig) -> list[datetime]:
    rows = rig.query("SELECT dialled_at FROM anbu.calls WHERE dialled_at IS NOT NULL ORDER BY 1")
    return [r[0] for r in rows]


def _within_budget(times: list[datetime], cps: float, capacity: float) -> bool:
    """No stretch of k+1 dials is shorter than the bucket allows: (k - capacity) / cps."""
    for i in range(len(times)):
        for j in range(i + 1, len(times)):
            k = j - i + 1
            if (times[j] - times[i]).total_seconds() < (k - capacity) / cps - 0.05:
                return False
    return True


def test_priorities_emergency_then_alert_then_routine(db_url: str) -> None:
    residents = _residents(db_url, 5)
    with calls_rig(db_url) as rig:
        _queue_routine(rig, residents[:3])
        with psycopg.connect(db_url) as conn:
            conn.execute(
                """INSERT INTO anbu.alerts (resident_id, kind, severity, state, opened_at,
                       updated_at) VALUES (%s, 'inactivity', 'critical', 'open', now(), now())""",
                (residents[3],),
            )
        [(alert_id,)] = rig.query("SELECT id FROM anbu.alerts")
        rig.service.enqueue("alert:x", residents[3], priority=Priority.ALERT, purpose="check_in",
                            alert_id=alert_id)  # fmt: skip
        rig.service.enqueue("emergency:x", residents[4], priority=Priority.EMERGENCY,
                            purpose="check_in")  # fmt: skip
        order = []
        for _ in range(5):
            assert rig.service.dialler.dial_waiting(limit=1).dialled == 1
        assert rig.service.dialler.dial_waiting(limit=1).dialled == 0  # queue empty
        rows = rig.query("SELECT resident_id FROM anbu.calls ORDER BY dialled_at, id")
        order = [r[0] for r in rows]
        assert order[:2] == [residents[4], residents[3]]
        assert sorted(order[2:]) == sorted(residents[:3])
        assert rig.network.wait_idle(20)


def test_the_queue_honours_calls_per_second(db_url: str) -> None:
    residents = _residents(db_url, 12)
    with calls_rig(db_url, call_cps=8.0) as rig:
        _queue_routine(rig, residents)
        dialled = rig.service.drain_queue(budget_s=30)
        assert dialled == 12
        times = _dialled_at(rig)
        assert len(times) == 12
        assert _within_budget(times, cps=8.0, capacity=8.0 + 1)
        assert rig.network.wait_idle(20)


def _worker(db_url: str, settings_json: str, out: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    from core.config import Settings

    settings = Settings.model_validate_json(settings_json)
    db = Database(db_url, min_size=1, max_size=4)
    db.open()
    try:
        service = CallService(db, make_twilio_client(settings), settings, SystemClock())
        out.put(service.drain_queue(budget_s=30))
    finally:
        db.close()


def test_two_worker_processes_share_the_budget_and_never_call_twice(db_url: str) -> None:
    residents = _residents(db_url, 16)
    with calls_rig(db_url, call_cps=8.0) as rig:
        _queue_routine(rig, residents)
        # the same step queued again (a second scheduler, a retried tick) is the same row
        _queue_routine(rig, residents)
        ctx = multiprocessing.get_context("spawn")
        out = ctx.Queue()
        workers = [
            ctx.Process(target=_worker, args=(db_url, rig.settings.model_dump_json(), out))
            for _ in range(2)
        ]
        for w in workers:
            w.start()
        for w in workers:
            w.join(60)
        counts = [out.get(timeout=5) for _ in workers]
        assert sum(counts) == 16
        assert rig.network.wait_idle(20)
        rung = Counter(c.to for c in rig.network.calls)
        assert len(rung) == 16 and set(rung.values()) == {1}
        assert _within_budget(_dialled_at(rig), cps=8.0, capacity=8.0 + 1)


def test_a_retry_takes_the_alerts_unsent_attempt_out_of_the_queue(db_url: str) -> None:
    """Attempt 2 is placed while attempt 1 still waits for a token (the alert stopped waiting
    for it): attempt 2 replaces it, cancelled as calls.dialer.cancel_waiting cancels any call
    that rang nobody (no outcome, the reason in call_events), and the phone rings once."""
    [rid] = _residents(db_url, 1)
    with calls_rig(db_url) as rig:
        with psycopg.connect(db_url) as conn:
            conn.execute(
                """INSERT INTO anbu.alerts (resident_id, kind, severity, state, opened_at,
                       updated_at) VALUES (%s, 'inactivity', 'warning', 'calling', now(), now())""",
                (rid,),
            )
        [(alert_id,)] = rig.query("SELECT id FROM anbu.alerts")
        first, _ = rig.service.enqueue(f"alert:{alert_id}:attempt:1", rid, priority=Priority.ALERT,
                                       purpose="check_in", alert_id=alert_id)  # fmt: skip
        second = rig.service.place_check_in(rid, alert_id, 2)
        assert rig.network.wait_idle(20)
        assert rig.service.drain_queue(budget_s=1) == 0
        rows = rig.query("SELECT id, status, outcome, dial_state FROM anbu.calls ORDER BY id")
        assert rows[0] == (first, "canceled", None, "dialled")  # it rang nobody: no outcome
        assert rows[1][0] == second and rows[1][3] == "dialled"
        events = rig.query(
            "SELECT status, params FROM anbu.call_events WHERE call_id = %s ORDER BY id", first
        )
        assert events == [("queued", {}), ("canceled", {"reason": "superseded", "by_attempt": 2})]
        assert len(rig.network.calls) == 1


def test_the_claim_reads_the_waiting_calls_in_its_own_order_without_a_sort(db_url: str) -> None:
    """calls_waiting is ordered as the claim is (not_before NULLS FIRST): the claim reads the
    calls it takes from the index, not every waiting call sorted (≈ 3 ms at 10,000 waiting)."""
    residents = _residents(db_url, 3)
    with psycopg.connect(db_url) as conn:
        conn.execute(
            """INSERT INTO anbu.calls (idempotency_key, resident_id, purpose, dial_state,
                   priority, not_before, created_at, updated_at)
               SELECT 'plan-' || n, %s, 'routine', 'waiting', 5,
                      CASE WHEN n %% 3 = 0 THEN now() - interval '1 minute' END, now(), now()
               FROM generate_series(1, 500) n""",
            (residents[0],),
        )
        conn.execute("ANALYZE anbu.calls")
        conn.execute("SET enable_seqscan = off")  # a table this small: ask for the index
        plan = "\n".join(
            row[0]
            for row in conn.execute(
                "EXPLAIN " + _CLAIM.format(only=""),
                {"now": datetime.now(UTC), "purposes": list(ALERT_PURPOSES), "n": 20},
            ).fetchall()
        )
        conn.rollback()
    assert "Index Scan using calls_waiting" in plan, plan
    assert "Sort Key: w." not in plan, plan  # (the 20 picked are sorted to join: fine)
