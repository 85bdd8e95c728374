"""Server-rendered pages for care managers: login, their dong's alerts and residents."""

# No `from __future__ import annotations`: FastAPI resolves the Annotated aliases at runtime.
import logging
import secrets
from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Annotated, Any
from urllib.parse import quote
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Depends, Form, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response, StreamingResponse

import registry
from alerts import absence, queries
from alerts.machine import Event, allowed_events
from alerts.models import RESOLUTION_OUTCOMES
from calls.conversation import programme
from core.crypto import DataKeyError
from core.domain import AlertState
from dashboards import (
    activity_grid,
    alert_first,
    authz,
    conversation_view,
    line_messages,
    paging,
    resident_card,
    residents,
    review,
    service_accounts,
    sites,
    unobserved,
)
from dashboards.auth import (
    CSRF_FIELD,
    CareManager,
    LoginLocked,
    await_code,
    check_csrf,
    client_address,
    csrf_token,
    end_session,
    start_session,
)
from dashboards.authz import Action, page_actor, visible_dongs
from dashboards.deps import Deps, get_deps, language
from dashboards.enrolment_access import keyring_of
from dashboards.enrolment_text import kind_label, room_label
from dashboards.i18n import actor_label, change_error, note_kind_label, text
from dashboards.queue_feed import feed_of, queue_events
from detectors.health import HealthPolicy
from registry import InvalidChange, ResidentEnded, care_notes
from registry.assignment import Assignee, assignable, care_manager_of
from registry.assignment import reassign_resident as reassign

log = logging.getLogger(__name__)

LIST_REFRESH_S = 30
PAGE_ROWS = 100  # rows of a list page; the next ones follow a link, none is dropped
# the alert version its page showed (alerts.queries.alert_version): a form acts on what was seen
Seen = Annotated[int | None, Form(ge=0)]
PageAfter = Annotated[str | None, Query(max_length=paging.MAX_CURSOR_CHARS)]

AppDeps = Annotated[Deps, Depends(get_deps)]
Lang = Annotated[str, Depends(language)]
AlertReader = Annotated[CareManager, Depends(page_actor(Action.ALERTS_READ))]
AlertActor = Annotated[CareManager, Depends(page_actor(Action.ALERTS_ACT))]
AlertAssigner = Annotated[CareManager, Depends(page_actor(Action.ALERTS_REASSIGN))]
ResidentReader = Annotated[CareManager, Depends(page_actor(Action.RESIDENTS_READ))]
ResidentChanger = Annotated[CareManager, Depends(page_actor(Action.RESIDENTS_CHANGE))]
ResidentAssigner = Annotated[CareManager, Depends(page_actor(Action.RESIDENTS_REASSIGN))]
ReviewReader = Annotated[CareManager, Depends(page_actor(Action.REVIEW_READ))]
DeviceReader = Annotated[CareManager, Depends(page_actor(Action.DEVICES_READ))]
SiteReader = Annotated[CareManager, Depends(page_actor(Action.RESIDENTS_SITE))]
Csrf = Annotated[str, Form(alias=CSRF_FIELD)]


def safe_next(target: str | None) -> str:
    """Where to go after login: only a local path, never another site; without one, "/" (which
    sends each role to its start page)."""
    if target and target.startswith("/") and not target.startswith("//") and "\\" not in target:
        return target
    return "/"


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


def assignee_words(lang: str, assignees: Sequence[Assignee], current: int | None) -> str:
    """Who looks after a resident or an alert now: a name and dong from the picker's list,
    another care manager by number only, or the dong's care managers together."""
    if current is None:
        return text(lang, "dong_shared")
    for a in assignees:
        if a.id == current:
            return f"{a.display_name} ({a.dong_name})"
    return actor_label(lang, f"care_manager:{current}")


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
        views = residents.list_residents(conn, visible_dongs(manager))
    latest = now + timedelta(days=registry.STATUS_MAX_DAYS)
    return render(
        request, deps, lang, "residents.html", manager, status_code=status_code,
        residents=views, now=now, error=error, statuses=registry.SETTABLE_STATUSES,
        until_min=deps.local_time(now).replace(" ", "T"),
        until_max=deps.local_time(latest).replace(" ", "T"),
    )  # fmt: skip


def _refused(
    request: Request,
    deps: Deps,
    lang: str,
    template: str,
    locked: LoginLocked | None,
    **context: Any,
) -> HTMLResponse:
    """A refused login: 401, or 429 while locked out; the same words whoever was named."""
    if locked is None:
        return render(
            request, deps, lang, template, status_code=401,
            error=text(lang, "code_failed" if template == "login_code.html" else "login_failed"),
            **context,
        )  # fmt: skip
    response = render(
        request, deps, lang, template, status_code=429, error=text(lang, "login_locked"),
        **context,
    )  # fmt: skip
    response.headers["Retry-After"] = str(locked.retry_after_s)
    return response


def _latest_version(notes: Sequence[care_notes.CareNote], note_id: int) -> int | None:
    """The newest correction of a note (the note itself if none), by the notes listed: a refused
    correction's text goes to its form; None when the chain leaves the page (a new note's form)."""
    by_id = {n.id: n for n in notes}
    seen: set[int] = set()
    while (note := by_id.get(note_id)) is not None and note.corrected_by is not None:
        if note_id in seen:
            return None
        seen.add(note_id)
        note_id = note.corrected_by
    return note_id if note is not None else None


def resident_page(
    request: Request,
    deps: Deps,
    lang: str,
    manager: CareManager,
    resident_id: int,
    show: str = "",
    notes_after: Sequence[Any] | None = None,
    draft: resident_card.NoteDraft | None = None,
) -> HTMLResponse:
    """A resident's card (ResidentNotFound outside the dongs in view), the read recorded; with
    a refused note `draft`, answered 422 with why and the text kept."""
    tz = ZoneInfo(deps.settings.timezone)
    now = deps.clock.now()
    dongs = visible_dongs(manager)
    may_reassign = authz.may(manager, Action.RESIDENTS_REASSIGN)
    keyring = keyring_of(deps)
    # what the resident said, word for word: for the dong's own care roles, as on the
    # conversation pages (a district-wide role sees the answers, not the words)
    said_shown = authz.may(manager, Action.ALERTS_READ) and not authz.district_wide(manager)
    notes_shown = authz.may(manager, Action.CARE_NOTES)  # the same roles (dashboards.authz)
    notes: list[care_notes.CareNote] = []
    older = None
    with deps.db.connection() as conn:
        week = residents.activity_week(conn, resident_id, dongs, now, tz)  # the dong, first
        served = week.resident.status != "ended"
        # the way in (a door code) is opened on a press, for a resident still served
        may_open = served and authz.may(manager, Action.RESIDENTS_SITE)
        devices = residents.safety_devices(conn, resident_id, now, HealthPolicy())
        sensors = resident_card.home_sensors(conn, resident_id, now, HealthPolicy())
        reach = resident_card.reach(
            conn, resident_id, now, tz, keyring, may_open and show == "access",
            calls_placed=week.resident.status == "active",
        )  # fmt: skip
        calls = resident_card.recent_calls(conn, resident_id, said_shown)
        alerts = resident_card.recent_alerts(conn, resident_id)
        if notes_shown:
            notes, older = care_notes.page_notes(
                conn, resident_id, keyring, resident_card.NOTES_SHOWN, notes_after
            )
        if draft and draft.corrects is not None:
            draft = replace(draft, corrects=_latest_version(notes, draft.corrects))
        residents.record_read(
            conn, request, manager, resident_id, "card",
            resident_card.fields_shown(reach, calls, notes=bool(notes),
                                       outings=bool(week.outings)),
        )  # fmt: skip
        talked = conversation_view.answers_since(
            conn, dongs, now - timedelta(weeks=conversation_view.WEEKS), resident_id
        )
        assignees = assignable(conn, [week.resident.dong_code]) if may_reassign else []
        current = care_manager_of(conn, resident_id) if may_reassign else None
    return render(
        request, deps, lang, "resident.html", manager,
        status_code=200 if draft is None else 422, week=week,
        grid=activity_grid.week_grid(week), night_hours=review.NIGHT_HOURS,
        out_in_hour_min=activity_grid.OUT_IN_HOUR_MIN, now=now, safety_devices=devices,
        reach=reach, calls=calls, alerts=alerts, said_shown=said_shown, sensors=sensors,
        may_open_access=may_open and not reach.access_shown,
        first_labels=alert_first.LABELS,
        kind_label=lambda k: kind_label(lang, k), room_label=lambda r: room_label(lang, r),
        can_reassign=may_reassign and week.resident.status != "ended",
        assignees=assignees, current=current,
        current_label=assignee_words(lang, assignees, current),
        talk_weeks=conversation_view.weeks(talked.get(resident_id, []), now, tz),
        talk_questions=[q.id for q in programme(deps.settings.conversation_script)
                        .questions],
        notes_shown=notes_shown, notes=notes, may_write_notes=notes_shown and served,
        older_notes=paging.encode("care-notes", older), notes_paged=notes_after is not None,
        note_kinds=care_notes.KINDS, note_max=care_notes.NOTE_MAX_CHARS, draft=draft,
        note_kind_label=lambda k: note_kind_label(lang, k),
        note_token=lambda: secrets.token_urlsafe(18),  # each form's own: sent twice, one note
    )  # fmt: skip


def pages_router() -> APIRouter:
    """HTML routes; each one reads the session cookie, writes carry a CSRF token."""
    router = APIRouter(include_in_schema=False, default_response_class=HTMLResponse)

    @router.get("/")
    def home(request: Request, deps: AppDeps) -> Response:
        """Where a role starts: the alerts, or for those who may not read them, the sites;
        without a login, the login page (which comes back here)."""
        manager = deps.auth.session_manager(request.session)
        if manager is None:
            return RedirectResponse("/login", status_code=303)
        start = "/alerts" if authz.may(manager, Action.ALERTS_READ) else "/sites"
        return RedirectResponse(start, status_code=303)

    @router.get("/sites")
    def site_list(
        request: Request, deps: AppDeps, lang: Lang, manager: DeviceReader, after: PageAfter = None
    ) -> Response:
        """Homes of the dongs in view with their gateways, and the device and site findings."""
        dongs = visible_dongs(manager)
        place = paging.place_or_400("device-findings", after)
        with deps.db.connection() as conn:
            homes = sites.list_sites(conn, dongs)
            findings, more = sites.page_device_findings(conn, dongs, limit=PAGE_ROWS, after=place)
        return render(
            request, deps, lang, "sites.html", manager, sites=homes, findings=findings,
            next_page=paging.encode("device-findings", more), paged=place is not None,
        )  # fmt: skip

    @router.get("/sites/{resident_id}")
    def site_page(
        request: Request, resident_id: int, deps: AppDeps, lang: Lang, manager: SiteReader
    ) -> Response:
        """A home as an installer sees it: address, access notes, devices; no health notes.
        Notes the data key cannot open answer 503 (nothing of them shown, the read not
        recorded)."""
        try:
            keyring = keyring_of(deps)
            with deps.db.connection() as conn:
                view = sites.site(conn, resident_id, visible_dongs(manager), keyring)
                residents.record_read(
                    conn, request, manager, resident_id, "notes", ("access_notes", "address")
                )
        except DataKeyError:
            log.error("resident notes could not be opened", extra={"resident_id": resident_id})
            return render(
                request, deps, lang, "error.html", manager, status_code=503,
                message=text(lang, "data_key"),
            )  # fmt: skip
        return render(
            request, deps, lang, "site.html", manager, site=view,
            kind_label=lambda k: kind_label(lang, k), room_label=lambda r: room_label(lang, r),
        )  # fmt: skip

    @router.get("/login")
    def login_page(request: Request, deps: AppDeps, lang: Lang, next: str = "") -> Response:
        if deps.auth.session_manager(request.session) is not None:
            return RedirectResponse(safe_next(next), status_code=303)
        return render(request, deps, lang, "login.html", next=safe_next(next))

    @router.post("/login")
    def login(
        request: Request,
        deps: AppDeps,
        lang: Lang,
        username: Annotated[str, Form(max_length=200)] = "",
        password: Annotated[str, Form(max_length=1000)] = "",
        csrf: Csrf = "",
        next: Annotated[str, Form(max_length=2000)] = "",
    ) -> Response:
        check_csrf(request, csrf)
        target = safe_next(next)
        try:
            manager = (
                deps.auth.check_password(username, password, client_address(request))
                if username and password
                else None
            )
        except LoginLocked as exc:
            return _refused(request, deps, lang, "login.html", exc, next=target, username=username)
        if manager is None:
            return _refused(request, deps, lang, "login.html", None, next=target, username=username)
        if manager.totp_enabled:
            await_code(request, manager, deps.auth.now_epoch())
            return RedirectResponse(f"/login/code?next={quote(target, safe='/')}", status_code=303)
        start_session(request, manager, deps.auth.now_epoch())
        return RedirectResponse(target, status_code=303)

    @router.get("/login/code")
    def code_page(request: Request, deps: AppDeps, lang: Lang, next: str = "") -> Response:
        if deps.auth.pending_code(request.session) is None:
            return RedirectResponse("/login", status_code=303)
        return render(request, deps, lang, "login_code.html", next=safe_next(next))

    @router.post("/login/code")
    def login_code(
        request: Request,
        deps: AppDeps,
        lang: Lang,
        code: Annotated[str, Form(max_length=20)] = "",
        csrf: Csrf = "",
        next: Annotated[str, Form(max_length=2000)] = "",
    ) -> Response:
        check_csrf(request, csrf)
        target = safe_next(next)
        pending = deps.auth.pending_code(request.session)
        if pending is None:  # too slow, or no password given first
            return RedirectResponse("/login", status_code=303)
        care_manager_id, username = pending
        try:
            manager = deps.auth.check_code(username, care_manager_id, code, client_address(request))
        except LoginLocked as exc:
            return _refused(request, deps, lang, "login_code.html", exc, next=target)
        if manager is None:
            return _refused(request, deps, lang, "login_code.html", None, next=target)
        start_session(request, manager, deps.auth.now_epoch())
        return RedirectResponse(target, status_code=303)

    @router.post("/logout")
    def logout(request: Request, deps: AppDeps, csrf: Csrf = "") -> Response:
        """Ends this and every other session and token of the care manager (POST + CSRF only:
        a link on another site cannot log anyone out)."""
        check_csrf(request, csrf)
        manager = deps.auth.session_manager(request.session)
        if manager is not None:
            with deps.db.connection() as conn:
                registry.end_sessions(conn, manager.id)
            log.info("care manager logged out", extra={"care_manager_id": manager.id})
        end_session(request)
        return RedirectResponse("/login", status_code=303)

    @router.get("/alerts")
    def alert_list(
        request: Request, deps: AppDeps, lang: Lang, manager: AlertReader, after: PageAfter = None
    ) -> Response:
        """The care queue, most severe first, PAGE_ROWS at a time: every open alert is on some
        page (the heading counts them all; it was cut at 200 before, the least severe lost).
        Device and site findings are the technician's (/sites), never rows here; a home that
        cannot be observed is listed once above the rows, on the first page."""
        place = paging.place_or_400("queue", after)
        dongs = visible_dongs(manager)
        with deps.db.connection() as conn:
            page = queries.page_alerts(
                conn, dongs, queries.AlertFilter(unobserved_apart=True), limit=PAGE_ROWS,
                after=place, by_severity=True, with_total=True,
            )  # fmt: skip
            unseen = unobserved.unobserved_homes(conn, dongs) if place is None else None
        return render(
            request, deps, lang, "alerts.html", manager,
            alerts=page.alerts, total=page.total, refresh_s=LIST_REFRESH_S, waiting=page.waiting,
            next_page=paging.encode("queue", page.next_after), paged=place is not None,
            page_rows=PAGE_ROWS, unobserved=unseen,
        )  # fmt: skip

    @router.get("/alerts/events", include_in_schema=False)
    async def alert_events(request: Request, deps: AppDeps, manager: AlertReader) -> Response:
        """The care queue's changes as server-sent events (static/queue.js listens): a
        change in the manager's dongs says only "read the queue again"."""
        feed = feed_of(request.app.state, deps.db.conninfo)
        if feed.closing:  # the server is stopping: the browser tries again (another one)
            return Response(status_code=503, headers={"Retry-After": "5"})
        if not feed.room_for(manager.id):  # the page polls instead
            return Response(status_code=429, headers={"Retry-After": "60"})
        return StreamingResponse(
            queue_events(feed, manager.id, visible_dongs(manager), request),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
        )

    @router.get("/alerts/{alert_id}")
    def alert_detail(
        request: Request, alert_id: int, deps: AppDeps, lang: Lang, manager: AlertReader
    ) -> Response:
        dongs = visible_dongs(manager)
        may_reassign = authz.may(manager, Action.ALERTS_REASSIGN)
        with deps.db.connection() as conn:
            detail = queries.get_alert(conn, alert_id, dongs)
            residents.record_read(
                conn, request, manager, detail.alert.resident_id, "alert",
                ("name", "timeline", "calls", "transcripts"),
            )  # fmt: skip
            first = None
            if alert_first.needs_first_aid(detail.alert.kind):  # 119 advice and the way in first
                # the way in only while someone may have to go: an unresolved alert of a resident
                # whose service goes on (as the technician's site view)
                live = detail.alert.state is not AlertState.RESOLVED and conn.execute(
                    "SELECT status <> 'ended' FROM anbu.resident WHERE id = %s",
                    (detail.alert.resident_id,),
                ).fetchone() == (True,)
                may_see = live and authz.may(manager, Action.RESIDENTS_SITE)
                keyring = keyring_of(deps)
                first = alert_first.first_aid(
                    conn, detail.alert.kind, detail.alert.resident_id, keyring, may_see
                )
                fields = ("address", "access_notes") if may_see else ("address",)
                residents.record_read(conn, request, manager, detail.alert.resident_id, "notes",
                                      fields)  # fmt: skip
            messages = line_messages.messages_near(
                conn, detail.alert.resident_id, detail.alert.opened_at
            )
            # only the resident's own dong's care managers may take it (check_assignee)
            assignees = assignable(conn, [detail.alert.dong_code]) if may_reassign else []
            current = queries.assigned_to(conn, alert_id) if may_reassign else None
            services = service_accounts.names(conn, [e.actor for e in detail.events])
        allowed = allowed_events(detail.alert.state)
        return render(
            request, deps, lang, "alert.html", manager,
            d=detail, first=first, first_labels=alert_first.LABELS,
            can_acknowledge=Event.ACKNOWLEDGE in allowed,
            can_resolve=Event.RESOLVE in allowed,
            can_reassign=may_reassign and detail.alert.state is not AlertState.RESOLVED,
            assignees=assignees, current=current,
            current_label=assignee_words(lang, assignees, current),
            outcomes=RESOLUTION_OUTCOMES, messages=messages, services=services,
        )  # fmt: skip

    @router.get("/line-messages/{message_id}/recording")
    def line_message_recording(
        request: Request, message_id: int, deps: AppDeps, manager: AlertReader
    ) -> Response:
        """A message's recording, for care roles of the resident's dong (404 for others)."""
        with deps.db.connection() as conn:  # RecordingNotFound: 404 (app.py)
            url, resident_id = line_messages.recording_url(conn, message_id, visible_dongs(manager))
            residents.record_read(conn, request, manager, resident_id, "alert", ("recording",))
        audio = line_messages.fetch_recording(deps.settings, url)
        return Response(audio, media_type="audio/mpeg", headers={"Cache-Control": "no-store"})

    @router.post("/alerts/{alert_id}/acknowledge")
    def acknowledge(
        request: Request,
        alert_id: int,
        deps: AppDeps,
        manager: AlertActor,
        csrf: Csrf = "",
        note: Annotated[str, Form(max_length=1000)] = "",
        seen: Seen = None,
    ) -> Response:
        check_csrf(request, csrf)
        deps.alerts.acknowledge(alert_id, manager.id, visible_dongs(manager), note.strip(), seen)
        return RedirectResponse(f"/alerts/{alert_id}", status_code=303)

    @router.post("/alerts/{alert_id}/reassign")
    def reassign_alert(
        request: Request,
        alert_id: int,
        deps: AppDeps,
        manager: AlertAssigner,
        csrf: Csrf = "",
        care_manager_id: Annotated[int, Form(ge=1)] = 0,
        note: Annotated[str, Form(max_length=1000)] = "",
        seen: Seen = None,
    ) -> Response:
        """Hand the alert to another care manager of the district (supervisors, admins)."""
        check_csrf(request, csrf)
        deps.alerts.reassign(
            alert_id, manager.id, visible_dongs(manager), care_manager_id, note.strip(), seen
        )
        return RedirectResponse(f"/alerts/{alert_id}", status_code=303)

    @router.post("/alerts/{alert_id}/resolve")
    def resolve(
        request: Request,
        alert_id: int,
        deps: AppDeps,
        lang: Lang,
        manager: AlertActor,
        csrf: Csrf = "",
        outcome: Annotated[str, Form()] = "",
        note: Annotated[str, Form(max_length=1000)] = "",
        seen: Seen = None,
    ) -> Response:
        check_csrf(request, csrf)
        if outcome not in RESOLUTION_OUTCOMES:
            return render(
                request, deps, lang, "error.html", manager, status_code=422,
                message=text(lang, "bad_outcome"),
            )  # fmt: skip
        deps.alerts.resolve(
            alert_id, manager.id, visible_dongs(manager), outcome, note.strip(), seen
        )
        return RedirectResponse(f"/alerts/{alert_id}", status_code=303)

    @router.get("/residents")
    def resident_list(
        request: Request, deps: AppDeps, lang: Lang, manager: ResidentReader
    ) -> Response:
        return _residents_page(request, deps, lang, manager)

    @router.get("/review")
    def weekly_review(
        request: Request, deps: AppDeps, lang: Lang, manager: ReviewReader,
        after: PageAfter = None,
    ) -> Response:  # fmt: skip
        """The dongs' week, PAGE_ROWS residents a page (those for review and the largest
        drops first); a later page is of the week the first was read for, for a day."""
        tz = ZoneInfo(deps.settings.timezone)
        place = paging.place_or_400("review", after)
        try:
            with deps.db.connection() as conn:
                week, shown, more = review.review_page(
                    conn, visible_dongs(manager), deps.clock.now(), tz,
                    deps.settings.conversation_script, place, PAGE_ROWS,
                )  # fmt: skip
        except review.CursorExpired:
            return RedirectResponse("/review", status_code=303)  # that week is gone: this one
        script = programme(deps.settings.conversation_script)
        return render(
            request, deps, lang, "review.html", manager, review=week, rows=shown,
            next_page=paging.encode("review", more), paged=place is not None,
            concern_of={q.id: q.concern for q in script.questions},
        )  # fmt: skip

    @router.get("/residents/{resident_id}")
    def resident_week(
        request: Request,
        resident_id: int,
        deps: AppDeps,
        lang: Lang,
        manager: ResidentReader,
        show: Annotated[str, Query(max_length=16)] = "",
        notes_after: PageAfter = None,
    ) -> Response:
        place = paging.place_or_400("care-notes", notes_after)
        return resident_page(request, deps, lang, manager, resident_id, show, place)

    @router.post("/residents/{resident_id}/reassign")
    def reassign_resident(
        request: Request,
        resident_id: int,
        deps: AppDeps,
        manager: ResidentAssigner,
        csrf: Csrf = "",
        care_manager_id: Annotated[int, Form(ge=1)] = 0,
    ) -> Response:
        """Make another care manager of the district the resident's own (supervisors, admins)."""
        check_csrf(request, csrf)
        with deps.db.connection() as conn:
            reassign(
                conn, resident_id, visible_dongs(manager), care_manager_id, manager.id,
                deps.clock.now(),
            )  # fmt: skip
        return RedirectResponse(f"/residents/{resident_id}", status_code=303)

    @router.post("/residents/{resident_id}/status")
    def set_status(
        request: Request,
        resident_id: int,
        deps: AppDeps,
        lang: Lang,
        manager: ResidentChanger,
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
                residents.get_resident(conn, resident_id, visible_dongs(manager))  # else 404
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
