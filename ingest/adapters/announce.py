"""Devices' own introductions other than Home Assistant's: Zigbee2MQTT's device list, Shelly's
announce and Tasmota's discovery. Each gives a device's id (as anbu registers it), model and
the kind its class suggests; none is a reading.

- Zigbee2MQTT `bridge/devices` (retained; https://www.zigbee2mqtt.io/guide/usage/
  mqtt_topics_and_messages.html#zigbee2mqtt-bridge-devices): a JSON list of every paired
  device, `friendly_name` (the id), `definition.model`, `definition.exposes` (properties,
  nested in `features`). A device missing from the next list was removed from the network.
- Shelly Gen1 `shellies/announce` and `shellies/<id>/announce`
  (https://shelly-api-docs.shelly.cloud/gen1/#mqtt-support): `{"id", "model", "mac", ...}`.
  Gen2+ devices have no announce of their own; the usual script (Shelly's
  shelly-script-examples/mqtt-announce.js) publishes their `Shelly.GetDeviceInfo` to the same
  topic: `{"id", "mac", "model": "SNPL-00112EU", "gen": 2, "app": "PlusPlugS", ...}`.
- Tasmota `tasmota/discovery/<mac>/config` and `/sensors` (retained, SetOption19 0, the
  default; Tasmota's xdrv_12_discovery.ino): `t` is the device's topic (its id), `md` the
  model, `rl` its relays; `/sensors` holds `sn`, its sensors (`ENERGY`, `Switch<n>`). An
  emptied `/config` removes the device.
"""

from __future__ import annotations

import re
from typing import Any

from core.domain import Rejected, SensorKind
from ingest.adapters.classes import APPLIANCE, CONTACT, POWER, Z2M_EXPOSES, shelly_kind, strongest
from ingest.adapters.common import (
    DeviceAnnounced,
    DeviceGone,
    Ignored,
    device_id,
    label,
    load_json,
    load_object,
    show,
)

Announcement = DeviceAnnounced | DeviceGone | Ignored | Rejected
Z2M_DEVICES = "zigbee2mqtt/bridge/devices"
EXPOSE_DEPTH = 4  # exposes nest features (a light's state within its composite); no deeper
SWITCH = re.compile(r"Switch[1-9][0-9]?", re.ASCII)


def zigbee2mqtt_devices(gateway: str, payload: bytes) -> list[Announcement]:
    """`bridge/devices`: every device paired with the bridge but the coordinator."""
    doc, error = load_json(payload)
    if error is not None:
        return [Rejected(f"zigbee2mqtt bridge/devices: {error}")]
    if not isinstance(doc, list):
        return [Rejected(f"zigbee2mqtt bridge/devices is not a list: {show(doc)}")]
    out: list[Announcement] = []
    for entry in doc:
        if not isinstance(entry, dict) or entry.get("type") == "Coordinator":
            continue
        name = entry.get("friendly_name")
        if not isinstance(name, str):
            continue
        device = device_id(name)
        if isinstance(device, Rejected):
            out.append(device)
            continue
        definition = entry.get("definition")
        definition = definition if isinstance(definition, dict) else {}
        exposed = sorted(_properties(definition.get("exposes"), EXPOSE_DEPTH))
        kind = strongest([Z2M_EXPOSES[p] for p in exposed if p in Z2M_EXPOSES])
        out.append(
            DeviceAnnounced(
                gateway=gateway,
                device=device,
                config=Z2M_DEVICES,
                source="zigbee2mqtt",
                vendor_class=label(",".join(exposed)),
                kind=kind,
                model=label(definition.get("model", entry.get("model_id"))),
                name=label(definition.get("description")),
            )
        )
    keep = tuple(a.device for a in out if isinstance(a, DeviceAnnounced))
    return [*out, DeviceGone(gateway=gateway, config=Z2M_DEVICES, keep=keep)]


def _properties(exposes: Any, depth: int) -> set[str]:
    found: set[str] = set()
    if depth <= 0 or not isinstance(exposes, list):
        return found
    for expose in exposes:
        if not isinstance(expose, dict):
            continue
        prop = expose.get("property")
        if isinstance(prop, str):
            found.add(prop)
        found |= _properties(expose.get("features"), depth - 1)
    return found


def shelly_announce(gateway: str, payload: bytes) -> list[Announcement]:
    """A device's `announce`: its id and model code (Gen1 SHDW-2, Gen2+ SNPL-00112EU + app)."""
    doc = load_object(payload)
    if isinstance(doc, str):
        return [Rejected(f"shellies announce: {doc}")]
    raw, model, app = doc.get("id"), doc.get("model"), doc.get("app")
    if not isinstance(raw, str):
        return [Rejected(f"shellies announce without an id: {show(sorted(doc), 120)}")]
    device = device_id(raw)
    if isinstance(device, Rejected):
        return [device]
    return [
        DeviceAnnounced(
            gateway=gateway,
            device=device,
            config="shellies/announce",
            source="shelly",
            vendor_class=label(model),
            kind=shelly_kind(model, app if isinstance(app, str) else None)
            if isinstance(model, str)
            else None,
            model=label(model),
        )
    ]


def tasmota_discovery(gateway: str, rest: str, payload: bytes) -> list[Announcement]:
    """`discovery/<mac>/config` (the device) or `/sensors` (what it measures)."""
    parts = rest.split("/")
    if len(parts) != 3 or parts[0] != "discovery" or not parts[1]:
        return [Rejected(f"tasmota topic {show(rest)} is not tasmota/discovery/<mac>/...")]
    config = f"tasmota/discovery/{parts[1]}/config"
    if parts[2] not in ("config", "sensors"):
        return [Ignored(f"tasmota {show(rest)} is no discovery message anbu reads")]
    if not payload.strip():
        if parts[2] == "config":
            return [DeviceGone(gateway=gateway, config=config)]
        return [Ignored(f"tasmota {show(rest)} cleared; its /config says whether it is gone")]
    doc = load_object(payload)
    if isinstance(doc, str):
        return [Rejected(f"tasmota {show(rest)}: {doc}")]
    if parts[2] == "sensors":
        sensors = doc.get("sn")
        if not isinstance(sensors, dict):
            return [Rejected(f"tasmota {show(rest)} has no sensors object (sn)")]
        kinds = [POWER] if "ENERGY" in sensors else []
        kinds += [CONTACT] if any(SWITCH.fullmatch(k) for k in sensors) else []
        if not kinds:
            return [Ignored(f"tasmota {show(rest)}: no sensor anbu reads")]
        return [_tasmota(gateway, "", config, strongest(kinds), None, ",".join(sorted(sensors)))]
    raw = doc.get("t")
    if not isinstance(raw, str):
        return [Rejected(f"tasmota discovery config without a topic (t): {show(sorted(doc), 120)}")]
    device = device_id(raw)
    if isinstance(device, Rejected):
        return [device]
    relays = doc.get("rl")
    has_relay = isinstance(relays, list) and any(r == 1 for r in relays)
    return [
        _tasmota(gateway, device, config, APPLIANCE if has_relay else None, doc.get("md"), None),
    ]


def _tasmota(
    gateway: str,
    device: str,
    config: str,
    kind: SensorKind | None,
    model: Any,
    vendor_class: str | None,
) -> DeviceAnnounced:
    return DeviceAnnounced(
        gateway=gateway,
        device=device,
        config=config,
        source="tasmota",
        vendor_class=label(vendor_class),
        kind=kind,
        model=label(model),
    )
