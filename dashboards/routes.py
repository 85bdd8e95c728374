"""Server-rendered pages for care managers: login, their dong's alerts, one alert's detail."""

# No `from __future__ import annotations`: FastAPI resolves the Annotated aliases at runtime.
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from alerts import queries
from alerts.machine import Event, allowed_events
from alerts.models import RESOLUTION_OUTCOMES
from dashboards.auth import (
    CSRF_FIELD,
    CareManager,
    check_csrf,
    csrf_token,
    end_session,
    session_user,
    start_session,
)
from dashboards.deps import Deps, get_deps, language, page_manager
from dashboards.i18n import text

LIST_REFRESH_S = 30

AppDeps = Annotated[Deps, Depends(get_deps)]
Lang = Annotated[str, Depends(language)]
Manager = Annotated[CareManager, Depends(page_manager)]
Csrf = Annotated[str, Form(alias=CSRF_FIELD)]


def safe_next(target: str | None) -> str:
    """Where to go after login: only a local path, never another site."""
    if target and target.startswith("/") and not target.startswith("//") and "\\" not in target:
        return target
    return "/alerts"


def render(
    request: Request,
    deps: Deps,
    lang: str,
    template: str,
    manager: CareManager | None = None,
    status_code: int = 200,
    **context: Any,
) -> HTMLResponse:
    """A page with what every template needs: language, words, CSRF token, the user."""
    base = {
        "lang": lang,
        "t": lambda key: text(lang, key),
        "manager": manager,
        "csrf_field": CSRF_FIELD,
        "csrf": csrf_token(request),
        "local": deps.local_time,
    }
    return deps.templates.TemplateResponse(
        request, template, {**base, **context}, status_code=status_code
    )


def pages_router() -> APIRouter:
    """HTML routes; each one reads the session cookie, writes carry a CSRF token."""
    router = APIRouter(include_in_schema=False, default_response_class=HTMLResponse)

    @router.get("/")
    def home() -> Response:
        return RedirectResponse("/alerts", status_code=303)

    @router.get("/login")
    def login_page(request: Request, deps: AppDeps, lang: Lang, next: str = "") -> Response:
        if deps.auth.care_manager(session_user(request)) is not None:
            return RedirectResponse(safe_next(next), status_code=303)
        return render(request, deps, lang, "login.html", next=safe_next(next))

    @router.post("/login")
    def login(
        request: Request,
        deps: AppDeps,
        lang: Lang,
        username: Annotated[str, Form()] = "",
        password: Annotated[str, Form()] = "",
        csrf: Csrf = "",
        next: Annotated[str, Form()] = "",
    ) -> Response:
        check_csrf(request, csrf)
        manager = deps.auth.login(username, password) if username and password else None
        if manager is None:
            return render(
                request, deps, lang, "login.html", status_code=401,
                error=text(lang, "login_failed"), next=safe_next(next), username=username,
            )  # fmt: skip
        start_session(request, manager)
        return RedirectResponse(safe_next(next), status_code=303)

    @router.api_route("/logout", methods=["GET", "POST"])
    def logout(request: Request) -> Response:
        end_session(request)
        return RedirectResponse("/login", status_code=303)

    @router.get("/alerts")
    def alert_list(request: Request, deps: AppDeps, lang: Lang, manager: Manager) -> Response:
        with deps.db.connection() as conn:
            alerts = queries.list_alerts(conn, manager.dong_code)
        return render(
            request, deps, lang, "alerts.html", manager,
            alerts=alerts, refresh_s=LIST_REFRESH_S,
        )  # fmt: skip

    @router.get("/alerts/{alert_id}")
    def alert_detail(
        request: Request, alert_id: int, deps: AppDeps, lang: Lang, manager: Manager
    ) -> Response:
        with deps.db.connection() as conn:
            detail = queries.get_alert(conn, alert_id, manager.dong_code)
        allowed = allowed_events(detail.alert.state)
        return render(
            request, deps, lang, "alert.html", manager,
            d=detail,
            can_acknowledge=Event.ACKNOWLEDGE in allowed,
            can_resolve=Event.RESOLVE in allowed,
            outcomes=RESOLUTION_OUTCOMES,
        )  # fmt: skip

    @router.post("/alerts/{alert_id}/acknowledge")
    def acknowledge(
        request: Request,
        alert_id: int,
        deps: AppDeps,
        manager: Manager,
        csrf: Csrf = "",
        note: Annotated[str, Form(max_length=1000)] = "",
    ) -> Response:
        check_csrf(request, csrf)
        deps.alerts.acknowledge(alert_id, manager.id, manager.dong_code, note.strip())
        return RedirectResponse(f"/alerts/{alert_id}", status_code=303)

    @router.post("/alerts/{alert_id}/resolve")
    def resolve(
        request: Request,
        alert_id: int,
        deps: AppDeps,
        lang: Lang,
        manager: Manager,
        csrf: Csrf = "",
        outcome: Annotated[str, Form()] = "",
        note: Annotated[str, Form(max_length=1000)] = "",
    ) -> Response:
        check_csrf(request, csrf)
        if outcome not in RESOLUTION_OUTCOMES:
            return render(
                request, deps, lang, "error.html", manager, status_code=422,
                message=text(lang, "bad_outcome"),
            )  # fmt: skip
        deps.alerts.resolve(alert_id, manager.id, manager.dong_code, outcome, note.strip())
        return RedirectResponse(f"/alerts/{alert_id}", status_code=303)

    return router
