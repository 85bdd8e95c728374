"""A shared subscription gets no retained messages at subscribe time (MQTT 5 4.8.2).

Mosquitto before 2.0.13 sent them anyway, and ingest subscribes again on every connect
(Mosquitto does not persist shared subscriptions), so without RETAIN_DO_NOT_SEND every
reconnect would replay every retained status of every gateway. The retained status is first
seen on the broker by a fresh subscriber (with the retain flag), so that its absence at
ingest is ingest's doing, not a set-up that never retained anything.
"""

from __future__ import annotations

import queue
import threading
from typing import Any

import paho.mqtt.client as mqtt
import psycopg
from paho.mqtt.enums import CallbackAPIVersion

from anbu.bench.ingest import messages, publish, register
from core.clock import SystemClock
from core.config import Settings
from core.db import Database
from ingest.consumer import IngestService
from simulators.servers import EmbeddedMosquitto
from tests.integration.test_ingest_store_process import eventually


def retain(port: int, gateway: str, topic: str, payload: bytes) -> None:
    """Publish a retained message as the gateway (an empty payload clears it)."""
    c = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2,
                    client_id=f"{gateway}-retain", protocol=mqtt.MQTTv5)  # fmt: skip
    c.username_pw_set(gateway, "pw")
    c.connect("127.0.0.1", port)
    c.loop_start()
    info = c.publish(topic, payload, qos=1, retain=True)
    info.wait_for_publish(10)
    assert info.is_published(), "the broker did not acknowledge the retained message"
    c.disconnect()
    c.loop_stop()


def retained_at_subscribe(port: int, gateway: str, topic: str) -> tuple[bytes, bool]:
    """What a fresh subscriber to `topic` is sent at once: (payload, retain flag).

    Waits for the SUBACK, then for the message; a retained message comes with the SUBACK.
    """
    got: queue.Queue[tuple[bytes, bool]] = queue.Queue()
    subscribed = threading.Event()
    c = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2,
                    client_id=f"{gateway}-look", protocol=mqtt.MQTTv5)  # fmt: skip
    c.username_pw_set(gateway, "pw")
    c.on_message = lambda _c, _u, m: got.put((bytes(m.payload), bool(m.retain)))
    c.on_subscribe = lambda *_: subscribed.set()

    def on_connect(client: mqtt.Client, *_: Any) -> None:
        client.subscribe(topic, qos=1)

    c.on_connect = on_connect
    c.connect("127.0.0.1", port)
    c.loop_start()
    try:
        assert subscribed.wait(10), "no SUBACK"
        try:
            return got.get(timeout=10)
        except queue.Empty:
            raise AssertionError(f"the broker holds nothing retained on {topic}") from None
    finally:
        c.disconnect()
        c.loop_stop()


def test_no_retained_replay_when_ingest_subscribes(
    settings: Settings, database: Database, broker: EmbeddedMosquitto, db_url: str, unique: str
) -> None:
    gw = f"ret{unique}"
    broker.add_user(gw, "pw")
    register(db_url, [gw])
    status = f"gw/{gw}/anbu/status"
    retain(broker.port, gw, status, b"offline")
    # the set-up holds: the broker keeps the status and gives it to a new subscriber, retained
    assert retained_at_subscribe(broker.port, gw, status) == (b"offline", True)
    service = IngestService(settings, database, SystemClock())
    service.start()
    try:
        assert service.subscribed.wait(15)
        live, _ = messages([gw], 0, 1, 1)
        publish(broker.port, [gw], live, "pw")
        eventually(lambda: service.stats.stored >= 1, what="the live reading stored")
        stats = service.stats
    finally:
        service.stop()
        retain(broker.port, gw, status, b"")
    assert stats.stored == 1
    # a retained message comes with the SUBACK, before anything published after it
    assert stats.messages == 1, "the retained status was delivered at subscribe time"
    with psycopg.connect(db_url) as conn:
        row = conn.execute("SELECT online FROM anbu.gateway WHERE id = %s", (gw,)).fetchone()
    assert row is not None and row[0] is not False  # the stale retained 'offline' never came
