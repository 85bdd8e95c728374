"""What ingest reads of the registry: every sensor by (gateway, vendor id)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import psycopg

from core.domain import SensorKind


@dataclass(frozen=True, slots=True)
class SensorRef:
    """What ingest needs to know about a registered sensor."""

    sensor_id: int
    resident_id: int
    kind: SensorKind
    room: str
    automatic: bool = False  # learned nightly: a plug that switches by itself (a fridge)


def load_sensors(conn: psycopg.Connection[Any]) -> dict[tuple[str, str], SensorRef]:
    """Every registered sensor keyed by (gateway id, vendor id)."""
    rows = conn.execute(
        """SELECT s.gateway_id, s.vendor_id, s.id, g.resident_id, s.kind, s.room, s.automatic
           FROM anbu.sensor s JOIN anbu.gateway g ON g.id = s.gateway_id"""
    ).fetchall()
    return {
        (gw, vendor): SensorRef(int(sid), int(rid), SensorKind(kind), room, bool(auto))
        for gw, vendor, sid, rid, kind, room, auto in rows
    }
