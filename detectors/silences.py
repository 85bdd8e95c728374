"""Evidence to silences: when the home was active, and what each quiet stretch was.

A point event is active for an instant; an open interval (a bed mat pressed, a door open) for
as long as it stays open but at most its sensor's learned hold. A silence is a stretch with
neither. A silence that follows the entrance door closing, with nothing inside after it, is an
outing ("out"), not inactivity; a door left open is not an outing.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from detectors.evidence import DOOR, Evidence

F64 = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]
I32 = npt.NDArray[np.int32]
RETURN_AFTER_S = 600.0  # a door session this long after leaving is the resident coming back


@dataclass(frozen=True, slots=True)
class Silences:
    """Silences of one home, by start; `end` is the first activity after (inf: still running)."""

    start: F64
    end: F64
    out: BoolArray  # began with the entrance door closing behind the resident
    last_sensor: npt.NDArray[np.int32]  # the sensor of the last event before (-1: none)

    def __len__(self) -> int:
        return int(self.start.size)


def person_events(ev: Evidence, automatic: BoolArray) -> BoolArray:
    """Mask of events that are a person's doing (not a plug that cycles by itself)."""
    if ev.event_sensor.size == 0:
        return np.zeros(0, dtype=np.bool_)
    return ~automatic[ev.event_sensor]


def find_silences(
    ev: Evidence, hold_s: F64, automatic: BoolArray, until: float, min_s: float = 60.0
) -> Silences:
    """Every silence of at least `min_s` up to `until` (the last one runs to inf)."""
    keep = person_events(ev, automatic) & (ev.event_t <= until)
    et = ev.event_t[keep]
    es = ev.event_sensor[keep]
    eon = ev.event_on[keep]
    ki = ev.interval_start <= until
    i_start = ev.interval_start[ki]
    i_sensor = ev.interval_sensor[ki]
    i_end = np.minimum(ev.interval_end[ki], i_start + hold_s[i_sensor])
    starts = np.concatenate([et, i_start])
    ends = np.concatenate([et, i_end])
    if starts.size == 0:
        empty = np.zeros(0)
        return Silences(empty, empty, np.zeros(0, np.bool_), np.zeros(0, np.int32))
    order = np.argsort(starts, kind="stable")
    starts, ends = starts[order], ends[order]
    reach = np.maximum.accumulate(ends)
    gap = np.flatnonzero(starts[1:] - reach[:-1] >= min_s)
    g_start = np.concatenate([reach[gap], reach[-1:]])
    g_end = np.concatenate([starts[gap + 1], [np.inf]])
    if g_start[-1] >= until:  # the home is still active at `until`: no running silence
        g_start, g_end = g_start[:-1], g_end[:-1]
    # the last event at or before each silence's start says whether the resident went out
    k = np.searchsorted(et, g_start, side="right") - 1
    if et.size == 0:
        k = np.full(g_start.shape, -1)
        es, eon = np.zeros(1, np.int32), np.zeros(1, np.bool_)
    has = k >= 0
    last_sensor = np.where(has, es[np.maximum(k, 0)], -1).astype(np.int32)
    door = has & (ev.sensor_kind[np.maximum(last_sensor, 0)] == DOOR)
    closed = door & ~eon[np.maximum(k, 0)]
    return Silences(g_start, g_end, _outings(closed, g_start, g_end, et, es, eon, ev), last_sensor)


def _outings(
    closed: BoolArray, g_start: F64, g_end: F64, et: F64, es: I32, eon: BoolArray, ev: Evidence
) -> BoolArray:
    """Which door-closed silences are outings: the door closed behind a resident who was in.

    A door session (only door events between two silences, the door opened once) that follows
    an outing of at least `RETURN_AFTER_S` is the resident coming back: the silence after it is at home, not
    another outing (a door opened twice on the way out is still leaving).
    """
    if not closed.any():
        return closed
    not_door = np.concatenate([[0], np.cumsum(ev.sensor_kind[es] != DOOR)])
    opened = np.concatenate([[0], np.cumsum((ev.sensor_kind[es] == DOOR) & eon)])
    out = closed.copy()
    for i in np.flatnonzero(closed).tolist():
        if i == 0 or not out[i - 1] or g_end[i - 1] - g_start[i - 1] < RETURN_AFTER_S:
            continue
        lo = np.searchsorted(et, g_end[i - 1], side="left")
        hi = np.searchsorted(et, g_start[i], side="right")
        if not_door[hi] - not_door[lo] == 0 and opened[hi] - opened[lo] == 1:
            out[i] = False  # back home: the door session after an outing
    return out
