"""Devices announcing themselves: discovery payloads as the projects publish them, and fuzz."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.domain import Rejected, SensorKind
from ingest.adapters import homeassistant, route
from ingest.adapters.announce import shelly_announce, tasmota_discovery, zigbee2mqtt_devices
from ingest.adapters.classes import HA_CLASSES, ha_kind, shelly_kind, strongest
from ingest.adapters.common import LABEL_MAX, DeviceAnnounced, DeviceGone, Ignored, device_id

NOW = datetime(2026, 11, 22, 0, 30, tzinfo=UTC)
SPEC = json.loads(
    (Path(__file__).resolve().parent.parent / "fixtures" / "discovery.json").read_text()
)


def encode(payload: Any) -> bytes:
    return payload.encode() if isinstance(payload, str) else json.dumps(payload).encode()


@pytest.mark.parametrize("case", [pytest.param(c, id=c["name"]) for c in SPEC["cases"]])
def test_captured_discovery_payloads(case: dict[str, Any]) -> None:
    out = route(case["topic"], encode(case["payload"]), NOW, 300)
    assert [type(x).__name__ for x in out] == [w["type"] for w in case["expect"]], out
    for item, want in zip(out, case["expect"], strict=True):
        if isinstance(item, Rejected | Ignored):
            assert want["reason"] in item.reason
        elif isinstance(item, DeviceGone):
            assert (item.gateway, item.config, list(item.keep)) == (
                "GW",
                want["config"],
                want["keep"],
            )
        else:
            assert isinstance(item, DeviceAnnounced) and item.gateway == "GW"
            assert item.kind == (None if want["kind"] is None else SensorKind(want["kind"]))
            for key in ("device", "model", "name", "config", "source"):
                if key in want:
                    assert getattr(item, key) == want[key], key


def test_every_announcing_dialect_has_a_case() -> None:
    sources = {w.get("source") for c in SPEC["cases"] for w in c["expect"]}
    assert {"zigbee2mqtt", "esphome", "shelly", "tasmota"} <= sources
    assert SPEC["cases"] and all(c["source"] for c in SPEC["cases"])


def test_class_table() -> None:
    assert ha_kind("binary_sensor", "door") is SensorKind.DOOR
    assert ha_kind("binary_sensor", "window") is SensorKind.CONTACT
    assert ha_kind("binary_sensor", "occupancy") is SensorKind.MOTION
    assert ha_kind("binary_sensor", "presence") is SensorKind.MOTION
    assert ha_kind("sensor", "power") is SensorKind.POWER
    assert ha_kind("switch", "outlet") is SensorKind.APPLIANCE
    assert ha_kind("switch", None) is SensorKind.APPLIANCE
    assert ha_kind("sensor", "battery") is None
    assert ha_kind("binary_sensor", None) is None  # a class-less binary sensor could be anything
    assert HA_CLASSES and all(isinstance(kind, SensorKind) for kind in HA_CLASSES.values())
    assert shelly_kind("SHSW-PM") is SensorKind.POWER  # before the plain relay's row
    assert shelly_kind("SHSW-1") is SensorKind.APPLIANCE
    assert shelly_kind("SHHT-1") is None
    assert strongest([SensorKind.APPLIANCE, SensorKind.POWER]) is SensorKind.POWER
    assert strongest([]) is None


def test_device_ids_anbu_cannot_register_are_refused_with_a_reason() -> None:
    for raw, why in (
        ("", "empty"),
        ("a" * 300, "longer"),
        ("a/#", "wildcard"),
        ("\ud800", "Unicode"),
    ):
        refused = device_id(raw)
        assert isinstance(refused, Rejected) and why in refused.reason


# -- fuzz: no exception escapes a parser; every refusal says why --------------------------------

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=5)
    ),
    max_leaves=20,
)
KEYS = st.sampled_from(
    ["state_topic", "stat_t", "~", "device_class", "dev_cla", "device", "dev", "json_attr_t",
     "id", "model", "t", "md", "rl", "sn", "friendly_name", "definition", "exposes", "features",
     "property", "type", "name", "mdl"]
)  # fmt: skip
SHAPED = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=30),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(KEYS, inner, max_size=6),
    max_leaves=25,
)
PAYLOADS = st.one_of(
    st.binary(max_size=200),
    st.text(max_size=200).map(str.encode),
    JSON.map(lambda d: json.dumps(d).encode()),
    SHAPED.map(lambda d: json.dumps(d).encode()),
)
RESTS = st.one_of(
    st.text(max_size=40),
    st.sampled_from(
        ["binary_sensor/n/o/config", "sensor/o/config", "status", "switch/a/b/c/config",
         "discovery/A4CF12/config", "discovery/A4CF12/sensors", "discovery//config"]
    ),
)  # fmt: skip


def check(out: list[Any]) -> None:
    for item in out:
        assert isinstance(item, DeviceAnnounced | DeviceGone | Ignored | Rejected), item
        if isinstance(item, Rejected | Ignored):
            assert item.reason.strip()
        if isinstance(item, DeviceAnnounced):
            assert item.device == "" or device_id(item.device) == item.device
            for text in (item.model, item.name, item.vendor_class):
                assert text is None or (0 < len(text) <= LABEL_MAX and text.isprintable())


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(rest=RESTS, payload=PAYLOADS)
def test_fuzz_homeassistant(rest: str, payload: bytes) -> None:
    check(homeassistant.parse("g1", rest, payload, NOW, 300))


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(payload=PAYLOADS)
def test_fuzz_zigbee2mqtt_devices(payload: bytes) -> None:
    check(zigbee2mqtt_devices("g1", payload))


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(payload=PAYLOADS)
def test_fuzz_shelly_announce(payload: bytes) -> None:
    check(shelly_announce("g1", payload))


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(rest=RESTS, payload=PAYLOADS)
def test_fuzz_tasmota_discovery(rest: str, payload: bytes) -> None:
    check(tasmota_discovery("g1", rest, payload))


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
@given(
    state=st.text(max_size=60),
    cls=st.one_of(st.none(), st.text(max_size=12), st.sampled_from(["door", "motion", "power"])),
    component=st.sampled_from(["binary_sensor", "sensor", "switch", "light"]),
)
def test_fuzz_any_state_topic(state: str, cls: str | None, component: str) -> None:
    body = {"stat_t": state, "dev_cla": cls, "dev": {"mdl": state, "name": cls}}
    check(homeassistant.parse("g1", f"{component}/x/config", json.dumps(body).encode(), NOW, 300))
