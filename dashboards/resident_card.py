"""The resident card's top (issue 21): who the resident is and how to reach them, and their
recent care record, for the care manager checking before a visit or a call.

Born (year), phones with tap-to-call, the emergency contacts in the order they are called (and
whether each agreed to be called), the address and, for a role that may see the way in, the
access notes; the next routine check-in; the last calls with their outcome and what the
resident said; the alerts, open first; for the dong's own care roles, the care notes
(registry.care_notes). Personal data: read only after the resident's dong was checked (the
caller's activity_week raises for any other), recorded by the page as read, never logged.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import psycopg

from core.crypto import Keyring
from core.domain import SAFETY_KINDS
from dashboards.alert_first import access_notes
from detectors.health import (
    HealthPolicy,
    device_silent,
    device_silent_after_s,
    gateway_down_since,
)
from detectors.health_sweep import home_health
from registry.phones import InvalidPhone, parse_phone

CALLS_SHOWN = 10
ALERTS_SHOWN = 10
NOTES_SHOWN = 20  # the newest; older ones a link away


@dataclass(frozen=True, slots=True)
class NoteDraft:
    """A note the card refused to save, shown again with why, the text kept (for the note it
    would correct, that note's form open)."""

    error: str
    text: str
    kind: str
    corrects: int | None


@dataclass(frozen=True, slots=True)
class Phone:
    shown: str  # as Koreans write it: 010-1234-5678
    tel: str  # E.164, for tel: links


@dataclass(frozen=True, slots=True)
class Contact:
    name: str
    relationship: str
    phone: Phone
    may_call: bool


@dataclass(frozen=True, slots=True)
class Reach:
    birth_year: int | None
    age: int | None  # this year's age from the birth year alone (연 나이)
    address: str | None
    mobile: Phone | None
    landline: Phone | None
    contacts: list[Contact]
    access_shown: bool
    access_notes: str | None
    access_unopened: bool
    next_checkin: datetime | None  # UTC


@dataclass(frozen=True, slots=True)
class Said:
    question: str
    label: str
    speech: str | None


@dataclass(frozen=True, slots=True)
class CallLine:
    id: int
    created_at: datetime
    status: str
    outcome: str | None
    said: list[Said]


@dataclass(frozen=True, slots=True)
class AlertLine:
    id: int
    kind: str
    severity: str
    state: str
    opened_at: datetime
    reason_ko: str | None
    reason_en: str | None


@dataclass(frozen=True, slots=True)
class SensorLine:
    """An activity sensor of the home (door, motion, plug...) and how it is doing."""

    sensor_id: int
    kind: str
    room: str
    last_seen_at: datetime | None
    battery: float | None
    state: str  # gateway_down, offline, silent, quiet, never, online (see home_sensors)


_SENSOR_STATES = ("gateway_down", "offline", "silent", "quiet", "never", "online")  # worst first


def home_sensors(
    conn: psycopg.Connection[Any], resident_id: int, now: datetime, policy: HealthPolicy
) -> list[SensorLine]:
    """The home's sensors other than its safety devices (listed apart), each with its last
    signal, battery and state: behind a gateway that is down (the sweep reports the gateway,
    not its sensors); reported unavailable; silent by the health sweep's own rule (past its
    learned or default cadence while the rest of the home is active: a device finding); quiet
    (as long past its cadence, with nobody active to tell a fault from an empty home); never
    heard; or online."""
    home = home_health(conn, resident_id)
    if home is None:
        return []
    safety = {k.value for k in SAFETY_KINDS}
    down = {g.gateway_id for g in home.gateways if gateway_down_since(g, now, policy) is not None}
    lines = []
    for s in home.sensors:
        if s.kind in safety:
            continue
        quiet_s = None if s.last_reading_at is None else (now - s.last_reading_at).total_seconds()
        if s.gateway_id in down:
            state = "gateway_down"
        elif s.online is False:
            state = "offline"
        elif s.last_reading_at is None:
            state = "never"
        elif device_silent(s, home.sensors, now, policy):
            state = "silent"
        elif quiet_s is not None and quiet_s > device_silent_after_s(s, policy):
            state = "quiet"
        else:
            state = "online"
        lines.append(SensorLine(s.sensor_id, s.kind, s.room, s.last_reading_at, s.battery, state))
    lines.sort(key=lambda x: (_SENSOR_STATES.index(x.state), x.kind, x.room, x.sensor_id))
    return lines


def phone(e164: str | None) -> Phone | None:
    if not e164:
        return None
    try:
        return Phone(parse_phone(e164).national, e164)
    except InvalidPhone:
        return Phone(e164, e164)


def next_checkin(
    plans: list[tuple[list[int], Any]], now: datetime, tz: ZoneInfo
) -> datetime | None:
    """The next slot of the active routine plans (ISO weekdays, local time), in UTC."""
    local = now.astimezone(tz)
    best: datetime | None = None
    for weekdays, at in plans:
        for ahead in range(8):
            day = local.date() + timedelta(days=ahead)
            if day.isoweekday() not in weekdays:
                continue
            slot = datetime.combine(day, at, tz)
            if slot > local:
                best = slot if best is None or slot < best else best
                break
    return None if best is None else best.astimezone(ZoneInfo("UTC"))


def reach(
    conn: psycopg.Connection[Any],
    resident_id: int,
    now: datetime,
    tz: ZoneInfo,
    keyring: Keyring | None,
    may_see_access: bool,
    calls_placed: bool = True,
) -> Reach:
    """How to reach the resident; the access notes opened only when `may_see_access` (the
    page asks for them on a press, and records that read); the next check-in only when
    routine calls are placed (the resident's status is active)."""
    row = conn.execute(
        """SELECT birth_year, address, mobile_phone, landline_phone FROM anbu.resident
           WHERE id = %s""",
        (resident_id,),
    ).fetchone()
    birth, address, mobile, landline = row if row else (None, None, None, None)
    contacts = [
        Contact(str(name), str(relation or ""), phone(str(tel)) or Phone(str(tel), str(tel)),
                bool(may))
        for name, relation, tel, may in conn.execute(
            """SELECT name, relationship, phone, may_call FROM anbu.emergency_contact
               WHERE resident_id = %s ORDER BY position""",
            (resident_id,),
        ).fetchall()
    ]  # fmt: skip
    plans = conn.execute(
        """SELECT weekdays, local_time FROM anbu.checkin_plans
           WHERE resident_id = %s AND active""",
        (resident_id,),
    ).fetchall()
    notes, unopened = access_notes(conn, resident_id, keyring, may_see_access)
    local_year = now.astimezone(tz).year
    return Reach(
        birth_year=None if birth is None else int(birth),
        age=None if birth is None else local_year - int(birth),
        address=address,
        mobile=phone(mobile),
        landline=phone(landline),
        contacts=contacts,
        access_shown=may_see_access,
        access_notes=notes,
        access_unopened=unopened,
        next_checkin=next_checkin([(list(w), t) for w, t in plans], now, tz)
        if calls_placed
        else None,
    )


def recent_calls(
    conn: psycopg.Connection[Any], resident_id: int, with_speech: bool
) -> list[CallLine]:
    """The resident's last CALLS_SHOWN calls that rang (not a care manager's, not one still
    waiting or cancelled before dialling), newest first, each with what they answered."""
    calls = conn.execute(
        """SELECT id, created_at, status, outcome FROM anbu.calls
           WHERE resident_id = %s AND purpose <> 'manager_alert' AND dial_state = 'dialled'
           ORDER BY created_at DESC, id DESC LIMIT %s""",
        (resident_id, CALLS_SHOWN),
    ).fetchall()
    ids = [int(c[0]) for c in calls]
    said: dict[int, list[Said]] = {}
    for call_id, question, label, speech in conn.execute(
        """SELECT call_id, question, label, speech FROM anbu.call_answers
           WHERE call_id = ANY(%s) ORDER BY answered_at, question""",
        (ids,),
    ).fetchall():
        words = speech if with_speech else None  # the transcript: for the dong's own roles
        said.setdefault(int(call_id), []).append(Said(str(question), str(label), words))
    return [
        CallLine(int(i), at, str(status), outcome, said.get(int(i), []))
        for i, at, status, outcome in calls
    ]


def fields_shown(
    reach: Reach, calls: list[CallLine], notes: bool = False, outings: bool = False
) -> list[str]:
    """What the card shows of the resident, for the access log: only what it rendered
    (`notes`: care notes were listed; `outings`: the week grid marked some)."""
    shown = ["name", "activity", "findings", "conversation"]
    present = (
        ("birth_year", reach.birth_year is not None),
        ("phones", reach.mobile is not None or reach.landline is not None),
        ("emergency_contacts", bool(reach.contacts)),
        ("address", bool(reach.address)),
        ("access_notes", reach.access_shown and bool(reach.access_notes)),
        ("calls", bool(calls)),
        ("transcripts", any(s.speech for c in calls for s in c.said)),
        ("care_notes", notes),
        ("outings", outings),
    )
    return shown + [name for name, shown_ in present if shown_]


def recent_alerts(conn: psycopg.Connection[Any], resident_id: int) -> list[AlertLine]:
    """The resident's open alerts, then the latest ended ones: ALERTS_SHOWN at most."""
    rows = conn.execute(
        """SELECT a.id, a.kind, a.severity, a.state, a.opened_at, f.reason_ko, f.reason_en
           FROM anbu.alerts a LEFT JOIN anbu.findings f ON f.id = a.finding_id
           WHERE a.resident_id = %s
           ORDER BY (a.state = 'resolved'), a.opened_at DESC, a.id DESC LIMIT %s""",
        (resident_id, ALERTS_SHOWN),
    ).fetchall()
    return [AlertLine(int(r[0]), *r[1:]) for r in rows]
