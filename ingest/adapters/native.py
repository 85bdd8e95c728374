"""The native anbu dialect: `gw/<id>/anbu/readings` (JSON) and `gw/<id>/anbu/status`.

A readings message carries one or many readings; each is checked on its own, so one bad
reading is rejected with its index while the rest of the message still counts.

Safety kinds (issue 20) take their value codes (core.domain.SAFETY_VALUES): `smoke`, `gas`,
`co`, `water_leak` and `tamper` 0 clear, 1 alarm, 2 the device's own test; `button` 0 cancel,
1 press, 2 long press, one reading per gesture:
`{"readings": [{"sensor": "pendant1", "kind": "button", "ts": "...Z", "value": 1}]}`.
"""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec

from core.domain import (
    BINARY_KINDS,
    SAFETY_VALUES,
    GatewayStatus,
    Reading,
    Rejected,
    SensorKind,
    new_reading,
)
from ingest.adapters.common import POWER_MAX_W

Parsed = Reading | GatewayStatus | Rejected

STATUS_VALUES: Mapping[str, bool] = {"online": True, "offline": False}
_FIELDS = ("sensor", "kind", "ts", "value")


def show(value: object, limit: int = 64) -> str:
    """A printable, ASCII-safe, bounded rendering of untrusted input for a reason text."""
    text = ascii(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def parse(
    gateway: str, subtopic: str, payload: bytes, now: datetime, future_tolerance_s: int
) -> list[Parsed]:
    """Everything one native message says, each item a Reading, a GatewayStatus or why not."""
    if subtopic == "readings":
        return _parse_readings(gateway, payload, now, future_tolerance_s)
    if subtopic == "status":
        return [_parse_status(gateway, payload)]
    return [Rejected(f"unknown anbu topic {show(subtopic)}: expected readings or status")]


def _parse_status(gateway: str, payload: bytes) -> GatewayStatus | Rejected:
    try:
        text = payload.decode("utf-8").strip()
    except UnicodeDecodeError:
        return Rejected("status payload is not UTF-8")
    if text not in STATUS_VALUES:
        return Rejected(f"status payload {show(text)} is neither online nor offline")
    return GatewayStatus(gateway=gateway, online=STATUS_VALUES[text])


def _reject_constant(name: str) -> float:
    raise ValueError(f"{name} is not a number")


# One decoder, reused: json.loads(..., parse_constant=...) would build a new one per message.
_DECODE = json.JSONDecoder(parse_constant=_reject_constant).decode


class _Item(msgspec.Struct, gc=False):
    sensor: str
    kind: str
    ts: str
    value: float  # a JSON integer too; never a bool, a NaN or a number past a float's range


class _Document(msgspec.Struct, gc=False):
    readings: list[_Item]


_DECODE_FAST = msgspec.json.Decoder(_Document).decode


def _parse_readings(
    gateway: str, payload: bytes, now: datetime, future_tolerance_s: int
) -> list[Parsed]:
    latest = now + timedelta(seconds=future_tolerance_s)
    readings = _parse_well_formed(gateway, payload, latest)
    return _parse_careful(gateway, payload, latest) if readings is None else readings


def _parse_careful(gateway: str, payload: bytes, latest: datetime) -> list[Parsed]:
    """Every reading of a message, each either a Reading or the reason it is refused."""
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError:
        return [Rejected("payload is not UTF-8")]
    try:
        document = _DECODE(text)
    except (ValueError, RecursionError) as exc:
        return [Rejected(f"payload is not JSON: {show(str(exc), 120)}")]
    if not isinstance(document, dict) or "readings" not in document:
        return [Rejected('payload is not an object with a "readings" list')]
    items = document["readings"]
    if not isinstance(items, list):
        return [Rejected('"readings" is not a list')]
    if not items:
        return [Rejected('"readings" is empty')]
    return [_parse_one(gateway, item, index, latest) for index, item in enumerate(items)]


def _parse_well_formed(gateway: str, payload: bytes, latest: datetime) -> list[Parsed] | None:
    """Every reading of a message that holds nothing to refuse, or None.

    A gateway's messages are almost all well formed, and decoding them with the standard
    library's JSON into dicts, then checking each field, was most of the storing process's
    work. Anything this does not take as it is (JSON the typed decoder refuses, a field missing
    or of another type, a reading `_parse_one` would refuse) is parsed again the careful way,
    which gives each refusal its reason: the two agree on every message
    (tests/unit/test_native_fast.py).
    """
    try:
        items = _DECODE_FAST(payload).readings
    except msgspec.MsgspecError:
        return None
    out: list[Parsed] = []
    for item in items:
        sensor, value, accepts = item.sensor, item.value, _ACCEPTS.get(item.kind)
        if accepts is None or not sensor or sensor.isspace():
            return None
        kind, allowed, lo, hi = accepts
        if value not in allowed if allowed else not lo <= value <= hi:
            return None
        try:
            ts = _FROM_ISO(item.ts)
        except ValueError:
            return None
        if ts.tzinfo is not UTC:
            converted = _parse_ts(item.ts)
            if type(converted) is str:
                return None
            ts = converted  # type: ignore[assignment]
        if ts > latest:
            return None
        out.append(new_reading(gateway, sensor, kind, ts, value))
    return out or None


_KINDS: Mapping[str, SensorKind] = {kind.value: kind for kind in SensorKind}


def _parse_one(gateway: str, item: Any, index: int, latest: datetime) -> Reading | Rejected:
    if type(item) is not dict:
        return Rejected(f"readings[{index}] is not an object")
    try:
        sensor, kind_text, ts_text, raw_value = (
            item["sensor"], item["kind"], item["ts"], item["value"]
        )  # fmt: skip
    except KeyError:
        missing = [name for name in _FIELDS if name not in item]
        return Rejected(f"readings[{index}] is missing {', '.join(missing)}")
    if type(sensor) is not str or not sensor or sensor.isspace():
        return Rejected(f"readings[{index}]: sensor must be a non-empty string, got {show(sensor)}")
    kind = _KINDS.get(kind_text) if type(kind_text) is str else None  # not SensorKind(): slow
    if kind is None:
        return Rejected(f"readings[{index}]: unknown kind {show(kind_text)}")
    ts = _parse_ts(ts_text)
    if isinstance(ts, str):
        return Rejected(f"readings[{index}]: {ts}")
    if ts > latest:
        return Rejected(
            f"readings[{index}]: timestamp {ts.isoformat()} is in the future "
            f"(after {latest.isoformat()})"
        )
    value = _check_value(kind, raw_value)
    if isinstance(value, str):
        return Rejected(f"readings[{index}]: {value}")
    return new_reading(gateway, sensor, kind, ts, value)


def _parse_ts(ts_text: Any) -> datetime | str:
    """The aware timestamp, or the reason it is not one."""
    if not isinstance(ts_text, str):
        return f"timestamp must be an ISO 8601 string, got {show(ts_text)}"
    try:
        ts = datetime.fromisoformat(ts_text)
    except ValueError:
        return f"unparseable timestamp {show(ts_text)}"
    if ts.tzinfo is UTC:  # the usual case, nothing to convert
        return ts
    if ts.tzinfo is None or ts.utcoffset() is None:
        return f"timestamp {show(ts_text)} has no time zone"
    try:
        return ts.astimezone(UTC)
    except (OverflowError, ValueError):
        return f"timestamp {show(ts_text)} is out of range"


def _check_value(kind: SensorKind, raw: Any) -> float | str:
    """The value as a float, or the reason it is not acceptable for `kind`."""
    of = type(raw)  # as JSON gives them: a bool is no number here
    if of is float:
        value: float = raw
    elif of is int:
        try:
            value = float(raw)
        except OverflowError:
            return f"value {show(raw)} is out of range"
    else:
        return f"value must be a number, got {show(raw)}"
    if not math.isfinite(value):
        return f"value {show(raw)} is not finite"
    if kind in BINARY_KINDS:
        if value not in (0.0, 1.0):
            return f"value {show(raw)} out of range for {kind.value} (0 or 1)"
    elif kind is SensorKind.POWER and not 0.0 <= value <= POWER_MAX_W:
        return f"value {show(raw)} out of range for power (0..{POWER_MAX_W:g} W)"
    elif kind in SAFETY_VALUES and value not in SAFETY_VALUES[kind]:
        return f"value {show(raw)} out of range for {kind.value} ({_CODES[kind]})"
    return value


def _accepts(kind: SensorKind) -> tuple[SensorKind, frozenset[float], float, float]:
    """What `_check_value` lets through for `kind`: its values (empty: any) and its range."""
    if kind in BINARY_KINDS:
        return kind, frozenset({0.0, 1.0}), 0.0, 0.0
    if kind in SAFETY_VALUES:
        return kind, frozenset(float(v) for v in SAFETY_VALUES[kind]), 0.0, 0.0
    if kind is SensorKind.POWER:
        return kind, frozenset(), 0.0, POWER_MAX_W
    return kind, frozenset(), -sys.float_info.max, sys.float_info.max


_ACCEPTS = {kind.value: _accepts(kind) for kind in SensorKind}
_FROM_ISO = datetime.fromisoformat

_CODES: Mapping[SensorKind, str] = {
    kind: (
        "0 cancel, 1 press or 2 long press"
        if kind is SensorKind.BUTTON
        else "0 clear, 1 alarm or 2 test"
    )
    for kind in SAFETY_VALUES
}
