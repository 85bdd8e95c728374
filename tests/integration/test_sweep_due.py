"""The minute sweep over the homes due (detectors.sweep_due) against the full scan
(detectors.sweep) on one real database, in both storage modes: at every tick the full scan runs
first and is rolled back, then the tick runs on the very same state; the findings they store and
the levels they record as held back must be the same, tick after tick, while activity arrives,
statuses, caps, quiet hours and routines change, gateways go down and up, the worker stops for
hours and the clock steps back. And the tick must read far fewer homes than exist."""

from __future__ import annotations

import contextlib
import json
import logging
import random
import threading
from collections.abc import Callable
from datetime import UTC, datetime, time, timedelta
from typing import Any

import psycopg
import pytest

import registry
from core.db import Database
from core.domain import SensorKind
from detectors.inactivity import InactivityPolicy
from detectors.learning import Baseline
from detectors.nightly import store_baseline
from detectors.sweep import NewFinding, sweep
from detectors.sweep_due import DueSweep
from ingest.store import Message, Store

POLICY = InactivityPolicy()
DONG = "1111051500"
START = datetime(2026, 11, 20, 0, 3, 17, tzinfo=UTC)  # 09:03 in Seoul
HOMES = 260

# What ingest writes for a batch's activity (ingest/state.py; ingest is not imported here).
_INGEST = """
INSERT INTO anbu.home_activity AS h (resident_id, last_activity_at,
       last_motion_at, last_door_at, last_power_at, last_room, updated_at)
VALUES (%s, %s, %s, %s, NULL, %s, %s)
ON CONFLICT (resident_id) DO UPDATE SET
       last_activity_at = greatest(h.last_activity_at, excluded.last_activity_at),
       last_motion_at = greatest(h.last_motion_at, excluded.last_motion_at),
       last_door_at = greatest(h.last_door_at, excluded.last_door_at),
       last_power_at = greatest(h.last_power_at, excluded.last_power_at),
       last_room = CASE WHEN excluded.last_activity_at >= h.last_activity_at
                        THEN excluded.last_room ELSE h.last_room END,
       updated_at = excluded.updated_at
"""
ROOMS = ("living", "kitchen", "bedroom", "bathroom", "entrance")


def _ingest(
    conn: psycopg.Connection[Any], rid: int, at: datetime, rng: random.Random, now: datetime
) -> None:
    """A sign of a person at `at`: motion in a room, or the entrance door closing behind them."""
    if rng.random() < 0.2:  # out: the door, motion a little before it
        conn.execute(_INGEST, (rid, at, at - timedelta(minutes=2), at, "entrance", now))
    else:
        room = rng.choice(ROOMS[:4])
        conn.execute(_INGEST, (rid, at, at, None, room, now))


def _baseline(rng: random.Random, learned_at: datetime) -> Baseline:
    """A learned routine with the spread of real ones (or a home still in its grace period)."""
    if rng.random() < 0.15:
        return Baseline(learned_at=learned_at.timestamp(), history_days=5.0, grace=True)
    watch = tuple(rng.uniform(1.0, 12.0) for _ in range(48))
    anchor = rng.randint(2, 13)
    wake = rng.choice([rng.uniform(5.0, 10.0), rng.uniform(5.0, 10.0), 14.0, float("nan")])
    if anchor >= 10 and rng.random() < 0.5:  # up soon after the stillest half hour
        wake = anchor / 2 + rng.uniform(0.0, 0.4)
    return Baseline(
        learned_at=learned_at.timestamp(),
        history_days=float(rng.randint(14, 90)),
        grace=False,
        watch_h=watch,
        step_h=tuple(rng.uniform(0.2, 4.0) for _ in range(48)),
        usual_h=tuple(rng.uniform(0.2, 2.0) for _ in range(48)),
        bathroom_h=(rng.choice([float("nan"), rng.uniform(0.3, 2.5)]), 0.5),
        out_h=(rng.choice([float("nan"), rng.uniform(1.0, 40.0)]), 2.0),
        anchor_slot=anchor,
        wake_h=wake,
    )


def _town(conn: psycopg.Connection[Any], rng: random.Random) -> tuple[list[int], int]:
    """HOMES residents with varied silences, routines, caps, statuses, quiet hours, gateways."""
    registry.add_dong(conn, DONG, "청운효자동", "종로구")
    manager = registry.add_care_manager(
        conn, "sweep-kim", DONG, "김담당", "+821055500001", "care-manager-password"
    )
    ids = []
    for i in range(HOMES):
        rid = registry.add_resident(conn, f"h{i:03d}", DONG, "주민", "+821012340000")
        ids.append(rid)
        if rng.random() < 0.9:
            registry.add_gateway(conn, f"gw{i:03d}", rid)
            conn.execute("UPDATE anbu.gateway SET online = true WHERE id = %s", (f"gw{i:03d}",))
        if rng.random() < 0.97:  # a few homes have never reported activity
            silent = timedelta(hours=rng.choice([rng.uniform(0, 3), rng.uniform(0, 40)]))
            _ingest(conn, rid, START - silent, rng, START)
        if rng.random() < 0.75:
            store_baseline(conn, rid, START - timedelta(hours=6), _baseline(rng, START))
        pick = rng.random()
        if pick < 0.08:
            until = START + timedelta(hours=rng.uniform(1, 30))
            registry.set_status(conn, rid, "away", until, manager, now=START)
        elif pick < 0.12:
            until = START + timedelta(hours=rng.uniform(1, 30))
            registry.set_status(conn, rid, "hospital", until, manager, now=START)
        elif pick < 0.14:  # away with no end date (set before the registry required one)
            conn.execute("UPDATE anbu.resident SET status = 'away' WHERE id = %s", (rid,))
        elif pick < 0.16:
            conn.execute("UPDATE anbu.resident SET status = 'ended' WHERE id = %s", (rid,))
        elif pick < 0.20:  # a care manager's caps (the registry's floor is 1 h; the table's 0)
            conn.execute(
                "UPDATE anbu.resident SET watch_h_max = %s, critical_h_max = %s WHERE id = %s",
                (rng.choice([0.5, 2.0, None]), rng.uniform(3.0, 20.0), rid),
            )
        if pick >= 0.16 and rng.random() < 0.2:
            registry.set_quiet_hours(conn, rid, time(22), time(7), manager, now=START)
    return ids, manager


def _events(
    conn: psycopg.Connection[Any],
    rng: random.Random,
    ids: list[int],
    manager: int,
    capped: int,
    before: datetime,
    now: datetime,
) -> None:
    """What happens in a town between two ticks."""
    span = max((now - before).total_seconds(), 60.0)
    for rid in rng.sample(ids, k=rng.randint(3, 14)):  # activity, in the order it arrives
        at = now - timedelta(seconds=rng.uniform(0, span))
        if rng.random() < 0.03:  # a gateway whose clock runs ahead
            at = now + timedelta(minutes=rng.uniform(1, 10))
        _ingest(conn, rid, at, rng, now)
    if rng.random() < 0.3:  # a late motion reading: older than the last activity
        rid = rng.choice(ids)
        at = now - timedelta(hours=rng.uniform(0, 6))
        conn.execute(_INGEST, (rid, at, at, None, "living", now))
    if rng.random() < 0.25:  # the frail resident's caps, changed again and again
        w = rng.choice([1.0, 1.5, 2.0, None])
        crit = rng.choice([6.0, 10.0, 20.0, None])
        registry.set_level_caps(conn, capped, w, None, crit, manager, now=now)
    if rng.random() < 0.15:
        rid = rng.choice(ids)
        status = rng.choice(["away", "hospital", "active"])
        until = None if status == "active" else now + timedelta(hours=rng.uniform(0.5, 20))
        with contextlib.suppress(registry.ResidentEnded):
            registry.set_status(conn, rid, status, until, manager, now=now)
    if rng.random() < 0.1:
        start, end = rng.choice([(time(21), time(6)), (time(23), time(8)), (None, None)])
        with contextlib.suppress(registry.ResidentEnded):
            registry.set_quiet_hours(conn, rng.choice(ids), start, end, manager, now=now)
    if rng.random() < 0.1:  # a routine learned again
        store_baseline(conn, rng.choice(ids), now, _baseline(rng, now))
    if rng.random() < 0.1:  # a gateway goes down, or comes back
        gw = f"gw{rng.randrange(HOMES):03d}"
        conn.execute("UPDATE anbu.gateway SET online = NOT online WHERE id = %s", (gw,))


def _found(new: list[NewFinding]) -> list[tuple[Any, ...]]:
    return sorted(
        (
            n.resident_id,
            n.finding.kind,
            n.finding.severity.label,
            n.finding.raised_at,
            n.finding.reason_ko,
            n.finding.reason_en,
            json.dumps(n.finding.details, sort_keys=True),
        )
        for n in new
    )


def _held(conn: psycopg.Connection[Any]) -> list[tuple[Any, ...]]:
    return conn.execute(
        """SELECT resident_id, kind, severity, silence_since, reached_at, status, status_until
             FROM anbu.suppressions ORDER BY 1, 2, 3, 4"""
    ).fetchall()


def _moments(rng: random.Random) -> list[datetime]:
    """Tick moments over three days: every few minutes; the worker down for five hours once;
    the clock stepped back by an hour and forty minutes once."""
    moments, now = [], START
    while now < START + timedelta(days=3):
        moments.append(now)
        gap = timedelta(minutes=rng.uniform(4, 25))
        if len(moments) == 60:
            gap = timedelta(hours=5)
        if len(moments) == 150:
            gap = timedelta(minutes=-100)
        now += gap
    return moments


@pytest.mark.storage_modes
def test_the_tick_raises_exactly_what_the_full_scan_raises(
    database: Database, caplog: pytest.LogCaptureFixture
) -> None:
    rng = random.Random(17)
    with database.connection() as conn:
        ids, manager = _town(conn, rng)
    capped = ids[5]
    sweeper = DueSweep(POLICY)
    read: list[int] = []
    kinds: set[str] = set()
    held_levels = 0
    before = START
    caplog.set_level(logging.INFO, logger="detectors.sweep_due")
    for step, now in enumerate(_moments(rng)):
        with database.connection() as conn:
            if step:
                _events(conn, rng, ids, manager, capped, before, now)
        with database.connection() as conn:
            with conn.transaction(force_rollback=True):
                full, full_held = _found(sweep(conn, now, POLICY)), _held(conn)
            due, due_held = _found(sweeper.tick(conn, now)), _held(conn)
        assert due == full, (step, now)
        assert due_held == full_held, (step, now)
        assert sweeper.last is not None
        if sweeper.last.full is None:
            read.append(sweeper.last.homes)
        kinds |= {f[1] for f in due}
        held_levels = len(due_held)
        before = now
    full_passes = [r.getMessage() for r in caplog.records if "full pass" in r.getMessage()]
    assert len(full_passes) == 2, full_passes
    assert "first tick since this worker started" in full_passes[0]
    assert "the clock stepped back" in full_passes[1]
    # the comparison had something to compare: every kind of finding, levels held back
    assert kinds == {"inactivity", "not_back", "not_up", "bathroom_long_stay"}, kinds
    assert held_levels >= 10
    # and the tick read the homes due, not the town: every home is due within the hour (the
    # cap), so ticks about 15 minutes apart read a quarter of the town at most, and less
    assert len(read) > 150
    assert sum(read) / len(read) < HOMES / 3.5, sum(read) / len(read)


def _both(database: Database, sweeper: DueSweep, now: datetime) -> list[tuple[Any, ...]]:
    """The full scan (rolled back), then the tick, at `now`: the same findings, returned."""
    with database.connection() as conn:
        with conn.transaction(force_rollback=True):
            full = _found(sweep(conn, now, POLICY))
        due = _found(sweeper.tick(conn, now))
    assert due == full, now
    return due


def test_a_morning_check_soon_after_the_last_stir_is_not_missed(database: Database) -> None:
    """Up by 06:06 after a night whose stillest half hour is 06:00: back home at 05:50 from a
    night out, and then nothing, is "not up" at 06:36, sooner than any inactivity level of the
    silence begun at 05:50 (the activity's due time must come in by the morning margin, not by
    the first level, even though the home was out when its lead was computed)."""
    night = datetime(2026, 11, 20, 20, 0, tzinfo=UTC)  # 05:00 in Seoul
    with database.connection() as conn:
        registry.add_dong(conn, DONG, "청운효자동", "종로구")
        rid = registry.add_resident(conn, "early-riser", DONG, "주민", "+821012340000")
        out = night - timedelta(hours=2)  # gone out at 03:00: no morning check for an outing
        conn.execute(_INGEST, (rid, out, out - timedelta(minutes=2), out, "entrance", out))
        learned = Baseline(
            learned_at=night.timestamp(), history_days=30.0, grace=False, watch_h=(8.0,) * 48,
            step_h=(2.0,) * 48, usual_h=(1.0,) * 48, anchor_slot=12, wake_h=6.1,
        )  # fmt: skip
        store_baseline(conn, rid, night - timedelta(hours=12), learned)
    sweeper = DueSweep(POLICY)
    assert _both(database, sweeper, night) == []
    with database.connection() as conn:
        _ingest_motion(conn, rid, night + timedelta(minutes=50))  # 05:50
    found = []
    for minutes in range(52, 120, 2):
        found += [
            (f[1], f[3]) for f in _both(database, sweeper, night + timedelta(minutes=minutes))
        ]
    assert found == [("not_up", night + timedelta(minutes=96))]  # 06:36


def test_activity_during_a_tick_keeps_the_home_due(
    database: Database, db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A home gone out is judged while the resident comes back in: the tick must not write the
    outing's due time (36 h on) over the activity's, or the new silence would go unwatched."""
    import detectors.sweep_due as sweep_due

    out = START - timedelta(hours=2)
    with database.connection() as conn:
        registry.add_dong(conn, DONG, "청운효자동", "종로구")
        rid = registry.add_resident(conn, "back-home", DONG, "주민", "+821012340000")
        conn.execute(_INGEST, (rid, out, out - timedelta(minutes=2), out, "entrance", out))
    judge: Callable[..., Any] = sweep_due.judge_rows

    def judge_while_coming_back(*args: Any) -> Any:
        with psycopg.connect(db_url, autocommit=True) as other:  # ingest, committing meanwhile
            _ingest_motion(other, rid, START - timedelta(minutes=1))
        return judge(*args)

    monkeypatch.setattr(sweep_due, "judge_rows", judge_while_coming_back)
    sweeper = DueSweep(POLICY)
    with database.connection() as conn:
        assert sweeper.tick(conn, START) == []
    monkeypatch.setattr(sweep_due, "judge_rows", judge)
    with database.connection() as conn:
        due = conn.execute(
            "SELECT due_at <= %s FROM anbu.sweep_due WHERE resident_id = %s",
            (START + timedelta(hours=1), rid),
        ).fetchone()
    assert due == (True,)  # the activity's due time stood, not the outing's
    # the fixed rule's watch comes 6 h into the new silence, and the tick raises it
    found = []
    for minutes in range(10, 6 * 60 + 10, 10):
        with database.connection() as conn:
            found += sweeper.tick(conn, START + timedelta(minutes=minutes))
    assert [(f.resident_id, f.finding.kind, f.finding.severity.label) for f in found] == [
        (rid, "inactivity", "watch")
    ]


def _ingest_motion(conn: psycopg.Connection[Any], rid: int, at: datetime) -> None:
    conn.execute(_INGEST, (rid, at, at, None, "living", at))


def test_a_restarted_worker_rebuilds_the_due_times_and_says_so(
    database: Database, caplog: pytest.LogCaptureFixture
) -> None:
    with database.connection() as conn:
        registry.add_dong(conn, DONG, "청운효자동", "종로구")
        for i in range(30):
            rid = registry.add_resident(conn, f"r{i}", DONG, "주민", "+821012340000")
            at = START - timedelta(minutes=10 * i)
            conn.execute(_INGEST, (rid, at, at, None, "living", at))
    caplog.set_level(logging.INFO, logger="detectors.sweep_due")
    first = DueSweep(POLICY)
    with database.connection() as conn:
        first.tick(conn, START)
    assert first.last is not None and first.last.full is not None and first.last.homes == 30
    with database.connection() as conn:
        first.tick(conn, START + timedelta(minutes=1))
    assert first.last.full is None and first.last.homes == 0  # nobody due yet
    restarted = DueSweep(POLICY)
    with database.connection() as conn:
        restarted.tick(conn, START + timedelta(minutes=2))
    assert restarted.last is not None and restarted.last.homes == 30
    said = [r for r in caplog.records if "full pass" in r.getMessage()]
    assert len(said) == 2
    assert all("first tick since this worker started" in r.getMessage() for r in said)
    assert [getattr(r, "homes", None) for r in said] == [30, 30]
    # a worker with another policy, past its first tick: an error, and the due times stand
    # (rebuilding them in turn with the other worker would make every tick a full pass)
    other = DueSweep(InactivityPolicy(watch_hours=3.0))
    other.last = restarted.last
    with database.connection() as conn:
        before = conn.execute(
            "SELECT resident_id, due_at FROM anbu.sweep_due ORDER BY 1"
        ).fetchall()
        other.tick(conn, START + timedelta(minutes=3))
        after = conn.execute("SELECT resident_id, due_at FROM anbu.sweep_due ORDER BY 1").fetchall()
    assert other.last is not None and other.last.full is None and other.last.homes == 0
    assert after == before
    assert any(r.levelno == logging.ERROR and "another policy" in r.getMessage()
               for r in caplog.records)  # fmt: skip


# -- locks: two connections interleaved, no deadlock -----------------------------------------


def _two_homes(database: Database) -> tuple[int, int]:
    """Homes a < b, each with an online gateway (gw-a, gw-b), a motion sensor and activity."""
    with database.connection() as conn:
        registry.add_dong(conn, DONG, "청운효자동", "종로구")
        a = registry.add_resident(conn, "lock-a", DONG, "주민", "+821012340000")
        b = registry.add_resident(conn, "lock-b", DONG, "주민", "+821012340001")
        for gw, rid in (("gw-a", a), ("gw-b", b)):
            registry.add_gateway(conn, gw, rid)
            conn.execute("UPDATE anbu.gateway SET online = true WHERE id = %s", (gw,))
            registry.add_sensor(conn, gw, "pir", SensorKind.MOTION, "living")
    # through ingest: the readings' chunk exists before the batches (a batch creating it would
    # hold its creation lock to the end and so order the batches by itself)
    at = START - timedelta(minutes=1)
    Store(database).store_batch([_batch("gw-a", "", at)[0], _batch("gw-b", "", at)[0]], at)
    assert a < b
    return a, b


def _batch(gateway: str, down: str, at: datetime) -> list[Message]:
    """A batch of ingest: motion through `gateway`, then `down` reporting itself offline."""
    body = {"readings": [{"sensor": "pir", "kind": "motion", "ts": at.isoformat(), "value": 1}]}
    return [
        Message(f"gw/{gateway}/anbu/readings", json.dumps(body).encode()),
        Message(f"gw/{down}/anbu/status", b"offline"),
    ]


def _blocked(
    observer: psycopg.Connection[Any], pid: int, done: threading.Thread | None = None
) -> None:
    """Wait until backend `pid` waits for a lock (or `done` has finished)."""
    for _ in range(2000):
        row = observer.execute(
            "SELECT wait_event_type FROM pg_stat_activity WHERE pid = %s", (pid,)
        ).fetchone()
        if row is not None and row[0] == "Lock":
            return
        if done is not None and not done.is_alive():
            return
        observer.execute("SELECT pg_sleep(0.005)")
    raise AssertionError(f"backend {pid} never waited for a lock")


def _in_thread(work: Callable[[], None], errors: list[BaseException]) -> threading.Thread:
    def run() -> None:
        try:
            work()
        except BaseException as e:  # reported by the test
            errors.append(e)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def test_a_tick_and_an_ingest_batch_never_deadlock(database: Database, db_url: str) -> None:
    """Ingest writes home b's activity, then waits (gw-a's row is held) to mark gw-a offline,
    whose trigger pulls home a in; meanwhile the tick locks the homes due, a then b. Before,
    the tick held a and waited for b, ingest held b and then wanted a: a deadlock."""
    a, b = _two_homes(database)
    sweeper = DueSweep(POLICY)
    with database.connection() as conn:
        sweeper.tick(conn, START)  # the full pass: due times written
        conn.execute("UPDATE anbu.sweep_due SET due_at = '-infinity'")  # both due
    store = Store(database)
    errors: list[BaseException] = []
    now = START + timedelta(minutes=1)
    with (
        psycopg.connect(db_url, autocommit=True) as observer,
        psycopg.connect(db_url) as holder,
        psycopg.connect(db_url) as ingest,
        psycopg.connect(db_url) as ticking,
    ):
        holder.execute("SELECT 1 FROM anbu.gateway WHERE id = 'gw-a' FOR UPDATE")

        def store_batch() -> None:
            store.store_in(ingest, _batch("gw-b", "gw-a", now - timedelta(seconds=5)), now)
            ingest.commit()

        def tick() -> None:
            sweeper.tick(ticking, now)
            ticking.commit()

        batch = _in_thread(store_batch, errors)
        _blocked(observer, ingest.info.backend_pid)  # it waits for gw-a, b's activity written
        ticker = _in_thread(tick, errors)
        _blocked(observer, ticking.info.backend_pid, ticker)
        holder.rollback()
        batch.join(30)
        ticker.join(30)
    assert not batch.is_alive() and not ticker.is_alive()
    assert errors == []
    with database.connection() as conn:
        due = conn.execute(
            "SELECT resident_id, due_at <= %s FROM anbu.sweep_due ORDER BY 1", (now,)
        ).fetchall()
        assert due == [(a, True), (b, True)]  # the tick left the held homes due: judged next
        sweeper.tick(conn, now + timedelta(minutes=1))
    assert sweeper.last is not None and sweeper.last.homes == 2


def test_two_ingest_batches_never_deadlock(database: Database, db_url: str) -> None:
    """One batch writes b's activity and marks gw-a offline, the other writes a's activity
    and marks gw-b offline, both waiting for their gateway's row at first. Before, each held
    the due row of its activity's home and wanted the other's through the gateway trigger."""
    a, b = _two_homes(database)
    errors: list[BaseException] = []
    now = START + timedelta(minutes=1)
    with (
        psycopg.connect(db_url, autocommit=True) as observer,
        psycopg.connect(db_url) as holder,
        psycopg.connect(db_url) as one,
        psycopg.connect(db_url) as two,
    ):
        holder.execute("SELECT 1 FROM anbu.gateway WHERE id IN ('gw-a', 'gw-b') FOR UPDATE")

        def batch(conn: psycopg.Connection[Any], gateway: str, down: str) -> Callable[[], None]:
            def run() -> None:
                Store(database).store_in(conn, _batch(gateway, down, now), now)
                conn.commit()

            return run

        first = _in_thread(batch(one, "gw-b", "gw-a"), errors)
        _blocked(observer, one.info.backend_pid)
        second = _in_thread(batch(two, "gw-a", "gw-b"), errors)
        _blocked(observer, two.info.backend_pid)
        holder.rollback()
        first.join(30)
        second.join(30)
    assert not first.is_alive() and not second.is_alive()
    assert errors == []
    with database.connection() as conn:
        rows = conn.execute(
            """SELECT g.id, g.online, h.last_activity_at FROM anbu.gateway g
                 JOIN anbu.home_activity h ON h.resident_id = g.resident_id ORDER BY 1"""
        ).fetchall()
        due = conn.execute(
            "SELECT resident_id, due_at <= %s FROM anbu.sweep_due ORDER BY 1", (now,)
        ).fetchall()
    assert rows == [("gw-a", False, now), ("gw-b", False, now)]
    assert due == [(a, True), (b, True)]  # gateways down: both due at once


def test_overlapping_ticks_of_two_workers_make_no_full_pass(
    database: Database, db_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Worker one ticks at 00:06 and has not committed; worker two's tick, its clock read at
    00:05, comes meanwhile. Before, two waited for the sweep and then judged 00:05 after
    00:06: "the clock stepped back", a full pass, every time the ticks overlapped."""
    with database.connection() as conn:
        registry.add_dong(conn, DONG, "청운효자동", "종로구")
        for i in range(20):
            rid = registry.add_resident(conn, f"o{i}", DONG, "주민", "+821012340000")
            _ingest_motion(conn, rid, START - timedelta(minutes=17 * i))
    caplog.set_level(logging.INFO, logger="detectors.sweep_due")
    one, two = DueSweep(POLICY), DueSweep(POLICY)
    with database.connection() as conn:
        one.tick(conn, START)  # each worker's first tick is a full pass
    with database.connection() as conn:
        two.tick(conn, START + timedelta(minutes=1))
    errors: list[BaseException] = []
    with (
        psycopg.connect(db_url, autocommit=True) as observer,
        psycopg.connect(db_url) as first,
        psycopg.connect(db_url) as second,
    ):
        one.tick(first, START + timedelta(minutes=6))  # not committed yet

        def late() -> None:
            two.tick(second, START + timedelta(minutes=5))
            second.commit()

        overlapping = _in_thread(late, errors)
        _blocked(observer, second.info.backend_pid, overlapping)
        first.commit()
        overlapping.join(30)
    assert errors == [] and not overlapping.is_alive()
    with database.connection() as conn:  # the clock itself: read once the sweep is held
        two.tick(conn, lambda: START + timedelta(minutes=7))
    with database.connection() as conn:
        one.tick(conn, START + timedelta(minutes=8))
    said = [r.getMessage() for r in caplog.records if "full pass" in r.getMessage()]
    assert len(said) == 2, said
    assert all("first tick since this worker started" in m for m in said)
    assert two.skipped == 1
    assert one.last is not None and one.last.full is None
    assert two.last is not None and two.last.full is None


def test_a_home_with_activity_but_no_due_row_is_judged_by_the_full_pass(
    database: Database,
) -> None:
    """A home whose due row is missing (activity stored before the triggers existed, or the
    row lost) is judged by the next full pass, and has a due row after it."""
    with database.connection() as conn:
        registry.add_dong(conn, DONG, "청운효자동", "종로구")
        rid = registry.add_resident(conn, "no-row", DONG, "주민", "+821012340000")
        _ingest_motion(conn, rid, START - timedelta(hours=30))  # silent past every level
        conn.execute("DELETE FROM anbu.sweep_due WHERE resident_id = %s", (rid,))
    sweeper = DueSweep(POLICY)
    with database.connection() as conn:
        with conn.transaction(force_rollback=True):
            full = _found(sweep(conn, START, POLICY))
        due = _found(sweeper.tick(conn, START))
    assert [f[0] for f in full] == [rid]
    assert due == full
    with database.connection() as conn:
        row = conn.execute(
            "SELECT due_at > %s FROM anbu.sweep_due WHERE resident_id = %s", (START, rid)
        ).fetchone()
    assert row == (True,)


def test_no_due_time_is_more_than_an_hour_ahead(database: Database) -> None:
    """A home just active (next level hours away), one whose gateways are all down (left out
    of the sweep) and one away for days: each is looked at again within the hour, so a change
    no trigger saw makes a home an hour late at most."""
    with database.connection() as conn:
        registry.add_dong(conn, DONG, "청운효자동", "종로구")
        manager = registry.add_care_manager(
            conn, "cap-kim", DONG, "김담당", "+821055500001", "care-manager-password"
        )
        ids = []
        for i in range(3):
            rid = registry.add_resident(conn, f"cap{i}", DONG, "주민", "+821012340000")
            ids.append(rid)
            _ingest_motion(conn, rid, START - timedelta(minutes=5))
        registry.add_gateway(conn, "gw-down", ids[1])
        conn.execute("UPDATE anbu.gateway SET online = false WHERE id = 'gw-down'")
        registry.set_status(conn, ids[2], "away", START + timedelta(days=3), manager, now=START)
    sweeper = DueSweep(POLICY)
    for minutes in (0, 61, 130):
        now = START + timedelta(minutes=minutes)
        with database.connection() as conn:
            sweeper.tick(conn, now)
            rows = conn.execute(
                "SELECT resident_id, due_at FROM anbu.sweep_due ORDER BY 1"
            ).fetchall()
        assert [r[0] for r in rows] == ids
        assert all(now < due <= now + timedelta(hours=1) for _, due in rows), (now, rows)
        assert sweeper.last is not None and sweeper.last.homes == 3  # all due again
