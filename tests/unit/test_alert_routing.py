"""Alert routing and quiet hours: pure functions over data."""

from __future__ import annotations

import re
from datetime import UTC, datetime, time, timedelta
from importlib import resources
from zoneinfo import ZoneInfo

from hypothesis import given
from hypothesis import strategies as st

from alerts.routing import (
    CARE,
    ROUTES,
    TECHNICIAN,
    holds_for_quiet_hours,
    queue_of,
    quiet_hours_end,
    route_for,
)
from core.domain import Severity

SEOUL = ZoneInfo("Asia/Seoul")


def test_care_kinds_call_the_resident_and_device_kinds_never_do() -> None:
    for kind in ("inactivity", "not_up", "not_back", "unknown_status", "bathroom_long_stay"):
        assert route_for(kind).call_resident
    for kind in (
        "device_silent",
        "gateway_offline",
        "battery_low",
        "site_outage",
        "routine_change",
    ):
        assert not route_for(kind).call_resident


def test_not_up_and_not_back_are_gentle_check_in_calls() -> None:
    for kind, label in (
        ("not_up", "기상 확인"),
        ("not_back", "외출 후 미귀가 확인"),
        ("bathroom_long_stay", "욕실 장시간 머묾 확인"),
    ):
        route = route_for(kind)
        assert route.call_resident and not route.escalate_now and route.label_ko == label
    assert route_for("night_activity").label_ko == "야간 활동 검토"  # "n" kinds stay apart


def test_quiet_hours_wrapping_midnight() -> None:
    qs, qe = time(22, 0), time(7, 0)
    at_23 = datetime(2026, 11, 24, 23, 30, tzinfo=SEOUL).astimezone(UTC)
    assert quiet_hours_end(at_23, qs, qe, SEOUL) == datetime(2026, 11, 25, 7, 0, tzinfo=SEOUL)
    at_3 = datetime(2026, 11, 25, 3, 0, tzinfo=SEOUL).astimezone(UTC)
    assert quiet_hours_end(at_3, qs, qe, SEOUL) == datetime(2026, 11, 25, 7, 0, tzinfo=SEOUL)
    at_noon = datetime(2026, 11, 25, 12, 0, tzinfo=SEOUL)
    assert quiet_hours_end(at_noon, qs, qe, SEOUL) is None
    assert quiet_hours_end(at_3, None, qe, SEOUL) is None


def test_quiet_hours_within_a_day() -> None:
    at = datetime(2026, 11, 25, 13, 30, tzinfo=SEOUL)
    assert quiet_hours_end(at, time(13, 0), time(15, 0), SEOUL) == at.replace(hour=15, minute=0)
    assert quiet_hours_end(at.replace(hour=15), time(13, 0), time(15, 0), SEOUL) is None


@given(
    st.datetimes(min_value=datetime(2020, 1, 1), max_value=datetime(2030, 1, 1)),
    st.times(),
    st.times(),
)
def test_quiet_hours_end_is_ahead_and_outside(now: datetime, qs: time, qe: time) -> None:
    now = now.replace(tzinfo=UTC)
    qs, qe = qs.replace(second=0, microsecond=0), qe.replace(second=0, microsecond=0)
    end = quiet_hours_end(now, qs, qe, SEOUL)
    if end is None:
        return
    assert now < end <= now + timedelta(days=1)
    assert quiet_hours_end(end, qs, qe, SEOUL) is None


def test_only_critical_alerts_ring_through_quiet_hours() -> None:
    assert holds_for_quiet_hours(Severity.WATCH) and holds_for_quiet_hours(Severity.WARNING)
    assert not holds_for_quiet_hours(Severity.CRITICAL)


def test_the_technicians_kinds_are_those_migration_0077_moved() -> None:
    """Alerts opened before 0077 were put in the technician's queue by the same prefixes."""
    sql = resources.files("core.migrations").joinpath("0077_care_and_device_queues.sql")
    listed = re.search(r"LIKE ANY \(ARRAY\[([^\]]*)\]\)", sql.read_text(encoding="utf-8"))
    assert listed is not None
    moved = {p.strip().strip("'").rstrip("%") for p in listed.group(1).split(",")}
    assert moved == {prefix for prefix, route in ROUTES if route.queue == TECHNICIAN}
    assert route_for("device_tamper").queue == TECHNICIAN
    assert route_for("unknown_status").queue != TECHNICIAN  # the resident's: a check-in call


def test_a_safety_devices_fault_stays_in_the_care_queue() -> None:
    """A plug or a motion sensor offline is the technician's; an emergency button, smoke, gas,
    CO or water detector offline, silent or flat is the care manager's too (the resident's way
    to call for help may be broken); a detector's test press stays the technician's."""
    assert queue_of("device_offline", {"sensor_kind": "motion"}) == TECHNICIAN
    assert queue_of("battery_low", {"sensor_kind": "plug"}) == TECHNICIAN
    for kind in ("button", "smoke", "gas", "co", "water_leak"):
        assert queue_of("device_offline", {"sensor_kind": kind}) == CARE
        assert queue_of("battery_low", {"sensor_kind": kind}) == CARE
    assert queue_of("alarm_test", {"sensor_kind": "smoke"}) == TECHNICIAN
    assert queue_of("inactivity", {}) == CARE
