"""One contract over every detector (detectors.catalog), as scikit-learn's estimator checks.

Each detector, run as the live worker runs it, on a history where it raises something: same
input twice, strict causality, empty and one-event histories, duplicated and shuffled
readings, a clock jump, a home in another time zone. Then what the learned routine (the
replay `anbu detect` runs) promises.
"""

from __future__ import annotations

import functools
import random
from collections.abc import Sequence
from datetime import datetime, timedelta, timezone

import pytest

from core.domain import Severity
from detectors.catalog import DETECTORS, KINDS, SITE_WIDE, Found
from detectors.evidence import Row, build_evidence
from detectors.learning import LearningPolicy, learn
from detectors.replay import ReplayFinding, replay_home
from detectors.routine import RoutinePolicy

KST = timezone(timedelta(hours=9))
ZURICH = timezone(timedelta(hours=2))
START = datetime(2026, 11, 2, 0, 0, tzinfo=KST)
LEARNING = LearningPolicy()
POLICY = RoutinePolicy()
LABELS = {s.label for s in Severity}


def routine(
    days: int,
    tz: timezone = KST,
    seed: int = 3,
    *,
    wander_on: int | None = None,
    late: Sequence[int] = (),
    plug_days: float | None = None,
) -> list[Row]:
    """A resident up at 07:00, moving every ~20 min until 22:30, out 14-16 h, bed at night.

    Optionally: up wandering at 02:10-02:45 on day `wander_on`; on `late` days up at 11:00,
    no outing, moving about once an hour; a kitchen plug reporting every 15 min for
    `plug_days` days, then silent.
    """
    rng = random.Random(seed)
    rows: list[Row] = []
    start = START.replace(tzinfo=tz)
    for d in range(days):
        day = start + timedelta(days=d)
        changed = d in late
        t = day + timedelta(hours=11 if changed else 7, minutes=rng.uniform(-20, 20))
        rows.append(((t - timedelta(minutes=1)).timestamp(), "bed", "contact", "bedroom", 0))
        while t < day + timedelta(hours=22, minutes=30):
            if not changed and day + timedelta(hours=14) <= t < day + timedelta(hours=16):
                rows.append((t.timestamp(), "door", "door", "entrance", 1))
                rows.append((t.timestamp() + 30, "door", "door", "entrance", 0))
                t = day + timedelta(hours=16, minutes=rng.uniform(0, 20))
                rows.append((t.timestamp(), "door", "door", "entrance", 1))
                rows.append((t.timestamp() + 30, "door", "door", "entrance", 0))
            rows.append((t.timestamp(), "pir", "motion", "living", 1))
            rows.append((t.timestamp() + 60, "pir", "motion", "living", 0))
            t += timedelta(minutes=rng.expovariate(1 / (60 if changed else 20)))
        rows.append((t.timestamp(), "bed", "contact", "bedroom", 1))
        if d == wander_on:
            for k in range(8):
                w = (day + timedelta(hours=2, minutes=10 + 5 * k)).timestamp()
                rows += [(w, "pir", "motion", "living", 1), (w + 30, "pir", "motion", "living", 0)]
    if plug_days is not None:
        rows += [
            (start.timestamp() + k * 900.0, "plug", "power", "kitchen", 2.0)
            for k in range(int(plug_days * 96))
        ]
    return rows


def site(days: int, tz: timezone = KST) -> list[Row]:
    """Four homes' gateways whose plugs report every 3 min: gw1-gw3 lose power together from
    day 2 10:00 to day 3 16:00, gw4 alone from day 0 20:00 to day 1 23:00, gw2-gw4 from day 4
    04:00 on."""
    down = {"gw1": [(58, 88)], "gw2": [(58, 88), (100, 999)], "gw3": [(58, 88), (100, 999)],
            "gw4": [(20, 47), (100, 999)]}  # fmt: skip
    start = START.replace(tzinfo=tz).timestamp()
    rows: list[Row] = []
    for k, (gw, outages) in enumerate(down.items()):
        for n in range(days * 480):
            t = start + n * 180.0 + 17 * k
            if not any(a * 3600 <= t - start < b * 3600 for a, b in outages):
                rows.append((t, f"{gw}/plug", "power", "living", 40.0 + k))
    return rows


@functools.cache
def feed(name: str, tz: timezone = KST) -> tuple[tuple[Row, ...], float]:
    """The history a detector is checked on, and the moment it is run to."""
    start = START.replace(tzinfo=tz)
    if name in SITE_WIDE:
        return tuple(site(6, tz)), (start + timedelta(days=6)).timestamp()
    # wandering on day 9, up late on days 10-11, the plug silent from day 7 12:00,
    # the resident stops on day 12 at 11:00
    rows = routine(14, tz, wander_on=9, late=(10, 11), plug_days=7.5)
    stop = (start + timedelta(days=12, hours=11)).timestamp()
    return tuple(r for r in rows if r[0] < stop), (start + timedelta(days=13, hours=12)).timestamp()


@functools.cache
def found(name: str) -> list[Found]:
    rows, until = feed(name)
    return DETECTORS[name](rows, until, KST)


def run(rows: list[Row], until: float, tz: timezone = KST) -> list[ReplayFinding]:
    return replay_home(build_evidence(rows), until, tz, LEARNING, POLICY)


HISTORY = routine(12)
# the resident stops at 11:00 on day 12
INCIDENT = [r for r in HISTORY if r[0] < (START + timedelta(days=11, hours=11)).timestamp()]
END = (START + timedelta(days=12, hours=12)).timestamp()

every_detector = pytest.mark.parametrize("name", sorted(DETECTORS))


@every_detector
def test_each_detector_raises_its_own_kinds_on_its_history(name: str) -> None:
    rows, until = feed(name)
    got = found(name)
    assert got, f"{name} must raise something, or the contract below proves nothing"
    assert {kind for _, kind, _ in got} <= KINDS[name]
    assert {label for _, _, label in got} <= LABELS
    assert [f[0] for f in got] == sorted(f[0] for f in got)
    assert min(r[0] for r in rows) < got[0][0] and got[-1][0] <= until


@every_detector
def test_same_input_twice_gives_the_same_findings(name: str) -> None:
    rows, until = feed(name)
    assert DETECTORS[name](list(rows), until, KST) == DETECTORS[name](list(rows), until, KST)
    assert DETECTORS[name](list(rows), until, KST) == found(name)


@every_detector
def test_strictly_causal(name: str) -> None:
    """Cut the stream at T (at each finding, just before it, and a few moments between):
    the findings up to T are unchanged, and rows after `until` are never read."""
    rows, until = feed(name)
    detect, full = DETECTORS[name], found(name)
    first = min(r[0] for r in rows)
    cuts = {at + d for at, _, _ in full for d in (-1.0, 0.0)}
    cuts |= {first + (until - first) * q for q in (0.3, 0.55, 0.8)}
    for cut in sorted(cuts):
        expected = [f for f in full if f[0] <= cut]
        assert detect([r for r in rows if r[0] <= cut], cut, KST) == expected, cut
        assert detect(rows, cut, KST) == expected, cut


@every_detector
def test_empty_and_one_event_histories(name: str) -> None:
    detect = DETECTORS[name]
    assert detect([], END, KST) == []
    t = START.timestamp()
    for sensor in ("pir", "gw1/pir"):
        one = detect([(t, sensor, "motion", "living", 1)], t + 40 * 3600, KST)
        # 40 h after one motion: the home is silent and the sensor too; the others see nothing
        assert bool(one) is (name in ("inactivity", "device_health")), (name, one)
        assert all(t < at <= t + 40 * 3600 and kind in KINDS[name] for at, kind, _ in one)
        assert detect([(t, sensor, "motion", "living", 1)], t + 40 * 3600, KST) == one


def test_one_event_home_is_judged_by_the_fixed_rule() -> None:
    assert run([], END) == []
    one = run([(START.timestamp(), "pir", "motion", "living", 1)], START.timestamp() + 40 * 3600)
    assert [f.severity.label for f in one] == ["watch", "warning", "critical"]
    assert "학습" in one[0].reason_ko and "fixed rule" in one[0].reason_en


@every_detector
def test_duplicated_and_out_of_order_readings_change_nothing(name: str) -> None:
    rows, until = feed(name)
    noisy = list(rows) + list(rows[::7])
    random.Random(1).shuffle(noisy)
    assert DETECTORS[name](noisy, until, KST) == found(name)


@every_detector
def test_a_clock_jump_back_changes_nothing(name: str) -> None:
    """A gateway whose clock jumped: its late-delivered, older readings land in place."""
    rows, until = feed(name)
    half = len(rows) // 2
    jumped = [*rows[:half:2], *rows[1:half:2], *rows[half:]]
    assert DETECTORS[name](jumped, until, KST) == found(name)


@every_detector
def test_a_home_in_another_time_zone_is_judged_by_its_own_hours(name: str) -> None:
    """The same local routine in UTC+2: the same findings at the same local times."""
    rows, until = feed(name, ZURICH)
    assert _local(DETECTORS[name](rows, until, ZURICH), ZURICH) == _local(found(name), KST)


def _local(found: list[Found], tz: timezone) -> list[tuple[datetime, str, str]]:
    return [(datetime.fromtimestamp(at, tz).replace(tzinfo=None), k, s) for at, k, s in found]


@pytest.mark.parametrize("name", sorted(DETECTORS))
def test_readings_sharing_a_second_in_any_order_change_nothing(name: str) -> None:
    """The database orders readings by time only: same-second readings come in any order.
    The resident comes in at 10:50 (the door closes as the living room PIR fires), then stops."""
    rows, until = feed(name)
    s = (START + timedelta(days=12, hours=10, minutes=50)).timestamp()
    tie = [(s, "door", "door", "entrance", 1), (s + 30, "door", "door", "entrance", 0),
           (s + 30, "pir", "motion", "living", 1), (s + 90, "pir", "motion", "living", 0)]  # fmt: skip
    detect = DETECTORS[name]
    assert detect([*rows, *tie], until, KST) == detect([*rows, *tie[::-1]], until, KST)


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
