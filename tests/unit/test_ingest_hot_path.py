"""The storing process's quicker ways give what the plain ways give.

Readings built through their slots equal (and hash as) the dataclass's own; the latest
activity, looked for from the newest reading back, is the one a walk from the oldest finds;
batches taken in ahead are parsed in the parsing thread, in order, and a message its parser
could not take is left to be parsed when it is stored.
"""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime, timedelta
from multiprocessing import Pipe
from multiprocessing.connection import wait
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from core.domain import OFF_MEMORY_S, RUN_KEPT, Reading, SensorKind, new_reading
from detectors.evidence import build_evidence
from ingest import store_process
from ingest.state import (
    RUN_LOOKBACK,
    Resolved,
    _is_activity,
    _last_activity,
    _last_on,
    _needs_stored,
    _run_before,
    _State,
    new_resolved,
)
from ingest.store import Store
from ingest.store_process import Ahead
from registry import SensorRef

T0 = datetime(2026, 12, 1, tzinfo=UTC)


class _NoDatabase:
    """The taking-in thread prepares batches without a database: any use of one fails."""

    def connection(self) -> Any:
        raise AssertionError("the taking-in thread used the database")


_STORE = Store(_NoDatabase())  # never loaded: every reading misses the (empty) registry


@given(st.text(), st.text(), st.sampled_from(SensorKind), st.floats(allow_nan=False))
def test_a_reading_built_through_its_slots_is_the_same_reading(
    gateway: str, sensor: str, kind: SensorKind, value: float
) -> None:
    quick, plain = (
        new_reading(gateway, sensor, kind, T0, value),
        Reading(gateway, sensor, kind, T0, value),
    )
    assert quick == plain and hash(quick) == hash(plain) and repr(quick) == repr(plain)
    with pytest.raises(dataclasses.FrozenInstanceError):
        quick.value = 1.0  # type: ignore[misc]
    ref = SensorRef(1, 2, kind, "kitchen")
    assert new_resolved(quick, ref) == Resolved(plain, ref)


def _walked(items: list[Resolved], previous: float | None) -> Resolved | None:
    """The latest activity as a walk from the oldest reading finds it."""
    last, prev = None, previous
    for r in items:
        if _is_activity(r.ref, r.reading.value, prev):
            last = r
        prev = r.reading.value
    return last


@given(
    st.sampled_from([k for k in SensorKind if k not in (SensorKind.MOTION, SensorKind.CONTACT)]),
    st.booleans(),
    st.lists(st.sampled_from([0.0, 1.0, 2.0, 5.0, 30.0, 400.0]), min_size=1, max_size=12),
    st.one_of(st.none(), st.sampled_from([0.0, 1.0, 30.0])),
)
def test_the_latest_activity_looked_for_from_the_newest_is_the_walks(
    kind: SensorKind, automatic: bool, values: list[float], previous: float | None
) -> None:
    ref = SensorRef(1, 2, kind, "kitchen", automatic)
    items = [
        Resolved(Reading("gw", "s", kind, T0 + timedelta(minutes=n), v), ref)
        for n, v in enumerate(values)
    ]
    assert _last_activity(items, previous) is _walked(items, previous)


def _at(t: float) -> datetime:
    return datetime.fromtimestamp(t, UTC)


@given(
    st.sampled_from([SensorKind.MOTION, SensorKind.CONTACT]),
    st.lists(
        st.tuples(
            st.sampled_from([0.0, *[1.0] * 8]),  # long runs of "on": past what is read back
            st.sampled_from([1, 60, 239, 240, 300, 570, 600, 603, 630, 900, 90_000]),
        ),
        min_size=1,
        max_size=40,
    ),
    st.integers(0, 40),
    st.booleans(),
)
@example(  # a PIR stuck on, re-sending past the readings read back; its last one redelivered
    SensorKind.MOTION,
    [(0.0, 60), (1.0, 60), *[(1.0, g) for g in [600, 630, 570] * 4]],
    14,
    True,
)
@settings(max_examples=400)
def test_a_motion_or_contact_sensors_latest_doing_is_the_detectors(
    kind: SensorKind, readings: list[tuple[float, int]], cut: int, late: bool
) -> None:
    """Ingest's latest activity of a motion or contact sensor, for a batch after stored
    history, is the latest "on" the detectors' evidence counts from the same readings: one
    rule for an "on" repeated (a state re-reported, a copy, a timer), live as offline; also
    when the batch comes late, beginning with a copy of the last reading stored (a redelivery:
    its run is read back from the stored readings, as a late batch's is)."""
    rows, t = [], T0.timestamp()
    for value, gap in readings:
        t += gap
        rows.append((t, value))
    cut = min(cut, len(rows) - 1)
    history, batch = rows[:cut], rows[cut:]
    if late and history:
        batch = [history[-1], *batch]
    ref = SensorRef(1, 2, kind, "kitchen")
    state = None
    if history:
        offs = [t for t, v in history if v != 1.0]
        off = _at(offs[-1]) if offs else None
        state = _State(history[-1][1], _at(history[0][0]), _at(history[-1][0]), off)
    items = [Resolved(Reading("gw", "s", kind, _at(t), v), ref) for t, v in batch]
    first = batch[0][0]
    before = [(t, v) for t, v in history if t < first]
    stored = [(_at(t), v) for t, v in reversed(before)][: RUN_KEPT + 1]
    if not (late and history) and _needs_stored(state, items):  # read back a week at most
        stored = [(ts, v) for ts, v in stored if ts >= items[0].reading.ts - RUN_LOOKBACK]
    day_offs = [t for t, v in before if v != 1.0 and t >= first - OFF_MEMORY_S]
    found = _at(day_offs[-1]) if day_offs else None
    read_back = (late and bool(history)) or _needs_stored(state, items)
    run = _run_before(state, items[0].reading.ts, read_back, stored, found)
    previous = before[-1][1] if before else None
    live = _last_on(items, previous, run)

    ev = build_evidence([(t, "s", kind.value, "kitchen", v) for t, v in rows])
    ons = ev.event_t[ev.event_on & (ev.event_t >= first)]
    assert (live.reading.ts.timestamp() if live else None) == (ons[-1] if ons.size else None)


def _batch(n: int) -> tuple[int, datetime, list[tuple[str, bytes, bool, datetime]]]:
    body = {"readings": [{"sensor": "p", "kind": "power", "ts": T0.isoformat(), "value": n}]}
    return n, T0, [("gw/g1/anbu/readings", json.dumps(body).encode(), False, T0)]


def test_batches_taken_in_ahead_are_parsed_in_order_and_the_pipe_s_end_comes_after_them(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(store_process, "PARSE_AHEAD_BYTES", 1)  # these small ones too
    theirs, ours = Pipe()
    ahead = Ahead(ours, _STORE, 300)
    assert not ahead.poll() and not wait([ahead.fileno()], 0.05)
    theirs.send(_batch(1))
    theirs.send(_batch(2))
    theirs.close()  # the parent is gone
    assert wait([ahead.fileno()], 10)
    first, second = ahead.recv(), ahead.recv()
    assert [first[0], second[0]] == [1, 2]
    for number, (_, _, messages, prepared) in enumerate([first, second], 1):
        assert prepared is not None and prepared.batch.missed  # nothing registered here
        (message,) = messages
        assert message.parsed is not None
        (reading,) = message.parsed
        assert isinstance(reading, Reading) and reading.value == number
    for _ in range(2):  # said again to every later call
        assert wait([ahead.fileno()], 10)
        with pytest.raises(EOFError):
            ahead.recv()


def test_a_message_the_parsing_thread_fails_on_is_left_to_be_parsed_when_stored(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def broken(*_: object) -> None:
        raise RuntimeError("a parser bug")

    monkeypatch.setattr(store_process, "parse_ahead", broken)
    monkeypatch.setattr(store_process, "PARSE_AHEAD_BYTES", 1)
    theirs, ours = Pipe()
    ahead = Ahead(ours, _STORE, 300)
    theirs.send(_batch(1))
    _, _, (message,), _ = ahead.recv()
    assert message.parsed is None and message.topic == "gw/g1/anbu/readings"


def test_a_small_batch_is_left_to_be_parsed_when_stored() -> None:
    """Parsing a small batch in the taking-in thread would only hold the GIL from the storing
    thread between its round trips to the database."""
    theirs, ours = Pipe()
    ahead = Ahead(ours, _STORE, 300)
    theirs.send(_batch(1))
    _, _, (message,), _ = ahead.recv()
    assert message.parsed is None


def test_a_batch_that_cannot_be_taken_in_stops_the_process_loudly(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Not mistaken for the parent leaving (a quiet exit 0): said, and raised."""
    theirs, ours = Pipe()
    ahead = Ahead(ours, _STORE, 300)
    theirs.send("not a batch")
    assert wait([ahead.fileno()], 10)
    with pytest.raises(RuntimeError, match="taking in a batch failed"):
        ahead.recv()
    assert "taking in a batch failed" in caplog.text
