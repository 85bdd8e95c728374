"""Routine check-in slots are never skipped after an outage: each plan keeps how far it was
scheduled, so a worker down for five hours then restarted makes a round for every slot in
between, exactly once: called late while the slot's day lasts, recorded as missed (with a reason
the care manager reads) when it is over. Two ticks at once make each round once, and the second
never waits for the first.

Real PostgreSQL; no calls are dialled (the rounds' calls are only queued).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import psycopg
import pytest

import registry
from calls.checkins import CheckinService, add_plan, round_events, unreached_streak
from core.clock import VirtualClock
from core.config import Settings
from core.db import Database

DONG = "1111051500"
SEOUL = ZoneInfo("Asia/Seoul")
MONDAY_2030 = datetime(2026, 3, 2, 20, 30, tzinfo=SEOUL)  # the worker's last tick
RESTART = MONDAY_2030 + timedelta(hours=5, minutes=15)  # Tuesday 01:45, after the outage
# (ISO weekday, local time) of each plan: two slots on Monday evening (their day is over at the
# restart), one on Tuesday more than an hour before the restart, one just before, one after
PLANS = [(1, time(21, 0)), (1, time(23, 0)), (2, time(0, 30)), (2, time(1, 30)), (2, time(3, 0))]


@pytest.fixture
def db(db_url: str) -> Iterator[Database]:
    database = Database(db_url, min_size=1, max_size=4)
    database.open()
    yield database
    database.close()


def _seed(db: Database) -> int:
    with db.connection() as conn:
        registry.add_dong(conn, DONG, "청운효자동", "종로구")
        rid = registry.add_resident(conn, "h-catchup", DONG, "정말순", "+821055508888")
        for weekday, at in PLANS:
            add_plan(conn, rid, [weekday], at)
        return rid


def _rounds(db: Database) -> list[tuple[str, str, bool, bool]]:
    """(local slot, state, has a timer, finished) of every round, by slot."""
    with db.connection() as conn:
        rows = conn.execute(
            """SELECT slot, state, next_action_at IS NOT NULL, finished_at IS NOT NULL
               FROM anbu.checkin_rounds ORDER BY slot"""
        ).fetchall()
    return [(r[0].astimezone(SEOUL).strftime("%a %H:%M"), r[1], r[2], r[3]) for r in rows]


def test_a_worker_down_five_hours_makes_every_missed_slot_once(db: Database, db_url: str) -> None:
    rid = _seed(db)
    clock = VirtualClock(MONDAY_2030)
    checkins = CheckinService(db, Settings(database_url=db_url), clock)
    assert checkins.schedule() == 0  # the last tick before the outage: nothing due yet

    clock.advance(RESTART - clock.now())  # five hours and a quarter with no worker
    assert checkins.schedule() == 4
    assert _rounds(db) == [
        ("Mon 21:00", "missed", False, True),  # its day is over: recorded, not called
        ("Mon 23:00", "missed", False, True),
        ("Tue 00:30", "calling", True, False),  # 75 minutes late, same day: called now
        ("Tue 01:30", "calling", True, False),
    ]
    assert checkins.schedule() == 0  # the next tick: each slot had its round once
    clock.advance(timedelta(seconds=30))
    assert checkins.schedule() == 0
    with db.connection() as conn:
        marks = conn.execute("SELECT DISTINCT scheduled_until FROM anbu.checkin_plans")
        # moved at the restart; the quiet tick after it wrote no plan (nothing was due)
        assert marks.fetchall() == [(RESTART,)]

    with db.connection() as conn:
        events = round_events(conn, rid, RESTART - timedelta(days=1))
        assert not unreached_streak(conn, rid, 1)  # a missed slot is not the resident's doing
    assert [(s.astimezone(SEOUL).strftime("%a %H:%M"), kind) for s, _, kind, _, _ in events] == [
        ("Tue 00:30", "late"),
        ("Mon 23:00", "missed"),
        ("Mon 21:00", "missed"),
    ]
    _, _, _, ko, en = events[-1]
    assert ko.startswith("시스템 장애로 정기 안부전화를 걸지 못했습니다(예정: 3월 2일 21:00")
    assert "its day is over" in en

    assert checkins.advance() == 2  # only the rounds still worth a call queue one
    with db.connection() as conn:
        queued = conn.execute("SELECT count(*) FROM anbu.calls WHERE purpose = 'routine'")
        assert queued.fetchone() == (2,)

    clock.advance(datetime(2026, 3, 3, 3, 0, 5, tzinfo=SEOUL) - clock.now())
    assert checkins.schedule() == 1  # the ordinary tick goes on from where it was
    assert _rounds(db)[-1] == ("Tue 03:00", "calling", True, False)


def _waiting_on_a_lock(db_url: str, application: str) -> bool:
    with psycopg.connect(db_url, autocommit=True) as conn:
        row = conn.execute(
            """SELECT count(*) FROM pg_stat_activity
               WHERE application_name = %s AND wait_event_type = 'Lock'""",
            (application,),
        ).fetchone()
    return row is not None and int(row[0]) > 0


def test_two_ticks_at_once_make_each_round_once_and_never_wait(db_url: str) -> None:
    setup = Database(db_url, min_size=1, max_size=2)
    setup.open()
    try:
        _seed(setup)
    finally:
        setup.close()
    clock = VirtualClock(MONDAY_2030)
    settings = Settings(database_url=db_url)
    first = CheckinService(Database(db_url, 1, 2), settings, clock)
    second_db = Database(
        f"{db_url}{'&' if '?' in db_url else '?'}application_name=second-tick", 1, 2
    )
    second = CheckinService(second_db, settings, clock)
    first.db.open()
    second_db.open()
    try:
        assert first.schedule() == 0
        clock.advance(RESTART - clock.now())
        with first.db.connection() as held:  # the first tick's transaction, not yet committed
            assert first.schedule_in(held) == (2, 2)
            outcome: dict[str, Any] = {}

            def tick() -> None:
                try:
                    outcome["new"] = second.schedule()
                except BaseException as exc:  # reported below
                    outcome["error"] = exc

            worker = threading.Thread(target=tick)
            worker.start()
            deadline = datetime.now(UTC) + timedelta(seconds=30)
            while worker.is_alive() and not _waiting_on_a_lock(db_url, "second-tick"):
                assert datetime.now(UTC) < deadline, "the second tick neither ended nor waited"
                worker.join(0.05)
            assert not worker.is_alive(), "the second tick waited for the first one's lock"
        assert outcome == {"new": 0}  # the first tick held every plan: the second skipped them
        assert second.schedule() == 0  # and after the first committed, nothing is left
        with psycopg.connect(db_url) as conn:
            [(rounds, distinct, events)] = conn.execute(
                """SELECT count(*), count(DISTINCT (plan_id, slot)),
                          (SELECT count(*) FROM anbu.checkin_round_events)
                   FROM anbu.checkin_rounds"""
            ).fetchall()
        assert (rounds, distinct, events) == (4, 4, 3)
    finally:
        first.db.close()
        second_db.close()
