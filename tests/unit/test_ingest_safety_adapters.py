"""Safety devices (issue 20) in every dialect: buttons, smoke, gas, CO, leak and tamper, as
Zigbee2MQTT, Tasmota, Shelly (Gen1 and Gen2+), ESPHome and the native format publish them."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.domain import (
    SAFETY_KINDS,
    SAFETY_VALUES,
    AlarmValue,
    ButtonValue,
    Reading,
    Rejected,
    SensorKind,
)
from ingest.adapters import DIALECTS, native, route
from ingest.adapters.classes import (
    KIND_RANK,
    PAYLOAD_PREFERENCE,
    ha_kind,
    shelly_kind,
    strongest,
    suggested_by_payload,
)
from ingest.adapters.common import (
    DeviceAnnounced,
    DeviceAvailability,
    DeviceGone,
    DeviceReport,
    Ignored,
    button_gesture,
)
from ingest.state import _is_activity
from registry import SensorRef

NOW = datetime(2026, 11, 22, 0, 30, tzinfo=UTC)
TOL = 300
TS = (NOW - timedelta(seconds=5)).timestamp()
B, SM, GA, CO = SensorKind.BUTTON, SensorKind.SMOKE, SensorKind.GAS, SensorKind.CO
LEAK, TAMPER = SensorKind.WATER_LEAK, SensorKind.TAMPER
ALARM, CLEAR, TEST = AlarmValue.ALARM, AlarmValue.CLEAR, AlarmValue.TEST
PRESS, LONG, CANCEL = ButtonValue.PRESS, ButtonValue.LONG, ButtonValue.CANCEL


def encode(payload: Any) -> bytes:
    return payload.encode() if isinstance(payload, str) else json.dumps(payload).encode()


def one(topic: str, payload: Any) -> Any:
    out = route(topic, encode(payload), NOW, TOL)
    assert len(out) == 1, out
    return out[0]


def picked(report: Any, kind: SensorKind) -> float | None:
    """The value the store would pick for a sensor registered as `kind`."""
    assert isinstance(report, DeviceReport), report
    return next((v for k, v in report.values if k is kind), None)


def rpc_event(device: str, *events: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    body = {"src": device, "dst": f"{device}/events", "method": "NotifyEvent",
            "params": {"ts": TS, "events": [{"ts": TS, **e} for e in events]}}  # fmt: skip
    return f"gw/GW/{device}/events/rpc", body


# -- each dialect reads each device as its project publishes it by default --------------------

SMOKE_PLUS = "shellyplussmoke-a8032ab12345"
CASES: list[tuple[str, str, Any, str, SensorKind, float]] = [
    # (case, topic, payload, device, registered kind, value the store picks)
    ("z2m Tuya SOS button", "gw/GW/zigbee2mqtt/pendant",
     {"action": "emergency", "battery": 100, "linkquality": 120}, "pendant", B, PRESS),
    ("z2m Heiman SOS", "gw/GW/zigbee2mqtt/pendant", {"action": "sos"}, "pendant", B, PRESS),
    ("z2m hold", "gw/GW/zigbee2mqtt/pendant", {"action": "hold"}, "pendant", B, LONG),
    ("z2m long", "gw/GW/zigbee2mqtt/pendant", {"action": "long"}, "pendant", B, LONG),
    ("z2m double", "gw/GW/zigbee2mqtt/pendant", {"action": "double"}, "pendant", B, PRESS),
    ("z2m cancel", "gw/GW/zigbee2mqtt/pendant", {"action": "cancel"}, "pendant", B, CANCEL),
    ("z2m attribute action", "gw/GW/zigbee2mqtt/pendant/action", "single", "pendant", B, PRESS),
    ("z2m smoke", "gw/GW/zigbee2mqtt/kitchen/smoke",
     {"smoke": True, "battery_low": False, "tamper": False, "test": False, "battery": 90},
     "kitchen/smoke", SM, ALARM),
    ("z2m smoke clear", "gw/GW/zigbee2mqtt/kitchen", {"smoke": False}, "kitchen", SM, CLEAR),
    ("z2m smoke test press", "gw/GW/zigbee2mqtt/kitchen",
     {"smoke": True, "test": True, "battery_low": False}, "kitchen", SM, TEST),
    ("z2m test alone", "gw/GW/zigbee2mqtt/kitchen", {"test": True}, "kitchen", SM, TEST),
    ("z2m attribute test", "gw/GW/zigbee2mqtt/kitchen/test", "true", "kitchen", SM, TEST),
    ("z2m gas", "gw/GW/zigbee2mqtt/boiler", {"gas": True, "test": False}, "boiler", GA, ALARM),
    ("z2m gas test", "gw/GW/zigbee2mqtt/boiler", {"gas": True, "test": True}, "boiler", GA, TEST),
    ("z2m CO", "gw/GW/zigbee2mqtt/co", {"carbon_monoxide": True}, "co", CO, ALARM),
    ("z2m CO as gas", "gw/GW/zigbee2mqtt/co", {"carbon_monoxide": True}, "co", GA, ALARM),
    ("z2m CO test", "gw/GW/zigbee2mqtt/co", {"carbon_monoxide": True, "test": True}, "co", CO,
     TEST),
    ("z2m leak", "gw/GW/zigbee2mqtt/bath", {"water_leak": True, "battery_low": True}, "bath",
     LEAK, ALARM),
    ("z2m tamper", "gw/GW/zigbee2mqtt/pir", {"occupancy": False, "tamper": True}, "pir", TAMPER,
     ALARM),
    ("z2m bad battery beside a fire", "gw/GW/zigbee2mqtt/kitchen",
     {"smoke": True, "battery": "low"}, "kitchen", SM, ALARM),
    ("tasmota Button1 SINGLE", "gw/GW/stat/wallbtn/RESULT",
     {"Button1": {"Action": "SINGLE"}}, "wallbtn", B, PRESS),
    ("tasmota Button2 HOLD", "gw/GW/stat/wallbtn/RESULT",
     {"Button2": {"Action": "HOLD"}}, "wallbtn:2", B, LONG),
    ("tasmota pull cord on a switch", "gw/GW/tele/cord/RESULT",
     {"Switch1": {"Action": "ON"}}, "cord", B, PRESS),
    ("tasmota switch TOGGLE", "gw/GW/stat/cord/RESULT",
     {"Switch3": {"Action": "TOGGLE"}}, "cord:3", B, PRESS),
    ("tasmota zigbee fire", "gw/GW/tele/zbbridge/SENSOR",
     {"ZbReceived": {"0x8F20": {"Device": "0x8F20", "Name": "KitchenSmoke",
                                "ZoneStatusChange": 1, "ZoneStatusChangeZone": 1, "Fire": 1,
                                "Endpoint": 1, "LinkQuality": 70}}},
     "zbbridge:KitchenSmoke", SM, ALARM),
    ("tasmota zigbee fire under test", "gw/GW/tele/zbbridge/SENSOR",
     {"ZbReceived": {"0x8F20": {"Device": "0x8F20", "Name": "KitchenSmoke",
                                "ZoneStatusChange": 0x101, "Fire": 1}}},
     "zbbridge:KitchenSmoke", SM, TEST),
    ("tasmota zigbee tamper bit", "gw/GW/tele/zbbridge/SENSOR",
     {"ZbReceived": {"0x8F21": {"Device": "0x8F21", "ZoneStatusChange": 0x04, "Water": 0}}},
     "zbbridge:0x8F21", TAMPER, ALARM),
    ("tasmota zigbee leak", "gw/GW/tele/zbbridge/SENSOR",
     {"ZbReceived": {"0x8F22": {"Device": "0x8F22", "Name": "Bath", "Water": 1}}},
     "zbbridge:Bath", LEAK, ALARM),
    ("tasmota zigbee CO", "gw/GW/tele/zbbridge/SENSOR",
     {"ZbReceived": {"0x8F23": {"Device": "0x8F23", "Name": "Boiler", "CO": 1}}},
     "zbbridge:Boiler", GA, ALARM),
    ("tasmota zigbee pendant", "gw/GW/tele/zbbridge/SENSOR",
     {"ZbReceived": {"0x8F24": {"Device": "0x8F24", "Name": "Pendant", "PersonalAlarm": 1}}},
     "zbbridge:Pendant", B, PRESS),
    ("shelly gen2 input single_push",
     *rpc_event("shellyplusi4-c4d8d5561234", {"component": "input:2", "id": 2,
                                              "event": "single_push"}),
     "shellyplusi4-c4d8d5561234:2", B, PRESS),
    ("shelly gen2 input long_push",
     *rpc_event("shellyplusi4-c4d8d5561234", {"component": "input:0", "id": 0,
                                              "event": "long_push"}),
     "shellyplusi4-c4d8d5561234", B, LONG),
    ("shelly gen2 double_push",
     *rpc_event("shellyplusi4-c4d8d5561234", {"component": "input:0", "id": 0,
                                              "event": "double_push"}),
     "shellyplusi4-c4d8d5561234", B, PRESS),
    ("shelly BLU Button as a BTHome component",
     *rpc_event("shellyplus1-b8d61a812345", {"component": "bthomesensor:201", "id": 201,
                                              "event": "single_push"}),
     "shellyplus1-b8d61a812345:bthomesensor:201", B, PRESS),
    ("shelly BLU Button via the script, long press",
     *rpc_event("shellyplus1-b8d61a812345", {"component": "script:1", "id": 1,
                                              "event": "shelly-blu",
                                              "data": {"pid": 9, "battery": 80, "button": 4,
                                                       "rssi": -70,
                                                       "address": "B0:C7:DE:11:22:33"}}),
     "b0:c7:de:11:22:33", B, LONG),
    ("shelly plus smoke status alarm", f"gw/GW/{SMOKE_PLUS}/events/rpc",
     {"method": "NotifyStatus", "params": {"ts": TS, "smoke:0": {"id": 0, "alarm": True,
                                                                 "mute": False}}},
     SMOKE_PLUS, SM, ALARM),
    ("shelly plus smoke alarm_off event",
     *rpc_event(SMOKE_PLUS, {"component": "smoke:0", "id": 0, "event": "alarm_off"}),
     SMOKE_PLUS, SM, CLEAR),
    ("shelly plus smoke test (button held)",
     *rpc_event(SMOKE_PLUS, {"component": "smoke:0", "id": 0, "event": "alarm_test"}),
     SMOKE_PLUS, SM, TEST),
    ("shelly flood status", "gw/GW/shellyfloodg4-a8032ab12345/status/flood:0",
     {"id": 0, "alarm": True, "mute": False}, "shellyfloodg4-a8032ab12345", LEAK, ALARM),
    ("shelly flood event",
     *rpc_event("shellyfloodg4-a8032ab12345", {"component": "flood:0", "id": 0,
                                               "event": "alarm"}),
     "shellyfloodg4-a8032ab12345", LEAK, ALARM),
    ("shelly gen1 smoke", "gw/GW/shellies/shellysmoke-6A1B2C/sensor/smoke", "true",
     "shellysmoke-6A1B2C", SM, ALARM),
    ("shelly gen1 flood", "gw/GW/shellies/shellyflood-6A1B2C/sensor/flood", "false",
     "shellyflood-6A1B2C", LEAK, CLEAR),
    ("shelly gen1 gas heavy", "gw/GW/shellies/shellygas-6A1B2C/sensor/gas", "heavy",
     "shellygas-6A1B2C", GA, ALARM),
    ("shelly gen1 gas self-test", "gw/GW/shellies/shellygas-6A1B2C/sensor/gas", "test",
     "shellygas-6A1B2C", GA, TEST),
    ("shelly gen1 Button1 wakes on a press",
     "gw/GW/shellies/shellybutton1-A4CF12F3D2A1/input_event/0", {"event": "S", "event_cnt": 7},
     "shellybutton1-A4CF12F3D2A1", B, PRESS),
    ("esphome panic button", "gw/GW/hall-node/binary_sensor/panic/state", "ON",
     "hall-node/panic", B, PRESS),
    ("esphome smoke", "gw/GW/kitchen-node/binary_sensor/smoke/state", "ON",
     "kitchen-node/smoke", SM, ALARM),
    ("esphome gas clear", "gw/GW/esphome/kitchen-node/binary_sensor/gas/state", "OFF",
     "kitchen-node/gas", GA, CLEAR),
    ("esphome leak", "gw/GW/bath-node/binary_sensor/leak/state", "ON", "bath-node/leak", LEAK,
     ALARM),
    ("esphome event entity", "gw/GW/hall-node/event/pendant/state", {"event_type": "double"},
     "hall-node/pendant", B, PRESS),
]  # fmt: skip


@pytest.mark.parametrize(
    ("topic", "payload", "device", "kind", "value"),
    [pytest.param(*c[1:], id=c[0]) for c in CASES],
)
def test_each_dialect_reads_safety_devices(
    topic: str, payload: Any, device: str, kind: SensorKind, value: float
) -> None:
    report = one(topic, payload)
    assert isinstance(report, DeviceReport), report
    assert report.device == device
    assert picked(report, kind) == value
    for k, v in report.values:
        if k in SAFETY_VALUES:
            assert v in SAFETY_VALUES[k], (k, v)


def test_a_test_press_is_never_a_fire() -> None:
    for doc in ({"smoke": True, "test": True}, {"gas": True, "test": True},
                {"carbon_monoxide": True, "test": True}, {"test": True}):  # fmt: skip
        report = one("gw/GW/zigbee2mqtt/det", doc)
        assert isinstance(report, DeviceReport)
        for kind in (SM, GA, CO):
            assert picked(report, kind) in (TEST, None), doc
        assert ALARM not in [v for k, v in report.values if k in (SM, GA, CO)], doc


def test_battery_low_is_never_an_alarm() -> None:
    alone = one("gw/GW/zigbee2mqtt/det", {"battery_low": True})
    assert isinstance(alone, Ignored) and "battery_low" in alone.reason
    report = one("gw/GW/zigbee2mqtt/det", {"smoke": False, "battery_low": True, "battery": 8})
    assert picked(report, SM) == CLEAR and report.battery == 8.0
    assert one("gw/GW/zigbee2mqtt/det/battery_low", "true") == Ignored(
        "zigbee2mqtt attribute 'battery_low' is not one anbu reads"
    )


@pytest.mark.parametrize(
    ("topic", "payload", "fragment"),
    [
        ("gw/GW/zigbee2mqtt/pendant", {"action": "release"}, "release"),
        ("gw/GW/zigbee2mqtt/pendant", {"action": "hold_release"}, "release"),
        ("gw/GW/zigbee2mqtt/remote", {"action": "brightness_move_up"}, "release"),
        ("gw/GW/zigbee2mqtt/remote", {"action": "arm_day_zones"}, "no press"),
        ("gw/GW/zigbee2mqtt/pendant", {"action": ""}, "no property"),
        ("gw/GW/zigbee2mqtt/pendant/action", "release", "release"),
        ("gw/GW/zigbee2mqtt/pendant/action", "", "empty payload"),
        ("gw/GW/zigbee2mqtt/pendant/action", "null", "no gesture"),
        ("gw/GW/stat/wallbtn/RESULT", {"Button1": {"Action": "CLEAR"}}, "nothing anbu reads"),
        ("gw/GW/hall-node/event/pendant/state", {"event_type": "release"}, "no press"),
        ("gw/GW/shellies/shellygas-6A1B2C/sensor/gas", "unknown", "warming up"),
        (
            *rpc_event("shellyplusi4-c4d8d5561234", {"component": "input:0", "event": "btn_up"}),
            "no sensor state",
        ),
        (
            *rpc_event("shellyplusi4-c4d8d5561234", {"component": "input:0", "event": "btn_down"}),
            "no sensor state",
        ),
    ],
)
def test_releases_and_other_gestures_are_ignored_with_a_reason(
    topic: str, payload: Any, fragment: str
) -> None:
    out = one(topic, payload)
    assert isinstance(out, Ignored), out
    assert fragment in out.reason


def test_a_release_gives_no_button_value_beside_other_state() -> None:
    report = one("gw/GW/zigbee2mqtt/pendant", {"action": "release", "battery": 50})
    assert isinstance(report, DeviceReport) and picked(report, B) is None
    off = one("gw/GW/hall-node/binary_sensor/panic/state", "OFF")
    assert picked(off, B) is None  # the button let go: no press, and never a cancel
    sensor = one("gw/GW/tele/cord/SENSOR", {"Switch1": "ON"})  # repeated every TelePeriod
    assert picked(sensor, B) is None
    cord_off = one("gw/GW/stat/cord/RESULT", {"Switch1": {"Action": "OFF"}})
    assert picked(cord_off, B) is None
    rest = one("gw/GW/tele/zb/SENSOR", {"ZbReceived": {"0x1": {"Device": "0x1", "Panic": 0}}})
    assert isinstance(rest, Ignored)


def test_a_keypads_disarm_is_no_cancel_of_a_call_for_help() -> None:
    # a Heiman/Tuya alarm keyfob sends emergency, disarm, arm_day_zones, arm_all_zones: its
    # disarm switches a burglar alarm off and must not read as the pendant's cancel
    out = one("gw/GW/zigbee2mqtt/keypad", {"action": "disarm"})
    assert isinstance(out, Ignored), out
    assert "no press" in out.reason
    beside = one("gw/GW/zigbee2mqtt/keypad", {"action": "disarm", "battery": 80})
    assert picked(beside, B) is None
    assert picked(one("gw/GW/zigbee2mqtt/keypad", {"action": "emergency"}), B) == PRESS
    assert picked(one("gw/GW/zigbee2mqtt/pendant", {"action": "cancel"}), B) == CANCEL


@pytest.mark.parametrize(
    ("name", "value"),
    [("single", PRESS), ("double_left", PRESS), ("1_single", PRESS), ("button_2_hold", LONG),
     ("long_press", LONG), ("hold_press", LONG), ("SINGLE", PRESS), ("PENTA", PRESS),
     ("single_push", PRESS), ("long_push", LONG), ("emergency", PRESS), ("sos", PRESS),
     ("panic", PRESS), ("disarm", None), ("arm_all_zones", None), ("cancel", CANCEL), ("release", -1.0),
     ("btn_up", -1.0), ("on", None), ("CLEAR", None), ("", None), ("x" * 65, None)],
)  # fmt: skip
def test_gesture_names(name: str, value: float | None) -> None:
    assert button_gesture(name) == value


def test_gen1_input_event_carries_its_count_for_the_store() -> None:
    """The adapter keeps no memory: every gesture is a report with its count, even the first
    heard after a restart and a repeat; the store drops a repeated count (ingest.presses)."""
    topic = "gw/GW/shellies/shellyix3-10521CF2C2C2/input_event/1"
    for _ in range(2):  # the 30 s republish is a report too: the database decides
        first = one(topic, {"event": "SSS", "event_cnt": 4})
        assert isinstance(first, DeviceReport), first
        assert first.device == "shellyix3-10521CF2C2C2:1"
        assert (picked(first, B), first.event_count) == (PRESS, 4)
    press = one(topic, {"event": "L", "event_cnt": 5})
    assert isinstance(press, DeviceReport) and (picked(press, B), press.event_count) == (LONG, 5)
    other_gateway = one(topic.replace("/GW/", "/GW2/"), {"event": "S", "event_cnt": 2})
    assert isinstance(other_gateway, DeviceReport) and other_gateway.event_count == 2
    bad = one(topic, {"event": "S"})
    assert isinstance(bad, Rejected) and "event count" in bad.reason
    for count in (-1, True, 2**62, "3"):
        assert isinstance(one(topic, {"event": "S", "event_cnt": count}), Rejected), count
    assert isinstance(one(topic, {"event": "X", "event_cnt": 6}), Ignored)


# -- native: the value codes ---------------------------------------------------------------


def native_one(kind: str, value: Any) -> Reading | Rejected:
    body = {"readings": [{"sensor": "s1", "kind": kind, "ts": "2026-11-22T00:00:00Z",
                          "value": value}]}  # fmt: skip
    out = native.parse("g", "readings", json.dumps(body).encode(), NOW, TOL)
    assert len(out) == 1
    item = out[0]
    assert isinstance(item, Reading | Rejected)
    return item


@pytest.mark.parametrize("kind", sorted(SAFETY_KINDS))
def test_native_safety_kinds_take_their_codes(kind: SensorKind) -> None:
    for value in SAFETY_VALUES[kind]:
        reading = native_one(kind.value, int(value))
        assert isinstance(reading, Reading) and (reading.kind, reading.value) == (kind, value)
    for bad in (3, -1, 0.5, 1.0000001, 1e300):
        out = native_one(kind.value, bad)
        assert isinstance(out, Rejected), bad
        assert f"out of range for {kind.value}" in out.reason
        codes = "0 cancel, 1 press or 2 long press" if kind is B else "0 clear, 1 alarm or 2 test"
        assert codes in out.reason
    for bad_type in ("1", True, None, [1]):
        out = native_one(kind.value, bad_type)
        assert isinstance(out, Rejected) and "must be a number" in out.reason


# -- discovery and announcements -------------------------------------------------------------


@pytest.mark.parametrize(
    ("component", "device_class", "kind"),
    [("binary_sensor", "smoke", SM), ("binary_sensor", "gas", GA),
     ("binary_sensor", "carbon_monoxide", CO), ("binary_sensor", "moisture", LEAK),
     ("binary_sensor", "tamper", TAMPER), ("binary_sensor", "safety", B),
     ("binary_sensor", "heat", SM), ("event", "button", B), ("binary_sensor", "battery", None),
     ("event", None, None)],
)  # fmt: skip
def test_home_assistant_classes(component: str, device_class: str | None, kind: Any) -> None:
    assert ha_kind(component, device_class) == kind


def test_home_assistant_discovery_announces_a_smoke_detector() -> None:
    config = {
        "name": "Smoke",
        "stat_t": "zigbee2mqtt/kitchen_smoke",
        "dev_cla": "smoke",
        "val_tpl": "{{ value_json.smoke }}",
        "dev": {"ids": ["zigbee2mqtt_0x00124b0022aa"], "mdl": "HS1SA", "name": "kitchen"},
    }
    out = one("gw/GW/homeassistant/binary_sensor/0x00124b0022aa/smoke/config", config)
    assert isinstance(out, DeviceAnnounced)
    assert (out.device, out.kind, out.vendor_class) == (
        "kitchen_smoke", SM, "binary_sensor/smoke"
    )  # fmt: skip
    esp = {"name": "Panic", "stat_t": "hall-node/binary_sensor/panic/state", "dev_cla": "safety"}
    panic = one("gw/GW/homeassistant/binary_sensor/hall-node/panic/config", esp)
    assert isinstance(panic, DeviceAnnounced) and (panic.device, panic.kind) == (
        "hall-node/panic", B
    )  # fmt: skip


def z2m_device(name: str, *props: str) -> dict[str, Any]:
    exposes = [{"type": "binary", "property": p, "name": p} for p in props]
    return {"friendly_name": name, "type": "EndDevice",
            "definition": {"model": "M", "exposes": exposes}}  # fmt: skip


def test_zigbee2mqtt_exposes_suggest_the_safety_kind() -> None:
    devices = [
        z2m_device("smoke", "smoke", "battery_low", "tamper", "test", "battery"),
        z2m_device("gas", "gas", "test"),
        z2m_device("co", "carbon_monoxide", "tamper"),
        z2m_device("leak", "water_leak", "battery_low"),
        z2m_device("pendant", "action", "battery"),
        z2m_device("wall_switch", "action", "state"),
        z2m_device("pir", "occupancy", "tamper"),
        z2m_device("combo", "smoke", "carbon_monoxide"),
    ]
    out = route("gw/GW/zigbee2mqtt/bridge/devices", json.dumps(devices).encode(), NOW, TOL)
    kinds = {a.device: a.kind for a in out if isinstance(a, DeviceAnnounced)}
    assert kinds == {"smoke": SM, "gas": GA, "co": CO, "leak": LEAK, "pendant": B,
                     "wall_switch": SensorKind.APPLIANCE, "pir": SensorKind.MOTION,
                     "combo": SM}  # fmt: skip
    assert isinstance(out[-1], DeviceGone)


def test_shelly_models_and_every_kind_ranked() -> None:
    assert shelly_kind("SNSN-0031Z", "PlusSmoke") == SM
    assert shelly_kind("S4SN-XXXX", "FloodG4") == LEAK
    assert shelly_kind("SHSM-01") == SM and shelly_kind("SHWT-1") == LEAK
    assert shelly_kind("SHGS-1") == GA and shelly_kind("SHBTN-2") == B
    assert set(KIND_RANK) == set(SensorKind) == set(PAYLOAD_PREFERENCE)
    assert strongest([TAMPER, SensorKind.MOTION]) == SensorKind.MOTION
    # an ESPHome binary sensor fits every binary kind: still suggested as a motion sensor
    esp = one("gw/GW/hall-node/binary_sensor/x/state", "ON")
    assert suggested_by_payload({k for k, _ in esp.values}) == SensorKind.MOTION
    assert suggested_by_payload({SM, TAMPER}) == SM and suggested_by_payload({CO, GA}) == GA


# -- activity: a press is a person, an alarm is not --------------------------------------------


@pytest.mark.parametrize(
    ("kind", "value", "previous", "activity"),
    [(B, PRESS, None, True), (B, LONG, PRESS, True), (B, PRESS, PRESS, True),
     (B, CANCEL, PRESS, False), (B, CANCEL, None, False),
     *[(k, v, p, False) for k in (SM, GA, CO, LEAK, TAMPER)
       for v in (CLEAR, ALARM, TEST) for p in (None, CLEAR, ALARM)]],
)  # fmt: skip
def test_activity(kind: SensorKind, value: float, previous: float | None, activity: bool) -> None:
    assert _is_activity(SensorRef(1, 1, kind, "living"), value, previous) is activity


# -- fuzz: the new fields with unrestricted text never raise, and every value is a code --------

SAFETY_TOPICS = st.sampled_from(
    [
        ("zigbee2mqtt", "pendant"),
        ("zigbee2mqtt", "kitchen/smoke"),
        ("zigbee2mqtt", "pendant/action"),
        ("zigbee2mqtt", "kitchen/test"),
        ("zigbee2mqtt", "kitchen/smoke/tamper"),
        ("tele", "zbbridge/SENSOR"),
        ("tele", "cord/RESULT"),
        ("stat", "wallbtn/RESULT"),
        ("shelly", "shellyplussmoke-a8032ab12345/events/rpc"),
        ("shelly", "shellyplusi4-c4d8d5561234/status/smoke:0"),
        ("shelly", "shellyfloodg4-a8032ab12345/status/flood:0"),
        ("shellies", "shellyix3-10521CF2C2C2/input_event/0"),
        ("shellies", "shellybutton1-A4CF12F3D2A1/input_event/1"),
        ("shellies", "shellygas-6A1B2C/sensor/gas"),
        ("shellies", "shellysmoke-6A1B2C/sensor/smoke"),
        ("esphome", "hall-node/event/pendant/state"),
        ("esphome", "hall-node/binary_sensor/panic/state"),
        ("homeassistant", "binary_sensor/node/smoke/config"),
        ("homeassistant", "event/0x1/action/config"),
        ("anbu", "readings"),
    ]
)
NEW_KEYS = st.sampled_from(
    ["action", "smoke", "gas", "carbon_monoxide", "water_leak", "tamper", "test", "battery_low",
     "battery", "Button1", "Switch2", "Action", "ZbReceived", "Fire", "Water", "CO",
     "PersonalAlarm", "Panic", "ZoneStatusChange", "ZoneStatus", "Name", "Device", "method",
     "params", "events", "component", "event", "id", "ts", "data", "button", "address",
     "smoke:0", "flood:0", "alarm", "mute", "event_cnt", "event_type", "stat_t", "dev_cla",
     "device_class", "state_topic", "readings", "sensor", "kind", "value"]
)  # fmt: skip
NEW_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.sampled_from(
        ["single", "double", "hold", "long", "release", "sos", "emergency", "cancel", "disarm",
         "SINGLE", "HOLD", "ON", "OFF", "TOGGLE", "single_push", "long_push", "btn_up",
         "alarm", "alarm_off", "alarm_test", "smoke:0", "flood:0", "input:0", "input:01",
         "bthomesensor:200", "NotifyEvent", "NotifyStatus", "S", "SL", "L", "true", "false",
         "none", "mild", "heavy", "test", "unknown", "button", "smoke", "gas", "co",
         "water_leak", "tamper", "2026-11-22T00:00:00Z", "zigbee2mqtt/x", "safety"]
    )
    | st.text()
)  # fmt: skip
NEW_JSON = st.recursive(
    NEW_SCALARS,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(NEW_KEYS | st.text(max_size=8), inner, max_size=6)
    ),
    max_leaves=24,
)
PARSERS = {d.segment: d.parse for d in DIALECTS}
ALLOWED = (Reading, Rejected, DeviceReport, DeviceAvailability, Ignored, DeviceAnnounced,
           DeviceGone)  # fmt: skip


def any_payload() -> st.SearchStrategy[bytes]:
    as_json = NEW_JSON.map(lambda d: json.dumps(d, allow_nan=True).encode())
    as_text = NEW_SCALARS.map(lambda s: str(s).encode("utf-8", "surrogatepass"))
    return as_json | as_text | st.binary(max_size=64)


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(where=SAFETY_TOPICS, payload=any_payload())
def test_fuzz_safety_fields_never_raise(where: tuple[str, str], payload: bytes) -> None:
    segment, rest = where
    out = PARSERS[segment]("GW", rest, payload, NOW, TOL)  # the parser itself: no catch-all
    assert out
    for item in out:
        assert isinstance(item, ALLOWED), item
        if isinstance(item, Rejected | Ignored):
            assert item.reason.strip() and len(item.reason) < 400
            item.reason.encode("utf-8")
        if isinstance(item, DeviceReport):
            assert not item.empty and item.device
            for kind, value in item.values:
                assert math.isfinite(value)
                if kind in SAFETY_VALUES:
                    assert value in SAFETY_VALUES[kind], (kind, value)
        if isinstance(item, Reading) and item.kind in SAFETY_VALUES:
            assert item.value in SAFETY_VALUES[item.kind]
