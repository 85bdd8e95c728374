"""Writes anbu.heard_devices: what each gateway's devices announced, and which unknown devices
sent readings that were dead-lettered. Called by the store inside the batch's transaction.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import psycopg

from core.domain import Reading, SensorKind
from ingest.adapters import recognise
from ingest.adapters.classes import KIND_RANK, suggested_by_payload
from ingest.adapters.common import (
    DeviceAnnounced,
    DeviceAvailability,
    DeviceGone,
    DeviceReport,
    Parsed,
    device_id,
)

_RANKED = (
    "ARRAY["
    + ", ".join(f"'{k.value}'" for k in sorted(KIND_RANK, key=lambda k: KIND_RANK[k]))
    + "]"
)


def _rank(column: str) -> str:
    return f"coalesce(array_position({_RANKED}, {column}), 0)"


_ANNOUNCE = f"""
INSERT INTO anbu.heard_devices AS h
    (gateway_id, device, source, vendor_class, announced_kind, model, name, configs,
     first_heard, last_heard)
VALUES (%(gw)s, %(device)s, %(source)s, %(class)s, %(kind)s, %(model)s, %(name)s,
        ARRAY[%(config)s], %(now)s, %(now)s)
ON CONFLICT (gateway_id, device) DO UPDATE SET
    source = excluded.source,
    vendor_class = CASE WHEN {_rank("excluded.announced_kind")} >= {_rank("h.announced_kind")}
                        THEN coalesce(excluded.vendor_class, h.vendor_class)
                        ELSE h.vendor_class END,
    announced_kind = CASE WHEN {_rank("excluded.announced_kind")} >= {_rank("h.announced_kind")}
                          THEN excluded.announced_kind ELSE h.announced_kind END,
    model = coalesce(excluded.model, h.model),
    name = coalesce(excluded.name, h.name),
    configs = CASE WHEN %(config)s = ANY(h.configs) THEN h.configs
                   ELSE h.configs || excluded.configs END,
    last_heard = greatest(h.last_heard, excluded.last_heard),
    removed_at = NULL
"""  # nosec B608  # only the constant _rank() expressions are interpolated; values are %(name)s parameters

_ANNOUNCE_BY_CONFIG = f"""
UPDATE anbu.heard_devices AS h SET
    announced_kind = CASE WHEN {_rank("%(kind)s::text")} >= {_rank("h.announced_kind")}
                          THEN %(kind)s ELSE h.announced_kind END,
    vendor_class = coalesce(h.vendor_class, %(class)s),
    last_heard = greatest(h.last_heard, %(now)s)
WHERE gateway_id = %(gw)s AND %(config)s = ANY(configs)
"""  # nosec B608  # only the constant _rank() expressions are interpolated; values are parameters

_GONE = """
UPDATE anbu.heard_devices SET
    configs = array_remove(configs, %(config)s),
    removed_at = CASE WHEN cardinality(array_remove(configs, %(config)s)) = 0
                      THEN coalesce(removed_at, %(now)s) ELSE removed_at END
WHERE gateway_id = %(gw)s AND %(config)s = ANY(configs) AND NOT (device = ANY(%(keep)s))
"""

_UNKNOWN = """
INSERT INTO anbu.heard_devices AS h
    (gateway_id, device, source, payload_kind, first_heard, last_heard, dead_letters)
VALUES (%(gw)s, %(device)s, %(source)s, %(kind)s, %(first)s, %(last)s, %(count)s)
ON CONFLICT (gateway_id, device) DO UPDATE SET
    payload_kind = coalesce(excluded.payload_kind, h.payload_kind),
    last_heard = greatest(h.last_heard, excluded.last_heard),
    dead_letters = h.dead_letters + excluded.dead_letters
"""


@dataclass(slots=True)
class Unknown:
    """Messages of one unregistered device dead-lettered in this batch."""

    source: str
    kind: SensorKind | None
    first: datetime
    last: datetime
    messages: set[int] = field(default_factory=set)
    """Indexes in the batch of its dead-lettered messages: each counts once."""


SOURCES = {"tele": "tasmota", "stat": "tasmota", "cmnd": "tasmota", "shellies": "shelly",
           "anbu": "native"}  # fmt: skip


def note_unknown(
    unknown: dict[tuple[str, str], Unknown],
    i: int,
    topic: str,
    at: datetime,
    item: Parsed,
    gateways: Collection[str],
    sensors: Mapping[tuple[str, str], object],
) -> None:
    """Note, for `record`, an unregistered device on a known gateway whose message (the
    batch's `i`-th) is dead-lettered; its payload's values suggest its kind."""
    kind: SensorKind | None
    if isinstance(item, Reading):
        device, kind = item.sensor, item.kind
    elif isinstance(item, DeviceReport | DeviceAvailability) and not item.whole_device:
        device = item.device
        kind = (
            suggested_by_payload({k for k, _ in item.values})
            if isinstance(item, DeviceReport)
            else None
        )
    else:
        return
    gateway = item.gateway
    if gateway not in gateways or (gateway, device) in sensors:
        return
    if device_id(device) != device:  # no sensor could be registered under it (NUL...)
        return
    entry = unknown.get((gateway, device))
    if entry is None:
        entry = unknown[(gateway, device)] = Unknown(_source(topic), kind, at, at)
    entry.kind = kind or entry.kind
    entry.first, entry.last = min(entry.first, at), max(entry.last, at)
    entry.messages.add(i)


def _source(topic: str) -> str:
    """The dialect a topic is read in, as a heard device's source."""
    parts = topic.split("/", 3)
    found = recognise(parts[2], parts[3]) if len(parts) == 4 else None
    segment = "" if found is None else found[0].segment
    return SOURCES.get(segment, segment)


def record(
    conn: psycopg.Connection[Any],
    events: Sequence[tuple[DeviceAnnounced | DeviceGone, datetime]],
    unknown: dict[tuple[str, str], Unknown],
) -> None:
    """Apply announcements and removals in the order received, then the unknown devices."""
    with conn.cursor() as cur:
        for event, at in events:
            if isinstance(event, DeviceGone):
                cur.execute(
                    _GONE,
                    {"gw": event.gateway, "config": event.config, "keep": list(event.keep),
                     "now": at},
                )  # fmt: skip
                continue
            params = {
                "gw": event.gateway,
                "device": event.device,
                "source": event.source,
                "class": event.vendor_class,
                "kind": None if event.kind is None else event.kind.value,
                "model": event.model,
                "name": event.name,
                "config": event.config,
                "now": at,
            }
            cur.execute(_ANNOUNCE if event.device else _ANNOUNCE_BY_CONFIG, params)
        if unknown:
            cur.executemany(
                _UNKNOWN,
                [
                    {"gw": gw, "device": device, "source": u.source,
                     "kind": None if u.kind is None else u.kind.value,
                     "first": u.first, "last": u.last, "count": len(u.messages)}
                    for (gw, device), u in sorted(unknown.items())
                ],
            )  # fmt: skip
