"""What an installer needs at a home and no more: its address and how to get in, its gateways
and sensors, and the device and site findings of the dongs in view. No health notes, no calls,
no care alerts' reasons: a technician sees this and nothing of the care record."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg.rows import dict_row

from alerts.queries import Dongs, dong_list
from core.crypto import Keyring
from core.db import keyset_page, keyset_params
from core.domain import SafetyFinding
from detectors.health import (
    BATTERY_LOW,
    DEVICE_OFFLINE,
    DEVICE_SILENT,
    GATEWAY_OFFLINE,
)
from detectors.site import KIND as SITE_OUTAGE
from registry import ResidentNotFound
from registry.secrecy import resident_note

# Findings about devices and sites, never about a person's care: a detector's test press and
# a device taken off its mount are the technician's to check too.
DEVICE_FINDING_KINDS = (
    DEVICE_SILENT, DEVICE_OFFLINE, BATTERY_LOW, GATEWAY_OFFLINE, SITE_OUTAGE,
    SafetyFinding.ALARM_TEST.value, SafetyFinding.TAMPER.value,
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class SensorView:
    id: int
    vendor_id: str
    kind: str
    room: str


@dataclass(frozen=True, slots=True)
class GatewayView:
    id: str
    online: bool | None
    last_seen_at: datetime | None
    sensors: tuple[SensorView, ...]


@dataclass(frozen=True, slots=True)
class DeviceFinding:
    id: int
    resident_id: int
    home: str
    dong_code: str
    kind: str
    severity: str
    raised_at: datetime
    reason_ko: str
    reason_en: str


@dataclass(frozen=True, slots=True)
class SiteView:
    """A home as an installer sees it."""

    resident_id: int
    home: str
    dong_code: str
    dong_name: str
    address: str | None
    access_notes: str | None
    gateways: tuple[GatewayView, ...]
    findings: tuple[DeviceFinding, ...]


_FINDINGS = """
SELECT f.id, f.resident_id, r.home, r.dong_code, f.kind, f.severity, f.raised_at,
       f.reason_ko, f.reason_en
  FROM anbu.findings f JOIN anbu.resident r ON r.id = f.resident_id
 WHERE r.dong_code = ANY(%(dongs)s) AND f.kind = ANY(%(kinds)s) {more}
 ORDER BY f.raised_at DESC, f.id DESC LIMIT %(limit)s
"""
_AFTER = "AND (f.raised_at, f.id) < (%(k0)s, %(k1)s)"


def device_findings(
    conn: psycopg.Connection[Any], dongs: Dongs, resident_id: int | None = None, limit: int = 200
) -> list[DeviceFinding]:
    """Device and site findings of residents in `dongs` (or of one resident), newest first."""
    return page_device_findings(conn, dongs, resident_id, limit=limit)[0]


def page_device_findings(
    conn: psycopg.Connection[Any],
    dongs: Dongs,
    resident_id: int | None = None,
    *,
    limit: int,
    after: Sequence[Any] | None = None,
) -> tuple[list[DeviceFinding], tuple[Any, ...] | None]:
    """device_findings a page at a time, with the next page's keyset (None on the last)."""
    more = "" if resident_id is None else "AND f.resident_id = %(resident)s"
    if after is not None:
        more += f" {_AFTER}"
    params = {"dongs": dong_list(dongs), "kinds": list(DEVICE_FINDING_KINDS),
              "resident": resident_id, "limit": limit + 1, **keyset_params(after)}  # fmt: skip
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(_FINDINGS.format(more=more), params).fetchall()
    found = [DeviceFinding(**row) for row in rows]
    return keyset_page(found, limit, lambda last: (last.raised_at, last.id))


def site(
    conn: psycopg.Connection[Any], resident_id: int, dongs: Dongs, keyring: Keyring | None
) -> SiteView:
    """A served resident's home in `dongs`: address, access notes (the health notes are never
    opened), gateways with their sensors, device findings; ResidentNotFound for any other dong
    and once the service has ended (the page is for visiting: nobody visits then)."""
    row = conn.execute(
        """SELECT r.home, r.dong_code, d.name, r.address FROM anbu.resident r
             JOIN anbu.dong d ON d.code = r.dong_code
            WHERE r.id = %s AND r.dong_code = ANY(%s) AND r.status <> 'ended'""",
        (resident_id, dong_list(dongs)),
    ).fetchone()
    if row is None:
        raise ResidentNotFound(resident_id)
    access = resident_note(conn, resident_id, keyring, "access_notes")
    gateways = conn.execute(
        """SELECT id, online, last_seen_at FROM anbu.gateway
            WHERE resident_id = %s AND removed_at IS NULL ORDER BY id""",
        (resident_id,),
    ).fetchall()
    sensors = conn.execute(
        """SELECT s.gateway_id, s.id, s.vendor_id, s.kind, s.room FROM anbu.sensor s
             JOIN anbu.gateway g ON g.id = s.gateway_id
            WHERE g.resident_id = %s ORDER BY s.gateway_id, s.id""",
        (resident_id,),
    ).fetchall()
    views = tuple(
        GatewayView(
            gid,
            online,
            seen,
            tuple(SensorView(int(s[1]), s[2], s[3], s[4]) for s in sensors if s[0] == gid),
        )
        for gid, online, seen in gateways
    )
    return SiteView(
        resident_id, row[0], row[1], row[2], row[3], access, views,
        tuple(device_findings(conn, dongs, resident_id, limit=50)),
    )  # fmt: skip


@dataclass(frozen=True, slots=True)
class SiteRow:
    """A home in a technician's list: no name, no address (those are on its page, recorded)."""

    resident_id: int
    home: str
    dong_code: str
    dong_name: str
    gateways: int
    offline: int
    sensors: int


def list_sites(conn: psycopg.Connection[Any], dongs: Dongs) -> list[SiteRow]:
    """Homes of residents in `dongs` whose service has not ended, offline gateways first."""
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(
            """SELECT r.id AS resident_id, r.home, r.dong_code, d.name AS dong_name,
                      count(DISTINCT g.id) AS gateways,
                      count(DISTINCT g.id) FILTER (WHERE g.online IS NOT TRUE) AS offline,
                      count(s.id) AS sensors
                 FROM anbu.resident r
                 JOIN anbu.dong d ON d.code = r.dong_code
                 LEFT JOIN anbu.gateway g ON g.resident_id = r.id AND g.removed_at IS NULL
                 LEFT JOIN anbu.sensor s ON s.gateway_id = g.id
                WHERE r.dong_code = ANY(%s) AND r.status <> 'ended'
                GROUP BY r.id, d.name
                ORDER BY offline DESC, d.name, r.home""",
            (dong_list(dongs),),
        ).fetchall()
    return [SiteRow(**row) for row in rows]
