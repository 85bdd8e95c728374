"""Frozen domain types shared by every package; vendor payloads never travel past ingest."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any


class SensorKind(enum.StrEnum):
    """Sensor kinds, as in the anbu events format."""

    DOOR = "door"
    MOTION = "motion"
    CONTACT = "contact"
    APPLIANCE = "appliance"
    POWER = "power"


BINARY_KINDS = frozenset(
    {SensorKind.DOOR, SensorKind.MOTION, SensorKind.CONTACT, SensorKind.APPLIANCE}
)


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


@dataclass(frozen=True, slots=True)
class Reading:
    """One sensor reading as a gateway reported it, before registry lookup."""

    gateway: str
    sensor: str
    kind: SensorKind
    ts: datetime
    value: float


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
