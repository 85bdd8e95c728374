"""Tasmota: `gw/<id>/tele/<device>/SENSOR|STATE|RESULT|LWT` and `gw/<id>/stat/<device>/...`.

As Tasmota publishes with the default FullTopic `%prefix%/%topic%/`: SENSOR holds
`{"Time": "2024-05-01T12:00:00", "ENERGY": {"Power": 45, "Total": 1.2, ...}}` (Time is the
device's local time without offset, taken as Asia/Seoul). STATE holds `POWER`/`POWER1..8`
("ON"/"OFF") and `Wifi.RSSI` (percent), LWT is a retained plain `Online`/`Offline`, and
stat/POWER is the relay's plain "ON"/"OFF". Channel 1 is the device itself; channel n > 1 is
registered as `<device>:<n>`:
- energy monitors: `Power` (and `Total`, kWh) is a list on multi-channel and three-phase
  meters, one channel per clamp or phase; a scalar `Total` beside several channels is their
  sum and belongs to none. Negative power (a clamp the wrong way round, a phase exporting
  solar) counts by its size.
- switch inputs: `"Switch<n>": "ON"` in SENSOR, `{"Switch<n>": {"Action": "ON"}}` in RESULT
  when detached from the relays (SetOption114): a contact, ON = 1 (open), as Shelly's inputs;
  a switch's state is no button press (SENSOR repeats it every TelePeriod).
- buttons (issue 20), from RESULT only, which Tasmota publishes once per gesture: a detached
  button's `{"Button<n>": {"Action": "SINGLE"}}` (SetOption73: SINGLE..PENTA a press, HOLD a
  long press, CLEAR nothing) and a switch input's events `{"Switch<n>": {"Action": "ON"}}`
  (a pull cord or a wired panic button: ON or TOGGLE a press, HOLD a long press, OFF its
  release), registered as the channel's device with kind `button`.
- bridges, one device id per bridged device: an RF bridge's `RfReceived` (tele/RESULT,
  `{"Data": "E5D80E", ...}`) is the code a 433 MHz door or motion sensor sends when it
  triggers, registered as `<bridge>:<Data>` (value 1: opened, or motion); Zigbee2Tasmota's
  `ZbReceived` (`{"0x8F20": {"Device": "0x8F20", "Name": "Door", "Contact": 1, ...}}`) gives
  each device under `<bridge>:<Name>`, or `<bridge>:<short address>` while it has no name.
  Its `Contact` and `Occupancy` are 1 when open and occupied; `Power` is a plug's relay or a
  Xiaomi door's on/off, the registered kind deciding; `ActivePower` is watts. IAS zones
  (issue 20): `Fire` (smoke or heat), `Water` (leak) and `CO` (carbon monoxide, or a gas
  detector declaring itself one) are alarms, 1 = ALARM; `PersonalAlarm` and `Panic` 1 are a
  button press (an emergency pendant), 0 no press; the zone status bits Tasmota passes on
  (`ZoneStatusChange`, `ZoneStatus`: ZCL IAS Zone, bit 2 tamper, bit 8 test) give the tamper
  switch and make the alarms of a message under test TEST, never ALARM.
A message with none of these is ignored with its reason.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from core.domain import AlarmValue, ButtonValue, Rejected, SensorKind
from ingest.adapters.announce import tasmota_discovery
from ingest.adapters.common import (
    CONTACT_KINDS,
    POWER_MAX_W,
    RELEASE,
    DeviceAvailability,
    DeviceReport,
    Ignored,
    Parsed,
    alarm_value,
    button_gesture,
    load_object,
    number,
    show,
    stamp,
    switch_state,
    text_of,
)

Values = tuple[tuple[SensorKind, float], ...]
LWT = {"online": True, "offline": False}
RELAYS = ("POWER", *(f"POWER{n}" for n in range(1, 9)))
SWITCH = re.compile(r"Switch([1-9][0-9]?)", re.ASCII)
GESTURE = re.compile(r"(Switch|Button)([1-9][0-9]?)", re.ASCII)
SWITCH_GESTURES = {"ON": ButtonValue.PRESS, "TOGGLE": ButtonValue.PRESS, "HOLD": ButtonValue.LONG}
RF_SENSOR: Values = tuple((kind, 1.0) for kind in (*CONTACT_KINDS, SensorKind.MOTION))
ZB_FIELDS: dict[str, tuple[SensorKind, ...]] = {
    "Contact": CONTACT_KINDS,
    "Occupancy": (SensorKind.MOTION,),
    "Power": (SensorKind.APPLIANCE, *CONTACT_KINDS),
}
ZB_ALARMS: dict[str, tuple[SensorKind, ...]] = {
    "Fire": (SensorKind.SMOKE,),
    "Water": (SensorKind.WATER_LEAK,),
    "CO": (SensorKind.CO, SensorKind.GAS),
}
ZB_BUTTONS = ("PersonalAlarm", "Panic")
ZONE_TAMPER, ZONE_TEST = 0x0004, 0x0100


@dataclass(frozen=True, slots=True)
class _Channel:
    power: float | None = None
    relay: float | None = None
    energy: float | None = None
    switch: float | None = None
    button: float | None = None


def channel_device(device: str, channel: int) -> str:
    """The vendor id of a channel (1-based): the device itself for channel 1."""
    return device if channel == 1 else f"{device}:{channel}"


def parse_tele(
    gateway: str, rest: str, payload: bytes, now: datetime, future_tolerance_s: int
) -> list[Parsed]:
    """tele/<device>/<SENSOR|STATE|RESULT|LWT>."""
    device, _, leaf = rest.rpartition("/")
    if not device:
        return [Rejected(f"tasmota topic {show(rest)} is not tele/<device>/<type>")]
    if leaf == "LWT":
        text = text_of(payload)
        online = None if text is None else LWT.get(text.lower())
        if online is None:
            return [Rejected(f"LWT {show(payload)} is neither Online nor Offline")]
        return [DeviceAvailability(gateway=gateway, device=device, online=online)]
    if leaf == "RESULT":
        return _result(gateway, device, payload, now, future_tolerance_s)
    if leaf not in ("SENSOR", "STATE"):
        return [Ignored(f"tasmota tele/{show(leaf)} carries nothing anbu reads")]
    doc = load_object(payload)
    if isinstance(doc, str):
        return [Rejected(doc)]
    when = stamp(doc.get("Time"), now, future_tolerance_s)
    if isinstance(when, str):
        return [Rejected(when)]
    channels = _sensor(doc) if leaf == "SENSOR" else _relays(doc)
    if isinstance(channels, str):
        return [Rejected(channels)]
    link = None
    if leaf == "STATE" and isinstance(doc.get("Wifi"), dict):
        link = number(doc["Wifi"].get("RSSI"))
        link = link if link is not None and 0.0 <= link <= 100.0 else None
    out: list[Parsed] = [
        _report(gateway, channel_device(device, n), when, ch, link if n == 1 else None)
        for n, ch in sorted(channels.items())
    ]
    if not out and link is not None:
        out = [_report(gateway, device, when, _Channel(), link)]
    out += _bridged(gateway, device, doc, when)
    return out or [Ignored(f"tasmota {leaf} with nothing anbu reads: {show(sorted(doc), 120)}")]


def parse_stat(
    gateway: str, rest: str, payload: bytes, now: datetime, future_tolerance_s: int
) -> list[Parsed]:
    """stat/<device>/POWER[n] (plain ON/OFF) and stat/<device>/RESULT ({"POWER": "ON"})."""
    device, _, leaf = rest.rpartition("/")
    if not device:
        return [Rejected(f"tasmota topic {show(rest)} is not stat/<device>/<type>")]
    if leaf in RELAYS:
        value = switch_state(text_of(payload))
        if value is None:
            return [Rejected(f"relay state {show(payload)} is neither ON nor OFF")]
        n = int(leaf[5:] or "1")
        return [_report(gateway, channel_device(device, n), (now, False), _Channel(relay=value))]
    if leaf != "RESULT":
        return [Ignored(f"tasmota stat/{show(leaf)} carries nothing anbu reads")]
    return _result(gateway, device, payload, now, future_tolerance_s)


def parse_cmnd(
    gateway: str, rest: str, payload: bytes, now: datetime, future_tolerance_s: int
) -> list[Parsed]:
    """cmnd/<device>/<command>: what someone told the device, not what it did."""
    return [Ignored(f"tasmota cmnd/{show(rest)} is a command, not device state")]


def parse_discovery(
    gateway: str, rest: str, payload: bytes, now: datetime, future_tolerance_s: int
) -> list[Parsed]:
    """tasmota/discovery/<mac>/config|sensors: Tasmota's own discovery (SetOption19 0, the
    default), retained at every boot; it describes the device, it is no reading."""
    return list(tasmota_discovery(gateway, rest, payload))


def _result(
    gateway: str, device: str, payload: bytes, now: datetime, future_tolerance_s: int
) -> list[Parsed]:
    """RESULT: a command's answer (relays), a detached switch, a bridge's received device."""
    doc = load_object(payload)
    if isinstance(doc, str):
        return [Rejected(doc)]
    when = stamp(doc.get("Time"), now, future_tolerance_s)
    if isinstance(when, str):
        return [Rejected(when)]
    channels = _relays(doc)
    if isinstance(channels, str):
        return [Rejected(channels)]
    for n, value in _switches(doc).items():
        channels[n] = _Channel(relay=channels.get(n, _Channel()).relay, switch=value)
    for n, gesture in _gestures(doc).items():
        channels[n] = replace(channels.get(n, _Channel()), button=gesture)
    out: list[Parsed] = [
        _report(gateway, channel_device(device, n), when, ch) for n, ch in sorted(channels.items())
    ]
    out += _bridged(gateway, device, doc, when)
    return out or [Ignored(f"tasmota RESULT with nothing anbu reads: {show(sorted(doc), 120)}")]


def _report(
    gateway: str,
    device: str,
    when: tuple[datetime, bool],
    ch: _Channel,
    link: float | None = None,
) -> DeviceReport:
    values: list[tuple[SensorKind, float]] = []
    if ch.power is not None:
        values.append((SensorKind.POWER, ch.power))
    if ch.relay is not None:
        values.append((SensorKind.APPLIANCE, ch.relay))
    if ch.switch is not None:
        values.extend((kind, ch.switch) for kind in CONTACT_KINDS)
    if ch.button is not None:
        values.append((SensorKind.BUTTON, ch.button))
    return DeviceReport(
        gateway=gateway,
        device=device,
        ts=when[0],
        stamped=when[1],
        values=tuple(values),
        link_quality=link,
        energy_kwh=ch.energy,
    )


def _sensor(doc: dict[str, Any]) -> dict[int, _Channel] | str:
    """SENSOR's channels: ENERGY's meters and the switch inputs."""
    channels = _energy(doc.get("ENERGY"))
    if isinstance(channels, str):
        return channels
    for n, value in _switches(doc).items():
        ch = channels.get(n, _Channel())
        channels[n] = _Channel(power=ch.power, energy=ch.energy, switch=value)
    return channels


def _switches(doc: dict[str, Any]) -> dict[int, float]:
    """`Switch<n>`: "ON"/"OFF", or `{"Action": "ON"}`; events (TOGGLE, HOLD) are not states."""
    out: dict[int, float] = {}
    for key, raw in doc.items():
        match = SWITCH.fullmatch(key) if isinstance(key, str) else None
        if match is None:
            continue
        state = raw.get("Action") if isinstance(raw, dict) else raw
        value = switch_state(state) if isinstance(state, str) else None
        if value is not None:
            out[int(match.group(1))] = value
    return out


def _gestures(doc: dict[str, Any]) -> dict[int, float]:
    """RESULT's `{"Button<n>"|"Switch<n>": {"Action": ...}}`: one gesture per channel."""
    out: dict[int, float] = {}
    for key, raw in doc.items():
        match = GESTURE.fullmatch(key) if isinstance(key, str) else None
        action = raw.get("Action") if match is not None and isinstance(raw, dict) else None
        if not isinstance(action, str):
            continue
        if match is not None and match.group(1) == "Switch":
            value = SWITCH_GESTURES.get(action.strip().upper(), button_gesture(action))
        else:
            value = button_gesture(action)
        if value is not None and value != RELEASE:
            out[int(match.group(2)) if match is not None else 1] = value
    return out


def _energy(energy: Any) -> dict[int, _Channel] | str:
    """Channels of an ENERGY object: Power and Total, scalars or per-channel lists."""
    if energy is None:
        return {}
    if not isinstance(energy, dict):
        return f"ENERGY is not an object: {show(energy)}"
    powers = _per_channel(energy.get("Power"))
    totals = _per_channel(energy.get("Total"))
    if isinstance(powers, str):
        return f"ENERGY.Power {powers}"
    if isinstance(totals, str) or (len(powers) > 1 and not isinstance(energy.get("Total"), list)):
        totals = []  # a malformed counter does not spoil the watts; a sum is no one channel's
    out: dict[int, _Channel] = {}
    for i, watts in enumerate(powers):
        if not abs(watts) <= POWER_MAX_W:
            return f"ENERGY.Power {show(watts)} is out of range (0..{POWER_MAX_W:g} W)"
        total = totals[i] if i < len(totals) else None
        out[i + 1] = _Channel(power=abs(watts), energy=total)
    return out


def _per_channel(raw: Any) -> list[float] | str:
    if raw is None:
        return []
    items = raw if isinstance(raw, list) else [raw]
    values = [number(x) for x in items]
    if not items or any(v is None for v in values):
        return f"{show(raw)} is not a number or a list of numbers"
    return [v for v in values if v is not None]


def _relays(doc: dict[str, Any]) -> dict[int, _Channel] | str:
    out: dict[int, _Channel] = {}
    for key in RELAYS:
        if key in doc:
            value = switch_state(doc[key])
            if value is None:
                return f"{key} {show(doc[key])} is neither ON nor OFF"
            out[int(key[5:] or "1")] = _Channel(relay=value)
    return out


def _bridged(
    gateway: str, bridge: str, doc: dict[str, Any], when: tuple[datetime, bool]
) -> list[Parsed]:
    """The devices an RF or Zigbee bridge heard, each under its own id."""
    out: list[Parsed] = []
    rf = doc.get("RfReceived")
    if isinstance(rf, dict):
        data = rf.get("Data")
        code = str(data).strip() if isinstance(data, str | int) else ""
        if isinstance(data, bool) or not 0 < len(code) <= 40:
            out.append(Rejected(f"RfReceived without a code: {show(data)}"))
        else:
            out.append(DeviceReport(gateway, f"{bridge}:{code}", when[0], when[1], RF_SENSOR))
    zb = doc.get("ZbReceived")
    if isinstance(zb, dict):
        for key, body in zb.items():
            if isinstance(body, dict):
                out.append(_zigbee(gateway, bridge, key, body, when))
    return out


def _zigbee(
    gateway: str, bridge: str, key: str, body: dict[str, Any], when: tuple[datetime, bool]
) -> DeviceReport | Ignored | Rejected:
    name = body.get("Name")
    ident = name.strip() if isinstance(name, str) and name.strip() else key.strip()
    if not ident or len(ident) > 64:
        return Rejected(f"ZbReceived device without a usable id: {show(key)}")
    values: list[tuple[SensorKind, float]] = []
    for field, kinds in ZB_FIELDS.items():
        if body.get(field) is None:
            continue
        value = switch_state(body[field])
        if value is None:
            return Rejected(f"ZbReceived {field} {show(body[field])} is neither 0 nor 1")
        values.extend((kind, value) for kind in kinds)
    zone = _zone_status(body)
    test = zone is not None and bool(zone & ZONE_TEST)
    for field, kinds in ZB_ALARMS.items():
        if body.get(field) is None:
            continue
        value = switch_state(body[field])
        if value is None:
            return Rejected(f"ZbReceived {field} {show(body[field])} is neither 0 nor 1")
        values.extend((kind, alarm_value(value, test)) for kind in kinds)
    if zone is not None:
        tamper = AlarmValue.ALARM if zone & ZONE_TAMPER else AlarmValue.CLEAR
        values.append((SensorKind.TAMPER, tamper))
    for field in ZB_BUTTONS:
        if body.get(field) is None:
            continue
        value = switch_state(body[field])
        if value is None:
            return Rejected(f"ZbReceived {field} {show(body[field])} is neither 0 nor 1")
        if value == 1.0:  # 0 is the zone back at rest: no press
            values.append((SensorKind.BUTTON, ButtonValue.PRESS))
    if body.get("ActivePower") is not None:
        watts = number(body["ActivePower"])
        if watts is None or not abs(watts) <= POWER_MAX_W:
            return Rejected(f"ZbReceived ActivePower {show(body['ActivePower'])} is out of range")
        values.append((SensorKind.POWER, abs(watts)))
    battery = number(body.get("BatteryPercentage"))
    link = number(body.get("LinkQuality"))
    report = DeviceReport(
        gateway=gateway,
        device=f"{bridge}:{ident}",
        ts=when[0],
        stamped=when[1],
        values=tuple(values),
        battery=battery if battery is not None and 0.0 <= battery <= 100.0 else None,
        link_quality=link if link is not None and 0.0 <= link <= 255.0 else None,
    )
    if report.empty:
        return Ignored(f"ZbReceived {show(ident)}: nothing anbu reads")
    return report


def _zone_status(body: dict[str, Any]) -> int | None:
    """The IAS zone status bits a ZbReceived device carries, or None."""
    raw = body.get("ZoneStatusChange", body.get("ZoneStatus"))
    if isinstance(raw, bool) or not isinstance(raw, int) or not 0 <= raw <= 0xFFFF:
        return None
    return raw
