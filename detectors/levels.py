"""Vectorised learned levels for the live sweep: one numpy pass over every home at once.

Each home has per-slot watch thresholds and level steps (hours, from `anbu.baselines`); a home
in its grace period has NaN there and falls back to the fixed rule. Pure: arrays in, levels out.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from detectors.inactivity import InactivityPolicy
from detectors.learning import SLOT_S

HOUR = 3600.0


def start_slots(since_s: npt.NDArray[np.float64], utc_offset_s: float) -> npt.NDArray[np.int64]:
    """The local 30-minute slot in which each silence began."""
    return ((np.mod(since_s + utc_offset_s, 86400.0)) // SLOT_S).astype(np.int64) % 48


def learned_levels(
    since_s: npt.NDArray[np.float64],
    now_s: float,
    slots: npt.NDArray[np.int64],
    watch_h: npt.NDArray[np.floating],
    step_h: npt.NDArray[np.floating],
    policy: InactivityPolicy,
    min_h: float = 1.0,
    override_h: npt.NDArray[np.floating] | None = None,
) -> npt.NDArray[np.int8]:
    """Severity value per home (0: nothing), from learned tables shaped (homes, 48).

    Rows of NaN (grace, or no baseline) use the fixed rule; no level exceeds the fixed ceiling.
    `override_h` (homes, 3): a care manager's per-home hours for watch / warning / critical,
    NaN where none; each caps its level and the levels below it (a frail resident is never
    waited on longer than the care manager says).
    """
    rows = np.arange(since_s.size)
    w, warn, crit = level_hours(
        watch_h[rows, slots].astype(np.float64),
        step_h[rows, slots].astype(np.float64),
        policy,
        min_h,
        override_h,
    )
    return reached(since_s, now_s, w, warn, crit)


def reached(
    since_s: npt.NDArray[np.float64],
    now_s: float,
    w: npt.NDArray[np.float64],
    warn: npt.NDArray[np.float64],
    crit: npt.NDArray[np.float64],
) -> npt.NDArray[np.int8]:
    """The level (0: none) each silence that began at `since_s` has reached by `now_s`."""
    silence_h = np.maximum(now_s - since_s, 0.0) / HOUR
    levels = np.zeros(since_s.size, dtype=np.int8)
    levels[silence_h >= w] = 1
    levels[silence_h >= warn] = 2
    levels[silence_h >= crit] = 3
    return levels


def level_hours(
    watch: npt.NDArray[np.float64],
    step: npt.NDArray[np.float64],
    policy: InactivityPolicy,
    min_h: float = 1.0,
    override_h: npt.NDArray[np.floating] | None = None,
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """Hours of silence for watch, warning, critical per home, from the learned watch and step
    of the slot its silence began in (NaN: the fixed rule) and the care manager's caps."""
    ceiling = policy.critical_hours
    learned = ~np.isnan(watch)
    w = np.where(learned, np.clip(watch, min_h, ceiling), policy.watch_hours)
    warn = np.where(learned, np.clip(watch + step, w, ceiling), policy.warning_hours)
    crit = np.where(learned, np.clip(watch + 2 * step, warn, ceiling), ceiling)
    if override_h is not None:
        o = np.asarray(override_h, dtype=np.float64)
        crit = np.fmin(crit, o[:, 2])  # a level's cap also caps the levels below it
        warn = np.fmin(np.fmin(warn, o[:, 1]), crit)
        w = np.fmin(np.fmin(w, o[:, 0]), warn)
    return w, warn, crit


def loop_levels(
    since_s: list[float],
    now_s: float,
    slots: list[int],
    watch_h: list[list[float]],
    step_h: list[list[float]],
    policy: InactivityPolicy,
    min_h: float = 1.0,
    override_h: list[tuple[float, float, float]] | None = None,
) -> list[int]:
    """The same as `learned_levels`, one home at a time in plain Python (the bench's baseline)."""
    out = []
    for i, since in enumerate(since_s):
        watch, step = watch_h[i][slots[i]], step_h[i][slots[i]]
        silence = max(now_s - since, 0.0) / HOUR
        if watch != watch:  # NaN: the fixed rule
            levels = (policy.watch_hours, policy.warning_hours, policy.critical_hours)
        else:
            w = min(max(watch, min_h), policy.critical_hours)
            warn = min(max(watch + step, w), policy.critical_hours)
            levels = (w, warn, min(max(watch + 2 * step, warn), policy.critical_hours))
        if override_h is not None:
            levels = _capped(levels, override_h[i])
        out.append(sum(1 for x in levels if silence >= x))
    return out


def _capped(
    levels: tuple[float, float, float], override: tuple[float, float, float]
) -> tuple[float, float, float]:
    """Each level capped by its override (NaN: none) and by the caps of the levels above."""
    out = list(levels)
    cap = float("inf")
    for k in (2, 1, 0):
        if override[k] == override[k]:  # not NaN
            cap = min(cap, override[k])
        out[k] = min(out[k], cap)
    return out[0], out[1], out[2]
