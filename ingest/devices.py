"""A gateway's devices heard but not registered, and registering one with what it sent before.

Registering replays the device's dead letters (those refused as an unknown sensor) through the
ingest Store, as live traffic: its readings are stored once (readings are unique per sensor and
time) and the letters stay, marked replayed.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from core.db import Database
from core.domain import Reading, SensorKind
from ingest.adapters import route
from ingest.adapters.common import DeviceAvailability, DeviceReport
from ingest.deadletters import ReplayResult, replay_dead_letters
from ingest.store import Store
from registry.heard import register_heard_device

UNKNOWN_REASON = "unknown sensor %"


@dataclass(frozen=True, slots=True)
class HeardDevice:
    """One device a gateway was heard from, with no sensor registered for it."""

    gateway: str
    device: str
    source: str
    vendor_class: str | None
    suggested_kind: SensorKind | None
    model: str | None
    name: str | None
    first_heard: datetime
    last_heard: datetime
    removed_at: datetime | None
    dead_letters: int


@dataclass(frozen=True, slots=True)
class Registered:
    """A heard device registered: its sensor, and what the replay of its dead letters did."""

    sensor_id: int
    replay: ReplayResult


KIND_LABELS: dict[SensorKind, tuple[str, str]] = {
    SensorKind.DOOR: ("현관문", "entrance door"),
    SensorKind.MOTION: ("움직임 감지", "motion"),
    SensorKind.CONTACT: ("열림 감지(현관 외)", "contact (not the entrance)"),
    SensorKind.APPLIANCE: ("가전 켜짐/꺼짐", "appliance on/off"),
    SensorKind.POWER: ("전력 사용량", "power draw (W)"),
}
"""What a person reads for a kind: Korean, then English."""


def gateway_dong(db: Database, gateway: str) -> str | None:
    """The dong of the resident whose gateway this is; None for no such gateway."""
    with db.connection() as conn:
        row = conn.execute(
            """SELECT r.dong_code FROM anbu.gateway g JOIN anbu.resident r ON r.id = g.resident_id
               WHERE g.id = %s""",
            (gateway,),
        ).fetchone()
    return None if row is None else str(row[0])


def list_heard_devices(
    db: Database, gateway: str, *, include_removed: bool = True
) -> list[HeardDevice]:
    """The gateway's unregistered devices: present ones first, the most recently heard first."""
    with db.connection() as conn:
        rows = conn.execute(
            """SELECT h.gateway_id, h.device, h.source, h.vendor_class,
                      coalesce(h.announced_kind, h.payload_kind), h.model, h.name,
                      h.first_heard, h.last_heard, h.removed_at, h.dead_letters
               FROM anbu.heard_devices h
               WHERE h.gateway_id = %s AND (%s OR h.removed_at IS NULL)
                 AND NOT EXISTS (SELECT 1 FROM anbu.sensor s
                                 WHERE s.gateway_id = h.gateway_id AND s.vendor_id = h.device)
               ORDER BY h.removed_at IS NOT NULL, h.last_heard DESC, h.device""",
            (gateway, include_removed),
        ).fetchall()
    return [
        HeardDevice(
            str(gw), str(dev), str(src), cls, None if kind is None else SensorKind(kind),
            model, name, first, last, removed, int(count),
        )
        for gw, dev, src, cls, kind, model, name, first, last, removed, count in rows
    ]  # fmt: skip


def register_device(
    db: Database,
    gateway: str,
    device: str,
    kind: SensorKind,
    room: str,
    now: datetime,
    *,
    future_tolerance_s: int = 300,
) -> Registered:
    """Register a heard device as a sensor, then replay its dead letters into the readings."""
    with db.connection() as conn:
        sensor_id = register_heard_device(conn, gateway, device, kind, room)
    ids = dead_letter_ids(db, gateway, device, future_tolerance_s)
    if not ids:
        return Registered(sensor_id, ReplayResult(0, 0))
    store = Store(db, future_tolerance_s)  # a fresh registry: it knows the new sensor
    return Registered(sensor_id, replay_dead_letters(db, store, now, ids=ids))


def dead_letter_ids(
    db: Database, gateway: str, device: str, future_tolerance_s: int = 300
) -> list[int]:
    """The device's letters not yet replayed: its gateway's unknown-sensor letters that,
    parsed again, speak of it."""
    prefix = "gw/" + gateway.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "/"
    ids: list[int] = []
    with db.connection() as conn:
        cur = conn.cursor(name="heard_device_letters")  # server-side: a gateway may have many
        cur.execute(
            """SELECT id, received_at, topic, payload FROM anbu.dead_letters
               WHERE replayed_at IS NULL AND topic LIKE %s AND reason LIKE %s
               ORDER BY id""",
            (prefix + "%", UNKNOWN_REASON),
        )
        for lid, received_at, topic, payload in cur:
            items = route(topic, bytes(payload), received_at, future_tolerance_s)
            if any(_concerns(item, device) for item in items):
                ids.append(int(lid))
    return ids


def _concerns(item: object, device: str) -> bool:
    if isinstance(item, Reading):
        return item.sensor == device
    if isinstance(item, DeviceReport | DeviceAvailability):
        if item.whole_device:
            return device.startswith(item.device + "/")
        return item.device == device
    return False
