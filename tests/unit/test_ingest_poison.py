"""One message must never stop ingest: every parser survives any Unicode, and `route` turns a
parser's exception into that message's dead letter.

The Shelly parser took `"switch:²"` for a component number (`"²".isdigit()` is true, `int("²")`
raises); nothing caught it, and the storing process retried that batch for ever.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import ingest.adapters as adapters
from core.domain import Rejected
from ingest.adapters import DIALECTS, Dialect, route
from ingest.store_process import refuses_data

NOW = datetime(2026, 11, 22, 0, 30, tzinfo=UTC)
TOL = 300

# Unrestricted text: every code point class, superscript and other-script digits included.
TEXT = st.text(st.characters(codec="utf-8"), max_size=12) | st.sampled_from(
    ["²", "٣", "১", "①", "Ⅻ", "𝟙", "½", "-1", "1e999", "0x10", " 7", "switch:²", "emeter:٣"]
)
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | TEXT,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(TEXT, inner, max_size=5),
    max_leaves=16,
)

SHELLY_POISON = json.dumps(
    {
        "src": "shellyplus1pm-a8032ab12345",
        "method": "NotifyStatus",
        "params": {"ts": 1795000000.0, "switch:²": {"id": 0, "output": True, "apower": 12.5}},
    }
).encode()


def test_shelly_component_id_in_another_script_is_no_crash() -> None:
    out = parse_with("shelly", "shellyplus1pm-a8032ab12345/events/rpc", SHELLY_POISON)
    assert out and all(not isinstance(x, Exception) for x in out)


def parse_with(segment: str, rest: str, payload: bytes) -> list[Any]:
    dialect = next(d for d in DIALECTS if d.segment == segment)
    return dialect.parse("GW", rest, payload, NOW, TOL)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    dialect=st.sampled_from(DIALECTS),
    parts=st.lists(TEXT | st.sampled_from(["events", "rpc", "status", "SENSOR", "state"]),
                   min_size=1, max_size=4),
    doc=JSON,
    raw=st.booleans(),
)  # fmt: skip
def test_every_parser_survives_unrestricted_unicode(
    dialect: Dialect, parts: list[str], doc: Any, raw: bool
) -> None:
    """Each parser directly, not through route's safety net: a crash here is a bug to fix."""
    payload = (str(doc) if raw else json.dumps(doc)).encode("utf-8", "surrogatepass")
    rest = "/".join(parts)
    out = dialect.parse("GW", rest, payload, NOW, TOL)
    assert isinstance(out, list)


@settings(max_examples=200, deadline=None)
@given(
    keys=st.lists(TEXT, min_size=1, max_size=4),
    values=st.lists(JSON, min_size=1, max_size=4),
)
def test_shelly_notify_status_with_any_component_names(keys: list[str], values: list[Any]) -> None:
    params: dict[str, Any] = {"ts": 1795000000.0}
    for key, value in zip(keys, values, strict=False):
        params[f"switch:{key}"] = value if isinstance(value, dict) else {"output": value}
    payload = json.dumps({"method": "NotifyStatus", "params": params}).encode()
    assert isinstance(route("gw/GW/shelly/dev/events/rpc", payload, NOW, TOL), list)


def test_route_turns_a_parser_exception_into_a_dead_letter(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(*_: Any) -> list[Any]:
        raise ValueError("secret payload detail")

    table = dict(adapters.BY_SEGMENT)
    table["shelly"] = Dialect(segment="shelly", parse=broken)
    monkeypatch.setattr(adapters, "BY_SEGMENT", table)
    out = route("gw/GW/shelly/dev/events/rpc", b"{}", NOW, TOL)
    assert len(out) == 1 and isinstance(out[0], Rejected)
    assert "shelly adapter failed" in out[0].reason and "ValueError" in out[0].reason
    assert any(r.getMessage() == "adapter failed on a message" for r in caplog.records)
    # other dialects still work
    ok = route("gw/GW/anbu/status", b"online", NOW, TOL)
    assert ok and not isinstance(ok[0], Rejected)


def test_a_bare_exception_is_not_swallowed_beyond_exception(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """KeyboardInterrupt and SystemExit still stop the process: only Exception is a dead letter."""

    def interrupted(*_: Any) -> list[Any]:
        raise KeyboardInterrupt("interrupted inside a parser")

    table = dict(adapters.BY_SEGMENT)
    table["esphome"] = Dialect(segment="esphome", parse=interrupted)
    monkeypatch.setattr(adapters, "BY_SEGMENT", table)
    with pytest.raises(KeyboardInterrupt, match="interrupted inside a parser"):
        route("gw/GW/esphome/node/status", b"online", NOW, TOL)


@pytest.mark.parametrize(
    ("error", "one_message"),
    [
        (psycopg.errors.NumericValueOutOfRange, True),
        (psycopg.errors.UniqueViolation, True),
        (psycopg.errors.RaiseException, True),  # a trigger's refusal (psycopg: ProgrammingError)
        (psycopg.errors.FeatureNotSupported, True),  # e.g. a compressed chunk
        (psycopg.errors.UndefinedTable, False),  # every message alike: retried, never dead
        (psycopg.errors.InsufficientPrivilege, False),
        (psycopg.errors.DiskFull, False),
        (psycopg.errors.AdminShutdown, False),
        (psycopg.errors.DeadlockDetected, False),
        (psycopg.errors.LockNotAvailable, False),
    ],
)
def test_only_a_refusal_of_the_data_can_make_a_dead_letter(
    error: type[psycopg.Error], one_message: bool
) -> None:
    assert refuses_data(error("x")) is one_message


def test_a_bug_in_the_code_is_not_the_databases_refusal() -> None:
    assert refuses_data(ValueError("x")) is False
