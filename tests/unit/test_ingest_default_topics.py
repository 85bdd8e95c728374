"""Topic layouts as the devices ship: Shelly Gen1/Gen2+/BLU, ESPHome under its node name,
Zigbee2MQTT attribute output, Tasmota inputs and bridges, each against documented payloads."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.domain import Rejected
from ingest.adapters import (
    BY_SEGMENT,
    esphome,
    homeassistant,
    recognise,
    route,
    shelly,
    shelly_gen1,
    tasmota,
    zigbee2mqtt,
)
from ingest.adapters.common import DeviceReport, Ignored
from tests.unit.test_ingest_dialects import assert_sane, check, encode

NOW = datetime(2026, 11, 22, 0, 30, tzinfo=UTC)
TOL = 300
FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
LAYOUT_FILES = (
    "shelly_gen2_default.json",
    "shelly_gen1.json",
    "esphome_default.json",
    "zigbee2mqtt_attribute.json",
    "tasmota_inputs_bridges.json",
)


def cases() -> list[Any]:
    out = []
    for name in LAYOUT_FILES:
        spec = json.loads((FIXTURES / name).read_text())
        out += [pytest.param(c, id=f"{name[:-5]}: {c['name']}") for c in spec["cases"]]
    return out


@pytest.mark.parametrize("case", cases())
def test_documented_payloads_on_default_topics(case: dict[str, Any]) -> None:
    out = route(case["topic"], encode(case["payload"]), NOW, TOL)
    assert len(out) == len(case["expect"]), out
    for item, want in zip(out, case["expect"], strict=True):
        check(item, want)


def test_every_fixture_cites_its_documentation_and_has_odd_cases() -> None:
    for name in LAYOUT_FILES:
        spec = json.loads((FIXTURES / name).read_text())
        assert spec["source"].startswith("https://"), name
        assert spec["cases"], name
        assert all(c["source"].startswith("https://") for c in spec["cases"]), name
        types = {w["type"] for c in spec["cases"] for w in c["expect"]}
        assert {"DeviceReport", "Rejected", "Ignored"} <= types, name


@pytest.mark.parametrize(
    ("first", "rest", "segment"),
    [
        ("shellyplus1pm-a8032ab12345", "events/rpc", "shelly"),
        ("shelly1pmg3-34b7dac12345", "status/switch:0", "shelly"),
        ("shellyplusplugs-e86beae8d1a0", "online", "shelly"),
        ("my-plug", "events/rpc", "shelly"),
        ("hall-node", "status", "esphome"),
        ("hall-node", "sensor/power/state", "esphome"),
        ("hall-node", "climate/heater/mode/state", "esphome"),
        ("shellies", "shelly1-34945472A190/relay/0", "shellies"),
        ("zigbee2mqtt", "front_door/contact", "zigbee2mqtt"),
        ("homeassistant", "status", "homeassistant"),  # not an ESPHome node: a segment wins
        ("tasmota", "discovery/A4CF12345678/config", "tasmota"),
    ],
)
def test_the_topic_shape_names_the_dialect(first: str, rest: str, segment: str) -> None:
    found = recognise(first, rest)
    assert found is not None and found[0] is BY_SEGMENT[segment]


@pytest.mark.parametrize(
    ("first", "rest"),
    [
        ("hall-node", "online"),  # not ESPHome's status leaf
        ("shellyplus1pm-a8032ab1234", "online"),  # 11 hex digits: not a Gen2 id
        ("hall-node", "gadget/x/state"),  # not an ESPHome component
        ("kitchen", "binary_sensor/x/y/config"),  # a discovery config outside homeassistant/
    ],
)
def test_other_shapes_are_not_claimed(first: str, rest: str) -> None:
    assert recognise(first, rest) is None
    (out,) = route(f"gw/GW/{first}/{rest}", b"1", NOW, TOL)
    assert isinstance(out, Rejected) and "unknown dialect" in out.reason


def test_zigbee2mqtt_attribute_and_json_agree() -> None:
    """attribute_and_json publishes both: the same value for the same device and kind."""
    (a,) = route("gw/GW/zigbee2mqtt/hall/door/contact", b"false", NOW, TOL)
    (j,) = route("gw/GW/zigbee2mqtt/hall/door", b'{"contact": false}', NOW, TOL)
    assert isinstance(a, DeviceReport) and isinstance(j, DeviceReport)
    assert (a.device, a.values) == (j.device, j.values) == ("hall/door", j.values)


# -- fuzz: each new parser, directly, with unrestricted Unicode --------------------------------

TEXT = st.text(st.characters(exclude_categories=()), max_size=12)
"""Every code point, lone surrogates included (escaped in JSON, passed through in raw bytes)."""
KEYS = st.sampled_from(
    ["Switch1", "Switch12", "Button1", "Action", "RfReceived", "Data", "ZbReceived", "Name",
     "Device", "Contact", "Occupancy", "Power", "ActivePower", "BatteryPercentage",
     "LinkQuality", "ENERGY", "Total", "Time", "method", "params", "events", "data", "address",
     "window", "door", "motion", "battery", "rssi", "ts", "em:0", "em1:1", "em1data:0",
     "bthomesensor:200", "value", "total_act_power", "act_power", "state", "bat"]
)  # fmt: skip
SCALARS = st.none() | st.booleans() | st.integers() | st.floats() | TEXT
JSON = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(KEYS | TEXT, inner, max_size=5),
    max_leaves=20,
)
LEVELS = TEXT | st.sampled_from(
    ["relay", "0", "1", "power", "energy", "input", "emeter", "total", "sensor", "state",
     "motion", "battery", "online", "status", "announce", "events", "rpc", "SENSOR", "RESULT",
     "contact", "occupancy", "linkquality", "binary_sensor", "light", "switch", "debug"]
)  # fmt: skip
PARSERS = st.sampled_from(
    [shelly_gen1.parse, shelly.parse, esphome.parse, zigbee2mqtt.parse, tasmota.parse_tele,
     tasmota.parse_stat, tasmota.parse_cmnd, tasmota.parse_discovery, homeassistant.parse]
)  # fmt: skip


def payloads() -> st.SearchStrategy[bytes]:
    as_json = JSON.map(lambda d: json.dumps(d).encode("utf-8", "surrogatepass"))
    as_text = TEXT.map(lambda s: s.encode("utf-8", "surrogatepass"))
    return as_json | as_text | st.binary(max_size=48)


@settings(max_examples=800, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(parse=PARSERS, levels=st.lists(LEVELS, min_size=1, max_size=5), payload=payloads())
def test_fuzz_new_parsers_never_raise_and_every_refusal_has_a_reason(
    parse: Any, levels: list[str], payload: bytes
) -> None:
    out = parse("GW", "/".join(levels), payload, NOW, TOL)
    assert isinstance(out, list) and out
    for item in out:
        assert_sane(item)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(first=LEVELS, rest=st.lists(LEVELS, min_size=1, max_size=5), payload=payloads())
def test_fuzz_route_by_shape(first: str, rest: list[str], payload: bytes) -> None:
    """Through route, but any exception would show as an 'adapter failed' dead letter."""
    for item in route(f"gw/GW/{first}/{'/'.join(rest)}", payload, NOW, TOL):
        assert_sane(item)
        assert not (isinstance(item, Rejected) and "adapter failed" in item.reason), item


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(body=st.dictionaries(KEYS | TEXT, JSON, max_size=6), key=TEXT, named=st.booleans())
def test_fuzz_zigbee2tasmota_and_rf(body: dict[str, Any], key: str, named: bool) -> None:
    doc = {"ZbReceived": {key: body}, "RfReceived": body}
    if named:
        doc["ZbReceived"][key]["Name"] = key
    raw = json.dumps(doc).encode("utf-8", "surrogatepass")
    for leaf in ("SENSOR", "RESULT"):
        for item in tasmota.parse_tele("GW", f"bridge/{leaf}", raw, NOW, TOL):
            assert_sane(item)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.dictionaries(KEYS | TEXT, JSON, max_size=6), ts=SCALARS)
def test_fuzz_blu_events(data: dict[str, Any], ts: Any) -> None:
    doc = {"method": "NotifyEvent", "params": {"ts": ts, "events": [{"data": data, "ts": ts}]}}
    raw = json.dumps(doc).encode("utf-8", "surrogatepass")
    for item in shelly.parse("GW", "dev/events/rpc", raw, NOW, TOL):
        assert_sane(item)
        assert isinstance(item, DeviceReport | Ignored | Rejected)
