"""A shared subscription gets no retained messages at subscribe time (MQTT 5 4.8.2).

Mosquitto before 2.0.13 sent them anyway, and ingest subscribes again on every connect
(Mosquitto does not persist shared subscriptions), so without RETAIN_DO_NOT_SEND every
reconnect would replay every retained status of every gateway.
"""

from __future__ import annotations

import time

import paho.mqtt.client as mqtt
import psycopg
from paho.mqtt.enums import CallbackAPIVersion

from anbu.bench.ingest import messages, publish, register
from core.clock import SystemClock
from core.config import Settings
from core.db import Database
from ingest.consumer import IngestService
from simulators.servers import EmbeddedMosquitto


def retain(port: int, gateway: str, topic: str, payload: bytes) -> None:
    """Publish a retained message as the gateway (an empty payload clears it)."""
    c = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2,
                    client_id=f"{gateway}-retain", protocol=mqtt.MQTTv5)  # fmt: skip
    c.username_pw_set(gateway, "pw")
    c.connect("127.0.0.1", port)
    c.loop_start()
    c.publish(topic, payload, qos=1, retain=True).wait_for_publish(10)
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
    service = IngestService(settings, database, SystemClock())
    service.start()
    try:
        assert service.subscribed.wait(15)
        live, _ = messages([gw], 0, 1, 1)
        publish(broker.port, [gw], live, "pw")
        deadline = time.monotonic() + 15
        while service.stats.stored < 1 and time.monotonic() < deadline:
            time.sleep(0.02)
        stats = service.stats
    finally:
        service.stop()
        retain(broker.port, gw, status, b"")
    assert stats.stored == 1
    assert stats.messages == 1, "the retained status was delivered at subscribe time"
    with psycopg.connect(db_url) as conn:
        row = conn.execute("SELECT online FROM anbu.gateway WHERE id = %s", (gw,)).fetchone()
    assert row is not None and row[0] is not False  # the stale retained 'offline' never came
