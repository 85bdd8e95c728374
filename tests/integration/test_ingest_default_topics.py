"""Devices on their default topics, through the real Mosquitto and ingest into PostgreSQL.

One gateway carries a device of every dialect, each publishing where its project puts it out
of the box (under the gateway's `gw/<id>/`, the only subtree the broker's ACL lets it use):
Zigbee2MQTT with attribute output, Tasmota inputs, RF and Zigbee bridges and a three-phase
meter, Shelly Gen2 under its device id, a Shelly BLU door through it, Shelly Gen1 under
`shellies/`, ESPHome under its node name. Each message is stored once (one subscription:
overlapping filters would deliver it twice), and what carries nothing anbu reads is ignored,
not dead-lettered.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

import registry
from core.clock import VirtualClock
from core.config import Settings
from core.db import Database
from core.domain import SensorKind
from ingest.consumer import IngestService
from simulators.servers import EmbeddedMosquitto
from tests.integration.test_ingest_consumer import PASSWORD, Gateway, clear_session, eventually

NOW = datetime(2026, 11, 22, 9, 30, tzinfo=UTC)
AT = NOW - timedelta(minutes=20)  # 09:10 UTC, 18:10 in Seoul
KST = "2026-11-22T18:10:00"  # Tasmota's Time: the device's local time

SENSORS = {
    "z2m_door": ("front_door", SensorKind.DOOR, "entrance"),
    "tas_switch": ("tasmota_door", SensorKind.CONTACT, "other"),
    "rf_pir": ("rfbridge_5A1B2C:E5D80E", SensorKind.MOTION, "living"),
    "zb_door": ("zbbridge_3C4D5E:BackDoor", SensorKind.DOOR, "kitchen"),
    "phase1": ("tasmota_3ph", SensorKind.POWER, "other"),
    "phase2": ("tasmota_3ph:2", SensorKind.POWER, "other"),
    "phase3": ("tasmota_3ph:3", SensorKind.POWER, "other"),
    "gen2": ("shellyplus1pm-a8032ab12345", SensorKind.APPLIANCE, "living"),
    "blu": ("bc:02:6e:c3:c8:b9", SensorKind.DOOR, "bedroom"),
    "gen1_dw": ("shellydw2-483FDA825A3C", SensorKind.DOOR, "bathroom"),
    "gen1_plug": ("shellyplug-s-C8C9A3B1F2E4", SensorKind.POWER, "kitchen"),
    "esp_pir": ("hall-node/pir", SensorKind.MOTION, "living"),
}


@pytest.fixture
def gateway(
    database: Database, broker: EmbeddedMosquitto, unique: str
) -> Iterator[tuple[Gateway, dict[str, int]]]:
    gw = f"{unique}-gwd"
    with database.connection() as conn:
        registry.add_dong(conn, "1111051500", "청운효자동", "종로구")
        rid = registry.add_resident(conn, f"{unique}-hd", "1111051500", "홍길동", "+821000000001")
        registry.add_gateway(conn, gw, rid)
        ids = {
            key: registry.add_sensor(conn, gw, vendor, kind, room)
            for key, (vendor, kind, room) in SENSORS.items()
        }
    broker.add_user(gw, PASSWORD)
    client = Gateway(broker, gw)
    yield client, ids
    client.close()


@pytest.fixture
def service(settings: Settings, database: Database) -> Iterator[IngestService]:
    svc = IngestService(settings, database, VirtualClock(NOW))
    svc.start()
    eventually(svc.subscribed.is_set, what="subscription")
    yield svc
    svc.stop()
    clear_session(settings)


def rows(db: Database, sql: str, params: Any = None) -> list[tuple[Any, ...]]:
    with db.connection() as conn:
        return list(conn.execute(sql, params).fetchall())


def body(doc: Any) -> bytes:
    return doc if isinstance(doc, bytes) else json.dumps(doc).encode()


def rpc(device: str, method: str, params: dict[str, Any]) -> dict[str, Any]:
    return {"src": device, "dst": f"{device}/events", "method": method, "params": params}


def test_every_dialect_on_its_default_topics(
    database: Database, gateway: tuple[Gateway, dict[str, int]], service: IngestService
) -> None:
    gw, ids = gateway
    ts = AT.timestamp()
    blu = {"encryption": False, "BTHome_version": 2, "pid": 118, "battery": 87, "window": 1,
           "rssi": -62, "address": "BC:02:6E:C3:C8:B9"}  # fmt: skip
    zb = {"0x8F20": {"Device": "0x8F20", "Name": "BackDoor", "Contact": 1, "Endpoint": 1,
                     "LinkQuality": 66, "BatteryPercentage": 93}}  # fmt: skip
    messages: list[tuple[str, Any]] = [
        # Zigbee2MQTT, attribute output: contact false = open; a property anbu does not read
        ("zigbee2mqtt/front_door/contact", b"false"),
        ("zigbee2mqtt/front_door/voltage", b"3005"),
        ("zigbee2mqtt/front_door", {"contact": None, "battery": 91}),  # partial, with a null
        # Tasmota: a switch input, an RF code, a Zigbee device, a three-phase meter, a command
        ("tele/tasmota_door/SENSOR", {"Time": KST, "Switch1": "ON"}),
        ("tele/rfbridge_5A1B2C/RESULT", {"Time": KST, "RfReceived": {"Sync": 10120, "Low": 330,
         "High": 980, "Data": "E5D80E", "RfKey": "None"}}),
        ("tele/zbbridge_3C4D5E/SENSOR", {"ZbReceived": zb}),
        ("tele/tasmota_3ph/SENSOR", {"Time": KST, "ENERGY": {"Total": 1523.4,
         "Power": [1200, -350, 80], "Voltage": [221, 223, 220]}}),
        ("cmnd/tasmota_door/POWER", b"TOGGLE"),
        # Shelly Gen2 under its device id, and a BLU door heard through it
        ("shellyplus1pm-a8032ab12345/events/rpc", rpc("shellyplus1pm-a8032ab12345",
         "NotifyStatus", {"ts": ts, "switch:0": {"id": 0, "output": True}})),
        ("shellyplus1pm-a8032ab12345/online", b"true"),
        ("shellyplus1pm-a8032ab12345/events/rpc", rpc("shellyplus1pm-a8032ab12345",
         "NotifyEvent", {"ts": ts, "events": [{"component": "script:1", "id": 1,
         "event": "shelly-blu", "data": blu, "ts": ts}]})),
        # Shelly Gen1 under shellies/
        ("shellies/shellydw2-483FDA825A3C/sensor/state", b"open"),
        ("shellies/shellydw2-483FDA825A3C/sensor/battery", b"97"),
        ("shellies/shellyplug-s-C8C9A3B1F2E4/relay/0/power", b"12.5"),
        ("shellies/announce", {"id": "shellyplug-s-C8C9A3B1F2E4", "model": "SHPLG-S"}),
        # ESPHome under its node name
        ("hall-node/binary_sensor/pir/state", b"ON"),
        ("hall-node/sensor/battery_level/state", b"64"),
        ("hall-node/status", b"offline"),
        # what ESPHome and Tasmota announce by default: heard devices, no readings or dead letters
        ("homeassistant/binary_sensor/hall-node/pir/config", {"dev_cla": "motion",
         "stat_t": "hall-node/binary_sensor/pir/state", "avty_t": "hall-node/status"}),
        ("tasmota/discovery/A4CF124F2A1C/config", {"mac": "A4CF124F2A1C", "t": "tasmota_door"}),
    ]  # fmt: skip
    for topic, doc in messages:
        assert gw.publish(f"gw/{gw.id}/{topic}", body(doc)) == 0  # the ACL lets each through
    eventually(lambda: service.stats.acked >= len(messages), what="every message committed")
    assert service.stats.messages == len(messages)  # each delivered once: one subscription
    assert rows(database, "SELECT topic, reason FROM anbu.dead_letters") == []

    readings = {
        sid: (value, ts)
        for sid, value, ts in rows(database, "SELECT sensor_id, value, ts FROM anbu.readings")
    }
    assert len(rows(database, "SELECT 1 FROM anbu.readings")) == len(readings) == 12
    # device clocks: Tasmota's Time (Seoul local time), Shelly's ts; a phase exporting counts
    stamped = {"tas_switch": 1.0, "rf_pir": 1.0, "phase1": 1200.0, "phase2": 350.0,
               "phase3": 80.0, "gen2": 1.0, "blu": 1.0}  # fmt: skip
    for key, value in stamped.items():
        assert readings[ids[key]] == (value, AT), key
    # no time in the message: the time of receipt (the service's clock)
    on_receipt = {"z2m_door": 1.0, "zb_door": 1.0, "gen1_dw": 1.0, "gen1_plug": 12.5,
                  "esp_pir": 1.0}  # fmt: skip
    for key, value in on_receipt.items():
        assert readings[ids[key]][0] == value, key
        assert NOW <= readings[ids[key]][1] < NOW + timedelta(milliseconds=1), key

    def state(key: str) -> tuple[Any, ...]:
        (row,) = rows(
            database,
            "SELECT value, battery, link_quality, online FROM anbu.sensor_state"
            " WHERE sensor_id = %s",
            (ids[key],),
        )
        return row

    assert state("z2m_door")[:2] == (1.0, 91.0)
    assert state("zb_door")[:3] == (1.0, 93.0, 66.0)
    assert state("blu")[:3] == (1.0, 87.0, -62.0)
    assert state("gen1_dw")[:2] == (1.0, 97.0)
    assert state("gen2")[3] is True
    assert state("esp_pir")[1:] == (64.0, None, False)
    assert rows(database, "SELECT last_door_at FROM anbu.home_activity")[0][0] is not None
