"""Payload dialects: the topic segment after `gw/<gateway id>/` picks the adapter.

A new dialect is one module and one row in DIALECTS; the consumer subscribes to every row's
topics and `route` dispatches by the segment. Vendor adapters return DeviceReport (values
the registry resolves to one Reading), DeviceAvailability (liveness), Ignored (housekeeping
the vendor publishes) or Rejected (a dead letter with its reason); never a vendor dict.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime

from core.domain import GatewayStatus, Reading, Rejected
from ingest.adapters import esphome, native, shelly, tasmota, zigbee2mqtt
from ingest.adapters.common import DeviceAvailability, DeviceReport, Ignored

Parsed = Reading | GatewayStatus | Rejected | DeviceReport | DeviceAvailability | Ignored
ParseFn = Callable[[str, str, bytes, datetime, int], list[Parsed]]


@dataclass(frozen=True, slots=True)
class Dialect:
    """One payload dialect: its topic segment, its parser and the subtopics ingest reads."""

    segment: str
    parse: ParseFn
    subtopics: tuple[str, ...]
    """MQTT filters under gw/+/<segment>/ that the consumer subscribes to."""


DIALECTS: tuple[Dialect, ...] = (
    Dialect(segment="anbu", parse=native.parse, subtopics=("readings", "status")),  # type: ignore[arg-type]
    Dialect(segment="zigbee2mqtt", parse=zigbee2mqtt.parse, subtopics=("#",)),
    Dialect(segment="tele", parse=tasmota.parse_tele, subtopics=("+/SENSOR", "+/STATE", "+/LWT")),
    Dialect(segment="stat", parse=tasmota.parse_stat, subtopics=("+/+",)),
    Dialect(
        segment="shelly", parse=shelly.parse, subtopics=("+/events/rpc", "+/online", "+/status/+")
    ),
    Dialect(segment="esphome", parse=esphome.parse, subtopics=("#",)),
)

BY_SEGMENT: Mapping[str, Dialect] = {d.segment: d for d in DIALECTS}

log = logging.getLogger(__name__)


def topic_filters() -> list[str]:
    """Every topic filter the consumer subscribes to (without the $share prefix)."""
    return [f"gw/+/{d.segment}/{sub}" for d in DIALECTS for sub in d.subtopics]


def route(topic: str, payload: bytes, now: datetime, future_tolerance_s: int) -> list[Parsed]:
    """Split `gw/<id>/<dialect>/<rest>` and hand the payload to that dialect's parser.

    A parser that raises on one message turns that message into a dead letter saying so: a
    payload nobody foresaw must never stop the stream for every other home.
    """
    parts = topic.split("/", 3)
    if len(parts) < 4 or parts[0] != "gw" or not parts[1] or not parts[3]:
        return [Rejected(f"topic {native.show(topic)} is not gw/<gateway>/<dialect>/...")]
    _, gateway, segment, rest = parts
    dialect = BY_SEGMENT.get(segment)
    if dialect is None:
        return [Rejected(f"unknown dialect {native.show(segment)}")]
    try:
        return dialect.parse(gateway, rest, payload, now, future_tolerance_s)
    except Exception as exc:  # any bug in any adapter: this message only, never the batch
        log.warning(
            "adapter failed on a message",
            extra={"dialect": segment, "error": type(exc).__name__},
            exc_info=True,
        )
        return [Rejected(f"{segment} adapter failed on this message ({type(exc).__name__})")]
