"""Server-rendered pages for care managers: login, their dong's alerts and residents."""

# No `from __future__ import annotations`: FastAPI resolves the Annotated aliases at runtime.
from datetime import datetime, timedelta
from typing import Annotated, Any
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

import registry
from alerts import absence, queries
from alerts.machine import Event, allowed_events
from alerts.models import RESOLUTION_OUTCOMES
from dashboards import residents, review
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
from dashboards.i18n import change_error, text
from registry import InvalidChange, ResidentEnded

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


def parse_local_input(value: str, timezone: str) -> datetime | None:
    """A datetime-local form value ('2026-11-25T18:00') as a moment in `timezone`; '' is None."""
    if not value.strip():
        return None
    try:
        moment = datetime.fromisoformat(value.strip())
    except ValueError:
        raise InvalidChange("until_unreadable", "the end date could not be read") from None
    return moment if moment.utcoffset() is not None else moment.replace(tzinfo=ZoneInfo(timezone))


def _residents_page(
    request: Request,
    deps: Deps,
    lang: str,
    manager: CareManager,
    status_code: int = 200,
    error: str | None = None,
) -> HTMLResponse:
    now = deps.clock.now()
    with deps.db.connection() as conn:
        views = residents.list_residents(conn, manager.dong_code)
    latest = now + timedelta(days=registry.STATUS_MAX_DAYS)
    return render(
        request, deps, lang, "residents.html", manager, status_code=status_code,
        residents=views, now=now, error=error, statuses=registry.SETTABLE_STATUSES,
        until_min=deps.local_time(now).replace(" ", "T"),
        until_max=deps.local_time(latest).replace(" ", "T"),
    )  # fmt: skip


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

    @router.get("/residents")
    def resident_list(request: Request, deps: AppDeps, lang: Lang, manager: Manager) -> Response:
        return _residents_page(request, deps, lang, manager)

    @router.get("/review")
    def weekly_review(request: Request, deps: AppDeps, lang: Lang, manager: Manager) -> Response:
        tz = ZoneInfo(deps.settings.timezone)
        with deps.db.connection() as conn:
            week = review.weekly_review(conn, manager.dong_code, deps.clock.now(), tz)
        return render(request, deps, lang, "review.html", manager, review=week)

    @router.get("/residents/{resident_id}")
    def resident_week(
        request: Request, resident_id: int, deps: AppDeps, lang: Lang, manager: Manager
    ) -> Response:
        tz = ZoneInfo(deps.settings.timezone)
        now = deps.clock.now()
        with deps.db.connection() as conn:
            week = residents.activity_week(conn, resident_id, manager.dong_code, now, tz)
        return render(
            request, deps, lang, "resident.html", manager, week=week,
            grid=residents.week_grid(week), now=now,
        )  # fmt: skip

    @router.post("/residents/{resident_id}/status")
    def set_status(
        request: Request,
        resident_id: int,
        deps: AppDeps,
        lang: Lang,
        manager: Manager,
        csrf: Csrf = "",
        status: Annotated[str, Form()] = "",
        until: Annotated[str, Form(max_length=40)] = "",
    ) -> Response:
        check_csrf(request, csrf)
        try:
            # The form keeps its date field when 'active' is picked: active has no end date.
            moment = (
                None if status == "active" else parse_local_input(until, deps.settings.timezone)
            )
            with deps.db.connection() as conn:  # the status and the alerts it closes: one commit
                absence.set_status(
                    conn, resident_id, status, moment, manager.id,
                    now=deps.clock.now(), timezone=deps.settings.timezone,
                )  # fmt: skip
        except InvalidChange as exc:
            return _residents_page(
                request, deps, lang, manager,
                status_code=409 if isinstance(exc, ResidentEnded) else 422,
                error=change_error(lang, exc),
            )  # fmt: skip
        return RedirectResponse("/residents", status_code=303)

    return router
