"""Home Assistant MQTT discovery under `gw/<id>/homeassistant/...`: devices introducing themselves.

ESPHome (`mqtt: discovery: true`, its default), Zigbee2MQTT (`homeassistant: enabled`) and
Tasmota (SetOption19 1) publish one retained config per entity,
`homeassistant/<component>/[<node id>/]<object id>/config`
(https://www.home-assistant.io/integrations/mqtt/#mqtt-discovery), JSON with full or
abbreviated keys (`stat_t`, `dev_cla`, `dev`: `ids`, `mdl`, `mf`, and `~` for a base topic).
The entity's state topic says which device anbu would register: `<node>/<component>/<object
id>/state` is ESPHome's `<node>/<object id>`, `zigbee2mqtt/<name>` Zigbee2MQTT's `<name>`,
`tele|stat/<topic>/...` Tasmota's `<topic>`, `shellies/<id>/...` and `<id>/status/...`
Shelly's `<id>`. Its component and device_class suggest the kind (ingest.adapters.classes).
An empty retained payload removes the config: the device is marked removed.
`homeassistant/status` is Home Assistant's own birth message: ignored.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from core.domain import Rejected
from ingest.adapters.classes import ha_kind
from ingest.adapters.common import (
    DeviceAnnounced,
    DeviceGone,
    Ignored,
    Parsed,
    device_id,
    label,
    load_object,
    show,
)
from ingest.adapters.esphome import ENTITY_COMPONENTS

STATE_KEYS = ("state_topic", "stat_t", "json_attributes_topic", "json_attr_t")
DEVICE_CLASS_KEYS = ("device_class", "dev_cla")


def parse(
    gateway: str, rest: str, payload: bytes, now: datetime, future_tolerance_s: int
) -> list[Parsed]:
    """One Home Assistant topic: a discovery config (or its removal), or housekeeping."""
    if rest == "status":
        return [Ignored("homeassistant/status is Home Assistant's own birth message")]
    parts = rest.split("/")
    if parts[-1] != "config" or len(parts) not in (3, 4) or not all(parts):
        return [Ignored(f"homeassistant {show(rest)} carries nothing anbu reads")]
    component = parts[0]
    config = f"homeassistant/{rest}"
    if not payload.strip():
        return [DeviceGone(gateway=gateway, config=config)]
    doc = load_object(payload)
    if isinstance(doc, str):
        return [Rejected(f"discovery config {show(rest)}: {doc}")]
    state = _state_topic(doc, gateway)
    if state is None:
        return [Ignored(f"discovery config {show(rest)} names no state topic anbu can follow")]
    found = _device(state)
    if found is None:
        return [Ignored(f"discovery config {show(rest)}: state topic {show(state)} is no device's")]
    raw_device, source, per_entity = found
    device = device_id(raw_device)
    if isinstance(device, Rejected):
        return [device]
    raw_class = next((doc[k] for k in DEVICE_CLASS_KEYS if isinstance(doc.get(k), str)), None)
    kind = ha_kind(component, raw_class)
    if kind is None and per_entity:  # an ESPHome node's wifi signal, uptime...: not a device
        return [Ignored(f"discovery config {show(rest)} describes nothing anbu reads")]
    dev = doc.get("device", doc.get("dev"))
    dev = dev if isinstance(dev, dict) else {}
    return [
        DeviceAnnounced(
            gateway=gateway,
            device=device,
            config=config,
            source=source,
            vendor_class=label(f"{component}/{raw_class}" if raw_class else component),
            kind=kind,
            model=label(dev.get("model", dev.get("mdl"))),
            name=label(dev.get("name")),
        )
    ]


def _state_topic(doc: dict[str, Any], gateway: str) -> str | None:
    base = doc.get("~")
    for key in STATE_KEYS:
        topic = doc.get(key)
        if not isinstance(topic, str) or not topic:
            continue
        if isinstance(base, str):
            if topic.startswith("~"):
                topic = base + topic[1:]
            elif topic.endswith("~"):
                topic = topic[:-1] + base
        return topic.removeprefix(f"gw/{gateway}/")
    return None


def _device(state: str) -> tuple[str, str, bool] | None:
    """(the device id anbu registers, its dialect, True when it is one entity of a node)."""
    parts = state.split("/")
    if parts[0] == "homeassistant":  # a device speaking Home Assistant's own topics
        return None
    if len(parts) >= 4 and parts[-1] == "state" and parts[-3] in ENTITY_COMPONENTS:
        return f"{parts[-4]}/{parts[-2]}", "esphome", True
    if len(parts) >= 3 and parts[0] in ("tele", "stat"):
        return parts[1], "tasmota", False
    if len(parts) >= 3 and parts[0] == "shellies":
        return parts[1], "shelly", False
    if len(parts) >= 3 and parts[1] == "status":
        return parts[0], "shelly", False
    if len(parts) >= 2 and parts[0] == "zigbee2mqtt":
        return "/".join(parts[1:]), "zigbee2mqtt", False
    return None
