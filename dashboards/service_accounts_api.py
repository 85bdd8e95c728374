"""Service accounts under /api/v1/service-accounts (issue 22): a district admin makes machine
credentials for the city's systems, lists them with when each was last used, and revokes them.

Only admins (Action.ACCOUNTS) reach these; everything is scoped to the admin's district
(another district's account answers 404). The token is answered once, at creation; it is sent
as `Authorization: Bearer anbu_sa_...` and grants what its scopes say over its dongs
(dashboards.authz.SCOPE_ACTIONS). Refusals say why in Korean first, with a `code`.
"""

# No `from __future__ import annotations`: FastAPI resolves the Annotated aliases at runtime.
import logging
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Security
from fastapi.security import OAuth2PasswordBearer
from pydantic import BaseModel, Field

from dashboards import idempotency, paging, service_accounts
from dashboards.auth import CareManager
from dashboards.authz import Action, api_actor
from dashboards.deps import Deps, get_deps
from dashboards.paging import PageCursor, PageLimit
from dashboards.problems import REFUSAL, refused

log = logging.getLogger(__name__)

AppDeps = Annotated[Deps, Depends(get_deps)]
Admin = Annotated[CareManager, Depends(api_actor(Action.ACCOUNTS))]
Scope = Literal["alerts:read", "alerts:write", "residents:read", "residents:write", "events:read"]

_NOT_FOUND: dict[int | str, dict[str, Any]] = {
    403: {"description": "Not a district admin", **REFUSAL},
    404: {"description": "No such service account in your district", **REFUSAL},
}


class ServiceAccountIn(BaseModel):
    name: str = Field(
        min_length=1, max_length=service_accounts.NAME_MAX,
        description="Which system it is, as people will read it in alerts' timelines "
        "(e.g. 통합정보시스템)",
    )  # fmt: skip
    scopes: list[Scope] = Field(min_length=1, max_length=5)
    dongs: list[str] = Field(
        min_length=1, max_length=200,
        description="Dong codes of your district it may see (422 service_account_dongs "
        "otherwise)",
    )  # fmt: skip


class ServiceAccountOut(BaseModel):
    id: int = Field(description="Also the id its writes are recorded under (acknowledged_by...)")
    name: str
    district: str
    scopes: list[Scope]
    dongs: list[str]
    created_by: int
    created_at: datetime = Field(description="UTC")
    revoked_by: int | None
    revoked_at: datetime | None = Field(description="UTC; null while it works")
    last_used_at: datetime | None = Field(description="UTC, to the minute")
    uses: int = Field(description="Minutes in which it was used")

    @classmethod
    def of(cls, a: service_accounts.ServiceAccount) -> "ServiceAccountOut":
        return cls(
            id=a.id, name=a.name, district=a.district, scopes=list(a.scopes),  # type: ignore[arg-type]
            dongs=list(a.dongs), created_by=a.created_by, created_at=a.created_at,
            revoked_by=a.revoked_by, revoked_at=a.revoked_at, last_used_at=a.last_used_at,
            uses=a.uses,
        )  # fmt: skip


class ServiceAccountCreatedOut(ServiceAccountOut):
    token: str = Field(
        description="Send as `Authorization: Bearer <token>`; shown this once only (only its "
        "SHA-256 is kept)"
    )


def service_accounts_router() -> APIRouter:
    router = APIRouter(prefix="/api/v1/service-accounts", tags=["service accounts"])
    scheme = OAuth2PasswordBearer(tokenUrl="/api/v1/token", auto_error=False)
    secured = [Security(scheme)]

    @router.post(
        "",
        status_code=201,
        response_model=ServiceAccountCreatedOut,
        dependencies=secured,
        openapi_extra=idempotency.WITHHELD,  # the token is shown once
        responses={
            403: _NOT_FOUND[403],
            422: {"description": "The scopes or the dongs refused (`code` says why)", **REFUSAL},
        },
    )
    def create_service_account(body: ServiceAccountIn, admin: Admin, deps: AppDeps) -> Any:
        """Make a service account: a token for a city system with these scopes over these
        dongs. What it writes is recorded under its id and name; what it reads of a
        resident goes to the access log under it."""
        try:
            with deps.db.connection() as conn:
                made, token = service_accounts.create(
                    conn, name=body.name, scopes=list(body.scopes), dongs=body.dongs,
                    district=admin.district,
                    district_dongs=admin.district_dongs or (admin.dong_code,),
                    by=admin.id, now=deps.clock.now(),
                )  # fmt: skip
        except service_accounts.ScopesRefused:
            return refused(422, "service_account_scopes")
        except service_accounts.DongsRefused:
            return refused(422, "service_account_dongs")
        log.info("service account created", extra={"service_account_id": made.id})
        return ServiceAccountCreatedOut(**ServiceAccountOut.of(made).model_dump(), token=token)

    @router.get(
        "",
        response_model=paging.Page[ServiceAccountOut],
        dependencies=secured,
        responses={403: _NOT_FOUND[403]},
    )
    def list_service_accounts(
        admin: Admin, deps: AppDeps, limit: PageLimit = paging.LIMIT_DEFAULT,
        cursor: PageCursor = None,
    ) -> Any:  # fmt: skip
        """The district's service accounts, newest first, revoked ones included, with when
        each was last used."""
        after = paging.place_or_400("service-accounts", cursor)
        with deps.db.connection() as conn:
            found, place = service_accounts.page(conn, admin.district, limit, after)
        return paging.page("service-accounts", [ServiceAccountOut.of(a) for a in found], place)

    @router.post(
        "/{account_id}/revoke",
        response_model=ServiceAccountOut,
        dependencies=secured,
        responses=_NOT_FOUND,
    )
    def revoke_service_account(account_id: int, admin: Admin, deps: AppDeps) -> Any:
        """Revoke at once and for good: its token answers 401 from now on. Its record and
        what it did stay."""
        try:
            with deps.db.connection() as conn:
                done = service_accounts.revoke(
                    conn, admin.district, account_id, admin.id, deps.clock.now()
                )
        except service_accounts.AccountNotFound:
            return refused(404, "service_account_not_found")
        log.info("service account revoked", extra={"service_account_id": account_id})
        return ServiceAccountOut.of(done)

    return router
