"""What vendor adapters produce, and the small parsers they share.

A vendor message talks about a device, not about a registered sensor: it may carry several
candidate primary values (a plug reports watts and its relay state) and secondary readings
(battery, link quality, energy). The store picks the candidate that matches the sensor's
registered kind; nothing here knows the registry.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Any
from zoneinfo import ZoneInfo

from core.domain import AlarmValue, ButtonValue, GatewayStatus, Reading, Rejected, SensorKind

POWER_MAX_W = 20_000.0  # the largest draw a household smart plug can report, every dialect

DEVICE_TZ: tzinfo = ZoneInfo("Asia/Seoul")
"""Zone of device clocks that print local time without an offset (Tasmota's Time)."""

CONTACT_KINDS = (SensorKind.DOOR, SensorKind.CONTACT)
"""A contact switch serves either kind: the entrance door, or any other switch."""

TESTABLE_KINDS = (SensorKind.SMOKE, SensorKind.GAS, SensorKind.CO, SensorKind.WATER_LEAK)
"""Detectors with a test button or a self-test: a report flagged as a test is AlarmValue.TEST,
never ALARM, whatever its alarm field says (a test sounds the siren and may set it)."""

# A button's gesture, as the vendors name it (Zigbee2MQTT `action`, Tasmota `Action`, Shelly
# input events, BTHome button events): the name is split at `_`, `-` and spaces and its words
# decide, the first rule that matches winning. A release ends a gesture already read (never a
# press of its own); an explicit cancel is the pendant's cancel; hold/long is a long press;
# any other press word (single, double, sos, emergency...) is a press. Other names (a remote's
# brightness_move_up, on/off) are nothing anbu reads. An alarm keyfob's or keypad's `disarm`
# (Heiman HS1RC/HM1RC, Tuya TS0215A: emergency, disarm, arm_day_zones, arm_all_zones) switches
# a burglar alarm off: it is no cancel of a call for help, and is not read (SOS pendants, e.g.
# Tuya TS0215A_sos, Heiman HS1EB, Feibit SEB01ZB, send `emergency`/`sos` and no cancel at all).
RELEASE_WORDS = frozenset({"release", "released", "up", "stop"})
CANCEL_WORDS = frozenset({"cancel"})
LONG_WORDS = frozenset({"hold", "long", "held"})
PRESS_WORDS = frozenset(
    {"single", "double", "triple", "quadruple", "quintuple", "quad", "penta", "many", "press",
     "pressed", "push", "click", "sos", "emergency", "panic", "toggle"}
)  # fmt: skip
_WORD = re.compile(r"[_\-\s]+")
RELEASE = -1.0
"""button_gesture's answer for a release: a gesture to ignore, not an unknown name."""


def button_gesture(raw: Any) -> float | None:
    """A ButtonValue for a gesture's name, RELEASE for a release, None for any other name."""
    if not isinstance(raw, str) or len(raw) > 64:
        return None
    words = set(_WORD.split(raw.strip().lower())) - {""}
    if words & RELEASE_WORDS:
        return RELEASE
    if words & CANCEL_WORDS:
        return ButtonValue.CANCEL
    if words & LONG_WORDS:
        return ButtonValue.LONG
    if words & PRESS_WORDS:
        return ButtonValue.PRESS
    return None


def alarm_value(active: float, test: bool) -> float:
    """An AlarmValue from a detector's alarm state (1.0/0.0) and whether it is under test."""
    if test:
        return AlarmValue.TEST
    return AlarmValue.ALARM if active == 1.0 else AlarmValue.CLEAR


@dataclass(frozen=True, slots=True)
class DeviceReport:
    """One vendor message's values for one device, before the registry picks the primary."""

    gateway: str
    device: str
    ts: datetime
    stamped: bool
    """True when `ts` came from the device; False when it is the time of receipt."""
    values: tuple[tuple[SensorKind, float], ...] = ()
    """Candidate primary values, by the kind of sensor they would be."""
    battery: float | None = None
    link_quality: float | None = None
    energy_kwh: float | None = None
    whole_device: bool = False
    """True when `device` names a node whose sensors are `<device>/<component>` (ESPHome)."""
    event_count: int | None = None
    """The device's own count of button events (Shelly Gen1 `event_cnt`): a value whose count
    equals the sensor's last stored count is a repeat, not a press (ingest.presses)."""

    @property
    def empty(self) -> bool:
        return not self.values and (self.battery, self.link_quality, self.energy_kwh) == (
            None,
            None,
            None,
        )


@dataclass(frozen=True, slots=True)
class DeviceAvailability:
    """A device's own liveness (LWT, availability topic); not a reading, not activity."""

    gateway: str
    device: str
    online: bool
    whole_device: bool = False


@dataclass(frozen=True, slots=True)
class Ignored:
    """A message a dialect publishes that anbu has no use for (bridge logs, commands)."""

    reason: str


def show(value: object, limit: int = 64) -> str:
    """A printable, ASCII-safe, bounded rendering of untrusted input for a reason text."""
    text = ascii(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _reject_constant(name: str) -> float:
    raise ValueError(f"{name} is not a number")


_DECODE = json.JSONDecoder(parse_constant=_reject_constant).decode


def load_json(payload: bytes) -> tuple[Any, str | None]:
    """(the decoded JSON document, None), or (None, the reason it is not one).

    A pair, since a JSON document may itself be a string.
    """
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError:
        return None, "payload is not UTF-8"
    try:
        return _DECODE(text), None
    except (ValueError, RecursionError) as exc:
        return None, f"payload is not JSON: {show(str(exc), 120)}"


def load_object(payload: bytes) -> dict[str, Any] | str:
    """The JSON object of a payload, or why it is not one."""
    doc, error = load_json(payload)
    if error is not None:
        return error
    if not isinstance(doc, dict):
        return f"payload is not a JSON object: {show(doc)}"
    return doc


def text_of(payload: bytes) -> str | None:
    """The stripped UTF-8 text of a payload, or None."""
    try:
        return payload.decode("utf-8").strip()
    except UnicodeDecodeError:
        return None


def number(raw: Any) -> float | None:
    """A finite float from a JSON number or a numeric string ("23.5"); None otherwise."""
    if isinstance(raw, bool):
        return None
    if isinstance(raw, str):
        try:
            raw = float(raw.strip())
        except ValueError:
            return None
    if not isinstance(raw, int | float):
        return None
    try:
        value = float(raw)
    except OverflowError:
        return None
    return value if math.isfinite(value) else None


ON_OFF = {"on": 1.0, "off": 0.0, "true": 1.0, "false": 0.0, "1": 1.0, "0": 0.0}


def switch_state(raw: Any) -> float | None:
    """1.0/0.0 from true/false, "ON"/"OFF" (any case), 1/0; None otherwise."""
    if isinstance(raw, bool):
        return 1.0 if raw else 0.0
    if isinstance(raw, int | float) and raw in (0, 1):
        return float(raw)
    if isinstance(raw, str):
        return ON_OFF.get(raw.strip().lower())
    return None


def device_time(raw: Any, naive_tz: tzinfo = DEVICE_TZ) -> datetime | None:
    """A UTC time from ISO 8601 (naive means `naive_tz`) or epoch seconds/milliseconds."""
    if isinstance(raw, bool):
        return None
    try:
        if isinstance(raw, int | float):
            seconds = float(raw) / 1000.0 if raw > 1e11 else float(raw)
            return datetime.fromtimestamp(seconds, UTC)
        if isinstance(raw, str):
            ts = datetime.fromisoformat(raw.strip())
            if ts.tzinfo is None:
                ts = ts.replace(tzinfo=naive_tz)
            return ts.astimezone(UTC)
    except (ValueError, OverflowError, OSError):
        return None
    return None


def stamp(raw: Any, now: datetime, future_tolerance_s: int) -> tuple[datetime, bool] | str:
    """The reading's time: the device's when given and sane, else receipt; or why not."""
    if raw is None:
        return now, False
    ts = device_time(raw)
    if ts is None:
        return f"unparseable device time {show(raw)}"
    if ts > now + timedelta(seconds=future_tolerance_s):
        return f"device time {ts.isoformat()} is in the future"
    return ts, True


@dataclass(frozen=True, slots=True)
class DeviceAnnounced:
    """A device that introduced itself (a discovery config, a bridge's device list, an
    announce): who it is, as anbu would register it, and what it says it is."""

    gateway: str
    device: str
    """The vendor id a sensor for it is registered under; "" when the message names the
    device only by `config` (Tasmota's `/sensors` follows its `/config`)."""
    config: str
    """The retained topic (after the gateway id) that announced it: its removal is this
    topic emptied, or the device missing from the next list published on it."""
    source: str
    vendor_class: str | None = None
    kind: SensorKind | None = None
    """The sensor kind its announced class suggests; None when nothing anbu reads."""
    model: str | None = None
    name: str | None = None


@dataclass(frozen=True, slots=True)
class DeviceGone:
    """The devices announced on `config` are gone, but those in `keep` (a list republished)."""

    gateway: str
    config: str
    keep: tuple[str, ...] = ()


DEVICE_ID_MAX = 200
LABEL_MAX = 120


def device_id(raw: str) -> str | Rejected:
    """A vendor device id a sensor can be registered under, or why this one cannot."""
    if not raw or not raw.strip():
        return Rejected("announced device has an empty id")
    if len(raw) > DEVICE_ID_MAX:
        return Rejected(f"announced device id is longer than {DEVICE_ID_MAX}: {show(raw)}")
    if "\x00" in raw or "+" in raw or "#" in raw:
        return Rejected(f"announced device id {show(raw)} has a NUL or an MQTT wildcard")
    try:
        raw.encode("utf-8")
    except UnicodeEncodeError:
        return Rejected(f"announced device id {show(raw)} is not valid Unicode")
    return raw


def label(raw: object) -> str | None:
    """A model or name as announced: printable text, bounded; None when not a string."""
    if not isinstance(raw, str):
        return None
    text = "".join(ch for ch in raw if ch.isprintable()).strip()
    return text[:LABEL_MAX] or None


# What a parser returns, one item per thing the message says.
Parsed = (
    Reading
    | GatewayStatus
    | Rejected
    | DeviceReport
    | DeviceAvailability
    | Ignored
    | DeviceAnnounced
    | DeviceGone
)
