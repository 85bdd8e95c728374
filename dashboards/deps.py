"""What every route needs, kept on app.state (no globals) and handed out as dependencies."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from fastapi.templating import Jinja2Templates
from starlette.requests import Request

from alerts.service import AlertService
from core.clock import Clock
from core.config import Settings
from core.db import Database
from dashboards import idempotency, service_accounts
from dashboards.auth import (
    CSRF_HEADER,
    SESSION_USER,
    Authenticator,
    CareManager,
    NotAuthenticated,
    bearer_token,
    check_csrf,
    end_session,
)
from dashboards.i18n import DEFAULT_LANGUAGE, parse_language

_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


@dataclass(frozen=True, slots=True)
class Deps:
    """The web app's collaborators, built once by create_app."""

    db: Database
    settings: Settings
    alerts: AlertService
    auth: Authenticator
    templates: Jinja2Templates
    local_time: Callable[[datetime | None], str]
    clock: Clock  # the alerts' clock: "now" for end dates (virtual in the demo and tests)


def get_deps(request: Request) -> Deps:
    deps: Deps = request.app.state.deps
    return deps


def language(request: Request) -> str:
    """?lang=ko|en switches and remembers the language in the session; Korean by default."""
    chosen = parse_language(request.query_params.get("lang"))
    if chosen is not None:
        request.session["lang"] = chosen
        return chosen
    return parse_language(request.session.get("lang")) or DEFAULT_LANGUAGE


def _session_manager(request: Request) -> CareManager | None:
    """The care manager of the session cookie, checked against the database on every request
    (generation, absolute lifetime); a session that failed is emptied."""
    manager = get_deps(request).auth.session_manager(request.session)
    if manager is None and SESSION_USER in request.session:
        end_session(request)
    return manager


def page_manager(request: Request) -> CareManager:
    """The care manager of the session cookie; pages redirect to /login otherwise."""
    manager = _session_manager(request)
    if manager is None:
        raise NotAuthenticated
    return manager


def api_manager(request: Request) -> CareManager:
    """The care manager of a bearer token or, with a CSRF header on writes, of the session."""
    auth = get_deps(request).auth
    token = bearer_token(request)
    if token is not None and token.startswith(service_accounts.TOKEN_PREFIX):
        with get_deps(request).db.connection() as conn:
            manager = service_accounts.principal(conn, token)
    elif token is not None:
        manager = auth.token_manager(token)
    else:
        manager = _session_manager(request)
        if manager is not None and request.method not in _SAFE_METHODS:
            check_csrf(request, request.headers.get(CSRF_HEADER))
    if manager is None:
        raise NotAuthenticated
    idempotency.claim(request, manager)  # a keyed POST's key, now that its owner is known
    return manager
