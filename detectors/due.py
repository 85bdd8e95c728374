"""When the minute sweep next may have something to say about each home: its due time.

Pure and clock-injected: columns of the sweep's rows in, epoch seconds out. A due time is the
earliest moment after `now` at which the full scan (detectors.sweep) could raise a finding or
record a held-back level for the home, given the state it was judged on: its next inactivity
level, its next "not back" level, the bathroom stay, the next morning check, the end of an
away or hospital stay, a status change dated later. Early is harmless (the sweep judges the
home, finds nothing new, and asks again); late would lose a finding, so whenever a rule's
moment is uncertain the earlier one is taken. A moment already passed that the sweep did not
judge now (the home was not among the rows it scored) stays due at once.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta, tzinfo

import numpy as np
import numpy.typing as npt

from detectors.inactivity import InactivityPolicy
from detectors.learning import HOUR, SLOT_S
from detectors.levels import level_hours, reached
from detectors.routine import NOT_BACK_STEP_H, RoutinePolicy
from detectors.routine_live import last_local

F64 = npt.NDArray[np.float64]
B = npt.NDArray[np.bool_]
EARLY_S = 0.001  # due times are stored to the microsecond: come a millisecond early instead


@dataclass(frozen=True, slots=True)
class DueColumns:
    """What the sweep read of each home, as columns (NaN: none)."""

    start_s: F64  # the silence that counts, from the sweep's query
    istart_s: F64  # ... for inactivity: not before a sensor still on (a mat) stops holding it
    hold_end_s: F64  # an away or hospital stay's end: the silence is counted anew from it
    changed_s: F64  # the latest status change (it moves the start once it is not in the future)
    gone_out: B
    wanted: B  # among the rows the sweep scored at `now`
    wakes: B  # the morning check was asked at `now`
    has_routine: B  # a learned routine past its grace period
    learned: B  # ... with per-slot levels
    watch: F64  # the start slot's learned watch and step, hours
    step: F64
    caps: F64  # (homes, 3): the care manager's watch / warning / critical hours
    in_bathroom: B
    anchor_slot: F64
    wake_h: F64
    out_h: F64
    bathroom_h: F64


def due_times(
    c: DueColumns,
    now_s: float,
    policy: InactivityPolicy,
    routine: RoutinePolicy,
    tz: tzinfo,
    min_h: float,
    earliest_h: float,
) -> tuple[F64, F64]:
    """(due, lead) per home in seconds: when the sweep should judge it next (inf: only when
    something changes), and the shortest time from any silence's start to a finding of it."""
    n = c.start_s.size
    due = np.full(n, math.inf)
    for moment in (c.hold_end_s, c.changed_s):  # the start moves then
        due = np.where(moment > now_s, np.fmin(due, moment), due)
    gate_h: F64 = np.fmin.reduce(np.column_stack([np.full(n, earliest_h), c.caps]), axis=1)
    mornings = c.learned & c.has_routine & _in(c.wake_h, routine.wake_range)
    # the lead holds for the next silence too, at home even when this one is an outing
    lead_h: F64 = np.where(mornings, np.fmin(gate_h, routine.not_up_margin_h), gate_h)
    capable = mornings & ~c.gone_out
    at_home = ~c.gone_out
    due = np.fmin(due, np.where(at_home, _inactivity(c, now_s, policy, min_h), math.inf))
    due = np.fmin(due, np.where(at_home, _bathroom(c, now_s, routine), math.inf))
    due = np.fmin(due, np.where(c.gone_out, _not_back(c, now_s, routine), math.inf))
    due = np.fmin(due, np.where(capable, _not_up(c, now_s, routine, tz, capable), math.inf))
    return np.where(np.isfinite(due), due - EARLY_S, due), lead_h * HOUR


def _in(x: F64, bounds: tuple[float, float]) -> B:
    with np.errstate(invalid="ignore"):
        return (x >= bounds[0]) & (x <= bounds[1])


def _inactivity(c: DueColumns, now_s: float, policy: InactivityPolicy, min_h: float) -> F64:
    """The next level the silence reaches: after the one reached now, if the sweep scored it."""
    w, warn, crit = level_hours(c.watch, c.step, policy, min_h, c.caps)
    levels = np.where(c.wanted, reached(c.istart_s, now_s, w, warn, crit), 0)
    nxt = np.stack([w, warn, crit], axis=1)[np.arange(levels.size), np.minimum(levels, 2)]
    return np.where(levels < 3, c.istart_s + nxt * HOUR, math.inf)


def _bathroom(c: DueColumns, now_s: float, routine: RoutinePolicy) -> F64:
    """A silence begun in the bathroom: the learned bathroom watch (the full rule also asks
    that it come before the first level; leaving that out only makes it early)."""
    able = c.learned & c.has_routine & c.in_bathroom & ~np.isnan(c.watch) & ~np.isnan(c.bathroom_h)
    at = c.istart_s + np.fmax(routine.min_h, c.bathroom_h) * HOUR
    return np.where(able & ((at > now_s) | ~c.wanted), at, math.inf)


def _not_back(c: DueColumns, now_s: float, routine: RoutinePolicy) -> F64:
    """An outing's levels; one passed stays due while the sweep has not judged the outing yet
    (a second's margin around the moment it starts to: early, never late)."""
    longest = np.where(c.has_routine, c.out_h, math.nan)
    hours = np.where(np.isnan(longest), routine.not_back_min_h, routine.not_back_factor * longest)
    hours = np.fmin(np.fmax(hours, routine.not_back_min_h), routine.not_back_max_h)
    judged = c.wanted & (c.start_s + routine.not_back_min_h * HOUR < now_s - 1.0)
    due = np.full(c.start_s.size, math.inf)
    for h in (hours, hours + NOT_BACK_STEP_H):
        at = c.start_s + h * HOUR
        due = np.where((at > now_s) | ~judged, np.fmin(due, at), due)
    return due


def _not_up(c: DueColumns, now_s: float, routine: RoutinePolicy, tz: tzinfo, capable: B) -> F64:
    """The next morning check: this night's when the silence began before its anchor and the
    check is still to come (or came while the sweep left the home out), else the next night's."""
    due = np.full(c.start_s.size, math.inf)
    slots = np.where(np.isnan(c.anchor_slot), 8, c.anchor_slot).astype(np.int64)
    wake = np.mod(c.wake_h * HOUR - slots * SLOT_S, 86400.0)
    margin = routine.not_up_margin_h * HOUR
    opens = _next_local(now_s, tz, (routine.wake_range[0] + routine.not_up_margin_h) * HOUR)
    for slot in np.unique(slots[capable]).tolist():
        mine = capable & (slots == slot)
        anchor = last_local(now_s, tz, slot * SLOT_S)
        after = _next_local(anchor + 1.0, tz, slot * SLOT_S)  # the next night's anchor
        this = anchor + wake + margin
        before = c.start_s < anchor
        still = before & (this > now_s)
        missed = before & (this <= now_s) & ~c.wakes
        nxt = np.where(still, this, after + wake + margin)
        nxt = np.where(missed, np.fmin(nxt, opens), nxt)
        late = c.start_s >= after  # activity stamped ahead of the clock: a later night
        for i in np.flatnonzero(mine & late).tolist():
            first = _next_local(float(c.start_s[i]), tz, slot * SLOT_S)
            nxt[i] = first + wake[i] + margin
        due = np.where(mine, nxt, due)
    return due


def _next_local(t: float, tz: tzinfo, seconds_of_day: float) -> float:
    """The first moment at or after `t` whose local time of day is `seconds_of_day`."""
    moment = last_local(t, tz, seconds_of_day)
    if moment < t:
        d = datetime.fromtimestamp(moment, tz) + timedelta(days=1)
        moment = d.timestamp()
    return moment
