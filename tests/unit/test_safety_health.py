"""Safety devices' liveness (issue 20): a button or a fire, gas or CO detector is known alive
only by its heartbeats, so its silence is judged by its own 24 h, whatever the home does."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from core.domain import Severity
from detectors.health import (
    DEVICE_OFFLINE,
    DEVICE_SILENT,
    UNKNOWN_STATUS,
    GatewayHealth,
    HealthPolicy,
    HomeHealth,
    SensorHealth,
    assess_home,
    sensor_name,
)

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
POLICY = HealthPolicy()
GW_OK = GatewayHealth("gw1", True, NOW - timedelta(days=3), NOW - timedelta(minutes=1))


def _sensor(sid: int, kind: str, ago_h: float | None, room: str = "living",
            online: bool | None = None) -> SensorHealth:  # fmt: skip
    last = None if ago_h is None else NOW - timedelta(hours=ago_h)
    return SensorHealth(sid, "gw1", f"s{sid}", kind, room, last, online=online)


def _issues(*sensors: SensorHealth, policy: HealthPolicy = POLICY) -> list[tuple[str, str]]:
    issues, _ = assess_home(HomeHealth(1, "h1", "active", None, (GW_OK,), sensors), NOW, policy)
    return sorted((i.kind, i.subject) for i in issues)


# all six: the resident card's 24 h rule (dashboards.residents) and this finding agree
@pytest.mark.parametrize("kind", ["button", "smoke", "gas", "co", "water_leak", "tamper"])
def test_a_safety_device_silent_over_a_day_is_a_device_finding_in_a_quiet_home(kind: str) -> None:
    # nobody moves (the motion sensor is quiet too): an activity sensor would wait for
    # activity elsewhere; a safety device's missing heartbeat is its own fault
    home = (_sensor(1, "motion", 5.0), _sensor(2, kind, 25.0, "kitchen"))
    assert _issues(*home) == [(DEVICE_SILENT, "sensor:2")]
    assert _issues(_sensor(1, "motion", 5.0), _sensor(2, kind, 23.0, "kitchen")) == []


def test_the_reason_names_the_device_and_its_room_in_korean_first() -> None:
    home = HomeHealth(1, "h1", "active", None, (GW_OK,),
                      (_sensor(1, "motion", 0.2), _sensor(2, "smoke", 30.0, "kitchen")))  # fmt: skip
    (issue,), _ = assess_home(home, NOW, POLICY)
    assert issue.reason_ko == (
        "부엌 화재 감지기가 30시간째 신호가 없습니다 (안전 기기 기준 24시간). "
        "배터리와 연결을 점검해 주세요"
    )
    assert issue.reason_en.startswith("kitchen smoke (fire) detector silent for 30 h")
    assert issue.severity is Severity.WARNING
    assert issue.details["rule"] == "safety_heartbeat"
    assert issue.details["sensor_kind"] == "smoke"


def test_a_smoke_detector_whose_heartbeats_come_is_fine_however_long_its_state_is_unchanged() -> (
    None
):
    # its state (clear) began weeks ago; its last heartbeat is an hour old
    assert _issues(_sensor(1, "motion", 0.1), _sensor(2, "smoke", 1.0, "kitchen")) == []


def test_activity_rules_do_not_make_a_safety_device_silent_sooner() -> None:
    # motion's threshold is 24 h, a plug's default 24 h, the policy's floor 2 h: none applies
    strict = HealthPolicy(min_silent_h=1.0, max_silent_h=2.0)
    assert _issues(_sensor(1, "motion", 0.1), _sensor(2, "button", 20.0, "bedroom"),
                   policy=strict) == []  # fmt: skip


def test_the_threshold_is_a_policy_setting() -> None:
    short = HealthPolicy(safety_silent_h=6.0)
    home = (_sensor(1, "motion", 0.1), _sensor(2, "button", 7.0))
    assert _issues(*home, policy=short) == [(DEVICE_SILENT, "sensor:2")]
    with pytest.raises(ValueError):
        HealthPolicy(safety_silent_h=0)


def test_a_safety_device_reported_unavailable_is_a_finding_at_once() -> None:
    home = HomeHealth(1, "h1", "active", None, (GW_OK,),
                      (_sensor(1, "motion", 0.1), _sensor(2, "button", 0.5, online=False)))  # fmt: skip
    (issue,), _ = assess_home(home, NOW, POLICY)
    assert (issue.kind, issue.subject) == (DEVICE_OFFLINE, "sensor:2")
    assert issue.reason_ko.startswith("거실 응급호출기가 오프라인입니다")


def test_a_heartbeat_does_not_hide_a_home_whose_activity_sensors_are_all_silent() -> None:
    # every activity sensor silent: the resident's data is missing, whatever the pendant says
    home = (_sensor(1, "power", 30.0), _sensor(2, "button", 0.5))
    kinds = [k for k, _ in _issues(*home)]
    assert UNKNOWN_STATUS in kinds


def test_never_heard_safety_devices_are_not_judged() -> None:
    assert _issues(_sensor(1, "motion", 0.1), _sensor(2, "gas", None)) == []


def test_korean_labels_of_the_new_kinds() -> None:
    assert sensor_name("button", "bedroom")[0] == "침실 응급호출기"
    assert sensor_name("gas", "kitchen")[0] == "부엌 가스 감지기"
    assert sensor_name("co", "living")[0] == "거실 일산화탄소 감지기"
    assert sensor_name("water_leak", "bathroom")[0] == "욕실 누수 감지기"
    assert sensor_name("smoke", "kitchen")[0] == "부엌 화재 감지기"
    assert sensor_name("tamper", "other")[0] == "기타 분리 감지 센서"


def test_check_ins_neither_hide_nor_redate_a_home_whose_data_is_missing() -> None:
    # the resident's sensors silent since 30 h; the smoke detector checks in every few hours:
    # the home's silence is dated by the resident's data, so each check-in is not a new one
    for beat in (3.0, 0.5):
        home = HomeHealth(1, "h1", "active", None, (GW_OK,),
                          (_sensor(1, "power", 30.0), _sensor(2, "smoke", beat, "kitchen")))  # fmt: skip
        issues, _ = assess_home(home, NOW, POLICY)
        (unknown,) = [i for i in issues if i.kind == UNKNOWN_STATUS]
        assert unknown.since == NOW - timedelta(hours=30)


def test_routine_evidence_reads_a_press_as_someone_and_an_alarm_as_no_one() -> None:
    """A pendant press is an event of a person (no interval after it); a smoke detector's
    readings, its test press included, are nobody's activity."""
    from detectors.evidence import build_evidence

    rows = [
        (100.0, "pir", "motion", "living", 1.0),
        (160.0, "pir", "motion", "living", 0.0),
        (500.0, "sos", "button", "bedroom", 1.0),
        (900.0, "smoke", "smoke", "kitchen", 2.0),
        (950.0, "smoke", "smoke", "kitchen", 0.0),
    ]
    ev = build_evidence(rows)
    assert list(ev.event_t) == [100.0, 500.0]
    assert list(ev.interval_end) == [160.0]  # the press opens no interval
