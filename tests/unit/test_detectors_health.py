"""Device health of one home: silent, offline and low-battery sensors, gateways down, unknown."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from anbu.domain import Severity
from detectors.health import (
    BATTERY_LOW,
    DEVICE_OFFLINE,
    DEVICE_SILENT,
    GATEWAY_OFFLINE,
    UNKNOWN_STATUS,
    GatewayHealth,
    HealthPolicy,
    HomeHealth,
    SensorHealth,
    assess_home,
    merge,
    silent_after_s,
)

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
POLICY = HealthPolicy()
GW_OK = GatewayHealth("gw1", True, NOW - timedelta(days=3), NOW - timedelta(minutes=1))


def _sensor(sid: int, kind: str, ago_h: float | None, **kw: object) -> SensorHealth:
    last = None if ago_h is None else NOW - timedelta(hours=ago_h)
    return SensorHealth(sid, "gw1", f"s{sid}", kind, "living", last, **kw)  # type: ignore[arg-type]


def _home(*sensors: SensorHealth, gw: GatewayHealth = GW_OK, status: str = "active",
          until: datetime | None = None) -> HomeHealth:  # fmt: skip
    return HomeHealth(1, "h1", status, until, (gw,), sensors)


def _kinds(home: HomeHealth, held: frozenset[str] = frozenset()) -> list[str]:
    issues, _ = assess_home(home, NOW, POLICY, held)
    return sorted(i.kind for i in issues)


def test_a_healthy_home_has_nothing_to_say() -> None:
    home = _home(_sensor(1, "motion", 0.5, battery=80.0, online=True), _sensor(2, "power", 0.1))
    assert _kinds(home) == []


def test_learned_cadence_beats_the_default_of_the_kind() -> None:
    plug = _sensor(1, "power", 30.0)  # default for plugs until learned: 24 h
    assert silent_after_s(plug, POLICY) == 24 * 3600
    learned = _sensor(1, "power", 3.0, max_gap_s=3 * 3600.0, readings=500)
    assert silent_after_s(learned, POLICY) == 4.5 * 3600
    few = _sensor(1, "power", 3.0, max_gap_s=3 * 3600.0, readings=3)  # too little history
    assert silent_after_s(few, POLICY) == 24 * 3600
    huge = _sensor(1, "motion", 3.0, max_gap_s=30 * 86400.0, readings=500)
    assert silent_after_s(huge, POLICY) == POLICY.max_silent_h * 3600
    motion = _sensor(2, "motion", 1.0)
    assert _kinds(_home(plug, motion)) == [DEVICE_SILENT]
    assert _kinds(_home(learned, motion)) == []


def test_battery_low_and_device_offline() -> None:
    home = _home(
        _sensor(1, "door", 1.0, battery=9.0), _sensor(2, "motion", 0.2, online=False),
        _sensor(3, "motion", 0.1, battery=15.0),
    )  # fmt: skip
    issues, _ = assess_home(home, NOW, POLICY)
    by_kind = {i.kind: i for i in issues}
    assert sorted(by_kind) == [BATTERY_LOW, DEVICE_OFFLINE]
    assert "9%" in by_kind[BATTERY_LOW].reason_ko
    assert by_kind[DEVICE_OFFLINE].severity is Severity.WARNING
    assert by_kind[BATTERY_LOW].subject == "sensor:1"


def test_every_sensor_silent_means_unknown_status() -> None:
    home = _home(_sensor(1, "motion", 30.0), _sensor(2, "door", 50.0))
    issues, _ = assess_home(home, NOW, POLICY)
    unknown = [i for i in issues if i.kind == UNKNOWN_STATUS]
    assert len(unknown) == 1
    assert unknown[0].since == NOW - timedelta(hours=30)  # the last data the home sent
    assert unknown[0].reason_ko.startswith("데이터가 없어 상태를 알 수 없습니다")
    assert _kinds(_home(_sensor(1, "motion", 30.0), _sensor(2, "door", 1.0))) == [DEVICE_SILENT]


def test_gateway_offline_after_grace_explains_its_sensors() -> None:
    down = GatewayHealth("gw1", False, NOW - timedelta(minutes=30), NOW - timedelta(minutes=30))
    home = _home(_sensor(1, "power", 5.0, online=False), gw=down)
    assert _kinds(home) == [GATEWAY_OFFLINE, UNKNOWN_STATUS]
    fresh = GatewayHealth("gw1", False, NOW - timedelta(minutes=2), NOW - timedelta(minutes=2))
    assert _kinds(_home(_sensor(1, "motion", 0.1), gw=fresh)) == []  # within the grace
    stale = GatewayHealth("gw1", None, None, NOW - timedelta(hours=30))  # died without a will
    assert GATEWAY_OFFLINE in _kinds(_home(_sensor(1, "motion", 30.0), gw=stale))


def test_site_incident_and_away_hold_findings_and_say_why() -> None:
    down = GatewayHealth("gw1", False, NOW - timedelta(minutes=30), NOW - timedelta(minutes=30))
    home = _home(_sensor(1, "motion", 1.0), gw=down)
    issues, held = assess_home(home, NOW, POLICY, frozenset({"gw1"}))
    assert issues == []
    assert sorted((h.issue.kind, h.why) for h in held) == [
        (GATEWAY_OFFLINE, "site_outage"), (UNKNOWN_STATUS, "site_outage"),
    ]  # fmt: skip
    away = _home(_sensor(1, "motion", 30.0), status="hospital", until=NOW + timedelta(days=2))
    issues, held = assess_home(away, NOW, POLICY)
    assert [i.kind for i in issues] == [DEVICE_SILENT]
    assert [(h.issue.kind, h.why) for h in held] == [(UNKNOWN_STATUS, "hospital")]


def test_never_heard_from_is_not_unknown_and_merge_lists_subjects() -> None:
    assert _kinds(_home(_sensor(1, "motion", None))) == []
    home = _home(_sensor(1, "door", 1.0, battery=5.0), _sensor(2, "motion", 1.0, battery=10.0))
    issues, _ = assess_home(home, NOW, POLICY)
    merged = merge(issues)
    assert merged.kind == BATTERY_LOW and "외 1건" in merged.reason_ko
    assert len(merged.details["items"]) == 2


def test_same_input_same_output() -> None:
    home = _home(_sensor(1, "motion", 30.0, battery=3.0), _sensor(2, "door", 50.0))
    assert assess_home(home, NOW, POLICY) == assess_home(home, NOW, POLICY)
