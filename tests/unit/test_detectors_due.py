"""detectors.due: a home's due time is never after the first moment the full scan's rules would
raise something new for it (pure: the rules of detectors.routine_live and detectors.levels are
the oracle, asked minute by minute up to the due time)."""

from __future__ import annotations

import math
import random
from zoneinfo import ZoneInfo

import numpy as np

from detectors.due import DueColumns, due_times
from detectors.inactivity import InactivityPolicy
from detectors.learning import Baseline
from detectors.levels import level_hours, reached
from detectors.routine import RoutinePolicy
from detectors.routine_live import due_not_back, due_not_up, morning_bound

SEOUL = ZoneInfo("Asia/Seoul")
POLICY = InactivityPolicy()
ROUTINE = RoutinePolicy(fixed=POLICY)
NOW = 1_764_000_000.0  # 2025-11-24 16:00 UTC, 01:00 in Seoul


def _home(rng: random.Random) -> dict[str, float | bool]:
    learned = rng.random() < 0.7
    return {
        "start": NOW - rng.uniform(-600, 40 * 3600),
        "gone_out": rng.random() < 0.2,
        "learned": learned,
        "watch": rng.uniform(1, 12) if learned else math.nan,
        "step": rng.uniform(0.2, 4) if learned else math.nan,
        "cap": rng.choice([math.nan, math.nan, 0.5, 2.0]),
        "anchor": float(rng.randint(2, 13)),
        "wake": rng.choice([rng.uniform(5, 10), 14.0]) if learned else math.nan,
        "out": rng.choice([math.nan, rng.uniform(1, 40)]) if learned else math.nan,
    }


def _baseline(h: dict[str, float | bool]) -> Baseline | None:
    if not h["learned"]:
        return None
    return Baseline(
        learned_at=0.0, history_days=30.0, grace=False, watch_h=(float(h["watch"]),) * 48,
        step_h=(float(h["step"]),) * 48, out_h=(float(h["out"]), 1.0),
        anchor_slot=int(h["anchor"]), wake_h=float(h["wake"]),
    )  # fmt: skip


def _gate(h: dict[str, float | bool]) -> float:
    return float(np.fmin(1.0, h["cap"]))


def _said(h: dict[str, float | bool], t: float) -> set[tuple[str, int, float]]:
    """What the full scan's rules have to say about the home at `t`: (rule, level, since)."""
    start, b = float(h["start"]), _baseline(h)
    wanted = start <= t - _gate(h) * 3600
    morning = morning_bound(t, SEOUL, ROUTINE)
    wakes = bool(h["learned"]) and 5 <= float(h["wake"]) <= 13 and morning is not None
    wakes = wakes and start < float(morning or 0)
    said: set[tuple[str, int, float]] = set()
    if h["gone_out"]:
        back = due_not_back(b, start, t, ROUTINE)
        if back is not None and wanted and start <= t - ROUTINE.not_back_min_h * 3600:
            said.add(("not_back", back.crossing.severity.value, back.since))
        return said
    if wanted or wakes:
        w, warn, crit = (
            x.item()
            for x in level_hours(
                np.array([h["watch"]]), np.array([h["step"]]), POLICY, 1.0,
                np.array([[h["cap"], math.nan, math.nan]]),
            )
        )  # fmt: skip
        level = int(reached(np.array([start]), t, *map(np.array, ([w], [warn], [crit])))[0])
        if level:
            said.add(("inactivity", level, start))
    up = due_not_up(b, start, t, SEOUL, ROUTINE) if wakes else None
    if up is not None:
        said.add(("not_up", 1, up.since))
    return said


def test_nothing_new_is_said_before_the_due_time() -> None:
    rng = random.Random(11)
    homes = [_home(rng) for _ in range(120)]

    def col(key: str) -> np.ndarray:
        return np.array([float(h[key]) for h in homes])

    def flag(key: str) -> np.ndarray:
        return np.array([bool(h[key]) for h in homes])

    morning = morning_bound(NOW, SEOUL, ROUTINE)
    wakes = np.array([morning is not None and h["start"] < morning for h in homes])
    wakes &= flag("learned") & (col("wake") >= 5) & (col("wake") <= 13)
    wanted = wakes | np.array([h["start"] <= NOW - _gate(h) * 3600 for h in homes])
    columns = DueColumns(
        start_s=col("start"),
        istart_s=col("start"),  # no sensor left on (the held start: tests/integration)
        hold_end_s=np.full(len(homes), math.nan),
        changed_s=np.full(len(homes), math.nan),
        gone_out=flag("gone_out"),
        wanted=wanted,
        wakes=wakes,
        has_routine=flag("learned"),
        learned=flag("learned"),
        watch=col("watch"),
        step=col("step"),
        caps=np.column_stack([col("cap"), np.full(len(homes), math.nan), col("cap") * math.nan]),
        in_bathroom=np.zeros(len(homes), np.bool_),
        anchor_slot=col("anchor"),
        wake_h=col("wake"),
        out_h=col("out"),
        bathroom_h=np.full(len(homes), math.nan),
    )
    due, lead = due_times(columns, NOW, POLICY, ROUTINE, SEOUL, 1.0, 1.0)
    assert (lead <= 3600).all()
    assert (lead[flag("learned") & (col("wake") <= 13)] <= 1800).all()  # the morning margin
    checked = exact = 0
    for i, h in enumerate(homes):
        before = _said(h, NOW)
        until = min(float(due[i]), NOW + 3 * 86400)
        for t in np.arange(NOW + 60, until, 120.0):
            assert _said(h, float(t)) <= before, (i, h, t - NOW, due[i] - NOW)
            checked += 1
        if math.isfinite(due[i]) and due[i] < NOW + 3 * 86400:
            exact += bool(_said(h, float(due[i]) + 120) - before)  # something new then
    assert checked > 5_000
    assert exact > 60  # mostly the due time is the moment itself, not merely early
