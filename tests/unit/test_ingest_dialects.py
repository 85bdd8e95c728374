"""Vendor dialects against payloads as Zigbee2MQTT, Tasmota, Shelly and ESPHome publish them."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.domain import BINARY_KINDS, GatewayStatus, Reading, Rejected, SensorKind
from ingest.adapters import route
from ingest.adapters.common import DeviceAvailability, DeviceReport, Ignored

NOW = datetime(2026, 11, 22, 0, 30, tzinfo=UTC)
TOL = 300
FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
DIALECT_FILES = ("zigbee2mqtt.json", "tasmota.json", "shelly_gen2.json", "esphome.json")


def cases() -> list[Any]:
    out = []
    for name in DIALECT_FILES:
        spec = json.loads((FIXTURES / name).read_text())
        out += [pytest.param(c, id=f"{name[:-5]}: {c['name']}") for c in spec["cases"]]
    return out


def encode(payload: Any) -> bytes:
    return payload.encode() if isinstance(payload, str) else json.dumps(payload).encode()


def check(item: Any, want: dict[str, Any]) -> None:
    assert type(item).__name__ == want["type"], item
    if isinstance(item, Rejected | Ignored):
        assert want.get("reason", "") in item.reason and item.reason.strip()
    elif isinstance(item, DeviceAvailability):
        assert (item.gateway, item.device, item.online) == ("GW", want["device"], want["online"])
    elif isinstance(item, GatewayStatus):
        assert (item.gateway, item.online) == ("GW", want["online"])
    elif isinstance(item, DeviceReport):
        assert item.gateway == "GW" and item.device == want["device"]
        values = {kind.value: v for kind, v in item.values}
        assert values == pytest.approx(want["values"])
        for slot in ("battery", "link_quality", "energy_kwh"):
            assert getattr(item, slot) == pytest.approx(want.get(slot)), slot
        assert item.stamped is want["stamped"]
        if not item.stamped:
            assert item.ts == NOW
        if "ts" in want:
            assert item.ts == datetime.fromisoformat(want["ts"])


@pytest.mark.parametrize("case", cases())
def test_captured_payloads(case: dict[str, Any]) -> None:
    out = route(case["topic"], encode(case["payload"]), NOW, TOL)
    assert len(out) == len(case["expect"]), out
    for item, want in zip(out, case["expect"], strict=True):
        check(item, want)


def test_every_dialect_has_a_fixture_file_with_odd_cases() -> None:
    for name in DIALECT_FILES:
        spec = json.loads((FIXTURES / name).read_text())
        types = {w["type"] for c in spec["cases"] for w in c["expect"]}
        assert {"DeviceReport", "DeviceAvailability", "Rejected"} <= types, name


# -- fuzz: every payload of every dialect is understood, ignored with a reason, or rejected -----

TOPICS = st.sampled_from(
    [
        "gw/g1/zigbee2mqtt/front_door",
        "gw/g1/zigbee2mqtt/a/b/availability",
        "gw/g1/zigbee2mqtt/bridge/state",
        "gw/g1/tele/plug/SENSOR",
        "gw/g1/tele/plug/STATE",
        "gw/g1/tele/plug/LWT",
        "gw/g1/stat/plug/POWER",
        "gw/g1/stat/plug/POWER3",
        "gw/g1/stat/plug/RESULT",
        "gw/g1/shelly/dev/events/rpc",
        "gw/g1/shelly/dev/online",
        "gw/g1/shelly/dev/status/switch:0",
        "gw/g1/esphome/node/binary_sensor/door/state",
        "gw/g1/esphome/node/sensor/power/state",
        "gw/g1/esphome/node/sensor/battery_level/state",
        "gw/g1/esphome/node/status",
        "gw/g1/anbu/readings",
    ]
)
KEYS = st.sampled_from(
    ["contact", "occupancy", "power", "state", "battery", "linkquality", "energy", "last_seen",
     "Time", "ENERGY", "Power", "Total", "POWER", "POWER2", "Wifi", "RSSI", "method", "params",
     "ts", "switch:0", "input:1", "apower", "output", "aenergy", "devicepower:0", "wifi", "rssi",
     "readings", "sensor", "kind", "value"]
)  # fmt: skip
SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.sampled_from(
        [
            "ON",
            "OFF",
            "online",
            "offline",
            "true",
            "NotifyStatus",
            "2026-11-22T00:00:00Z",
            "12.5",
            "nan",
            "1e400",
            "",
            "Online",
        ]
    )
    | st.text(max_size=12)
)
JSON = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(KEYS | st.text(max_size=6), inner, max_size=6),
    max_leaves=20,
)  # fmt: skip


def payloads() -> st.SearchStrategy[bytes]:
    as_json = JSON.map(lambda d: json.dumps(d, allow_nan=True).encode())
    as_text = SCALARS.map(lambda s: str(s).encode())
    return as_json | as_text | st.binary(max_size=64)


def assert_sane(item: object) -> None:
    if isinstance(item, Rejected | Ignored):
        assert item.reason.strip()
    elif isinstance(item, DeviceReport):
        assert not item.empty and item.device
        for kind, value in item.values:
            assert math.isfinite(value)
            if kind in BINARY_KINDS:
                assert value in (0.0, 1.0)
            elif kind is SensorKind.POWER:
                assert 0.0 <= value <= 20_000.0
        assert item.ts.tzinfo is not None
    elif isinstance(item, Reading):
        assert math.isfinite(item.value)
    else:
        assert isinstance(item, DeviceAvailability | GatewayStatus), item


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(topic=TOPICS, payload=payloads())
def test_fuzz_no_exception_and_every_item_is_accounted_for(topic: str, payload: bytes) -> None:
    out = route(topic, payload, NOW, TOL)
    assert out
    for item in out:
        assert_sane(item)


@settings(max_examples=300, deadline=None)
@given(rest=st.text(max_size=40), payload=st.binary(max_size=32))
def test_fuzz_topics(rest: str, payload: bytes) -> None:
    for segment in ("zigbee2mqtt", "tele", "stat", "shelly", "esphome"):
        for item in route(f"gw/g1/{segment}/{rest}", payload, NOW, TOL):
            assert_sane(item)
