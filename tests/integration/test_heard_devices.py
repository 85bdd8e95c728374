"""Devices announcing themselves, heard before they are registered, and registered with what
they sent before: through the real Mosquitto, ingest and PostgreSQL."""

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
from ingest.deadletters import replay_dead_letters
from ingest.devices import list_heard_devices, register_device
from ingest.store import Message, Store
from registry.heard import DeviceNotHeard
from simulators.servers import EmbeddedMosquitto
from tests.integration.test_ingest_consumer import PASSWORD, Gateway, clear_session, eventually

NOW = datetime(2026, 11, 22, 9, 30, tzinfo=UTC)
DOOR_CONFIG = "homeassistant/binary_sensor/0x00158d0004866f11/contact/config"
BATTERY_CONFIG = "homeassistant/sensor/0x00158d0004866f11/battery/config"
PIR_CONFIG = "homeassistant/binary_sensor/hall-node/pir/config"
DEVICE = {"identifiers": ["zigbee2mqtt_0x00158d0004866f11"], "manufacturer": "Aqara",
          "model": "Door and window sensor (MCCGQ11LM)", "name": "Front door"}  # fmt: skip


def rows(db: Database, sql: str, params: Any = None) -> list[tuple[Any, ...]]:
    with db.connection() as conn:
        return list(conn.execute(sql, params).fetchall())


@pytest.fixture
def gateway(database: Database, broker: EmbeddedMosquitto, unique: str) -> Iterator[Gateway]:
    gw = f"{unique}-gwh"
    with database.connection() as conn:
        registry.add_dong(conn, "1111051500", "청운효자동", "종로구")
        rid = registry.add_resident(conn, f"{unique}-hh", "1111051500", "홍길동", "+821000000001")
        registry.add_gateway(conn, gw, rid)
        registry.add_sensor(conn, gw, "kitchen_plug", SensorKind.POWER, "kitchen")
    broker.add_user(gw, PASSWORD)
    client = Gateway(broker, gw)
    yield client
    client.close()


@pytest.fixture
def service(settings: Settings, database: Database) -> Iterator[IngestService]:
    svc = IngestService(settings, database, VirtualClock(NOW))
    svc.start()
    eventually(svc.subscribed.is_set, what="subscription")
    yield svc
    svc.stop()
    clear_session(settings)


def publish(gw: Gateway, topic: str, doc: Any, retain: bool = False) -> None:
    payload = doc if isinstance(doc, bytes) else json.dumps(doc).encode()
    info = gw.client.publish(f"gw/{gw.id}/{topic}", payload, qos=1, retain=retain)
    info.wait_for_publish(10)
    assert gw.acks[info.mid] == 0  # the broker's ACL let it through


def test_a_device_announced_and_heard_before_registration_keeps_its_reading(
    database: Database, gateway: Gateway, service: IngestService
) -> None:
    gw = gateway
    sent = [
        (DOOR_CONFIG, {"device": DEVICE, "device_class": "door", "state_topic": "zigbee2mqtt/Front door",
                       "unique_id": "0x00158d0004866f11_contact_zigbee2mqtt",
                       "value_template": "{{ value_json.contact }}"}, True),
        (BATTERY_CONFIG, {"device": DEVICE, "device_class": "battery",
                          "state_topic": "zigbee2mqtt/Front door"}, True),
        (PIR_CONFIG, {"dev_cla": "motion", "stat_t": "hall-node/binary_sensor/pir/state",
                      "dev": {"ids": "a4cf12345678", "name": "hall-node", "mdl": "esp32dev"}}, True),
        # the door opens before anyone registered it: contact false is open
        ("zigbee2mqtt/Front door", {"contact": False, "battery": 90}, False),
        # a native gateway's reading from a sensor nobody registered: its kind says motion
        ("anbu/readings", {"readings": [{"sensor": "bed_pir", "kind": "motion",
                                         "ts": (NOW - timedelta(minutes=5)).isoformat(),
                                         "value": 1}]}, False),
    ]  # fmt: skip
    for topic, doc, retain in sent:
        publish(gw, topic, doc, retain)
    eventually(lambda: service.stats.acked >= len(sent), what="every message committed")

    heard = {d.device: d for d in list_heard_devices(database, gw.id)}
    assert set(heard) == {"Front door", "hall-node/pir", "bed_pir"}
    door = heard["Front door"]
    assert (door.suggested_kind, door.source, door.model) == (
        SensorKind.DOOR, "zigbee2mqtt", "Door and window sensor (MCCGQ11LM)",
    )  # fmt: skip
    assert (door.dead_letters, door.removed_at, door.first_heard) == (1, None, NOW)
    assert heard["hall-node/pir"].suggested_kind is SensorKind.MOTION
    assert heard["hall-node/pir"].dead_letters == 0
    assert (heard["bed_pir"].suggested_kind, heard["bed_pir"].source) == (
        SensorKind.MOTION,
        "native",
    )
    assert rows(database, "SELECT count(*) FROM anbu.readings") == [(0,)]

    done = register_device(database, gw.id, "Front door", SensorKind.DOOR, "entrance", NOW)
    assert (done.replay.replayed, done.replay.still_dead) == (1, 0)
    stored = rows(database, "SELECT value, ts FROM anbu.readings WHERE sensor_id = %s",
                  (done.sensor_id,))  # fmt: skip
    assert stored == [(1.0, NOW)]  # at the time it was received, not at registration
    # again, and a replay of everything: still stored once; the letter is kept, marked replayed
    again = register_device(database, gw.id, "Front door", SensorKind.DOOR, "entrance", NOW)
    assert (again.sensor_id, again.replay.replayed) == (done.sensor_id, 0)
    replay_dead_letters(database, Store(database), NOW + timedelta(minutes=1))
    assert rows(database, "SELECT count(*) FROM anbu.readings WHERE sensor_id = %s",
                (done.sensor_id,)) == [(1,)]  # fmt: skip
    assert rows(database, """SELECT count(*) FROM anbu.dead_letters
                             WHERE topic LIKE %s AND replayed_at IS NOT NULL""",
                (f"gw/{gw.id}/zigbee2mqtt/%",)) == [(1,)]  # fmt: skip
    assert "Front door" not in {d.device for d in list_heard_devices(database, gw.id)}
    # the bed PIR's letter was not replayed: it is not registered
    assert rows(database, "SELECT replayed_at FROM anbu.dead_letters WHERE topic LIKE %s",
                (f"gw/{gw.id}/anbu/%",)) == [(None,)]  # fmt: skip

    # removed configs (empty retained payloads): marked removed once every config is gone;
    # the registered door's reading stays
    before = service.stats.acked
    for topic in (PIR_CONFIG, DOOR_CONFIG):
        publish(gw, topic, b"", retain=True)
    eventually(lambda: service.stats.acked >= before + 2, what="removals committed")
    pir = {d.device: d for d in list_heard_devices(database, gw.id)}["hall-node/pir"]
    assert pir.removed_at == NOW
    assert rows(database, """SELECT removed_at IS NULL, configs FROM anbu.heard_devices
                             WHERE device = 'Front door'""") == [(True, [BATTERY_CONFIG])]  # fmt: skip
    publish(gw, BATTERY_CONFIG, b"", retain=True)
    eventually(lambda: service.stats.acked >= before + 3, what="the last removal committed")
    assert rows(
        database, "SELECT removed_at FROM anbu.heard_devices WHERE device = 'Front door'"
    ) == [(NOW,)]
    assert rows(database, "SELECT count(*) FROM anbu.readings") == [(1,)]
    assert [d.device for d in list_heard_devices(database, gw.id, include_removed=False)] == [
        "bed_pir"
    ]
    with pytest.raises(DeviceNotHeard, match="never heard"):
        register_device(database, gw.id, "nobody", SensorKind.DOOR, "entrance", NOW)


def test_lists_and_configs_from_the_store(database: Database, unique: str) -> None:
    gw = f"{unique}-gws"
    with database.connection() as conn:
        registry.add_dong(conn, "1111051500", "청운효자동", "종로구")
        rid = registry.add_resident(conn, f"{unique}-hs", "1111051500", "홍길동", "+821000000002")
        registry.add_gateway(conn, gw, rid)
    store = Store(database)

    def z2m_list(*names: str) -> Message:
        devices = [{"friendly_name": "Coordinator", "type": "Coordinator", "definition": None}]
        devices += [{"friendly_name": n, "type": "EndDevice", "definition": {"model": "SNZB-03",
                     "exposes": [{"type": "binary", "property": "occupancy"}]}} for n in names]  # fmt: skip
        return Message(f"gw/{gw}/zigbee2mqtt/bridge/devices", json.dumps(devices).encode(), True)

    store.store_batch([z2m_list("hall_pir", "bath_pir")], NOW)
    later = NOW + timedelta(hours=1)
    store.store_batch([z2m_list("hall_pir")], later)  # bath_pir left the network
    heard = {d.device: d for d in list_heard_devices(database, gw)}
    assert (heard["hall_pir"].removed_at, heard["bath_pir"].removed_at) == (None, later)
    assert heard["hall_pir"].suggested_kind is SensorKind.MOTION
    assert heard["hall_pir"].last_heard == later and heard["hall_pir"].first_heard == NOW
    assert "Coordinator" not in heard
    store.store_batch([z2m_list("hall_pir", "bath_pir")], later)  # paired again
    assert {d.device: d.removed_at for d in list_heard_devices(database, gw)}["bath_pir"] is None

    # Tasmota: the relay's config says appliance, its sensors say it measures power
    config = {"t": "tasmota_4F2A1C", "md": "Sonoff Pow R2", "rl": [1, 0, 0, 0]}
    sensors = {"sn": {"Time": "2026-11-22T18:10:00", "ENERGY": {"Power": 45}}, "ver": 1}
    base = f"gw/{gw}/tasmota/discovery/A4CF124F2A1C"
    summary = store.store_batch(
        [Message(f"{base}/config", json.dumps(config).encode(), True),
         Message(f"{base}/sensors", json.dumps(sensors).encode(), True),
         Message("gw/nobody/tasmota/discovery/AA/config", json.dumps(config).encode(), True)],
        NOW,
    )  # fmt: skip
    assert summary.dead_lettered == 1  # an unknown gateway's announcement
    pow_r2 = {d.device: d for d in list_heard_devices(database, gw)}["tasmota_4F2A1C"]
    assert (pow_r2.suggested_kind, pow_r2.model) == (SensorKind.POWER, "Sonoff Pow R2")
    store.store_batch([Message(f"{base}/config", b"", True)], later)

    # a Shelly Gen2 plug announces nothing anbu reads; its full status, dead-lettered, says power
    plug = "shellyplusplugs-b0b21c1a2b3c"
    rpc = {
        "src": plug,
        "dst": f"{plug}/events",
        "method": "NotifyFullStatus",
        "params": {"ts": NOW.timestamp(), "switch:0": {"id": 0, "output": True, "apower": 42.5}},
    }
    store.store_batch(
        [Message(f"gw/{gw}/{plug}/online", b"true", True, NOW),
         Message(f"gw/{gw}/{plug}/events/rpc", json.dumps(rpc).encode(), False, NOW)],
        NOW,
    )  # fmt: skip
    gen2 = {d.device: d for d in list_heard_devices(database, gw)}[plug]
    assert (gen2.suggested_kind, gen2.source, gen2.dead_letters) == (SensorKind.POWER, "shelly", 2)
    assert {d.device: d.removed_at for d in list_heard_devices(database, gw)}[
        "tasmota_4F2A1C"
    ] == later


def test_the_command_line_lists_and_registers(
    database: Database, db_url: str, unique: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from typer.testing import CliRunner

    from anbu.cli import app, devices_cmds  # noqa: F401

    gw = f"{unique}-gwc"
    with database.connection() as conn:
        registry.add_dong(conn, "1111051500", "청운효자동", "종로구")
        rid = registry.add_resident(conn, f"{unique}-hc", "1111051500", "홍길동", "+821000000003")
        registry.add_gateway(conn, gw, rid)
    announce = {"id": "shellydw2-483FDA825A3C", "model": "SHDW-2", "mac": "483FDA825A3C"}
    Store(database).store_batch(
        [Message(f"gw/{gw}/shellies/announce", json.dumps(announce).encode(), received_at=NOW),
         Message(f"gw/{gw}/shellies/shellydw2-483FDA825A3C/sensor/state", b"open",
                 received_at=NOW)],
        NOW,
    )  # fmt: skip
    monkeypatch.setenv("ANBU_DATABASE_URL", db_url)
    listed = CliRunner().invoke(app, ["devices", "--gateway", gw])
    assert listed.exit_code == 0, listed.output
    assert "shellydw2-483FDA825A3C | 현관문 door | SHDW-2 (shelly)" in listed.output
    assert "| 1 | 있음 present" in listed.output  # its one refused message
    missing = CliRunner().invoke(app, ["devices", "--gateway", "nobody"])
    assert missing.exit_code == 1 and "게이트웨이" in missing.output
    done = CliRunner().invoke(
        app,
        ["devices", "register", "--gateway", gw, "--device", "shellydw2-483FDA825A3C",
         "--kind", "door", "--room", "entrance"],
    )  # fmt: skip
    assert done.exit_code == 0, done.output
    assert "재처리 replayed 1" in done.output
    assert rows(database, "SELECT value, ts FROM anbu.readings") == [(1.0, NOW)]
    assert "등록되지 않은 기기 없음" in CliRunner().invoke(app, ["devices", "--gateway", gw]).output
    bad = CliRunner().invoke(
        app,
        ["devices", "register", "--gateway", gw, "--device", "x", "--kind", "door",
         "--room", "garage"],
    )  # fmt: skip
    assert bad.exit_code != 0
