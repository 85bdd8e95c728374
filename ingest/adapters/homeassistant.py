"""Home Assistant's MQTT namespace under `gw/<id>/homeassistant/...`: discovery, not readings.

ESPHome (`mqtt: discovery: true`, its default) and Zigbee2MQTT (with `homeassistant` on)
publish retained discovery configs, `homeassistant/<component>/[<node>/]<object>/config`, and
Home Assistant announces itself on `homeassistant/status`. They describe devices, they are no
reading: each is ignored with that reason rather than dead-lettered. (Reading them to list a
gateway's unregistered devices is the discovery work of issue 16, which replaces this row.)
"""

from __future__ import annotations

from datetime import datetime

from core.domain import GatewayStatus, Reading, Rejected
from ingest.adapters.common import DeviceAvailability, DeviceReport, Ignored, show

Parsed = Reading | GatewayStatus | Rejected | DeviceReport | DeviceAvailability | Ignored


def parse(
    gateway: str, rest: str, payload: bytes, now: datetime, future_tolerance_s: int
) -> list[Parsed]:
    """Every Home Assistant topic: ignored, with what it is."""
    if rest == "status":
        return [Ignored("homeassistant/status is Home Assistant's own birth message")]
    if rest.endswith("/config"):
        return [Ignored(f"homeassistant {show(rest)} is a discovery config, not a reading")]
    return [Ignored(f"homeassistant {show(rest)} carries nothing anbu reads")]
