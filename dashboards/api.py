"""The JSON API under /api/v1: the same alerts the pages show, for apps and integrations."""

# No `from __future__ import annotations`: FastAPI resolves the Annotated aliases at runtime.
import json
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Request, Security
from fastapi.concurrency import run_in_threadpool
from fastapi.security import OAuth2PasswordBearer

from alerts import queries
from dashboards.auth import CareManager
from dashboards.deps import Deps, api_manager, get_deps
from dashboards.i18n import text
from dashboards.schemas import (
    AcknowledgeIn,
    AlertDetailOut,
    AlertOut,
    MeOut,
    ResolveIn,
    TokenOut,
)

_CREDENTIALS_BODY: dict[str, Any] = {
    "type": "object",
    "required": ["username", "password"],
    "properties": {"username": {"type": "string"}, "password": {"type": "string"}},
}


async def _credentials(request: Request) -> tuple[str, str]:
    """username and password from a form or a JSON body; empty strings when absent."""
    content_type = request.headers.get("content-type", "")
    data: Any
    if content_type.startswith("application/json"):
        try:
            data = json.loads(await request.body())
        except ValueError:
            data = {}
    else:
        data = await request.form()
    if not hasattr(data, "get"):
        return "", ""
    username, password = data.get("username"), data.get("password")
    return (
        username if isinstance(username, str) else "",
        password if isinstance(password, str) else "",
    )


Manager = Annotated[CareManager, Depends(api_manager)]
AppDeps = Annotated[Deps, Depends(get_deps)]


def _detail(deps: Deps, alert_id: int, dong_code: str) -> AlertDetailOut:
    with deps.db.connection() as conn:
        return AlertDetailOut.of(queries.get_alert(conn, alert_id, dong_code))


def api_router() -> APIRouter:
    """Routes of the JSON API; authentication by bearer token (POST /api/v1/token)."""
    router = APIRouter(prefix="/api/v1", tags=["api"])
    scheme = OAuth2PasswordBearer(tokenUrl="/api/v1/token", auto_error=False)
    secured = [Security(scheme)]  # documents the bearer token in OpenAPI

    @router.post(
        "/token",
        response_model=TokenOut,
        responses={401: {"description": "Wrong username or password (no detail given)"}},
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
        username, password = await _credentials(request)
        manager = None
        if username and password:
            manager = await run_in_threadpool(deps.auth.login, username, password)
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
    def me(manager: Manager) -> MeOut:
        """The logged-in care manager."""
        return MeOut.of(manager)

    @router.get("/alerts", response_model=list[AlertOut], dependencies=secured)
    def list_alerts(
        manager: Manager, deps: AppDeps, include_resolved: bool = False
    ) -> list[AlertOut]:
        """Alerts of the care manager's own dong, most severe and newest first."""
        with deps.db.connection() as conn:
            views = queries.list_alerts(conn, manager.dong_code, include_resolved=include_resolved)
        return [AlertOut.of(v) for v in views]

    @router.get("/alerts/{alert_id}", response_model=AlertDetailOut, dependencies=secured)
    def get_alert(alert_id: int, manager: Manager, deps: AppDeps) -> AlertDetailOut:
        """One alert with its timeline and calls; 404 when it is not in the care manager's dong."""
        return _detail(deps, alert_id, manager.dong_code)

    @router.post(
        "/alerts/{alert_id}/acknowledge", response_model=AlertDetailOut, dependencies=secured
    )
    def acknowledge(
        alert_id: int, body: AcknowledgeIn, manager: Manager, deps: AppDeps
    ) -> AlertDetailOut:
        """Take the alert; 409 when it cannot be acknowledged in its current state."""
        deps.alerts.acknowledge(alert_id, manager.id, manager.dong_code, body.note.strip())
        return _detail(deps, alert_id, manager.dong_code)

    @router.post("/alerts/{alert_id}/resolve", response_model=AlertDetailOut, dependencies=secured)
    def resolve(alert_id: int, body: ResolveIn, manager: Manager, deps: AppDeps) -> AlertDetailOut:
        """Close the alert with an outcome; 409 unless acknowledged or escalated."""
        deps.alerts.resolve(
            alert_id, manager.id, manager.dong_code, body.outcome, body.note.strip()
        )
        return _detail(deps, alert_id, manager.dong_code)

    return router
