"""Vendor dialects stored on a real PostgreSQL: readings, sensor_state, liveness, dead letters."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

import registry
from core.db import Database
from core.domain import SensorKind
from ingest.deadletters import list_dead_letters, replay_dead_letters
from ingest.store import Message, Store

NOW = datetime(2026, 11, 22, 0, 30, tzinfo=UTC)
GW = "gw-v"


@pytest.fixture
def ids(database: Database) -> dict[str, int]:
    with database.connection() as conn:
        registry.add_dong(conn, "1111051500", "청운효자동", "종로구")
        rid = registry.add_resident(conn, "home-v", "1111051500", "홍길동", "+821000000001")
        registry.add_gateway(conn, GW, rid)
        add = registry.add_sensor
        return {
            "resident": rid,
            "door": add(conn, GW, "front_door", SensorKind.DOOR, "entrance"),
            "pir": add(conn, GW, "living/pir", SensorKind.MOTION, "living"),
            "plug": add(conn, GW, "tasmota_4F2A1C", SensorKind.POWER, "kitchen"),
            "shelly": add(conn, GW, "shellyplus1pm-a8", SensorKind.APPLIANCE, "living"),
            "esp": add(conn, GW, "hall-node/front_door", SensorKind.CONTACT, "other"),
        }


def z2m(device: str, body: Any, retained: bool = False, at: datetime = NOW) -> Message:
    payload = body if isinstance(body, bytes) else json.dumps(body).encode()
    return Message(f"gw/{GW}/zigbee2mqtt/{device}", payload, retained, at)


def rows(db: Database, sql: str, params: Any = None) -> list[tuple[Any, ...]]:
    with db.connection() as conn:
        return list(conn.execute(sql, params).fetchall())


def state(db: Database, sid: int) -> tuple[Any, ...]:
    (row,) = rows(
        db,
        """SELECT value, since, last_reading_at, battery, link_quality, online, energy_kwh
           FROM anbu.sensor_state WHERE sensor_id = %s""",
        (sid,),
    )
    return row


def t(minutes: float) -> datetime:
    return NOW - timedelta(minutes=60 - minutes)


def iso(minutes: float) -> str:
    return t(minutes).isoformat()


def test_zigbee2mqtt_door_state_battery_and_availability(
    database: Database, ids: dict[str, int]
) -> None:
    store = Store(database)
    door = ids["door"]
    first = store.store_batch(
        [
            z2m("front_door", {"contact": True, "battery": 91, "linkquality": 87, "last_seen": iso(0)}),
            z2m("front_door", {"contact": True, "battery": 90, "last_seen": iso(5)}),
            z2m("front_door", {"contact": False, "linkquality": 80, "last_seen": iso(10)}),
        ],
        NOW,
    )  # fmt: skip
    assert (first.stored, first.dead_lettered) == (3, 0)
    assert state(database, door) == (1.0, t(10), t(10), 90.0, 80.0, None, None)
    act = rows(database, "SELECT last_door_at FROM anbu.home_activity")
    assert act == [(t(10),)]  # the first reading (closed) and the open are changes; 0 -> 0 is not
    # a door staying open: `since` does not move; battery-only update is not a reading
    store.store_batch(
        [
            z2m("front_door", {"contact": False, "last_seen": iso(20)}),
            z2m("front_door", {"battery": 89, "last_seen": iso(25)}),
            z2m("front_door/availability", {"state": "offline"}),
        ],
        NOW,
    )
    assert state(database, door) == (1.0, t(10), t(25), 89.0, 80.0, False, None)
    assert rows(database, "SELECT count(*) FROM anbu.readings")[0][0] == 4
    assert rows(database, "SELECT last_door_at FROM anbu.home_activity") == [(t(10),)]
    store.store_batch([z2m("front_door/availability", b"online")], NOW)  # legacy payload
    assert state(database, door)[5] is True
    assert rows(database, "SELECT count(*) FROM anbu.dead_letters")[0][0] == 0


def test_redelivery_and_out_of_order_keep_state_right(
    database: Database, ids: dict[str, int]
) -> None:
    store = Store(database)
    msgs = [
        z2m("living/pir", {"occupancy": v, "last_seen": iso(m)}) for m, v in ((1, True), (2, False))
    ]
    store.store_batch(msgs, NOW)
    again = store.store_batch(
        [*msgs, z2m("living/pir", {"occupancy": True, "last_seen": iso(0)})], NOW
    )
    assert (again.stored, again.duplicates) == (1, 2)
    assert state(database, ids["pir"])[:3] == (0.0, t(2), t(2))  # an older reading moves nothing
    assert rows(database, "SELECT last_motion_at FROM anbu.home_activity") == [(t(1),)]


def test_retained_state_without_device_time_is_not_news(
    database: Database, ids: dict[str, int]
) -> None:
    store = Store(database)
    store.store_batch([z2m("living/pir", {"occupancy": True, "battery": 50}, retained=True)], NOW)
    assert rows(database, "SELECT count(*) FROM anbu.readings")[0][0] == 0
    assert rows(database, "SELECT count(*) FROM anbu.home_activity")[0][0] == 0
    store.store_batch([z2m("living/pir", {"occupancy": True})], NOW)  # live: a reading at receipt
    assert rows(database, "SELECT ts FROM anbu.readings") == [(NOW,)]
    assert rows(database, "SELECT count(*) FROM anbu.dead_letters")[0][0] == 0


def test_tasmota_shelly_esphome(database: Database, ids: dict[str, int]) -> None:
    store = Store(database)
    sensor = {"Time": "2026-11-22T09:10:00", "ENERGY": {"Power": 45, "Total": 1.5}}
    rpc = {
        "method": "NotifyStatus",
        "params": {"ts": t(30).timestamp(), "switch:0": {"id": 0, "output": True, "apower": 3}},
    }
    summary = store.store_batch(
        [
            Message(f"gw/{GW}/tele/tasmota_4F2A1C/SENSOR", json.dumps(sensor).encode()),
            Message(f"gw/{GW}/tele/tasmota_4F2A1C/LWT", b"Offline"),
            Message(f"gw/{GW}/shelly/shellyplus1pm-a8/events/rpc", json.dumps(rpc).encode()),
            Message(f"gw/{GW}/esphome/hall-node/binary_sensor/front_door/state", b"ON"),
            Message(f"gw/{GW}/esphome/hall-node/sensor/battery_level/state", b"64"),
            Message(f"gw/{GW}/esphome/hall-node/status", b"offline"),
            Message(f"gw/{GW}/tele/tasmota_4F2A1C/INFO1", b"{}"),
        ],
        NOW,
    )
    assert (summary.stored, summary.dead_lettered, summary.ignored) == (3, 0, 1)
    plug = state(database, ids["plug"])
    assert plug[:3] == (45.0, t(40), t(40)) and plug[5:] == (False, 1.5)  # 09:10 KST = 00:10 UTC
    assert state(database, ids["shelly"])[:2] == (1.0, t(30))
    esp = state(database, ids["esp"])
    assert (esp[0], esp[1], esp[3], esp[5]) == (1.0, NOW, 64.0, False)


def test_dead_letter_replayed_after_a_late_registration(
    database: Database, ids: dict[str, int]
) -> None:
    store = Store(database, registry_refresh_s=0)
    store.store_batch(
        [
            z2m("kitchen_pir", {"occupancy": True, "last_seen": iso(3)}),
            z2m("front_door", b"not json"),
        ],
        NOW,
    )
    letters = list_dead_letters(database)
    assert sorted(d.reason.split(" ")[0] for d in letters) == ["payload", "unknown"]
    with database.connection() as conn:
        registry.add_sensor(conn, GW, "kitchen_pir", SensorKind.MOTION, "kitchen")
    later = NOW + timedelta(hours=1)
    result = replay_dead_letters(database, store, later)
    assert (result.replayed, result.still_dead) == (1, 1)
    assert rows(database, "SELECT count(*) FROM anbu.readings")[0][0] == 1
    assert rows(database, "SELECT last_room FROM anbu.home_activity") == [("kitchen",)]
    pending = list_dead_letters(database)
    assert [d.topic.endswith("front_door") for d in pending] == [True]
    done = list_dead_letters(database, include_replayed=True)
    assert sorted(d.replayed_at is not None for d in done) == [False, True]
    assert replay_dead_letters(database, store, later).replayed == 0  # idempotent


def test_values_stamped_on_receipt_in_one_batch_are_all_kept(
    database: Database, ids: dict[str, int]
) -> None:
    """No device clock: each value takes the time of receipt, moved a tick past the values
    before it in the batch for that sensor, so none hides another under the unique key."""
    store = Store(database)
    msgs = [
        z2m("living/pir", {"occupancy": True, "last_seen": NOW.isoformat()}),  # device time
        z2m("living/pir", {"occupancy": False}),
        z2m("living/pir", {"occupancy": True}),
        z2m("living/pir", {"occupancy": False}),
    ]
    summary = store.store_batch(msgs, NOW)
    assert (summary.stored, summary.duplicates) == (4, 0)
    tick = timedelta(microseconds=1)
    assert rows(database, "SELECT ts, value FROM anbu.readings ORDER BY ts") == [
        (NOW, 1.0),
        (NOW + tick, 0.0),
        (NOW + 2 * tick, 1.0),
        (NOW + 3 * tick, 0.0),
    ]
    assert state(database, ids["pir"])[:3] == (0.0, NOW + 3 * tick, NOW + 3 * tick)
    assert rows(database, "SELECT last_motion_at FROM anbu.home_activity") == [(NOW + 2 * tick,)]
