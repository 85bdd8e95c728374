"""Frozen domain types shared by every package; vendor payloads never travel past ingest."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime
from itertools import pairwise
from typing import Any


class SensorKind(enum.StrEnum):
    """Sensor kinds, as in the anbu events format."""

    DOOR = "door"
    MOTION = "motion"
    CONTACT = "contact"
    APPLIANCE = "appliance"
    POWER = "power"
    # safety devices (issue 20): events, not activity levels; values below
    BUTTON = "button"  # an emergency call button or pendant (응급호출기)
    SMOKE = "smoke"  # a smoke or heat (fire) detector
    GAS = "gas"  # a gas (LNG/LPG) detector
    CO = "co"  # a carbon monoxide detector
    WATER_LEAK = "water_leak"
    TAMPER = "tamper"  # a device's own tamper switch, where it reports one


BINARY_KINDS = frozenset(
    {SensorKind.DOOR, SensorKind.MOTION, SensorKind.CONTACT, SensorKind.APPLIANCE}
)

ALARM_KINDS = frozenset(
    {SensorKind.SMOKE, SensorKind.GAS, SensorKind.CO, SensorKind.WATER_LEAK, SensorKind.TAMPER}
)
"""Detectors whose value is an AlarmValue."""

SAFETY_KINDS = ALARM_KINDS | {SensorKind.BUTTON}
"""Rarely heard devices whose messages are events that may need someone within seconds."""


class AlarmValue:
    """The value of an ALARM_KINDS reading: clear, alarm, or the device's own test (its test
    button pressed, a self-test): a test is never a fire."""

    CLEAR = 0.0
    ALARM = 1.0
    TEST = 2.0


class ButtonValue:
    """The value of a BUTTON reading: each reading is one press (an event, not a state)."""

    CANCEL = 0.0  # the cancel button (취소), or a pendant's own cancel gesture
    PRESS = 1.0  # a press: single, double, "sos", "emergency"
    LONG = 2.0  # a long press / hold


SAFETY_VALUES = {
    **dict.fromkeys(ALARM_KINDS, (AlarmValue.CLEAR, AlarmValue.ALARM, AlarmValue.TEST)),
    SensorKind.BUTTON: (ButtonValue.CANCEL, ButtonValue.PRESS, ButtonValue.LONG),
}
"""The values each safety kind may take."""


class SafetyFinding(enum.StrEnum):
    """Finding kinds raised from a safety device's message, in the batch that stores it."""

    HELP_BUTTON = "help_button"  # critical: the care manager and the resident at once
    BUTTON_CANCEL = "button_cancel"  # never an alert of its own: applied to the press's alert
    FIRE_ALARM = "fire_alarm"  # smoke or heat: critical, 119
    GAS_ALARM = "gas_alarm"  # gas or carbon monoxide: critical, 119
    WATER_LEAK = "water_leak"  # warning: a check-in call
    ALARM_TEST = "alarm_test"  # a detector's test press or self-test: the technician's list
    TAMPER = "device_tamper"  # a device opened or taken off its mount: the technician's list


class Severity(enum.IntEnum):
    """Graded care severity; higher is worse."""

    WATCH = 1
    WARNING = 2
    CRITICAL = 3

    @property
    def label(self) -> str:
        return self.name.lower()

    @property
    def korean(self) -> str:
        return {1: "관심", 2: "주의", 3: "심각"}[self.value]

    @classmethod
    def parse(cls, text: str) -> Severity:
        return cls[text.upper()]


HEARTBEAT_GAPS = 3
HEARTBEAT_MIN_GAP_S = 240.0
REPEAT_SAME_S = 2.0
OFF_MEMORY_S = 86_400.0
RUN_KEPT = 2 * (HEARTBEAT_GAPS + 1)  # the "on"s a run keeps: the timer's, some sent twice


def repeat_is_nobody(times: list[float], last_off: float | None) -> bool:
    """Whether a motion or contact sensor's "on" that repeats the "on" before it (no "off"
    between) is nobody new: the device or its gateway re-sending a state, not someone there.

    `times`: the sensor's "on" readings since its last "off" (epoch seconds, oldest first, this
    one last; the last RUN_KEPT suffice); `last_off`: that "off" (None: none known). One rule
    for ingest, the detectors and (but for the timer) the hourly summaries:
    - within REPEAT_SAME_S of the reading before: the same "on" delivered again;
    - from a sensor that reported an "off" in the OFF_MEMORY_S before: someone moving again
      only within HEARTBEAT_MIN_GAP_S of the reading before (a PIR re-triggering while someone
      moves, its "off" after a timeout); past that, the device re-reporting its state
      (Zigbee's maximum reporting interval, a gateway republishing, a PIR stuck on);
    - from a sensor that sends events and no "off": someone, unless on a timer: the last
      HEARTBEAT_GAPS gaps between its "on"s (those REPEAT_SAME_S apart or more: a copy sent
      twice does not hide a timer) each at least HEARTBEAT_MIN_GAP_S and equal within 2 % (5 s
      at the least). People move at irregular moments; a device re-reports on a timer.
    """
    gap = times[-1] - times[-2]
    if gap < REPEAT_SAME_S:
        return True
    if last_off is not None and times[-1] - last_off <= OFF_MEMORY_S:
        return gap >= HEARTBEAT_MIN_GAP_S
    kept = times[:1]
    for t in times[1:]:
        if t - kept[-1] >= REPEAT_SAME_S:
            kept.append(t)
    if len(kept) <= HEARTBEAT_GAPS:
        return False
    gaps = [b - a for a, b in pairwise(kept[-HEARTBEAT_GAPS - 1 :])]
    low, high = min(gaps), max(gaps)
    return low >= HEARTBEAT_MIN_GAP_S and high - low <= max(5.0, 0.02 * high)


@dataclass(frozen=True, slots=True)
class Reading:
    """One sensor reading as a gateway reported it, before registry lookup."""

    gateway: str
    sensor: str
    kind: SensorKind
    ts: datetime
    value: float


# A frozen dataclass's __init__ sets each field through object.__setattr__; ingest builds a
# Reading for every reading it parses, so it builds them through their slots instead (the
# same frozen object, in half the time: `anbu bench ingest`).
_new = object.__new__
_set_gateway, _set_sensor, _set_kind, _set_ts, _set_value = (
    Reading.__dict__[name].__set__ for name in ("gateway", "sensor", "kind", "ts", "value")
)


def new_reading(gateway: str, sensor: str, kind: SensorKind, ts: datetime, value: float) -> Reading:
    """`Reading(gateway, sensor, kind, ts, value)`, built quicker (ingest's hot path)."""
    reading: Reading = _new(Reading)
    _set_gateway(reading, gateway)
    _set_sensor(reading, sensor)
    _set_kind(reading, kind)
    _set_ts(reading, ts)
    _set_value(reading, value)
    return reading


@dataclass(frozen=True, slots=True)
class GatewayStatus:
    """A gateway's own liveness message (MQTT will / retained status)."""

    gateway: str
    online: bool


@dataclass(frozen=True, slots=True)
class Rejected:
    """A message that could not be understood, and why."""

    reason: str


@dataclass(frozen=True, slots=True)
class Finding:
    """What a detector concluded about one home at one moment."""

    home: str
    kind: str
    severity: Severity
    raised_at: datetime
    reason_ko: str
    reason_en: str
    details: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)


class AlertState(enum.StrEnum):
    """Life of an alert; transitions live in alerts.machine."""

    OPEN = "open"
    CALLING = "calling"
    ESCALATED = "escalated"
    ACKNOWLEDGED = "acknowledged"
    RESOLVED = "resolved"


class CallOutcome(enum.StrEnum):
    """How a check-in call ended; only OK is reassurance."""

    OK = "ok"
    HELP = "help"
    NO_ANSWER = "no_answer"
    BUSY = "busy"
    FAILED = "failed"
    VOICEMAIL = "voicemail"
    UNCLEAR = "unclear"
    # calls issue: what a spoken answer can mean beyond OK/HELP
    UNWELL = "unwell"  # not an emergency, but the care manager should know
    EMERGENCY = "emergency"  # escalate at once, at the top of the ladder
    CALL_BACK_LATER = "call_back_later"  # answered, asked to be called later: retry

    @property
    def reassuring(self) -> bool:
        return self is CallOutcome.OK
