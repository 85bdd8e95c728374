"""Zigbee2MQTT 2.x: `gw/<id>/zigbee2mqtt/<friendly name>[/availability]`.

Device state is a JSON object holding whatever the device's converter exposes: `contact`
(true = magnet close = door shut), `occupancy`, `power` (W), `state` (relay "ON"/"OFF"),
`energy` (kWh), `battery` (%), `linkquality` (0-255), and `last_seen` when the bridge has
`advanced.last_seen` enabled (ISO_8601, ISO_8601_local or epoch milliseconds). Availability is
`{"state":"online"}` (or the legacy plain `online`/`offline`), retained. Friendly names may
contain slashes. `bridge/state` is the bridge itself: the gateway's liveness.

With `advanced.output: attribute` (or `attribute_and_json`) each property comes on its own
topic, `<friendly name>/<property>`, as a bare value (`true`, `87`, `ON`, `null`): a payload
that is not a JSON object on a topic whose last level is a property anbu reads is that
property of the device before it; any other property is ignored. `null` (a value the device
has not reported since the bridge started) and states with nothing anbu reads (`update`, an
empty object) are ignored with their reason, not dead-lettered.

Safety devices (issue 20), as their converters expose them: `smoke`, `gas`, `carbon_monoxide`
(also offered as `gas`: a registered gas or CO sensor reads either) and `water_leak` are an
AlarmValue, ALARM when true; `test` (true while the test button is held, or a self-test) makes
every detector value of the message TEST, never ALARM; `tamper` is a tamper sensor's ALARM or
CLEAR. `action` is a button's gesture (ingest.adapters.common.button_gesture): `single`,
`double`, `sos`, `emergency`... a press, `hold`/`long` a long press, `cancel` the cancel;
`release`, a keypad's `disarm` (no cancel of a call for help) and a remote's other actions are
no press. Zigbee2MQTT never caches
`action`, so it comes once per gesture (with `homeassistant` enabled it may also come on
`<friendly name>/action`: the same press, a moment apart). `battery_low` is a battery matter,
never an alarm, and has no percentage to give: it is not read (the `battery` % is).
In attribute output a detector's `smoke` and its `test` arrive as two messages: `smoke` true
is read as an alarm, and the `test` message after it as a test.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from core.domain import (
    ALARM_KINDS,
    SAFETY_KINDS,
    AlarmValue,
    GatewayStatus,
    Rejected,
    SensorKind,
)
from ingest.adapters.announce import zigbee2mqtt_devices
from ingest.adapters.common import (
    CONTACT_KINDS,
    POWER_MAX_W,
    RELEASE,
    TESTABLE_KINDS,
    DeviceAvailability,
    DeviceReport,
    Ignored,
    Parsed,
    alarm_value,
    button_gesture,
    load_json,
    number,
    show,
    stamp,
    switch_state,
    text_of,
)

AVAILABILITY = {"online": True, "offline": False}
COMMAND_SUFFIXES = ("/set", "/get")


def _opened(raw: Any) -> float | None:
    """Zigbee2MQTT's contact is true when closed; anbu's door/contact value is 1 when open."""
    closed = switch_state(raw)
    return None if closed is None else 1.0 - closed


@dataclass(frozen=True, slots=True)
class Field:
    """One exposed property: its JSON key, the sensor kinds it can be, how to read it, range."""

    key: str
    kinds: tuple[SensorKind, ...]
    convert: Callable[[Any], float | None]
    low: float = 0.0
    high: float = 1.0


PRIMARY: tuple[Field, ...] = (
    Field("contact", CONTACT_KINDS, _opened),
    Field("occupancy", (SensorKind.MOTION,), switch_state),
    Field("presence", (SensorKind.MOTION,), switch_state),
    Field("power", (SensorKind.POWER,), number, 0.0, POWER_MAX_W),
    Field("state", (SensorKind.APPLIANCE,), switch_state),
    Field("smoke", (SensorKind.SMOKE,), switch_state),
    Field("gas", (SensorKind.GAS,), switch_state),
    Field("carbon_monoxide", (SensorKind.CO, SensorKind.GAS), switch_state),
    Field("water_leak", (SensorKind.WATER_LEAK,), switch_state),
    Field("tamper", (SensorKind.TAMPER,), switch_state),
)
TEST = Field("test", TESTABLE_KINDS, switch_state)
"""The detector's test flag: with no detector field beside it, a TEST of whichever detector
the device is registered as."""
SECONDARY: tuple[Field, ...] = (
    Field("battery", (), number, 0.0, 100.0),
    Field("linkquality", (), number, 0.0, 255.0),
    Field("energy", (), number, 0.0, 1e9),
)
BY_KEY = {f.key: f for f in (*PRIMARY, *SECONDARY, TEST)}


def parse(
    gateway: str, rest: str, payload: bytes, now: datetime, future_tolerance_s: int
) -> list[Parsed]:
    """Everything one Zigbee2MQTT message says."""
    if rest == "bridge/state":
        online = _availability(payload)
        if online is None:
            return [Rejected(f"bridge state {show(payload)} is neither online nor offline")]
        return [GatewayStatus(gateway=gateway, online=online)]
    if rest == "bridge/devices":
        return list(zigbee2mqtt_devices(gateway, payload))
    if rest.startswith("bridge/") or rest == "bridge":
        return [Ignored(f"zigbee2mqtt {show(rest)} is bridge housekeeping")]
    if rest.endswith(COMMAND_SUFFIXES) or "/set/" in rest:
        return [Ignored(f"zigbee2mqtt {show(rest)} is a command, not device state")]
    if rest.endswith("/availability"):
        device = rest.removesuffix("/availability")
        online = _availability(payload)
        if not device or online is None:
            return [Rejected(f"availability {show(payload)} is neither online nor offline")]
        return [DeviceAvailability(gateway=gateway, device=device, online=online)]
    if not payload.strip():  # a removed or renamed device's retained state, cleared
        return [Ignored(f"zigbee2mqtt {show(rest)}: empty payload, a retained state cleared")]
    doc, error = load_json(payload)
    if "/" in rest and not isinstance(doc, dict):
        text = text_of(payload)
        if text is None:
            return [Rejected("payload is not UTF-8")]
        if not text.startswith(("{", "[")):  # bare: JSON scalar, or a string as it is (ON)
            return [_attribute(gateway, rest, text if error else doc, now)]
    if error is not None:
        return [Rejected(error)]
    return [_state(gateway, rest, doc, now, future_tolerance_s)]


def _attribute(
    gateway: str, rest: str, doc: Any, now: datetime
) -> DeviceReport | Ignored | Rejected:
    """`<friendly name>/<property>` with a bare value (attribute output): no device time."""
    device, _, key = rest.rpartition("/")
    if key == "action" and device:
        return _action_attribute(gateway, device, doc, now)
    field = BY_KEY.get(key)
    if field is None or not device:
        return Ignored(f"zigbee2mqtt attribute {show(key)} is not one anbu reads")
    if doc is None or doc == "":
        return Ignored(f"zigbee2mqtt {show(key)} is {show(doc)}: no value reported")
    value = field.convert(doc)
    if value is None or not field.low <= value <= field.high:
        return Rejected(f"{key} {show(doc)} is not a valid value")
    if field is TEST and value == 0.0:
        return Ignored("zigbee2mqtt test is false: a test ended, the alarm state is its own")
    values = tuple((kind, _alarm(kind, value, field is TEST)) for kind in field.kinds)
    secondary = {} if field.kinds else {field.key: value}
    return DeviceReport(
        gateway=gateway,
        device=device,
        ts=now,
        stamped=False,
        values=values,
        battery=secondary.get("battery"),
        link_quality=secondary.get("linkquality"),
        energy_kwh=secondary.get("energy"),
    )


def _alarm(kind: SensorKind, value: float, test: bool) -> float:
    """A detector field's value as the registered kind reads it; other kinds keep theirs."""
    if kind not in ALARM_KINDS:
        return value
    return alarm_value(value, test and kind in TESTABLE_KINDS)


def _gesture(raw: Any) -> float | str | None:
    """A button value from `action`; a reason it is none; None for no action at all."""
    if raw is None or raw == "":  # no gesture, or 1.x's legacy reset of the action sensor
        return None
    value = button_gesture(raw)
    if value == RELEASE:
        return f"zigbee2mqtt action {show(raw)} is a release, not a press"
    if value is None:
        return f"zigbee2mqtt action {show(raw)} is no press anbu reads"
    return value


def _action_attribute(gateway: str, device: str, doc: Any, now: datetime) -> DeviceReport | Ignored:
    value = _gesture(doc)
    if value is None:
        return Ignored(f"zigbee2mqtt action is {show(doc)}: no gesture")
    if isinstance(value, str):
        return Ignored(value)
    return DeviceReport(gateway, device, now, False, ((SensorKind.BUTTON, value),))


def _availability(payload: bytes) -> bool | None:
    text = text_of(payload)
    if text is None:
        return None
    if text in AVAILABILITY:  # legacy_availability_payload / 1.x
        return AVAILABILITY[text]
    doc, _ = load_json(payload)
    if isinstance(doc, dict) and isinstance(doc.get("state"), str):
        return AVAILABILITY.get(doc["state"])
    return None


def _state(
    gateway: str, device: str, doc: Any, now: datetime, future_tolerance_s: int
) -> DeviceReport | Ignored | Rejected:
    if not isinstance(doc, dict):
        return Rejected(f"device state is not a JSON object: {show(doc)}")
    when = stamp(doc.get("last_seen"), now, future_tolerance_s)
    if isinstance(when, str):
        return Rejected(when)
    values: list[tuple[SensorKind, float]] = []
    secondary: dict[str, float] = {}
    # an unreadable test flag is no test: it must not hide the smoke beside it
    test = switch_state(doc.get("test")) == 1.0
    error = None
    for f in (*PRIMARY, *SECONDARY):
        raw = doc.get(f.key)
        if raw is None:
            continue
        value = f.convert(raw)
        if value is None or not f.low <= value <= f.high:
            error = error or f"{f.key} {show(raw)} is not a valid value"
            continue
        if f.kinds:
            values.extend((kind, _alarm(kind, value, test)) for kind in f.kinds)
        else:
            secondary[f.key] = value
    if test:  # a test with no detector field beside it: a test of whichever it is
        seen = {kind for kind, _ in values}
        values.extend((kind, AlarmValue.TEST) for kind in TESTABLE_KINDS if kind not in seen)
    gesture = _gesture(doc.get("action"))
    if isinstance(gesture, float):
        values.append((SensorKind.BUTTON, gesture))
    if error is not None and not any(kind in SAFETY_KINDS for kind, _ in values):
        return Rejected(error)  # a bad value beside a fire or a press never hides it
    report = DeviceReport(
        gateway=gateway,
        device=device,
        ts=when[0],
        stamped=when[1],
        values=tuple(values),
        battery=secondary.get("battery"),
        link_quality=secondary.get("linkquality"),
        energy_kwh=secondary.get("energy"),
    )
    if report.empty:
        if isinstance(gesture, str):
            return Ignored(gesture)
        if "battery_low" in doc:
            return Ignored("zigbee2mqtt battery_low is a battery matter, never an alarm: not read")
        return Ignored(f"zigbee2mqtt state with no property anbu reads: {show(sorted(doc), 120)}")
    return report
