"""The dong's queue of service requests (연계 요청), as a page and over the JSON API: needs
residents stated on their routine check-in calls, apart from alerts. Care roles only; a request
outside the dongs in view answers 404 as if it did not exist, and an action its state no longer
allows (another care manager acted first) 409 with the state it has."""

# No `from __future__ import annotations`: FastAPI resolves the Annotated aliases at runtime.
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Form, HTTPException, Request, Security
from fastapi.responses import RedirectResponse, Response
from fastapi.security import OAuth2PasswordBearer
from pydantic import BaseModel, Field

from alerts import requests
from dashboards import paging
from dashboards.auth import CSRF_FIELD, CareManager, check_csrf
from dashboards.authz import Action, api_actor, page_actor, visible_dongs
from dashboards.deps import Deps, get_deps, language
from dashboards.i18n import pick
from dashboards.paging import LIMIT_DEFAULT, Page, PageCursor, PageLimit
from dashboards.residents import reader_of
from dashboards.routes import render
from registry.access_log import record_accesses

AppDeps = Annotated[Deps, Depends(get_deps)]
Lang = Annotated[str, Depends(language)]
PageActor = Annotated[CareManager, Depends(page_actor(Action.REQUESTS))]
ApiActor = Annotated[CareManager, Depends(api_actor(Action.REQUESTS))]
ACTIONS = ("accept", "link", "close")
PAGE_ROWS = 100


class ServiceRequestOut(BaseModel):
    """A need a resident stated on a call, and how far it has come."""

    id: int
    resident_id: int
    home: str
    dong_code: str
    category: Literal["meals", "escort", "cleaning", "visit", "talk", "other"]
    category_ko: str = Field(description="식사·반찬 지원, 병원 동행, ...")
    words: str | None = Field(description="the resident's own words, as heard (personal data)")
    state: Literal["open", "accepted", "linked", "closed"]
    provider: str | None
    note: str | None
    created_at: datetime
    updated_at: datetime
    accepted_by: int | None
    closed_by: int | None

    @classmethod
    def of(cls, r: requests.ServiceRequest) -> "ServiceRequestOut":
        return cls(
            id=r.id, resident_id=r.resident_id, home=r.home, dong_code=r.dong_code,
            category=r.category, category_ko=requests.CATEGORIES[r.category][0],  # type: ignore[arg-type]
            words=r.words, state=r.state, provider=r.provider, note=r.note,  # type: ignore[arg-type]
            created_at=r.created_at, updated_at=r.updated_at, accepted_by=r.accepted_by,
            closed_by=r.closed_by,
        )  # fmt: skip


class RequestActionIn(BaseModel):
    provider: str | None = Field(default=None, max_length=200, description="연계 기관 (link)")
    note: str | None = Field(default=None, max_length=1000)


def _act(
    deps: Deps, manager: CareManager, request_id: int, action: str, provider: str | None,
    note: str | None,
) -> requests.ServiceRequest:  # fmt: skip
    if action == "link" and not (provider or "").strip():
        raise HTTPException(status_code=422, detail="연계 기관을 적어 주세요 (provider).")
    with deps.db.connection() as conn:  # RequestNotFound: 404, RequestChanged: 409 (app.py)
        return requests.act(
            conn, request_id, manager.id, visible_dongs(manager), action, deps.clock.now(),
            (provider or "").strip() or None, (note or "").strip() or None,
        )  # fmt: skip


def _record_reads(
    conn: Any, request: Request, manager: CareManager, items: list[requests.ServiceRequest]
) -> None:
    """Who read whose words: one access row per resident on the page, in the read's own
    transaction (registry.access_log)."""
    if items:
        residents = sorted({r.resident_id for r in items})
        record_accesses(conn, reader_of(request, manager), residents, "alert", ("name", "words"))


def service_requests_router() -> APIRouter:
    """GET /requests (the page) and its forms; GET /api/v1/service-requests and its actions."""
    router = APIRouter()
    scheme = OAuth2PasswordBearer(tokenUrl="/api/v1/token", auto_error=False)
    secured = [Security(scheme)]
    refusals: dict[int | str, dict[str, Any]] = {
        404: {"description": "No such request in the care manager's dongs"},
        409: {"description": "Its state no longer allows the action (someone acted first)"},
    }

    @router.get(
        "/api/v1/service-requests", response_model=Page[ServiceRequestOut], tags=["api"],
        dependencies=secured,
    )  # fmt: skip
    def list_service_requests(
        request: Request,
        manager: ApiActor,
        deps: AppDeps,
        state: Literal["open", "all"] = "open",
        resident_id: int | None = None,
        limit: PageLimit = LIMIT_DEFAULT,
        cursor: PageCursor = None,
    ) -> Page[ServiceRequestOut]:
        """The dongs' service requests: open ones oldest first, or all newest first."""
        place = paging.place_or_400("requests-" + state, cursor)
        with deps.db.connection() as conn:
            items, more = requests.page_requests(
                conn, visible_dongs(manager), open_only=state == "open", limit=limit,
                after=place, resident_id=resident_id,
            )  # fmt: skip
            _record_reads(conn, request, manager, items)
        return paging.page("requests-" + state, [ServiceRequestOut.of(r) for r in items], more)

    def api_action(action: str, doc: str) -> None:
        def act_on_service_request(
            request_id: int, manager: ApiActor, deps: AppDeps, body: RequestActionIn | None = None
        ) -> ServiceRequestOut:
            body = body or RequestActionIn()
            return ServiceRequestOut.of(
                _act(deps, manager, request_id, action, body.provider, body.note)
            )

        act_on_service_request.__name__ = f"{action}_service_request"
        act_on_service_request.__doc__ = doc
        router.post(
            f"/api/v1/service-requests/{{request_id}}/{action}", response_model=ServiceRequestOut,
            tags=["api"], dependencies=secured, responses=refusals,
        )(act_on_service_request)  # fmt: skip

    api_action("accept", "Accept an open request: the care manager takes it on.")
    api_action("link", "Pass the request to a provider (연계 기관, required) and record it.")
    api_action("close", "Close the request, with a note.")

    @router.get("/requests", include_in_schema=False)
    def request_queue(
        request: Request, deps: AppDeps, lang: Lang, manager: PageActor, after: str | None = None
    ) -> Response:
        place = paging.place_or_400("requests-open", after)
        with deps.db.connection() as conn:
            items, more = requests.page_requests(
                conn, visible_dongs(manager), limit=PAGE_ROWS, after=place
            )
            _record_reads(conn, request, manager, items)
        return render(
            request, deps, lang, "requests.html", manager, items=items,
            category=lambda c: pick(lang, requests.CATEGORIES[c]),
            state=lambda s: pick(lang, requests.STATES[s]),
            next_page=paging.encode("requests-open", more),
        )  # fmt: skip

    def page_action(action: str) -> None:
        def request_action(
            request: Request,
            request_id: int,
            deps: AppDeps,
            manager: PageActor,
            csrf: Annotated[str, Form(alias=CSRF_FIELD)] = "",
            provider: Annotated[str, Form(max_length=200)] = "",
            note: Annotated[str, Form(max_length=1000)] = "",
        ) -> Response:
            check_csrf(request, csrf)
            _act(deps, manager, request_id, action, provider, note)
            return RedirectResponse(f"/requests#request-{request_id}", status_code=303)

        request_action.__name__ = f"{action}_request_page"
        router.post(f"/requests/{{request_id}}/{action}", include_in_schema=False)(request_action)

    for action in ACTIONS:
        page_action(action)

    return router
