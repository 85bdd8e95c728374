"""A home's readings turned into evidence of a person: point events and open intervals.

Built once per home in one pass (model-independent), then read by learning and scoring with
numpy. What counts as a person's doing (ingest's rule, restated: detectors may not import
ingest): motion or contact switching on; a door or appliance changing; a plug reading moving
`POWER_STEP_W` or more. Which plugs cycle by themselves (a fridge) and how long an open
interval may hold a home "active" are learned per home (detectors.learning), not decided here.

Readings may come duplicated or out of order: rows are sorted by time (readings sharing a second
in one fixed order) and a repeat of a sensor's value at the same second is dropped, so both give
the same evidence.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from core.domain import RUN_KEPT, repeat_is_nobody

POWER_STEP_W = 10.0
BINARY_KINDS = ("door", "motion", "contact", "appliance")
ROOMS = ("entrance", "living", "kitchen", "bedroom", "bathroom", "other")
KIND_CODES = {k: i for i, k in enumerate((*BINARY_KINDS, "power"))}
DOOR = KIND_CODES["door"]
# safety devices (core.domain): an alarm's readings are no one's activity; a press is
_NOT_A_PERSON = frozenset({"smoke", "gas", "co", "water_leak", "tamper"})
_BUTTON = "button"
POWER = KIND_CODES["power"]
BATHROOM = ROOMS.index("bathroom")
# kinds whose "on" repeated without an "off" between is a device re-reporting (core.domain)
_REPEATS_STATE = (KIND_CODES["motion"], KIND_CODES["contact"])

Row = tuple[float, str, str, str, float]  # (epoch s, sensor, kind, room, value)
F64 = npt.NDArray[np.float64]
I32 = npt.NDArray[np.int32]


@dataclass(frozen=True, slots=True)
class Evidence:
    """One home's evidence; every array is sorted by time. Sensors are indexed 0..n-1."""

    sensors: tuple[str, ...]
    sensor_kind: I32  # KIND_CODES per sensor
    sensor_room: I32  # ROOMS index per sensor
    event_t: F64  # a person's doing (before plug filtering), by time
    event_sensor: I32
    event_on: npt.NDArray[np.bool_]  # the event switched something on (a door: opened)
    interval_start: F64  # a binary sensor's 1 ... its 0 (inf while still open)
    interval_end: F64
    interval_sensor: I32
    first_t: float  # first reading of any kind (history starts here); nan when empty
    last_t: float

    @property
    def empty(self) -> bool:
        return self.event_t.size == 0 and self.interval_start.size == 0


def _order(r: Row) -> tuple[float, bool, str, float]:
    """Rows by time; readings sharing a second in one order whatever order they came in: the
    entrance door first (a door and a motion in the same second is someone inside, not an
    outing), then by sensor, an interval's 1 before its 0."""
    return (r[0], r[2] != "door", r[1], -r[4])


def build_evidence(rows: Iterable[Row]) -> Evidence:
    """Evidence from raw rows (any order, duplicates allowed)."""
    ordered = sorted(rows, key=_order)
    index: dict[str, int] = {}
    kinds: list[int] = []
    rooms: list[int] = []
    ev_t: list[float] = []
    ev_s: list[int] = []
    ev_on: list[bool] = []
    iv_start: list[float] = []
    iv_end: list[float] = []
    iv_s: list[int] = []
    previous: dict[int, tuple[float, float]] = {}  # sensor -> (t, value)
    opened: dict[int, float] = {}
    last_off: dict[int, float] = {}  # a motion or contact sensor's last "off" (0) so far
    runs: dict[int, list[float]] = {}  # its "on" readings since (core.domain.repeat_is_nobody)
    for t, sensor, kind, room, value in ordered:
        if kind in _NOT_A_PERSON:  # a smoke, gas or leak alarm says nothing of anyone's day
            continue
        s = index.get(sensor)
        if s is None:
            s = index[sensor] = len(kinds)
            kinds.append(KIND_CODES.get(kind, KIND_CODES["contact"]))
            rooms.append(ROOMS.index(room) if room in ROOMS else ROOMS.index("other"))
        prev = previous.get(s)
        if prev is not None and prev == (t, value):
            continue  # the same reading delivered twice
        previous[s] = (t, value)
        code = kinds[s]
        if kind == _BUTTON:  # a press is someone there, an event with no interval after it
            if value >= 1:
                ev_t.append(t)
                ev_s.append(s)
                ev_on.append(True)
            continue
        if code == POWER:
            if prev is not None and abs(value - prev[1]) >= POWER_STEP_W:
                ev_t.append(t)
                ev_s.append(s)
                ev_on.append(value > prev[1])
            continue
        on = value >= 1
        changed = prev is None or (prev[1] >= 1) != on
        if code in _REPEATS_STATE and _nobody_new(s, t, on, changed, runs, last_off):
            continue
        if on or (changed and code in (DOOR, KIND_CODES["appliance"], KIND_CODES["contact"])):
            ev_t.append(t)
            ev_s.append(s)
            ev_on.append(on)
        if on:
            opened.setdefault(s, t)
        elif s in opened:
            iv_start.append(opened.pop(s))
            iv_end.append(t)
            iv_s.append(s)
    for s, start in opened.items():
        iv_start.append(start)
        iv_end.append(np.inf)
        iv_s.append(s)
    order = np.argsort(np.array(iv_start, dtype=np.float64), kind="stable")
    return Evidence(
        sensors=tuple(index),
        sensor_kind=np.array(kinds, dtype=np.int32),
        sensor_room=np.array(rooms, dtype=np.int32),
        event_t=np.array(ev_t, dtype=np.float64),
        event_sensor=np.array(ev_s, dtype=np.int32),
        event_on=np.array(ev_on, dtype=np.bool_),
        interval_start=np.array(iv_start, dtype=np.float64)[order],
        interval_end=np.array(iv_end, dtype=np.float64)[order],
        interval_sensor=np.array(iv_s, dtype=np.int32)[order],
        first_t=ordered[0][0] if ordered else float("nan"),
        last_t=ordered[-1][0] if ordered else float("nan"),
    )


def _nobody_new(
    s: int,
    t: float,
    on: bool,
    changed: bool,
    runs: dict[int, list[float]],
    last_off: dict[int, float],
) -> bool:
    """Keep a motion or contact sensor's "off" and its run of "on"s since; True for an "on"
    that repeats the one before and is nobody new (core.domain.repeat_is_nobody)."""
    if not on:
        last_off[s] = t
        runs.pop(s, None)
        return False
    if changed:
        runs[s] = [t]
        return False
    times = runs[s]
    times.append(t)
    del times[:-RUN_KEPT]
    return repeat_is_nobody(times, last_off.get(s))


def before(ev: Evidence, t: float) -> Evidence:
    """The evidence as it was known at `t`: later events dropped, intervals open at `t` reopened.

    This is what makes learning causal: a model learned at `t` never sees a reading after it.
    """
    ke = ev.event_t < t
    ki = ev.interval_start < t
    end = np.where(ev.interval_end < t, ev.interval_end, np.inf)[ki]
    return Evidence(
        ev.sensors,
        ev.sensor_kind,
        ev.sensor_room,
        ev.event_t[ke],
        ev.event_sensor[ke],
        ev.event_on[ke],
        ev.interval_start[ki],
        end,
        ev.interval_sensor[ki],
        ev.first_t,
        min(ev.last_t, t),
    )
