"""Registering a sensor for a device a gateway announced or was heard from (anbu.heard_devices,
kept by ingest): the installer picks its kind and room from the gateway's list."""

from __future__ import annotations

from typing import Any

import psycopg

from core.domain import SensorKind
from registry.enrolment import add_sensor


class DeviceNotHeard(LookupError):
    """No such device was heard on that gateway."""


def register_heard_device(
    conn: psycopg.Connection[Any], gateway_id: str, device: str, kind: SensorKind, room: str
) -> int:
    """Register the heard `device` of `gateway_id` as a sensor of `kind` in `room`; its id.

    Registering it again changes its kind and room, as add_sensor does.
    """
    row = conn.execute(
        "SELECT 1 FROM anbu.heard_devices WHERE gateway_id = %s AND device = %s",
        (gateway_id, device),
    ).fetchone()
    if row is None:
        raise DeviceNotHeard(f"device {device!r} was never heard on gateway {gateway_id!r}")
    return add_sensor(conn, gateway_id, device, kind, room)
