"""The pure fixed-rule inactivity scorer: thresholds, edges, reasons, vectorised == per home."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.config import Settings
from core.domain import Severity
from detectors.inactivity import (
    NO_SEVERITY,
    InactivityPolicy,
    score_inactivity,
    severity_levels,
    to_finding,
)

POLICY = InactivityPolicy()
LAST = datetime(2026, 11, 24, 12, 10, tzinfo=UTC)  # 21:10 in Seoul


@pytest.mark.parametrize(
    ("hours", "expected"),
    [
        (0, None),
        (6 - 1 / 3600, None),
        (6, Severity.WATCH),
        (11.99, Severity.WATCH),
        (12, Severity.WARNING),
        (24 - 1 / 3600, Severity.WARNING),
        (24, Severity.CRITICAL),
        (24 * 30, Severity.CRITICAL),
    ],
)
def test_severity_at_and_around_each_threshold(hours: float, expected: Severity | None) -> None:
    score = score_inactivity(LAST, LAST + timedelta(hours=hours), POLICY)
    assert score is not None
    assert score.severity is expected
    assert score.silence == timedelta(hours=hours)


def test_no_activity_on_record_scores_nothing() -> None:
    assert score_inactivity(None, LAST, POLICY) is None
    levels = severity_levels(np.array([np.nan]), LAST.timestamp(), POLICY)
    assert levels.tolist() == [NO_SEVERITY]


def test_clock_before_last_activity_is_no_silence() -> None:
    score = score_inactivity(LAST, LAST - timedelta(hours=30), POLICY)
    assert score is not None
    assert score.silence == timedelta(0)
    assert score.severity is None


def test_naive_datetimes_are_refused() -> None:
    with pytest.raises(ValueError, match="aware"):
        score_inactivity(LAST.replace(tzinfo=None), LAST, POLICY)


def test_reason_is_korean_first_in_seoul_time() -> None:
    score = score_inactivity(LAST, LAST + timedelta(hours=13, minutes=20), POLICY)
    assert score is not None
    # 12:10 UTC is 21:10 in Seoul on 11-24; 13 h 20 min later it is 11-25 there.
    assert score.reason_ko == "13.3시간째 움직임이 없습니다 (마지막 활동 11-24 21:10)"
    assert score.reason_en == "No activity for 13.3 h (last 11-24 21:10)"
    same_day = score_inactivity(LAST - timedelta(hours=8), LAST, POLICY)
    assert same_day is not None
    assert same_day.reason_ko == "8시간째 움직임이 없습니다 (마지막 활동 13:10)"


def test_thresholds_are_data() -> None:
    strict = InactivityPolicy(watch_hours=1, warning_hours=2, critical_hours=3)
    score = score_inactivity(LAST, LAST + timedelta(hours=2.5), strict)
    assert score is not None and score.severity is Severity.WARNING
    with pytest.raises(ValueError, match="rise"):
        InactivityPolicy(watch_hours=12, warning_hours=6, critical_hours=24)


def test_policy_from_settings() -> None:
    policy = InactivityPolicy.from_settings(
        Settings(inactivity_watch_hours=3, inactivity_warning_hours=9, inactivity_critical_hours=20)
    )
    assert [s for s, _ in policy.thresholds] == [
        Severity.WATCH,
        Severity.WARNING,
        Severity.CRITICAL,
    ]
    assert [h for _, h in policy.thresholds] == [3 * 3600.0, 9 * 3600.0, 20 * 3600.0]


def test_finding_carries_the_score() -> None:
    now = LAST + timedelta(hours=12)
    score = score_inactivity(LAST, now, POLICY)
    assert score is not None
    finding = to_finding("h1", score)
    assert (finding.home, finding.kind, finding.severity, finding.raised_at) == (
        "h1",
        "inactivity",
        Severity.WARNING,
        now,
    )
    assert finding.details["silence_s"] == 12 * 3600
    quiet = score_inactivity(LAST, LAST + timedelta(hours=1), POLICY)
    assert quiet is not None
    with pytest.raises(ValueError, match="below the watch threshold"):
        to_finding("h1", quiet)


@settings(max_examples=200, deadline=None)
@given(
    silences=st.lists(
        st.one_of(
            st.none(),
            st.integers(min_value=-40 * 3600, max_value=40 * 3600),
            st.sampled_from([6 * 3600, 12 * 3600, 24 * 3600, 6 * 3600 - 1, 24 * 3600 - 1]),
        ),
        max_size=50,
    ),
    watch=st.integers(min_value=1, max_value=10),
)
def test_vectorised_agrees_with_per_home(silences: list[int | None], watch: int) -> None:
    policy = InactivityPolicy(watch_hours=watch, warning_hours=2 * watch, critical_hours=4 * watch)
    now = LAST
    lasts = [None if s is None else now - timedelta(seconds=s) for s in silences]
    epochs = np.array([np.nan if t is None else t.timestamp() for t in lasts], dtype=np.float64)
    vector = severity_levels(epochs, now.timestamp(), policy).tolist()
    loop = []
    for t in lasts:
        score = score_inactivity(t, now, policy)
        loop.append(
            NO_SEVERITY if score is None or score.severity is None else score.severity.value
        )
    assert vector == loop


def test_vectorised_per_home_clocks() -> None:
    rng = np.random.default_rng(5)
    base = LAST.timestamp()
    last = base + rng.integers(-3 * 86400, 0, size=500).astype(np.float64)
    now = base + rng.integers(-86400, 86400, size=500).astype(np.float64)
    vector = severity_levels(last, now, POLICY).tolist()
    loop = []
    for a, b in zip(last.tolist(), now.tolist(), strict=True):
        score = score_inactivity(
            datetime.fromtimestamp(a, UTC), datetime.fromtimestamp(b, UTC), POLICY
        )
        assert score is not None
        loop.append(NO_SEVERITY if score.severity is None else score.severity.value)
    assert vector == loop
    assert set(vector) == {0, 1, 2, 3}  # the random data reaches every level
