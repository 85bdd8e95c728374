"""What the learned routine promises: holds, the record factor, the morning check, outings."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta

import numpy as np

from core.domain import Severity
from detectors.evidence import Row, build_evidence
from detectors.learning import LearningPolicy, _pool, learn, sees_leaving
from detectors.replay import replay_home
from detectors.routine import RoutinePolicy, with_coverage
from detectors.silences import find_silences
from tests.unit.test_detectors_contract import HISTORY, KST, POLICY, START, routine, run

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


def _without(rows: list[Row], lo: float, hi: float) -> list[Row]:
    return [r for r in rows if not lo <= r[0] < hi]


def test_a_silence_the_ceiling_flags_anyway_does_not_widen_the_routine() -> None:
    """A day and a half without a sign at home (an absence nobody saw) is the ceiling's business:
    the levels stay those of the home's ordinary days, not 1.2-3 times the absence."""
    rows = routine(21)
    at = (START + timedelta(days=21)).timestamp()
    ordinary = learn(build_evidence(rows), at, KST, LEARNING)
    gone = (START + timedelta(days=9, hours=10)).timestamp()
    absent = _without(rows, gone, gone + 30 * 3600)  # 30 h at home with nothing at all
    left_out = learn(build_evidence(absent), at, KST, LEARNING)
    assert left_out.watch_h == ordinary.watch_h
    kept = learn(build_evidence(absent), at, KST, replace(LEARNING, routine_max_h=48.0))
    assert np.nanmax(kept.watch_h) > 30.0  # the old rule: the absence became the routine


def test_a_home_that_sees_its_resident_leave_needs_a_record_broken_twice() -> None:
    """Watch is the longest similar silence times the home's record factor; a home with an
    entrance door takes the second furthest record break, a home without one the furthest."""
    rng = np.random.default_rng(4)
    days = np.repeat(np.arange(20), 10)
    starts = rng.uniform(8, 20, days.size) * 3600
    values = rng.uniform(0.1, 1.0, days.size)
    values[5] *= 4.0  # once, four times anything else
    *_, furthest = _pool(starts, days, values, LEARNING, rank=1)
    *_, second = _pool(starts, days, values, LEARNING, rank=2)
    assert second < furthest
    rows = routine(14)
    assert sees_leaving(build_evidence(rows))
    assert not sees_leaving(build_evidence([r for r in rows if r[2] != "door"]))


def test_out_and_not_back_is_judged_by_the_home_own_outings_and_by_48_h_at_latest() -> None:
    policy = RoutinePolicy()
    assert policy.not_back_hours(float("nan")) == policy.not_back_min_h == 12.0
    assert policy.not_back_hours(2.0) == 12.0  # a resident out 2 h at most: asked after 12 h
    assert policy.not_back_hours(10.0) == 15.0
    assert policy.not_back_hours(47.9) == 48.0  # weekends away: never later than 48 h


def _fridge(days: int) -> list[Row]:
    """A compressor stepping between 5 W and 90 W every half hour, day and night."""
    return _plug([d * 24 + h / 2 for d in range(days) for h in range(48)], "fridge", 90.0)


def test_a_new_home_fridge_is_no_one_so_the_fixed_rule_still_fires() -> None:
    """Day 5 of a new home (still in grace): the resident stops at 11:00, the fridge goes on.
    The fridge was found switching by itself from the first nights, so the fixed rule's 6 h
    watch is reached; counted as the resident, it kept the home "active" for ever."""
    stop = (START + timedelta(days=4, hours=11)).timestamp()
    rows = [r for r in routine(5) if r[0] < stop] + _fridge(7)
    end = stop + 30 * 3600
    found = run(rows, end)
    assert found and found[0].kind == "inactivity"
    assert (found[0].at - stop) / 3600 <= POLICY.fixed.watch_hours  # 6 h after the last doing
    assert "학습" in found[0].reason_ko  # the fixed rule, and it says so
    blind = replace(LEARNING, automatic_min_days=LEARNING.grace_days)  # the old rule
    assert not [
        f for f in replay_home(build_evidence(rows), end, KST, blind, POLICY) if f.at > stop
    ]


def test_a_gateway_often_down_keeps_its_fridge_a_fridge() -> None:
    """Two days in three without any data: the fridge test counts the days the home reported."""
    day = START.timestamp()
    rows = [r for r in list(HISTORY) + _fridge(12) if int((r[0] - day) // 86400) % 3 == 0]
    b = learn(build_evidence(rows), (START + timedelta(days=12)).timestamp(), KST, LEARNING)
    assert dict(zip(b.sensors, b.automatic, strict=True))["fridge"] is True


def test_a_routine_learned_mid_silence_raises_its_highest_level_with_the_real_silence() -> None:
    """The resident stops at 17:00 on the last day of grace; the routine learned at 03:00 finds
    the silence past all three of its levels. As the live sweep does, only the highest is raised
    then, and its reason says the 10 h of silence, not the level's few hours."""
    stop = (START + timedelta(days=7, hours=17)).timestamp()
    rows = [r for r in routine(9) if r[0] < stop]
    learned = [f for f in run(rows, stop + 30 * 3600) if "학습" not in f.reason_ko]
    assert len(learned) == 1
    f = learned[0]
    assert f.severity == Severity.CRITICAL
    assert datetime.fromtimestamp(f.at, KST).hour == 3  # when the routine came in
    assert f"{int((f.at - f.since) // 360) / 10:g}시간째" in f.reason_ko
    assert f"none for {int((f.at - f.since) // 360) / 10:g} h" in f.reason_en


def test_learning_says_what_the_sensors_cannot_see() -> None:
    """Plugs only, no motion sensor, motion in one room (with or without the door), or rooms
    enough to say nothing; a fridge (a plug that switches by itself) is no one's, and says
    nothing of what the sensors see."""
    rows = routine(10, plug_days=10)
    at = rows[-1][0] + 3600

    def sees(keep: tuple[str, ...], more: list[Row] | None = None) -> str:
        kept = [r for r in rows if r[1] in keep] + (more or [])
        return learn(build_evidence(kept), at, KST, LearningPolicy()).sees

    fridge = [(rows[0][0] + k * 1800.0, "fridge", "power", "kitchen", 90.0 if k % 2 else 2.0)
              for k in range(10 * 48)]  # fmt: skip
    kettle = [(rows[0][0] + d * 86400.0 + m * 60.0, "kettle", "power", "kitchen", w)
              for d in range(10) for m, w in ((0, 0.0), (30, 2000.0), (34, 0.0))]  # fmt: skip
    assert sees((), kettle + fridge) == "plugs"
    assert sees(("door", "bed")) == "no_motion"
    assert sees(("pir", "door"), fridge) == "one_room:living"
    assert sees(("pir",)) == "one_room:living"
    assert sees(("pir", "door", "bed")) == ""
    assert sees(("pir",), kettle) == ""  # a plug a person uses sees the kitchen too


def test_a_finding_says_what_the_sensors_cannot_see_in_korean_and_english() -> None:
    rows = [r for r in routine(12) if r[1] == "pir"]
    found = replay_home(
        build_evidence(rows), rows[-1][0] + 30 * 3600, KST, LearningPolicy(), RoutinePolicy()
    )
    inactivity = [f for f in found if f.kind == "inactivity"]
    others = [f for f in found if f.kind != "inactivity"]
    assert inactivity and all(
        f.reason_ko.endswith("동작 센서가 거실에만 있어 대상자가 다른 곳에 있는 동안은 알 수 "
                             "없습니다. 안부전화로 먼저 확인합니다")
        and "움직임이 없습니다" in f.reason_ko
        and f.reason_en.endswith("time elsewhere cannot be seen, so a check-in call comes first")
        for f in inactivity
        if f.at > rows[0][0] + 3 * 86400  # once learning has seen its third day
    )  # fmt: skip
    assert all("알 수 없습니다" not in f.reason_ko for f in others)  # "not up" says its own


def test_a_home_without_motion_sensors_says_what_it_had_none_of() -> None:
    ko, en = with_coverage(
        "평소 이 시간에는 6분 안에 움직임이 있는데 2시간째 움직임이 없습니다",
        "none for 2 h",
        "plugs",
    )
    assert ko.startswith(
        "평소 이 시간에는 6분 안에 전기 사용이 있는데 2시간째 전기 사용이 없습니다. "
    )
    assert ko.endswith("전력 플러그만 있는 가구라 전기를 쓰지 않는 동안(수면·외출 등)은 알 수 없습니다. "
                       "안부전화로 먼저 확인합니다")  # fmt: skip
    assert (
        en == "none for 2 h. Power plugs only: time without electricity use (sleep, going "
        "out) cannot be seen, so a check-in call comes first"
    )
    ko, _ = with_coverage("6시간째 움직임이 없습니다", "", "no_motion")
    assert ko.startswith("6시간째 활동 신호가 없습니다. 동작 센서가 없어 문·수납장·가전을")
    assert with_coverage("6시간째 움직임이 없습니다", "x", "") == ("6시간째 움직임이 없습니다", "x")
