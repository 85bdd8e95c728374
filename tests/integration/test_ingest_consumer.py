"""IngestService end to end: gateways publish to the real Mosquitto, rows land in PostgreSQL."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import paho.mqtt.client as mqtt
import psycopg
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

import registry
from core.clock import VirtualClock
from core.config import Settings
from core.db import Database
from core.domain import SensorKind
from ingest.consumer import IngestService
from simulators.servers import EmbeddedMosquitto

NOW = datetime(2026, 11, 22, 9, 30, tzinfo=UTC)
T0 = datetime(2026, 11, 22, 9, 0, tzinfo=UTC)
PASSWORD = "gw-test-password"
NOT_AUTHORIZED = 0x87  # MQTT 5 PUBACK reason code


def eventually(check: Callable[[], Any], timeout: float = 15.0, what: str = "condition") -> Any:
    """Poll until `check()` is truthy; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what} (last: {value!r})")
        time.sleep(0.02)


class Gateway:
    """A home gateway: MQTT user named after its id, publishing QoS 1."""

    def __init__(self, broker: EmbeddedMosquitto, gateway_id: str) -> None:
        self.id = gateway_id
        self.client = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=gateway_id,
            protocol=mqtt.MQTTv5,
        )
        self.client.username_pw_set(gateway_id, PASSWORD)
        self.acks: dict[int, int] = {}
        self.client.on_publish = self._on_publish
        self.client.connect("127.0.0.1", broker.port)
        self.client.loop_start()

    def _on_publish(self, client: Any, userdata: Any, mid: int, reason: Any, props: Any) -> None:
        self.acks[mid] = reason.value

    def publish(self, topic: str, payload: bytes) -> int:
        """Publish QoS 1 and return the broker's PUBACK reason code."""
        info = self.client.publish(topic, payload, qos=1)
        info.wait_for_publish(10)
        return self.acks[info.mid]

    def readings(
        self, *items: tuple[str, str, datetime, float], as_gateway: str | None = None
    ) -> int:
        body = {
            "readings": [
                {"sensor": s, "kind": k, "ts": ts.isoformat(), "value": v} for s, k, ts, v in items
            ]
        }
        return self.publish(f"gw/{as_gateway or self.id}/anbu/readings", json.dumps(body).encode())

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def clear_session(settings: Settings) -> None:
    """Connect with the ingest client id, clean start and no expiry: the broker drops the session."""
    client = mqtt.Client(
        callback_api_version=CallbackAPIVersion.VERSION2,
        client_id=settings.mqtt_client_id,
        protocol=mqtt.MQTTv5,
    )
    client.username_pw_set(settings.mqtt_username, settings.mqtt_password)
    props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
    props.SessionExpiryInterval = 0
    client.connect(settings.mqtt_host, settings.mqtt_port, clean_start=True, properties=props)
    client.loop_start()
    eventually(client.is_connected, what="session cleanup connect")
    client.disconnect()
    client.loop_stop()


@pytest.fixture
def home(database: Database, broker: EmbeddedMosquitto, unique: str) -> Iterator[dict[str, Any]]:
    gw = f"{unique}-gw1"
    other = f"{unique}-gw2"
    with database.connection() as conn:
        registry.add_dong(conn, "1111051500", "청운효자동", "종로구")
        rid = registry.add_resident(conn, f"{unique}-h1", "1111051500", "홍길동", "+821000000001")
        rid2 = registry.add_resident(conn, f"{unique}-h2", "1111051500", "김철수", "+821000000002")
        registry.add_gateway(conn, gw, rid)
        registry.add_gateway(conn, other, rid2)
        registry.add_sensor(conn, gw, "door1", SensorKind.DOOR, "entrance")
        registry.add_sensor(conn, gw, "pir1", SensorKind.MOTION, "living")
        registry.add_sensor(conn, other, "door1", SensorKind.DOOR, "entrance")
    broker.add_user(gw, PASSWORD)
    broker.add_user(other, PASSWORD)
    gateways = {"gw": Gateway(broker, gw), "other": Gateway(broker, other)}
    yield {"resident": rid, "resident2": rid2, **gateways}
    for g in gateways.values():
        g.close()


@pytest.fixture
def running(settings: Settings, database: Database) -> Iterator[Callable[[], IngestService]]:
    """Starts IngestService instances on demand; stops them and clears the MQTT session after."""
    started: list[IngestService] = []

    def start() -> IngestService:
        service = IngestService(settings, database, VirtualClock(NOW))
        service.start()
        started.append(service)
        eventually(service.subscribed.is_set, what="subscription")
        return service

    yield start
    for service in started:
        service.stop()
    clear_session(settings)


def count(db: Database, sql: str, params: Any = None) -> int:
    with db.connection() as conn:
        row = conn.execute(sql, params).fetchone()
    assert row is not None
    return int(row[0])


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def test_readings_are_stored_once_and_activity_updated(
    database: Database, home: dict[str, Any], running: Callable[[], IngestService]
) -> None:
    service = running()
    gw: Gateway = home["gw"]
    gw.readings(("door1", "door", at(0), 1), ("pir1", "motion", at(1), 1))
    gw.readings(("door1", "door", at(0), 1), ("pir1", "motion", at(1), 1))  # delivered twice
    gw.publish(f"gw/{gw.id}/anbu/status", b"online")
    eventually(lambda: service.stats.messages >= 3 and service.stats.batches >= 1, what="messages")
    eventually(lambda: count(database, "SELECT count(*) FROM anbu.gateway WHERE online") == 1)
    assert count(database, "SELECT count(*) FROM anbu.readings") == 2
    with database.connection() as conn:
        row = conn.execute(
            "SELECT last_activity_at, last_motion_at, last_room FROM anbu.home_activity WHERE resident_id = %s",
            (home["resident"],),
        ).fetchone()
        seen = conn.execute(
            "SELECT last_seen_at FROM anbu.gateway WHERE id = %s", (gw.id,)
        ).fetchone()
    assert row == (at(1), at(1), "living")
    assert seen == (NOW,)
    eventually(lambda: service.stats.stored + service.stats.duplicates == 4, what="counters")
    stats = service.stats
    assert (stats.stored, stats.duplicates, stats.dead_lettered) == (2, 2, 0)


def test_bad_input_is_dead_lettered_and_the_stream_goes_on(
    database: Database, home: dict[str, Any], running: Callable[[], IngestService]
) -> None:
    service = running()
    gw: Gateway = home["gw"]
    topic = f"gw/{gw.id}/anbu/readings"
    gw.publish(topic, b"{malformed")
    gw.publish(
        f"gw/{gw.id}/anbu/readings",
        json.dumps(
            {"readings": [{"sensor": "door7", "kind": "door", "ts": at(0).isoformat(), "value": 1}]}
        ).encode(),
    )
    gw.readings(("door1", "door", at(0), 3))
    gw.readings(("door1", "door", NOW + timedelta(days=1), 1))
    gw.readings(("door1", "door", at(2), 1))  # good, after all the bad ones
    eventually(
        lambda: count(database, "SELECT count(*) FROM anbu.readings") == 1, what="good reading"
    )
    eventually(
        lambda: count(database, "SELECT count(*) FROM anbu.dead_letters") == 4, what="dead letters"
    )
    with database.connection() as conn:
        rows = conn.execute(
            "SELECT topic, payload, reason FROM anbu.dead_letters ORDER BY id"
        ).fetchall()
    assert [r[0] for r in rows] == [topic] * 4
    assert rows[0][1] == b"{malformed" and "not JSON" in rows[0][2]
    assert "unknown sensor 'door7'" in rows[1][2]
    assert "out of range" in rows[2][2]
    assert "in the future" in rows[3][2]
    eventually(lambda: service.stats.dead_lettered == 4, what="counter")


def test_unknown_gateway_is_dead_lettered(
    database: Database,
    broker: EmbeddedMosquitto,
    home: dict[str, Any],
    running: Callable[[], IngestService],
    unique: str,
) -> None:
    service = running()
    stranger_id = f"{unique}-gw9"
    broker.add_user(stranger_id, PASSWORD)
    stranger = Gateway(broker, stranger_id)
    try:
        stranger.readings(("door1", "door", at(0), 1))
        home["gw"].readings(("door1", "door", at(1), 1))
        eventually(lambda: count(database, "SELECT count(*) FROM anbu.readings") == 1)
        eventually(lambda: service.stats.dead_lettered == 1)
        reason = count_reason(database)
        assert f"unknown gateway '{stranger_id}'" in reason
    finally:
        stranger.close()


def count_reason(db: Database) -> str:
    with db.connection() as conn:
        row = conn.execute("SELECT reason FROM anbu.dead_letters").fetchone()
    assert row is not None
    return str(row[0])


def test_a_gateway_cannot_publish_as_another(
    database: Database, home: dict[str, Any], running: Callable[[], IngestService]
) -> None:
    service = running()
    gw: Gateway = home["gw"]
    other: Gateway = home["other"]
    refused = gw.readings(("door1", "door", at(0), 1), as_gateway=other.id)
    assert refused == NOT_AUTHORIZED  # the broker's ACL: gw/<own id>/# only
    other.readings(("door1", "door", at(5), 1))  # published after it: arrives after it would have
    eventually(lambda: count(database, "SELECT count(*) FROM anbu.readings") == 1)
    with database.connection() as conn:
        ts = conn.execute("SELECT ts FROM anbu.readings").fetchone()
    assert ts == (at(5),)
    assert service.stats.messages == 1
    assert count(database, "SELECT count(*) FROM anbu.dead_letters") == 0


def test_ack_only_after_commit_redelivers_after_restart(
    database: Database, db_url: str, home: dict[str, Any], running: Callable[[], IngestService]
) -> None:
    gw: Gateway = home["gw"]
    first = running()
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("ALTER TABLE anbu.readings RENAME TO readings_away")
    for minute in range(3):
        gw.readings(("pir1", "motion", at(minute), 1))
    eventually(
        lambda: first.stats.messages == 3 and first.stats.db_errors >= 2, what="failing retries"
    )
    first.stop()
    assert first.stats.stored == 0 and first.stats.batches == 0
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("ALTER TABLE anbu.readings_away RENAME TO readings")
    gw.readings(("pir1", "motion", at(3), 1))  # while no ingest is connected: queued in the session
    second = running()
    eventually(
        lambda: count(database, "SELECT count(*) FROM anbu.readings") == 4, what="redelivery"
    )
    eventually(lambda: second.stats.stored == 4)
    second.stop()
    # everything was acknowledged: a third instance gets only what is new
    third = running()
    gw.readings(("door1", "door", at(10), 1))
    eventually(lambda: count(database, "SELECT count(*) FROM anbu.readings") == 5)
    eventually(lambda: third.stats.batches >= 1)
    assert third.stats.messages == 1 and third.stats.duplicates == 0
    assert count(database, "SELECT count(*) FROM anbu.readings WHERE value = 1") == 5


def test_a_failing_database_is_retried_until_it_recovers(
    database: Database, db_url: str, home: dict[str, Any], running: Callable[[], IngestService]
) -> None:
    service = running()
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("ALTER TABLE anbu.home_activity RENAME TO home_activity_away")
    home["gw"].readings(("pir1", "motion", at(0), 1))
    eventually(lambda: service.stats.db_errors >= 1, what="a failure")
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("ALTER TABLE anbu.home_activity_away RENAME TO home_activity")
    eventually(
        lambda: count(database, "SELECT count(*) FROM anbu.home_activity") == 1, what="recovery"
    )
    eventually(lambda: service.stats.stored == 1, what="counter")
    assert count(database, "SELECT count(*) FROM anbu.readings") == 1
