"""The in-process broker (amqtt) that `anbu demo` uses when Mosquitto is not installed."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from core.clock import VirtualClock
from simulators.inproc_broker import InProcessBroker
from simulators.routines import SEOUL
from simulators.servers import free_port
from simulators.town import Town, make_homes

INGEST = ("ingest", "ingest-secret")


def wait_for(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.05)


class Peer:
    """A paho client that records its connection result and what it receives."""

    def __init__(self, port: int, client_id: str, user: str, password: str, **kw: Any) -> None:
        protocol = kw.pop("protocol", mqtt.MQTTv311)
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=client_id, protocol=protocol, **kw
        )
        self.client.username_pw_set(user, password)
        self.connected = threading.Event()
        self.result: Any = None
        self.session_present = False
        self.received: list[tuple[str, bytes, int]] = []
        self.client.on_connect = self._on_connect
        self.client.on_message = lambda _c, _u, m: self.received.append((m.topic, m.payload, m.qos))
        self.subacks: list[Any] = []
        self.suback = threading.Event()
        self.client.on_subscribe = self._on_subscribe
        self.port = port

    def _on_subscribe(self, _c: mqtt.Client, _u: object, _mid: int, codes: Any, _p: Any) -> None:
        self.subacks.append(codes)
        self.suback.set()

    def subscribe(self, topic: str, qos: int = 1) -> None:
        """Subscribe and wait for the broker's SUBACK, which must grant it."""
        self.suback.clear()
        self.client.subscribe(topic, qos=qos)
        assert self.suback.wait(5), "no SUBACK"
        assert not any(code.is_failure for code in self.subacks[-1]), self.subacks[-1]

    def _on_connect(
        self, _c: mqtt.Client, _u: object, flags: Any, rc: Any, _p: object = None
    ) -> None:
        self.result = rc
        self.session_present = bool(flags.session_present)
        self.connected.set()

    def connect(self) -> Peer:
        self.client.connect("127.0.0.1", self.port, keepalive=10)
        self.client.loop_start()
        return self

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def inproc() -> Iterator[InProcessBroker]:
    broker = InProcessBroker(free_port(), dict([INGEST]))
    broker.start()
    yield broker
    broker.stop()


def test_mqtt311_qos1_acl_and_auth(inproc: InProcessBroker) -> None:
    inproc.add_user("gw-a", "pa")
    ingest = Peer(inproc.port, "ingest-1", *INGEST).connect()
    assert ingest.connected.wait(5) and not ingest.result.is_failure
    ingest.subscribe("gw/#")
    gw = Peer(inproc.port, "gw-a", "gw-a", "pa").connect()
    assert gw.connected.wait(5) and not gw.result.is_failure
    gw.client.publish("gw/gw-b/anbu/readings", b"not mine", qos=1).wait_for_publish(5)
    gw.client.publish("gw/gw-a/anbu/readings", b"mine", qos=1).wait_for_publish(5)
    wait_for(lambda: bool(ingest.received))
    assert ingest.received == [("gw/gw-a/anbu/readings", b"mine", 1)]

    intruder = Peer(inproc.port, "x", "gw-a", "wrong").connect()
    assert intruder.connected.wait(5) and intruder.result.is_failure
    for p in (ingest, gw, intruder):
        p.close()


def test_persistent_session_keeps_qos1_messages(inproc: InProcessBroker) -> None:
    inproc.add_user("gw-p", "pp")
    first = Peer(inproc.port, "ingest-p", *INGEST, clean_session=False).connect()
    assert first.connected.wait(5)
    first.subscribe("gw/#")
    first.close()
    gw = Peer(inproc.port, "gw-p", "gw-p", "pp").connect()
    assert gw.connected.wait(5)
    gw.client.publish("gw/gw-p/anbu/readings", b"while away", qos=1).wait_for_publish(5)
    again = Peer(inproc.port, "ingest-p", *INGEST, clean_session=False).connect()
    assert again.connected.wait(5) and again.session_present
    wait_for(lambda: any(p == b"while away" for _, p, _ in again.received))
    gw.close()
    again.close()


def test_mqtt5_clients_are_not_served(inproc: InProcessBroker) -> None:
    """amqtt 0.12 speaks MQTT 3.1.1 only: an MQTT 5 client never gets a successful CONNACK."""
    v5 = Peer(inproc.port, "v5", *INGEST, protocol=mqtt.MQTTv5).connect()
    v5.connected.wait(2)
    assert v5.result is None or v5.result.is_failure
    v5.client.loop_stop()


def test_town_publishes_over_mqtt311(inproc: InProcessBroker) -> None:
    start = datetime(2026, 11, 23, 7, 0, tzinfo=SEOUL)
    clock = VirtualClock(start, speed=3600)
    homes = make_homes(2, seed=3, prefix="ip")
    town = Town(homes, "127.0.0.1", inproc.port, clock, seed=3, mqtt_protocol=4)
    for user, password in town.credentials().items():
        inproc.add_user(user, password)
    ingest = Peer(inproc.port, "ingest-t", *INGEST).connect()
    assert ingest.connected.wait(5)
    ingest.subscribe("gw/+/anbu/#")
    town.start()
    try:
        wait_for(
            lambda: (
                {t for t, _, _ in ingest.received if t.endswith("/readings")}
                == {f"gw/{h.gateway_id}/anbu/readings" for h in homes}
            )
        )
    finally:
        town.stop()
    for topic, payload, qos in ingest.received:
        if topic.endswith("/readings"):
            assert qos == 1
            for r in json.loads(payload)["readings"]:
                ts = datetime.fromisoformat(r["ts"].replace("Z", "+00:00"))
                assert start < ts <= clock.now() + timedelta(minutes=1)
    assert (f"gw/{homes[0].gateway_id}/anbu/status", b"online", 1) in ingest.received
    ingest.close()
