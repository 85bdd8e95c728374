"""Per-batch derived state: anbu.home_activity and anbu.sensor_state, in the batch's transaction.

What counts as activity (a sign of a person) for `anbu.home_activity`:
- door: a reading whose value differs from the sensor's previous value (or the first one seen);
- motion and contact: a reading with value 1, unless it repeats an "on" (no "off" between)
  and core.domain.repeat_is_nobody finds it nobody new (the same "on" again within seconds;
  a sensor that reported an "off" in the last day re-reporting its state after 4 minutes or
  more; an events-only sensor on a timer); `sensor_state.off_at` keeps the latest "off";
- appliance: a change of value, as for doors;
- power: a reading that differs from the sensor's previous value by at least POWER_STEP_W,
  unless nightly learning marked the plug automatic (`anbu.sensor.automatic`: a fridge);
- button: a press or a long press (someone's hand on it), like a motion; a cancel is not
  (it answers a press already counted);
- smoke, gas, co, water_leak and tamper never are: a detector's alarm or test, or a device
  taken off its mount, says nothing of the resident being up and about.
The previous value is the sensor's state (or, for a reading older than it, the latest stored
reading before it), then each earlier reading of the batch in timestamp order. Activity
times only move forward (greatest of stored and new), so redelivery is harmless.

`sensor_state` keeps the latest value, `since` (when that value began), `value_at` (the time
of the reading holding it), last_reading_at (newest reading of any kind, secondary ones
included), battery, link quality, energy and availability. A secondary reading or an
availability change for a sensor that has no state row yet waits for its first reading.
"""

from __future__ import annotations

from bisect import bisect_right
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from operator import attrgetter, itemgetter
from typing import Any

import psycopg

from core.domain import (
    ALARM_KINDS,
    OFF_MEMORY_S,
    RUN_KEPT,
    SAFETY_KINDS,
    ButtonValue,
    Reading,
    SensorKind,
    repeat_is_nobody,
)
from registry import SensorRef

POWER_STEP_W = 10.0


@dataclass(frozen=True, slots=True)
class Resolved:
    """A reading together with the registered sensor it belongs to."""

    reading: Reading
    ref: SensorRef
    event_count: int | None = None
    """The device's count of the button event this reading is (ingest.presses), if it has one."""


_new = object.__new__
_set_reading, _set_ref, _set_count = (
    Resolved.__dict__[name].__set__ for name in ("reading", "ref", "event_count")
)


def new_resolved(reading: Reading, ref: SensorRef) -> Resolved:
    """`Resolved(reading, ref)`, built through its slots (as core.domain.new_reading)."""
    resolved: Resolved = _new(Resolved)
    _set_reading(resolved, reading)
    _set_ref(resolved, ref)
    _set_count(resolved, None)
    return resolved


@dataclass(frozen=True, slots=True)
class Health:
    """Secondary readings and availability of one registered sensor."""

    sensor_id: int
    ts: datetime | None
    """When the secondary readings were taken; None for availability."""
    battery: float | None = None
    link_quality: float | None = None
    energy_kwh: float | None = None
    online: bool | None = None


@dataclass(slots=True)
class _Activity:
    last_activity_at: datetime
    last_room: str
    last_motion_at: datetime | None = None
    last_door_at: datetime | None = None
    last_power_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class _State:
    value: float
    since: datetime
    value_at: datetime | None
    off_at: datetime | None = None  # a motion or contact sensor's latest "off" (0)


def group_by_sensor(resolved: list[Resolved]) -> dict[int, list[Resolved]]:
    """The readings of each sensor, in time order (pure: made ahead by ingest.store.prepare)."""
    grouped: dict[int, list[Resolved]] = defaultdict(list)
    for r in resolved:
        grouped[r.ref.sensor_id].append(r)
    for items in grouped.values():
        if len(items) > 1:
            items.sort(key=_BY_TS)
    return dict(grouped)  # not a defaultdict: a lookup of another sensor adds nothing


def update_sensors(
    conn: psycopg.Connection[Any], resolved: list[Resolved], health: list[Health], now: datetime,
    grouped: dict[int, list[Resolved]] | None = None,
) -> int:  # fmt: skip
    """Update home_activity (once per home) and sensor_state; returns homes with activity.
    `grouped`: group_by_sensor(resolved), when it was made beforehand."""
    by_sensor = grouped if grouped is not None else group_by_sensor(resolved)
    states = _load_states(conn, list(by_sensor))
    older = {
        sid: items[0].reading.ts
        for sid, items in by_sensor.items()
        if not _precedes(states.get(sid), items[0].reading.ts)
    }
    previous = {sid: s.value for sid, s in states.items() if sid not in older}
    # a late batch's sensors, and events-only motion or contact sensors, are read back
    need = dict(older)
    floors: dict[int, datetime] = {}
    offs_asked: set[int] = set()
    for sid, items in by_sensor.items():
        if items[0].ref.kind not in _REPEATS_STATE:
            continue
        state, first = states.get(sid), items[0].reading.ts
        if _needs_stored(state, items):
            need[sid], floors[sid] = first, first - RUN_LOOKBACK
        if sid in need and not _off_before(state, first):
            offs_asked.add(sid)
    stored, offs = _stored_before(conn, need, floors, offs_asked)
    previous.update((sid, stored[sid][0][1]) for sid in older if stored.get(sid))
    homes: dict[int, _Activity] = {}
    rows: list[tuple[int, int, float, datetime, datetime, datetime | None]] = []
    for sid, items in by_sensor.items():
        state = states.get(sid)
        if items[0].ref.kind in _REPEATS_STATE:
            first = items[0].reading.ts
            run = _run_before(state, first, sid in need, stored.get(sid, []), offs.get(sid))
            last = _last_on(items, previous.get(sid), run)
        else:
            last = _last_activity(items, previous.get(sid))
        if last is not None:
            _record(homes, last)
        row = _next_state(state, items)
        if row is not None:
            rows.append((sid, items[0].ref.resident_id, *row, _last_off(items)))
    _write_activity(conn, homes, now)
    _write_states(conn, rows, now)
    _write_health(conn, health, now)
    return len(homes)


_BY_TS = attrgetter("reading.ts")


def _last_activity(items: list[Resolved], previous: float | None) -> Resolved | None:
    """The latest of one sensor's readings (in time order) that is activity, given the
    sensor's previous value; only the latest counts, for home_activity keeps the latest.
    Looked for from the newest back: the search usually ends at the first reading it tries.
    (A motion or contact sensor's readings are judged by `_last_on`.)"""
    ref = items[0].ref
    for n in range(len(items) - 1, -1, -1):
        before = items[n - 1].reading.value if n else previous
        if _is_activity(ref, items[n].reading.value, before):
            return items[n]
    return None


_REPEATS_STATE = (SensorKind.MOTION, SensorKind.CONTACT)
RUN_LOOKBACK = timedelta(days=7)  # an events-only sensor's run is read back this far at most


@dataclass(slots=True)
class _Run:
    """A motion or contact sensor's last "off" and its "on" readings since (epoch seconds,
    oldest first, the last RUN_KEPT at most): what a repeated "on" is judged by."""

    last_off: float | None = None
    ons: list[float] = field(default_factory=list)


def _last_on(items: list[Resolved], previous: float | None, run: _Run) -> Resolved | None:
    """`_last_activity` for a motion or contact sensor: its latest "on" that follows an "off"
    (or nothing known), or repeats an "on" and is someone new by core.domain.repeat_is_nobody,
    the rule the detectors' evidence keeps. One pass from the oldest, given the run before."""
    if items[0].ref.automatic:
        return None
    last_off, times = run.last_off, list(run.ons)
    found, before = None, previous
    for item in items:
        value = item.reading.value
        t = item.reading.ts.timestamp()
        if value != 1.0:
            last_off, times = t, []
        elif before != 1.0 or not times:
            found, times = item, [t]
        else:
            times.append(t)
            del times[:-RUN_KEPT]
            if not repeat_is_nobody(times, last_off):
                found = item
        before = value
    return found


def _needs_stored(state: _State | None, items: list[Resolved]) -> bool:
    """Whether a motion or contact sensor's run before the batch must be read from its stored
    readings (`_run_from`): an "on" last, and no "off" in the OFF_MEMORY_S before the batch's
    end (an events-only sensor, whose timer is judged by its last "on"s). Otherwise its state
    holds the run (`_run_of`). A late batch's sensors are read back whatever their kind."""
    if items[0].ref.kind not in _REPEATS_STATE or state is None or state.value != 1.0:
        return False
    off = state.off_at
    return off is None or (items[-1].reading.ts - off).total_seconds() > OFF_MEMORY_S


def _off_before(state: _State | None, ts: datetime) -> bool:
    """Whether the state's latest "off" is the sensor's latest before `ts`."""
    return state is not None and state.off_at is not None and state.off_at < ts


def _run_before(
    state: _State | None,
    first: datetime,
    read_back: bool,
    stored: list[tuple[datetime, float]],
    off: datetime | None,
) -> _Run:
    """A motion or contact sensor's run before its batch (whose first reading is at `first`):
    its state's (`_run_of`), or when it was `read_back` (a late batch, or an events-only sensor:
    `_needs_stored`) its stored readings' (newest first), with its latest "off" before them:
    the state's when older than the batch, else `off`, the one read back (a day at most: older
    ones judge nothing)."""
    if not read_back:
        return _run_of(state)
    if _off_before(state, first):
        assert state is not None and state.off_at is not None
        off = state.off_at
    return _run_from(stored, off)


def _run_of(state: _State | None) -> _Run:
    """The run before the batch as the sensor's state (newer than any stored reading) holds it:
    enough for a sensor that reported an "off" lately, whose repeats are judged by their gap."""
    if state is None or state.value_at is None:
        return _Run()
    if state.value != 1.0:
        return _Run(state.value_at.timestamp())
    off = state.off_at.timestamp() if state.off_at is not None else None
    return _Run(off, [state.value_at.timestamp()])


def _run_from(stored: list[tuple[datetime, float]], off: datetime | None = None) -> _Run:
    """The run before the batch from the sensor's last stored readings (newest first) and its
    latest "off" before them, if none of them is one."""
    run = _Run(off.timestamp() if off is not None else None)
    for ts, value in stored:
        if value != 1.0:
            run.last_off = ts.timestamp()
            break
        run.ons.append(ts.timestamp())
    run.ons.reverse()
    return run


def _last_off(items: list[Resolved]) -> datetime | None:
    """A motion or contact sensor's latest "off" in the batch (sensor_state.off_at)."""
    if items[0].ref.kind not in _REPEATS_STATE:
        return None
    return next((a.reading.ts for a in reversed(items) if a.reading.value != 1.0), None)


def _precedes(state: _State | None, ts: datetime) -> bool:
    """True when the state's value is the sensor's latest reading before `ts`."""
    return state is not None and state.value_at is not None and state.value_at < ts


def _load_states(conn: psycopg.Connection[Any], ids: list[int]) -> dict[int, _State]:
    if not ids:
        return {}
    rows = conn.execute(
        "SELECT sensor_id, value, since, value_at, off_at FROM anbu.sensor_state"
        " WHERE sensor_id = ANY(%b::bigint[])",
        (ids,),
    ).fetchall()
    return {int(sid): _State(float(v), since, at, off) for sid, v, since, at, off in rows}


def _stored_before(
    conn: psycopg.Connection[Any],
    firsts: dict[int, datetime],
    floors: dict[int, datetime],
    offs_asked: set[int],
) -> tuple[dict[int, list[tuple[datetime, float]]], dict[int, datetime]]:
    """Each sensor's last stored readings older than the given time (not older than its floor,
    if it has one), newest first: the one before a late batch (its previous value), and a motion
    or contact sensor's run; and for the sensors asked, the latest "off" in the day before."""
    if not firsts:
        return {}, {}
    ids = list(firsts)
    rows = conn.execute(
        """SELECT f.sensor_id, p.ts, p.value, o.ts
           FROM unnest(%b::bigint[], %b::timestamptz[], %b::timestamptz[], %b::boolean[])
                AS f(sensor_id, first_ts, floor_ts, off_asked)
           LEFT JOIN LATERAL (
               SELECT r.ts, r.value FROM anbu.readings r
               WHERE r.sensor_id = f.sensor_id AND r.ts < f.first_ts
                 AND r.ts >= coalesce(f.floor_ts, '-infinity')
               ORDER BY r.ts DESC LIMIT %b) p ON true
           LEFT JOIN LATERAL (
               SELECT max(r.ts) AS ts FROM anbu.readings r
               WHERE f.off_asked AND r.sensor_id = f.sensor_id AND r.ts < f.first_ts
                 AND r.ts >= f.first_ts - %b::interval AND r.value <> 1) o ON true
           ORDER BY f.sensor_id, p.ts DESC""",
        (
            ids,
            [firsts[i] for i in ids],
            [floors.get(i) for i in ids],
            [i in offs_asked for i in ids],
            RUN_KEPT + 1,
            timedelta(seconds=OFF_MEMORY_S),
        ),
    ).fetchall()
    stored: dict[int, list[tuple[datetime, float]]] = defaultdict(list)
    offs: dict[int, datetime] = {}
    for sid, ts, value, off in rows:
        if ts is not None:
            stored[int(sid)].append((ts, float(value)))
        if off is not None:
            offs[int(sid)] = off
    return stored, offs


def _next_state(
    state: _State | None, items: list[Resolved]
) -> tuple[float, datetime, datetime] | None:
    """(value, since, value_at) after the batch's readings newer than the state; None if none.

    `items` are in time order. The value is the newest reading's; `since` is when the run of
    readings holding that value began, read from the newest back (it usually ends at once):
    the state's own `since` if the run reaches back to the state's value."""
    start = 0
    if state is not None and state.value_at is not None:
        start = bisect_right(items, state.value_at, key=_BY_TS)
    if start == len(items):
        return None
    newest = items[-1].reading
    value = newest.value
    n = len(items) - 1
    while n > start and items[n - 1].reading.value == value:
        n -= 1
    since = items[n].reading.ts
    if n == start and state is not None and state.value == value:
        since = state.since
    return value, since, newest.ts


def _write_states(
    conn: psycopg.Connection[Any],
    rows: list[tuple[int, int, float, datetime, datetime, datetime | None]],
    now: datetime,
) -> None:
    if not rows:
        return
    rows.sort(key=itemgetter(0))
    cols: list[list[Any]] = [list(c) for c in zip(*rows, strict=True)]
    cols[2] = [float(v) for v in cols[2]]  # a binary array takes one type: no int among them
    conn.execute(
        """INSERT INTO anbu.sensor_state AS s
               (sensor_id, resident_id, value, since, value_at, last_reading_at, off_at,
                updated_at)
           SELECT sensor_id, resident_id, value, since, value_at, value_at, off_at, %s
           FROM unnest(%b::bigint[], %b::bigint[], %b::float8[], %b::timestamptz[],
                       %b::timestamptz[], %b::timestamptz[])
                AS b(sensor_id, resident_id, value, since, value_at, off_at)
           ON CONFLICT (sensor_id) DO UPDATE SET
               value = excluded.value,
               since = excluded.since,
               value_at = excluded.value_at,
               off_at = greatest(s.off_at, excluded.off_at),
               last_reading_at = greatest(s.last_reading_at, excluded.last_reading_at),
               updated_at = excluded.updated_at
           WHERE s.value_at IS NULL OR excluded.value_at > s.value_at""",
        (now, *cols),
    )


_SAFETY_KIND_VALUES = sorted(k.value for k in SAFETY_KINDS)


def _write_health(conn: psycopg.Connection[Any], health: list[Health], now: datetime) -> None:
    if not health:
        return
    with conn.cursor() as cur:
        # A safety device (a pendant, a smoke detector) may check in for months before its
        # first press or alarm: its battery or availability report starts its state row, at
        # rest (0: clear, for an alarm the value its next reading is compared with), so that
        # its liveness is watched from the first message (detectors.health), not from a press.
        first = sorted({h.sensor_id: h.ts or now for h in health}.items())
        cur.execute(
            """INSERT INTO anbu.sensor_state
                   (sensor_id, resident_id, value, since, last_reading_at, updated_at)
               SELECT s.id, g.resident_id, 0, x.ts, x.ts, %s
                 FROM unnest(%b::bigint[], %b::timestamptz[]) AS x(id, ts)
                 JOIN anbu.sensor s ON s.id = x.id AND s.kind = ANY(%b::text[])
                 JOIN anbu.gateway g ON g.id = s.gateway_id
                ORDER BY s.id
               ON CONFLICT (sensor_id) DO NOTHING""",
            (now, [i for i, _ in first], [t for _, t in first], _SAFETY_KIND_VALUES),
        )
        cur.executemany(
            """UPDATE anbu.sensor_state SET
                   battery = coalesce(%(battery)s, battery),
                   link_quality = coalesce(%(link)s, link_quality),
                   energy_kwh = coalesce(%(energy)s, energy_kwh),
                   online = coalesce(%(online)s, online),
                   last_reading_at = CASE WHEN %(online)s::boolean IS NULL
                       THEN greatest(last_reading_at, %(ts)s) ELSE last_reading_at END,
                   updated_at = %(now)s
               WHERE sensor_id = %(id)s""",
            [
                {
                    "battery": h.battery,
                    "link": h.link_quality,
                    "energy": h.energy_kwh,
                    "online": h.online,
                    "ts": h.ts,
                    "now": now,
                    "id": h.sensor_id,
                }
                for h in sorted(health, key=lambda h: h.sensor_id)
            ],
        )


def _write_activity(
    conn: psycopg.Connection[Any], homes: dict[int, _Activity], now: datetime
) -> None:
    if not homes:
        return
    rows = sorted(homes.items())
    conn.execute(
        # one statement, its arrays sent binary: a statement per home, or text arrays of
        # timestamps, took more of the storing process than parsing the readings
        """INSERT INTO anbu.home_activity AS h (resident_id, last_activity_at,
               last_motion_at, last_door_at, last_power_at, last_room, updated_at)
           SELECT x.*, %s FROM unnest(%b::bigint[], %b::timestamptz[], %b::timestamptz[],
                                      %b::timestamptz[], %b::timestamptz[], %b::text[]) AS x
           ON CONFLICT (resident_id) DO UPDATE SET
               last_activity_at = greatest(h.last_activity_at, excluded.last_activity_at),
               last_motion_at = greatest(h.last_motion_at, excluded.last_motion_at),
               last_door_at = greatest(h.last_door_at, excluded.last_door_at),
               last_power_at = greatest(h.last_power_at, excluded.last_power_at),
               last_room = CASE WHEN excluded.last_activity_at >= h.last_activity_at
                                THEN excluded.last_room ELSE h.last_room END,
               updated_at = excluded.updated_at""",
        (
            now,
            [rid for rid, _ in rows],
            [a.last_activity_at for _, a in rows],
            [a.last_motion_at for _, a in rows],
            [a.last_door_at for _, a in rows],
            [a.last_power_at for _, a in rows],
            [a.last_room for _, a in rows],
        ),
    )


def _is_activity(ref: SensorRef, value: float, previous: float | None) -> bool:
    """Whether one reading is a sign of a person, given the sensor's previous value.

    A plug that learning found switching by itself (`ref.automatic`: a fridge) never is.
    """
    kind = ref.kind
    if ref.automatic or kind in ALARM_KINDS:
        return False
    if kind in (SensorKind.MOTION, SensorKind.CONTACT):
        return value == 1.0
    if kind is SensorKind.BUTTON:
        return value in (ButtonValue.PRESS, ButtonValue.LONG)
    if kind in (SensorKind.DOOR, SensorKind.APPLIANCE):
        return previous is None or value != previous
    return previous is None or abs(value - previous) >= POWER_STEP_W


def _record(homes: dict[int, _Activity], r: Resolved) -> None:
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
