"""A resident's care settings as one resource (issue 22): `GET`, `PUT` and `PATCH
/api/v1/residents/{id}/settings`.

The status (with its end), the quiet hours and the level caps, read and written together: a
`PUT` sends all three, a `PATCH` any of them, and either is applied in one transaction (a rule
broken by one part writes none). The answer says what changed (the audit's field names) and what
the change closed: an away or hospital status stands down the open alerts the absence explains
and cancels their waiting calls, as `POST .../status` does (alerts.absence). The same rules,
audit and roles as the single-purpose routes (Action.RESIDENTS_CHANGE); another dong's resident
is 404. No personal data in the answers or the logs.
"""

# No `from __future__ import annotations`: FastAPI resolves the Annotated aliases at runtime.
from datetime import datetime
from typing import Annotated, Any

import psycopg
from fastapi import APIRouter, Depends, Security
from fastapi.security import OAuth2PasswordBearer
from pydantic import BaseModel, ConfigDict, Field

import registry
from alerts import absence
from dashboards import residents
from dashboards.api import local_moment
from dashboards.auth import CareManager
from dashboards.authz import Action, api_actor, visible_dongs
from dashboards.deps import Deps, get_deps
from dashboards.problems import REFUSAL
from dashboards.schemas import LevelsIn, QuietHoursIn, ResidentOut, StatusIn

AppDeps = Annotated[Deps, Depends(get_deps)]
Changer = Annotated[CareManager, Depends(api_actor(Action.RESIDENTS_CHANGE))]
Reader = Annotated[CareManager, Depends(api_actor(Action.RESIDENTS_READ))]

_RESPONSES: dict[int | str, dict[str, Any]] = {
    404: {"description": "No such resident in the care manager's dong", **REFUSAL},
    409: {"description": "The resident's service has ended", **REFUSAL},
    422: {"description": "A part breaks a rule (code and detail say which); none written",
          **REFUSAL},
}  # fmt: skip


class SettingsIn(BaseModel):
    """All three parts (PUT): the resident's settings become these."""

    model_config = ConfigDict(extra="forbid")

    status: StatusIn
    quiet_hours: QuietHoursIn
    levels: LevelsIn


class SettingsPatch(BaseModel):
    """Any of the three parts (PATCH); a part left out stays as it is, a part sent is sent
    whole (quiet hours' start and end together, the three caps together)."""

    model_config = ConfigDict(extra="forbid")

    status: StatusIn | None = None
    quiet_hours: QuietHoursIn | None = None
    levels: LevelsIn | None = None


class SettingsOut(BaseModel):
    """The settings as they now are, in the shape PUT takes (times local)."""

    status: StatusIn
    quiet_hours: QuietHoursIn
    levels: LevelsIn

    @classmethod
    def of(cls, r: ResidentOut) -> "SettingsOut":
        return cls(
            status=StatusIn(status=r.status, until=r.status_until),
            quiet_hours=QuietHoursIn(start=r.quiet_start, end=r.quiet_end),
            levels=LevelsIn(watch_h_max=r.watch_h_max, warning_h_max=r.warning_h_max,
                            critical_h_max=r.critical_h_max),
        )  # fmt: skip


class SettingsChangeOut(BaseModel):
    """What a PUT or PATCH did."""

    resident: ResidentOut
    settings: SettingsOut
    changed: list[str] = Field(description="The settings that changed (audit field names)")
    closed_alerts: list[int] = Field(
        description="Open alerts an away or hospital status explained, now resolved"
    )
    cancelled_calls: list[int] = Field(description="Their check-in calls not yet dialled")
    closing_after_call: list[int] = Field(
        description="Alerts whose call is on the line: resolved when it ends"
    )
    kept_open: list[int] = Field(
        description="Alerts kept open: the resident asked for help on a call"
    )


def _apply(
    conn: psycopg.Connection[Any],
    deps: Deps,
    manager: CareManager,
    resident_id: int,
    patch: SettingsPatch,
    now: datetime,
) -> tuple[list[str], absence.StandDown]:
    """The parts sent, status first (its stand-down), in the caller's transaction."""
    changed: list[str] = []
    stood = absence.StandDown()
    if patch.status is not None:
        until = local_moment(patch.status.until, deps.settings.timezone)
        change = absence.set_status(
            conn, resident_id, patch.status.status, until, manager.id,
            now=now, timezone=deps.settings.timezone,
        )  # fmt: skip
        changed += change.changed
        stood = change.alerts
    if patch.quiet_hours is not None:
        q = patch.quiet_hours
        changed += registry.set_quiet_hours(conn, resident_id, q.start, q.end, manager.id, now=now)
    if patch.levels is not None:
        lv = patch.levels
        changed += registry.set_level_caps(
            conn, resident_id, lv.watch_h_max, lv.warning_h_max, lv.critical_h_max, manager.id,
            now=now,
        )  # fmt: skip
    return changed, stood


def settings_router() -> APIRouter:
    router = APIRouter(prefix="/api/v1", tags=["api"])
    scheme = OAuth2PasswordBearer(tokenUrl="/api/v1/token", auto_error=False)
    secured = [Security(scheme)]

    def change(
        deps: Deps, manager: CareManager, resident_id: int, patch: SettingsPatch
    ) -> SettingsChangeOut:
        now = deps.clock.now()
        dongs = visible_dongs(manager)
        with deps.db.connection() as conn:
            residents.get_resident(conn, resident_id, dongs)  # 404 outside the dongs in view
            changed, stood = _apply(conn, deps, manager, resident_id, patch, now)
            view = ResidentOut.of(residents.get_resident(conn, resident_id, dongs), now)
        return SettingsChangeOut(
            resident=view, settings=SettingsOut.of(view), changed=changed,
            closed_alerts=stood.closed, cancelled_calls=stood.cancelled_calls,
            closing_after_call=stood.waiting_for_call, kept_open=stood.kept,
        )  # fmt: skip

    @router.get(
        "/residents/{resident_id}/settings",
        response_model=SettingsOut,
        dependencies=secured,
        responses={404: _RESPONSES[404]},
    )
    def get_settings(resident_id: int, manager: Reader, deps: AppDeps) -> SettingsOut:
        """The resident's care settings, in the shape PUT takes."""
        now = deps.clock.now()
        with deps.db.connection() as conn:
            view = residents.get_resident(conn, resident_id, visible_dongs(manager))
        return SettingsOut.of(ResidentOut.of(view, now))

    @router.put(
        "/residents/{resident_id}/settings",
        response_model=SettingsChangeOut,
        dependencies=secured,
        responses=_RESPONSES,
    )
    def put_settings(
        resident_id: int, body: SettingsIn, manager: Changer, deps: AppDeps
    ) -> SettingsChangeOut:
        """The status, quiet hours and level caps together, in one transaction."""
        patch = SettingsPatch(status=body.status, quiet_hours=body.quiet_hours, levels=body.levels)
        return change(deps, manager, resident_id, patch)

    @router.patch(
        "/residents/{resident_id}/settings",
        response_model=SettingsChangeOut,
        dependencies=secured,
        responses=_RESPONSES,
    )
    def patch_settings(
        resident_id: int, body: SettingsPatch, manager: Changer, deps: AppDeps
    ) -> SettingsChangeOut:
        """Any of the status, quiet hours and level caps, in one transaction; what changed and
        what an away or hospital status closed."""
        return change(deps, manager, resident_id, body)

    return router
