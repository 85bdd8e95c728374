"""Shelly Gen1: `gw/<id>/shellies/<device id>/...`, plain-text values, one topic per value.

As a Gen1 device publishes with its default MQTT settings (prefix `shellies/<device id>`, e.g.
`shellies/shellyplug-s-C8C9A3B1F2E4`): `relay/<n>` "on"/"off"/"overpower" (overpower: the relay
switched itself off), `relay/<n>/power` W, `relay/<n>/energy` watt-minutes, the same under
`light/<n>`; `input/<n>` "0"/"1"; `emeter/<n>/power` W (negative when returned to the grid)
and `emeter/<n>/total` Wh (EM, 3EM: one channel per phase or clamp); the Door/Window's
`sensor/state` "open"/"close" and `sensor/battery` %; Shelly Sense's `sensor/motion`
"true"/"false"; Shelly Motion's `status` JSON (`motion`, `bat`); `online` "true"/"false"
(retained, the LWT). Channel 0 is the device itself, channel n > 0 is `<device id>:<n>`, as for
Gen2. No message carries the device's time: values are stamped on receipt. `announce`,
`info`, `input_event`, `longpush`, the commands and the other sensors (temperature, lux,
tilt, vibration...) carry nothing anbu reads and are ignored.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from core.domain import Rejected, SensorKind
from ingest.adapters.announce import shelly_announce
from ingest.adapters.common import (
    CONTACT_KINDS,
    POWER_MAX_W,
    DeviceAvailability,
    DeviceReport,
    Ignored,
    Parsed,
    load_object,
    number,
    show,
    switch_state,
    text_of,
)

Values = tuple[tuple[SensorKind, float], ...]

ONLINE = {"true": True, "false": False}
RELAY = {"on": 1.0, "off": 0.0, "overpower": 0.0}
DOOR = {"open": 1.0, "close": 0.0, "closed": 0.0}
OUTPUTS = ("relay", "light")


def _power(text: str) -> float | None:
    watts = number(text)
    return None if watts is None or not abs(watts) <= POWER_MAX_W else abs(watts)


def _secondary(text: str, low: float, high: float, scale: float = 1.0) -> float | None:
    value = number(text)
    return None if value is None or not low <= value <= high else value / scale


def parse(
    gateway: str, rest: str, payload: bytes, now: datetime, future_tolerance_s: int
) -> list[Parsed]:
    """Everything one Gen1 message says (`rest` is `<device id>/<leaf...>`)."""
    device, _, leaf = rest.partition("/")
    if not device or not leaf:
        if rest == "announce" or device == "announce":
            return list(shelly_announce(gateway, payload))
        return [Rejected(f"shellies topic {show(rest)} is not shellies/<device>/...")]
    if leaf == "announce":
        return list(shelly_announce(gateway, payload))
    parts = leaf.split("/")
    text = text_of(payload)
    if text is None:
        return [Rejected(f"shellies {show(leaf)} payload is not UTF-8")]
    if parts == ["online"]:
        online = ONLINE.get(text.lower())
        if online is None:
            return [Rejected(f"online {show(text)} is neither true nor false")]
        return [DeviceAvailability(gateway=gateway, device=device, online=online)]
    if parts == ["status"]:
        return _status(gateway, device, payload, now)
    read = _leaf(parts)
    if read is None:
        return [Ignored(f"shellies {show(leaf)} carries nothing anbu reads")]
    channel, what, convert = read
    value = convert(text)
    if value is None:
        return [Rejected(f"shellies {show(leaf)} value {show(text)} is not a valid {what}")]
    name = device if channel == 0 else f"{device}:{channel}"
    if what == "battery":
        return [DeviceReport(gateway, name, now, False, battery=value)]
    if what == "energy":
        return [DeviceReport(gateway, name, now, False, energy_kwh=value)]
    return [DeviceReport(gateway, name, now, False, values=_values(what, value))]


def _values(what: str, value: float) -> Values:
    if what == "power":
        return ((SensorKind.POWER, value),)
    if what == "relay":
        return ((SensorKind.APPLIANCE, value),)
    if what == "motion":
        return ((SensorKind.MOTION, value),)
    return tuple((kind, value) for kind in CONTACT_KINDS)  # input, door


def _channel(raw: str) -> int | None:
    return int(raw) if raw.isascii() and raw.isdigit() and len(raw) <= 2 else None


def _leaf(parts: list[str]) -> tuple[int, str, Callable[[str], float | None]] | None:
    """(channel, what the value is, its reader) for a topic anbu reads; None for the rest."""
    head, *tail = parts
    index = _channel(tail[0]) if tail else None
    if head in OUTPUTS and index is not None:
        if len(tail) == 1:
            return index, "relay", lambda t: RELAY.get(t.lower())
        if tail[1:] == ["power"]:
            return index, "power", _power
        if tail[1:] == ["energy"]:  # watt-minutes
            return index, "energy", lambda t: _secondary(t, 0.0, 1e12, 60_000.0)
        return None
    if head == "input" and index is not None and len(tail) == 1:
        return index, "input", lambda t: {"0": 0.0, "1": 1.0}.get(t)
    if head == "emeter" and index is not None and len(tail) == 2:
        if tail[1] == "power":
            return index, "power", _power
        if tail[1] == "total":  # Wh
            return index, "energy", lambda t: _secondary(t, 0.0, 1e12, 1000.0)
        return None
    if head == "sensor" and len(tail) == 1:
        if tail[0] == "state":
            return 0, "door", lambda t: DOOR.get(t.lower())
        if tail[0] == "motion":
            return 0, "motion", lambda t: switch_state(t)
        if tail[0] == "battery":
            return 0, "battery", lambda t: _secondary(t, 0.0, 100.0)
    return None


def _status(gateway: str, device: str, payload: bytes, now: datetime) -> list[Parsed]:
    """Shelly Motion's `status`: `{"motion": true, "vibration": false, "lux": 78, "bat": 98}`."""
    doc = load_object(payload)
    if isinstance(doc, str):
        return [Rejected(doc)]
    values: Values = ()
    raw: Any = doc.get("motion")
    if raw is not None:
        motion = switch_state(raw)
        if motion is None:
            return [Rejected(f"status motion {show(raw)} is neither true nor false")]
        values = ((SensorKind.MOTION, motion),)
    battery = number(doc.get("bat"))
    battery = battery if battery is not None and 0.0 <= battery <= 100.0 else None
    report = DeviceReport(gateway, device, now, False, values=values, battery=battery)
    if report.empty:
        return [Ignored(f"shellies status of {show(sorted(doc), 120)}: nothing anbu reads")]
    return [report]
