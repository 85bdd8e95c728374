"""Device health of one home: silent, offline and low-battery sensors, gateways down, unknown."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from itertools import pairwise

from core.domain import Severity
from detectors.health import (
    BATTERY_LOW,
    DEVICE_OFFLINE,
    DEVICE_SILENT,
    GATEWAY_CLOCK,
    GATEWAY_OFFLINE,
    UNKNOWN_STATUS,
    GatewayHealth,
    HealthPolicy,
    HomeHealth,
    SensorHealth,
    assess_home,
    device_silent_after_s,
    learn_cadence,
    merge,
    sensor_name,
    silent_after_s,
)

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
POLICY = HealthPolicy()
GW_OK = GatewayHealth("gw1", True, NOW - timedelta(days=3), NOW - timedelta(minutes=1))


def _sensor(
    sid: int, kind: str, ago_h: float | None, room: str = "living", **kw: object
) -> SensorHealth:
    last = None if ago_h is None else NOW - timedelta(hours=ago_h)
    return SensorHealth(sid, "gw1", f"s{sid}", kind, room, last, **kw)  # type: ignore[arg-type]


def _learned(
    sid: int, kind: str, ago_h: float, max_gap_h: float, room: str = "living"
) -> SensorHealth:
    """A sensor whose cadence was learned from weeks of readings."""
    return _sensor(sid, kind, ago_h, room, max_gap_s=max_gap_h * 3600, readings=500)


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
    assert _kinds(_home(_sensor(1, "power", 30.0), _sensor(2, "door", 1.0))) == [DEVICE_SILENT]


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
    away = _home(_sensor(1, "power", 30.0), status="hospital", until=NOW + timedelta(days=2))
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


def test_a_new_sensor_learns_no_cadence_from_two_days() -> None:
    at = NOW.timestamp()
    two_days = [at - k * 1800.0 for k in range(1, 97)]  # every 30 min since 2 days ago
    assert learn_cadence(two_days, at, POLICY) == (None, 96)
    new = _sensor(1, "power", 3.0, max_gap_s=None, readings=96)
    assert silent_after_s(new, POLICY) == 24 * 3600  # the default of its kind, not 45 min
    assert _kinds(_home(new, _sensor(2, "motion", 0.1))) == []
    eight_days = [at - k * 1800.0 for k in range(1, 8 * 48 + 1)]
    assert learn_cadence(eight_days, at, POLICY) == (1800.0, 8 * 48)
    old = [at - 15 * 86400.0, *eight_days]  # outside the 14-day window: not counted
    assert learn_cadence(old, at, POLICY) == (1800.0, 8 * 48)


def test_an_unused_door_in_an_active_home_is_not_a_fault_before_its_default() -> None:
    active = (_learned(2, "motion", 0.2, 10.0, "bedroom"), _learned(3, "contact", 0.5, 20.0))
    door = _learned(1, "door", 72.0, 20.0, "entrance")  # its learned cadence says 30 h
    assert silent_after_s(door, POLICY) == 30 * 3600  # still counts toward unknown_status
    assert device_silent_after_s(door, POLICY) == 168 * 3600
    assert _kinds(_home(door, *active)) == []  # three days indoors is the resident's choice
    gone = _learned(1, "door", 8 * 24.0, 20.0, "entrance")
    issues, _ = assess_home(_home(gone, *active), NOW, POLICY)
    assert [(i.kind, i.subject) for i in issues] == [(DEVICE_SILENT, "sensor:1")]
    assert issues[0].reason_ko.startswith("현관 문 센서가 192시간째 신호가 없습니다")
    assert "현관 현관" not in issues[0].reason_ko


def test_a_motion_sensor_silent_a_day_while_the_home_is_active_is_flagged() -> None:
    kitchen = _learned(1, "motion", 26.0, 10.0, "kitchen")  # usually never 10 h without
    bedroom = _learned(2, "motion", 0.2, 10.0, "bedroom")
    door = _learned(3, "door", 30.0, 20.0, "entrance")
    issues, _ = assess_home(_home(kitchen, bedroom, door), NOW, POLICY)
    assert [(i.kind, i.subject) for i in issues] == [(DEVICE_SILENT, "sensor:1")]
    assert issues[0].reason_ko == (
        "부엌 동작 센서가 26시간째 신호가 없습니다 (기준 24시간). "
        "다른 센서로는 집 안 활동이 보입니다"
    )
    assert issues[0].reason_en.startswith("kitchen motion sensor silent for 26 h")
    assert issues[0].details["rule"] == "home_active"
    assert issues[0].details["cadence"] == "learned"
    # the whole home quiet: the resident is out or still, which is care's business
    quiet = _learned(2, "motion", 20.0, 10.0, "bedroom")
    assert DEVICE_SILENT not in _kinds(_home(kitchen, quiet, door))
    # someone just came in: the rooms they have not passed yet are not faults
    back = _learned(3, "door", 0.5, 20.0, "entrance")
    assert _kinds(_home(kitchen, bedroom, back)) == []
    # a motion sensor alone cannot tell a fault from an empty home
    assert DEVICE_SILENT not in _kinds(_home(kitchen, door))


def test_a_new_homes_motion_sensor_waits_longer_than_a_learned_one() -> None:
    shower = _sensor(1, "motion", 30.0, "bathroom")  # no cadence yet: a shower, not a fault
    bedroom = _sensor(2, "motion", 0.2, "bedroom")
    assert silent_after_s(shower, POLICY) == 24 * 3600
    assert device_silent_after_s(shower, POLICY) == POLICY.max_silent_h * 3600
    assert _kinds(_home(shower, bedroom)) == []
    dead = _sensor(1, "motion", 80.0, "bathroom")
    issues, _ = assess_home(_home(dead, bedroom), NOW, POLICY)
    assert [i.kind for i in issues] == [DEVICE_SILENT]
    assert issues[0].details["cadence"] == "default"


def test_a_plug_keeps_its_cadence_whatever_the_home_does() -> None:
    plug = _learned(1, "power", 5.0, 0.25, "kitchen")  # every 15 min: silent after 2 h
    assert device_silent_after_s(plug, POLICY) == POLICY.min_silent_h * 3600
    issues, _ = assess_home(_home(plug, _learned(2, "motion", 9.0, 10.0)), NOW, POLICY)
    assert [i.kind for i in issues] == [DEVICE_SILENT]  # the home quiet: still the plug's fault
    assert issues[0].details["rule"] == "cadence"
    assert issues[0].reason_en == "kitchen power plug silent for 5 h (expected within 2 h)"


def test_sensor_names_read_naturally() -> None:
    assert sensor_name("door", "entrance") == ("현관 문 센서", "entrance door sensor")
    assert sensor_name("motion", "bedroom") == ("침실 동작 센서", "bedroom motion sensor")
    assert sensor_name("power", "living") == ("거실 전력 플러그", "living room power plug")
    assert sensor_name("contact", "kitchen") == ("부엌 접촉 센서", "kitchen contact sensor")
    for kind in ("door", "motion", "contact", "appliance", "power"):
        for room in ("entrance", "living", "kitchen", "bedroom", "bathroom", "other"):
            ko, en = sensor_name(kind, room)
            words = ko.split()
            assert all(a != b for a, b in pairwise(words)), ko
            assert ko.endswith(("센서", "플러그")) and en.endswith(("sensor", "plug"))


def test_a_gateway_clock_off_is_a_watch_for_the_technician_and_says_which_way() -> None:
    since = NOW - timedelta(days=2)
    pir = _sensor(1, "motion", 0.5)
    behind = GatewayHealth("gw1", True, NOW - timedelta(days=3), NOW, 2_430.0, since)
    issues, _ = assess_home(_home(pir, gw=behind), NOW, POLICY)
    assert [(i.kind, i.severity, i.subject, i.since) for i in issues] == [
        (GATEWAY_CLOCK, Severity.WATCH, "gateway:gw1", since)
    ]
    assert issues[0].reason_ko.startswith("게이트웨이 시계가 약 40분 늦습니다")
    assert issues[0].reason_en.startswith("Gateway clock about 40 min behind")
    ahead = GatewayHealth("gw1", True, NOW - timedelta(days=3), NOW, -3 * 3600.0, since)
    issues, _ = assess_home(_home(pir, gw=ahead), NOW, POLICY)
    assert issues[0].reason_ko.startswith("게이트웨이 시계가 약 3시간 빠릅니다")
    refused = GatewayHealth("gw1", True, NOW - timedelta(days=3), NOW, 0.0, since, True)
    issues, _ = assess_home(_home(pir, gw=refused), NOW, POLICY)
    assert issues[0].severity is Severity.WARNING and "거부" in issues[0].reason_ko
    learning = GatewayHealth("gw1", True, NOW - timedelta(days=3), NOW, 2_430.0, None)
    assert _kinds(_home(pir, gw=learning)) == []  # one night only: not yet
    down = GatewayHealth("gw1", False, NOW - timedelta(hours=2), NOW, 2_430.0, since)
    assert GATEWAY_CLOCK not in _kinds(_home(pir, gw=down))  # offline says enough
