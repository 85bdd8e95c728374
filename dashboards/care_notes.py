"""Care notes on a resident's card (issue 21): the card's forms that write and correct one, and
`GET|POST /api/v1/residents/{id}/notes`.

Only the care roles of the resident's own dong (Action.CARE_NOTES) read and write them: a
district-wide role is answered 403, a care manager of another dong 404, as everywhere. A note
is never changed: a correction is a new note naming the one it corrects (registry.care_notes).
Each write is audited there; each read that lists notes is recorded in the access log ('notes').
A refused note comes back to its writer with why, in Korean first, the text kept. No body is
ever logged.
"""

# No `from __future__ import annotations`: FastAPI resolves the Annotated aliases at runtime.
import hashlib
import logging
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Form, Query, Request, Security
from fastapi.responses import JSONResponse, RedirectResponse, Response
from fastapi.security import OAuth2PasswordBearer
from pydantic import BaseModel, Field

from core.crypto import DataKeyError
from dashboards import idempotency, paging, residents
from dashboards.auth import CSRF_FIELD, CareManager, check_csrf
from dashboards.authz import Action, api_actor, page_actor, visible_dongs
from dashboards.deps import Deps, get_deps, language
from dashboards.enrolment_access import keyring_of
from dashboards.i18n import change_error, note_kind_label, text
from dashboards.problems import REFUSAL
from dashboards.resident_card import NoteDraft
from dashboards.routes import render, resident_page
from registry import InvalidChange, ResidentEnded, care_notes

log = logging.getLogger(__name__)

AppDeps = Annotated[Deps, Depends(get_deps)]
Lang = Annotated[str, Depends(language)]
PageWriter = Annotated[CareManager, Depends(page_actor(Action.CARE_NOTES))]
ApiReader = Annotated[CareManager, Depends(api_actor(Action.CARE_NOTES))]
Csrf = Annotated[str, Form(alias=CSRF_FIELD)]
NoteKind = Literal["visit", "call", "other"]  # registry.care_notes.KINDS

_RESPONSES: dict[int | str, dict[str, Any]] = {
    403: {"description": "Not a care role of the resident's own dong", **REFUSAL},
    404: {
        "description": "No such resident in your dong, or no such note of theirs to correct",
        **REFUSAL,
    },
    503: {"description": "The notes cannot be sealed or opened (data key)", **REFUSAL},
}


class NoteIn(BaseModel):
    body: str = Field(
        description=f"The note; trimmed, 1 to {care_notes.NOTE_MAX_CHARS} characters (422 "
        "note_empty / note_too_long otherwise)"
    )
    kind: NoteKind = Field("other", description="visit, call or other")
    corrects: int | None = Field(
        None,
        ge=1,
        description="The note this one corrects (409 note_corrected if it was corrected already)",
    )


class NoteOut(BaseModel):
    """A care note; a corrected one is kept, marked by `corrected_by`."""

    id: int
    resident_id: int
    written_by: int = Field(description="The care manager who wrote it")
    writer_name: str
    written_at: datetime = Field(description="UTC")
    written_local: str = Field(description="In ANBU_TIMEZONE (Asia/Seoul)")
    kind: str = Field(description="visit, call or other")
    kind_ko: str = Field(description="방문, 전화 or 기타")
    body: str | None = Field(
        description="null when emptied by the retention purge, or when it cannot be opened"
    )
    unopened: bool = Field(description="The data key could not open it")
    corrects: int | None = Field(description="The note this one corrects")
    corrected_by: int | None = Field(description="The note that corrects this one")

    @classmethod
    def of(cls, n: care_notes.CareNote, local: Any) -> "NoteOut":
        return cls(
            id=n.id, resident_id=n.resident_id, written_by=n.written_by,
            writer_name=n.writer_name, written_at=n.written_at, written_local=local(n.written_at),
            kind=n.kind, kind_ko=note_kind_label("ko", n.kind), body=n.body,
            unopened=n.unopened, corrects=n.corrects, corrected_by=n.corrected_by,
        )  # fmt: skip


def _write(
    deps: Deps,
    manager: CareManager,
    resident_id: int,
    body: str,
    kind: str,
    corrects: int | None,
    token: str | None,
) -> int:
    """Write the note in one transaction (with `token`: once); the registry's refusals pass
    through."""
    with deps.db.connection() as conn:
        return care_notes.add_note(
            conn, resident_id, visible_dongs(manager), manager.id, body, kind, keyring_of(deps),
            deps.clock.now(), corrects, token,
        )  # fmt: skip


def care_notes_router() -> APIRouter:
    """The card's note form (POST, CSRF) and the notes API (bearer token)."""
    router = APIRouter()
    scheme = OAuth2PasswordBearer(tokenUrl="/api/v1/token", auto_error=False)

    @router.post("/residents/{resident_id}/notes", include_in_schema=False)
    def write_note(
        request: Request,
        resident_id: int,
        deps: AppDeps,
        lang: Lang,
        manager: PageWriter,
        csrf: Csrf = "",
        body: Annotated[str, Form()] = "",
        kind: Annotated[str, Form(max_length=16)] = "",  # the form asks for one
        corrects: Annotated[int | None, Form(ge=1)] = None,
        note_token: Annotated[str | None, Form(max_length=care_notes.TOKEN_MAX_CHARS)] = None,
    ) -> Response:
        """A note, or (with `corrects`) the correction of one; back to the card at the note.
        A refused one: the card again, 422, with why and the text kept."""
        check_csrf(request, csrf)
        try:
            note_id = _write(deps, manager, resident_id, body, kind, corrects, note_token)
        except ResidentEnded:
            raise
        except InvalidChange as exc:
            draft = NoteDraft(change_error(lang, exc), body, kind, corrects)
            return resident_page(request, deps, lang, manager, resident_id, draft=draft)
        except DataKeyError:
            log.error("care note could not be sealed", extra={"resident_id": resident_id})
            return render(
                request, deps, lang, "error.html", manager, status_code=503,
                message=text(lang, "data_key"),
            )  # fmt: skip
        return RedirectResponse(f"/residents/{resident_id}#note-{note_id}", status_code=303)

    @router.get(
        "/api/v1/residents/{resident_id}/notes",
        tags=["api"],
        response_model=paging.Page[NoteOut],
        dependencies=[Security(scheme)],
        responses=_RESPONSES,
    )
    def list_notes(
        resident_id: int,
        request: Request,
        manager: ApiReader,
        deps: AppDeps,
        limit: Annotated[int, Query(ge=1, le=paging.LIMIT_MAX)] = paging.LIMIT_DEFAULT,
        cursor: Annotated[str | None, Query(max_length=paging.MAX_CURSOR_CHARS)] = None,
    ) -> Any:
        """A resident's care notes, newest first, a page at a time, corrected ones kept and
        marked; a read that lists any is recorded in the access log."""
        after = paging.place_or_400("care-notes", cursor)
        with deps.db.connection() as conn:
            residents.get_resident(conn, resident_id, visible_dongs(manager))  # else 404
            notes, more = care_notes.page_notes(conn, resident_id, keyring_of(deps), limit, after)
            if notes:
                residents.record_read(conn, request, manager, resident_id, "notes", ("care_notes",))
        return paging.page("care-notes", [NoteOut.of(n, deps.local_time) for n in notes], more)

    @router.post(
        "/api/v1/residents/{resident_id}/notes",
        tags=["api"],
        status_code=201,
        response_model=NoteOut,
        dependencies=[Security(scheme)],
        responses={
            **_RESPONSES,
            409: {"description": "Service ended, or the note was corrected already", **REFUSAL},
            422: {
                "description": "Empty, too long or unreadable text, or an unknown kind "
                "(`code`: note_empty / note_too_long / note_unreadable / note_kind)",
                **REFUSAL,
            },
        },
    )
    def add_note(
        request: Request,
        resident_id: int,
        note: NoteIn,
        manager: ApiReader,
        deps: AppDeps,
    ) -> Any:
        """Write a care note, or with `corrects` the correction of one (the corrected note is
        kept, marked corrected); audited."""
        try:
            # a retry's Idempotency-Key is dashboards.idempotency's, as on every POST; kept with
            # the note as well, it still holds past that key's day
            key = request.headers.get(idempotency.HEADER)
            token = None if not key else key if len(key) <= care_notes.TOKEN_MAX_CHARS else (
                hashlib.sha256(key.encode()).hexdigest())  # fmt: skip
            note_id = _write(deps, manager, resident_id, note.body, note.kind, note.corrects, token)
            with deps.db.connection() as conn:
                written = care_notes.get_note(conn, resident_id, note_id, keyring_of(deps))
        except DataKeyError:
            log.error("care note could not be sealed", extra={"resident_id": resident_id})
            return JSONResponse(
                {"detail": text("ko", "data_key"), "detail_en": text("en", "data_key")},
                status_code=503,
            )
        return NoteOut.of(written, deps.local_time)

    return router
