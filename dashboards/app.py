"""The web app for care managers: pages, JSON API and health check, built from passed-in parts."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import quote

import jinja2
import psycopg
from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from psycopg_pool import PoolTimeout
from starlette.middleware.sessions import SessionMiddleware

from alerts.machine import IllegalTransition
from alerts.models import AlertNotFound
from alerts.service import AlertService
from anbu.config import Settings
from anbu.db import Database
from dashboards import i18n
from dashboards.api import api_router
from dashboards.auth import SESSION_LIFETIME, Authenticator, CsrfRejected, NotAuthenticated
from dashboards.deps import Deps, get_deps, language
from dashboards.routes import pages_router, render
from dashboards.schemas import HealthOut

log = logging.getLogger(__name__)

HERE = Path(__file__).parent
SESSION_COOKIE = "anbu_session"


def _templates() -> Jinja2Templates:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(HERE / "templates"),
        autoescape=jinja2.select_autoescape(["html"]),
        undefined=jinja2.StrictUndefined,
    )
    env.globals.update(
        severity_label=i18n.severity_label,
        state_label=i18n.state_label,
        outcome_label=i18n.outcome_label,
        call_outcome_label=i18n.call_outcome_label,
        actor_label=i18n.actor_label,
        pick=i18n.pick,
    )
    return Jinja2Templates(env=env)


def _is_api(request: Request) -> bool:
    return request.url.path.startswith("/api/")


def _error(request: Request, status: int, key: str) -> Response:
    """The same refusal as JSON for the API or as a page, in Korean first."""
    if _is_api(request):
        return JSONResponse(
            {"detail": i18n.text("ko", key), "detail_en": i18n.text("en", key)},
            status_code=status,
        )
    lang = language(request)
    return render(
        request, get_deps(request), lang, "error.html", status_code=status,
        message=i18n.text(lang, key),
    )  # fmt: skip


def _install_error_handlers(app: FastAPI) -> None:
    async def not_authenticated(request: Request, exc: Exception) -> Response:
        if _is_api(request):
            return JSONResponse(
                {"detail": "인증이 필요합니다.", "detail_en": "Authentication required."},
                status_code=401,
                headers={"WWW-Authenticate": "Bearer"},
            )
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        if request.method != "GET":
            target = "/alerts"
        return RedirectResponse(f"/login?next={quote(target, safe='/')}", status_code=303)

    async def not_found(request: Request, exc: Exception) -> Response:
        return _error(request, 404, "not_found")

    async def illegal(request: Request, exc: Exception) -> Response:
        return _error(request, 409, "illegal")

    async def csrf(request: Request, exc: Exception) -> Response:
        log.info("request without a valid CSRF token refused")
        return _error(request, 403, "csrf")

    app.add_exception_handler(NotAuthenticated, not_authenticated)
    app.add_exception_handler(AlertNotFound, not_found)
    app.add_exception_handler(IllegalTransition, illegal)
    app.add_exception_handler(CsrfRejected, csrf)


def _health_router() -> APIRouter:
    router = APIRouter(tags=["health"])

    @router.get("/healthz", response_model=HealthOut, responses={503: {"model": HealthOut}})
    def healthz(request: Request) -> Response:
        """Ready when the database answers; no authentication."""
        try:
            with get_deps(request).db.connection() as conn:
                conn.execute("SELECT 1")
        except (psycopg.Error, PoolTimeout, RuntimeError):
            log.warning("health check: database unreachable")
            return JSONResponse({"status": "unavailable", "database": False}, status_code=503)
        return JSONResponse({"status": "ok", "database": True})

    return router


def create_app(
    db: Database,
    settings: Settings,
    alerts: AlertService,
    extra_routers: Sequence[APIRouter] = (),
) -> FastAPI:
    """The dashboard and API; `extra_routers` (e.g. the Twilio webhooks) are mounted as given."""
    app = FastAPI(
        title="anbu 안부",
        description="Care managers' dashboard and JSON API (Korean first).",
        openapi_url="/openapi.json",
        docs_url="/docs",
        redoc_url=None,
    )
    app.state.deps = Deps(
        db=db,
        settings=settings,
        alerts=alerts,
        auth=Authenticator(db, settings.session_secret),
        templates=_templates(),
        local_time=i18n.local_time_formatter(settings.timezone),
    )
    app.add_middleware(
        SessionMiddleware,
        secret_key=settings.session_secret,
        session_cookie=SESSION_COOKIE,
        max_age=int(SESSION_LIFETIME.total_seconds()),
        same_site="lax",
        https_only=settings.public_base_url.startswith("https://"),
    )
    _install_error_handlers(app)
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    app.include_router(_health_router())
    app.include_router(api_router())
    app.include_router(pages_router())
    for router in extra_routers:
        app.include_router(router)
    return app
