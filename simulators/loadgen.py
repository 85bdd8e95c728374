"""Synthetic gateway traffic for load tests: N homes, R messages a second, K readings each.

Each home is a gateway `<prefix><n>` with SENSORS power plugs (registered first through
registry); messages are native anbu JSON, QoS 1, stamped with the current time (the
readings of one message a millisecond apart; a rare collision on (sensor, ts) is stored once).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg

import registry
from core.domain import SensorKind
from simulators.replay import REPLAY_DONG, ReplayTarget, connect_gateway, settle

SENSORS = 4


@dataclass(frozen=True, slots=True)
class LoadResult:
    messages: int
    readings: int
    seconds: float


def gateways(target: ReplayTarget, homes: int) -> list[str]:
    return [f"{target.prefix}{n:05d}" for n in range(homes)]


def register_load_homes(conn: psycopg.Connection[Any], names: list[str]) -> None:
    registry.add_dong(conn, REPLAY_DONG, "replay", "replay")
    for gw in names:
        rid = registry.add_resident(conn, gw, REPLAY_DONG, gw, "+820000000000")
        registry.add_gateway(conn, gw, rid)
        for s in range(SENSORS):
            registry.add_sensor(conn, gw, f"plug{s}", SensorKind.POWER, "living")


def run_load(
    target: ReplayTarget,
    names: list[str],
    rate: float,
    duration_s: float,
    batch: int = 1,
    progress: Callable[[int], None] | None = None,
) -> LoadResult:
    """Publish at `rate` messages/s (round robin over the gateways) for `duration_s`."""
    clients = [connect_gateway(target, gw) for gw in names]
    pending: list[Any] = []
    began = time.monotonic()
    sent = 0
    tick = timedelta(microseconds=1)
    try:
        while (elapsed := time.monotonic() - began) < duration_s:
            due = int(elapsed * rate) + 1
            while sent < due:
                i = sent % len(names)
                now = datetime.now(UTC)
                items = [
                    {
                        "sensor": f"plug{(sent + k) % SENSORS}",
                        "kind": "power",
                        "ts": (now + tick * k * 1000).isoformat(),
                        "value": (sent + k) % 500,
                    }
                    for k in range(batch)
                ]
                topic = f"gw/{names[i]}/anbu/readings"
                pending.append(
                    clients[i].publish(topic, json.dumps({"readings": items}).encode(), qos=1)
                )
                sent += 1
                if len(pending) >= 5000:
                    pending = settle(pending, keep=1000)
            if progress is not None:
                progress(sent)
            time.sleep(0.001)
        settle(pending, keep=0)
    finally:
        for c in clients:
            c.disconnect()
            c.loop_stop()
    return LoadResult(sent, sent * batch, time.monotonic() - began)
