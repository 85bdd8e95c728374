"""Routine change: a day (or week) that departs from the home's own normal, for weekly review.

Each local day of a home becomes a summary: activity by hour (24), first activity from 04:00,
last activity, night activity (00-06), outings (front door openings), energy (kWh, from plugs)
and total activity. A per-home model is fit on the home's past days only: robust scaling
(median and spread per feature) plus an IsolationForest over the scaled features (fixed seed,
so the same days give the same model). Scoring a day gives how unusual it is relative to the
training days (1.0 = as unusual as the most unusual of them) and the biggest departures in
words. A low-severity finding (`routine_change`, watch), never an alarm by itself. Pure:
learning (`fit`) is separate from scoring (`score`), and nothing here reads the clock.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta, tzinfo
from typing import Any

import numpy as np
import numpy.typing as npt
from sklearn.ensemble import IsolationForest

from detectors.evidence import POWER_STEP_W

KIND = "routine_change"
Event = tuple[float, str, str, str, float]  # (epoch s, sensor, kind, room, value)
F64 = npt.NDArray[np.float64]

HOURS = 24
FIRST, LAST, NIGHT, OUTINGS, ENERGY, TOTAL = range(HOURS, HOURS + 6)
COLUMNS = HOURS + 6
WAKE_FROM_H = 4.0
NIGHT_END_H = 6
# model features: (name, Korean label, English label, unit: count | hour | kwh)
FEATURES: tuple[tuple[str, str, str, str], ...] = (
    ("night", "밤(0–6시) 활동", "night activity (00-06)", "count"),
    ("morning", "오전 활동", "morning activity", "count"),
    ("afternoon", "오후 활동", "afternoon activity", "count"),
    ("evening", "저녁 활동", "evening activity", "count"),
    ("first", "첫 활동", "first activity", "hour"),
    ("last", "마지막 활동", "last activity", "hour"),
    ("outings", "외출", "outings", "count"),
    ("energy", "전력 사용량", "energy use", "kwh"),
    ("total", "하루 활동량", "daily activity", "count"),
)
FLOORS = {"count": 0.5, "hour": 1.0, "kwh": 0.3}  # least spread per unit (log1p for counts)


@dataclass(frozen=True, slots=True)
class RoutinePolicy:
    """How much history the model needs and when a day is reported."""

    min_days: int = 7
    window_days: int = 56
    score_threshold: float = 1.0  # as unusual as the most unusual training day, or more
    reason_z: float = 3.0  # a feature this many robust spreads away is named as a departure
    strong_z: float = 6.0  # so far away that the day is reported whatever the forest says
    max_reasons: int = 3
    week_min_days: int = 3  # this many unusual days in a week make a week finding


@dataclass(frozen=True, slots=True)
class DailySummaries:
    """One row per whole local day with data (columns as COLUMNS), and the days."""

    days: tuple[date, ...]
    matrix: F64


@dataclass(frozen=True, slots=True)
class Departure:
    """One feature of a day far from the home's usual value, in words."""

    feature: str
    value: float
    usual: float
    z: float
    reason_ko: str
    reason_en: str


@dataclass(frozen=True, slots=True)
class RoutineModel:
    """A home's normal: feature medians and spreads, and the forest fit on its past days."""

    median: F64
    spread: F64
    raw_median: F64  # medians of the untransformed features, for reasons
    forest: IsolationForest
    train_median: float
    train_max: float
    days: int


def daily_summaries(
    events: Iterable[Event], tz: tzinfo, start: date | None = None, end: date | None = None
) -> DailySummaries:
    """Summaries of each whole local day from `start` to `end` (default: the data's first and
    last day, both excluded as partial). Duplicated or unordered events give the same rows."""
    rows = sorted(set(events), key=lambda e: (e[0], e[1], e[4]))
    if not rows:
        return DailySummaries((), np.zeros((0, COLUMNS)))
    first_day = start or datetime.fromtimestamp(rows[0][0], tz).date() + timedelta(days=1)
    last_day = end or datetime.fromtimestamp(rows[-1][0], tz).date() - timedelta(days=1)
    n = (last_day - first_day).days + 1
    if n <= 0:
        return DailySummaries((), np.zeros((0, COLUMNS)))
    m = np.zeros((n, COLUMNS))
    m[:, FIRST] = np.nan
    m[:, LAST] = np.nan
    for t, kind, value, energy in _walk(rows):
        at = datetime.fromtimestamp(t, tz)
        d = (at.date() - first_day).days
        if not 0 <= d < n:
            continue
        m[d, ENERGY] += energy
        if kind is None:
            continue
        hour = at.hour + at.minute / 60 + at.second / 3600
        m[d, at.hour] += 1
        m[d, TOTAL] += 1
        if at.hour < NIGHT_END_H:
            m[d, NIGHT] += 1
        if kind == "door" and value >= 1:
            m[d, OUTINGS] += 1
        if hour >= WAKE_FROM_H and np.isnan(m[d, FIRST]):
            m[d, FIRST] = hour
        m[d, LAST] = hour
    days = tuple(first_day + timedelta(days=i) for i in range(n))
    return DailySummaries(days, m)


def person_times(events: Iterable[Event]) -> F64:
    """Sorted epoch times of a person's doings (duplicates and order do not matter)."""
    rows = sorted(set(events), key=lambda e: (e[0], e[1], e[4]))
    return np.array([t for t, kind, _, _ in _walk(rows) if kind is not None], dtype=np.float64)


def _walk(rows: Sequence[Event]) -> Iterable[tuple[float, str | None, float, float]]:
    """(time, kind if a person did it else None, value, kWh used since the plug's last reading).

    A person: motion or contact switching on; a door or appliance changing; a plug's reading
    moving POWER_STEP_W or more. Energy integrates each plug's watts (gaps capped at an hour).
    """
    state: dict[str, float] = {}
    last_power: dict[str, tuple[float, float]] = {}
    for t, sensor, kind, _room, value in rows:
        before = state.get(sensor)
        state[sensor] = value
        energy = 0.0
        if kind == "power":
            prev = last_power.get(sensor)
            last_power[sensor] = (t, value)
            if prev is not None:
                energy = prev[1] * min(t - prev[0], 3600.0) / 3.6e6
            person = prev is not None and abs(value - prev[1]) >= POWER_STEP_W
        elif kind in ("door", "appliance"):
            person = before != value
        else:
            person = value >= 1 and before != value
        yield t, kind if person else None, value, energy


def features(summaries: F64) -> F64:
    """The model's view of summaries: activity per quarter of the day, times, outings, energy."""
    s = np.atleast_2d(summaries)
    first = np.where(np.isnan(s[:, FIRST]), 24.0, s[:, FIRST])  # no activity: latest possible
    last = np.where(np.isnan(s[:, LAST]), 0.0, s[:, LAST])
    return np.column_stack(
        [
            s[:, NIGHT],
            s[:, 6:12].sum(axis=1),
            s[:, 12:18].sum(axis=1),
            s[:, 18:24].sum(axis=1),
            first,
            last,
            s[:, OUTINGS],
            s[:, ENERGY],
            s[:, TOTAL],
        ]
    )


def _transform(raw: F64) -> F64:
    out = raw.copy()
    for j, (_, _, _, unit) in enumerate(FEATURES):
        if unit != "hour":
            out[:, j] = np.log1p(np.maximum(out[:, j], 0.0))
    return out


def fit(summaries: F64, seed: int = 0) -> RoutineModel:
    """Learn the home's normal from its past days (rows of `daily_summaries`)."""
    raw = features(summaries)
    if raw.shape[0] < 2:
        raise ValueError("routine change: at least two days are needed to fit")
    x = _transform(raw)
    median = np.median(x, axis=0)
    q75, q25 = np.percentile(x, [75, 25], axis=0)
    mad = np.median(np.abs(x - median), axis=0) * 1.4826
    floors = np.array([FLOORS[f[3]] for f in FEATURES])
    spread = np.maximum(np.maximum(mad, (q75 - q25) / 1.349), floors)
    z = (x - median) / spread
    forest = IsolationForest(n_estimators=100, random_state=seed).fit(z)
    train = -forest.score_samples(z)
    return RoutineModel(
        median, spread, np.median(raw, axis=0), forest,
        float(np.median(train)), float(train.max()), int(raw.shape[0]),
    )  # fmt: skip


def score(
    model: RoutineModel, summary: F64, policy: RoutinePolicy | None = None
) -> tuple[float, tuple[Departure, ...]]:
    """How unusual one day is and why, in words.

    1.0 = as unusual as the most unusual training day (forest), or a feature `strong_z`
    spreads away from its median, whichever is larger (`reason_z` when all training days
    were alike).
    """
    policy = policy or RoutinePolicy()
    raw = features(summary)
    z = (_transform(raw) - model.median) / model.spread
    s = float(-model.forest.score_samples(z)[0])
    spread = model.train_max - model.train_median
    order = [int(j) for j in np.argsort(-np.abs(z[0]), kind="stable")]
    if raw[0, -1] == 0:  # no activity at all: times and quarters say nothing more
        order = [len(FEATURES) - 1]
    reasons = tuple(
        _departure(j, float(raw[0, j]), float(model.raw_median[j]), float(z[0, j]))
        for j in order[: policy.max_reasons]
        if abs(z[0, j]) >= policy.reason_z
    )
    farthest = float(np.abs(z[0]).max())
    if spread < 1e-9:  # identical training days: the forest cannot split, the spreads can
        return farthest / policy.reason_z, reasons
    return max((s - model.train_median) / spread, farthest / policy.strong_z), reasons


def flagged(value: float, reasons: Sequence[Departure], policy: RoutinePolicy) -> bool:
    """A day is reported when the forest finds it unusual and a feature says why."""
    return value >= policy.score_threshold and bool(reasons)


def reason_text(reasons: Sequence[Departure]) -> tuple[str, str]:
    """Korean and English reason of a flagged day."""
    return ("; ".join(r.reason_ko for r in reasons), "; ".join(r.reason_en for r in reasons))


def judge(days: DailySummaries, policy: RoutinePolicy) -> tuple[str, str, dict[str, Any]] | None:
    """The day finding if yesterday departs, else the week finding if the week does."""
    m = days.matrix
    if m.shape[0] - 1 >= policy.min_days:
        model = fit(m[:-1])
        value, reasons = score(model, m[-1], policy)
        if flagged(value, reasons, policy):
            ko, en = reason_text(reasons)
            day = days.days[-1].isoformat()
            details = {"key": f"day:{day}", "scope": "day", "day": day,
                       "score": round(value, 3), "history_days": model.days}  # fmt: skip
            return f"{day} 생활 변화: {ko}", f"{day} routine change: {en}", details
    if m.shape[0] - 7 >= policy.min_days:
        model = fit(m[:-7])
        odd = []
        for i in range(m.shape[0] - 7, m.shape[0]):
            value, reasons = score(model, m[i], policy)
            if flagged(value, reasons, policy):
                odd.append(days.days[i].isoformat())
        if len(odd) >= policy.week_min_days:
            week = days.days[-7].isoformat()
            details = {"key": f"week:{week}", "scope": "week", "days": odd,
                       "history_days": model.days}  # fmt: skip
            return (
                f"최근 7일 중 {len(odd)}일이 평소 생활과 다릅니다",
                f"{len(odd)} of the last 7 days depart from the usual routine",
                details,
            )
    return None


def _departure(j: int, value: float, usual: float, z: float) -> Departure:
    name, ko, en, unit = FEATURES[j]
    if name == "first" and value >= 24:
        ko_t, en_t = "04시 이후 활동이 없었습니다", "no activity after 04:00"
    elif unit == "hour":
        d = abs(value - usual)
        later = value > usual
        ko_t = f"{ko}이 평소보다 {d:.1f}시간 {'늦습니다' if later else '이릅니다'}"
        en_t = f"{en} {d:.1f} h {'later' if later else 'earlier'} than usual"
    elif z > 0:
        times = value / max(usual, 1.0 if unit == "count" else 0.1)
        shown = f"{times:.0f}" if times >= 3 else f"{times:.1f}"
        ko_t = f"평소보다 {ko}이 {shown}배 많습니다"
        en_t = f"{en} {shown}× the usual"
    elif value == 0:
        ko_t = f"{ko}이 없었습니다 (평소 {_num(usual, unit)})"
        en_t = f"no {en} (usually {_num(usual, unit, en=True)})"
    else:
        ko_t = f"평소보다 {ko}이 적습니다 (평소 {_num(usual, unit)}, 이날 {_num(value, unit)})"
        en_t = f"{en} below usual ({_num(value, unit, en=True)} vs {_num(usual, unit, en=True)})"
    return Departure(name, value, usual, z, ko_t, en_t)


def _num(v: float, unit: str, en: bool = False) -> str:
    if unit == "kwh":
        return f"{v:.1f} kWh"
    return f"{v:.0f}" if en else f"{v:.0f}회"
