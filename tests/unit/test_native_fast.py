"""The native dialect's two parsers agree: the typed decoder for well-formed messages
(`_parse_well_formed`) and the careful one that gives each refusal its reason (`_parse_careful`).

Whatever the fast one takes, it must read exactly as the careful one does (the same readings,
the same instants, in UTC); whatever it does not take, the careful one decides. And it must
take the messages gateways actually send, or it saves nothing.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone

from hypothesis import given, settings
from hypothesis import strategies as st

from core.domain import Reading, SensorKind
from ingest.adapters.native import _parse_careful, _parse_well_formed, parse

LATEST = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
GW = "gw1"


def _same(fast: list[object], careful: list[object]) -> None:
    assert fast == careful
    for f in fast:
        assert isinstance(f, Reading)
        assert f.ts.tzinfo is UTC  # stored as given: an instant in UTC, not another offset
        assert type(f.value) is float


def test_what_gateways_send_takes_the_fast_way_and_reads_the_same() -> None:
    kinds = [k for k in SensorKind]
    items = [
        {
            "sensor": f"s{i}",
            "kind": k.value,
            "ts": f"2026-03-01T0{i % 10}:00:0{i % 7}Z",
            "value": 1 if k is not SensorKind.POWER else 12.5,
        }
        for i, k in enumerate(kinds)
    ]
    items.append({"sensor": "p", "kind": "power", "ts": "2026-03-01T18:30:00+09:00", "value": 3})
    payload = json.dumps({"readings": items, "fw": "1.2"}).encode()
    fast = _parse_well_formed(GW, payload, LATEST)
    assert fast is not None and len(fast) == len(items)
    _same(fast, _parse_careful(GW, payload, LATEST))
    assert fast[-1].ts == datetime(2026, 3, 1, 9, 30, tzinfo=UTC)  # type: ignore[union-attr]


def test_what_the_fast_way_does_not_take_is_refused_with_its_reason() -> None:
    bad = {"sensor": "s", "kind": "door", "ts": "2026-03-01T00:00:00Z", "value": 2}
    good = {"sensor": "t", "kind": "door", "ts": "2026-03-01T00:00:00Z", "value": 1}
    payload = json.dumps({"readings": [good, bad]}).encode()
    assert _parse_well_formed(GW, payload, LATEST) is None
    items = parse(GW, "readings", payload, LATEST, 0)
    assert isinstance(items[0], Reading)
    assert "readings[1]" in items[1].reason and "out of range" in items[1].reason  # type: ignore[union-attr]


_ZONES = st.sampled_from(
    [UTC, timezone(timedelta(hours=9)), timezone(timedelta(hours=-3, minutes=-30))]
)
_TS = st.one_of(
    st.datetimes(
        min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30), timezones=_ZONES
    ).map(lambda d: d.isoformat()),
    st.builds(
        lambda d, frac, zone: d.strftime("%Y-%m-%dT%H:%M:%S") + frac + zone,
        st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2030, 1, 1)),
        st.sampled_from(["", ".5", ".123456", ".1234567", ".000000001"]),
        st.sampled_from(["Z", "z", "", "+09:00", "+0900", "+09", "-00:00", "+24:00", " Z"]),
    ),
    st.text(max_size=30),
    st.integers(),
    st.none(),
)
_VALUE = st.one_of(
    st.integers(min_value=-5, max_value=5),
    st.integers(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0, 1, 2, 0.0, 1.0, 2.0, -0.0, 20000, 20000.0, 20000.5, 1e308, True, False]),
    st.text(max_size=5),
    st.none(),
    st.lists(st.integers(), max_size=2),
)
_KIND = st.one_of(
    st.sampled_from([k.value for k in SensorKind]), st.text(max_size=8), st.integers()
)
_SENSOR = st.one_of(st.text(max_size=8), st.sampled_from(["", " ", "\t", "s1"]), st.integers())


_RECENT = st.datetimes(  # LATEST is 2026-03-01 12:00 UTC: some after it
    min_value=datetime(2025, 1, 1), max_value=datetime(2026, 3, 2), timezones=_ZONES
).map(lambda d: d.isoformat())
_EDGES = [-1, 0, 1, 2, 3, 0.5, -0.0, 20000, 20000.0, 20000.5, 1e308, -1e308, -1e-300]


@st.composite
def _item(draw: st.DrawFn) -> object:
    """Mostly a reading near the edges of what is accepted, sometimes one field gone wild."""
    item = {
        "sensor": draw(st.sampled_from(["s1", "문", " s ", " ", "\u3000", ""])),
        "kind": draw(st.sampled_from([k.value for k in SensorKind])),
        "ts": draw(_RECENT),
        "value": draw(st.sampled_from(_EDGES)),
    }
    wild = {"sensor": _SENSOR, "kind": _KIND, "ts": _TS, "value": _VALUE}
    for name in draw(st.lists(st.sampled_from(list(item)), max_size=2)):
        if draw(st.booleans()):
            item.pop(name, None)
        else:
            item[name] = draw(wild[name])
    if draw(st.booleans()):
        item["extra"] = draw(st.one_of(st.integers(), st.text(max_size=3)))
    return draw(st.one_of(st.just(item), st.just(item), st.just(item), st.integers(), st.none()))


@st.composite
def _payload(draw: st.DrawFn) -> bytes:
    doc: object = {"readings": draw(st.lists(_item(), max_size=4))}
    if draw(st.integers(0, 9)) == 0:
        doc = draw(st.sampled_from([[], {"readings": {}}, {"reading": []}, "x", None]))
    text = json.dumps(doc, allow_nan=True)
    how = draw(st.integers(0, 9))
    if how == 0:  # a key given twice: both parsers must take the same one
        text = text.replace('{"sensor"', '{"sensor": "first", "sensor"', 1)
    elif how == 1:
        text = text + draw(st.sampled_from([" ", "\n", "x", "}"]))
    raw = text.encode()
    if how == 2:
        at = draw(st.integers(0, max(len(raw) - 1, 0)))
        raw = raw[:at] + draw(st.binary(min_size=1, max_size=3)) + raw[at + 1 :]
    return raw


@settings(max_examples=2000, deadline=None)
@given(st.one_of(_payload(), _item().map(lambda i: json.dumps({"readings": [i]}).encode())))
def test_the_fast_way_reads_only_what_the_careful_way_reads_the_same(payload: bytes) -> None:
    fast = _parse_well_formed(GW, payload, LATEST)
    if fast is not None:
        _same(fast, _parse_careful(GW, payload, LATEST))


_GOOD = st.fixed_dictionaries({
    "sensor": st.text(min_size=1, max_size=8).filter(lambda t: not t.isspace()),
    "kind": st.sampled_from(["door", "motion", "contact", "appliance"]),
    "ts": st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2026, 2, 28),
                       timezones=_ZONES).map(lambda d: d.isoformat()),
    "value": st.sampled_from([0, 1, 0.0, 1.0]),
})  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(st.lists(_GOOD, min_size=1, max_size=5))
def test_plain_readings_take_the_fast_way(items: list[dict[str, object]]) -> None:
    payload = json.dumps({"readings": items}).encode()
    fast = _parse_well_formed(GW, payload, LATEST)
    assert fast is not None
    _same(fast, _parse_careful(GW, payload, LATEST))
