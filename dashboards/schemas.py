"""The JSON API's request and response models (what /openapi.json documents)."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field, field_validator

from alerts.machine import Event, allowed_events
from alerts.models import RESOLUTION_OUTCOMES, STATE_LABELS, AlertDetail, AlertView
from anbu.domain import AlertState, Severity
from dashboards.auth import CareManager

ACTIONS: dict[Event, str] = {Event.ACKNOWLEDGE: "acknowledge", Event.RESOLVE: "resolve"}


def care_manager_actions(state: AlertState) -> list[str]:
    """What a care manager may do to an alert in `state` ('acknowledge', 'resolve')."""
    return [ACTIONS[e] for e in allowed_events(state) if e in ACTIONS]


class TokenOut(BaseModel):
    access_token: str
    token_type: str = "bearer"
    expires_in: int = Field(description="Seconds until the token expires.")


class MeOut(BaseModel):
    id: int
    username: str
    display_name: str
    dong_code: str
    dong_name: str
    role: str

    @classmethod
    def of(cls, m: CareManager) -> MeOut:
        return cls(
            id=m.id,
            username=m.username,
            display_name=m.display_name,
            dong_code=m.dong_code,
            dong_name=m.dong_name,
            role=m.role,
        )


class AlertOut(BaseModel):
    id: int
    resident_id: int
    home: str
    dong_code: str
    kind: str
    severity: str = Field(description="watch, warning or critical")
    severity_ko: str = Field(description="관심, 주의 or 심각")
    state: AlertState
    state_ko: str
    state_en: str
    opened_at: datetime
    updated_at: datetime
    call_attempts: int
    reason_ko: str | None
    reason_en: str | None
    actions: list[str] = Field(description="What the care manager may do now.")

    @classmethod
    def of(cls, a: AlertView) -> AlertOut:
        ko, en = STATE_LABELS[a.state]
        return cls(
            id=a.id,
            resident_id=a.resident_id,
            home=a.home,
            dong_code=a.dong_code,
            kind=a.kind,
            severity=a.severity,
            severity_ko=Severity.parse(a.severity).korean,
            state=a.state,
            state_ko=ko,
            state_en=en,
            opened_at=a.opened_at,
            updated_at=a.updated_at,
            call_attempts=a.call_attempts,
            reason_ko=a.reason_ko,
            reason_en=a.reason_en,
            actions=care_manager_actions(a.state),
        )


class AlertEventOut(BaseModel):
    at: datetime
    actor: str
    from_state: str | None
    to_state: str
    reason: str


class CallOut(BaseModel):
    id: int
    created_at: datetime
    status: str
    outcome: str | None


class AlertDetailOut(BaseModel):
    alert: AlertOut
    resident_name: str
    events: list[AlertEventOut]
    calls: list[CallOut]
    notifications: int

    @classmethod
    def of(cls, d: AlertDetail) -> AlertDetailOut:
        return cls(
            alert=AlertOut.of(d.alert),
            resident_name=d.resident_name,
            events=[
                AlertEventOut(
                    at=e.at,
                    actor=e.actor,
                    from_state=e.from_state,
                    to_state=e.to_state,
                    reason=e.reason,
                )
                for e in d.events
            ],
            calls=[
                CallOut(id=c.id, created_at=c.created_at, status=c.status, outcome=c.outcome)
                for c in d.calls
            ],
            notifications=d.notifications,
        )


class AcknowledgeIn(BaseModel):
    note: str = Field(default="", max_length=1000)


class ResolveIn(BaseModel):
    outcome: str = Field(description=f"One of: {', '.join(RESOLUTION_OUTCOMES)}")
    note: str = Field(default="", max_length=1000)

    @field_validator("outcome")
    @classmethod
    def _known(cls, value: str) -> str:
        if value not in RESOLUTION_OUTCOMES:
            raise ValueError(f"unknown outcome; expected one of {', '.join(RESOLUTION_OUTCOMES)}")
        return value


class HealthOut(BaseModel):
    status: str
    database: bool
