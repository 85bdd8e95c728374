"""Shelly Gen2+ (Plus/Pro/Gen3): `gw/<id>/shelly/<device>/events/rpc` and `<device>/online`.

With "RPC status notifications over MQTT" on, a device publishes JSON-RPC notifications on
`<prefix>/events/rpc`: `NotifyFullStatus` (every component, on connect) and `NotifyStatus`
(only what changed, e.g. `{"switch:0": {"id": 0, "apower": 12.3}}`), both with `params.ts`
in epoch seconds; `NotifyEvent` (button pushes) carries no state. With "generic status
update" on it also publishes `<prefix>/status/<component>`. `<prefix>/online` is a retained
`true`/`false` (its LWT). Component id 0 is the device itself; id n > 0 is `<device>:<n>`.
An input's `state` true means activated (value 1): wire a door's reed switch accordingly
or set the input's `invert`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from core.domain import GatewayStatus, Reading, Rejected, SensorKind
from ingest.adapters.common import (
    CONTACT_KINDS,
    POWER_MAX_W,
    DeviceAvailability,
    DeviceReport,
    Ignored,
    load_object,
    number,
    show,
    stamp,
    switch_state,
    text_of,
)

Parsed = Reading | GatewayStatus | Rejected | DeviceReport | DeviceAvailability | Ignored
STATUS_METHODS = ("NotifyStatus", "NotifyFullStatus")


def _energy_kwh(raw: Any) -> float | None:
    total = number(raw.get("total")) if isinstance(raw, dict) else None
    return None if total is None else total / 1000.0  # aenergy.total is in Wh


def _battery(raw: Any) -> float | None:
    return number(raw.get("percent")) if isinstance(raw, dict) else None


@dataclass(frozen=True, slots=True)
class Prop:
    """One component property: key, candidate kinds (empty = secondary slot), reader, range."""

    key: str
    kinds: tuple[SensorKind, ...]
    read: Callable[[Any], float | None]
    low: float = 0.0
    high: float = 1.0
    slot: str = ""


COMPONENTS: dict[str, tuple[Prop, ...]] = {
    "switch": (
        Prop("apower", (SensorKind.POWER,), number, -POWER_MAX_W, POWER_MAX_W),
        Prop("output", (SensorKind.APPLIANCE,), switch_state),
        Prop("aenergy", (), _energy_kwh, 0.0, 1e9, "energy_kwh"),
    ),
    "pm1": (
        Prop("apower", (SensorKind.POWER,), number, -POWER_MAX_W, POWER_MAX_W),
        Prop("aenergy", (), _energy_kwh, 0.0, 1e9, "energy_kwh"),
    ),
    "input": (Prop("state", CONTACT_KINDS, switch_state),),
    "devicepower": (Prop("battery", (), _battery, 0.0, 100.0, "battery"),),
    "wifi": (Prop("rssi", (), number, -127.0, 0.0, "link_quality"),),
}


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
    doc = load_object(payload)
    if isinstance(doc, str):
        return [Rejected(doc)]
    if tail == "events/rpc":
        method = doc.get("method")
        if method not in STATUS_METHODS:
            return [Ignored(f"shelly {show(method)} carries no status")]
        params = doc.get("params")
        if not isinstance(params, dict):
            return [Rejected(f"{method} without a params object")]
        components = {k: v for k, v in params.items() if k != "ts"}
        raw_ts = params.get("ts")
    elif tail.startswith("status/"):
        components, raw_ts = {tail.removeprefix("status/"): doc}, None
    else:
        return [Ignored(f"shelly {show(tail)} carries no status")]
    when = stamp(raw_ts, now, future_tolerance_s)
    if isinstance(when, str):
        return [Rejected(when)]
    return _reports(gateway, device, components, when) or [
        Ignored(f"shelly status of {show(sorted(components), 120)}: nothing anbu reads")
    ]


def _reports(
    gateway: str, device: str, components: dict[str, Any], when: tuple[datetime, bool]
) -> list[Parsed]:
    by_id: dict[int, dict[str, Any]] = {}
    for name, body in components.items():
        ctype, _, cid = name.partition(":")
        props = COMPONENTS.get(ctype)
        if props is None or not isinstance(body, dict):
            continue
        index = int(cid) if cid.isascii() and cid.isdigit() else 0
        slot = by_id.setdefault(index, {"values": []})
        for p in props:
            if body.get(p.key) is None:
                continue  # partial update, or an input without state (button mode)
            value = p.read(body[p.key])
            if value is None or not p.low <= value <= p.high:
                return [Rejected(f"{name}.{p.key} {show(body[p.key])} is not a valid value")]
            if p.kinds:
                value = abs(value) if p.key == "apower" else value  # reversed CT clamps
                slot["values"].extend((kind, value) for kind in p.kinds)
            else:
                slot[p.slot] = value
    out: list[Parsed] = []
    for index, slot in sorted(by_id.items()):
        report = DeviceReport(
            gateway=gateway,
            device=device if index == 0 else f"{device}:{index}",
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
