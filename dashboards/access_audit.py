"""Who looked at whom, for supervisors: a Korean-first page and a JSON API over anbu.access_log.

The pages and the API record each read with `dashboards.residents.record_read`. Listing is
for supervisors and admins, over their own district; any other care manager is answered 403.
"""

# No `from __future__ import annotations`: FastAPI resolves the Annotated aliases at runtime.
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Security
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi.security import OAuth2PasswordBearer
from pydantic import BaseModel, Field

from dashboards.auth import CareManager
from dashboards.deps import Deps, api_manager, get_deps, language, page_manager
from dashboards.routes import render
from registry.access_log import (
    AccessPage,
    AccessRow,
    list_access,
    supervised_district,
)

WORDS: dict[str, tuple[str, str]] = {
    "title": ("열람 기록", "Access log"),
    "help": (
        "관할 구의 대상자 정보(카드, 메모, 통화 내용)를 누가 언제 어디서 열람했는지 보여 줍니다.",
        "Who read which resident's card, notes or calls in the district, when and from where.",
    ),
    "time": ("열람 시각", "Time"),
    "reader": ("열람자", "Reader"),
    "home": ("가구", "Home"),
    "view": ("화면", "View"),
    "fields": ("항목", "Fields"),
    "from": ("접속 정보", "From"),
    "filter": ("조회", "Filter"),
    "resident_id": ("대상자 번호", "Resident id"),
    "care_manager_id": ("담당자 번호", "Care manager id"),
    "older": ("이전 기록 더 보기", "Older entries"),
    "empty": ("열람 기록이 없습니다.", "No reads are recorded."),
    "forbidden": (
        "열람 기록은 구 통합돌봄 담당자와 구 시스템 관리자만 볼 수 있습니다.",
        "Only the district's supervisors and admins can see the access log.",
    ),
}
VIEW_LABELS = {
    "card": ("대상자 카드", "resident card"),
    "activity": ("활동 기록", "activity"),
    "notes": ("메모", "notes"),
    "alert": ("알림 상세(통화 내용)", "alert detail (calls)"),
    "export": ("내보내기", "export"),
}
FIELD_LABELS = {
    "name": ("이름", "name"),
    "care_settings": ("돌봄 설정", "care settings"),
    "activity": ("활동", "activity"),
    "findings": ("감지 내역", "findings"),
    "health_notes": ("건강메모", "health notes"),
    "access_notes": ("출입메모", "access notes"),
    "timeline": ("처리 기록", "timeline"),
    "calls": ("통화", "calls"),
    "transcripts": ("통화 내용", "transcripts"),
    "birth_year": ("출생연도", "birth year"),
    "phones": ("전화번호", "phone numbers"),
    "emergency_contacts": ("비상 연락처", "emergency contacts"),
    "address": ("주소", "address"),
    "conversation": ("안부 대화", "conversations"),
    "care_notes": ("돌봄 메모", "care notes"),
    "outings": ("외출 추정", "outings"),
}


def _pick(table: dict[str, tuple[str, str]], lang: str, key: str) -> str:
    ko, en = table.get(key, (key, key))
    return en if lang == "en" else ko


class AccessEntryOut(BaseModel):
    """One recorded read: ids and classes only, no resident's name."""

    id: int
    at: datetime = Field(description="When, by the database's clock (UTC)")
    care_manager_id: int | None
    care_manager_username: str | None = Field(
        description="The reader's username; a service account's name"
    )
    service: bool | None = Field(description="The reader is a service account (a city system)")
    actor: str | None = Field(description="A non-person reader, e.g. cli:<os user>")
    resident_id: int
    home: str | None
    dong_code: str
    view: str
    fields: list[str]
    request_id: str | None
    client: str | None

    @classmethod
    def of(cls, row: AccessRow) -> "AccessEntryOut":
        return cls(**{**{k: getattr(row, k) for k in row.__slots__}, "fields": list(row.fields)})


class AccessPageOut(BaseModel):
    items: list[AccessEntryOut]
    next_before: int | None = Field(
        description="Pass as `before` for the next, older page; null when there is none"
    )


Before = Annotated[int | None, Query(ge=1, description="Cursor: entries older than this id")]
Limit = Annotated[int, Query(ge=1, le=200, description="Entries per page")]
ResidentFilter = Annotated[int | None, Query(ge=1, description="Only reads of this resident")]
ManagerFilter = Annotated[int | None, Query(ge=1, description="Only reads by this care manager")]
AppDeps = Annotated[Deps, Depends(get_deps)]


def _page(
    deps: Deps,
    manager: CareManager,
    resident_id: int | None,
    care_manager_id: int | None,
    before: int | None,
    limit: int,
) -> AccessPage | None:
    """The supervisor's district page of the log; None when `manager` supervises nothing."""
    with deps.db.connection() as conn:
        district = supervised_district(conn, manager.id)
        if district is None:
            return None
        return list_access(
            conn, district, resident_id=resident_id, care_manager_id=care_manager_id,
            before=before, limit=limit,
        )  # fmt: skip


def _number(text: str) -> int | None:
    """A positive id from a query string field; None when empty or not a number."""
    text = text.strip()
    return int(text) if text.isascii() and text.isdigit() and 0 < int(text) < 2**63 else None


def access_audit_router() -> APIRouter:
    """GET /api/v1/access-log (JSON, bearer token) and GET /access-log (page)."""
    router = APIRouter()
    scheme = OAuth2PasswordBearer(tokenUrl="/api/v1/token", auto_error=False)

    @router.get(
        "/api/v1/access-log",
        tags=["api"],
        response_model=AccessPageOut,
        dependencies=[Security(scheme)],
        responses={403: {"description": "Not a supervisor or admin"}},
    )
    def access_log_api(
        manager: Annotated[CareManager, Depends(api_manager)],
        deps: AppDeps,
        resident_id: ResidentFilter = None,
        care_manager_id: ManagerFilter = None,
        before: Before = None,
        limit: Limit = 50,
    ) -> Any:
        """Reads of residents' cards, notes and calls in the supervisor's district, newest
        first; filter by resident or by care manager; page with `before`."""
        page = _page(deps, manager, resident_id, care_manager_id, before, limit)
        if page is None:
            ko, en = WORDS["forbidden"]
            return JSONResponse({"detail": ko, "detail_en": en}, status_code=403)
        return AccessPageOut(
            items=[AccessEntryOut.of(r) for r in page.rows], next_before=page.next_before
        )

    @router.get("/access-log", include_in_schema=False, response_class=HTMLResponse)
    def access_log_page(
        request: Request,
        manager: Annotated[CareManager, Depends(page_manager)],
        deps: AppDeps,
        lang: Annotated[str, Depends(language)],
        resident_id: str = "",
        care_manager_id: str = "",
        before: str = "",
        limit: str = "50",
    ) -> Response:
        # a form sends its empty fields too: an empty or unreadable filter is no filter
        query = {"resident_id": _number(resident_id), "care_manager_id": _number(care_manager_id)}
        page = _page(
            deps, manager, query["resident_id"], query["care_manager_id"], _number(before),
            _number(limit) or 50,
        )  # fmt: skip
        if page is None:
            return render(
                request, deps, lang, "error.html", manager, status_code=403,
                message=_pick(WORDS, lang, "forbidden"),
            )  # fmt: skip
        older = None
        if page.next_before is not None:
            params = {k: v for k, v in query.items() if v is not None}
            params["before"] = page.next_before
            older = "/access-log?" + "&".join(f"{k}={v}" for k, v in params.items())
        return render(
            request, deps, lang, "access_log.html", manager,
            page=page, query=query, older=older,
            w=lambda key: _pick(WORDS, lang, key),
            view_label=lambda key: _pick(VIEW_LABELS, lang, key),
            field_label=lambda key: _pick(FIELD_LABELS, lang, key),
        )  # fmt: skip

    return router
