"""How a gateway of each dialect would publish one recorded event (topic, payload).

The simulators are the outside world: these encoders write what Zigbee2MQTT, Tasmota,
Shelly Gen2+, ESPHome and the native anbu gateway put on the wire, independently of ingest's
adapters (which read it). Every encoder but ESPHome's keeps the event's own time (Zigbee2MQTT
`last_seen`, Tasmota `Time`, Shelly `params.ts`, native `ts`), so a replay at any speed stores
the recorded timestamps. ESPHome publishes a bare state string with no time in it: ingest
stamps such a reading with the moment it received it, so an ESPHome home's readings carry the
replay's wall-clock times (their order, kinds and values are the recording's; at `--speed X`
the gaps are the recorded gaps divided by X). Kinds a dialect has no device for (a Tasmota
plug is not a door sensor, ingest reads no motion from a Shelly) go out in the native dialect
from the same gateway, as a mixed home would.

A gateway publishes each sensor under its vendor's device id, and a sensor is registered under
that id (`sensor_id`): the recorded sensor id for every dialect but ESPHome, whose sensors are
`<node>/<object id>`.
"""

from __future__ import annotations

import csv
import hashlib
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


SHELLY_MODELS = {"power": "shellyplusplugs", "appliance": "shellyplusplugs"}
"""The Shelly device of each kind it has one for; door and contact are a Plus i4's input."""


def shelly(gateway: str, e: Event) -> Wire:
    """A NotifyStatus partial update on `<device>/events/rpc`, as a Gen2+ device with "RPC
    status notifications over MQTT" on and its MQTT topic prefix set to the sensor id.

    A plug reports `switch:0` `apower` (power) or `output` (appliance, the relay); a door or
    contact switch is `input:0` `state` (true = activated). `params.ts` is the device's epoch
    time, here the recorded one. Ingest reads no motion from a Shelly: motion goes native.
    """
    component: dict[str, object]
    if e.kind in ("door", "contact"):
        name, component = "input:0", {"id": 0, "state": e.value >= 0.5}
    elif e.kind == "power":
        name, component = "switch:0", {"id": 0, "apower": float(e.value)}
    elif e.kind == "appliance":
        name, component = "switch:0", {"id": 0, "output": e.value >= 0.5, "source": "button"}
    else:
        return native(gateway, e)
    src = _shelly_id(gateway, e.sensor, SHELLY_MODELS.get(e.kind, "shellyplusi4"))
    body = {
        "src": src,
        "dst": f"{e.sensor}/events",
        "method": "NotifyStatus",
        "params": {"ts": round(e.ts.timestamp(), 2), name: component},
    }
    return f"gw/{gateway}/shelly/{e.sensor}/events/rpc", json.dumps(body).encode()


def _shelly_id(gateway: str, sensor: str, model: str) -> str:
    """`<model>-<mac>` as a Shelly names itself: a made-up MAC, the same for the same sensor."""
    mac = hashlib.blake2s(f"{gateway}/{sensor}".encode(), digest_size=6).hexdigest()
    return f"{model}-{mac}"


def esphome_node(e: Event) -> tuple[str, str]:
    """(node name, object id) of a recorded sensor as an ESPHome node of its own: the node
    is the sensor id in ESPHome's spelling (hyphens), the entity is named after the kind."""
    return e.sensor.replace("_", "-"), e.kind


def esphome(gateway: str, e: Event) -> Wire:
    """`<node>/<component>/<object id>/state` as the MQTT component publishes it with
    `topic_prefix` = the node name: a binary_sensor "ON"/"OFF" (door open, motion detected,
    contact made, appliance on), a power sensor its number with `accuracy_decimals: 1`.

    No time in the payload: ingest stamps the reading on receipt. Published unretained (as
    with `mqtt: retain: false`), so a replay leaves no state behind on the broker.
    """
    node, object_id = esphome_node(e)
    if e.kind == "power":
        component, state = "sensor", f"{e.value:.1f}"
    else:
        component, state = "binary_sensor", "ON" if e.value >= 0.5 else "OFF"
    return f"gw/{gateway}/esphome/{node}/{component}/{object_id}/state", state.encode()


DIALECTS: Mapping[str, Encoder] = {
    "native": native,
    "zigbee2mqtt": zigbee2mqtt,
    "tasmota": tasmota,
    "shelly": shelly,
    "esphome": esphome,
}

TIMELESS = frozenset({"esphome"})
"""Dialects whose payload carries no time: ingest stamps their readings on receipt."""


def sensor_id(dialect: str, e: Event) -> str:
    """The id a gateway of `dialect` publishes the event's sensor under, to register it by."""
    if dialect == "esphome":
        return "/".join(esphome_node(e))
    return e.sensor
