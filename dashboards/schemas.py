"""The JSON API's request and response models (what /openapi.json documents)."""

from __future__ import annotations

from datetime import datetime, time
from typing import Literal, cast

from pydantic import BaseModel, ConfigDict, Field, field_validator

from alerts.feed import FeedEvent
from alerts.machine import Event, allowed_events
from alerts.models import RESOLUTION_OUTCOMES, STATE_LABELS, AlertDetail, AlertView
from core.domain import AlertState, CallOutcome, SensorKind, Severity
from dashboards.auth import CareManager
from dashboards.authz import visible_dongs
from dashboards.enrolment_text import kind_label
from dashboards.i18n import RESIDENT_STATUS_LABELS
from dashboards.residents import ActivityHour, ResidentView, SettingChange, Week
from dashboards.review import Review, ReviewRow
from dashboards.sites import DeviceFinding, SiteView
from ingest.devices import HeardDevice
from registry import CAP_MAX_H, CAP_MIN_H, QUIET_MAX_H, ROOMS, STATUS_MAX_DAYS

ACTIONS: dict[Event, str] = {Event.ACKNOWLEDGE: "acknowledge", Event.RESOLVE: "resolve"}


# Closed vocabularies, as enums in the spec (tests/unit/test_api_vocabularies.py keeps each
# equal to its source: the role CHECK, alerts.models and alerts.course, the resident CHECK).
RoleName = Literal["manager", "supervisor", "admin", "technician", "service"]
AlertAction = Literal["acknowledge", "resolve"]
AlertOutcome = Literal[
    "visited_ok", "contacted_ok", "hospitalised", "emergency_119", "away", "device_fault",
    "false_alarm", "resident_ok", "service_ended",
]  # fmt: skip
ResidentStatus = Literal["active", "away", "hospital", "ended"]


def care_manager_actions(state: AlertState) -> list[AlertAction]:
    """What a care manager may do to an alert in `state` ('acknowledge', 'resolve')."""
    return [cast(AlertAction, ACTIONS[e]) for e in allowed_events(state) if e in ACTIONS]


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
    role: RoleName
    district: str
    dongs: list[str] = Field(description="The dongs whose residents and alerts this role sees")

    @classmethod
    def of(cls, m: CareManager) -> MeOut:
        return cls(
            id=m.id,
            username=m.username,
            display_name=m.display_name,
            dong_code=m.dong_code,
            dong_name=m.dong_name,
            role=cast(RoleName, m.role),  # checked here, as every field
            district=m.district,
            dongs=list(visible_dongs(m)),
        )


SeverityName = Literal["watch", "warning", "critical"]


class AlertOut(BaseModel):
    id: int
    resident_id: int
    home: str
    dong_code: str
    kind: str
    severity: SeverityName = Field(description="관심, 주의, 심각")
    severity_ko: str = Field(description="관심, 주의 or 심각")
    state: AlertState
    state_ko: str
    state_en: str
    opened_at: datetime
    updated_at: datetime
    call_attempts: int
    reason_ko: str | None
    reason_en: str | None
    actions: list[AlertAction] = Field(description="What the care manager may do now.")
    acknowledged_at: datetime | None = Field(description="When a care manager took it")
    acknowledged_by: int | None = Field(description="The care manager who took it")
    resolved_at: datetime | None = Field(description="When it was closed")
    resolved_by: int | None = Field(
        description="The care manager who closed it (null when the system closed it)"
    )
    outcome: AlertOutcome | None = Field(
        description="How it ended, once resolved (service_ended: closed by the end of service)"
    )

    @classmethod
    def of(cls, a: AlertView) -> AlertOut:
        ko, en = STATE_LABELS[a.state]
        return cls(
            id=a.id,
            resident_id=a.resident_id,
            home=a.home,
            dong_code=a.dong_code,
            kind=a.kind,
            severity=cast(SeverityName, Severity.parse(a.severity).label),  # one of the three
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
            acknowledged_at=a.acknowledged_at,
            acknowledged_by=a.acknowledged_by,
            resolved_at=a.resolved_at,
            resolved_by=a.resolved_by,
            outcome=cast(AlertOutcome | None, a.outcome),
        )


class AlertEventOut(BaseModel):
    at: datetime
    actor: str
    from_state: AlertState | None
    to_state: AlertState
    reason: str


class CallOut(BaseModel):
    id: int
    created_at: datetime
    status: str = Field(description="The telephone network's call status (Twilio's words)")
    outcome: CallOutcome | None


class AlertDetailOut(BaseModel):
    alert: AlertOut
    resident_name: str
    events: list[AlertEventOut]
    calls: list[CallOut]
    notifications: int
    version: int = Field(
        description="The alert's version, also its ETag: send it back as If-Match on "
        "acknowledge, resolve or reassign to be refused (412) if the alert changed since."
    )

    @classmethod
    def of(cls, d: AlertDetail) -> AlertDetailOut:
        return cls(
            alert=AlertOut.of(d.alert),
            resident_name=d.resident_name,
            events=[
                AlertEventOut(
                    at=e.at,
                    actor=e.actor,
                    from_state=AlertState(e.from_state) if e.from_state else None,
                    to_state=AlertState(e.to_state),
                    reason=e.reason,
                )
                for e in d.events
            ],
            calls=[
                CallOut(
                    id=c.id,
                    created_at=c.created_at,
                    status=c.status,
                    outcome=cast(CallOutcome | None, c.outcome),
                )
                for c in d.calls
            ],
            notifications=d.notifications,
            version=d.version,
        )


class SettingChangeOut(BaseModel):
    id: int
    at: datetime
    care_manager_id: int = Field(description="Who changed it")
    field: Literal[
        "status", "status_until", "quiet_start", "quiet_end", "watch_h_max", "warning_h_max",
        "critical_h_max",
    ]  # fmt: skip
    old_value: str | None = Field(description="Before (ISO 8601 UTC for times, HH:MM local)")
    new_value: str | None = Field(description="After; null: none")

    @classmethod
    def of(cls, c: SettingChange) -> SettingChangeOut:
        return cls(
            id=c.id, at=c.at, care_manager_id=c.care_manager_id,
            field=c.field,  # type: ignore[arg-type]  # the table's CHECK holds it to these
            old_value=c.old_value, new_value=c.new_value,
        )  # fmt: skip


class FeedEventOut(BaseModel):
    seq: int = Field(description="The feed's order: pass the last one seen as `after`")
    event_id: int = Field(description="The event's own id: de-duplicate by it")
    type: str = Field(description="alert.<state> for a transition, alert.updated otherwise")
    at: datetime = Field(description="When it happened (UTC)")
    published_at: datetime = Field(description="When the feed took it (UTC)")
    alert_id: int
    resident_id: int
    dong_code: str
    kind: str
    severity: SeverityName = Field(description="The alert's severity now")
    from_state: AlertState | None
    to_state: AlertState
    actor: str = Field(description="system, resident or care_manager:<id>")
    reason: str = Field(description="What happened, in Korean")

    @classmethod
    def of(cls, e: FeedEvent) -> FeedEventOut:
        moved = e.from_state != e.to_state
        return cls(
            seq=e.seq, event_id=e.event_id,
            type=f"alert.{e.to_state}" if moved else "alert.updated",
            at=e.at, published_at=e.published_at, alert_id=e.alert_id,
            resident_id=e.resident_id, dong_code=e.dong_code, kind=e.kind,
            severity=cast(SeverityName, Severity.parse(e.severity).label),
            from_state=AlertState(e.from_state) if e.from_state else None,
            to_state=AlertState(e.to_state), actor=e.actor, reason=e.reason,
        )  # fmt: skip


class FeedOut(BaseModel):
    data: list[FeedEventOut]
    has_more: bool = Field(description="More events follow: ask again with next_after")
    next_after: int = Field(description="The last seq of this page: pass it as `after`")


class AcknowledgeIn(BaseModel):
    note: str = Field(default="", max_length=1000)


class ReassignIn(BaseModel):
    care_manager_id: int = Field(ge=1, description="An active care manager of the district")
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


class ResidentOut(BaseModel):
    """A resident of the care manager's own dong: care settings only, never phone or notes."""

    id: int
    home: str
    display_name: str
    dong_code: str
    status: ResidentStatus
    status_ko: str = Field(description="관리 중, 부재, 입원 or 서비스 종료")
    status_until: datetime | None = Field(description="When an away or hospital stay ends.")
    suppresses_inactivity: bool = Field(
        description="Away or hospital with status_until still ahead: no inactivity alerts."
    )
    quiet_start: time | None = Field(description="Local time (ANBU_TIMEZONE).")
    quiet_end: time | None = Field(description="Local time; may be earlier than quiet_start.")
    watch_h_max: float | None = Field(description="Hours; 관심 at the latest after this silence.")
    warning_h_max: float | None = Field(description="Hours; 주의 at the latest.")
    critical_h_max: float | None = Field(description="Hours; 심각 at the latest.")

    @classmethod
    def of(cls, r: ResidentView, now: datetime) -> ResidentOut:
        return cls(
            id=r.id,
            home=r.home,
            display_name=r.display_name,
            dong_code=r.dong_code,
            status=cast(ResidentStatus, r.status),
            status_ko=RESIDENT_STATUS_LABELS[r.status][0],
            status_until=r.status_until,
            suppresses_inactivity=r.suppresses_inactivity(now),
            quiet_start=r.quiet_start,
            quiet_end=r.quiet_end,
            watch_h_max=r.watch_h_max,
            warning_h_max=r.warning_h_max,
            critical_h_max=r.critical_h_max,
        )


class ActivityHourOut(BaseModel):
    """One local hour of a home (hours with no reading at all are absent)."""

    hour: datetime = Field(description="Local start of the hour (ANBU_TIMEZONE).")
    activity: int = Field(description="A person's doings: motion, a door or switch, a plug step.")
    motion: int
    door: int = Field(description="The entrance door opening or closing.")
    power_steps: int = Field(description="Plug steps of 10 W or more (not a fridge's).")
    readings: int = Field(description="Every reading, a person's or not: silence vs no data.")
    rooms: list[str] = Field(description="Rooms with activity.")

    @classmethod
    def of(cls, h: ActivityHour) -> ActivityHourOut:
        return cls(
            hour=h.hour,
            activity=h.activity,
            motion=h.motion,
            door=h.door,
            power_steps=h.power_steps,
            readings=h.readings,
            rooms=list(h.rooms),
        )


class ResidentFindingOut(BaseModel):
    """A finding the detectors raised for the resident."""

    raised_at: datetime
    kind: str
    severity: str
    reason_ko: str
    reason_en: str


class OutingOut(BaseModel):
    """The resident out: the entrance door closed, no one moving inside until it next opened."""

    start: datetime = Field(description="Local time the door closed behind the resident.")
    end: datetime = Field(description="Local time of the door's next change (back home).")


class ResidentActivityOut(BaseModel):
    """A resident's last days hour by hour, their outings and their findings in that time."""

    resident: ResidentOut
    since: datetime = Field(description="Local midnight of the first day.")
    until: datetime
    hours: list[ActivityHourOut] = Field(
        description="Stored hours, and those the hourly summary has not reached yet (the hour "
        "under way) read from the readings."
    )
    outings: list[OutingOut] = Field(
        description="Oldest first; only where the home's door and every motion sensor could "
        "tell, and only outings already back (dashboards.outings)."
    )
    findings: list[ResidentFindingOut] = Field(description="Newest first, at most 50.")

    @classmethod
    def of(cls, week: Week, now: datetime) -> ResidentActivityOut:
        return cls(
            resident=ResidentOut.of(week.resident, now),
            since=week.since,
            until=week.until,
            hours=[ActivityHourOut.of(h) for h in week.hours],
            outings=[OutingOut(start=o.start, end=o.end) for o in week.outings],
            findings=[
                ResidentFindingOut(raised_at=r, kind=k, severity=s, reason_ko=ko, reason_en=en)
                for r, k, s, ko, en in week.findings
            ],
        )


class ReviewRowOut(BaseModel):
    """One resident's last 7 days beside their usual week."""

    resident_id: int
    home: str
    display_name: str
    status: str
    activity: int = Field(description="A person's doings in the last 7 local days.")
    usual: float | None = Field(description="Mean week of the 4 before; null: no 4 weeks yet.")
    change: float | None = Field(description="activity / usual - 1 (-0.4: 40 % less).")
    night: int = Field(description="Of which between 00:00 and 06:00 local.")
    days_with_data: int = Field(description="Days of the 7 with any reading at all.")
    findings: dict[str, int] = Field(description="Findings raised this week, by kind.")
    talk: dict[str, Literal["run", "worse"]] = Field(
        description="Routine-conversation questions (meal, sleep, pain, mood) whose concern "
        "answer came twice in a row ('run'), or a scale worsening over three answers ('worse')."
    )
    for_review: bool = Field(
        description="A routine change, night activity or a conversation run was raised."
    )


class ReviewOut(BaseModel):
    """The care manager's dong, week by resident, a page at a time: findings for review and
    largest drops first. Every page of one review is of the same week (the cursor holds it)."""

    since: datetime
    until: datetime
    data: list[ReviewRowOut]
    has_more: bool = Field(description="More rows follow: ask again with next_cursor.")
    next_cursor: str | None = Field(
        description="Pass as `cursor` for the next page (within a day); null on the last one."
    )

    @classmethod
    def of(cls, review: Review, rows: list[ReviewRow], next_cursor: str | None) -> ReviewOut:
        return cls(
            since=review.since,
            until=review.until,
            has_more=next_cursor is not None,
            next_cursor=next_cursor,
            data=[
                ReviewRowOut(
                    resident_id=r.resident_id,
                    home=r.home,
                    display_name=r.display_name,
                    status=r.status,
                    activity=r.activity,
                    usual=r.usual,
                    change=r.change,
                    night=r.night,
                    days_with_data=r.days_with_data,
                    findings=r.findings,
                    talk=r.talk,  # type: ignore[arg-type]
                    for_review=r.for_review,
                )
                for r in rows
            ],
        )


class StatusIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    status: str = Field(description="active, away or hospital")
    until: datetime | None = Field(
        default=None,
        description=(
            f"Required for away and hospital, absent for active: in the future and at most "
            f"{STATUS_MAX_DAYS} days ahead. Without a UTC offset it is local time (ANBU_TIMEZONE)."
        ),
    )


class QuietHoursIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    start: time | None = Field(description="Local HH:MM, or null with end to clear.")
    end: time | None = Field(
        description=f"Local HH:MM; may wrap midnight; at most {QUIET_MAX_H} h after start."
    )


class LevelsIn(BaseModel):
    """The three caps together; null clears one."""

    model_config = ConfigDict(extra="forbid")

    watch_h_max: float | None = Field(description=f"Hours, {CAP_MIN_H:g}-{CAP_MAX_H:g}, or null.")
    warning_h_max: float | None = Field(description="Hours, no lower than watch_h_max, or null.")
    critical_h_max: float | None = Field(description="Hours, no lower than warning_h_max, or null.")


class HealthOut(BaseModel):
    status: str
    database: bool


class HeardDeviceOut(BaseModel):
    """A device the gateway was heard from with no sensor registered for it."""

    device: str = Field(description="The vendor id a sensor would be registered under.")
    source: str = Field(description="zigbee2mqtt, esphome, tasmota, shelly or native.")
    vendor_class: str | None = Field(description="The class or model code it announced.")
    suggested_kind: str | None = Field(
        description="door, motion, contact, appliance, power, button, smoke, gas, co, "
        "water_leak or tamper."
    )
    suggested_kind_ko: str | None = Field(description="The suggested kind, in Korean.")
    model: str | None
    name: str | None
    first_heard: datetime
    last_heard: datetime
    removed_at: datetime | None = Field(description="Its discovery config was removed.")
    dead_letters: int = Field(description="Its messages refused so far; replayed on register.")

    @classmethod
    def of(cls, d: HeardDevice) -> HeardDeviceOut:
        kind = d.suggested_kind
        return cls(
            device=d.device,
            source=d.source,
            vendor_class=d.vendor_class,
            suggested_kind=None if kind is None else kind.value,
            suggested_kind_ko=None if kind is None else kind_label("ko", kind.value),
            model=d.model,
            name=d.name,
            first_heard=d.first_heard,
            last_heard=d.last_heard,
            removed_at=d.removed_at,
            dead_letters=d.dead_letters,
        )


class RegisterDeviceIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    device: str = Field(min_length=1, max_length=200)
    kind: SensorKind
    room: str = Field(description=f"One of {', '.join(ROOMS)}.")

    @field_validator("room")
    @classmethod
    def _room(cls, value: str) -> str:
        if value not in ROOMS:
            raise ValueError(f"room must be one of {', '.join(ROOMS)}")
        return value


class RegisteredDeviceOut(BaseModel):
    sensor_id: int
    replayed: int = Field(description="Its dead letters stored now (kept, marked replayed).")
    still_refused: int = Field(description="Its dead letters that still do not store.")


class DeviceFindingOut(BaseModel):
    """A finding about a device or a site (never about a person's care)."""

    id: int
    resident_id: int
    home: str
    dong_code: str
    kind: str
    severity: str
    raised_at: datetime
    reason_ko: str
    reason_en: str

    @classmethod
    def of(cls, f: DeviceFinding) -> DeviceFindingOut:
        return cls(**{k: getattr(f, k) for k in f.__slots__})


class SensorOut(BaseModel):
    id: int
    vendor_id: str
    kind: str
    room: str


class GatewayOut(BaseModel):
    id: str
    online: bool | None
    last_seen_at: datetime | None
    sensors: list[SensorOut]


class SiteOut(BaseModel):
    """A home as an installer sees it: where, how to get in, its devices; no health notes."""

    resident_id: int
    home: str
    dong_code: str
    address: str | None = Field(description="Install address (personal data)")
    access_notes: str | None = Field(description="How to get in (personal data)")
    gateways: list[GatewayOut]
    findings: list[DeviceFindingOut]

    @classmethod
    def of(cls, v: SiteView) -> SiteOut:
        return cls(
            resident_id=v.resident_id, home=v.home, dong_code=v.dong_code, address=v.address,
            access_notes=v.access_notes,
            gateways=[
                GatewayOut(
                    id=g.id, online=g.online, last_seen_at=g.last_seen_at,
                    sensors=[SensorOut(id=s.id, vendor_id=s.vendor_id, kind=s.kind, room=s.room)
                             for s in g.sensors],
                )
                for g in v.gateways
            ],
            findings=[DeviceFindingOut.of(f) for f in v.findings],
        )  # fmt: skip
