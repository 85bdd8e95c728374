"""The full detector stack over one home's recorded history, on a virtual clock.

Time is cut into epochs at the nightly learning moment (03:00 local): in each epoch the home is
judged by the baseline learned from what came before it, exactly as the live worker's nightly
job would have left it. Findings are computed analytically (a silence that starts at `s`
reaches a level `h` at `s + h` unless activity came first), so the replay does not tick.
Each epoch also holds one morning check: no person's doing between the night's anchor and
the home's latest usual first activity (plus a margin) raises "not up", unless the resident
was out at the anchor. Strictly causal: a finding at `t` depends only on readings at or
before `t`.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from datetime import datetime, timedelta, tzinfo

import numpy as np
import numpy.typing as npt

from core.domain import Severity
from detectors.evidence import BATHROOM, Evidence
from detectors.learning import Baseline, LearningPolicy, learn
from detectors.routine import Crossing, RoutinePolicy, crossings, not_up, restate
from detectors.silences import find_silences, person_events

LEARN_HOUR = 3  # local hour of the nightly learning


@dataclass(frozen=True, slots=True)
class ReplayFinding:
    """One finding of the replay (epoch seconds)."""

    at: float
    kind: str
    severity: Severity
    reason_ko: str
    reason_en: str
    since: float = float("nan")  # the last doing of a person before it (nan: none)


def learning_moments(first: float, until: float, tz: tzinfo) -> list[float]:
    """Every nightly learning moment (03:00 local) after `first`, up to `until`."""
    d = datetime.fromtimestamp(first, tz).replace(hour=LEARN_HOUR, minute=0, second=0)
    moments = []
    while d.timestamp() <= until:
        if d.timestamp() > first:
            moments.append(d.timestamp())
        d = (d + timedelta(days=1, hours=2)).replace(hour=LEARN_HOUR)  # DST-safe step
    return moments


def replay_home(
    ev: Evidence,
    until: float,
    tz: tzinfo,
    learning: LearningPolicy,
    policy: RoutinePolicy,
    every_level: bool = True,
) -> list[ReplayFinding]:
    """The findings of one home up to `until`, by time.

    With `every_level` each rise in severity and each kind is a finding of its own; without,
    one finding per stretch without a person's doing (the first one reached: the alert that
    would open; its escalation is the alerts machine's business).
    """
    if ev.empty or np.isnan(ev.first_t):
        return []
    bounds = [ev.first_t, *learning_moments(ev.first_t, until, tz), np.inf]
    raised: set[tuple[float, str, int]] = set()
    found: list[ReplayFinding] = []
    fixed_hold = np.full(len(ev.sensors), policy.fixed.open_hold_hours * 3600.0)
    no_auto = np.zeros(len(ev.sensors), dtype=np.bool_)
    baseline: Baseline | None = None
    for lo, hi in itertools.pairwise(bounds):
        if lo > until:
            break
        if lo > ev.first_t:
            baseline = learn(ev, lo, tz, learning)
        if baseline is None or baseline.grace:
            hold = fixed_hold
            auto = baseline.automatic_array(ev) if baseline and baseline.sensors else no_auto
        else:
            hold, auto = baseline.hold_array(ev), baseline.automatic_array(ev)
        end = min(hi, until)
        sil = find_silences(ev, hold, auto, end)
        et = ev.event_t[person_events(ev, auto)]
        running = sil.end > lo
        for k in np.flatnonzero(running).tolist():
            start, stop = float(sil.start[k]), float(sil.end[k])
            room = int(ev.sensor_room[sil.last_sensor[k]]) if sil.last_sensor[k] >= 0 else -1
            cs = crossings(baseline, start, bool(sil.out[k]), room == BATHROOM, tz, policy)
            late: dict[str, Crossing] = {}  # kind: the highest level passed before this routine
            for c in cs:
                if c.at < lo and (c.kind not in late or c.severity > late[c.kind].severity):
                    late[c.kind] = c
            for c in cs:
                if c.at < lo:
                    if late[c.kind] is not c:
                        continue  # as the live sweep: only the highest level passed is raised
                    c = restate(c, start, float(np.ceil(lo)))
                at = float(np.ceil(c.at))
                key = (round(start), c.kind, int(c.severity))
                if at >= stop or at > end or at >= hi or key in raised:
                    continue
                raised.add(key)
                found.append(_finding(at, c, et))
        morning = not_up(baseline, lo, tz, policy)
        if morning is not None and morning[0] < hi:
            anchor, c = morning
            k = int(np.searchsorted(sil.start, anchor, side="right")) - 1
            away = k >= 0 and sil.end[k] > anchor and bool(sil.out[k])
            stirred = np.any((et >= anchor) & (et <= c.at))
            if not away and not stirred and c.at <= until:
                found.append(_finding(float(np.ceil(c.at)), c, et))
    found.sort(key=lambda f: (f.at, f.kind, f.severity))
    if every_level:
        return found
    first: list[ReplayFinding] = []
    for f in found:
        if first and _same(first[-1].since, f.since):
            continue  # the same stretch without a person's doing
        first.append(f)
    return first


def _same(a: float, b: float) -> bool:
    return a == b or (np.isnan(a) and np.isnan(b))


def _finding(at: float, c: Crossing, person_t: npt.NDArray[np.float64]) -> ReplayFinding:
    k = int(np.searchsorted(person_t, at, side="right")) - 1
    since = float(person_t[k]) if k >= 0 else float("nan")
    return ReplayFinding(at, c.kind, c.severity, c.reason_ko, c.reason_en, since)
