"""Read side of the residents' care settings, always scoped to the dongs an actor may see; no phone. Notes only
on the resident's card, opened with the data keyring; every read of one resident by a person is
recorded in the access log (`record_read`, in the read's transaction)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import psycopg
from psycopg.rows import dict_row
from starlette.requests import Request

from alerts.queries import Dongs, dong_list
from core import logs
from core.crypto import Keyring
from core.db import keyset_page, keyset_params
from core.domain import SAFETY_KINDS
from dashboards.auth import CareManager
from dashboards.edge import request_id_of
from dashboards.outings import Outing, home_outings
from detectors.health import HealthPolicy
from detectors.summaries import live_hours, summarised_from
from detectors.sweep import SUPPRESSING_STATUSES
from registry import ResidentNotFound
from registry.access_log import Reader, record_access
from registry.secrecy import Notes, resident_notes

# Never phone or notes: what is not selected cannot leak.
_SELECT = """
    SELECT id, home, display_name, dong_code, status, status_until, quiet_start, quiet_end,
           watch_h_max::numeric::float8 AS watch_h_max,
           warning_h_max::numeric::float8 AS warning_h_max,
           critical_h_max::numeric::float8 AS critical_h_max
    FROM anbu.resident
"""


@dataclass(frozen=True, slots=True)
class ResidentView:
    """A resident as their dong's care manager sees them."""

    id: int
    home: str
    display_name: str
    dong_code: str
    status: str
    status_until: datetime | None
    quiet_start: time | None
    quiet_end: time | None
    watch_h_max: float | None
    warning_h_max: float | None
    critical_h_max: float | None

    def suppresses_inactivity(self, now: datetime) -> bool:
        """Away or in hospital with an end date still ahead: the sweep raises no inactivity."""
        return (
            self.status in SUPPRESSING_STATUSES
            and self.status_until is not None
            and self.status_until > now
        )


def list_residents(conn: psycopg.Connection[Any], dongs: Dongs) -> list[ResidentView]:
    """Residents of `dongs`, ended ones last, by dong and home."""
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(
            f"{_SELECT} WHERE dong_code = ANY(%s) ORDER BY (status = 'ended'), dong_code, home",
            (dong_list(dongs),),
        ).fetchall()
    return [ResidentView(**row) for row in rows]


NO_ID_ABOVE = 2**63 - 1  # bigint's largest: "before" it is every id


# the care settings whose changes the history lists (the audit holds enrolment, transfers and
# care notes as well, each read where it belongs)
SETTING_FIELDS = ("status", "status_until", "quiet_start", "quiet_end",
                  "watch_h_max", "warning_h_max", "critical_h_max")  # fmt: skip


@dataclass(frozen=True, slots=True)
class SettingChange:
    """One change of a resident's care settings, from the audit (anbu.resident_changes)."""

    id: int
    at: datetime
    care_manager_id: int
    field: str
    old_value: str | None
    new_value: str | None


def page_history(
    conn: psycopg.Connection[Any],
    resident_id: int,
    dongs: Dongs,
    *,
    limit: int,
    after: Sequence[Any] | None = None,
) -> tuple[list[SettingChange], tuple[Any, ...] | None]:
    """The changes of a resident of `dongs`, newest first, a page at a time; ResidentNotFound
    for any other dong."""
    get_resident(conn, resident_id, dongs)
    before = int(after[0]) if after else NO_ID_ABOVE
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(
            """SELECT id, at, care_manager_id, field, old_value, new_value
                 FROM anbu.resident_changes
                WHERE resident_id = %s AND id < %s AND field = ANY(%s)
                ORDER BY id DESC LIMIT %s""",
            (resident_id, before, list(SETTING_FIELDS), limit + 1),
        ).fetchall()
    return keyset_page([SettingChange(**r) for r in rows], limit, lambda c: (c.id,))


def page_residents(
    conn: psycopg.Connection[Any],
    dongs: Dongs,
    *,
    limit: int,
    after: Sequence[Any] | None = None,
) -> tuple[list[ResidentView], tuple[Any, ...] | None]:
    """list_residents a page at a time (the id breaks ties); with the next page's keyset."""
    seek = (
        ""
        if after is None
        else (
            " AND ((status = 'ended')::int, dong_code, home, id) > (%(k0)s, %(k1)s, %(k2)s, %(k3)s)"
        )
    )
    params = {"dongs": dong_list(dongs), "n": limit + 1, **keyset_params(after)}
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(
            f"{_SELECT} WHERE dong_code = ANY(%(dongs)s){seek}"
            " ORDER BY (status = 'ended'), dong_code, home, id LIMIT %(n)s",
            params,
        ).fetchall()
    return keyset_page(
        [ResidentView(**row) for row in rows],
        limit,
        lambda last: (int(last.status == "ended"), last.dong_code, last.home, last.id),
    )


def get_resident(conn: psycopg.Connection[Any], resident_id: int, dongs: Dongs) -> ResidentView:
    """One resident of `dongs`; ResidentNotFound for any other dong."""
    with conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute(
            f"{_SELECT} WHERE id = %s AND dong_code = ANY(%s)", (resident_id, dong_list(dongs))
        ).fetchone()
    if row is None:
        raise ResidentNotFound(resident_id)
    return ResidentView(**row)


def resident_card(
    conn: psycopg.Connection[Any], resident_id: int, dongs: Dongs, keyring: Keyring | None
) -> tuple[ResidentView, Notes]:
    """A resident of `dongs` with their health and access notes opened; ResidentNotFound
    for any other dong (before anything is opened)."""
    view = get_resident(conn, resident_id, dongs)
    return view, resident_notes(conn, resident_id, keyring)


@dataclass(frozen=True, slots=True)
class SafetyDevice:
    """An emergency button or a fire, gas, CO, leak or tamper detector of the resident's home,
    and its last check-in: rarely used, such a device is known alive by its heartbeats."""

    sensor_id: int
    kind: str
    room: str
    last_seen_at: datetime | None  # its newest message of any kind (state, heartbeat, battery)
    battery: float | None
    state: str  # online, silent (nothing within the health policy's window), offline, never

    @property
    def online(self) -> bool:
        return self.state == "online"


_SAFETY_STATES = ("offline", "silent", "never", "online")  # the card lists the worst first


def safety_devices(
    conn: psycopg.Connection[Any], resident_id: int, now: datetime, policy: HealthPolicy
) -> list[SafetyDevice]:
    """The safety devices of the resident's gateways in use, each with its last check-in and
    whether it is online: heard within `policy.safety_silent_h` and not reported unavailable
    (the health sweep's rule). Call it after the resident's dong was checked."""
    rows = conn.execute(
        """SELECT s.id, s.kind, s.room, st.last_reading_at, st.battery, st.online
             FROM anbu.sensor s JOIN anbu.gateway g ON g.id = s.gateway_id
             LEFT JOIN anbu.sensor_state st ON st.sensor_id = s.id
            WHERE g.resident_id = %s AND g.removed_at IS NULL AND s.kind = ANY(%s)""",
        (resident_id, sorted(k.value for k in SAFETY_KINDS)),
    ).fetchall()
    window = timedelta(hours=policy.safety_silent_h)
    devices = []
    for sid, kind, room, last, battery, online in rows:
        if online is False:
            state = "offline"
        elif last is None:
            state = "never"
        elif now - last > window:
            state = "silent"
        else:
            state = "online"
        devices.append(
            SafetyDevice(int(sid), str(kind), str(room), last,
                         None if battery is None else float(battery), state)
        )  # fmt: skip
    devices.sort(key=lambda d: (_SAFETY_STATES.index(d.state), d.kind, d.room, d.sensor_id))
    return devices


def reader_of(request: Request, manager: CareManager) -> Reader:
    """The care manager behind a request, with its request id (the client's X-Request-ID when
    well-formed, else a new one) and the client's address."""
    given = logs.request_id.get() or request.headers.get("x-request-id", "")
    request_id = request_id_of(given)
    client = request.client.host if request.client else None
    return Reader(care_manager_id=manager.id, request_id=request_id, client=client)


def record_read(
    conn: psycopg.Connection[Any],
    request: Request,
    manager: CareManager,
    resident_id: int,
    view: str,
    fields: Sequence[str] = (),
) -> None:
    """Record that `manager` just read `resident_id` (in the read's own transaction)."""
    record_access(conn, reader_of(request, manager), resident_id, view, fields)


HOUR = timedelta(hours=1)
LIVE_MAX = timedelta(hours=36)  # the hours a card recomputes from readings, at most


def local_days_start(now: datetime, tz: ZoneInfo, days: int) -> datetime:
    """Local midnight beginning the last `days` days up to `now`, today included."""
    start = now.astimezone(tz) - timedelta(days=days - 1)
    return start.replace(hour=0, minute=0, second=0, microsecond=0)


@dataclass(frozen=True, slots=True)
class ActivityHour:
    """One local hour of a resident's home: a person's doings and what they were."""

    hour: datetime  # local (the care programme's time zone)
    activity: int
    motion: int
    door: int
    power_steps: int
    readings: int
    rooms: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Week:
    """A resident's last days, hour by hour (hours with no reading are absent), their outings
    and their findings in that time, newest first."""

    resident: ResidentView
    since: datetime
    until: datetime
    hours: list[ActivityHour]
    findings: list[tuple[datetime, str, str, str, str]]  # raised, kind, severity, ko, en
    outings: list[Outing] = field(default_factory=list)  # local times, oldest first


def activity_week(
    conn: psycopg.Connection[Any],
    resident_id: int,
    dongs: Dongs,
    now: datetime,
    tz: ZoneInfo,
    days: int = 7,
) -> Week:
    """The resident's hourly activity, outings and findings over the last `days` local days up
    to `now`; ResidentNotFound for any other dong.

    The hours come from anbu.activity_hourly as the worker's pass stored them, and those the pass
    has not reached yet (received after its mark: the hour under way, at least) straight from the
    readings by the same rule (detectors.summaries.live_hours), so today's row is filled up to now
    however far behind the pass is (the demo's accelerated clock runs hours between two passes)."""
    resident = get_resident(conn, resident_id, dongs)
    local_now = now.astimezone(tz)
    since = local_days_start(now, tz, days)
    # the pass's mark first: a pass committing meanwhile leaves its hours in the stored rows
    mark = summarised_from(conn)
    rows = conn.execute(
        """SELECT hour, activity, motion, door, power_steps, readings, rooms
             FROM anbu.activity_hourly
            WHERE resident_id = %s AND hour >= %s AND hour <= %s ORDER BY hour""",
        (resident_id, since, now),
    ).fetchall()
    this_hour = now.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    live_from = min(mark or since, this_hour)
    # whole UTC hours; at most LIVE_MAX back, so a pass far behind costs a card a day's readings
    live_from = max(live_from, since.astimezone(UTC).replace(minute=0), this_hour - LIVE_MAX)
    live = live_hours(conn, resident_id, live_from, this_hour + HOUR)
    by_hour = {r[0]: r for r in rows}  # a stored hour the readings no longer hold stays
    by_hour.update((r[0], r) for r in live if r[0] >= since)
    hours = [
        ActivityHour(h.astimezone(tz), a, m, d, p, n, tuple(rooms))
        for h, a, m, d, p, n, rooms in (by_hour[k] for k in sorted(by_hour))
    ]
    findings = conn.execute(
        """SELECT raised_at, kind, severity, reason_ko, reason_en FROM anbu.findings
            WHERE resident_id = %s AND raised_at >= %s AND raised_at <= %s
            ORDER BY raised_at DESC LIMIT 50""",
        (resident_id, since, now),
    ).fetchall()
    outings = [
        Outing(o.start.astimezone(tz), o.end.astimezone(tz))
        for o in home_outings(conn, resident_id, since, now)
    ]
    return Week(
        resident, since, local_now, hours,
        [(r.astimezone(tz), str(k), str(s), str(ko), str(en)) for r, k, s, ko, en in findings],
        outings,
    )  # fmt: skip
