"""How a gateway of each dialect would publish one recorded event (topic, payload).

The simulators are the outside world: these encoders write what Zigbee2MQTT, Tasmota and
the native anbu gateway put on the wire, independently of ingest's adapters (which read it).
Every encoder keeps the event's own time (Zigbee2MQTT `last_seen`, Tasmota `Time`, native
`ts`), so a replay at any speed stores the recorded timestamps. Kinds a dialect has no device
for (a Tasmota plug is not a door sensor) go out in the native dialect from the same gateway,
as a mixed home would.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

SEOUL = ZoneInfo("Asia/Seoul")


@dataclass(frozen=True, slots=True)
class Event:
    """One row of an anbu events CSV."""

    ts: datetime
    home: str
    sensor: str
    kind: str
    room: str
    value: float


Wire = tuple[str, bytes]
Encoder = Callable[[str, Event], Wire]


def read_events(path: Path) -> Iterator[Event]:
    """The rows of an events CSV (ts,home,sensor,kind,room,value), in file order."""
    with path.open(newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            yield Event(
                ts=datetime.fromisoformat(row["ts"]),
                home=row["home"],
                sensor=row["sensor"],
                kind=row["kind"],
                room=row["room"],
                value=float(row["value"]),
            )


def _number(value: float) -> float | int:
    return int(value) if value.is_integer() else value


def native(gateway: str, e: Event) -> Wire:
    reading = {
        "sensor": e.sensor,
        "kind": e.kind,
        "ts": e.ts.isoformat(),
        "value": _number(e.value),
    }
    return f"gw/{gateway}/anbu/readings", json.dumps({"readings": [reading]}).encode()


def zigbee2mqtt(gateway: str, e: Event) -> Wire:
    """A device state message with `advanced.last_seen: ISO_8601` enabled on the bridge."""
    on = e.value >= 0.5
    state: dict[str, object]
    if e.kind in ("door", "contact"):
        state = {"contact": not on}  # Zigbee2MQTT: contact true = magnet closed = shut
    elif e.kind == "motion":
        state = {"occupancy": on}
    elif e.kind == "power":
        state = {"power": _number(e.value)}
    else:  # appliance: a smart plug's relay
        state = {"state": "ON" if on else "OFF"}
    state |= {"battery": 87, "linkquality": 120, "last_seen": e.ts.isoformat()}
    return f"gw/{gateway}/zigbee2mqtt/{e.sensor}", json.dumps(state).encode()


def tasmota(gateway: str, e: Event) -> Wire:
    """tele/<device>/SENSOR with `Time` in the device's local time (no offset), as Tasmota does."""
    if e.kind != "power":
        return native(gateway, e)
    local = e.ts.astimezone(SEOUL).replace(tzinfo=None).isoformat(timespec="seconds")
    body = {"Time": local, "ENERGY": {"Power": _number(e.value), "Voltage": 220, "Current": 0.1}}
    return f"gw/{gateway}/tele/{e.sensor}/SENSOR", json.dumps(body).encode()


DIALECTS: Mapping[str, Encoder] = {
    "native": native,
    "zigbee2mqtt": zigbee2mqtt,
    "tasmota": tasmota,
}
