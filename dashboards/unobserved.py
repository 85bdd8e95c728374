"""Homes the care queue shows as unobserved: the one place a device problem is the care
manager's concern.

A silent plug or a flat battery is the technician's (dashboards.sites). But while every
gateway of a home is down, or every sensor that sees the resident is silent, inactivity cannot
be detected there: the care manager sees that home once, with since when, which devices, whether
a technician has it yet (a device finding or a site incident of the technician's queue names
it) and where its check-in call stands, and decides to call or visit. The health sweep keeps
`anbu.home_unobserved`; a home leaves it, and this list, when it is observed again.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg.rows import dict_row

from alerts.queries import Dongs, dong_list
from core.domain import AlertState
from dashboards.sites import DEVICE_FINDING_KINDS
from detectors.health import UNKNOWN_STATUS, sensor_name
from detectors.site import KIND as SITE_OUTAGE

SHOWN = 200  # the longest list the queue shows (a site outage: the technician's incident says)

_UNOBSERVED = """
SELECT u.resident_id, r.home, r.dong_code, u.since, u.why, u.gateways, u.sensors,
       a.id AS alert_id, a.state AS alert_state,
       (SELECT min(f.raised_at) FROM anbu.findings f
         WHERE f.resident_id = u.resident_id AND f.kind = ANY(%(kinds)s)
           AND f.raised_at >= u.since) AS finding_at,
       (SELECT min(i.started_at) FROM anbu.incidents i
         WHERE i.kind = %(site)s AND i.ended_at IS NULL
           AND i.details->'gateway_ids' ?| u.gateways) AS incident_at,
       count(*) OVER () AS total
  FROM anbu.home_unobserved u
  JOIN anbu.resident r ON r.id = u.resident_id
  LEFT JOIN anbu.alerts a ON a.resident_id = u.resident_id AND a.kind = %(unknown)s
                         AND a.state <> 'resolved'
 WHERE r.dong_code = ANY(%(dongs)s) AND r.status <> 'ended'
 ORDER BY u.since, u.resident_id
 LIMIT %(limit)s
"""


@dataclass(frozen=True, slots=True)
class Device:
    """A device that does not report: a gateway, or a sensor named as people call it."""

    name_ko: str
    name_en: str


@dataclass(frozen=True, slots=True)
class UnobservedHome:
    """One home the care manager cannot watch through its sensors now."""

    resident_id: int
    home: str
    dong_code: str
    since: datetime  # the resident's last data
    why: str  # gateway_offline, sensors_silent, site_outage
    devices: tuple[Device, ...]
    technician_since: datetime | None  # when the technician's queue got it; None: not yet
    alert_id: int | None  # the resident's open check-in alert for it (unknown_status)
    alert_state: AlertState | None

    def devices_text(self, lang: str) -> str:
        return ", ".join(d.name_en if lang == "en" else d.name_ko for d in self.devices)


@dataclass(frozen=True, slots=True)
class Unobserved:
    homes: tuple[UnobservedHome, ...]
    total: int  # all of them in the dongs, when more than SHOWN


def _devices(gateways: list[str], sensors: list[dict[str, Any]]) -> tuple[Device, ...]:
    named = [Device(f"게이트웨이 {g}", f"gateway {g}") for g in gateways]
    for s in sensors:
        ko, en = sensor_name(str(s.get("kind", "")), str(s.get("room", "")))
        named.append(Device(ko, en))
    return tuple(named)


def unobserved_homes(conn: psycopg.Connection[Any], dongs: Dongs, limit: int = SHOWN) -> Unobserved:
    """Homes of `dongs` unobserved now, the longest unobserved first."""
    params = {"dongs": dong_list(dongs), "kinds": list(DEVICE_FINDING_KINDS),
              "site": SITE_OUTAGE, "unknown": UNKNOWN_STATUS, "limit": limit}  # fmt: skip
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(_UNOBSERVED, params).fetchall()
    homes = tuple(
        UnobservedHome(
            int(r["resident_id"]),
            str(r["home"]),
            str(r["dong_code"]),
            r["since"],
            str(r["why"]),
            _devices(list(r["gateways"] or []), list(r["sensors"] or [])),
            min((t for t in (r["finding_at"], r["incident_at"]) if t is not None), default=None),
            None if r["alert_id"] is None else int(r["alert_id"]),
            None if r["alert_state"] is None else AlertState(r["alert_state"]),
        )
        for r in rows
    )
    return Unobserved(homes, int(rows[0]["total"]) if rows else 0)
