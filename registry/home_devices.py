"""A home's gateways and sensors, enrolled by a district's admin: added with their ids checked
(the broker's rule for a gateway's id, one sensor per device id on a gateway), changed, removed.
A removed sensor's readings stay as history under its id. Refusals raise residents_edit.Refused.
A gateway with its broker account (issued, replaced, removed): registry.gateway_accounts.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg

from core.domain import SensorKind
from registry.broker_accounts import GATEWAY_ID  # the broker's own rule for a gateway's id
from registry.enrolment import ROOMS
from registry.residents_csv import LineError
from registry.residents_edit import Refused

VENDOR_ID_MAX = 100


def _refuse(field: str, code: str) -> Refused:
    return Refused([LineError(0, field, code)])


@dataclass(frozen=True, slots=True)
class SensorView:
    id: int
    gateway_id: str
    vendor_id: str
    kind: str
    room: str


@dataclass(frozen=True, slots=True)
class GatewayView:
    id: str
    online: bool | None
    last_seen_at: datetime | None
    sensors: tuple[SensorView, ...]


def home_devices(conn: psycopg.Connection[Any], resident_id: int) -> list[GatewayView]:
    """A resident's gateways with their sensors, by id (a removed one waiting for its broker
    account's revocation is no longer the home's: registry.gateway_accounts)."""
    gateways = conn.execute(
        """SELECT id, online, last_seen_at FROM anbu.gateway
            WHERE resident_id = %s AND removed_at IS NULL ORDER BY id""",
        (resident_id,),
    ).fetchall()
    sensors = conn.execute(
        """SELECT s.id, s.gateway_id, s.vendor_id, s.kind, s.room FROM anbu.sensor s
             JOIN anbu.gateway g ON g.id = s.gateway_id
            WHERE g.resident_id = %s ORDER BY s.gateway_id, s.vendor_id""",
        (resident_id,),
    ).fetchall()
    return [
        GatewayView(
            str(gid), online, seen,
            tuple(SensorView(int(s[0]), s[1], s[2], s[3], s[4]) for s in sensors if s[1] == gid),
        )
        for gid, online, seen in gateways
    ]  # fmt: skip


def add_home_gateway(conn: psycopg.Connection[Any], resident_id: int, gateway_id: str) -> str:
    """Give a resident's home a new gateway; Refused for a malformed id or one in use."""
    gateway_id = gateway_id.strip()
    if not GATEWAY_ID.fullmatch(gateway_id):
        raise _refuse("gateway_id", "gateway_id_format")
    with conn.transaction():
        made = conn.execute(
            """INSERT INTO anbu.gateway (id, resident_id) VALUES (%s, %s)
               ON CONFLICT (id) DO NOTHING RETURNING id""",
            (gateway_id, resident_id),
        ).fetchone()
    if made is None:
        raise _refuse("gateway_id", "gateway_taken")
    return gateway_id


def check_sensor(
    conn: psycopg.Connection[Any], gateway_id: str, vendor_id: str, kind: str, room: str
) -> tuple[str, SensorKind, str]:
    """(vendor id, kind, room) checked for a new sensor of `gateway_id`; Refused otherwise."""
    problems = []
    vendor_id = vendor_id.strip()
    if not vendor_id:
        problems.append(LineError(0, "vendor_id", "required"))
    elif len(vendor_id) > VENDOR_ID_MAX:
        problems.append(LineError(0, "vendor_id", "too_long", (("max", VENDOR_ID_MAX),)))
    elif conn.execute(
        "SELECT 1 FROM anbu.sensor WHERE gateway_id = %s AND vendor_id = %s",
        (gateway_id, vendor_id),
    ).fetchone():
        problems.append(LineError(0, "vendor_id", "sensor_taken"))
    if kind not in {k.value for k in SensorKind}:
        problems.append(LineError(0, "kind", "bad_kind"))
    if room not in ROOMS:
        problems.append(LineError(0, "room", "bad_room"))
    if problems:
        raise Refused(problems)
    return vendor_id, SensorKind(kind), room


def add_home_sensor(
    conn: psycopg.Connection[Any], gateway_id: str, vendor_id: str, kind: str, room: str
) -> int:
    """A new sensor (not a heard device: see ingest.devices.register_device); its id."""
    with conn.transaction():
        vendor_id, sensor_kind, room = check_sensor(conn, gateway_id, vendor_id, kind, room)
        made = conn.execute(
            """INSERT INTO anbu.sensor (gateway_id, vendor_id, kind, room) VALUES (%s, %s, %s, %s)
               ON CONFLICT (gateway_id, vendor_id) DO NOTHING RETURNING id""",
            (gateway_id, vendor_id, sensor_kind.value, room),
        ).fetchone()
    if made is None:
        raise _refuse("vendor_id", "sensor_taken")
    return int(made[0])


def is_heard(conn: psycopg.Connection[Any], gateway_id: str, device: str) -> bool:
    """True when the gateway has been heard reporting `device` (anbu.heard_devices)."""
    row = conn.execute(
        "SELECT 1 FROM anbu.heard_devices WHERE gateway_id = %s AND device = %s",
        (gateway_id, device.strip()),
    ).fetchone()
    return row is not None


def change_sensor(conn: psycopg.Connection[Any], sensor_id: int, kind: str, room: str) -> None:
    """A sensor's kind and room; Refused for unknown ones."""
    problems = []
    if kind not in {k.value for k in SensorKind}:
        problems.append(LineError(0, "kind", "bad_kind"))
    if room not in ROOMS:
        problems.append(LineError(0, "room", "bad_room"))
    if problems:
        raise Refused(problems)
    conn.execute(
        "UPDATE anbu.sensor SET kind = %s, room = %s WHERE id = %s", (kind, room, sensor_id)
    )


def _drop_sensors(conn: psycopg.Connection[Any], sensor_ids: list[int]) -> None:
    """Unregister sensors; their readings stay, as history under the old sensor id."""
    for table in ("sensor_state", "sensor_cadence"):
        conn.execute(f"DELETE FROM anbu.{table} WHERE sensor_id = ANY(%s)", (sensor_ids,))  # nosec B608  # table names are constants
    conn.execute("DELETE FROM anbu.sensor WHERE id = ANY(%s)", (sensor_ids,))


def remove_sensor(conn: psycopg.Connection[Any], sensor_id: int) -> None:
    with conn.transaction():
        _drop_sensors(conn, [sensor_id])
