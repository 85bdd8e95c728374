"""The live sweep's routine checks agree with the replay `anbu detect` runs: same rule, same moment."""

from __future__ import annotations

from datetime import datetime, timedelta

from detectors.evidence import Row, build_evidence
from detectors.learning import SLOT_S, Baseline, learn
from detectors.replay import learning_moments
from detectors.routine import RoutinePolicy
from detectors.routine_live import due_not_back, due_not_up, last_local, morning_bound
from tests.unit.test_detectors_contract import HISTORY, KST, LEARNING, POLICY, START, run


def _baseline_before(rows: list[Row], at: float) -> Baseline:
    """The baseline the nightly job had left at `at` (learned at the last 03:00 before it)."""
    moment = max(m for m in learning_moments(rows[0][0], at, KST) if m <= at)
    return learn(build_evidence([r for r in rows if r[0] < moment]), moment, KST, LEARNING)


def _baseline_of_night(rows: list[Row], at: float) -> Baseline:
    """The baseline the replay judges a morning by: the one learned before the night's anchor
    (an anchor before 03:00 falls in the previous learning epoch; live, the newer one)."""
    baseline = _baseline_before(rows, at)
    if last_local(at, KST, baseline.anchor_slot * SLOT_S) < baseline.learned_at:
        return _baseline_before(rows, baseline.learned_at - 1)
    return baseline


def test_not_back_is_due_when_the_replay_raises_it() -> None:
    out_at = (START + timedelta(days=11, hours=14)).timestamp()
    rows = [r for r in HISTORY if r[0] < out_at]
    rows += [(out_at, "door", "door", "entrance", 1), (out_at + 30, "door", "door", "entrance", 0)]
    replayed = [f for f in run(rows, out_at + 60 * 3600) if f.at > out_at]
    assert [f.kind for f in replayed] == ["not_back", "not_back"]
    start = out_at + 30  # the door closed behind the resident
    for f in replayed:
        baseline = _baseline_before(rows, f.at)
        assert due_not_back(baseline, start, f.at - 1, POLICY) != due_not_back(
            baseline, start, f.at, POLICY
        )
        due = due_not_back(baseline, start, f.at, POLICY)
        assert due is not None and due.since == start
        assert (due.crossing.kind, due.crossing.severity) == (f.kind, f.severity)
        assert (due.crossing.reason_ko, due.crossing.reason_en) == (f.reason_ko, f.reason_en)


def test_not_back_without_a_learned_routine_waits_for_the_floor_and_says_so() -> None:
    start = START.timestamp()
    floor = start + POLICY.not_back_min_h * 3600
    assert due_not_back(None, start, floor - 1, POLICY) is None
    due = due_not_back(None, start, floor, POLICY)
    assert due is not None and due.crossing.rule == "fixed"
    assert "학습 중" in due.crossing.reason_ko and "fixed rule" in due.crossing.reason_en
    later = due_not_back(None, start, floor + 12 * 3600, POLICY)
    assert later is not None and later.crossing.severity.label == "warning"


def test_not_up_is_due_when_the_replay_raises_it_once_per_night() -> None:
    bed = max(r[0] for r in HISTORY if r[1] == "bed" and r[4] == 1 and r[0] < START.timestamp()
              + 11 * 86400)  # fmt: skip
    rows = [r for r in HISTORY if r[0] <= bed]
    replayed = [f for f in run(rows, bed + 30 * 3600) if f.at > bed and f.kind == "not_up"]
    assert replayed
    f = replayed[0]
    baseline = _baseline_of_night(rows, f.at)
    last = max(r[0] for r in rows)  # the bed mat pressed: the last event, then nothing
    assert due_not_up(baseline, last, f.at - 1, KST, POLICY) is None
    due = due_not_up(baseline, last, f.at, KST, POLICY)
    assert due is not None and f.at - 1 < due.crossing.at <= f.at  # the replay rounds up
    assert (due.crossing.reason_ko, due.crossing.severity) == (f.reason_ko, f.severity)
    # the same night all morning long (the sweep's key), and nothing once the resident stirred
    later = due_not_up(baseline, last, f.at + 4 * 3600, KST, POLICY)
    assert later is not None and later.since == due.since
    assert due_not_up(baseline, due.since + 60, f.at + 3600, KST, POLICY) is None


def test_no_morning_check_without_a_learned_wake_time() -> None:
    young = Baseline(learned_at=START.timestamp(), history_days=3, grace=True)
    night = Baseline(learned_at=START.timestamp(), history_days=30, grace=False, wake_h=15.5)
    noon = (START + timedelta(hours=12)).timestamp()
    assert due_not_up(None, START.timestamp() - 3600, noon, KST, POLICY) is None
    assert due_not_up(young, START.timestamp() - 3600, noon, KST, POLICY) is None
    assert due_not_up(night, START.timestamp() - 3600, noon, KST, POLICY) is None  # no morning


def test_last_local_and_the_morning_bound() -> None:
    t = datetime(2026, 11, 3, 2, 0, tzinfo=KST).timestamp()
    assert last_local(t, KST, 3 * 3600) == datetime(2026, 11, 2, 3, 0, tzinfo=KST).timestamp()
    assert last_local(t, KST, 2 * 3600) == t
    policy = RoutinePolicy()
    assert morning_bound(t, KST, policy) is None  # before any wake time: no check is due
    at_six = datetime(2026, 11, 3, 6, 0, tzinfo=KST).timestamp()
    assert morning_bound(at_six, KST, policy) == at_six
    at_ten = datetime(2026, 11, 3, 10, 0, tzinfo=KST).timestamp()
    assert morning_bound(at_ten, KST, policy) == datetime(2026, 11, 3, 7, tzinfo=KST).timestamp()
