"""A Shelly Gen1 input's event count decides a press against the database (issue 20): a mains
Gen1 device republishes its last `input_event` every ~30 s with the same count. A worker's
restart must not lose the resident's next real press, a repeat is never a press, and two
workers sharing a subscription raise one count once."""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

import registry
from core.db import Database
from core.domain import ButtonValue, SensorKind
from ingest.store import Message, Store

NOW = datetime(2026, 11, 22, 0, 30, tzinfo=UTC)
GW = "gw-gen1-btn"
DEVICE = "shellyix3-10521CF2C2C2"
TOPIC = f"gw/{GW}/shellies/{DEVICE}/input_event/1"


@pytest.fixture
def sid(database: Database) -> int:
    with database.connection() as conn:
        registry.add_dong(conn, "1111051500", "청운효자동", "종로구")
        rid = registry.add_resident(conn, "home-g1", "1111051500", "홍길동", "+821000000003")
        registry.add_gateway(conn, GW, rid)
        return registry.add_sensor(conn, GW, f"{DEVICE}:1", SensorKind.BUTTON, "bedroom")


def event(count: int, at: datetime, gesture: str = "S") -> Message:
    body = {"event": gesture, "event_cnt": count}
    return Message(TOPIC, json.dumps(body).encode(), False, at)


def rows(db: Database, sql: str, params: Any = None) -> list[tuple[Any, ...]]:
    with db.connection() as conn:
        return list(conn.execute(sql, params).fetchall())


def presses(db: Database, sid: int) -> list[tuple[Any, ...]]:
    return rows(db, "SELECT ts, value FROM anbu.readings WHERE sensor_id = %s ORDER BY ts", (sid,))


def findings(db: Database, sid: int) -> int:
    sql = "SELECT count(*) FROM anbu.findings WHERE details->>'sensor_id' = %s"
    return int(rows(db, sql, (str(sid),))[0][0])


def stored_count(db: Database, sid: int) -> int | None:
    sql = "SELECT event_count FROM anbu.button_event_count WHERE sensor_id = %s"
    found = rows(db, sql, (sid,))
    return found[0][0] if found else None


def test_a_restart_loses_no_press_and_a_repeat_is_none(database: Database, sid: int) -> None:
    t0 = NOW - timedelta(minutes=10)
    first = Store(database).store_batch([event(4, t0)], t0)
    # the first count ever seen for the input is a press (the installer's test press)
    assert (first.stored, first.urgent) == (1, 1)
    assert stored_count(database, sid) == 4
    # the device republishes it every 30 s: a new worker (restart) hears it, reads nothing
    for k in range(1, 4):
        at = t0 + timedelta(seconds=30 * k)
        repeat = Store(database).store_batch([event(4, at)], at)
        assert (repeat.stored, repeat.urgent, repeat.ignored) == (0, 0, 1)
    assert presses(database, sid) == [(t0, ButtonValue.PRESS)]
    assert findings(database, sid) == 1
    # the resident's real press, the first message the restarted worker hears: a press
    t1 = NOW - timedelta(minutes=1)
    restarted = Store(database)
    press = restarted.store_batch([event(5, t1, "L")], t1)
    assert (press.stored, press.urgent) == (1, 1)
    assert presses(database, sid)[-1] == (t1, ButtonValue.LONG)
    assert stored_count(database, sid) == 5
    assert rows(database, "SELECT last_activity_at FROM anbu.home_activity") == [(t1,)]
    # its repeats, after another restart too, are no press, no finding, no activity
    t2 = t1 + timedelta(seconds=30)
    again = Store(database).store_batch(
        [event(5, t2, "L"), event(5, t2 + timedelta(seconds=1))], t2
    )
    assert (again.stored, again.urgent, again.ignored) == (0, 0, 2)
    assert len(presses(database, sid)) == 2
    assert findings(database, sid) == 2
    assert rows(database, "SELECT last_activity_at FROM anbu.home_activity") == [(t1,)]


def test_a_redelivered_batch_and_one_count_in_a_batch_are_one_press(
    database: Database, sid: int
) -> None:
    t0 = NOW - timedelta(minutes=3)
    batch = [
        event(7, t0),
        event(7, t0 + timedelta(seconds=30)),
        event(8, t0 + timedelta(seconds=40)),
    ]
    store = Store(database)
    first = store.store_batch(batch, NOW)
    assert (first.stored, first.ignored) == (2, 1)
    assert presses(database, sid) == [
        (t0, ButtonValue.PRESS), (t0 + timedelta(seconds=40), ButtonValue.PRESS)
    ]  # fmt: skip
    assert stored_count(database, sid) == 8
    raised = findings(database, sid)
    assert raised >= 1
    redelivered = Store(database).store_batch(batch, NOW)  # at-least-once: the same messages
    assert (redelivered.stored, redelivered.urgent, redelivered.ignored) == (0, 0, 3)
    assert len(presses(database, sid)) == 2
    assert findings(database, sid) == raised
    # the device rebooted and counts from 1 again: a new count, a press
    t1 = NOW - timedelta(minutes=1)
    assert Store(database).store_batch([event(1, t1)], t1).stored == 1
    assert stored_count(database, sid) == 1


def test_two_workers_read_one_count_once(database: Database, sid: int) -> None:
    """Two workers of a shared subscription both get the message (a redelivery after a
    reconnect): the second waits on the sensor's row and then sees the first's count."""
    t0 = NOW - timedelta(minutes=2)
    a, b = Store(database), Store(database)
    results: list[Any] = []
    with database.connection() as first:
        out = a.store_in(first, [event(9, t0)], NOW)
        assert (out.summary.stored, out.summary.urgent) == (1, 1)
        worker = threading.Thread(
            target=lambda: results.append(b.store_batch([event(9, t0)], NOW)), daemon=True
        )
        worker.start()
        worker.join(1.0)
        assert worker.is_alive(), "the second worker must wait for the first's row lock"
    worker.join(10.0)
    assert not worker.is_alive()
    assert (results[0].stored, results[0].urgent, results[0].ignored) == (0, 0, 1)
    assert presses(database, sid) == [(t0, ButtonValue.PRESS)]
    assert findings(database, sid) == 1
    assert stored_count(database, sid) == 9
    # and sequentially from two stores, a new count then the same count: one press
    t1 = NOW - timedelta(minutes=1)
    assert a.store_batch([event(10, t1)], NOW).stored == 1
    assert b.store_batch([event(10, t1 + timedelta(seconds=30))], NOW).stored == 0
    assert len(presses(database, sid)) == 2
