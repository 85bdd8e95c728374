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
`info`, `longpush`, the commands and the other sensors (temperature, lux, tilt,
vibration...) carry nothing anbu reads and are ignored.

Safety devices (issue 20): Shelly Smoke's `sensor/smoke` and Shelly Flood's `sensor/flood`
"true"/"false" are ALARM/CLEAR; Shelly Gas's `sensor/gas` "none" CLEAR, "mild"/"heavy" ALARM,
"test" TEST ("unknown", warming up, is not read). A button is `input_event/<n>`,
`{"event": "S", "event_cnt": 12}`: S, SS, SSS a press, L (and SL, LS) a long press. A mains
Gen1 device republishes its last event every update period (30 s) with the same count, so an
event is a press only when its count differs from the sensor's last count: the report carries
the count and the store decides against the count kept in the database
(anbu.button_event_count, ingest.presses), so a worker's restart loses no press. The first
count ever seen for an input is a press: a newly installed Gen1 input gives one test press at
install (installers press it anyway to test).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from core.domain import AlarmValue, ButtonValue, Rejected, SensorKind
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
ALARM = {"true": AlarmValue.ALARM, "false": AlarmValue.CLEAR}
GAS = {"none": AlarmValue.CLEAR, "mild": AlarmValue.ALARM, "heavy": AlarmValue.ALARM,
       "test": AlarmValue.TEST}  # fmt: skip


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
    if parts[0] == "input_event" and len(parts) == 2 and _channel(parts[1]) is not None:
        return [_input_event(gateway, device, _channel(parts[1]) or 0, payload, now)]
    read = _leaf(parts)
    if read is None:
        return [Ignored(f"shellies {show(leaf)} carries nothing anbu reads")]
    channel, what, convert = read
    if what == "gas" and text.lower() == "unknown":
        return [Ignored("shellies gas 'unknown': the sensor is warming up, nothing to read")]
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
    if what in ("smoke", "flood", "gas"):
        kind = {"smoke": SensorKind.SMOKE, "flood": SensorKind.WATER_LEAK}.get(what)
        return ((kind or SensorKind.GAS, value),)
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
        if tail[0] in ("smoke", "flood"):
            return 0, tail[0], lambda t: ALARM.get(t.lower())
        if tail[0] == "gas":
            return 0, "gas", lambda t: GAS.get(t.lower())
    return None


def _gesture(event: str) -> float | None:
    """S, SS, SSS: a press; L, SL, LS: a long press; anything else none."""
    if not event or len(event) > 4 or set(event) - {"S", "L"}:
        return None
    return ButtonValue.LONG if "L" in event else ButtonValue.PRESS


def _input_event(
    gateway: str, device: str, channel: int, payload: bytes, now: datetime
) -> DeviceReport | Ignored | Rejected:
    """`input_event/<n>`: a gesture with its count; the store drops a repeated count."""
    doc = load_object(payload)
    if isinstance(doc, str):
        return Rejected(f"input_event: {doc}")
    event, count = doc.get("event"), doc.get("event_cnt")
    if not isinstance(count, int) or isinstance(count, bool) or not 0 <= count < 2**62:
        return Rejected(f"input_event without an event count: {show(count)}")
    value = _gesture(event) if isinstance(event, str) else None
    if value is None:
        return Ignored(f"shellies input_event {show(event)} is no press anbu reads")
    name = device if channel == 0 else f"{device}:{channel}"
    return DeviceReport(gateway, name, now, False, ((SensorKind.BUTTON, value),), event_count=count)


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
