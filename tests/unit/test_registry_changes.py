"""The rules for what a care manager may change on a resident, and their words (pure)."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta, timezone

import pytest

from dashboards.api import local_moment
from dashboards.i18n import TEXTS, change_error
from dashboards.routes import parse_local_input
from registry import (
    CAP_MAX_H,
    STATUS_MAX_DAYS,
    InvalidChange,
    check_level_caps,
    check_quiet_hours,
    check_status,
)

NOW = datetime(2026, 11, 22, 0, 30, tzinfo=UTC)
SEOUL = timezone(timedelta(hours=9))


def _code(call: object, *args: object) -> str:
    assert callable(call)
    with pytest.raises(InvalidChange, match=r"\S") as caught:  # a message, and a code below
        call(*args)
    return caught.value.code


def test_active_has_no_end_date() -> None:
    assert check_status("active", None, NOW) is None
    assert _code(check_status, "active", NOW + timedelta(days=1), NOW) == "until_with_active"


@pytest.mark.parametrize("status", ["away", "hospital"])
def test_away_and_hospital_need_a_future_end_within_the_limit(status: str) -> None:
    later = datetime(2026, 11, 25, 18, 0, tzinfo=SEOUL)
    stored = check_status(status, later, NOW)
    assert stored == later and stored is not None and stored.tzinfo == UTC
    limit = NOW + timedelta(days=STATUS_MAX_DAYS)
    assert check_status(status, limit, NOW) == limit
    assert _code(check_status, status, None, NOW) == "until_required"
    assert _code(check_status, status, NOW, NOW) == "until_past"
    assert _code(check_status, status, NOW - timedelta(hours=1), NOW) == "until_past"
    assert _code(check_status, status, limit + timedelta(seconds=1), NOW) == "until_too_far"
    assert _code(check_status, status, datetime(2026, 11, 25, 18), NOW) == "until_naive"


@pytest.mark.parametrize("status", ["ended", "AWAY", "", "vacation"])
def test_only_active_away_and_hospital_may_be_set(status: str) -> None:
    assert _code(check_status, status, NOW + timedelta(days=1), NOW) == "bad_status"


def test_quiet_hours_both_or_neither_may_wrap_midnight_and_are_bounded() -> None:
    assert check_quiet_hours(None, None) == (None, None)
    assert check_quiet_hours(time(22, 0), time(7, 0)) == (time(22, 0), time(7, 0))
    assert check_quiet_hours(time(13, 0), time(14, 30)) == (time(13, 0), time(14, 30))
    assert check_quiet_hours(time(20, 0), time(8, 0)) == (time(20, 0), time(8, 0))  # 12 h
    assert check_quiet_hours(time(22, 0, 59), time(7, 0, 1)) == (time(22, 0), time(7, 0))
    assert _code(check_quiet_hours, time(22, 0), None) == "quiet_pair"
    assert _code(check_quiet_hours, None, time(7, 0)) == "quiet_pair"
    assert _code(check_quiet_hours, time(22, 0), time(22, 0)) == "quiet_empty"
    assert _code(check_quiet_hours, time(20, 0), time(8, 1)) == "quiet_too_long"
    assert _code(check_quiet_hours, time(8, 0), time(7, 0)) == "quiet_too_long"
    aware = time(22, 0, tzinfo=SEOUL)
    assert _code(check_quiet_hours, aware, time(7, 0)) == "quiet_local"


def test_caps_rise_lie_within_the_ceiling_and_none_clears() -> None:
    assert check_level_caps(None, None, None) == (None, None, None)
    assert check_level_caps(4, 8, 12) == (4.0, 8.0, 12.0)
    assert check_level_caps(6, 6, CAP_MAX_H) == (6.0, 6.0, 24.0)  # equal is allowed, as in SQL
    assert check_level_caps(None, None, 7.254) == (None, None, 7.25)
    assert check_level_caps(3, None, 9) == (3.0, None, 9.0)
    assert _code(check_level_caps, 8, 6, 20) == "caps_not_rising"
    assert _code(check_level_caps, 10, None, 8) == "caps_not_rising"  # rising across a gap
    assert _code(check_level_caps, None, 13, 12) == "caps_not_rising"
    for bad in (0.0, -1.0, 0.5, 24.01, 48.0, float("nan"), float("inf")):
        assert _code(check_level_caps, bad, None, None) == "cap_range", bad
        assert _code(check_level_caps, None, None, bad) == "cap_range", bad


def test_every_refusal_has_korean_and_english_words() -> None:
    later = NOW + timedelta(days=1)
    codes = {
        _code(check_status, "ended", later, NOW),
        _code(check_status, "active", later, NOW),
        _code(check_status, "away", None, NOW),
        _code(check_status, "away", later.replace(tzinfo=None), NOW),
        _code(check_status, "away", NOW, NOW),
        _code(check_status, "away", NOW + timedelta(days=365), NOW),
        _code(check_quiet_hours, time(1, 0), None),
        _code(check_quiet_hours, time(1, 0, tzinfo=UTC), time(2, 0)),
        _code(check_quiet_hours, time(1, 0), time(1, 0)),
        _code(check_quiet_hours, time(1, 0), time(23, 0)),
        _code(check_level_caps, 0, None, None),
        _code(check_level_caps, 9, 8, None),
        _code(parse_local_input, "next week", "Asia/Seoul"),
    }
    assert len(codes) == 13
    for code in [*codes, "resident_ended"]:
        assert f"invalid_{code}" in TEXTS, code
    error = InvalidChange("until_required", "away needs an end date")
    assert change_error("ko", error) == "부재·입원은 종료 예정 시각이 필요합니다."
    assert change_error("en", error) == "Away and hospital need an end date."
    assert change_error("ko", InvalidChange("new_rule", "a rule without words")) == (
        "a rule without words"
    )


def test_end_dates_without_an_offset_are_local_time() -> None:
    local = parse_local_input("2026-11-25T18:00", "Asia/Seoul")
    assert local == datetime(2026, 11, 25, 9, 0, tzinfo=UTC)
    assert parse_local_input("  ", "Asia/Seoul") is None
    assert parse_local_input("2026-11-25T18:00+00:00", "Asia/Seoul") == datetime(
        2026, 11, 25, 18, 0, tzinfo=UTC
    )
    assert local_moment(None, "Asia/Seoul") is None
    assert local_moment(datetime(2026, 11, 25, 18), "Asia/Seoul") == local
    aware = datetime(2026, 11, 25, 18, tzinfo=UTC)
    assert local_moment(aware, "Asia/Seoul") is aware
