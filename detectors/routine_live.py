"""The live sweep's routine questions at one moment: not back from an outing, not up yet, a long
stay in the bathroom.

Pure and clock-injected, like the scorers it asks: the rules are detectors.routine's
(`not_back`, `not_up`, `bathroom_crossing`), the ones the offline replay uses; this module only says which of
their findings is due at `now` for one home's running silence, and since when it counts
(the key that keeps the sweep from raising it twice). The database side is detectors.sweep.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta, tzinfo

from detectors.learning import HOUR, SLOT_S, Baseline, LearningPolicy
from detectors.routine import Crossing, RoutinePolicy, bathroom_crossing, not_back, not_up


@dataclass(frozen=True, slots=True)
class Due:
    """A routine finding due now; `since` (epoch s) starts the stretch it is raised once in."""

    since: float
    crossing: Crossing


def due_not_back(
    baseline: Baseline | None, start: float, now: float, policy: RoutinePolicy
) -> Due | None:
    """The highest "not back" level an outing that began at `start` has reached by `now`."""
    reached = [c for c in not_back(baseline, start, policy) if c.at <= now]
    return Due(start, reached[-1]) if reached else None


def due_bathroom(
    baseline: Baseline | None,
    start: float,
    now: float,
    watch_h: float,
    step_h: float,
    policy: RoutinePolicy,
) -> Due | None:
    """A silence that began in the bathroom at `start`, past the home's bathroom watch by `now`
    and before its first inactivity level (from the start slot's learned `watch_h`, `step_h`)."""
    if baseline is None or baseline.grace or math.isnan(watch_h):
        return None
    first = start + policy.levels(watch_h, step_h)[0] * HOUR
    crossing = bathroom_crossing(baseline, start, first, policy)
    if crossing is None or crossing.at > now:
        return None
    return Due(start, crossing)


def due_not_up(
    baseline: Baseline | None, start: float, now: float, tz: tzinfo, policy: RoutinePolicy
) -> Due | None:
    """The morning check of the latest night: nothing since its anchor, past the wake time.

    `start` is when the home last stirred (the silence that counts; the caller leaves out a
    resident who is out, as the replay does for a night spent out). Raised once per night:
    `since` is the night's anchor.
    """
    if baseline is None or baseline.grace:
        return None
    anchor = last_local(now, tz, baseline.anchor_slot * SLOT_S)
    morning = not_up(baseline, anchor, tz, policy)
    if morning is None:
        return None
    anchor, crossing = morning
    if start >= anchor or crossing.at > now:
        return None
    return Due(anchor, crossing)


def last_local(t: float, tz: tzinfo, seconds_of_day: float) -> float:
    """The last moment at or before `t` whose local time of day is `seconds_of_day`."""
    d = datetime.fromtimestamp(t, tz)
    moment = d.replace(hour=0, minute=0, second=0, microsecond=0) + timedelta(
        seconds=seconds_of_day
    )
    if moment.timestamp() > t:
        moment -= timedelta(days=1)
    return moment.timestamp()


def morning_bound(
    now: float, tz: tzinfo, policy: RoutinePolicy, learning: LearningPolicy | None = None
) -> float | None:
    """Homes silent since before this moment may be due a morning check now; None: none may.

    A cheap filter ahead of reading the baselines: every anchor lies between local midnight
    and `night_end_h`, and no check falls due before the earliest wake plus the margin (a
    check missed then, with the worker down, is not raised after the next midnight).
    """
    learning = learning or LearningPolicy()
    d = datetime.fromtimestamp(now, tz)
    midnight = d.replace(hour=0, minute=0, second=0, microsecond=0)
    if (d - midnight).total_seconds() < (policy.wake_range[0] + policy.not_up_margin_h) * HOUR:
        return None
    return min(now, (midnight + timedelta(hours=learning.night_end_h)).timestamp())
