"""Shelly Gen2+ (Plus/Pro/Gen3/Gen4): `gw/<id>/<device>/...`, or `gw/<id>/shelly/<device>/...`.

A device's default MQTT prefix is its id, `<model>-<12 hex digits of its MAC>`
(`shellyplus1pm-a8032ab12345`): such a first level is recognised without a `shelly/` segment,
and so is any prefix followed by `events/rpc`. With "RPC status notifications over MQTT" on, a device publishes JSON-RPC notifications on
`<prefix>/events/rpc`: `NotifyFullStatus` (every component, on connect) and `NotifyStatus`
(only what changed, e.g. `{"switch:0": {"id": 0, "apower": 12.3}}`), both with `params.ts`
in epoch seconds; `NotifyEvent` (button pushes) carries no state. With "generic status
update" on it also publishes `<prefix>/status/<component>`. `<prefix>/online` is a retained
`true`/`false` (its LWT). Component id 0 is the device itself; id n > 0 is `<device>:<n>`.
An input's `state` true means activated (value 1): wire a door's reed switch accordingly
or set the input's `invert`. Energy meters: `em1:<n>` (Pro EM, EM Gen3) `act_power`, `em:0`
(Pro 3EM, three-phase) `total_act_power`, with `em1data`/`emdata` energy counters in Wh.

Shelly BLU sensors (BTHome over Bluetooth) heard by a Gen2+ device acting as gateway come two
ways. As `bthomesensor:<n>` components (firmware 1.2+), whose `value` is true/false for a
window (open) or motion (detected) sensor: registered as `<device>:bthomesensor:<n>`, the
registered kind deciding what the boolean is. Or as the events Shelly's `ble-shelly-blu.js`
script emits (`NotifyEvent`, `data` decoded from BTHome: `window`/`door` 1 = open, `motion`
1 = detected, `battery` %, `rssi`, and the BLU device's `address`): registered under that
MAC address, lower case.

Safety devices (issue 20). Shelly Plus Smoke (`shellyplussmoke-<mac>`) has `smoke:0`, and
Shelly Flood `flood:0`, whose status `alarm` true is ALARM, false CLEAR; a smoke alarm's test
(the button held) leaves `alarm` false and comes only as the NotifyEvent `alarm_test`: TEST
(`alarm`/`alarm_off` events are ALARM/CLEAR). A button is an event, never a status (a
NotifyFullStatus repeats states): an input in button mode sends NotifyEvent `single_push`,
`double_push`, `triple_push` (a press) and `long_push` (a long press) for `input:<n>`; a
Shelly BLU Button heard by a gateway sends the same for its `bthomesensor:<n>`
(`<device>:bthomesensor:<n>`), or, through `ble-shelly-blu.js`, BTHome's `button` event code
(1-3 a press, 4-6 and 0x80 a long press) under its MAC address. `btn_down`/`btn_up` are the
two halves of a gesture read once.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from core.domain import AlarmValue, ButtonValue, GatewayStatus, Reading, Rejected, SensorKind
from ingest.adapters.common import (
    CONTACT_KINDS,
    POWER_MAX_W,
    RELEASE,
    DeviceAvailability,
    DeviceReport,
    Ignored,
    button_gesture,
    load_object,
    number,
    show,
    stamp,
    switch_state,
    text_of,
)

Parsed = Reading | GatewayStatus | Rejected | DeviceReport | DeviceAvailability | Ignored
STATUS_METHODS = ("NotifyStatus", "NotifyFullStatus")
DEVICE_ID = re.compile(r"shelly[0-9a-z]+(?:-[0-9a-z]+)*-[0-9a-f]{12}", re.ASCII)
"""A Gen2+ device id, its default topic prefix (Gen1 ids live under `shellies/`)."""
BLU_BINARY = {"window": CONTACT_KINDS, "door": CONTACT_KINDS, "motion": (SensorKind.MOTION,)}
BLU_READ = (*BLU_BINARY, "battery", "button")
BTHOME_BUTTON = {1: ButtonValue.PRESS, 2: ButtonValue.PRESS, 3: ButtonValue.PRESS,
                 4: ButtonValue.LONG, 5: ButtonValue.LONG, 6: ButtonValue.LONG,
                 0x80: ButtonValue.LONG}  # fmt: skip
"""BTHome's button event codes (0 is no event: a BLU device's periodic report)."""
ALARM_EVENTS: dict[str, dict[str, float]] = {
    "smoke": {"alarm": AlarmValue.ALARM, "alarm_off": AlarmValue.CLEAR,
              "alarm_test": AlarmValue.TEST},
    "flood": {"alarm": AlarmValue.ALARM, "alarm_off": AlarmValue.CLEAR},
}  # fmt: skip
ALARM_COMPONENTS = {"smoke": SensorKind.SMOKE, "flood": SensorKind.WATER_LEAK}
GESTURE_COMPONENTS = ("input", "bthomesensor")
NAMED = ("bthomesensor",)
"""Components registered by their whole name (`<device>:bthomesensor:200`): their ids start
at 200, in a space of their own, so a bare `<device>:200` could be two things."""


def shape(first: str, rest: str) -> bool:
    """A Gen2+ device publishing under its default prefix, or any prefix's `events/rpc`."""
    return DEVICE_ID.fullmatch(first) is not None or rest == "events/rpc"


def _energy_kwh(raw: Any) -> float | None:
    total = number(raw.get("total")) if isinstance(raw, dict) else None
    return None if total is None else total / 1000.0  # aenergy.total is in Wh


def _wh(raw: Any) -> float | None:
    wh = number(raw)
    return None if wh is None else wh / 1000.0


def _battery(raw: Any) -> float | None:
    return number(raw.get("percent")) if isinstance(raw, dict) else None


def _boolean(raw: Any) -> float | None:
    """A BTHome sensor's value when it is a boolean; its numbers (lux, %, °C) are not read."""
    return switch_state(raw) if isinstance(raw, bool) else None


@dataclass(frozen=True, slots=True)
class Prop:
    """One component property: key, candidate kinds (empty = secondary slot), reader, range."""

    key: str
    kinds: tuple[SensorKind, ...]
    read: Callable[[Any], float | None]
    low: float = 0.0
    high: float = 1.0
    slot: str = ""


def _power(key: str) -> Prop:
    return Prop(key, (SensorKind.POWER,), number, -POWER_MAX_W, POWER_MAX_W)


COMPONENTS: dict[str, tuple[Prop, ...]] = {
    "switch": (
        _power("apower"),
        Prop("output", (SensorKind.APPLIANCE,), switch_state),
        Prop("aenergy", (), _energy_kwh, 0.0, 1e9, "energy_kwh"),
    ),
    "pm1": (_power("apower"), Prop("aenergy", (), _energy_kwh, 0.0, 1e9, "energy_kwh")),
    "em1": (_power("act_power"),),
    "em": (_power("total_act_power"),),
    "em1data": (Prop("total_act_energy", (), _wh, 0.0, 1e12, "energy_kwh"),),
    "emdata": (Prop("total_act", (), _wh, 0.0, 1e12, "energy_kwh"),),
    "input": (Prop("state", CONTACT_KINDS, switch_state),),
    "bthomesensor": (Prop("value", (*CONTACT_KINDS, SensorKind.MOTION), _boolean),),
    "devicepower": (Prop("battery", (), _battery, 0.0, 100.0, "battery"),),
    "smoke": (Prop("alarm", (SensorKind.SMOKE,), _boolean),),
    "flood": (Prop("alarm", (SensorKind.WATER_LEAK,), _boolean),),
    "wifi": (Prop("rssi", (), number, -127.0, 0.0, "link_quality"),),
}
POWER_KEYS = frozenset(p.key for props in COMPONENTS.values() for p in props if p.low < 0)


def parse(
    gateway: str, rest: str, payload: bytes, now: datetime, future_tolerance_s: int
) -> list[Parsed]:
    """Everything one Shelly Gen2 message says."""
    device, sep, tail = rest.partition("/")
    if not device or not sep:
        return [Rejected(f"shelly topic {show(rest)} is not shelly/<device>/...")]
    if tail == "online":
        online = {"true": True, "false": False}.get((text_of(payload) or "").lower())
        if online is None:
            return [Rejected(f"online {show(payload)} is neither true nor false")]
        return [DeviceAvailability(gateway=gateway, device=device, online=online)]
    if tail != "events/rpc" and not tail.startswith("status/"):
        return [Ignored(f"shelly {show(tail)} carries no status")]  # rpc, debug/log, ...
    doc = load_object(payload)
    if isinstance(doc, str):
        return [Rejected(doc)]
    if tail == "events/rpc":
        method = doc.get("method")
        params = doc.get("params")
        if method == "NotifyEvent" and isinstance(params, dict):
            return _events(gateway, device, params, now, future_tolerance_s)
        if method not in STATUS_METHODS:
            return [Ignored(f"shelly {show(method)} carries no status")]
        if not isinstance(params, dict):
            return [Rejected(f"{method} without a params object")]
        components = {k: v for k, v in params.items() if k != "ts"}
        raw_ts = params.get("ts")
    else:
        components, raw_ts = {tail.removeprefix("status/"): doc}, None
    when = stamp(raw_ts, now, future_tolerance_s)
    if isinstance(when, str):
        return [Rejected(when)]
    return _reports(gateway, device, components, when) or [
        Ignored(f"shelly status of {show(sorted(components), 120)}: nothing anbu reads")
    ]


def _reports(
    gateway: str, device: str, components: dict[str, Any], when: tuple[datetime, bool]
) -> list[Parsed]:
    by_id: dict[str, dict[str, Any]] = {}
    for name, body in components.items():
        ctype, _, cid = name.partition(":")
        props = COMPONENTS.get(ctype)
        if props is None or not isinstance(body, dict):
            continue
        index = int(cid) if cid.isascii() and cid.isdigit() else 0
        key = name if ctype in NAMED else "" if index == 0 else str(index)
        slot = by_id.setdefault(key, {"values": []})
        for p in props:
            if body.get(p.key) is None:
                continue  # partial update, or an input without state (button mode)
            value = p.read(body[p.key])
            if value is None and ctype in NAMED:
                continue  # a numeric BTHome sensor: nothing says what it measures
            if value is None or not p.low <= value <= p.high:
                return [Rejected(f"{name}.{p.key} {show(body[p.key])} is not a valid value")]
            if p.kinds:
                value = abs(value) if p.key in POWER_KEYS else value  # reversed CT clamps
                slot["values"].extend((kind, value) for kind in p.kinds)
            else:
                slot[p.slot] = value
    out: list[Parsed] = []
    for key, slot in sorted(by_id.items(), key=lambda kv: (len(kv[0]), kv[0])):
        report = DeviceReport(
            gateway=gateway,
            device=f"{device}:{key}" if key else device,
            ts=when[0],
            stamped=when[1],
            values=tuple(slot["values"]),
            battery=slot.get("battery"),
            link_quality=slot.get("link_quality"),
            energy_kwh=slot.get("energy_kwh"),
        )
        if not report.empty:
            out.append(report)
    return out


def _events(
    gateway: str, device: str, params: dict[str, Any], now: datetime, future_tolerance_s: int
) -> list[Parsed]:
    """NotifyEvent: button pushes, smoke and flood alarms and their tests, BLU sensor data a
    script emits; the other events carry nothing anbu reads."""
    events = params.get("events")
    out: list[Parsed] = []
    for event in events if isinstance(events, list) else []:
        found = _component_event(gateway, device, event) if isinstance(event, dict) else None
        if found is not None:
            when = stamp(event.get("ts", params.get("ts")), now, future_tolerance_s)
            if isinstance(when, str):
                return [Rejected(when)]
            name, kind, value = found
            out.append(DeviceReport(gateway, name, when[0], when[1], ((kind, value),)))
            continue
        data = event.get("data") if isinstance(event, dict) else None
        if not isinstance(data, dict) or not any(k in data for k in BLU_READ):
            continue
        address = data.get("address")
        if not isinstance(address, str) or not 0 < len(address.strip()) <= 64:
            return [Rejected(f"BLU event without a device address: {show(address)}")]
        when = stamp(event.get("ts", params.get("ts")), now, future_tolerance_s)
        if isinstance(when, str):
            return [Rejected(when)]
        report = _blu(gateway, address.strip().lower(), data, when)
        if isinstance(report, str):
            return [Rejected(report)]
        if not report.empty:
            out.append(report)
    return out or [Ignored("shelly NotifyEvent carries no sensor state")]


def _component_event(
    gateway: str, device: str, event: dict[str, Any]
) -> tuple[str, SensorKind, float] | None:
    """(the device, kind and value) of a component's event anbu reads, or None."""
    component, name = event.get("component"), event.get("event")
    if not isinstance(component, str) or not isinstance(name, str):
        return None
    ctype, _, cid = component.partition(":")
    index = int(cid) if cid.isascii() and cid.isdigit() and len(cid) <= 4 else None
    if index is None:
        return None
    key = component if ctype in NAMED else "" if index == 0 else str(index)
    target = f"{device}:{key}" if key else device
    if ctype in ALARM_EVENTS:
        value = ALARM_EVENTS[ctype].get(name)
        return None if value is None else (target, ALARM_COMPONENTS[ctype], value)
    if ctype in GESTURE_COMPONENTS:
        gesture = button_gesture(name)
        if gesture is None or gesture == RELEASE:
            return None
        return target, SensorKind.BUTTON, gesture
    return None


def _blu(
    gateway: str, device: str, data: dict[str, Any], when: tuple[datetime, bool]
) -> DeviceReport | str:
    values: list[tuple[SensorKind, float]] = []
    code = data.get("button")
    if isinstance(code, int) and not isinstance(code, bool) and code in BTHOME_BUTTON:
        values.append((SensorKind.BUTTON, BTHOME_BUTTON[code]))
    for key, kinds in BLU_BINARY.items():
        if data.get(key) is None:
            continue
        value = switch_state(data[key])
        if value is None:
            return f"BLU {key} {show(data[key])} is neither 0 nor 1"
        values.extend((kind, value) for kind in kinds)
    battery = number(data.get("battery"))
    if battery is not None and not 0.0 <= battery <= 100.0:
        return f"BLU battery {show(data.get('battery'))} is not a percentage"
    rssi = number(data.get("rssi"))
    return DeviceReport(
        gateway=gateway,
        device=device,
        ts=when[0],
        stamped=when[1],
        values=tuple(values),
        battery=battery,
        link_quality=rssi if rssi is not None and -127.0 <= rssi <= 0.0 else None,
    )
