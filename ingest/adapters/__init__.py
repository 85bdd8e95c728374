"""Payload dialects: the topic under `gw/<gateway id>/` picks the adapter.

A new dialect is one module and one row in DIALECTS. `route` reads the level after the gateway
id: a row's `segment` there names its dialect (`zigbee2mqtt`, `tele`, `shellies`, the
`shelly/` and `esphome/` prefixes an installer may configure...). A device that publishes
under its own name, as Shelly Gen2+ (`<model>-<mac>/...`) and ESPHome (`<node>/...`) do by
default, is told by the topic's shape: each row's `shape` says whether a topic is one of its
dialect's, and the first that claims it reads it, the whole topic after the gateway id being
its `rest`. A segment always wins over a shape.

Vendor adapters return DeviceReport (values the registry resolves to one Reading),
DeviceAvailability (liveness), DeviceAnnounced and DeviceGone (a device introducing itself,
or its discovery config removed: ingest.heard), Ignored (housekeeping the vendor publishes,
or a message with nothing anbu reads, with the reason) or Rejected (a dead letter with its
reason); never a vendor dict.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime

from core.domain import Rejected
from ingest.adapters import (
    esphome,
    homeassistant,
    native,
    shelly,
    shelly_gen1,
    tasmota,
    zigbee2mqtt,
)
from ingest.adapters.common import Parsed

ParseFn = Callable[[str, str, bytes, datetime, int], list[Parsed]]
ShapeFn = Callable[[str, str], bool]

SUBSCRIPTION = "gw/+/#"
"""The one filter the consumer subscribes to: `route` tells every layout apart. Several
filters would overlap (`gw/+/+/+/+/state` is an ESPHome node's and also a Zigbee2MQTT device's
attribute), and Mosquitto 2 delivers one copy per matching subscription, a shared one always:
a value stamped on receipt would be stored twice."""


@dataclass(frozen=True, slots=True)
class Dialect:
    """One payload dialect: the segment naming it, its parser, and its default topics' shape."""

    segment: str
    parse: ParseFn
    shape: ShapeFn | None = None
    """(first level after the gateway id, the rest) -> True when the topic is this dialect's
    default layout without a segment naming it; None for a dialect only a segment names."""


DIALECTS: tuple[Dialect, ...] = (
    Dialect(segment="anbu", parse=native.parse),  # type: ignore[arg-type]
    Dialect(segment="zigbee2mqtt", parse=zigbee2mqtt.parse),
    Dialect(segment="tele", parse=tasmota.parse_tele),
    Dialect(segment="stat", parse=tasmota.parse_stat),
    Dialect(segment="cmnd", parse=tasmota.parse_cmnd),
    Dialect(segment="tasmota", parse=tasmota.parse_discovery),
    Dialect(segment="homeassistant", parse=homeassistant.parse),
    Dialect(segment="shellies", parse=shelly_gen1.parse),
    Dialect(segment="shelly", parse=shelly.parse, shape=shelly.shape),  # type: ignore[arg-type]
    Dialect(segment="esphome", parse=esphome.parse, shape=esphome.shape),  # type: ignore[arg-type]
)

BY_SEGMENT: Mapping[str, Dialect] = {d.segment: d for d in DIALECTS}

log = logging.getLogger(__name__)


def topic_filters() -> list[str]:
    """Every topic filter the consumer subscribes to (without the $share prefix)."""
    return [SUBSCRIPTION]


def recognise(first: str, rest: str) -> tuple[Dialect, str] | None:
    """The dialect reading `gw/<gateway>/<first>/<rest>` and the topic it is handed."""
    dialect = BY_SEGMENT.get(first)
    if dialect is not None:
        return dialect, rest
    for d in DIALECTS:
        if d.shape is not None and d.shape(first, rest):
            return d, f"{first}/{rest}"
    return None


def route(topic: str, payload: bytes, now: datetime, future_tolerance_s: int) -> list[Parsed]:
    """Split `gw/<id>/<dialect or device>/<rest>` and hand the payload to that dialect's parser.

    A parser that raises on one message turns that message into a dead letter saying so: a
    payload nobody foresaw must never stop the stream for every other home.
    """
    parts = topic.split("/", 3)
    if len(parts) < 4 or parts[0] != "gw" or not parts[1] or not parts[3]:
        return [Rejected(f"topic {native.show(topic)} is not gw/<gateway>/<dialect>/...")]
    _, gateway, first, rest = parts
    found = recognise(first, rest)
    if found is None:
        return [
            Rejected(
                f"unknown dialect {native.show(first)}: no dialect segment, and no default "
                f"topic layout matches {native.show(first + '/' + rest, 100)}"
            )
        ]
    dialect, handed = found
    try:
        return dialect.parse(gateway, handed, payload, now, future_tolerance_s)
    except Exception as exc:  # any bug in any adapter: this message only, never the batch
        log.warning(
            "adapter failed on a message",
            extra={"dialect": dialect.segment, "error": type(exc).__name__},
            exc_info=True,
        )
        return [
            Rejected(f"{dialect.segment} adapter failed on this message ({type(exc).__name__})")
        ]
