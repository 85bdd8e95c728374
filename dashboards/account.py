"""A care manager's own account: change the password, enrol or remove a TOTP authenticator
(supervisors and admins). Each change ends every other session and token; this browser gets
a fresh session, the API a fresh token. Enrolling asks for the current password, removing for
the password and a current code: a session left open is not enough to change how one logs in.
A setup key being enrolled stays in the database, sealed; the session holds a reference."""

# No `from __future__ import annotations`: FastAPI resolves the Annotated aliases at runtime.
import logging
from dataclasses import replace
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form, Request, Security
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.security import OAuth2PasswordBearer
from pydantic import BaseModel, Field

import registry
from dashboards import idempotency, totp
from dashboards.auth import (
    CSRF_FIELD,
    CareManager,
    LoginLocked,
    check_csrf,
    client_address,
    start_session,
)
from dashboards.authz import Action, Forbidden
from dashboards.deps import Deps, api_manager, get_deps, language, page_manager
from dashboards.i18n import change_error, text
from dashboards.routes import render
from dashboards.schemas import TokenOut
from registry import InvalidChange
from registry.care_managers import end_totp_enrolment, pending_totp_secret, start_totp_enrolment

log = logging.getLogger(__name__)

SESSION_TOTP_ENROL = "totp_enrol_ref"  # the reference of the setup key shown (never the key)

AppDeps = Annotated[Deps, Depends(get_deps)]
Lang = Annotated[str, Depends(language)]
PageManager = Annotated[CareManager, Depends(page_manager)]


def _person(request: Request) -> CareManager:
    """The caller of a route about one's own login (logout, password): a person; a service
    account has neither (403)."""
    manager = api_manager(request)
    if manager.role == "service":
        raise Forbidden(Action.ACCOUNTS)
    return manager


ApiManager = Annotated[CareManager, Depends(_person)]
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
    deps.auth.admit(manager.username, address)  # counted before the password is checked
    with deps.db.connection() as conn:
        generation = registry.change_password(
            conn, manager.id, current, new, deps.auth.clock.now()
        )  # WrongPassword: the attempt stays counted
    deps.auth.refund(manager.username, address)
    return replace(manager, generation=generation)


def _pending_secret(request: Request, deps: Deps, manager: CareManager) -> str | None:
    """The setup key this session is enrolling, from the database, if still fresh."""
    if not manager.may_use_totp or manager.totp_enabled:
        return None
    reference = request.session.get(SESSION_TOTP_ENROL)
    if not isinstance(reference, str):
        return None
    with deps.db.connection() as conn:
        return pending_totp_secret(
            conn, deps.auth.keyring, manager.id, reference, deps.auth.clock.now()
        )


def _account_page(
    request: Request,
    deps: Deps,
    lang: str,
    manager: CareManager,
    status_code: int = 200,
    **context: Any,
) -> HTMLResponse:
    secret = _pending_secret(request, deps, manager)
    extra: dict[str, Any] = {"done": None, "error": None, "totp_secret": None, "totp_uri": None}
    if secret is not None:
        extra["totp_secret"] = totp.grouped(secret)
        extra["totp_uri"] = totp.provisioning_uri(secret, manager.username)
    extra.update(context)
    return render(
        request, deps, lang, "account.html", manager, status_code=status_code,
        min_length=registry.PASSWORD_MIN_LENGTH, **extra,
    )  # fmt: skip


def _confirm(
    request: Request,
    deps: Deps,
    lang: str,
    manager: CareManager,
    password: str,
    code: str | None,
) -> Response | None:
    """None when `password` (and, unless `code` is None, a fresh TOTP `code`) are the care
    manager's own, checked and throttled like a login; else the account page saying why."""
    address = client_address(request)
    try:
        confirmed = deps.auth.check_password(manager.username, password, address)
        if confirmed is None or confirmed.id != manager.id:
            error = text(lang, "invalid_password_wrong")
            return _account_page(request, deps, lang, manager, 422, error=error)
        if code is not None and (
            deps.auth.check_code(manager.username, manager.id, code, address) is None
        ):
            return _account_page(request, deps, lang, manager, 422, error=text(lang, "code_failed"))
    except LoginLocked:
        return _account_page(request, deps, lang, manager, 429, error=text(lang, "password_locked"))
    return None


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
                request, deps, lang, manager, 429, error=text(lang, "password_locked")
            )
        except InvalidChange as exc:
            return _account_page(request, deps, lang, manager, 422, error=change_error(lang, exc))
        start_session(request, changed, deps.auth.now_epoch())
        return RedirectResponse("/account?done=password_changed", status_code=303)

    @pages.post("/account/totp/start")
    def totp_start(
        request: Request,
        deps: AppDeps,
        lang: Lang,
        manager: PageManager,
        csrf: Csrf = "",
        password: Secret = "",
    ) -> Response:
        check_csrf(request, csrf)
        if manager.may_use_totp and not manager.totp_enabled:
            refused = _confirm(request, deps, lang, manager, password, None)
            if refused is not None:
                return refused
            with deps.db.connection() as conn:
                reference = start_totp_enrolment(
                    conn, deps.auth.keyring, manager.id, totp.new_secret(), deps.auth.clock.now()
                )
            request.session[SESSION_TOTP_ENROL] = reference
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
        secret = _pending_secret(request, deps, manager)
        if secret is None:
            return _account_page(
                request, deps, lang, manager, 409, error=text(lang, "totp_roles_only")
            )
        step = totp.matching_step(secret, code, deps.auth.clock.now())
        if step is None:
            return _account_page(request, deps, lang, manager, 422, error=text(lang, "code_failed"))
        with deps.db.connection() as conn:
            generation = registry.set_totp_secret(
                conn, manager.id, secret, step, keyring=deps.auth.keyring
            )
            end_totp_enrolment(conn, manager.id)
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
        code: Annotated[str, Form(max_length=20)] = "",
    ) -> Response:
        check_csrf(request, csrf)
        refused = _confirm(request, deps, lang, manager, password, code)
        if refused is not None:
            return refused
        with deps.db.connection() as conn:
            generation = registry.set_totp_secret(conn, manager.id, None)
        removed = replace(manager, generation=generation, totp_enabled=False)
        start_session(request, removed, deps.auth.now_epoch())
        return RedirectResponse("/account?done=totp_removed", status_code=303)

    scheme = OAuth2PasswordBearer(tokenUrl="/api/v1/token", auto_error=False)
    secured = [Security(scheme)]

    @router.post(
        "/api/v1/logout", status_code=204, tags=["api"], dependencies=secured,
        openapi_extra=idempotency.UNKEYED,  # ending sessions twice is ending them once
    )  # fmt: skip
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
        openapi_extra=idempotency.UNKEYED,  # no copy of a password or a token is kept
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
                {
                    "detail": text("ko", "password_locked"),
                    "detail_en": text("en", "password_locked"),
                },
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
