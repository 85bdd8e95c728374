"""Stores one batch of MQTT messages in one transaction: readings, activity, liveness, dead letters.

What counts as activity (a sign of a person) for `anbu.home_activity`:
- door: a reading whose value differs from the sensor's previous value (or the first one seen);
- motion and contact: a reading with value 1;
- appliance: a change of value, as for doors;
- power: a reading that differs from the sensor's previous value by at least POWER_STEP_W.
The previous value is the sensor's latest stored reading older than the batch's first reading
of that sensor, then each earlier reading of the batch in timestamp order.
Redelivered readings are harmless: rows are unique on (sensor_id, ts) and activity times only
move forward (greatest of stored and new).
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg

from anbu.db import Database
from anbu.domain import GatewayStatus, Reading, Rejected, SensorKind
from anbu.registry import SensorRef, load_sensors
from ingest.adapters import route
from ingest.adapters.native import show

log = logging.getLogger(__name__)

POWER_STEP_W = 10.0


@dataclass(frozen=True, slots=True)
class Message:
    """One MQTT message as received: its topic and raw payload."""

    topic: str
    payload: bytes


@dataclass(frozen=True, slots=True)
class BatchSummary:
    """What one stored batch amounted to."""

    messages: int
    stored: int
    duplicates: int
    dead_lettered: int
    statuses: int
    homes_active: int


@dataclass(frozen=True, slots=True)
class _Resolved:
    reading: Reading
    ref: SensorRef


@dataclass(slots=True)
class _Activity:
    last_activity_at: datetime
    last_room: str
    last_motion_at: datetime | None = None
    last_door_at: datetime | None = None
    last_power_at: datetime | None = None


def _clean(text: str) -> str:
    """Text PostgreSQL accepts: valid UTF-8 and no NUL characters."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8").replace("\x00", "\\x00")


class Store:
    """Writes batches of messages; never raises on bad input, lets database errors through."""

    def __init__(
        self, db: Database, future_tolerance_s: int = 300, registry_refresh_s: float = 5.0
    ) -> None:
        self._db = db
        self._tolerance = future_tolerance_s
        self._refresh_s = registry_refresh_s
        self._sensors: dict[tuple[str, str], SensorRef] = {}
        self._gateways: dict[str, int] = {}
        self._loaded_at: float | None = None

    def store_batch(self, messages: Sequence[Message], now: datetime) -> BatchSummary:
        """Parse, resolve and store `messages` in one transaction committed before returning."""
        parsed = [
            (m, item) for m in messages for item in route(m.topic, m.payload, now, self._tolerance)
        ]
        with self._db.connection() as conn:
            self._ensure_registry(conn, parsed)
            dead: list[tuple[Message, str]] = []
            resolved: list[_Resolved] = []
            statuses: list[GatewayStatus] = []
            for message, item in parsed:
                if isinstance(item, Rejected):
                    dead.append((message, item.reason))
                elif isinstance(item, GatewayStatus):
                    if item.gateway in self._gateways:
                        statuses.append(item)
                    else:
                        dead.append((message, f"unknown gateway {show(item.gateway)}"))
                else:
                    outcome = self._resolve(item)
                    if isinstance(outcome, str):
                        dead.append((message, outcome))
                    else:
                        resolved.append(outcome)
            inserted = self._insert_readings(conn, resolved, now)
            homes = self._update_activity(conn, resolved, now)
            self._update_gateways(conn, resolved, statuses, now)
            self._insert_dead_letters(conn, dead, now)
        return BatchSummary(
            messages=len(messages),
            stored=inserted,
            duplicates=len(resolved) - inserted,
            dead_lettered=len(dead),
            statuses=len(statuses),
            homes_active=homes,
        )

    def _ensure_registry(
        self, conn: psycopg.Connection[Any], parsed: list[tuple[Message, Any]]
    ) -> None:
        """Load the registry once, and again on a miss (at most every registry_refresh_s)."""
        if self._loaded_at is not None:
            missing = any(
                (isinstance(item, Reading) and (item.gateway, item.sensor) not in self._sensors)
                or (isinstance(item, GatewayStatus) and item.gateway not in self._gateways)
                for _, item in parsed
            )
            if not missing or time.monotonic() - self._loaded_at < self._refresh_s:
                return
        self._sensors = load_sensors(conn)
        rows = conn.execute("SELECT id, resident_id FROM anbu.gateway").fetchall()
        self._gateways = {str(gw): int(rid) for gw, rid in rows}
        self._loaded_at = time.monotonic()

    def _resolve(self, reading: Reading) -> _Resolved | str:
        ref = self._sensors.get((reading.gateway, reading.sensor))
        if ref is None:
            if reading.gateway not in self._gateways:
                return f"unknown gateway {show(reading.gateway)}"
            return f"unknown sensor {show(reading.sensor)} on gateway {show(reading.gateway)}"
        if ref.kind is not reading.kind:
            return (
                f"sensor {show(reading.sensor)} is registered as {ref.kind.value}, "
                f"the reading says {reading.kind.value}"
            )
        return _Resolved(reading, ref)

    @staticmethod
    def _insert_readings(
        conn: psycopg.Connection[Any], resolved: list[_Resolved], now: datetime
    ) -> int:
        """COPY into a staging table, then insert what is new; returns the rows inserted."""
        if not resolved:
            return 0
        conn.execute(
            """CREATE TEMP TABLE IF NOT EXISTS ingest_staging
                   (ts timestamptz, sensor_id bigint, value double precision)
               ON COMMIT DELETE ROWS"""
        )
        with conn.cursor() as cur:
            with cur.copy("COPY ingest_staging (ts, sensor_id, value) FROM STDIN") as copy:
                for r in resolved:
                    copy.write_row((r.reading.ts, r.ref.sensor_id, r.reading.value))
            cur.execute(
                """INSERT INTO anbu.readings (ts, sensor_id, value, received_at)
                   SELECT DISTINCT ON (sensor_id, ts) ts, sensor_id, value, %s
                   FROM ingest_staging ORDER BY sensor_id, ts
                   ON CONFLICT (sensor_id, ts) DO NOTHING""",
                (now,),
            )
            return max(cur.rowcount, 0)

    @staticmethod
    def _previous_values(
        conn: psycopg.Connection[Any], firsts: dict[int, datetime]
    ) -> dict[int, float]:
        """Each sensor's latest stored value older than the given time."""
        if not firsts:
            return {}
        rows = conn.execute(
            """SELECT f.sensor_id, p.value
               FROM unnest(%s::bigint[], %s::timestamptz[]) AS f(sensor_id, first_ts)
               CROSS JOIN LATERAL (
                   SELECT r.value FROM anbu.readings r
                   WHERE r.sensor_id = f.sensor_id AND r.ts < f.first_ts
                   ORDER BY r.ts DESC LIMIT 1) p""",
            (list(firsts), list(firsts.values())),
        ).fetchall()
        return {int(sid): float(value) for sid, value in rows}

    def _update_activity(
        self, conn: psycopg.Connection[Any], resolved: list[_Resolved], now: datetime
    ) -> int:
        """One upsert per home with activity in this batch; returns how many homes."""
        by_sensor: dict[int, list[_Resolved]] = defaultdict(list)
        for r in resolved:
            by_sensor[r.ref.sensor_id].append(r)
        for items in by_sensor.values():
            items.sort(key=lambda r: r.reading.ts)
        previous = self._previous_values(
            conn, {sid: items[0].reading.ts for sid, items in by_sensor.items()}
        )
        homes: dict[int, _Activity] = {}
        for sid, items in by_sensor.items():
            prev = previous.get(sid)
            for r in items:
                if _is_activity(r.ref.kind, r.reading.value, prev):
                    _record(homes, r)
                prev = r.reading.value
        if homes:
            with conn.cursor() as cur:
                cur.executemany(
                    """INSERT INTO anbu.home_activity AS h (resident_id, last_activity_at,
                           last_motion_at, last_door_at, last_power_at, last_room, updated_at)
                       VALUES (%s, %s, %s, %s, %s, %s, %s)
                       ON CONFLICT (resident_id) DO UPDATE SET
                           last_activity_at = greatest(h.last_activity_at, excluded.last_activity_at),
                           last_motion_at = greatest(h.last_motion_at, excluded.last_motion_at),
                           last_door_at = greatest(h.last_door_at, excluded.last_door_at),
                           last_power_at = greatest(h.last_power_at, excluded.last_power_at),
                           last_room = CASE WHEN excluded.last_activity_at >= h.last_activity_at
                                            THEN excluded.last_room ELSE h.last_room END,
                           updated_at = excluded.updated_at""",
                    [
                        (
                            rid,
                            a.last_activity_at,
                            a.last_motion_at,
                            a.last_door_at,
                            a.last_power_at,
                            a.last_room,
                            now,
                        )
                        for rid, a in sorted(homes.items())
                    ],
                )
        return len(homes)

    @staticmethod
    def _update_gateways(
        conn: psycopg.Connection[Any],
        resolved: list[_Resolved],
        statuses: list[GatewayStatus],
        now: datetime,
    ) -> None:
        """Any reading marks its gateway seen; a status message sets online/offline."""
        seen = sorted(
            {r.reading.gateway for r in resolved} | {s.gateway for s in statuses if s.online}
        )
        if seen:
            conn.execute(
                """UPDATE anbu.gateway SET last_seen_at = greatest(last_seen_at, %s)
                   WHERE id = ANY(%s)""",
                (now, seen),
            )
        for status in statuses:
            conn.execute(
                """UPDATE anbu.gateway SET
                       status_changed_at = CASE WHEN online IS DISTINCT FROM %(online)s
                                                THEN %(now)s ELSE status_changed_at END,
                       online = %(online)s
                   WHERE id = %(id)s""",
                {"online": status.online, "now": now, "id": status.gateway},
            )

    @staticmethod
    def _insert_dead_letters(
        conn: psycopg.Connection[Any], dead: list[tuple[Message, str]], now: datetime
    ) -> None:
        if not dead:
            return
        for message, reason in dead:
            log.info(
                "dead letter", extra={"topic": _clean(message.topic), "reason": _clean(reason)}
            )
        with conn.cursor() as cur:
            cur.executemany(
                """INSERT INTO anbu.dead_letters (received_at, topic, payload, reason)
                   VALUES (%s, %s, %s, %s)""",
                [(now, _clean(m.topic), m.payload, _clean(reason)) for m, reason in dead],
            )


def _is_activity(kind: SensorKind, value: float, previous: float | None) -> bool:
    """Whether one reading is a sign of a person, given the sensor's previous value."""
    if kind in (SensorKind.MOTION, SensorKind.CONTACT):
        return value == 1.0
    if kind in (SensorKind.DOOR, SensorKind.APPLIANCE):
        return previous is None or value != previous
    return previous is None or abs(value - previous) >= POWER_STEP_W


def _record(homes: dict[int, _Activity], r: _Resolved) -> None:
    ts, kind, room = r.reading.ts, r.ref.kind, r.ref.room
    a = homes.get(r.ref.resident_id)
    if a is None:
        a = homes[r.ref.resident_id] = _Activity(last_activity_at=ts, last_room=room)
    elif ts >= a.last_activity_at:
        a.last_activity_at, a.last_room = ts, room
    if kind is SensorKind.MOTION:
        a.last_motion_at = ts if a.last_motion_at is None else max(a.last_motion_at, ts)
    elif kind is SensorKind.DOOR:
        a.last_door_at = ts if a.last_door_at is None else max(a.last_door_at, ts)
    elif kind is SensorKind.POWER:
        a.last_power_at = ts if a.last_power_at is None else max(a.last_power_at, ts)
