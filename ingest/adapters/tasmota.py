"""Tasmota: `gw/<id>/tele/<device>/SENSOR|STATE|LWT` and `gw/<id>/stat/<device>/POWER|RESULT`.

As Tasmota publishes with the default FullTopic `%prefix%/%topic%/`: SENSOR holds
`{"Time": "2024-05-01T12:00:00", "ENERGY": {"Power": 45, "Total": 1.2, ...}}` (Time is the
device's local time without offset, taken as Asia/Seoul; Power is a list on multi-channel
meters), STATE holds `POWER`/`POWER1..8` ("ON"/"OFF") and `Wifi.RSSI` (percent), LWT is a
retained plain `Online`/`Offline`, and stat/POWER is the relay's plain "ON"/"OFF". Channel 1
is the device itself; channel n > 1 is registered as `<device>:<n>`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from core.domain import GatewayStatus, Reading, Rejected, SensorKind
from ingest.adapters.common import (
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
LWT = {"online": True, "offline": False}
RELAYS = ("POWER", *(f"POWER{n}" for n in range(1, 9)))


@dataclass(frozen=True, slots=True)
class _Channel:
    power: float | None = None
    relay: float | None = None
    energy: float | None = None


def channel_device(device: str, channel: int) -> str:
    """The vendor id of a channel (1-based): the device itself for channel 1."""
    return device if channel == 1 else f"{device}:{channel}"


def parse_tele(
    gateway: str, rest: str, payload: bytes, now: datetime, future_tolerance_s: int
) -> list[Parsed]:
    """tele/<device>/<SENSOR|STATE|LWT>."""
    device, _, leaf = rest.rpartition("/")
    if not device:
        return [Rejected(f"tasmota topic {show(rest)} is not tele/<device>/<type>")]
    if leaf == "LWT":
        text = text_of(payload)
        online = None if text is None else LWT.get(text.lower())
        if online is None:
            return [Rejected(f"LWT {show(payload)} is neither Online nor Offline")]
        return [DeviceAvailability(gateway=gateway, device=device, online=online)]
    if leaf not in ("SENSOR", "STATE"):
        return [Ignored(f"tasmota tele/{show(leaf)} carries nothing anbu reads")]
    doc = load_object(payload)
    if isinstance(doc, str):
        return [Rejected(doc)]
    when = stamp(doc.get("Time"), now, future_tolerance_s)
    if isinstance(when, str):
        return [Rejected(when)]
    channels = _energy(doc.get("ENERGY")) if leaf == "SENSOR" else _relays(doc)
    if isinstance(channels, str):
        return [Rejected(channels)]
    link = None
    if leaf == "STATE" and isinstance(doc.get("Wifi"), dict):
        link = number(doc["Wifi"].get("RSSI"))
    reports = [
        _report(gateway, channel_device(device, n), when, ch, link if n == 1 else None)
        for n, ch in sorted(channels.items())
    ]
    if not reports and link is not None:
        reports = [_report(gateway, device, when, _Channel(), link)]
    if not reports:
        return [Rejected(f"tasmota {leaf} without ENERGY or POWER: {show(sorted(doc), 120)}")]
    return list(reports)


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
    doc = load_object(payload)
    if isinstance(doc, str):
        return [Rejected(doc)]
    channels = _relays(doc)
    if isinstance(channels, str):
        return [Rejected(channels)]
    if not channels:
        return [Ignored("tasmota RESULT without a relay state")]
    return [
        _report(gateway, channel_device(device, n), (now, False), ch)
        for n, ch in sorted(channels.items())
    ]


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
    return DeviceReport(
        gateway=gateway,
        device=device,
        ts=when[0],
        stamped=when[1],
        values=tuple(values),
        link_quality=link,
        energy_kwh=ch.energy,
    )


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
    if isinstance(totals, str):
        totals = []  # Total is secondary: a malformed counter does not spoil the watts
    out: dict[int, _Channel] = {}
    for i, watts in enumerate(powers):
        if not 0.0 <= watts <= POWER_MAX_W:
            return f"ENERGY.Power {show(watts)} is out of range (0..{POWER_MAX_W:g} W)"
        total = totals[i] if i < len(totals) else None
        out[i + 1] = _Channel(power=watts, energy=total)
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
