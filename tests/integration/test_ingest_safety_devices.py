"""Safety devices (issue 20) stored on a real PostgreSQL: the registered kind picks the value,
a test press is stored as a test, and only a button press is a sign of a person."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

import registry
from core.db import Database
from core.domain import AlarmValue, ButtonValue, SensorKind
from ingest.store import Message, Store

NOW = datetime(2026, 11, 22, 0, 30, tzinfo=UTC)
GW = "gw-safety"


@pytest.fixture
def ids(database: Database) -> dict[str, int]:
    with database.connection() as conn:
        registry.add_dong(conn, "1111051500", "청운효자동", "종로구")
        rid = registry.add_resident(conn, "home-s", "1111051500", "홍길동", "+821000000002")
        registry.add_gateway(conn, GW, rid)
        add = registry.add_sensor
        return {
            "resident": rid,
            "pendant": add(conn, GW, "pendant", SensorKind.BUTTON, "bedroom"),
            "smoke": add(conn, GW, "kitchen_smoke", SensorKind.SMOKE, "kitchen"),
            "gas": add(conn, GW, "zbbridge:Boiler", SensorKind.GAS, "kitchen"),
        }


def msg(topic: str, body: Any, at: datetime) -> Message:
    return Message(f"gw/{GW}/{topic}", json.dumps(body).encode(), False, at)


def rows(db: Database, sql: str, params: Any = None) -> list[tuple[Any, ...]]:
    with db.connection() as conn:
        return list(conn.execute(sql, params).fetchall())


def readings(db: Database, sid: int) -> list[tuple[Any, ...]]:
    return rows(db, "SELECT ts, value FROM anbu.readings WHERE sensor_id = %s ORDER BY ts", (sid,))


def test_alarms_and_tests_are_stored_and_are_no_activity(
    database: Database, ids: dict[str, int]
) -> None:
    store = Store(database)
    t1, t2 = NOW - timedelta(minutes=3), NOW - timedelta(minutes=2)
    zb = {"ZbReceived": {"0x8F23": {"Device": "0x8F23", "Name": "Boiler", "CO": 1}}}
    summary = store.store_batch(
        [
            msg("zigbee2mqtt/kitchen_smoke", {"smoke": True, "test": True, "battery_low": True}, t1),
            msg("zigbee2mqtt/kitchen_smoke", {"smoke": False, "test": False, "battery": 80}, t2),
            msg("tele/zbbridge/SENSOR", zb, t2),
        ],
        NOW,
    )  # fmt: skip
    assert (summary.stored, summary.dead_lettered) == (3, 0)
    assert readings(database, ids["smoke"]) == [(t1, AlarmValue.TEST), (t2, AlarmValue.CLEAR)]
    assert readings(database, ids["gas"]) == [(t2, AlarmValue.ALARM)]
    assert rows(database, "SELECT count(*) FROM anbu.home_activity")[0][0] == 0


def test_a_press_is_activity_and_a_cancel_is_not(database: Database, ids: dict[str, int]) -> None:
    store = Store(database)
    t1, t2 = NOW - timedelta(minutes=5), NOW - timedelta(minutes=1)
    first = store.store_batch(
        [msg("zigbee2mqtt/pendant", {"action": "release"}, t1),
         msg("zigbee2mqtt/pendant", {"action": "cancel"}, t1)],
        NOW,
    )  # fmt: skip
    assert (first.stored, first.ignored) == (1, 1)
    assert readings(database, ids["pendant"]) == [(t1, ButtonValue.CANCEL)]
    assert rows(database, "SELECT count(*) FROM anbu.home_activity")[0][0] == 0
    store.store_batch([msg("zigbee2mqtt/pendant", {"action": "emergency"}, t2)], NOW)
    assert readings(database, ids["pendant"])[-1] == (t2, ButtonValue.PRESS)
    assert rows(
        database,
        "SELECT last_activity_at, last_room, last_motion_at FROM anbu.home_activity",
    ) == [(t2, "bedroom", None)]
