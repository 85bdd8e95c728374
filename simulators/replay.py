"""Replay an anbu events CSV onto MQTT as the homes' gateways would (QoS 1, one gateway each).

Homes, their gateways and sensors are registered first through registry (a placeholder
dong `replay`; each resident is the home id, no personal data). Each home's gateway is the
MQTT user `<prefix><home>`; the broker must know it (the password is shared by the replay's
gateways). Time runs at `speed` x the recording (None: as fast as the broker acknowledges).

Each home speaks one dialect (simulators.dialects: native, zigbee2mqtt, tasmota, shelly,
esphome), and its sensors are registered under the ids that dialect publishes them by
(`sensor_id`), so every replayed row arrives as the same reading: same sensor, kind and value,
and the recorded time for every dialect but ESPHome. ESPHome carries no time in its payload,
so ingest stamps an ESPHome home's readings with the moment it received them: the recording's
order and values at the replay's wall-clock times (at `speed` X, the recorded gaps / X).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import psycopg
from paho.mqtt.enums import CallbackAPIVersion

import registry
from core.domain import SensorKind
from simulators.dialects import DIALECTS, Event, read_events, sensor_id

REPLAY_DONG = "replay"


@dataclass(frozen=True, slots=True)
class ReplayTarget:
    """Where to publish: the broker, the gateways' common password, their id prefix."""

    host: str
    port: int
    password: str
    prefix: str = "replay-"


@dataclass(frozen=True, slots=True)
class ReplayResult:
    events: int
    homes: int
    seconds: float


def gateway_of(target: ReplayTarget, home: str) -> str:
    return f"{target.prefix}{home}"


def register_homes(
    conn: psycopg.Connection[Any],
    events: Iterable[Event],
    prefix: str,
    dialects: Mapping[str, str] | None = None,
    default_dialect: str = "native",
) -> int:
    """Register every home, gateway and sensor the events mention, each sensor under the id
    its home's dialect publishes it by (as `replay` is given them); returns the home count."""
    registry.add_dong(conn, REPLAY_DONG, "replay", "replay")
    dialects = dialects or {}
    homes: dict[str, str] = {}
    sensors: set[tuple[str, str]] = set()
    for e in events:
        if e.home not in homes:
            rid = registry.add_resident(conn, e.home, REPLAY_DONG, e.home, "+820000000000")
            homes[e.home] = registry.add_gateway(conn, f"{prefix}{e.home}", rid)
        if (e.home, e.sensor) not in sensors:
            dialect = dialects.get(e.home, default_dialect)
            if dialect not in DIALECTS:
                raise ValueError(f"unknown dialect {dialect!r} for home {e.home!r}")
            vendor_id = sensor_id(dialect, e)
            registry.add_sensor(conn, homes[e.home], vendor_id, SensorKind(e.kind), e.room)
            sensors.add((e.home, e.sensor))
    return len(homes)


def replay(
    events: list[Event],
    target: ReplayTarget,
    dialects: Mapping[str, str],
    *,
    speed: float | None = 1.0,
    default_dialect: str = "native",
    progress: Callable[[int], None] | None = None,
) -> ReplayResult:
    """Publish `events` (sorted by time) QoS 1; returns once the broker acknowledged all."""
    homes = sorted({e.home for e in events})
    clients = {home: connect_gateway(target, gateway_of(target, home)) for home in homes}
    encoders = {h: DIALECTS[dialects.get(h, default_dialect)] for h in homes}
    began = time.monotonic()
    pending: list[mqtt.MQTTMessageInfo] = []
    try:
        start = events[0].ts if events else None
        for i, e in enumerate(events):
            if speed is not None and start is not None:
                due = began + (e.ts - start).total_seconds() / speed
                if (delay := due - time.monotonic()) > 0:
                    time.sleep(delay)
            topic, payload = encoders[e.home](gateway_of(target, e.home), e)
            pending.append(clients[e.home].publish(topic, payload, qos=1))
            if len(pending) >= 5000:
                pending = settle(pending, keep=1000)
            if progress is not None:
                progress(i + 1)
        settle(pending, keep=0)
    finally:
        for c in clients.values():
            c.disconnect()
            c.loop_stop()
    return ReplayResult(len(events), len(homes), time.monotonic() - began)


def settle(pending: list[mqtt.MQTTMessageInfo], keep: int) -> list[mqtt.MQTTMessageInfo]:
    """Wait for the oldest acknowledgements until at most `keep` are outstanding."""
    while len(pending) > keep:
        info = pending[0]
        info.wait_for_publish(60)
        if not info.is_published():
            raise RuntimeError("the broker did not acknowledge a replayed message in 60 s")
        pending.pop(0)
    return pending


def connect_gateway(target: ReplayTarget, gateway: str) -> mqtt.Client:
    c = mqtt.Client(
        callback_api_version=CallbackAPIVersion.VERSION2,
        client_id=f"{gateway}-replay",
        protocol=mqtt.MQTTv5,
    )
    c.username_pw_set(gateway, target.password)
    c.max_inflight_messages_set(100)
    c.max_queued_messages_set(0)
    c.connect(target.host, target.port, keepalive=30)
    c.loop_start()
    return c


def load(path: Path, homes: set[str] | None = None, limit: int | None = None) -> list[Event]:
    """The file's events (only `homes` when given; the first `limit` when given)."""
    out: list[Event] = []
    for e in read_events(path):
        if homes is None or e.home in homes:
            out.append(e)
            if limit is not None and len(out) >= limit:
                break
    return out
