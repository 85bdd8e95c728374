"""The simulated town against the real broker and database."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import paho.mqtt.client as mqtt
import psycopg
import pytest
from paho.mqtt.enums import CallbackAPIVersion

import registry
from core.clock import VirtualClock
from core.domain import SensorKind
from simulators.routines import SEOUL
from simulators.servers import EmbeddedMosquitto
from simulators.town import Town, gateway_offline, make_homes, stops_moving
from tests.conftest import INGEST_PASSWORD

START = datetime(2026, 11, 23, 6, 30, tzinfo=SEOUL)


@dataclass
class Inbox:
    """What the ingest user sees on the broker."""

    messages: list[tuple[str, bytes, bool]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def snapshot(self) -> list[tuple[str, bytes, bool]]:
        with self.lock:
            return list(self.messages)


def wait_for(condition: Callable[[], bool], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.05)


@pytest.fixture
def inbox(broker: EmbeddedMosquitto, unique: str) -> Iterator[Inbox]:
    box = Inbox()
    client = mqtt.Client(
        CallbackAPIVersion.VERSION2, client_id=f"town-test-{unique}", protocol=mqtt.MQTTv5
    )
    client.username_pw_set("ingest", INGEST_PASSWORD)
    subscribed = threading.Event()

    def on_connect(c: mqtt.Client, *_: object) -> None:
        c.subscribe("gw/+/anbu/#", qos=1)

    def on_message(_c: mqtt.Client, _u: object, msg: mqtt.MQTTMessage) -> None:
        if msg.topic.startswith(f"gw/gw-{unique}"):
            with box.lock:
                box.messages.append((msg.topic, msg.payload, bool(msg.retain)))

    client.on_connect = on_connect
    client.on_subscribe = lambda *_: subscribed.set()
    client.on_message = on_message
    client.connect("127.0.0.1", broker.port)
    client.loop_start()
    assert subscribed.wait(10)
    yield box
    client.disconnect()
    client.loop_stop()


def test_register_writes_the_registry(db_url: str, unique: str) -> None:
    homes = make_homes(3, seed=2, prefix=f"{unique}h")
    town = Town(homes, "127.0.0.1", 1, VirtualClock(START), seed=2)
    with psycopg.connect(db_url) as conn:
        ids = town.register(conn)
        again = town.register(conn)  # idempotent
    assert ids == again and len(set(ids.values())) == 3
    with psycopg.connect(db_url) as conn:
        residents = conn.execute(
            "SELECT home, dong_code, phone FROM anbu.resident ORDER BY home"
        ).fetchall()
        dongs = conn.execute("SELECT code, name FROM anbu.dong").fetchall()
        sensors = registry.load_sensors(conn)
        gateways = conn.execute("SELECT id, resident_id FROM anbu.gateway").fetchall()
    assert [(r[0], r[1], r[2]) for r in residents] == [
        (h.home, h.dong_code, h.phone) for h in homes
    ]
    assert {code for code, _ in dongs} == {h.dong_code for h in homes}
    assert dongs and all(name != code for code, name in dongs)
    assert sorted(gateways) == sorted((h.gateway_id, ids[h.home]) for h in homes)
    for h in homes:
        for s in h.sensors:
            ref = sensors[(h.gateway_id, s.vendor_id)]
            assert (ref.resident_id, ref.kind, ref.room) == (ids[h.home], s.kind, s.room)


def test_town_publishes_native_readings_on_virtual_time(
    broker: EmbeddedMosquitto, inbox: Inbox, unique: str
) -> None:
    homes = make_homes(2, seed=5, prefix=f"{unique}h")
    clock = VirtualClock(START, speed=3600)  # one virtual hour per second
    stopped_home, stop_at = homes[1], START + timedelta(hours=1)
    town = Town(
        homes,
        "127.0.0.1",
        broker.port,
        clock,
        seed=5,
        scenarios=[stops_moving(homes[1].home, stop_at)],
    )
    for gw, pw in town.credentials().items():
        broker.add_user(gw, pw)
    topics = {h.gateway_id: f"gw/{h.gateway_id}/anbu/readings" for h in homes}

    def readings_from(gw: str) -> list[dict[str, object]]:
        return [
            r for t, p, _ in inbox.snapshot() if t == topics[gw] for r in json.loads(p)["readings"]
        ]

    town.start()
    try:
        wait_for(lambda: clock.now() > START + timedelta(hours=3))
        wait_for(lambda: bool(readings_from(homes[0].gateway_id)))
        seen_until = clock.now()
    finally:
        town.stop()

    def said_offline(gw: str) -> bool:
        return (f"gw/{gw}/anbu/status", b"offline") in [(t, p) for t, p, _ in inbox.snapshot()]

    assert homes
    wait_for(lambda: all(said_offline(h.gateway_id) for h in homes))  # sent after every reading
    msgs = inbox.snapshot()
    for h in homes:
        status = [(p, r) for t, p, r in msgs if t == f"gw/{h.gateway_id}/anbu/status"]
        assert status[0][0] == b"online" and status[-1][0] == b"offline"
    kinds = {h.gateway_id: {s.vendor_id: s.kind for s in h.sensors} for h in homes}
    for h in homes:
        for r in readings_from(h.gateway_id):
            assert set(r) == {"sensor", "kind", "ts", "value"}
            assert kinds[h.gateway_id][str(r["sensor"])] == SensorKind(str(r["kind"]))
            assert str(r["ts"]).endswith("Z")
            ts = datetime.fromisoformat(str(r["ts"]).replace("Z", "+00:00"))
            assert START < ts <= seen_until + timedelta(minutes=1)
            assert isinstance(r["value"], int | float)
    active = readings_from(homes[0].gateway_id)
    assert any(
        datetime.fromisoformat(str(r["ts"]).replace("Z", "+00:00")) > stop_at for r in active
    )
    for r in readings_from(stopped_home.gateway_id):
        ts = datetime.fromisoformat(str(r["ts"]).replace("Z", "+00:00"))
        assert ts < stop_at or (ts == stop_at and r["value"] == 0)
    assert town.published == sum(len(readings_from(h.gateway_id)) for h in homes)


def test_gateway_offline_fires_its_will(
    broker: EmbeddedMosquitto, inbox: Inbox, unique: str
) -> None:
    homes = make_homes(1, seed=8, prefix=f"{unique}w")
    gw = homes[0].gateway_id
    broker.add_user(gw, homes[0].gateway_password)
    clock = VirtualClock(START, speed=3600)
    at, back = START + timedelta(minutes=30), START + timedelta(minutes=90)
    town = Town(homes, "127.0.0.1", broker.port, clock, seed=8)
    town.add_scenario(gateway_offline(homes[0].home, at, back))
    status_topic = f"gw/{gw}/anbu/status"

    def statuses() -> list[bytes]:
        return [p for t, p, _ in inbox.snapshot() if t == status_topic]

    town.start()
    try:
        wait_for(lambda: statuses()[-1:] == [b"offline"])  # the broker published the will
        wait_for(lambda: statuses()[-1:] == [b"online"])  # back after `until`
        assert statuses()[:3] == [b"online", b"offline", b"online"]
    finally:
        town.stop()
    for t, p, _ in inbox.snapshot():
        if t.endswith("/readings"):
            for r in json.loads(p)["readings"]:
                ts = datetime.fromisoformat(str(r["ts"]).replace("Z", "+00:00"))
                assert not at <= ts < back
