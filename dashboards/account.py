"""A care manager's own account: change the password, enrol or remove a TOTP authenticator
(supervisors and admins). Each change ends every other session and token; this browser gets
a fresh session, the API a fresh token."""

# No `from __future__ import annotations`: FastAPI resolves the Annotated aliases at runtime.
import logging
from dataclasses import replace
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form, Request, Security
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.security import OAuth2PasswordBearer
from pydantic import BaseModel, Field

import registry
from dashboards import totp
from dashboards.auth import (
    CSRF_FIELD,
    CareManager,
    LoginLocked,
    check_csrf,
    client_address,
    start_session,
)
from dashboards.deps import Deps, api_manager, get_deps, language, page_manager
from dashboards.i18n import change_error, text
from dashboards.routes import render
from dashboards.schemas import TokenOut
from registry import InvalidChange, WrongPassword

log = logging.getLogger(__name__)

SESSION_TOTP_ENROL = "totp_enrol"  # the secret shown, until its first code confirms it

AppDeps = Annotated[Deps, Depends(get_deps)]
Lang = Annotated[str, Depends(language)]
PageManager = Annotated[CareManager, Depends(page_manager)]
ApiManager = Annotated[CareManager, Depends(api_manager)]
Csrf = Annotated[str, Form(alias=CSRF_FIELD)]
Secret = Annotated[str, Form(max_length=1000)]


class PasswordChangeIn(BaseModel):
    current_password: str = Field(max_length=1000)
    new_password: str = Field(max_length=1000)


def _change_password(
    request: Request, deps: Deps, manager: CareManager, current: str, new: str
) -> CareManager:
    """The password change, throttled like logins (a stolen session must not guess the
    current password); the care manager with their new session generation."""
    address = client_address(request)
    deps.auth.refuse_if_locked(manager.username, address)
    try:
        with deps.db.connection() as conn:
            generation = registry.change_password(
                conn, manager.id, current, new, deps.auth.clock.now()
            )
    except WrongPassword:
        deps.auth.record_failure(manager.username, address)
        raise
    return replace(manager, generation=generation)


def _account_page(
    request: Request,
    deps: Deps,
    lang: str,
    manager: CareManager,
    status_code: int = 200,
    **context: Any,
) -> HTMLResponse:
    secret = request.session.get(SESSION_TOTP_ENROL)
    enrolling = isinstance(secret, str) and manager.may_use_totp and not manager.totp_enabled
    extra: dict[str, Any] = {"done": None, "error": None, "totp_secret": None, "totp_uri": None}
    if enrolling:
        assert isinstance(secret, str)
        extra["totp_secret"] = totp.grouped(secret)
        extra["totp_uri"] = totp.provisioning_uri(secret, manager.username)
    extra.update(context)
    return render(
        request, deps, lang, "account.html", manager, status_code=status_code,
        min_length=registry.PASSWORD_MIN_LENGTH, **extra,
    )  # fmt: skip


def account_router() -> APIRouter:
    """The account page (/account) and its API (/api/v1/logout, /api/v1/password)."""
    router = APIRouter()
    pages = APIRouter(include_in_schema=False, default_response_class=HTMLResponse)

    @pages.get("/account")
    def account(
        request: Request, deps: AppDeps, lang: Lang, manager: PageManager, done: str = ""
    ) -> Response:
        known = done if done in ("password_changed", "totp_enabled", "totp_removed") else None
        return _account_page(request, deps, lang, manager, done=known)

    @pages.post("/account/password")
    def change_password(
        request: Request,
        deps: AppDeps,
        lang: Lang,
        manager: PageManager,
        csrf: Csrf = "",
        current_password: Secret = "",
        new_password: Secret = "",
        confirm_password: Secret = "",
    ) -> Response:
        check_csrf(request, csrf)
        try:
            if new_password != confirm_password:
                raise InvalidChange("password_mismatch", "the two new passwords differ")
            changed = _change_password(request, deps, manager, current_password, new_password)
        except LoginLocked:
            return _account_page(
                request, deps, lang, manager, 429, error=text(lang, "login_locked")
            )
        except InvalidChange as exc:
            return _account_page(request, deps, lang, manager, 422, error=change_error(lang, exc))
        start_session(request, changed, deps.auth.now_epoch())
        return RedirectResponse("/account?done=password_changed", status_code=303)

    @pages.post("/account/totp/start")
    def totp_start(
        request: Request, deps: AppDeps, manager: PageManager, csrf: Csrf = ""
    ) -> Response:
        check_csrf(request, csrf)
        if manager.may_use_totp and not manager.totp_enabled:
            request.session[SESSION_TOTP_ENROL] = totp.new_secret()
        return RedirectResponse("/account#totp", status_code=303)

    @pages.post("/account/totp")
    def totp_enrol(
        request: Request,
        deps: AppDeps,
        lang: Lang,
        manager: PageManager,
        csrf: Csrf = "",
        code: Annotated[str, Form(max_length=20)] = "",
    ) -> Response:
        check_csrf(request, csrf)
        secret = request.session.get(SESSION_TOTP_ENROL)
        if not manager.may_use_totp or manager.totp_enabled or not isinstance(secret, str):
            return _account_page(
                request, deps, lang, manager, 409, error=text(lang, "totp_roles_only")
            )
        step = totp.matching_step(secret, code, deps.auth.clock.now())
        if step is None:
            return _account_page(request, deps, lang, manager, 422, error=text(lang, "code_failed"))
        with deps.db.connection() as conn:
            generation = registry.set_totp_secret(conn, manager.id, secret, step)
        request.session.pop(SESSION_TOTP_ENROL, None)
        enrolled = replace(manager, generation=generation, totp_enabled=True)
        start_session(request, enrolled, deps.auth.now_epoch())
        return RedirectResponse("/account?done=totp_enabled", status_code=303)

    @pages.post("/account/totp/remove")
    def totp_remove(
        request: Request,
        deps: AppDeps,
        lang: Lang,
        manager: PageManager,
        csrf: Csrf = "",
        password: Secret = "",
    ) -> Response:
        check_csrf(request, csrf)
        try:
            confirmed = deps.auth.check_password(
                manager.username, password, client_address(request)
            )
        except LoginLocked:
            return _account_page(
                request, deps, lang, manager, 429, error=text(lang, "login_locked")
            )
        if confirmed is None or confirmed.id != manager.id:
            error = text(lang, "invalid_password_wrong")
            return _account_page(request, deps, lang, manager, 422, error=error)
        with deps.db.connection() as conn:
            generation = registry.set_totp_secret(conn, manager.id, None)
        removed = replace(manager, generation=generation, totp_enabled=False)
        start_session(request, removed, deps.auth.now_epoch())
        return RedirectResponse("/account?done=totp_removed", status_code=303)

    scheme = OAuth2PasswordBearer(tokenUrl="/api/v1/token", auto_error=False)
    secured = [Security(scheme)]

    @router.post("/api/v1/logout", status_code=204, tags=["api"], dependencies=secured)
    def api_logout(deps: AppDeps, manager: ApiManager) -> Response:
        """End every session and token of the care manager, this one included."""
        with deps.db.connection() as conn:
            registry.end_sessions(conn, manager.id)
        log.info("care manager logged out", extra={"care_manager_id": manager.id})
        return Response(status_code=204)

    @router.post(
        "/api/v1/password",
        response_model=TokenOut,
        tags=["api"],
        dependencies=secured,
        responses={
            422: {
                "description": "Wrong current password, or a new one the rules refuse "
                "(detail says which, Korean first)"
            },
            429: {"description": "Too many wrong passwords: try again later"},
        },
    )
    def api_password(
        request: Request, body: PasswordChangeIn, deps: AppDeps, manager: ApiManager
    ) -> Response:
        """Change one's own password: every earlier session and token ends; a new token."""
        try:
            changed = _change_password(
                request, deps, manager, body.current_password, body.new_password
            )
        except LoginLocked as exc:
            return JSONResponse(
                {"detail": text("ko", "login_locked"), "detail_en": text("en", "login_locked")},
                status_code=429,
                headers={"Retry-After": str(exc.retry_after_s)},
            )
        token = TokenOut(
            access_token=deps.auth.issue_token(changed),
            expires_in=int(deps.auth.token_lifetime.total_seconds()),
        )
        return JSONResponse(token.model_dump())

    router.include_router(pages)
    return router
