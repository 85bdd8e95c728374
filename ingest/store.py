"""Stores one batch of MQTT messages in one transaction: readings, state, liveness, dead letters.

Readings go in with one binary COPY straight into anbu.readings; a batch holding a reading
stored before (a redelivered message) goes through a staging table and INSERT ... ON CONFLICT
DO NOTHING instead, so it is stored once. home_activity and sensor_state are
updated in the same transaction (ingest.state). Vendor reports are resolved through the
registry: the sensor's registered kind picks the primary value; battery, link quality and
energy are secondary readings of that sensor; availability is liveness, never activity.
A vendor value stamped on receipt (no device clock) from a retained message is old state,
not news: only its secondary readings are kept. Devices announcing themselves, and unknown
devices whose messages are dead-lettered, go to anbu.heard_devices (ingest.heard) in the
same transaction. A safety device's reading (an emergency button, a smoke or gas alarm) raises
its finding in the same transaction too, and notifies the worker (ingest.urgent); before that,
a button event whose device count is the sensor's stored one is dropped as a repeat
(ingest.presses).
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

import numpy as np
import psycopg

from core.domain import GatewayStatus, Reading, Rejected
from ingest.adapters import route
from ingest.adapters.common import (
    DeviceAnnounced,
    DeviceAvailability,
    DeviceGone,
    DeviceReport,
    Ignored,
    Parsed,
    show,
)
from ingest.dead_letter_limits import (
    REASON_MAX_CHARS,
    TOPIC_MAX_CHARS,
    DeadLetterLimits,
    admit,
    cut_payload,
    gateway_of,
)
from ingest.heard import Unknown, note_unknown, record
from ingest.presses import drop_repeats
from ingest.state import Health, Resolved, group_by_sensor, new_resolved, update_sensors
from ingest.urgent import raise_urgent
from registry import SensorRef, load_sensors

log = logging.getLogger(__name__)
_TICK = timedelta(microseconds=1)


@dataclass(frozen=True, slots=True)
class Message:
    """One MQTT message as received: topic, raw payload, retain flag and time of receipt."""

    topic: str
    payload: bytes
    retained: bool = False
    received_at: datetime | None = None
    parsed: tuple[Parsed, ...] | None = None
    """What the payload says, when it was parsed ahead (`parse_ahead`); else parsed on storing."""


def parse_ahead(message: Message, now: datetime, future_tolerance_s: int) -> Message:
    """The message with its payload parsed (pure: safe in another thread than the store's)."""
    at = message.received_at or now
    items = route(message.topic, message.payload, at, future_tolerance_s)
    # a message's first refusal is its dead letter's reason; the others need not be held
    first = next((x for x in items if type(x) is Rejected), None)
    if first is not None:
        items = [x for x in items if type(x) is not Rejected or x is first]
    return Message(
        message.topic, message.payload, message.retained, message.received_at, tuple(items)
    )


@dataclass(frozen=True, slots=True)
class BatchSummary:
    """What one stored batch amounted to."""

    messages: int
    stored: int
    duplicates: int
    dead_lettered: int
    statuses: int
    homes_active: int
    ignored: int = 0
    health: int = 0
    urgent: int = 0  # safety findings raised (ingest.urgent)


@dataclass(slots=True)
class Outcome:
    """A batch resolved and written (but not committed); `dead` says which failed and why."""

    summary: BatchSummary
    dead: list[tuple[int, str]] = field(default_factory=list)


@dataclass(slots=True)
class _Batch:
    """A batch's items sorted out by what each becomes (Store._sort_out)."""

    resolved: list[Resolved] = field(default_factory=list)
    on_receipt: list[int] = field(default_factory=list)  # indexes in `resolved` of values
    # stamped on receipt
    health: list[Health] = field(default_factory=list)
    statuses: list[tuple[GatewayStatus, datetime]] = field(default_factory=list)  # received at
    seen_gateways: set[str] = field(default_factory=set)
    events: list[tuple[DeviceAnnounced | DeviceGone, datetime]] = field(default_factory=list)
    unknown: dict[tuple[str, str], Unknown] = field(default_factory=dict)
    dead: dict[int, str] = field(default_factory=dict)
    ignored: int = 0
    missed: bool = False


@dataclass(frozen=True, slots=True, eq=False)
class Prepared:
    """A batch as `Store.prepare` made it: its items as parsed, sorted out through
    `registry`, and its readings' COPY columns and per-sensor groups (None when not asked
    for, or when some are stamped on receipt: those are moved when stored). Used for one
    attempt to store the batch (`_spread` moves readings in `batch.resolved` in place)."""

    messages: Sequence[Message]
    now: datetime
    parsed: list[tuple[int, Message, Parsed]]
    registry: _Registry
    batch: _Batch
    ready: _Ready | None

    def made_of(self, messages: Sequence[Message], now: datetime) -> bool:
        return self.messages is messages and self.now == now


def _clean(text: str) -> str:
    """Text PostgreSQL accepts: valid UTF-8 and no NUL characters."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8").replace("\x00", "\\x00")


class Connections(Protocol):
    """Where the store gets a connection: `connection()` is one transaction (core.db.Database,
    or the storing process's single connection)."""

    def connection(self) -> AbstractContextManager[psycopg.Connection[Any]]: ...


DEFAULT_LIMITS = DeadLetterLimits()
REGISTRY_MAX_AGE_S = 300.0  # registry changes that cause no miss reach ingest within this


class Store:
    """Writes batches of messages; never raises on bad input, lets database errors through."""

    def __init__(
        self,
        db: Connections,
        future_tolerance_s: int = 300,
        registry_refresh_s: float = 5.0,
        dead_letters: DeadLetterLimits = DEFAULT_LIMITS,
    ) -> None:
        self._db = db
        self.dead_letters = dead_letters
        self._tolerance = future_tolerance_s
        self._refresh_s = registry_refresh_s
        self._registry = _Registry({}, {}, {})
        self._loaded_at: float | None = None
        self._careful: dict[str, float] = {}  # gateway -> until when (ingest.store.CAREFUL_S)

    def store_batch(
        self, messages: Sequence[Message], now: datetime, prepared: Prepared | None = None
    ) -> BatchSummary:
        """Parse, resolve and store `messages` in one transaction committed before returning
        (`prepared`: what `prepare` made of these very messages, used if still current)."""
        with self._db.connection() as conn:
            outcome = self.store_in(conn, messages, now, prepared=prepared)
            dead = [(messages[i], why) for i, why in outcome.dead]
            insert_dead_letters(conn, dead, now, self.dead_letters)
        return outcome.summary

    def store_in(
        self,
        conn: psycopg.Connection[Any],
        messages: Sequence[Message],
        now: datetime,
        straight: bool = True,
        prepared: Prepared | None = None,
    ) -> Outcome:
        """Everything but the dead letters, inside the caller's transaction. `straight`
        False stores every reading the careful way, with no savepoint (a caller storing many
        messages one by one in one transaction: a savepoint each would pile up)."""
        fresh = self._load_if_old(conn)
        if prepared is not None and not prepared.made_of(messages, now):
            prepared = None
        if prepared is None or prepared.registry is not self._registry:
            # (parsed once: a batch prepared ahead with an older registry is only sorted out)
            prepared = self.prepare(messages, now, prepared.parsed if prepared else None, False)
        batch = prepared.batch
        if batch.missed and not fresh and self._may_reload():
            self._load(conn)  # a sensor or gateway registered since: sorted out again
            prepared = self.prepare(messages, now, prepared.parsed, False)
            batch = prepared.batch
        resolved, on_receipt, health = batch.resolved, batch.on_receipt, batch.health
        statuses, seen_gateways, events = batch.statuses, batch.seen_gateways, batch.events
        dead, unknown, ignored = batch.dead, batch.unknown, batch.ignored
        if on_receipt:
            _spread(resolved, on_receipt)
        # a button's repeated event count is no press: dropped before it is stored or raised
        resolved, repeats = drop_repeats(conn, resolved, now)
        # the readings' COPY columns and groups as prepared, unless some were moved or dropped
        ready = prepared.ready if not on_receipt and not repeats else None
        inserted = _insert_readings(
            conn, resolved, now, self._careful if straight else None,
            None if ready is None else ready.columns,
        )  # fmt: skip
        _lock_due(conn, resolved, statuses)
        # before sensor_state moves on: a detector's alarm raises on its change of value
        urgent = raise_urgent(conn, resolved, now)
        homes = update_sensors(
            conn, resolved, health, now, None if ready is None else ready.grouped
        )
        _update_gateways(conn, seen_gateways, statuses, now)
        if events or unknown:
            record(conn, events, unknown)
        summary = BatchSummary(
            messages=len(messages),
            stored=inserted,
            duplicates=len(resolved) - inserted,
            dead_lettered=len(dead),
            statuses=len(statuses),
            homes_active=homes,
            ignored=ignored + repeats,
            health=len(health),
            urgent=urgent,
        )
        return Outcome(summary, sorted(dead.items()))

    def prepare(
        self,
        messages: Sequence[Message],
        now: datetime,
        parsed: list[tuple[int, Message, Parsed]] | None = None,
        ahead: bool = True,
    ) -> Prepared:
        """The messages parsed (unless `parsed` gives them so) and sorted out through the
        registry as loaded, with their readings' COPY columns and groups if `ahead`; no
        database. Safe
        in another thread than the one storing (ingest.store_process prepares a batch while
        the one before is stored): it reads the registry as one snapshot, and the store uses
        what it made only if that snapshot is still the registry when the batch is stored."""
        registry = self._registry
        if parsed is None:
            tolerance = self._tolerance
            parsed = [
                (i, m, item)
                for i, m in enumerate(messages)
                for item in (
                    m.parsed
                    if m.parsed is not None
                    else route(m.topic, m.payload, m.received_at or now, tolerance)
                )
            ]
        batch = registry.sort_out(parsed, now)
        made = None
        if ahead and batch.resolved and not batch.on_receipt:
            made = _Ready(_columns(batch.resolved), group_by_sensor(batch.resolved))
        return Prepared(messages, now, parsed, registry, batch, made)

    def _load_if_old(self, conn: psycopg.Connection[Any]) -> bool:
        """Load the registry if never loaded, or loaded REGISTRY_MAX_AGE_S ago (flags learned
        nightly, such as automatic plugs, reach ingest within that); True if loaded now."""
        if self._loaded_at is not None and time.monotonic() - self._loaded_at < REGISTRY_MAX_AGE_S:
            return False
        self._load(conn)
        return True

    def _may_reload(self) -> bool:
        """After a miss: reloaded at most every registry_refresh_s."""
        return self._loaded_at is None or time.monotonic() - self._loaded_at >= self._refresh_s

    def _load(self, conn: psycopg.Connection[Any]) -> None:
        sensors = load_sensors(conn)
        nodes: dict[tuple[str, str], list[SensorRef]] = {}
        for (gw, vendor), ref in sensors.items():
            if "/" in vendor:
                nodes.setdefault((gw, vendor.split("/", 1)[0]), []).append(ref)
        rows = conn.execute("SELECT id, resident_id FROM anbu.gateway").fetchall()
        gateways = {str(gw): int(rid) for gw, rid in rows}
        self._registry = _Registry(sensors, nodes, gateways)  # one assignment: one snapshot
        self._loaded_at = time.monotonic()


@dataclass(frozen=True, slots=True, eq=False)
class _Registry:
    """The registry as loaded once: never changed, replaced whole when loaded again."""

    sensors: dict[tuple[str, str], SensorRef]
    nodes: dict[tuple[str, str], list[SensorRef]]
    gateways: dict[str, int]

    def sort_out(self, parsed: list[tuple[int, Message, Parsed]], now: datetime) -> _Batch:
        """The batch's items resolved through this registry, sorted by what each becomes;
        `missed` says whether any names a sensor or gateway the registry lacks."""
        sensors = self.sensors
        b = _Batch()
        resolved, on_receipt, dead = b.resolved, b.on_receipt, b.dead
        seen_gateways = b.seen_gateways
        for i, message, item in parsed:
            if type(item) is Reading:  # the usual case, as _resolve has it, without the calls
                ref = sensors.get((item.gateway, item.sensor))
                if ref is not None and ref.kind is item.kind:
                    seen_gateways.add(item.gateway)
                    resolved.append(new_resolved(item, ref))
                    continue
            if self._misses(item):
                b.missed = True
            if isinstance(item, Ignored):
                b.ignored += 1
                continue
            if isinstance(item, DeviceAnnounced | DeviceGone):
                if item.gateway in self.gateways:
                    seen_gateways.add(item.gateway)
                    b.events.append((item, message.received_at or now))
                else:
                    dead.setdefault(i, self._unknown(item.gateway, ""))
                continue
            outcome = self._resolve(item, message.retained)
            if isinstance(outcome, str):
                note_unknown(
                    b.unknown, i, message.topic, message.received_at or now, item,
                    self.gateways, self.sensors,
                )  # fmt: skip
                dead.setdefault(i, outcome)
                continue
            if isinstance(item, GatewayStatus):
                b.statuses.append((item, message.received_at or now))
                continue
            seen_gateways.add(getattr(item, "gateway", ""))
            for x in outcome:
                if isinstance(x, Health):
                    b.health.append(x)
                    continue
                if isinstance(item, DeviceReport) and not item.stamped:
                    on_receipt.append(len(resolved))
                resolved.append(x)
        return b

    def _misses(self, item: Parsed) -> bool:
        if type(item) is Reading:
            return (item.gateway, item.sensor) not in self.sensors
        if isinstance(item, GatewayStatus):
            return item.gateway not in self.gateways
        if isinstance(item, DeviceReport | DeviceAvailability):
            return not self._refs(item.gateway, item.device, item.whole_device)
        if isinstance(item, DeviceAnnounced | DeviceGone):
            return item.gateway not in self.gateways
        return False

    def _refs(self, gateway: str, device: str, whole_device: bool) -> list[SensorRef]:
        if whole_device:
            return self.nodes.get((gateway, device), [])
        ref = self.sensors.get((gateway, device))
        return [] if ref is None else [ref]

    def _unknown(self, gateway: str, device: str) -> str:
        if gateway not in self.gateways:
            return f"unknown gateway {show(gateway)}"
        return f"unknown sensor {show(device)} on gateway {show(gateway)}"

    def _resolve(self, item: Parsed, retained: bool) -> list[Resolved | Health] | str:
        """What an item becomes once the registry is consulted, or why it is a dead letter."""
        if isinstance(item, Rejected):
            return item.reason
        if isinstance(item, GatewayStatus):
            return [] if item.gateway in self.gateways else self._unknown(item.gateway, "")
        if isinstance(item, Reading):
            ref = self.sensors.get((item.gateway, item.sensor))
            if ref is None:
                return self._unknown(item.gateway, item.sensor)
            if ref.kind is not item.kind:
                return (
                    f"sensor {show(item.sensor)} is registered as {ref.kind.value}, "
                    f"the reading says {item.kind.value}"
                )
            return [Resolved(item, ref)]
        if isinstance(item, Ignored | DeviceAnnounced | DeviceGone):
            return []
        refs = self._refs(item.gateway, item.device, item.whole_device)
        if not refs:
            return self._unknown(item.gateway, item.device)
        if isinstance(item, DeviceAvailability):
            return [Health(ref.sensor_id, None, online=item.online) for ref in refs]
        return _report(item, refs, retained)


def _spread(resolved: list[Resolved], on_receipt: list[int]) -> None:
    """Two values stamped on receipt for one sensor at one time: keep both, a tick apart.

    Each value stamped on receipt moves past the (sensor, ts) of every value before it in
    the batch.
    """
    marked = set(on_receipt)
    taken: set[tuple[int, datetime]] = set()
    for n, x in enumerate(resolved):
        key = (x.ref.sensor_id, x.reading.ts)
        if n in marked:
            while key in taken:
                key = (key[0], key[1] + _TICK)
            if key[1] != x.reading.ts:
                resolved[n] = replace(x, reading=replace(x.reading, ts=key[1]))
        taken.add(key)


def _report(
    item: DeviceReport, refs: list[SensorRef], retained: bool
) -> list[Resolved | Health] | str:
    out: list[Resolved | Health] = []
    secondary = (item.battery, item.link_quality, item.energy_kwh) != (None, None, None)
    for ref in refs:
        value = next((v for kind, v in item.values if kind is ref.kind), None)
        if value is not None and not (retained and not item.stamped):
            reading = Reading(item.gateway, item.device, ref.kind, item.ts, value)
            out.append(Resolved(reading, ref, item.event_count))
        if secondary:
            out.append(
                Health(ref.sensor_id, item.ts, item.battery, item.link_quality, item.energy_kwh)
            )
    if not out and not (retained and not item.stamped):
        kinds = sorted({kind.value for kind, _ in item.values})
        return (
            f"sensor {show(item.device)} is registered as {refs[0].kind.value}, "
            f"the payload has {', '.join(kinds) or 'nothing'} for it"
        )
    return out


def _lock_due(
    conn: psycopg.Connection[Any],
    resolved: list[Resolved],
    statuses: list[tuple[GatewayStatus, datetime]],
) -> None:
    """Lock, before the first write whose triggers rewrite them (its homes' activity, its
    gateways' status), the batch's sweep_due rows, all at once in ascending order: the sweep's
    tick and other batches lock them in that order too, so none waits for another in a cycle.
    Taken after the readings are inserted, not before: two workers' batches for the same homes
    then copy and insert their readings side by side and wait for each other only for the
    short state updates and the commit (locked first, a batch held the other's whole insert)."""
    homes = sorted({r.ref.resident_id for r in resolved})
    gateways = sorted({s.gateway for s, _ in statuses})
    if not homes and not gateways:
        return
    conn.execute(
        """SELECT 1 FROM anbu.sweep_due
            WHERE resident_id = ANY(%b::bigint[] || ARRAY(
                      SELECT resident_id FROM anbu.gateway WHERE id = ANY(%b::text[])))
            ORDER BY resident_id FOR NO KEY UPDATE""",
        (homes, gateways),
    )


def _insert_readings(
    conn: psycopg.Connection[Any],
    resolved: list[Resolved],
    now: datetime,
    careful: dict[str, float] | None,
    columns: _Columns | None = None,
) -> int:
    """Store the batch's readings, each (sensor, ts) once; returns the rows inserted.
    `columns`: the same readings as COPY columns, made beforehand (`Store.prepare`).

    Rows go in (sensor, ts) order, as every batch writes them, whatever order a gateway put
    them in: two batches holding the same rows (a copy delivered to two workers, as in a
    handover of shares) mostly wait for each other in that one order. Not always: COPY
    gathers rows per chunk (a day) before it writes them, so two batches spanning two days
    can wait on each other in a cycle; the database then refuses one of them, which is
    retried (never dead-lettered: ingest.store_process). Of two readings with one (sensor,
    ts) in the batch, the first is kept.

    The usual batch holds no reading stored before, so its rows go straight into
    anbu.readings with one binary COPY, inside a savepoint. When one was stored before (a
    message delivered again), the unique key refuses the COPY, the savepoint is rolled back,
    and the batch goes the careful way: a staging table and INSERT ... ON CONFLICT DO
    NOTHING, so a copy is never stored over the first. The gateway whose reading met the key
    is then put in `careful` for CAREFUL_S: its readings go the careful way while everyone
    else's still go straight in, so a gateway that sends old messages again (or keeps doing
    so on purpose) costs one wasted COPY, not one a batch. `careful` None: every reading
    goes the careful way (a dead-letter replay, one message at a time in one transaction).
    """
    if not resolved:
        return 0
    rows = resolved  # in the batch's order: _copy_rows puts them in (sensor, ts) order
    if careful is None:
        return _insert_carefully(conn, rows, now)
    clock = time.monotonic()
    for gateway in [g for g, until in careful.items() if until <= clock]:
        del careful[gateway]
    slow = []
    if careful and (columns is None or not columns.gateways.isdisjoint(careful)):
        slow = [r for r in rows if r.reading.gateway in careful]
    fast = [r for r in rows if r.reading.gateway not in careful] if slow else rows
    inserted = 0
    if fast:
        conn.execute("SAVEPOINT ingest_readings")
        try:
            copied = fast if slow or columns is None else columns
            inserted = _copy_rows(conn, _COPY_READINGS, copied, now)
        except psycopg.errors.UniqueViolation as exc:
            conn.execute("ROLLBACK TO SAVEPOINT ingest_readings")
            conn.execute("RELEASE SAVEPOINT ingest_readings")
            for gateway in _gateways_met(exc, fast):
                careful[gateway] = clock + CAREFUL_S
            return _insert_carefully(conn, rows, now)
        conn.execute("RELEASE SAVEPOINT ingest_readings")
    return inserted + (_insert_carefully(conn, slow, now) if slow else 0)


CAREFUL_S = 600.0
"""How long a gateway whose reading met the unique key has its readings stored the careful
way (staging and ON CONFLICT) rather than straight in."""


_KEY_SENSOR = re.compile(r"\(sensor_id, ts\)=\((\d+),")


def _gateways_met(exc: psycopg.errors.UniqueViolation, rows: list[Resolved]) -> set[str]:
    """The gateway of the sensor whose reading met the unique key (from the error's detail);
    every gateway of the rows when the detail does not say."""
    found = _KEY_SENSOR.search(exc.diag.message_detail or "")
    if found is not None:
        sensor = int(found.group(1))
        gateways = {r.reading.gateway for r in rows if r.ref.sensor_id == sensor}
        if gateways:
            return gateways
    return {r.reading.gateway for r in rows}


def _insert_carefully(conn: psycopg.Connection[Any], rows: list[Resolved], now: datetime) -> int:
    """Rows (in (sensor, ts) order) through a staging table and INSERT ... ON CONFLICT DO
    NOTHING: those stored before are left as they are."""
    conn.execute(
        """CREATE TEMP TABLE IF NOT EXISTS ingest_staging
               (ts timestamptz, sensor_id bigint, value double precision)
           ON COMMIT DELETE ROWS"""
    )
    _copy_rows(conn, _COPY_STAGING, rows, None)
    with conn.cursor() as cur:
        cur.execute(
            """INSERT INTO anbu.readings (ts, sensor_id, value, received_at)
               SELECT ts, sensor_id, value, %s FROM ingest_staging ORDER BY sensor_id, ts
               ON CONFLICT (sensor_id, ts) DO NOTHING""",
            (now,),
        )
        return max(cur.rowcount, 0)


_COPY_READINGS = "COPY anbu.readings (ts, sensor_id, value, received_at) FROM STDIN (FORMAT BINARY)"
_COPY_STAGING = "COPY ingest_staging (ts, sensor_id, value) FROM STDIN (FORMAT BINARY)"


@dataclass(frozen=True, slots=True)
class _Columns:
    """Readings as COPY columns in (sensor, ts) order, the first of each (sensor, ts) only;
    `gateways`: the gateways they came from."""

    sensor: np.ndarray[Any, np.dtype[np.int64]]
    ts: np.ndarray[Any, np.dtype[np.int64]]  # microseconds since _PG_EPOCH
    value: np.ndarray[Any, np.dtype[np.float64]]
    gateways: frozenset[str]


@dataclass(frozen=True, slots=True)
class _Ready:
    """What the storing thread would otherwise make of a batch's readings while the database
    waits: their COPY columns and their groups by sensor (ingest.state.group_by_sensor)."""

    columns: _Columns
    grouped: dict[int, list[Resolved]]


def _columns(rows: list[Resolved]) -> _Columns:
    n = len(rows)
    sensor = np.fromiter((r.ref.sensor_id for r in rows), np.int64, n)
    ts = np.fromiter(((r.reading.ts - _PG_EPOCH) // _TICK for r in rows), np.int64, n)
    value = np.fromiter((r.reading.value for r in rows), np.float64, n)
    order = np.lexsort((ts, sensor))  # stable: the first of equal keys stays first
    sensor, ts, value = sensor[order], ts[order], value[order]
    keep = np.ones(n, dtype=bool)
    keep[1:] = (sensor[1:] != sensor[:-1]) | (ts[1:] != ts[:-1])
    gateways = frozenset(r.reading.gateway for r in rows)
    return _Columns(sensor[keep], ts[keep], value[keep], gateways)


def _copy_rows(
    conn: psycopg.Connection[Any],
    statement: str,
    rows: list[Resolved] | _Columns,
    received_at: datetime | None,
) -> int:
    """One binary COPY of the readings (ts, sensor id, value), with the time of receipt if
    given, in (sensor, ts) order; of two rows with one (sensor, ts), only the first in `rows`
    is written. Returns the rows written.

    The COPY data is built whole with numpy (PostgreSQL's binary tuple format, one fixed-size
    record a row) and sent in one write: formatting row by row was the storing process's
    biggest cost after parsing (`anbu bench ingest`)."""
    cols = rows if isinstance(rows, _Columns) else _columns(rows)
    out = np.zeros(len(cols.sensor), dtype=_ROW4 if received_at is not None else _ROW3)
    out["fields"] = 3 if received_at is None else 4
    for name in ("ts_len", "sensor_len", "value_len"):
        out[name] = 8
    out["ts"], out["sensor"], out["value"] = cols.ts, cols.sensor, cols.value
    if received_at is not None:
        out["received_len"] = 8
        out["received"] = (received_at - _PG_EPOCH) // _TICK
    with conn.cursor() as cur, cur.copy(statement) as copy:
        copy.write(_COPY_SIGNATURE)
        copy.write(out.view(np.uint8).data)  # the array's own bytes, not a copy of them
        copy.write(_COPY_TRAILER)
    return len(out)


# PostgreSQL's binary COPY: a signature, flags and header extension (both 0), then per row a
# 16-bit field count and per field a 32-bit length and the value (timestamptz: microseconds
# since 2000-01-01 UTC; int8; float8), all big-endian; then -1 as the field count.
_PG_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)
_COPY_SIGNATURE = b"PGCOPY\n\xff\r\n\x00" + bytes(8)
_COPY_TRAILER = b"\xff\xff"
_ROW3_FIELDS = [
    ("fields", ">i2"),
    ("ts_len", ">i4"), ("ts", ">i8"),
    ("sensor_len", ">i4"), ("sensor", ">i8"),
    ("value_len", ">i4"), ("value", ">f8"),
]  # fmt: skip
_ROW3 = np.dtype(_ROW3_FIELDS)
_ROW4 = np.dtype([*_ROW3_FIELDS, ("received_len", ">i4"), ("received", ">i8")])


def _update_gateways(
    conn: psycopg.Connection[Any],
    seen: set[str],
    statuses: list[tuple[GatewayStatus, datetime]],
    now: datetime,
) -> None:
    """Any message from a gateway marks it seen; a status message sets online/offline."""
    seen = seen | {s.gateway for s, _ in statuses if s.online}
    if seen:
        conn.execute(
            # never waits on a gateway row an admin action holds: its liveness is marked by
            # its next message instead, and the readings are not stalled
            """WITH free AS (SELECT id FROM anbu.gateway
                              WHERE id = ANY(%b::text[]) AND removed_at IS NULL
                              ORDER BY id FOR UPDATE SKIP LOCKED)
               UPDATE anbu.gateway g SET last_seen_at = greatest(g.last_seen_at, %s)
                 FROM free WHERE g.id = free.id""",
            (sorted(seen), now),
        )
    # A change is dated when its message arrived, not when its batch is stored: a power cut's
    # wills arrive together, and a batch stored later (a backlog, a busy host) must not spread
    # them apart, past the site detector's window. In gateway order (stable: a gateway's own
    # messages keep theirs), as other batches lock the rows.
    for status, at in sorted(statuses, key=lambda x: x[0].gateway):
        conn.execute(
            """UPDATE anbu.gateway SET
                   status_changed_at = CASE WHEN online IS DISTINCT FROM %(online)s
                       THEN greatest(status_changed_at, least(%(at)s, %(now)s))
                       ELSE status_changed_at END,
                   online = %(online)s
               WHERE id = %(id)s AND removed_at IS NULL""",
            {"online": status.online, "at": at, "now": now, "id": status.gateway},
        )


def insert_dead_letters(
    conn: psycopg.Connection[Any],
    dead: list[tuple[Message, str]],
    now: datetime,
    limits: DeadLetterLimits = DEFAULT_LIMITS,
) -> None:
    """Keep what was refused: topic, payload (cut to the limit), reason and time of receipt.

    Every refusal is counted per gateway and hour; past the gateway's hourly allowance a
    refusal is counted but neither kept nor logged one by one (ingest.dead_letter_limits).
    """
    if not dead:
        return
    topics = [_clean(m.topic)[:TOPIC_MAX_CHARS] for m, _ in dead]
    reasons = [_clean(reason)[:REASON_MAX_CHARS] for _, reason in dead]
    keep = admit(conn, [gateway_of(t) for t in topics], now, limits, reasons)
    rows = []
    for (message, _), topic, reason, kept in zip(dead, topics, reasons, keep, strict=True):
        if not kept:
            continue
        log.info("dead letter", extra={"topic": topic, "reason": reason})
        payload, cut = cut_payload(message.payload, limits)
        rows.append((message.received_at or now, topic, payload, reason,
                     len(message.payload), cut))  # fmt: skip
    if not rows:
        return
    with conn.cursor() as cur:
        cur.executemany(
            """INSERT INTO anbu.dead_letters
                   (received_at, topic, payload, reason, payload_bytes, truncated)
               VALUES (%s, %s, %s, %s, %s, %s)""",
            rows,
        )
