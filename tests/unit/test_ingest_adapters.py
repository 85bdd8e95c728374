"""The native anbu dialect and the dialect router."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import ingest.adapters as adapters
from core.domain import GatewayStatus, Reading, Rejected, SensorKind
from ingest.adapters import DIALECTS, native, recognise, route, topic_filters

NOW = datetime(2026, 11, 22, 9, 5, tzinfo=UTC)
TOL = 300
FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"


def readings(*items: dict[str, Any]) -> bytes:
    return json.dumps({"readings": list(items)}).encode()


def item(**over: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "sensor": "door1",
        "kind": "door",
        "ts": "2026-11-22T09:00:00Z",
        "value": 1,
    }
    base.update(over)
    return {k: v for k, v in base.items() if v is not ...}


def parse_one(payload: bytes) -> Reading | GatewayStatus | Rejected:
    out = route("gw/gw-1/anbu/readings", payload, NOW, TOL)
    assert len(out) == 1
    return out[0]


def test_one_reading_becomes_a_frozen_reading() -> None:
    out = parse_one(readings(item()))
    assert out == Reading(
        "gw-1", "door1", SensorKind.DOOR, datetime(2026, 11, 22, 9, tzinfo=UTC), 1.0
    )


def test_many_readings_keep_order_and_timestamps_are_utc() -> None:
    payload = readings(
        item(sensor="pir1", kind="motion", ts="2026-11-22T18:00:00+09:00", value=1),
        item(sensor="plug1", kind="power", ts="2026-11-22T09:01:00.250Z", value=83.5),
    )
    out = route("gw/gw-1/anbu/readings", payload, NOW, TOL)
    assert [r.sensor for r in out if isinstance(r, Reading)] == ["pir1", "plug1"]
    first, second = out
    assert isinstance(first, Reading) and isinstance(second, Reading)
    assert first.ts == datetime(2026, 11, 22, 9, tzinfo=UTC) and first.ts.utcoffset() == timedelta(
        0
    )
    assert second.value == 83.5 and second.kind is SensorKind.POWER


def test_one_bad_reading_does_not_spoil_the_others() -> None:
    out = route("gw/g/anbu/readings", readings(item(value=7), item(sensor="door2")), NOW, TOL)
    assert isinstance(out[0], Rejected) and "readings[0]" in out[0].reason
    assert isinstance(out[1], Reading) and out[1].sensor == "door2"


@pytest.mark.parametrize(
    ("payload", "fragment"),
    [
        (b"\xff\xfe", "not UTF-8"),
        (b"{not json", "not JSON"),
        (b"NaN", "not JSON"),
        (b"[1, 2]", '"readings"'),
        (b'{"readings": {}}', "not a list"),
        (b'{"readings": []}', "empty"),
        (b'{"readings": [3]}', "not an object"),
        (readings(item(sensor=...)), "missing sensor"),
        (readings(item(ts=..., value=...)), "missing ts, value"),
        (readings(item(sensor="")), "non-empty"),
        (readings(item(kind="temperature")), "unknown kind"),
        (readings(item(ts="2026-11-22T09:00:00")), "no time zone"),
        (readings(item(ts="yesterday")), "unparseable"),
        (readings(item(ts=1763802000)), "ISO 8601"),
        (readings(item(ts="2026-11-22T09:10:01Z")), "future"),
        (readings(item(value=2)), "out of range for door"),
        (readings(item(kind="motion", value=0.5)), "out of range for motion"),
        (readings(item(kind="power", value=-1)), "out of range for power"),
        (readings(item(kind="power", value=20000.5)), "out of range for power"),
        (readings(item(value="1")), "must be a number"),
        (readings(item(value=True)), "must be a number"),
        (
            b'{"readings": [{"sensor": "p", "kind": "power", "ts": "2026-11-22T09:00:00Z", "value": 1e999}]}',
            "not finite",
        ),
        (
            b'{"readings": [{"sensor": "p", "kind": "power", "ts": "2026-11-22T09:00:00Z", "value": Infinity}]}',
            "not JSON",
        ),
    ],
)
def test_bad_input_is_rejected_with_a_reason(payload: bytes, fragment: str) -> None:
    out = parse_one(payload)
    assert isinstance(out, Rejected)
    assert fragment in out.reason


def test_future_tolerance_is_the_boundary() -> None:
    at_edge = (NOW + timedelta(seconds=TOL)).isoformat()
    assert isinstance(parse_one(readings(item(ts=at_edge))), Reading)
    past_edge = (NOW + timedelta(seconds=TOL + 1)).isoformat()
    assert isinstance(parse_one(readings(item(ts=past_edge))), Rejected)


def test_power_limits_are_inclusive() -> None:
    for value in (0, 20000):
        out = parse_one(readings(item(sensor="p", kind="power", value=value)))
        assert isinstance(out, Reading) and out.value == value


@pytest.mark.parametrize(
    ("payload", "online"), [(b"online", True), (b"offline", False), (b"online\n", True)]
)
def test_status(payload: bytes, online: bool) -> None:
    assert route("gw/gw-7/anbu/status", payload, NOW, TOL) == [GatewayStatus("gw-7", online)]


@pytest.mark.parametrize("payload", [b"", b"up", b"\xff", b"ONLINE1"])
def test_bad_status_is_rejected(payload: bytes) -> None:
    (out,) = route("gw/gw-7/anbu/status", payload, NOW, TOL)
    assert isinstance(out, Rejected)


@pytest.mark.parametrize(
    ("topic", "fragment"),
    [
        ("gw/gw-1/zigbee9/x", "unknown dialect"),
        ("gw/gw-1/anbu", "not gw/<gateway>"),
        ("gw//anbu/readings", "not gw/<gateway>"),
        ("home/gw-1/anbu/readings", "not gw/<gateway>"),
        ("gw/gw-1/anbu/", "not gw/<gateway>"),
        ("gw/gw-1/anbu/config", "unknown anbu topic"),
    ],
)
def test_bad_topics_are_rejected(topic: str, fragment: str) -> None:
    (out,) = route(topic, readings(item()), NOW, TOL)
    assert isinstance(out, Rejected) and fragment in out.reason


def test_one_subscription_and_the_table_tells_layouts_apart() -> None:
    """One filter: several would overlap (an ESPHome node's `<node>/sensor/x/state` is also a
    Zigbee2MQTT attribute's shape) and the broker would deliver a message once per filter."""
    assert [d.segment for d in DIALECTS][:1] == ["anbu"]
    assert topic_filters() == ["gw/+/#"]
    assert len({d.segment for d in DIALECTS}) == len(DIALECTS)
    # a segment wins over a shape: a node named like a segment is read by that segment
    assert recognise("tele", "plug/SENSOR") == (adapters.BY_SEGMENT["tele"], "plug/SENSOR")
    found = recognise("shellyplus1pm-a8032ab12345", "online")
    assert found is not None and found[0].segment == "shelly"
    assert found[1] == "shellyplus1pm-a8032ab12345/online"
    found = recognise("hall-node", "binary_sensor/door/state")
    assert found is not None and found[0].segment == "esphome"
    assert recognise("hall-node", "whatever/else") is None


def test_fixture_payloads_parse() -> None:
    for path in sorted(FIXTURES.glob("native_*.json")):
        spec = json.loads(path.read_text())
        out = route(spec["topic"], json.dumps(spec["payload"]).encode(), NOW, TOL)
        kinds = [type(x).__name__ for x in out]
        assert kinds == spec["expect"], path.name


def test_reasons_are_printable_and_bounded() -> None:
    nasty = "\x00\ud800" + "x" * 500
    out = parse_one(readings(item(kind=nasty)))
    assert isinstance(out, Rejected)
    assert out.reason.isprintable() and len(out.reason) < 200
    out.reason.encode("utf-8")  # no lone surrogates


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=30),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)
reading_like = st.fixed_dictionaries(
    {},
    optional={
        "sensor": json_values | st.sampled_from(["door1", ""]),
        "kind": json_values | st.sampled_from([k.value for k in SensorKind]),
        "ts": json_values
        | st.sampled_from(
            [
                "2026-11-22T09:00:00Z",
                "2026-11-22T09:00:00",
                "2999-01-01T00:00:00+14:00",
                "0001-01-01T00:00:00+05:00",
            ]
        ),
        "value": json_values | st.sampled_from([0, 1, 0.0, 9999.9, -0.0, 20000, 1e308]),
    },
)


@settings(max_examples=400, deadline=None)
@given(
    topic=st.sampled_from(["gw/g1/anbu/readings", "gw/g1/anbu/status", "gw/g1/other/x"])
    | st.text(max_size=40),
    payload=st.binary(max_size=200)
    | st.lists(reading_like, max_size=4).map(lambda rs: json.dumps({"readings": rs}).encode()),
)
def test_any_input_gives_items_never_an_exception(topic: str, payload: bytes) -> None:
    out = route(topic, payload, NOW, TOL)
    assert out, "every message yields at least one item"
    for x in out:
        assert isinstance(x, Reading | GatewayStatus | Rejected)
        if isinstance(x, Reading):
            assert x.ts.utcoffset() == timedelta(0) and x.ts <= NOW + timedelta(seconds=TOL)
            assert x.kind in SensorKind
        if isinstance(x, Rejected):
            x.reason.encode("utf-8")


def test_deeply_nested_json_is_rejected_not_crashing() -> None:
    assert isinstance(parse_one(b"[" * 100_000 + b"]" * 100_000), Rejected)


def test_native_parse_signature() -> None:
    out = native.parse("g", "readings", readings(item()), NOW, TOL)
    assert isinstance(out[0], Reading) and out[0].gateway == "g"
