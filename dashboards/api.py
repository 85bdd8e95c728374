"""The JSON API under /api/v1: the alerts and residents the pages show, for apps."""

# No `from __future__ import annotations`: FastAPI resolves the Annotated aliases at runtime.
import json
import logging
import re
from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Any, Literal, get_args
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Depends, Header, HTTPException, Query, Request, Response, Security
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from fastapi.security import OAuth2PasswordBearer
from pydantic import BaseModel, Field

import registry
from alerts import absence, feed, queries
from core.crypto import DataKeyError
from core.domain import AlertState
from dashboards import paging, residents, review, sites
from dashboards.auth import CareManager, LoginLocked, client_address
from dashboards.authz import Action, api_actor, sees_dong, visible_dongs
from dashboards.deps import Deps, get_deps
from dashboards.enrolment_access import keyring_of
from dashboards.enrolment_text import kind_label, room_label
from dashboards.i18n import text
from dashboards.paging import LIMIT_DEFAULT, Page, PageCursor, PageLimit
from dashboards.schemas import (
    AcknowledgeIn,
    AlertDetailOut,
    AlertOut,
    DeviceFindingOut,
    FeedEventOut,
    FeedOut,
    HeardDeviceOut,
    LevelsIn,
    MeOut,
    QuietHoursIn,
    ReassignIn,
    RegisterDeviceIn,
    RegisteredDeviceOut,
    ResidentActivityOut,
    ResidentOut,
    ResolveIn,
    ReviewOut,
    SettingChangeOut,
    SeverityName,
    SiteOut,
    StatusIn,
    TokenOut,
)
from detectors.health import HealthPolicy
from ingest import devices
from registry.assignment import reassign_resident as reassign
from registry.heard import DeviceNotHeard

log = logging.getLogger(__name__)

IfMatch = Annotated[
    str | None,
    Header(
        alias="If-Match",
        description="The ETag of the alert as read: 412 if it changed since (say, raised).",
    ),
]
STRONG_TAG = re.compile(r'"([0-9]{1,18})"')  # an alert's ETag
KIND = re.compile(r"[a-z_]{1,40}")  # an alert kind's code

_REFUSAL = {
    "content": {
        "application/json": {
            "schema": {
                "type": "object",
                "properties": {
                    "detail": {"type": "string"},
                    "detail_en": {"type": "string"},
                    "errors": {"type": "array", "description": "Unreadable input only"},
                },
            }
        }
    }
}
_CHANGE_RESPONSES: dict[int | str, dict[str, Any]] = {
    404: {"description": "No such resident in the care manager's dong", **_REFUSAL},
    409: {"description": "The resident's service has ended", **_REFUSAL},
    422: {"description": "The change breaks a rule (detail says which, Korean first)", **_REFUSAL},
}

_STATES = [s.value for s in AlertState]
_SEVERITIES = list(get_args(SeverityName))
# an alert write's refusals: the fields dashboards.app adds to the problem on a 409 and a 412
_ALERT_WRITE_RESPONSES: dict[int | str, dict[str, Any]] = {
    404: {"description": "No such alert in the dongs in view", **_REFUSAL},
    409: {
        "description": "Not possible in the alert's state (who brought it there, and when)",
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "required": ["state"],
                    "properties": {"state": {"type": "string", "enum": _STATES}},
                }
            }
        },
    },
    412: {
        "description": "If-Match names a version the alert no longer has: read it again",
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "required": ["state", "severity", "version"],
                    "properties": {
                        "state": {"type": "string", "enum": _STATES},
                        "severity": {"type": "string", "enum": _SEVERITIES},
                        "version": {"type": "integer", "description": "Also the answer's ETag"},
                    },
                }
            }
        },
    },
}

_CREDENTIALS_BODY: dict[str, Any] = {
    "type": "object",
    "required": ["username", "password"],
    "properties": {
        "username": {"type": "string"},
        "password": {"type": "string"},
        "code": {"type": "string", "description": "TOTP code, for accounts that enrolled one"},
    },
}


async def _credentials(request: Request) -> tuple[str, str, str]:
    """username, password and TOTP code from a form or a JSON body; empty when absent."""
    content_type = request.headers.get("content-type", "")
    data: Any
    if content_type.startswith("application/json"):
        try:
            data = json.loads(await request.body())
        except (ValueError, RecursionError):  # RecursionError: nested deeper than Python
            data = {}
    else:
        data = await request.form()
    if not hasattr(data, "get"):
        return "", "", ""
    fields = (data.get("username"), data.get("password"), data.get("code"))
    username, password, code = (value if isinstance(value, str) else "" for value in fields)
    return username, password, code


Me = Annotated[CareManager, Depends(api_actor(Action.ME))]
AlertReader = Annotated[CareManager, Depends(api_actor(Action.ALERTS_READ))]
EventReader = Annotated[CareManager, Depends(api_actor(Action.EVENTS_READ))]
AlertActor = Annotated[CareManager, Depends(api_actor(Action.ALERTS_ACT))]
AlertAssigner = Annotated[CareManager, Depends(api_actor(Action.ALERTS_REASSIGN))]
ResidentReader = Annotated[CareManager, Depends(api_actor(Action.RESIDENTS_READ))]
CardReader = Annotated[CareManager, Depends(api_actor(Action.RESIDENTS_CARD))]
ResidentChanger = Annotated[CareManager, Depends(api_actor(Action.RESIDENTS_CHANGE))]
ResidentAssigner = Annotated[CareManager, Depends(api_actor(Action.RESIDENTS_REASSIGN))]
SiteReader = Annotated[CareManager, Depends(api_actor(Action.RESIDENTS_SITE))]
ReviewReader = Annotated[CareManager, Depends(api_actor(Action.REVIEW_READ))]
DeviceReader = Annotated[CareManager, Depends(api_actor(Action.DEVICES_READ))]
DeviceWriter = Annotated[CareManager, Depends(api_actor(Action.DEVICES_WRITE))]
AppDeps = Annotated[Deps, Depends(get_deps)]

# What a read shows, as recorded in the access log.
ALERT_FIELDS = ("name", "timeline", "calls", "transcripts")
CARD_FIELDS = ("name", "care_settings", "health_notes", "access_notes")
ACTIVITY_FIELDS = ("activity", "findings", "outings")  # outings: when the home is empty
SITE_FIELDS = ("access_notes", "address")


class SafetyDeviceOut(BaseModel):
    """A safety device of the home and its last check-in (any message: state, heartbeat,
    battery); rarely used, it is known alive only by those."""

    sensor_id: int
    kind: str = Field(description="button, smoke, gas, co, water_leak or tamper")
    kind_ko: str = Field(description="응급호출기, 화재 감지기, ...")
    room: str
    room_ko: str
    last_seen_at: datetime | None = Field(description="UTC; None when never heard.")
    last_seen_local: str | None = Field(description="마지막 신호 in ANBU_TIMEZONE (Asia/Seoul).")
    online: bool = Field(description="Heard within 24 h (the health policy) and not unavailable.")
    state: str = Field(description="online, silent, offline (reported unavailable) or never")
    battery: float | None = Field(description="Percent, when the device reports it.")

    @classmethod
    def of(
        cls, d: residents.SafetyDevice, local: Callable[[datetime | None], str]
    ) -> "SafetyDeviceOut":
        return cls(
            sensor_id=d.sensor_id, kind=d.kind, kind_ko=kind_label("ko", d.kind), room=d.room,
            room_ko=room_label("ko", d.room), last_seen_at=d.last_seen_at,
            last_seen_local=local(d.last_seen_at) if d.last_seen_at else None,
            online=d.online, state=d.state, battery=d.battery,
        )  # fmt: skip


class ResidentCardOut(ResidentOut):
    """A resident's card: care settings and the notes a visit needs (opened from their sealed
    form); every read is recorded in the access log."""

    health_notes: str | None = Field(description="Health notes (personal data)")
    access_notes: str | None = Field(description="How to get in: door code etc. (personal data)")
    safety_devices: list[SafetyDeviceOut] = Field(
        default_factory=list,
        description="The home's emergency buttons and fire, gas, CO, leak and tamper detectors, "
        "each with its last check-in; the worst first.",
    )


def _detail(deps: Deps, alert_id: int, manager: CareManager, response: Response) -> AlertDetailOut:
    with deps.db.connection() as conn:
        detail = queries.get_alert(conn, alert_id, visible_dongs(manager))
    response.headers["ETag"] = etag(detail.version)
    return AlertDetailOut.of(detail)


def etag(version: int) -> str:
    """An alert version as its ETag."""
    return f'"{version}"'


def seen(if_match: str | None) -> int | None:
    """The alert version an If-Match header names: None without one (or `*`); 400 when it
    names something that is not an alert's ETag."""
    if if_match is None or if_match.strip() == "*":
        return None
    found = STRONG_TAG.fullmatch(if_match.strip())  # If-Match compares strongly: no W/
    if found is None:
        raise HTTPException(status_code=400, detail="If-Match: one ETag of this alert, as given")
    return int(found.group(1))


def _change(
    deps: Deps,
    manager: CareManager,
    resident_id: int,
    write: Callable[[Any, datetime], list[str]],
) -> ResidentOut:
    """Apply one registry write for `manager` in one transaction; the resident as it now is."""
    now = deps.clock.now()
    dongs = visible_dongs(manager)
    with deps.db.connection() as conn:
        residents.get_resident(conn, resident_id, dongs)  # 404 outside the dongs in view
        write(conn, now)
        view = residents.get_resident(conn, resident_id, dongs)
    return ResidentOut.of(view, now)


_GATEWAY_404: dict[int | str, dict[str, Any]] = {
    404: {"description": "No such gateway in the care manager's dong", **_REFUSAL}
}


def _gateway_not_found() -> JSONResponse:
    return JSONResponse(
        {"detail": "게이트웨이를 찾을 수 없습니다.", "detail_en": "Gateway not found."},
        status_code=404,
    )


def _data_key_refusal() -> JSONResponse:
    """503: the data key cannot open the notes (the same words as the pages)."""
    return JSONResponse(
        {"detail": text("ko", "data_key"), "detail_en": text("en", "data_key")}, status_code=503
    )


def local_moment(moment: datetime | None, timezone: str) -> datetime | None:
    """`moment`, read as local time in `timezone` when it carries no UTC offset."""
    if moment is None or moment.utcoffset() is not None:
        return moment
    return moment.replace(tzinfo=ZoneInfo(timezone))


def api_router() -> APIRouter:
    """Routes of the JSON API; authentication by bearer token (POST /api/v1/token)."""
    router = APIRouter(prefix="/api/v1", tags=["api"])
    scheme = OAuth2PasswordBearer(tokenUrl="/api/v1/token", auto_error=False)
    secured = [Security(scheme)]  # documents the bearer token in OpenAPI

    @router.post(
        "/token",
        response_model=TokenOut,
        responses={
            401: {"description": "Wrong username, password or code (no detail given)"},
            429: {"description": "Too many failed logins for the name or address: wait"},
        },
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {
                    "application/x-www-form-urlencoded": {"schema": _CREDENTIALS_BODY},
                    "application/json": {"schema": _CREDENTIALS_BODY},
                },
            }
        },
    )
    async def token(request: Request, deps: AppDeps) -> TokenOut:
        """Exchange a care manager's username and password for a signed bearer token."""
        username, password, code = await _credentials(request)
        manager = None
        if username and password:
            try:
                manager = await run_in_threadpool(
                    deps.auth.login, username, password, client_address(request), code
                )
            except LoginLocked as exc:
                raise HTTPException(
                    status_code=429,
                    detail=text("ko", "login_locked"),
                    headers={"Retry-After": str(exc.retry_after_s)},
                ) from None
        if manager is None:
            raise HTTPException(
                status_code=401,
                detail=text("ko", "login_failed"),
                headers={"WWW-Authenticate": "Bearer"},
            )
        return TokenOut(
            access_token=deps.auth.issue_token(manager),
            expires_in=int(deps.auth.token_lifetime.total_seconds()),
        )

    @router.get("/me", response_model=MeOut, dependencies=secured)
    def me(manager: Me) -> MeOut:
        """The logged-in care manager."""
        return MeOut.of(manager)

    @router.get("/alerts", response_model=Page[AlertOut], dependencies=secured)
    def list_alerts(
        manager: AlertReader,
        deps: AppDeps,
        limit: PageLimit = LIMIT_DEFAULT,
        cursor: PageCursor = None,
        state: Annotated[list[AlertState] | None, Query(description="Only these states")] = None,
        severity: Annotated[list[SeverityName] | None, Query(description="Only these")] = None,
        kind: Annotated[list[str] | None, Query(description="Only these kinds")] = None,
        resident_id: int | None = None,
        opened_since: Annotated[datetime | None, Query(description="Opened at or after")] = None,
        opened_until: Annotated[datetime | None, Query(description="Opened before")] = None,
        updated_since: Annotated[
            datetime | None, Query(description="Changed at or after (for syncing)")
        ] = None,
        include_resolved: bool = False,
        queue: Annotated[
            Literal["care", "technician", "all"],
            Query(
                description="care (the default): the care queue's alerts; technician: device "
                "and site alerts (a safety device's fault is in the care queue); all: both"
            ),
        ] = "care",
    ) -> Page[AlertOut]:
        """Alerts of the dongs in view (a care manager's own, a supervisor's district), newest
        opened first (opened_at, then id: an order that never changes, so paging with
        next_cursor sees every alert once). Without `state`, every state but resolved, unless
        `include_resolved`; the care queue's alerts unless `queue` says otherwise. Times with
        their zone."""
        if any(not KIND.fullmatch(k) for k in kind or ()):
            raise HTTPException(status_code=422, detail="kind: a kind's code (a-z, _)")
        for moment in (opened_since, opened_until, updated_since):
            if moment is not None and moment.tzinfo is None:
                raise HTTPException(status_code=422, detail="times need their zone (UTC: Z)")
        wanted = queries.AlertFilter(
            states=tuple(s.value for s in state or ()),
            include_resolved=include_resolved,
            severities=tuple(severity or ()),
            kinds=tuple(kind or ()),
            resident_id=resident_id,
            opened_since=opened_since,
            opened_until=opened_until,
            updated_since=updated_since,
            queue=None if queue == "all" else queue,
        )
        after = paging.place_or_400("alerts", cursor)
        with deps.db.connection() as conn:
            page = queries.page_alerts(
                conn, visible_dongs(manager), wanted, limit=limit, after=after
            )
        return paging.page("alerts", [AlertOut.of(v) for v in page.alerts], page.next_after)

    @router.get(
        "/alerts/{alert_id}",
        response_model=AlertDetailOut,
        dependencies=secured,
        responses={404: _ALERT_WRITE_RESPONSES[404]},
    )
    def get_alert(
        alert_id: int, request: Request, response: Response, manager: AlertReader, deps: AppDeps
    ) -> AlertDetailOut:
        """One alert with its timeline and calls; 404 when it is not in the dongs in view.
        The read is recorded in the access log (the timeline may carry a call's transcript)."""
        with deps.db.connection() as conn:
            detail = queries.get_alert(conn, alert_id, visible_dongs(manager))
            residents.record_read(
                conn, request, manager, detail.alert.resident_id, "alert", ALERT_FIELDS
            )
        response.headers["ETag"] = etag(detail.version)
        return AlertDetailOut.of(detail)

    @router.post(
        "/alerts/{alert_id}/acknowledge",
        response_model=AlertDetailOut,
        dependencies=secured,
        responses=_ALERT_WRITE_RESPONSES,
    )
    def acknowledge(
        alert_id: int,
        body: AcknowledgeIn,
        manager: AlertActor,
        deps: AppDeps,
        response: Response,
        if_match: IfMatch = None,
    ) -> AlertDetailOut:
        """Take the alert; 409 when it cannot be acknowledged in its current state, 412 when
        If-Match names a version it no longer has (it changed since it was read)."""
        deps.alerts.acknowledge(
            alert_id, manager.id, visible_dongs(manager), body.note.strip(), seen(if_match)
        )
        return _detail(deps, alert_id, manager, response)

    @router.post(
        "/alerts/{alert_id}/reassign",
        response_model=AlertDetailOut,
        dependencies=secured,
        responses={
            **_ALERT_WRITE_RESPONSES,
            403: {"description": "Only supervisors and admins reassign", **_REFUSAL},
            404: {"description": "No such alert in the district", **_REFUSAL},
            422: {"description": "No such active care manager in the district", **_REFUSAL},
        },
    )
    def reassign_alert(
        alert_id: int,
        body: ReassignIn,
        manager: AlertAssigner,
        deps: AppDeps,
        response: Response,
        if_match: IfMatch = None,
    ) -> AlertDetailOut:
        """Hand the alert to another care manager of the district; audited in its timeline
        (If-Match as acknowledge)."""
        deps.alerts.reassign(
            alert_id, manager.id, visible_dongs(manager), body.care_manager_id, body.note.strip(),
            seen(if_match),
        )  # fmt: skip
        return _detail(deps, alert_id, manager, response)

    @router.post(
        "/alerts/{alert_id}/resolve",
        response_model=AlertDetailOut,
        dependencies=secured,
        responses=_ALERT_WRITE_RESPONSES,
    )
    def resolve(
        alert_id: int,
        body: ResolveIn,
        manager: AlertActor,
        deps: AppDeps,
        response: Response,
        if_match: IfMatch = None,
    ) -> AlertDetailOut:
        """Close the alert with an outcome; 409 unless acknowledged or escalated, 412 when
        If-Match names a version it no longer has (say its severity was raised since it was
        read: it is never closed blind)."""
        deps.alerts.resolve(
            alert_id, manager.id, visible_dongs(manager), body.outcome, body.note.strip(),
            seen(if_match),
        )  # fmt: skip
        return _detail(deps, alert_id, manager, response)

    @router.get("/residents", response_model=Page[ResidentOut], dependencies=secured)
    def list_residents(
        manager: ResidentReader,
        deps: AppDeps,
        limit: PageLimit = LIMIT_DEFAULT,
        cursor: PageCursor = None,
    ) -> Page[ResidentOut]:
        """Residents of the dongs in view with their care settings (no phone, no notes): ended
        ones last, by dong and home, a page at a time."""
        now = deps.clock.now()
        after = paging.place_or_400("residents", cursor)
        with deps.db.connection() as conn:
            views, more = residents.page_residents(
                conn, visible_dongs(manager), limit=limit, after=after
            )
        return paging.page("residents", [ResidentOut.of(v, now) for v in views], more)

    @router.get(
        "/residents/{resident_id}",
        response_model=ResidentCardOut,
        dependencies=secured,
        responses={
            404: _CHANGE_RESPONSES[404],
            503: {"description": "The notes cannot be opened (data key)", **_REFUSAL},
        },
    )
    def resident_card(
        resident_id: int, request: Request, manager: CardReader, deps: AppDeps
    ) -> Any:
        """A resident of the dongs in view with their health and access notes; the read is
        recorded in the access log."""
        now = deps.clock.now()
        try:
            keyring = keyring_of(deps)
            with deps.db.connection() as conn:
                view, notes = residents.resident_card(
                    conn, resident_id, visible_dongs(manager), keyring
                )
                safety = residents.safety_devices(conn, resident_id, now, HealthPolicy())
                residents.record_read(conn, request, manager, resident_id, "card", CARD_FIELDS)
        except DataKeyError:
            log.error("resident notes could not be opened", extra={"resident_id": resident_id})
            return _data_key_refusal()
        return ResidentCardOut(
            **ResidentOut.of(view, now).model_dump(),
            health_notes=notes.health_notes,
            access_notes=notes.access_notes,
            safety_devices=[SafetyDeviceOut.of(d, deps.local_time) for d in safety],
        )

    @router.get(
        "/residents/{resident_id}/history",
        response_model=Page[SettingChangeOut],
        dependencies=secured,
        responses={404: _CHANGE_RESPONSES[404]},
    )
    def resident_history(
        resident_id: int,
        manager: ResidentReader,
        deps: AppDeps,
        limit: PageLimit = LIMIT_DEFAULT,
        cursor: PageCursor = None,
    ) -> Page[SettingChangeOut]:
        """Who changed a resident's care settings (status and its end, quiet hours, the hours
        of each level), when, from what to what; newest first, a page at a time. Times are
        UTC; quiet hours are local (HH:MM), as set."""
        after = paging.place_or_400("history", cursor)
        with deps.db.connection() as conn:
            changes, more = residents.page_history(
                conn, resident_id, visible_dongs(manager), limit=limit, after=after
            )
        return paging.page("history", [SettingChangeOut.of(c) for c in changes], more)

    @router.get("/events", response_model=FeedOut, dependencies=secured)
    def events(
        request: Request,
        manager: EventReader,
        deps: AppDeps,
        after: Annotated[
            int, Query(ge=0, le=2**63 - 1, description="The last seq seen; 0 from the start")
        ] = 0,
        limit: PageLimit = LIMIT_DEFAULT,
    ) -> FeedOut:
        """The alert events of the dongs in view, in the order they were published: every
        event once, none lost to a transaction that committed late (alerts.feed). Poll with
        the last `seq` seen as `after`; de-duplicate by `event_id`. The reads are recorded in
        the access log, as an alert's timeline is."""
        with deps.db.connection() as conn:
            feed.publish(conn, deps.clock.now())
            found, more, next_after = feed.read(conn, visible_dongs(manager), after, limit)
            for rid in feed.residents_of(found):  # reasons may quote the care line's messages
                residents.record_read(
                    conn, request, manager, rid, "alert", ("timeline", "transcripts")
                )
        return FeedOut(
            data=[FeedEventOut.of(e) for e in found], has_more=more, next_after=next_after
        )

    @router.get("/review", response_model=ReviewOut, dependencies=secured)
    def weekly_review(
        manager: ReviewReader,
        deps: AppDeps,
        limit: PageLimit = LIMIT_DEFAULT,
        cursor: PageCursor = None,
    ) -> ReviewOut:
        """The week of the dongs in view: each resident's last 7 days against the 4 weeks
        before, and the week's findings (routine changes and night activity are raised for
        this review), a page at a time. A cursor holds the week it was read for and serves
        for a day (400 after: start again without one)."""
        tz = ZoneInfo(deps.settings.timezone)
        dongs = visible_dongs(manager)
        now = deps.clock.now()
        after = paging.place_or_400("review", cursor)
        try:
            with deps.db.connection() as conn:
                week, shown, place = review.review_page(
                    conn, dongs, now, tz, deps.settings.conversation_script, after, limit
                )
        except review.CursorExpired:
            raise HTTPException(status_code=400, detail="cursor expired") from None
        return ReviewOut.of(week, shown, paging.encode("review", place))

    @router.get(
        "/residents/{resident_id}/activity",
        response_model=ResidentActivityOut,
        dependencies=secured,
        responses={404: _CHANGE_RESPONSES[404]},
    )
    def resident_activity(
        resident_id: int,
        request: Request,
        manager: ResidentReader,
        deps: AppDeps,
        days: Annotated[int, Query(ge=1, le=31, description="Local days, today included.")] = 7,
    ) -> ResidentActivityOut:
        """A resident of the care manager's dong, hour by hour over the last days (from the
        hourly activity summary), with the findings raised in that time."""
        now = deps.clock.now()
        tz = ZoneInfo(deps.settings.timezone)
        with deps.db.connection() as conn:
            week = residents.activity_week(conn, resident_id, visible_dongs(manager), now, tz, days)
            residents.record_read(conn, request, manager, resident_id, "activity", ACTIVITY_FIELDS)
        return ResidentActivityOut.of(week, now)

    @router.post(
        "/residents/{resident_id}/status",
        response_model=ResidentOut,
        dependencies=secured,
        responses=_CHANGE_RESPONSES,
    )
    def set_status(
        resident_id: int, body: StatusIn, manager: ResidentChanger, deps: AppDeps
    ) -> ResidentOut:
        """Active, or away / hospital until an end date: inactivity alerts pause until then.

        Away / hospital also closes, in the same transaction, the open alerts the absence
        explains (inactivity, not up, not back, night activity, unknown status, unreached
        check-ins) and cancels their calls still waiting to be dialled; a help request or any
        other answer of the resident stays open. Back to active reopens nothing.
        """
        until = local_moment(body.until, deps.settings.timezone)
        return _change(
            deps, manager, resident_id,
            lambda conn, now: absence.set_status(
                conn, resident_id, body.status, until, manager.id,
                now=now, timezone=deps.settings.timezone,
            ).changed,
        )  # fmt: skip

    @router.post(
        "/residents/{resident_id}/quiet-hours",
        response_model=ResidentOut,
        dependencies=secured,
        responses=_CHANGE_RESPONSES,
    )
    def set_quiet_hours(
        resident_id: int, body: QuietHoursIn, manager: ResidentChanger, deps: AppDeps
    ) -> ResidentOut:
        """Local hours in which non-critical calls wait (both null: none)."""
        return _change(
            deps, manager, resident_id,
            lambda conn, now: registry.set_quiet_hours(
                conn, resident_id, body.start, body.end, manager.id, now=now
            ),
        )  # fmt: skip

    @router.post(
        "/residents/{resident_id}/levels",
        response_model=ResidentOut,
        dependencies=secured,
        responses=_CHANGE_RESPONSES,
    )
    def set_levels(
        resident_id: int, body: LevelsIn, manager: ResidentChanger, deps: AppDeps
    ) -> ResidentOut:
        """Hours of silence by which watch / warning / critical are reached at the latest."""
        return _change(
            deps, manager, resident_id,
            lambda conn, now: registry.set_level_caps(
                conn, resident_id, body.watch_h_max, body.warning_h_max, body.critical_h_max,
                manager.id, now=now,
            ),
        )  # fmt: skip

    @router.get(
        "/gateways/{gateway_id}/devices",
        response_model=list[HeardDeviceOut],
        dependencies=secured,
        responses=_GATEWAY_404,
    )
    def heard_devices(
        gateway_id: str,
        manager: DeviceReader,
        deps: AppDeps,
        include_removed: Annotated[
            bool, Query(description="Also the devices whose discovery config was removed.")
        ] = True,
    ) -> Any:
        """Devices the gateway announced or was heard from but no sensor is registered for,
        present ones first, most recently heard first; 404 for a gateway outside the dongs in
        view."""
        if not sees_dong(manager, devices.gateway_dong(deps.db, gateway_id)):
            return _gateway_not_found()
        heard = devices.list_heard_devices(deps.db, gateway_id, include_removed=include_removed)
        return [HeardDeviceOut.of(d) for d in heard]

    @router.post(
        "/gateways/{gateway_id}/devices",
        response_model=RegisteredDeviceOut,
        dependencies=secured,
        responses={
            404: {"description": "No such gateway in the dong, or device not heard", **_REFUSAL}
        },
    )
    def register_heard_device(
        gateway_id: str, body: RegisterDeviceIn, manager: DeviceWriter, deps: AppDeps
    ) -> Any:
        """Register a heard device as a sensor (kind, room) and replay what it sent before:
        its dead letters are stored as readings once, and kept, marked replayed."""
        if not sees_dong(manager, devices.gateway_dong(deps.db, gateway_id)):
            return _gateway_not_found()
        try:
            done = devices.register_device(
                deps.db, gateway_id, body.device, body.kind, body.room, deps.clock.now(),
                future_tolerance_s=deps.settings.future_tolerance_s,
            )  # fmt: skip
        except DeviceNotHeard:
            return JSONResponse(
                {"detail": "이 게이트웨이에서 들린 적 없는 기기입니다.",
                 "detail_en": "No such device was heard on this gateway."},
                status_code=404,
            )  # fmt: skip
        return RegisteredDeviceOut(
            sensor_id=done.sensor_id,
            replayed=done.replay.replayed,
            still_refused=done.replay.still_dead,
        )

    @router.post(
        "/residents/{resident_id}/reassign",
        response_model=ResidentOut,
        dependencies=secured,
        responses={403: {"description": "Only supervisors and admins reassign", **_REFUSAL},
                   **_CHANGE_RESPONSES},
    )  # fmt: skip
    def reassign_resident(
        resident_id: int, body: ReassignIn, manager: ResidentAssigner, deps: AppDeps
    ) -> ResidentOut:
        """Make another care manager of the district the resident's own; audited."""
        dongs = visible_dongs(manager)
        return _change(
            deps, manager, resident_id,
            lambda conn, now: ["care_manager_id"] if reassign(
                conn, resident_id, dongs, body.care_manager_id, manager.id, now
            ) else [],
        )  # fmt: skip

    @router.get(
        "/residents/{resident_id}/site",
        response_model=SiteOut,
        dependencies=secured,
        responses={
            404: _CHANGE_RESPONSES[404],
            503: {"description": "The notes cannot be opened (data key)", **_REFUSAL},
        },
    )
    def resident_site(
        resident_id: int, request: Request, manager: SiteReader, deps: AppDeps
    ) -> Any:
        """A home as an installer sees it: install address, access notes, gateways and sensors,
        device findings; no health notes. The read is recorded in the access log."""
        try:
            keyring = keyring_of(deps)
            with deps.db.connection() as conn:
                view = sites.site(conn, resident_id, visible_dongs(manager), keyring)
                residents.record_read(conn, request, manager, resident_id, "notes", SITE_FIELDS)
        except DataKeyError:
            log.error("resident notes could not be opened", extra={"resident_id": resident_id})
            return _data_key_refusal()
        return SiteOut.of(view)

    @router.get("/device-findings", response_model=Page[DeviceFindingOut], dependencies=secured)
    def list_device_findings(
        manager: DeviceReader,
        deps: AppDeps,
        limit: PageLimit = LIMIT_DEFAULT,
        cursor: PageCursor = None,
    ) -> Page[DeviceFindingOut]:
        """Device and site findings (silent or offline devices, flat batteries, gateways and
        sites offline) of the dongs in view, newest first, a page at a time."""
        after = paging.place_or_400("device-findings", cursor)
        with deps.db.connection() as conn:
            found, more = sites.page_device_findings(
                conn, visible_dongs(manager), limit=limit, after=after
            )
        return paging.page("device-findings", [DeviceFindingOut.of(f) for f in found], more)

    return router
