"""What the learned routine promises: holds, the record factor, the morning check, outings."""

from __future__ import annotations

from datetime import timedelta

import numpy as np

from detectors.evidence import Row, build_evidence
from detectors.learning import LearningPolicy, _pool, learn
from detectors.silences import find_silences
from tests.unit.test_detectors_contract import HISTORY, KST, START, routine

LEARNING = LearningPolicy()


def test_a_sensor_usually_left_on_holds_no_presence() -> None:
    """A cupboard left open for days says nothing about a person; a bed mat does."""
    rows: list[Row] = list(HISTORY)
    for d in range(0, 12, 3):  # open for two days, shut for one
        t = (START + timedelta(days=d, hours=12)).timestamp()
        rows += [
            (t, "cupboard", "contact", "kitchen", 1),
            (t + 2 * 86400, "cupboard", "contact", "kitchen", 0),
        ]
    b = learn(build_evidence(rows), (START + timedelta(days=11)).timestamp(), KST, LEARNING)
    hold = dict(zip(b.sensors, b.hold_s, strict=True))
    assert hold["cupboard"] == LEARNING.min_hold_s
    assert 6 * 3600 < hold["bed"] <= LEARNING.max_hold_s


def test_the_record_factor_grows_with_a_home_that_breaks_its_records() -> None:
    rng = np.random.default_rng(1)
    days = np.repeat(np.arange(20), 10)
    starts = rng.uniform(8, 20, days.size) * 3600
    calm = rng.uniform(0.1, 1.0, days.size)
    *_, calm_factor = _pool(starts, days, calm, LEARNING)
    wild = calm.copy()
    wild[::37] *= 3.0  # now and then three times longer than anything else seen
    watch, _, _, wild_factor = _pool(starts, days, wild, LEARNING)
    assert LEARNING.extreme_factor <= calm_factor < wild_factor <= LEARNING.max_factor
    assert np.all(watch[16:40] > wild[(starts >= 8 * 3600)].max() * 0.9)


def test_wake_is_learned_after_the_night_anchor() -> None:
    b = learn(build_evidence(routine(14)), (START + timedelta(days=14)).timestamp(), KST, LEARNING)
    assert b.anchor_slot < 2 * LEARNING.night_end_h
    assert 7.0 <= b.wake_h <= 7.5  # first activity 06:40-07:20, the latest of them


def test_a_door_opened_once_after_an_outing_is_coming_back() -> None:
    t = (START + timedelta(days=1, hours=10)).timestamp()
    rows: list[Row] = [
        (t - 600, "pir", "motion", "living", 1),
        (t - 540, "pir", "motion", "living", 0),
    ]
    rows += [(t, "door", "door", "entrance", 1), (t + 20, "door", "door", "entrance", 0)]
    rows += [(t + 7200, "door", "door", "entrance", 1), (t + 7220, "door", "door", "entrance", 0)]
    ev = build_evidence(rows)
    n = len(ev.sensors)
    sil = find_silences(ev, np.full(n, 600.0), np.zeros(n, np.bool_), t + 20000)
    assert sil.out.tolist() == [False, True, False]  # at home, left, came back
    again = [(t + 7240, "door", "door", "entrance", 1), (t + 7250, "door", "door", "entrance", 0)]
    twice = [*rows, *again]
    sil = find_silences(build_evidence(twice), np.full(n, 600.0), np.zeros(n, np.bool_), t + 20000)
    assert sil.out.tolist() == [False, True, True]  # came and went again: still out


def _plug(times_h: list[float], name: str, on_w: float) -> list[Row]:
    """A plug switched on at each of `times_h` (hours after START) and off 20 minutes later."""
    rows: list[Row] = []
    for h in times_h:
        t = (START + timedelta(hours=h)).timestamp()
        rows += [(t, name, "power", "kitchen", on_w), (t + 1200, name, "power", "kitchen", 1.0)]
    return rows


def test_a_fridge_switches_by_itself_a_late_tv_does_not() -> None:
    """A compressor cycles every night hour; a TV watched past 01:00 on some nights is a person."""
    days = 14
    fridge = _plug([d * 24 + h / 2 for d in range(days) for h in range(48)], "fridge", 90.0)
    late = [d * 24 + h for d in range(days) for h in (8, 12, 20)] + [
        d * 24 + 25.5 for d in range(0, days, 3)
    ]
    tv = _plug(late + [d * 24 + 26.5 for d in range(0, days, 2)], "tv", 160.0)
    b = learn(
        build_evidence(list(HISTORY) + fridge + tv),
        (START + timedelta(days=days)).timestamp(),
        KST,
        LEARNING,
    )
    automatic = dict(zip(b.sensors, b.automatic, strict=True))
    assert automatic["fridge"] is True
    assert automatic["tv"] is False  # steps at night, but in few of the night's hours
