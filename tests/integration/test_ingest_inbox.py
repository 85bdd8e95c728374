"""Memory, identity and clock of the ingest consumer (issue 13), on the real Mosquitto and
PostgreSQL: a QoS 0 flood while storing is blocked is capped and counted, QoS 1 messages are
never dropped, replicas with their own client ids never kick each other off, and a step of the
ingest host's wall clock changes neither receipt times nor what counts as "in the future"."""

from __future__ import annotations

import json
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
from core.clock import Clock, SystemClock, VirtualClock
from core.config import Settings
from core.db import Database
from core.domain import SensorKind
from ingest.consumer import IngestService
from simulators.servers import EmbeddedMosquitto
from tests.integration.test_ingest_consumer import PASSWORD, Gateway, eventually

T0 = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
CAP = 50


def _body(sensor: str, kind: str, i: int) -> bytes:
    ts = (T0 + timedelta(seconds=i)).isoformat()
    return json.dumps({"readings": [{"sensor": sensor, "kind": kind, "ts": ts, "value": i % 2}]})\
        .encode()  # fmt: skip


def _clear_session(settings: Settings, client_id: str) -> None:
    """Connect with clean start and no expiry: the broker forgets that client id's session."""
    client = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id=client_id,
                         protocol=mqtt.MQTTv5)  # fmt: skip
    client.username_pw_set(settings.mqtt_username, settings.mqtt_password)
    props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
    props.SessionExpiryInterval = 0
    client.connect(settings.mqtt_host, settings.mqtt_port, clean_start=True, properties=props)
    client.loop_start()
    eventually(client.is_connected, what="session cleanup connect")
    client.disconnect()
    client.loop_stop()


@pytest.fixture
def gateway(database: Database, broker: EmbeddedMosquitto, unique: str) -> Iterator[Gateway]:
    gw = f"{unique}-gw1"
    with database.connection() as conn:
        registry.add_dong(conn, "1111051500", "청운효자동", "종로구")
        rid = registry.add_resident(conn, f"{unique}-h1", "1111051500", "홍길동", "+821000000001")
        registry.add_gateway(conn, gw, rid)
        registry.add_sensor(conn, gw, "door1", SensorKind.DOOR, "entrance")
        registry.add_sensor(conn, gw, "pir1", SensorKind.MOTION, "living")
    broker.add_user(gw, PASSWORD)
    g = Gateway(broker, gw)
    yield g
    g.close()


@pytest.fixture
def services(database: Database) -> Iterator[Callable[[Settings], IngestService]]:
    """Starts consumers on demand; stops them and clears their sessions after."""
    started: list[tuple[Settings, IngestService]] = []

    def start(settings: Settings, clock: Clock | None = None, **kw: Any) -> IngestService:
        service = IngestService(settings, database, clock or SystemClock(), **kw)
        service.start()
        started.append((settings, service))
        eventually(service.subscribed.is_set, what="subscription")
        return service

    yield start
    for _, service in started:
        service.stop()
    for settings, service in started:
        _clear_session(settings, service.client_id)


def _readings(database: Database, sensor: str) -> int:
    with database.connection() as conn:
        row = conn.execute(
            """SELECT count(*) FROM anbu.readings r JOIN anbu.sensor s ON s.id = r.sensor_id
               WHERE s.vendor_id = %s""",
            (sensor,),
        ).fetchone()
    assert row is not None
    return int(row[0])


def _store_waits_for_lock(db_url: str) -> bool:
    with psycopg.connect(db_url) as conn:
        row = conn.execute(
            """SELECT count(*) FROM pg_stat_activity
               WHERE datname = current_database() AND wait_event_type = 'Lock'"""
        ).fetchone()
    return row is not None and int(row[0]) > 0


def test_a_qos0_flood_while_storing_is_blocked_is_capped_and_qos1_is_never_dropped(
    settings: Settings,
    database: Database,
    db_url: str,
    gateway: Gateway,
    services: Callable[..., IngestService],
) -> None:
    service = services(settings.model_copy(update=dict(ingest_inbox_max=CAP)), batch_size=10,
                       max_batches_in_flight=1)  # fmt: skip
    topic = f"gw/{gateway.id}/anbu/readings"
    with psycopg.connect(db_url) as locker:
        locker.execute("LOCK TABLE anbu.readings IN EXCLUSIVE MODE")  # writes wait, reads go
        gateway.client.publish(topic, _body("pir1", "motion", 0), qos=0).wait_for_publish(10)
        eventually(lambda: _store_waits_for_lock(db_url), what="the storing process blocked")

        flood = 300  # QoS 0, as firmware defaults send
        for i in range(1, flood + 1):
            gateway.client.publish(topic, _body("pir1", "motion", i), qos=0)
        eventually(lambda: service.stats.messages == flood + 1, what="the flood received")
        stats = service.stats
        # one message in the batch the storing process holds, the inbox full, the rest dropped
        assert service.inbox_size == CAP
        assert stats.dropped == flood + 1 - 1 - CAP
        assert stats.paused == 0

        sent = 30  # QoS 1: unacknowledged, never dropped; reading pauses instead
        for i in range(sent):
            assert gateway.readings(("door1", "door", T0 + timedelta(seconds=i), i % 2)) == 0
        eventually(lambda: service.stats.paused >= 1, what="reading paused on a full inbox")
        assert service.inbox_size <= CAP
        assert service.stats.dropped == stats.dropped
        assert _readings(database, "door1") == 0
        locker.rollback()  # storing goes on

    eventually(lambda: _readings(database, "door1") == sent, what="every QoS 1 reading stored")
    eventually(lambda: _readings(database, "pir1") == 1 + CAP, what="the QoS 0 kept")
    assert service.stats.dropped == stats.dropped  # no QoS 1 message among them
    assert service.inbox_size <= CAP


def test_replicas_with_their_own_ids_never_kick_each_other_off(
    settings: Settings, gateway: Gateway, services: Callable[..., IngestService]
) -> None:
    a = services(settings.model_copy(update=dict(ingest_replicas=2, ingest_replica="0")))
    b = services(settings.model_copy(update=dict(ingest_replicas=2, ingest_replica="1")))
    assert (a.client_id, b.client_id) == (f"{settings.mqtt_client_id}-0",
                                          f"{settings.mqtt_client_id}-1")  # fmt: skip
    # both receive from the shared group after both connected: a kicked one would have had to
    # connect again to receive anything
    i = 0
    while not (a.stats.messages and b.stats.messages):
        assert gateway.readings(("door1", "door", T0 + timedelta(seconds=i), i % 2)) == 0
        i += 1
        assert i < 500, "the shared group never gave both replicas a message"
    eventually(lambda: a.stats.messages + b.stats.messages == i, what="every message received")
    for s in (a.stats, b.stats):
        assert (s.connects, s.taken_over) == (1, 0)


def test_two_consumers_with_one_client_id_are_seen_kicking_each_other_off(
    settings: Settings, services: Callable[..., IngestService]
) -> None:
    """The control: what the replica ids prevent shows in the connect counts (Mosquitto 2.0.11
    closes the old connection without saying why, so `taken_over` stays 0 here)."""
    same = settings.model_copy(update=dict(ingest_replicas=2, ingest_replica="0"))
    first = services(same)
    second = IngestService(same, Database(settings.database_url or "", 1, 1), SystemClock())
    second.start()
    try:
        eventually(lambda: first.stats.connects >= 2, what="the first one kicked off")
    finally:
        second.stop()


def test_several_replicas_refuse_the_default_client_id(
    settings: Settings, database: Database
) -> None:
    shared = settings.model_copy(update=dict(mqtt_client_id="anbu-ingest-1", ingest_replicas=3))
    service = IngestService(shared, database, SystemClock())
    with pytest.raises(ValueError, match="ANBU_INGEST_REPLICAS=3 but every replica"):
        service.start()
    assert service.stats.connects == 0


def _db_now(db_url: str) -> datetime:
    with psycopg.connect(db_url) as conn:
        row = conn.execute("SELECT date_trunc('second', clock_timestamp())").fetchone()
    assert row is not None
    return row[0]  # type: ignore[no-any-return]


@pytest.mark.parametrize(
    ("step", "database_time"),
    [
        (timedelta(minutes=-10), True),
        (timedelta(minutes=-10), False),  # the control: what the database's clock prevents
        (timedelta(hours=2), True),
        (timedelta(hours=2), False),
    ],
)
def test_a_host_clock_step_changes_neither_receipt_nor_the_future(
    step: timedelta,
    database_time: bool,
    settings: Settings,
    database: Database,
    db_url: str,
    gateway: Gateway,
    services: Callable[..., IngestService],
) -> None:
    """Back 10 minutes: a device-stamped reading of now looked 'in the future' and was
    dead-lettered. Forward 2 hours: readings were received 2 hours late, masking inactivity."""
    host = VirtualClock(datetime.now(UTC) + step, speed=1.0)  # this host's stepped wall clock
    service = services(settings, host, database_time=database_time)
    eventually(lambda: service.clock_anchored == database_time, what="the database's clock")
    now = _db_now(db_url)
    assert gateway.readings(("door1", "door", now, 1)) == 0
    eventually(lambda: service.stats.batches == 1, what="the reading stored or refused")
    with database.connection() as conn:
        stored = conn.execute("SELECT received_at FROM anbu.readings").fetchall()
        dead = conn.execute("SELECT reason FROM anbu.dead_letters").fetchall()
    if database_time:
        [(received_at,)] = stored
        assert dead == []
        assert abs(received_at - now) < timedelta(minutes=1)
    elif step < timedelta(0):
        [(reason,)] = dead
        assert stored == [] and "is in the future" in reason
    else:
        [(received_at,)] = stored
        assert received_at - now > step - timedelta(minutes=1)
