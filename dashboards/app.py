"""The web app for care managers: pages, JSON API and health check, built from passed-in parts."""

from __future__ import annotations

import hmac
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC
from html import escape
from pathlib import Path
from typing import Any
from urllib.parse import quote

import jinja2
import psycopg
from fastapi import APIRouter, FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exception_handlers import request_validation_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import (
    HTMLResponse,
    JSONResponse,
    PlainTextResponse,
    RedirectResponse,
    Response,
)
from fastapi.routing import APIRoute
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from fastapi.utils import generate_unique_id
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from psycopg_pool import PoolTimeout
from starlette.middleware.exceptions import ExceptionMiddleware
from starlette.middleware.sessions import SessionMiddleware
from starlette.routing import Router
from starlette.types import ASGIApp, Receive, Scope, Send

from alerts import requests
from alerts.machine import IllegalTransition
from alerts.models import AlertChanged, AlertNotFound
from alerts.service import AlertService
from core.clock import Clock
from core.config import Settings
from core.db import Database
from dashboards import (
    authz,
    conversation_view,
    enrolment_text,
    i18n,
    idempotency,
    line_messages,
    problems,
    service_accounts,
)
from dashboards.access_audit import access_audit_router
from dashboards.account import account_router
from dashboards.api import api_router, etag
from dashboards.auth import (
    Authenticator,
    CsrfRejected,
    NotAuthenticated,
    bearer_token,
    cookie_secure,
)
from dashboards.care_notes import care_notes_router
from dashboards.course import course_router
from dashboards.deps import Deps, get_deps, language
from dashboards.edge import DOCS_PATH, BodyLimit, RequestId, SecurityHeaders
from dashboards.enrolment import install_enrolment
from dashboards.idempotency import IdempotencyKeys
from dashboards.metrics import database_registry
from dashboards.problems import CatchAll, ProblemDetails
from dashboards.queue_feed import stop_feed
from dashboards.report import report_router
from dashboards.routes import pages_router, render
from dashboards.schemas import HealthOut
from dashboards.service_accounts_api import service_accounts_router
from dashboards.service_requests import service_requests_router
from dashboards.settings_api import settings_router
from dashboards.webhooks_api import webhooks_router
from registry import InvalidChange, ResidentEnded, ResidentNotFound
from registry.care_notes import NoteCorrected, NoteNotFound

log = logging.getLogger(__name__)

HERE = Path(__file__).parent
SESSION_COOKIE = "anbu_session"
# The residents' endpoints answer unreadable bodies in Korean first, like their other refusals
# (the alerts' endpoints keep FastAPI's default 422 body).
RESIDENTS_API = "/api/v1/residents"


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
        call_status_label=i18n.call_status_label,
        actor_label=i18n.actor_label,
        resident_status_label=i18n.resident_status_label,
        hours_label=i18n.hours_label,
        finding_kind_label=i18n.finding_kind_label,
        change_label=i18n.change_label,
        pick=i18n.pick,
        role_label=i18n.role_label,
        may=authz.may,  # the navigation shows what the role may open (dashboards.authz)
        Action=authz.Action,
        district_wide=authz.district_wide,
        form_label=enrolment_text.form_label,
        concern_words=conversation_view.concern_words,
        answer_words=conversation_view.answer_words,
        question_words=conversation_view.question_words,
    )
    return Jinja2Templates(env=env)


def _operation_id(route: APIRoute) -> str:
    """An API operation's id is its function's name (list_alerts, resolve...): stable for
    generated clients; pages and the rest keep FastAPI's longer, unique form."""
    if route.path.startswith("/api/"):
        return route.name
    return generate_unique_id(route)


def _is_api(request: Request) -> bool:
    return request.url.path.startswith("/api/")


def _refusal(
    request: Request,
    status: int,
    say: Callable[[str], str],
    again: str | None = None,
    fields: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
) -> Response:
    """The same refusal as JSON for the API (a problem, dashboards.problems, with the refusal's
    own `fields`, such as its `code`, and `headers`) or as a page, in Korean first; `again`: a
    link back to what was refused (the page offers it)."""
    if _is_api(request):
        body = {"detail": say("ko"), "detail_en": say("en"), **(fields or {})}
        return JSONResponse(body, status_code=status, headers=headers)
    lang = language(request)
    return render(
        request, get_deps(request), lang, "error.html", status_code=status, message=say(lang),
        again=again,
    )  # fmt: skip


def _error(request: Request, status: int, key: str) -> Response:
    """A refusal in the fixed words of `key`."""
    return _refusal(request, status, lambda lang: i18n.text(lang, key))


async def _unavailable(request: Request, exc: Exception) -> Response:
    """The database cannot be reached, gave no connection in time, or asked for the
    transaction to be run again: try again shortly. Any other database error is a fault
    (problems.CatchAll: 500), never 'try again' forever."""
    if not problems.passes(exc):
        raise exc
    log.warning("database unavailable", extra={"error": type(exc).__name__})
    retry = {"Retry-After": str(problems.RETRY_AFTER_S)}
    if _is_api(request):
        ko, en = problems.WORDS[503]
        return JSONResponse({"detail": ko, "detail_en": en}, status_code=503, headers=retry)
    if not problems.is_page(request.url.path):  # Twilio's callbacks, metrics: plain words
        return PlainTextResponse("unavailable", status_code=503, headers=retry)
    response = _error(request, 503, "unavailable")
    response.headers.update(retry)
    return response


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
            target = "/"  # each role's start page (the technician's is not the alerts)
        return RedirectResponse(f"/login?next={quote(target, safe='/')}", status_code=303)

    async def answered(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, idempotency.Answered)
        return exc.response

    async def not_found(request: Request, exc: Exception) -> Response:
        return _error(request, 404, "not_found")

    async def illegal(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, IllegalTransition)
        local = i18n.local_time_formatter(get_deps(request).settings.timezone)

        services: dict[int, str] = {}
        if exc.changed_by is not None:  # a city system acted, not a person: say so
            with get_deps(request).db.connection() as conn:
                services = service_accounts.names(conn, [exc.changed_by])

        def say(lang: str) -> str:
            why = i18n.illegal_text(lang, exc.event.value)
            if exc.changed_at is None or exc.changed_by is None:
                return why
            return why + " " + i18n.text(lang, "illegal_last").format(
                who=i18n.actor_label(lang, exc.changed_by, services), when=local(exc.changed_at),
                state=i18n.state_label(lang, exc.state),
            )  # fmt: skip

        fields: dict[str, Any] = {"code": f"illegal_{exc.event.value}", "state": exc.state.value}
        if exc.changed_at is not None:  # who acted first, and when (UTC)
            fields |= {
                "changed_at": exc.changed_at.astimezone(UTC).isoformat(),
                "changed_by": exc.changed_by,
            }
        return _refusal(request, 409, say, fields=fields)  # with the state it is in now

    async def changed(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, AlertChanged)

        def say(lang: str) -> str:
            return i18n.text(lang, "alert_changed").format(
                severity=i18n.severity_label(lang, exc.severity),
                state=i18n.state_label(lang, exc.state),
            )

        return _refusal(
            request, 412, say, again=f"/alerts/{exc.alert_id}",
            fields={"state": exc.state, "severity": exc.severity, "version": exc.version},
            headers={"ETag": etag(exc.version)},
        )  # fmt: skip

    async def csrf(request: Request, exc: Exception) -> Response:
        log.info("request without a valid CSRF token refused")
        return _error(request, 403, "csrf")

    async def forbidden(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, authz.Forbidden)  # dashboards.authz: the role lacks the action
        return _refusal(request, 403, lambda lang: i18n.forbidden_text(lang, exc.action))

    async def request_changed(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, requests.RequestChanged)  # another care manager acted first
        return _refusal(
            request, 409, lambda lang: i18n.text(lang, "request_changed"), again="/requests",
            fields={"code": "request_changed", "state": exc.state},
        )  # fmt: skip

    async def resident_not_found(request: Request, exc: Exception) -> Response:
        return _error(request, 404, "resident_not_found")

    async def note_not_found(request: Request, exc: Exception) -> Response:
        return _error(request, 404, "note_not_found")

    async def invalid_change(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, InvalidChange)
        status = 409 if isinstance(exc, ResidentEnded | NoteCorrected) else 422
        return _refusal(
            request, status, lambda lang: i18n.change_error(lang, exc), fields={"code": exc.code}
        )

    async def unreadable(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        if not request.url.path.startswith(RESIDENTS_API):
            return await request_validation_exception_handler(request, exc)
        return JSONResponse(
            {
                "detail": i18n.text("ko", "invalid_input"),
                "detail_en": i18n.text("en", "invalid_input"),
                "errors": jsonable_encoder(exc.errors()),
            },
            status_code=422,
        )

    app.add_exception_handler(idempotency.Answered, answered)
    app.add_exception_handler(NotAuthenticated, not_authenticated)
    app.add_exception_handler(AlertNotFound, not_found)
    app.add_exception_handler(requests.RequestNotFound, not_found)
    app.add_exception_handler(line_messages.RecordingNotFound, not_found)
    app.add_exception_handler(requests.RequestChanged, request_changed)
    app.add_exception_handler(ResidentNotFound, resident_not_found)
    app.add_exception_handler(NoteNotFound, note_not_found)
    app.add_exception_handler(InvalidChange, invalid_change)
    app.add_exception_handler(RequestValidationError, unreadable)
    app.add_exception_handler(IllegalTransition, illegal)
    app.add_exception_handler(AlertChanged, changed)
    app.add_exception_handler(PoolTimeout, _unavailable)
    app.add_exception_handler(psycopg.OperationalError, _unavailable)
    app.add_exception_handler(CsrfRejected, csrf)
    app.add_exception_handler(authz.Forbidden, forbidden)


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


def _metrics_refusal(status: int, ko: str, en: str) -> Response:
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return JSONResponse({"detail": ko, "detail_en": en}, status_code=status, headers=headers)


def _metrics_router(registry: CollectorRegistry, token: str | None) -> APIRouter:
    router = APIRouter(tags=["health"])

    @router.get(
        "/metrics",
        response_class=Response,
        responses={401: {"description": "No bearer token"}, 403: {"description": "Wrong token"}},
    )
    def metrics(request: Request) -> Response:
        """Prometheus text format: aggregates by dong, never a resident; only for the bearer
        token ANBU_METRICS_TOKEN (refused to everyone while it is unset)."""
        if token is None:
            return _metrics_refusal(
                403,
                "지표는 ANBU_METRICS_TOKEN이 설정된 경우에만 제공됩니다.",
                "Metrics are served only when ANBU_METRICS_TOKEN is set.",
            )
        given = bearer_token(request)
        if given is None:
            return _metrics_refusal(401, "인증이 필요합니다.", "Authentication required.")
        if not hmac.compare_digest(given.encode(), token.encode()):
            return _metrics_refusal(403, "토큰이 올바르지 않습니다.", "Wrong token.")
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    return router


def _docs_page(schema: dict[str, Any]) -> str:
    """A plain page of the API's operations, from its OpenAPI schema, and a link to the schema
    itself (for Swagger UI, Postman or a code generator run wherever one likes). Nothing is
    loaded from another site and no script runs: a CDN cannot change what this page does."""
    rows = []
    for path, operations in sorted(schema.get("paths", {}).items()):
        for method, operation in operations.items():
            summary = operation.get("summary", "") if isinstance(operation, dict) else ""
            rows.append(
                f"<tr><td><code>{escape(method.upper())}</code></td>"
                f"<td><code>{escape(path)}</code></td><td>{escape(summary)}</td></tr>"
            )
    title = escape(str(schema.get("info", {}).get("title", "API")))
    return (
        '<!doctype html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f"<title>{title}</title>\n"
        '<link rel="stylesheet" href="/static/style.css">\n</head>\n<body>\n'
        f"<h1>{title}</h1>\n"
        '<p>OpenAPI: <a href="/openapi.json">/openapi.json</a></p>\n'
        "<table>\n<tr><th>method</th><th>path</th><th>summary</th></tr>\n"
        + "\n".join(rows)
        + "\n</table>\n</body>\n</html>\n"
    )


def _docs_router() -> APIRouter:
    router = APIRouter(include_in_schema=False)

    @router.get(DOCS_PATH)
    def docs(request: Request) -> Response:
        """The API's operations as a plain page, linking the OpenAPI schema (no CDN, no
        script: an unpinned third-party bundle once ran here with the session's rights)."""
        return HTMLResponse(_docs_page(request.app.openapi()))

    return router


class WebhooksFirst:
    """ASGI: Twilio's webhooks (/twilio/...) go to their own routes with the edge every answer
    has, past the dashboard's session, problem details and FastAPI's routing and dependency
    solving, which a round of calls (tens of thousands of webhooks) paid on every one; the
    rest goes on to the dashboard."""

    def __init__(self, app: ASGIApp, webhooks: ASGIApp) -> None:
        self.app = app
        self.webhooks = webhooks

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"].startswith(WEBHOOKS_PREFIX):
            await self.webhooks(scope, receive, send)
        else:
            await self.app(scope, receive, send)


WEBHOOKS_PREFIX = "/twilio/"


def edged_webhooks(webhooks: Router, settings: Settings) -> ASGIApp:
    """The webhooks behind the dashboard's edge, in its order: the request id outermost, the
    security headers, the last-stop 500, the body limit; a refusal (HTTPException) is plain
    words and the database away a 503 with Retry-After, as on the dashboard."""
    handled = ExceptionMiddleware(
        webhooks, handlers={PoolTimeout: _unavailable, psycopg.OperationalError: _unavailable}
    )
    limited = BodyLimit(handled, max_bytes=settings.web_max_body_bytes)
    return RequestId(SecurityHeaders(CatchAll(limited)))


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    yield
    stop_feed(app.state)  # the live queue's LISTEN connection, if a page opened one


def create_app(
    db: Database,
    settings: Settings,
    alerts: AlertService,
    webhooks: Router | None = None,
    auth_clock: Clock | None = None,
) -> FastAPI:
    """The dashboard and API; `webhooks` (Twilio's, calls.webhooks) are served ahead of them."""
    app = FastAPI(
        title="anbu 안부",
        description="Care managers' dashboard and JSON API (Korean first).",
        openapi_url="/openapi.json",
        docs_url=None,  # _docs_router: FastAPI's page starts Swagger UI with an inline script
        redoc_url=None,
        generate_unique_id_function=_operation_id,
        lifespan=_lifespan,
    )
    app.state.deps = Deps(
        db=db,
        settings=settings,
        alerts=alerts,
        auth=Authenticator.from_settings(db, settings, auth_clock),
        templates=_templates(),
        local_time=i18n.local_time_formatter(settings.timezone),
        clock=alerts.clock,
    )
    app.add_middleware(
        SessionMiddleware,
        secret_key=settings.session_secret,
        session_cookie=SESSION_COOKIE,
        max_age=int(settings.session_lifetime_hours * 3600),  # the absolute lifetime
        same_site="lax",
        https_only=cookie_secure(settings),
    )
    # Added last, so outermost: the body is capped before the session or any route reads it,
    # and every answer, a 413 included, carries the security headers.
    app.add_middleware(IdempotencyKeys)  # inside the body limit, which has read the body
    app.add_middleware(BodyLimit, max_bytes=settings.web_max_body_bytes)
    app.add_middleware(ProblemDetails)  # outside the body limit: its 413 is a problem too
    app.add_middleware(CatchAll)  # inside the headers: a 500 has them and the request id
    app.add_middleware(SecurityHeaders)
    app.add_middleware(RequestId)  # outermost: even a refusal by the others carries the id
    if webhooks is not None:
        app.state.webhooks = webhooks
        app.add_middleware(WebhooksFirst, webhooks=edged_webhooks(webhooks, settings))
    _install_error_handlers(app)
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    app.include_router(_health_router())
    metrics_registry = database_registry(db, alerts.clock, settings.metrics_timeout_s)
    app.state.metrics_registry = metrics_registry  # also served on ANBU_WEB_METRICS_PORT
    app.include_router(_metrics_router(metrics_registry, settings.metrics_token))
    app.include_router(_docs_router())
    app.include_router(api_router())
    app.include_router(access_audit_router())
    app.include_router(course_router())
    app.include_router(pages_router())
    app.include_router(care_notes_router())
    app.include_router(settings_router())
    app.include_router(service_requests_router())
    app.include_router(account_router())
    app.include_router(report_router())
    app.include_router(webhooks_router())
    app.include_router(service_accounts_router())
    install_enrolment(app)
    spec = app.openapi

    def openapi() -> dict[str, Any]:  # every /api/ error documented as a problem, once
        if app.openapi_schema is None:
            app.openapi_schema = problems.add_to_spec(idempotency.add_to_spec(spec()))
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app
