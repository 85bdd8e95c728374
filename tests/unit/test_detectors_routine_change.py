"""Routine change: a home whose routine shifts is flagged; an ordinary recorded week is not."""

from __future__ import annotations

import csv
import random
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pytest

from detectors.routine_change import (
    FIRST,
    NIGHT,
    OUTINGS,
    TOTAL,
    Event,
    RoutinePolicy,
    daily_summaries,
    fit,
    flagged,
    score,
)

KST = timezone(timedelta(hours=9))
# a copy of ../shared/data/uci-a shipped with the tests (source and licence in its README)
DATA = Path(__file__).resolve().parents[1] / "fixtures" / "uci-a" / "events.csv"
POLICY = RoutinePolicy()


def _day(d: date, rng: random.Random, night_moves: int = 0, wake_h: float = 7.0) -> list[Event]:
    """A synthetic day: wake, meals, an outing, evening TV, bed; optional night wandering."""
    base = datetime(d.year, d.month, d.day, tzinfo=KST) + timedelta(hours=rng.uniform(-0.3, 0.3))
    out: list[Event] = []

    def at(h: float, sensor: str, kind: str, room: str, value: float) -> None:
        out.append(((base + timedelta(hours=h)).timestamp(), sensor, kind, room, value))

    at(wake_h, "pir_bed", "motion", "bedroom", 1)
    at(wake_h + 0.05, "pir_bed", "motion", "bedroom", 0)
    for h in (wake_h + 0.5, 12.0, 18.5):
        for k in range(4):
            at(h + k * 0.1, "pir_kitchen", "motion", "kitchen", 1)
            at(h + k * 0.1 + 0.05, "pir_kitchen", "motion", "kitchen", 0)
    at(10.0, "door", "door", "entrance", 1)
    at(10.02, "door", "door", "entrance", 0)
    at(11.5, "door", "door", "entrance", 1)
    at(11.52, "door", "door", "entrance", 0)
    for k in range(6):
        at(19.0 + k * 0.4, "pir_living", "motion", "living", 1)
        at(19.1 + k * 0.4, "pir_living", "motion", "living", 0)
    for k in range(night_moves):
        at(1.0 + k * 0.2, "pir_living", "motion", "living", 1)
        at(1.05 + k * 0.2, "pir_living", "motion", "living", 0)
    return out


def _home(days: int, shift_from: int | None = None) -> list[Event]:
    rng = random.Random(7)
    start = date(2026, 10, 1)
    events: list[Event] = []
    for i in range(days):
        shifted = shift_from is not None and i >= shift_from
        events += _day(start + timedelta(days=i), rng, night_moves=8 if shifted else 0,
                       wake_h=10.5 if shifted else 7.0)  # fmt: skip
    return events


def test_summaries_count_the_day() -> None:
    s = daily_summaries(_home(5), KST)
    assert len(s.days) == 3  # first and last day are partial
    assert s.matrix.shape == (3, 30)
    assert np.all(s.matrix[:, OUTINGS] == 2)
    assert np.all(s.matrix[:, NIGHT] == 0)
    assert np.all(np.abs(s.matrix[:, FIRST] - 7.0) < 0.4)
    assert np.all(s.matrix[:, TOTAL] == s.matrix[:, :24].sum(axis=1))


def test_duplicates_and_order_give_the_same_summaries() -> None:
    ev = _home(6)
    shuffled = ev + ev[:50]
    random.Random(1).shuffle(shuffled)
    a, b = daily_summaries(ev, KST), daily_summaries(shuffled, KST)
    assert a.days == b.days and np.array_equal(a.matrix, b.matrix, equal_nan=True)
    assert daily_summaries([], KST).matrix.shape == (0, 30)


def test_a_shifted_routine_is_flagged_with_its_reasons() -> None:
    s = daily_summaries(_home(30, shift_from=25), KST)
    model = fit(s.matrix[:23])  # learned from the past only
    normal = [flagged(*score(model, s.matrix[i]), POLICY) for i in range(23)]
    assert sum(normal) <= 1
    value, reasons = score(model, s.matrix[24])  # the first shifted day (index 24 = day 25)
    assert flagged(value, reasons, POLICY)
    words = " ".join(r.reason_ko for r in reasons)
    assert "밤(0–6시) 활동" in words and "배 많습니다" in words
    later = score(model, s.matrix[26])[1]  # the wake time moved too (the door opens first)
    assert any(r.feature in ("first", "night") for r in later)


def test_scores_are_reproducible() -> None:
    s = daily_summaries(_home(20, shift_from=18), KST)
    a = score(fit(s.matrix[:15]), s.matrix[17])
    b = score(fit(s.matrix[:15]), s.matrix[17])
    assert a == b


def test_an_ordinary_recorded_week_yields_few_flags() -> None:
    with DATA.open(encoding="utf-8") as f:
        events = [
            (datetime.fromisoformat(r["ts"]).timestamp(), r["sensor"], r["kind"], r["room"],
             float(r["value"]))
            for r in csv.DictReader(f)
        ]  # fmt: skip
    s = daily_summaries(events, KST)
    assert len(s.days) >= 12
    flags = 0
    for i in range(POLICY.min_days, len(s.days)):
        flags += flagged(*score(fit(s.matrix[:i]), s.matrix[i]), POLICY)
    assert flags <= 1  # a week of an ordinary life: at most one day for review


def test_fit_needs_days() -> None:
    with pytest.raises(ValueError, match="at least two days"):
        fit(np.zeros((1, 30)))
