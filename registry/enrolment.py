"""Enrolment: dongs, residents, care managers (and their passwords), gateways and sensors.

The only writer of these registry rows. Personal data (names, phones, notes) is stored here
and never logged.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import time
from typing import Any

import psycopg
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from core.crypto import Keyring
from core.domain import SensorKind
from registry.phones import parse_phone
from registry.secrecy import seal_notes

ROOMS = ("entrance", "living", "kitchen", "bedroom", "bathroom", "other")

_hasher = PasswordHasher(time_cost=2, memory_cost=19_456, parallelism=1)


def hash_password(password: str) -> str:
    """An argon2id hash of a care manager's password."""
    return _hasher.hash(password)


def verify_password(password_hash: str, password: str) -> bool:
    """True when `password` matches `password_hash`."""
    try:
        return _hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def add_dong(conn: psycopg.Connection[Any], code: str, name: str, district: str) -> str:
    conn.execute(
        """INSERT INTO anbu.dong (code, name, district) VALUES (%s, %s, %s)
           ON CONFLICT (code) DO UPDATE SET name = excluded.name, district = excluded.district""",
        (code, name, district),
    )
    return code


E164 = re.compile(r"\+82[0-9]{8,10}")


def checked_phone(text: str) -> str:
    """A resident's number as stored: E.164 (a Korean format is converted); InvalidPhone else.

    A number already in E.164 form is kept even outside the numbering plan: replayed and
    simulated homes carry the placeholder +820000000000, which no caller can have.
    """
    if E164.fullmatch(text):
        return text
    return parse_phone(text).e164


def add_resident(
    conn: psycopg.Connection[Any],
    home: str,
    dong_code: str,
    display_name: str,
    phone: str,
    *,
    language: str = "ko",
    quiet_start: time | None = None,
    quiet_end: time | None = None,
    notes: str | None = None,
    keyring: Keyring | None = None,
) -> int:
    """Enrol (or, by home, update) a resident; health `notes` are sealed under `keyring`
    (DataKeyMissing without one) and, like quiet hours, written only on creation."""
    sealed, _, key_id = seal_notes(keyring, notes, None)
    phone = checked_phone(phone)
    row = conn.execute(
        """INSERT INTO anbu.resident (home, dong_code, display_name, phone, language,
               quiet_start, quiet_end, notes_sealed, sealed_key_id)
           VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)
           ON CONFLICT (home) DO UPDATE SET dong_code = excluded.dong_code,
               display_name = excluded.display_name, phone = excluded.phone,
               language = excluded.language
           RETURNING id""",
        (home, dong_code, display_name, phone, language, quiet_start, quiet_end, sealed, key_id),
    ).fetchone()
    assert row is not None
    return int(row[0])


def add_care_manager(
    conn: psycopg.Connection[Any],
    username: str,
    dong_code: str,
    display_name: str,
    phone: str,
    password: str,
    role: str = "manager",
) -> int:
    row = conn.execute(
        """INSERT INTO anbu.care_manager
               (username, dong_code, display_name, phone, password_hash, role)
           VALUES (%s, %s, %s, %s, %s, %s)
           ON CONFLICT (username) DO UPDATE SET dong_code = excluded.dong_code,
               display_name = excluded.display_name, phone = excluded.phone,
               password_hash = excluded.password_hash, role = excluded.role,
               -- enrolled again (a new password, maybe another dong, role or person): every
               -- session and token issued before ends, as a password change ends them
               session_generation = anbu.care_manager.session_generation + 1
           WHERE anbu.care_manager.role <> 'service'  -- a service account's row stays one
           RETURNING id""",
        (username, dong_code, display_name, phone, hash_password(password), role),
    ).fetchone()
    assert row is not None
    return int(row[0])


def add_gateway(conn: psycopg.Connection[Any], gateway_id: str, resident_id: int) -> str:
    conn.execute(
        """INSERT INTO anbu.gateway (id, resident_id) VALUES (%s, %s)
           ON CONFLICT (id) DO UPDATE SET resident_id = excluded.resident_id""",
        (gateway_id, resident_id),
    )
    return gateway_id


def add_synthetic_homes(
    conn: psycopg.Connection[Any],
    dong_code: str,
    homes: Sequence[str],
    sensors: Sequence[tuple[str, SensorKind, str]],
    phone: str = "+820000000000",
) -> int:
    """Enrol many made-up homes at once (load generators and benches): for each id in `homes`
    a resident of that home (its display name the id: no personal data), a gateway of the same
    id and the same `sensors` (vendor id, kind, room). Four statements whatever the count; an
    id enrolled already in `dong_code` is updated as add_resident/add_gateway/add_sensor would.
    Returns the number of homes. An id enrolled in another dong (a real resident's home or
    gateway) is refused (ValueError) and nothing is written."""
    for _, _, room in sensors:
        if room not in ROOMS:
            raise ValueError(f"unknown room {room!r}; expected one of {ROOMS}")
    ids = list(homes)
    phone = checked_phone(phone)
    taken = conn.execute(
        """SELECT r.home FROM anbu.resident r WHERE r.home = ANY(%s::text[]) AND r.dong_code <> %s
           UNION ALL
           SELECT g.id FROM anbu.gateway g JOIN anbu.resident r ON r.id = g.resident_id
           WHERE g.id = ANY(%s::text[]) AND r.dong_code <> %s
           LIMIT 1""",
        (ids, dong_code, ids, dong_code),
    ).fetchone()
    if taken is not None:  # never move a real resident, or their gateway, into made-up data
        raise ValueError(f"{taken[0]!r} is enrolled outside dong {dong_code!r}; choose a prefix")
    conn.execute(
        """INSERT INTO anbu.resident (home, dong_code, display_name, phone)
           SELECT h, %s, h, %s FROM unnest(%s::text[]) AS h
           ON CONFLICT (home) DO UPDATE SET dong_code = excluded.dong_code,
               display_name = excluded.display_name, phone = excluded.phone""",
        (dong_code, phone, ids),
    )
    conn.execute(
        """INSERT INTO anbu.gateway (id, resident_id)
           SELECT r.home, r.id FROM anbu.resident r WHERE r.home = ANY(%s::text[])
           ON CONFLICT (id) DO UPDATE SET resident_id = excluded.resident_id""",
        (ids,),
    )
    conn.execute(
        """INSERT INTO anbu.sensor (gateway_id, vendor_id, kind, room)
           SELECT g, s.vendor_id, s.kind, s.room
           FROM unnest(%s::text[]) AS g,
                unnest(%s::text[], %s::text[], %s::text[]) AS s (vendor_id, kind, room)
           ON CONFLICT (gateway_id, vendor_id) DO UPDATE SET kind = excluded.kind,
               room = excluded.room""",
        (ids, [v for v, _, _ in sensors], [SensorKind(k).value for _, k, _ in sensors],
         [r for _, _, r in sensors]),
    )  # fmt: skip
    return len(ids)


def add_sensor(
    conn: psycopg.Connection[Any], gateway_id: str, vendor_id: str, kind: SensorKind, room: str
) -> int:
    if room not in ROOMS:
        raise ValueError(f"unknown room {room!r}; expected one of {ROOMS}")
    row = conn.execute(
        """INSERT INTO anbu.sensor (gateway_id, vendor_id, kind, room) VALUES (%s, %s, %s, %s)
           ON CONFLICT (gateway_id, vendor_id) DO UPDATE SET kind = excluded.kind,
               room = excluded.room
           RETURNING id""",
        (gateway_id, vendor_id, SensorKind(kind).value, room),
    ).fetchone()
    assert row is not None
    return int(row[0])
