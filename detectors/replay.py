"""The full detector stack over one home's recorded history, on a virtual clock.

Time is cut into epochs at the nightly learning moment (03:00 local): in each epoch the home is
judged by the baseline learned from what came before it, exactly as the live worker's nightly
job would have left it. Findings are computed analytically (a silence that starts at `s`
reaches a level `h` at `s + h` unless activity came first), so the replay does not tick.
Strictly causal: a finding at `t` depends only on readings at or before `t`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, tzinfo

import numpy as np

from anbu.domain import Severity
from detectors.evidence import BATHROOM, Evidence
from detectors.learning import Baseline, LearningPolicy, learn
from detectors.routine import Crossing, RoutinePolicy, crossings
from detectors.silences import find_silences

LEARN_HOUR = 3  # local hour of the nightly learning


@dataclass(frozen=True, slots=True)
class ReplayFinding:
    """One finding of the replay (epoch seconds)."""

    at: float
    kind: str
    severity: Severity
    reason_ko: str
    reason_en: str


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
) -> list[ReplayFinding]:
    """Every finding of one home up to `until`, by time."""
    if ev.empty or np.isnan(ev.first_t):
        return []
    bounds = [ev.first_t, *learning_moments(ev.first_t, until, tz), np.inf]
    raised: set[tuple[float, str, int]] = set()
    found: list[ReplayFinding] = []
    fixed_hold = np.full(len(ev.sensors), policy.fixed.open_hold_hours * 3600.0)
    no_auto = np.zeros(len(ev.sensors), dtype=np.bool_)
    baseline: Baseline | None = None
    for lo, hi in zip(bounds[:-1], bounds[1:], strict=True):
        if lo > until:
            break
        if lo > ev.first_t:
            baseline = learn(ev, lo, tz, learning)
        if baseline is None or baseline.grace:
            hold, auto = fixed_hold, no_auto
        else:
            hold, auto = baseline.hold_array(ev), baseline.automatic_array(ev)
        end = min(hi, until)
        sil = find_silences(ev, hold, auto, end)
        running = sil.end > lo
        for k in np.flatnonzero(running).tolist():
            start, stop = float(sil.start[k]), float(sil.end[k])
            room = int(ev.sensor_room[sil.last_sensor[k]]) if sil.last_sensor[k] >= 0 else -1
            for c in crossings(baseline, start, bool(sil.out[k]), room == BATHROOM, tz, policy):
                at = float(np.ceil(max(c.at, lo)))
                key = (round(start), c.kind, int(c.severity))
                if at >= stop or at > end or at >= hi or key in raised:
                    continue
                raised.add(key)
                found.append(_finding(at, c))
    found.sort(key=lambda f: (f.at, f.kind, f.severity))
    return found


def _finding(at: float, c: Crossing) -> ReplayFinding:
    return ReplayFinding(at, c.kind, c.severity, c.reason_ko, c.reason_en)
