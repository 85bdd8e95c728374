"""What alerts look like to their readers: frozen views, no I/O."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from core.domain import AlertState

STATE_LABELS: dict[AlertState, tuple[str, str]] = {
    AlertState.OPEN: ("접수", "open"),
    AlertState.CALLING: ("안부전화 중", "calling resident"),
    AlertState.ESCALATED: ("담당자 확인 필요", "needs care manager"),
    AlertState.ACKNOWLEDGED: ("담당자 확인함", "acknowledged"),
    AlertState.RESOLVED: ("종결", "resolved"),
}

RESOLUTION_OUTCOMES: dict[str, tuple[str, str]] = {
    "visited_ok": ("방문 결과 이상 없음", "visited, resident fine"),
    "contacted_ok": ("통화로 안부 확인", "reached by phone, fine"),
    "hospitalised": ("병원 이송", "taken to hospital"),
    "emergency_119": ("119 출동", "emergency services dispatched"),
    "away": ("외출·부재 확인", "resident was away"),
    "device_fault": ("기기 고장", "device fault"),
    "false_alarm": ("오경보", "false alarm"),
    "resident_ok": ("본인 응답으로 종결", "resident answered OK"),
}


class AlertNotFound(LookupError):
    """No such alert in the care manager's dong (others' alerts are invisible, not forbidden)."""


class AlertChanged(Exception):
    """The alert changed after the care manager read it (its severity raised, its state moved,
    a call or a finding added to it): nothing done; they must look again first."""

    def __init__(self, alert_id: int, state: str, severity: str, version: int) -> None:
        super().__init__(f"alert {alert_id} changed: now {state}, {severity}, version {version}")
        self.alert_id = alert_id
        self.state = state
        self.severity = severity
        self.version = version


@dataclass(frozen=True, slots=True)
class AlertView:
    """One alert as a list shows it."""

    id: int
    resident_id: int
    home: str
    dong_code: str
    kind: str
    severity: str
    state: AlertState
    opened_at: datetime
    updated_at: datetime
    call_attempts: int
    reason_ko: str | None
    reason_en: str | None
    # who took and who closed it, when, and how it ended (None until then)
    acknowledged_at: datetime | None = None
    acknowledged_by: int | None = None
    resolved_at: datetime | None = None
    resolved_by: int | None = None
    outcome: str | None = None


@dataclass(frozen=True, slots=True)
class AlertEventView:
    at: datetime
    actor: str
    from_state: str | None
    to_state: str
    reason: str


@dataclass(frozen=True, slots=True)
class CallView:
    id: int
    created_at: datetime
    status: str
    outcome: str | None


@dataclass(frozen=True, slots=True)
class AlertDetail:
    """An alert with its audit trail, calls and notifications."""

    alert: AlertView
    resident_name: str
    events: list[AlertEventView]
    calls: list[CallView]
    notifications: int
    # its last event's id: every change to an alert appends one (alerts.queries.alert_version)
    version: int = 0
