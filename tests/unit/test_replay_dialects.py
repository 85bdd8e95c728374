"""The replay's encoders: what each dialect publishes parses back, through ingest's own adapter,
into the reading that was recorded (same sensor id as registered, kind, value and time)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.domain import Reading, SensorKind
from ingest.adapters import route
from ingest.adapters.common import DeviceReport
from simulators.dialects import DIALECTS, TIMELESS, Event, sensor_id

NOW = datetime(2026, 11, 22, 0, 30, tzinfo=UTC)  # the time ingest receives the message
TOL = 300
GW = "replay-uci-a"
KST = timezone(timedelta(hours=9))
RECORDED = datetime(2011, 11, 28, 10, 21, 24, tzinfo=KST)
KINDS = ("door", "motion", "contact", "appliance", "power")
VALUES = {"power": (0.0, 81.0, 12.3, 2150.5)}


def event(kind: str, value: float, sensor: str = "pir_basin", ts: datetime = RECORDED) -> Event:
    return Event(ts=ts, home="uci-a", sensor=sensor, kind=kind, room="kitchen", value=value)


def round_trip(dialect: str, e: Event) -> tuple[str, bytes, Reading]:
    """What the gateway publishes, and the reading ingest makes of it once the registry (the
    sensor registered under `sensor_id`, with the event's kind) is consulted, as the store does."""
    topic, payload = DIALECTS[dialect](GW, e)
    items = route(topic, payload, NOW, TOL)
    assert len(items) == 1, items
    item = items[0]
    if isinstance(item, Reading):
        return topic, payload, item
    assert isinstance(item, DeviceReport), item
    assert (item.gateway, item.device, item.whole_device) == (GW, sensor_id(dialect, e), False)
    value = next(v for kind, v in item.values if kind.value == e.kind)
    assert item.stamped is (dialect not in TIMELESS)
    return topic, payload, Reading(item.gateway, item.device, SensorKind(e.kind), item.ts, value)


def expected(dialect: str, e: Event) -> Reading:
    ts = NOW if dialect in TIMELESS else e.ts
    return Reading(GW, sensor_id(dialect, e), SensorKind(e.kind), ts, e.value)


CASES = [
    pytest.param(dialect, kind, value, id=f"{dialect}-{kind}-{value:g}")
    for dialect in DIALECTS
    for kind in KINDS
    for value in VALUES.get(kind, (1.0, 0.0))
]


@pytest.mark.parametrize(("dialect", "kind", "value"), CASES)
def test_every_kind_arrives_as_the_recorded_reading(dialect: str, kind: str, value: float) -> None:
    e = event(kind, value)
    _, _, reading = round_trip(dialect, e)
    assert reading == expected(dialect, e)


@pytest.mark.parametrize("kind", KINDS)
def test_shelly_publishes_a_notify_status_partial_update(kind: str) -> None:
    e = event(kind, 1.0, sensor="maindoor")
    topic, payload, _ = round_trip("shelly", e)
    body: dict[str, Any] = json.loads(payload)
    if kind == "motion":  # ingest reads no motion from a Shelly: the gateway's native topic
        assert topic == f"gw/{GW}/anbu/readings"
        return
    assert topic == f"gw/{GW}/shelly/maindoor/events/rpc"
    assert body["method"] == "NotifyStatus"
    assert body["dst"] == "maindoor/events"
    assert body["src"].startswith("shellyplus") and len(body["src"].rsplit("-", 1)[1]) == 12
    assert body["params"]["ts"] == e.ts.timestamp()
    components = {k: v for k, v in body["params"].items() if k != "ts"}
    want = {
        "door": {"input:0": {"id": 0, "state": True}},
        "contact": {"input:0": {"id": 0, "state": True}},
        "power": {"switch:0": {"id": 0, "apower": 1.0}},
        "appliance": {"switch:0": {"id": 0, "output": True, "source": "button"}},
    }[kind]
    assert components == want


def test_shelly_device_id_is_stable_per_sensor() -> None:
    a = json.loads(DIALECTS["shelly"](GW, event("power", 3.0, "plug_tv"))[1])["src"]
    b = json.loads(DIALECTS["shelly"](GW, event("power", 9.0, "plug_tv"))[1])["src"]
    c = json.loads(DIALECTS["shelly"](GW, event("power", 9.0, "plug_kettle"))[1])["src"]
    assert a == b != c


@pytest.mark.parametrize(
    ("kind", "value", "topic", "payload"),
    [
        ("door", 1.0, "maindoor/binary_sensor/door/state", b"ON"),
        ("motion", 0.0, "pir-basin/binary_sensor/motion/state", b"OFF"),
        ("contact", 1.0, "pir-basin/binary_sensor/contact/state", b"ON"),
        ("appliance", 0.0, "microwave/binary_sensor/appliance/state", b"OFF"),
        ("power", 81.0, "plug-fridge/sensor/power/state", b"81.0"),
        ("power", 12.3, "plug-fridge/sensor/power/state", b"12.3"),
    ],
)
def test_esphome_publishes_plain_state_strings(
    kind: str, value: float, topic: str, payload: bytes
) -> None:
    sensor = {"door": "maindoor", "appliance": "microwave", "power": "plug_fridge"}
    e = event(kind, value, sensor=sensor.get(kind, "pir_basin"))
    wire_topic, wire_payload, reading = round_trip("esphome", e)
    assert (wire_topic, wire_payload) == (f"gw/{GW}/esphome/{topic}", payload)
    assert reading.sensor == topic.split("/")[0] + "/" + kind  # registered as <node>/<object id>
    assert reading.ts == NOW  # no time in the payload: the time of receipt


def test_registered_ids_are_distinct_per_sensor() -> None:
    sensors = ["pir_basin", "pir_shower", "plug_fridge", "maindoor", "a1", "a_1"]
    for dialect in DIALECTS:
        ids = {sensor_id(dialect, event("motion", 1.0, s)) for s in sensors}
        assert len(ids) == len(sensors), dialect


@given(
    dialect=st.sampled_from(sorted(DIALECTS)),
    kind=st.sampled_from(KINDS),
    sensor=st.from_regex(r"[a-z0-9_]{1,24}", fullmatch=True),
    seconds=st.integers(0, 36 * 365 * 86400),  # 1990 up to before NOW
    binary=st.booleans(),
    watts=st.integers(0, 200_000).map(lambda tenths: tenths / 10),
)
def test_any_recorded_row_round_trips(
    dialect: str, kind: str, sensor: str, seconds: int, binary: bool, watts: float
) -> None:
    ts = datetime(1990, 1, 1, tzinfo=KST) + timedelta(seconds=seconds)
    e = event(kind, watts if kind == "power" else float(binary), sensor=sensor, ts=ts)
    _, _, reading = round_trip(dialect, e)
    assert reading == expected(dialect, e)
