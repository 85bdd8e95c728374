"""One contract over the whole detector stack (the replay `anbu detect` runs).

Same input twice, strict causality, empty and one-event histories, duplicated and shuffled
readings, a clock jump, a home in another time zone; plus what the learned routine promises.
"""

from __future__ import annotations

import random
from datetime import datetime, timedelta, timezone

import pytest

from detectors.evidence import Row, build_evidence
from detectors.learning import LearningPolicy, learn
from detectors.replay import ReplayFinding, replay_home
from detectors.routine import RoutinePolicy

KST = timezone(timedelta(hours=9))
START = datetime(2026, 11, 2, 0, 0, tzinfo=KST)
LEARNING = LearningPolicy()
POLICY = RoutinePolicy()


def routine(days: int, tz: timezone = KST, seed: int = 3) -> list[Row]:
    """A resident up at 07:00, moving every ~20 min until 22:30, out 14-16 h, bed at night."""
    rng = random.Random(seed)
    rows: list[Row] = []
    start = START.replace(tzinfo=tz)
    for d in range(days):
        day = start + timedelta(days=d)
        t = day + timedelta(hours=7, minutes=rng.uniform(-20, 20))
        rows.append(((t - timedelta(minutes=1)).timestamp(), "bed", "contact", "bedroom", 0))
        while t < day + timedelta(hours=22, minutes=30):
            if day + timedelta(hours=14) <= t < day + timedelta(hours=16):
                rows.append((t.timestamp(), "door", "door", "entrance", 1))
                rows.append((t.timestamp() + 30, "door", "door", "entrance", 0))
                t = day + timedelta(hours=16, minutes=rng.uniform(0, 20))
                rows.append((t.timestamp(), "door", "door", "entrance", 1))
                rows.append((t.timestamp() + 30, "door", "door", "entrance", 0))
            rows.append((t.timestamp(), "pir", "motion", "living", 1))
            rows.append((t.timestamp() + 60, "pir", "motion", "living", 0))
            t += timedelta(minutes=rng.expovariate(1 / 20))
        rows.append((t.timestamp(), "bed", "contact", "bedroom", 1))
    return rows


def run(rows: list[Row], until: float, tz: timezone = KST) -> list[ReplayFinding]:
    return replay_home(build_evidence(rows), until, tz, LEARNING, POLICY)


def key(found: list[ReplayFinding]) -> list[tuple[float, str, int]]:
    return [(f.at, f.kind, int(f.severity)) for f in found]


HISTORY = routine(12)
# the resident stops at 11:00 on day 12
INCIDENT = [r for r in HISTORY if r[0] < (START + timedelta(days=11, hours=11)).timestamp()]
END = (START + timedelta(days=12, hours=12)).timestamp()


def test_same_input_twice_gives_the_same_findings() -> None:
    assert key(run(INCIDENT, END)) == key(run(list(INCIDENT), END))
    assert run(INCIDENT, END)


@pytest.mark.parametrize("cut_days", [3.5, 8.2, 11.3, 11.6])
def test_strictly_causal(cut_days: float) -> None:
    cut = (START + timedelta(days=cut_days)).timestamp()
    full = [k for k in key(run(INCIDENT, END)) if k[0] <= cut]
    assert key(run([r for r in INCIDENT if r[0] <= cut], cut)) == full


def test_empty_and_one_event_histories() -> None:
    assert run([], END) == []
    one = run([(START.timestamp(), "pir", "motion", "living", 1)], START.timestamp() + 40 * 3600)
    assert [f.severity.label for f in one] == ["watch", "warning", "critical"]
    assert "학습" in one[0].reason_ko and "fixed rule" in one[0].reason_en


def test_duplicated_and_out_of_order_readings_change_nothing() -> None:
    noisy = INCIDENT + INCIDENT[::7]
    random.Random(1).shuffle(noisy)
    assert key(run(noisy, END)) == key(run(INCIDENT, END))


def test_a_clock_jump_back_changes_nothing() -> None:
    """A gateway whose clock jumped: its late-delivered, older readings land in place."""
    jumped = INCIDENT[: len(INCIDENT) // 2 : 2] + INCIDENT[1 : len(INCIDENT) // 2 : 2]
    jumped += INCIDENT[len(INCIDENT) // 2 :]
    assert key(run(jumped, END)) == key(run(INCIDENT, END))


def test_a_home_in_another_time_zone_is_judged_by_its_own_hours() -> None:
    zurich = timezone(timedelta(hours=2))
    rows = routine(12, zurich)
    cut = (START.replace(tzinfo=zurich) + timedelta(days=11, hours=11)).timestamp()
    here = run(INCIDENT, END)
    there = run([r for r in rows if r[0] < cut], END + 7 * 3600, zurich)
    local = [(datetime.fromtimestamp(f.at, KST).time(), f.kind) for f in here]
    assert [(datetime.fromtimestamp(f.at, zurich).time(), f.kind) for f in there] == local


def test_learned_routine_catches_a_daytime_stop_within_hours_and_says_why() -> None:
    found = [f for f in run(INCIDENT, END) if f.at >= (START + timedelta(days=11)).timestamp()]
    assert found, "the stop at 11:00 must be found"
    first = found[0]
    delay_h = (first.at - (START + timedelta(days=11, hours=11)).timestamp()) / 3600
    assert delay_h < 4.0
    assert first.kind == "inactivity" and "평소 이 시간에는" in first.reason_ko


def test_an_outing_is_not_inactivity() -> None:
    """Days 0-11 as usual; on day 11 the resident goes out at 14:00 and stays out all night."""
    out_at = (START + timedelta(days=11, hours=14)).timestamp()
    rows = [r for r in HISTORY if r[0] < out_at]
    rows += [(out_at, "door", "door", "entrance", 1), (out_at + 30, "door", "door", "entrance", 0)]
    found = [f for f in run(rows, out_at + 48 * 3600) if f.at > out_at]
    assert found and {f.kind for f in found} == {"not_back"}
    assert (found[0].at - out_at) / 3600 >= POLICY.not_back_min_h


def test_coming_back_ends_the_outing() -> None:
    """Out at 14:00, back at 16:00 (the door once), then nothing: inactivity, not not_back."""
    out_at = (START + timedelta(days=11, hours=14)).timestamp()
    back = out_at + 2 * 3600
    rows = [r for r in HISTORY if r[0] < out_at]
    for t in (out_at, back):
        rows += [(t, "door", "door", "entrance", 1), (t + 30, "door", "door", "entrance", 0)]
    found = [f for f in run(rows, back + 30 * 3600) if f.at > back]
    assert found and found[0].kind == "inactivity"
    assert (found[0].at - back) / 3600 < POLICY.fixed.critical_hours


def test_not_up_in_the_morning_while_the_bed_mat_stays_pressed() -> None:
    """Bed at night as usual, then nothing: the morning check fires, judged by events only."""
    bed = max(r[0] for r in HISTORY if r[1] == "bed" and r[4] == 1 and r[0] < START.timestamp()
              + 11 * 86400)  # fmt: skip
    rows = [r for r in HISTORY if r[0] <= bed]
    found = [f for f in run(rows, bed + 30 * 3600) if f.at > bed]
    assert found and found[0].kind == "not_up"
    up_by = datetime.fromtimestamp(found[0].at, KST)
    assert 7 <= up_by.hour + up_by.minute / 60 <= 9.5  # the usual 07:00 ± 20 min, plus margin


def test_a_door_left_open_is_not_an_outing() -> None:
    out_at = (START + timedelta(days=11, hours=11)).timestamp()
    rows = [r for r in HISTORY if r[0] < out_at] + [(out_at, "door", "door", "entrance", 1)]
    found = [f for f in run(rows, END) if f.at > out_at]
    assert found and found[0].kind == "inactivity"


def test_grace_period_then_learned_baseline() -> None:
    ev = build_evidence(HISTORY)
    young = learn(ev, (START + timedelta(days=5)).timestamp(), KST, LEARNING)
    grown = learn(ev, (START + timedelta(days=10)).timestamp(), KST, LEARNING)
    assert young.grace and not grown.grace
    assert grown.watch_h[24] < POLICY.fixed.watch_hours  # at noon: quicker than the fixed rule
    assert grown.hold_s[grown.sensors.index("bed")] > grown.hold_s[grown.sensors.index("pir")]
    assert grown.to_json() == type(grown).from_json(grown.to_json()).to_json()
