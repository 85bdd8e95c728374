"""A resident's course over the JSON API, for a district's supervisor or admin: transfer, pause,
end of service (alerts.course does the work). Any other role is answered 403; a resident
outside the actor's district 404, as if it did not exist."""

# No `from __future__ import annotations`: FastAPI resolves the Annotated aliases at runtime.
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Security
from fastapi.security import OAuth2PasswordBearer
from pydantic import BaseModel, Field

from alerts.course import END_REASONS, ResidentCourse, broker_admin_of
from dashboards.auth import CareManager
from dashboards.authz import Action, require
from dashboards.deps import Deps, api_manager, get_deps


def course_manager(manager: Annotated[CareManager, Depends(api_manager)]) -> CareManager:
    """The caller, when a supervisor or admin; otherwise Forbidden, answered 403 like every
    refusal of the app, saying who may (dashboards.i18n.FORBIDDEN_BY_ACTION)."""
    return require(manager, Action.COURSE)


Actor = Annotated[CareManager, Depends(course_manager)]
AppDeps = Annotated[Deps, Depends(get_deps)]


class TransferIn(BaseModel):
    dong_code: str = Field(min_length=1, max_length=32, description="the new dong's code")
    care_manager_id: int | None = Field(
        default=None, description="a care manager of the new dong to assign; none: the dong's"
    )


class TransferOut(BaseModel):
    resident_id: int
    from_dong: str
    to_dong: str


class PauseIn(BaseModel):
    until: datetime = Field(description="end date with a time zone; the service resumes then")
    status: Literal["hospital", "away"] = "hospital"


class PauseOut(BaseModel):
    resident_id: int
    changed: list[str]
    alerts_closed: list[int]


class EndIn(BaseModel):
    reason: Literal["moved", "care_home", "died", "other"] = Field(
        description=", ".join(f"{k}: {ko}" for k, (ko, _) in END_REASONS.items())
    )


class EndOut(BaseModel):
    resident_id: int
    reason: str
    alerts_closed: list[int]
    calls_cancelled: list[int]
    plans_stopped: list[int]
    gateways_revoked: list[str]
    gateways_pending: list[str] = Field(
        description="gateways whose broker account could not be revoked yet (retried nightly)"
    )


def _course(deps: Deps) -> ResidentCourse:
    return ResidentCourse(deps.db, deps.settings, deps.clock, broker_admin_of(deps.settings))


def course_router() -> APIRouter:
    """POST /api/v1/residents/{id}/transfer | pause | end."""
    router = APIRouter(prefix="/api/v1/residents", tags=["api"])
    scheme = OAuth2PasswordBearer(tokenUrl="/api/v1/token", auto_error=False)
    secured = [Security(scheme)]
    refusals: dict[int | str, dict[str, Any]] = {403: {"description": "Not a supervisor or admin"},
                404: {"description": "No such resident in the district"}}  # fmt: skip

    @router.post("/{resident_id}/transfer", response_model=TransferOut, dependencies=secured,
                 responses=refusals)  # fmt: skip
    def transfer(resident_id: int, body: TransferIn, actor: Actor, deps: AppDeps) -> TransferOut:
        old = _course(deps).transfer(actor.id, resident_id, body.dong_code, body.care_manager_id)
        return TransferOut(resident_id=resident_id, from_dong=old, to_dong=body.dong_code)

    @router.post("/{resident_id}/pause", response_model=PauseOut, dependencies=secured,
                 responses=refusals)  # fmt: skip
    def pause(resident_id: int, body: PauseIn, actor: Actor, deps: AppDeps) -> PauseOut:
        change = _course(deps).pause(actor.id, resident_id, body.until, body.status)
        return PauseOut(resident_id=resident_id, changed=change.changed,
                        alerts_closed=change.alerts.closed)  # fmt: skip

    @router.post("/{resident_id}/end", response_model=EndOut, dependencies=secured,
                 responses=refusals)  # fmt: skip
    def end(resident_id: int, body: EndIn, actor: Actor, deps: AppDeps) -> EndOut:
        ending, revocation = _course(deps).end(actor.id, resident_id, body.reason)
        return EndOut(
            resident_id=resident_id, reason=ending.reason, alerts_closed=ending.closed_alerts,
            calls_cancelled=ending.cancelled_calls, plans_stopped=ending.cancelled_plans,
            gateways_revoked=revocation.revoked, gateways_pending=revocation.pending,
        )  # fmt: skip

    return router
