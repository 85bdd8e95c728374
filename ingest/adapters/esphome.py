"""ESPHome's MQTT component: `gw/<id>/<node>/<component>/<object id>/state`, `<node>/status`.

ESPHome's default `mqtt: topic_prefix` is the node name: such topics are recognised by their
shape (a known component and a `state`/`command` leaf, or a `status`/`debug` leaf), and so
are the same under an `esphome/` segment. ESPHome publishes each entity's state as a
plain retained string: binary_sensor and switch "ON"/"OFF", sensor a number ("23.5"), and
`<node>/status` "online"/"offline" (birth and will). A sensor is registered as
`<node>/<object id>`; the node's `battery_level`/`battery` sensor and `wifi_signal` (dBm)
are secondary readings of every sensor of that node, and its status is their liveness.
Binary sensors follow their device class: ON is open (door), detected (motion), on (plug).
A light's state is JSON (`{"state": "ON", "brightness": 255}`): an appliance.
Safety devices (issue 20) are binary sensors too: ON is ALARM (smoke, gas, carbon monoxide,
moisture, tamper), OFF CLEAR; for a button (a panic button or pull cord wired to a GPIO) ON
is a press and OFF its release, no press. ESPHome cannot tell a detector's test from a fire:
a test is read as an alarm. An `event` entity (`{"event_type": "single"}`) is a button's
gesture (ingest.adapters.common.button_gesture).
"""

from __future__ import annotations

from datetime import datetime

from core.domain import ALARM_KINDS, ButtonValue, GatewayStatus, Reading, Rejected, SensorKind
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
    switch_state,
    text_of,
)

Parsed = Reading | GatewayStatus | Rejected | DeviceReport | DeviceAvailability | Ignored
STATUS = {"online": True, "offline": False}
BINARY_KINDS = (*CONTACT_KINDS, SensorKind.MOTION, SensorKind.APPLIANCE)
NODE_SECONDARY = {"battery_level": "battery", "battery": "battery", "wifi_signal": "link_quality"}
ENTITY_COMPONENTS = frozenset(
    {"alarm_control_panel", "binary_sensor", "button", "climate", "cover", "date", "datetime",
     "event", "fan", "light", "lock", "number", "select", "sensor", "siren", "switch", "text",
     "text_sensor", "time", "update", "valve"}
)  # fmt: skip
NODE_LEAVES = ("status", "debug")
ENTITY_LEAVES = ("state", "command")


def shape(first: str, rest: str) -> bool:
    """`<node>/status`, `<node>/debug`, `<node>/<component>/<object id>[/...]/state|command`."""
    parts = rest.split("/")
    if len(parts) == 1:
        return parts[0] in NODE_LEAVES and bool(first)
    return len(parts) >= 3 and parts[0] in ENTITY_COMPONENTS and parts[-1] in ENTITY_LEAVES


def parse(
    gateway: str, rest: str, payload: bytes, now: datetime, future_tolerance_s: int
) -> list[Parsed]:
    """Everything one ESPHome message says (ESPHome has no timestamps: time of receipt)."""
    parts = rest.split("/")
    text = text_of(payload)
    if len(parts) == 2 and parts[1] == "status":
        online = STATUS.get(text or "")
        if online is None:
            return [Rejected(f"status {show(payload)} is neither online nor offline")]
        return [DeviceAvailability(gateway, parts[0], online, whole_device=True)]
    if len(parts) != 4 or parts[3] != "state" or not parts[0] or not parts[2]:
        if len(parts) >= 2 and parts[-1] in ("command", "debug", "discovery"):
            return [Ignored(f"esphome {show(parts[-1])} topic carries no state")]
        if len(parts) > 4 and parts[-1] == "state" and parts[1] in ENTITY_COMPONENTS:
            return [Ignored(f"esphome {show(parts[1])} {show(parts[3])} is not read")]
        return [Rejected(f"esphome topic {show(rest)} is not <node>/<component>/<id>/state")]
    node, component, object_id, _ = parts
    if text is None:
        return [Rejected("state is not UTF-8")]
    if component in ("binary_sensor", "switch"):
        value = switch_state(text)
        if value is None:
            return [Rejected(f"{component} state {show(text)} is neither ON nor OFF")]
        kinds = BINARY_KINDS if component == "binary_sensor" else (SensorKind.APPLIANCE,)
        values = tuple((k, value) for k in kinds)
        if component == "binary_sensor":  # alarm values coincide: ON 1 = ALARM, OFF 0 = CLEAR
            values += tuple((k, value) for k in sorted(ALARM_KINDS))
            values += ((SensorKind.BUTTON, ButtonValue.PRESS),) if value == 1.0 else ()
        return [_report(gateway, f"{node}/{object_id}", now, values)]
    if component == "event":
        doc = load_object(payload)
        raw = doc.get("event_type") if isinstance(doc, dict) else None
        gesture = button_gesture(raw)
        if gesture is None or gesture == RELEASE:
            return [Ignored(f"esphome event {show(raw)} is no press anbu reads")]
        return [_report(gateway, f"{node}/{object_id}", now, ((SensorKind.BUTTON, gesture),))]
    if component == "light":
        doc = load_object(payload)
        value = switch_state(doc.get("state")) if isinstance(doc, dict) else None
        if value is None:
            return [Rejected(f"light state {show(text)} has no ON/OFF state")]
        return [_report(gateway, f"{node}/{object_id}", now, ((SensorKind.APPLIANCE, value),))]
    if component != "sensor":
        return [Ignored(f"esphome {show(component)} entities are not read")]
    value = number(text)
    if value is None:
        return [Rejected(f"sensor state {show(text)} is not a number")]
    slot = NODE_SECONDARY.get(object_id)
    if slot == "battery" and 0.0 <= value <= 100.0:
        return [DeviceReport(gateway, node, now, False, battery=value, whole_device=True)]
    if slot == "link_quality":
        return [DeviceReport(gateway, node, now, False, link_quality=value, whole_device=True)]
    if not 0.0 <= value <= POWER_MAX_W:
        return [Rejected(f"sensor state {show(text)} is out of range for power")]
    return [_report(gateway, f"{node}/{object_id}", now, ((SensorKind.POWER, value),))]


def _report(
    gateway: str, device: str, now: datetime, values: tuple[tuple[SensorKind, float], ...]
) -> DeviceReport:
    return DeviceReport(gateway=gateway, device=device, ts=now, stamped=False, values=values)
