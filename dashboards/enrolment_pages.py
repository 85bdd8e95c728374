"""The enrolment pages under /enrol, Korean first (English with ?lang=en): the district's
residents, a resident's form with the home's devices, the list upload."""

# No `from __future__ import annotations`: FastAPI resolves the Annotated aliases at runtime.
from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.datastructures import UploadFile

from core.crypto import DataKeyError
from dashboards.auth import CSRF_FIELD, check_csrf
from dashboards.deps import Deps
from dashboards.enrolment_access import (
    Admin,
    AdminDep,
    AppDeps,
    Lang,
    enrolled_card,
    gateway_in_district,
    home_of,
    register_sensor,
    resident_in_district,
    run_import,
    save_resident,
    sensor_in_district,
)
from dashboards.enrolment_schemas import (
    KINDS,
)
from dashboards.enrolment_text import field_label, kind_label, room_label, word
from dashboards.gateway_credentials import (
    NO_STORE,
    credential_word,
    credentials_out,
    issue,
    remove,
    replace,
)
from dashboards.routes import render
from registry import home_devices as home
from registry import residents_edit as edit
from registry.enrolment import ROOMS
from registry.gateway_accounts import BrokerUnavailable, Credentials, GatewayStateRefused
from registry.residents_csv import FileRefused, LineError
from registry.residents_text import CONTACT_SLOTS

# --- the pages -------------------------------------------------------------------------------


def _page(
    request: Request, deps: Deps, lang: str, admin: Admin, template: str, status_code: int = 200,
    **context: Any,
) -> HTMLResponse:  # fmt: skip
    return render(
        request, deps, lang, template, admin.manager, status_code=status_code,
        t=lambda key: word(lang, key), label=lambda f: field_label(lang, f),
        room_label=lambda r: room_label(lang, r), kind_label=lambda k: kind_label(lang, k),
        district=admin.district, **context,
    )  # fmt: skip


def _list_residents(deps: Deps, admin: Admin) -> list[tuple[Any, ...]]:
    with deps.db.connection() as conn:
        rows: list[tuple[Any, ...]] = conn.execute(
            """SELECT r.id, r.external_id, r.display_name, r.dong_code, d.name, r.home,
                      (SELECT count(*) FROM anbu.gateway g
                        WHERE g.resident_id = r.id AND g.removed_at IS NULL)
                 FROM anbu.resident r JOIN anbu.dong d ON d.code = r.dong_code
                WHERE r.dong_code = ANY(%s) ORDER BY d.name, r.display_name, r.id""",
            (sorted(admin.district.codes),),
        ).fetchall()
    return rows


def _form_page(
    request: Request, deps: Deps, lang: str, admin: Admin, resident_id: int | None,
    values: dict[str, str], manager_id: int | None, problems: tuple[LineError, ...] = (),
    status_code: int = 200,
) -> HTMLResponse:  # fmt: skip
    with deps.db.connection() as conn:
        managers = edit.care_managers(conn, admin.district)
        # a care manager deactivated since stays assigned, shown as such
        inactive = edit.inactive_assignee(conn, admin.district, manager_id)
    home = home_of(deps, resident_id) if resident_id is not None else []
    return _page(
        request, deps, lang, admin, "enrol_resident.html", status_code=status_code,
        resident_id=resident_id, values=values, manager_id=manager_id, managers=managers,
        inactive_manager=inactive,
        problems=[edit.problem_message(p, lang) for p in problems], slots=range(1, CONTACT_SLOTS + 1),
        gateways=home, kinds=KINDS, rooms=ROOMS, saved=request.query_params.get("saved") == "1",
        pending=request.query_params.get("pending") == "1", w=lambda k: credential_word(lang, k),
    )  # fmt: skip


def _manager_field(form: Any) -> int | None:
    raw = form.get("care_manager_id")
    return int(raw) if isinstance(raw, str) and raw.isdigit() else None


def _form_values(form: Any) -> dict[str, str]:
    skip = {CSRF_FIELD, "care_manager_id"}
    return {k: v for k, v in form.items() if isinstance(v, str) and k not in skip}


def enrolment_pages_router() -> APIRouter:
    """Korean-first pages for the district's admin: list, resident form with the home's
    devices, list upload."""
    router = APIRouter(prefix="/enrol", include_in_schema=False)

    @router.get("", response_class=HTMLResponse)
    def enrol_list(request: Request, admin: AdminDep, deps: AppDeps, lang: Lang) -> HTMLResponse:
        return _page(
            request, deps, lang, admin, "enrol_list.html", residents=_list_residents(deps, admin)
        )

    @router.get("/residents/new", response_class=HTMLResponse)
    def new_resident(request: Request, admin: AdminDep, deps: AppDeps, lang: Lang) -> HTMLResponse:
        return _form_page(
            request, deps, lang, admin, None,
            {"consent_recorded_by": admin.manager.display_name}, None,
        )  # fmt: skip

    @router.get("/residents/{resident_id}", response_class=HTMLResponse)
    def edit_resident(
        resident_id: int, request: Request, admin: AdminDep, deps: AppDeps, lang: Lang
    ) -> HTMLResponse:
        try:
            found = enrolled_card(deps, request, admin, resident_id)
        except DataKeyError:
            return _page(
                request, deps, lang, admin, "error.html", 503, message=word(lang, "data_key")
            )
        return _form_page(
            request, deps, lang, admin, resident_id, found.form_values, found.care_manager_id
        )

    async def save(
        request: Request, admin: Admin, deps: Deps, lang: str, resident_id: int | None
    ) -> Response:
        form = await request.form()
        check_csrf(request, _str(form.get(CSRF_FIELD)))
        values, manager_id = _form_values(form), _manager_field(form)
        try:
            rid = await run_in_threadpool(
                save_resident, deps, admin, values, resident_id, manager_id
            )
        except edit.Refused as exc:
            return _form_page(
                request, deps, lang, admin, resident_id, values, manager_id, exc.problems, 422
            )
        except DataKeyError:
            return _page(
                request, deps, lang, admin, "error.html", 503, message=word(lang, "data_key")
            )
        return RedirectResponse(f"/enrol/residents/{rid}?saved=1", status_code=303)

    @router.post("/residents", response_class=HTMLResponse)
    async def create(request: Request, admin: AdminDep, deps: AppDeps, lang: Lang) -> Response:
        return await save(request, admin, deps, lang, None)

    @router.post("/residents/{resident_id}", response_class=HTMLResponse)
    async def update(
        resident_id: int, request: Request, admin: AdminDep, deps: AppDeps, lang: Lang
    ) -> Response:
        return await save(request, admin, deps, lang, resident_id)

    async def device_change(
        request: Request, admin: Admin, deps: Deps, lang: str, work: Callable[[Any], int]
    ) -> Response:
        """A form about a home's devices: CSRF, the change, back to the resident's page."""
        form = await request.form()
        check_csrf(request, _str(form.get(CSRF_FIELD)))
        try:
            rid = await run_in_threadpool(work, form)
        except edit.Refused as exc:
            message = "; ".join(edit.problem_message(p, lang) for p in exc.problems)
            return _page(request, deps, lang, admin, "error.html", 422, message=message)
        return RedirectResponse(f"/enrol/residents/{rid}#home", status_code=303)

    async def credentials_page(
        request: Request, admin: Admin, deps: Deps, lang: str, replaced: bool,
        work: Callable[[Any], tuple[int, Credentials]],
    ) -> Response:  # fmt: skip
        """A form that issues a gateway's password: the page that shows it, once, never
        cached; refusals as a Korean page (503 when the broker cannot be told)."""
        form = await request.form()
        check_csrf(request, _str(form.get(CSRF_FIELD)))
        try:
            rid, made = await run_in_threadpool(work, form)
        except edit.Refused as exc:
            message = "; ".join(edit.problem_message(p, lang) for p in exc.problems)
            return _page(request, deps, lang, admin, "error.html", 422, message=message)
        except GatewayStateRefused as exc:
            status = 503 if isinstance(exc, BrokerUnavailable) else 409
            return _page(request, deps, lang, admin, "error.html", status,
                         message=exc.message(lang))  # fmt: skip
        page = _page(
            request, deps, lang, admin, "enrol_gateway_credentials.html", resident_id=rid,
            creds=credentials_out(deps.settings, made), replaced=replaced,
            w=lambda k: credential_word(lang, k),
        )  # fmt: skip
        page.headers.update(NO_STORE)
        return page

    @router.post("/residents/{resident_id}/gateways")
    async def add_gateway(
        resident_id: int, request: Request, admin: AdminDep, deps: AppDeps, lang: Lang
    ) -> Response:
        def work(form: Any) -> tuple[int, Credentials]:
            with deps.db.connection() as conn:
                resident_in_district(conn, admin, resident_id)
            return resident_id, issue(deps, admin, resident_id, _str(form.get("gateway_id")) or "")

        return await credentials_page(request, admin, deps, lang, False, work)

    @router.post("/gateways/{gateway_id}/credentials")
    async def replace_credentials(
        gateway_id: str, request: Request, admin: AdminDep, deps: AppDeps, lang: Lang
    ) -> Response:
        def work(form: Any) -> tuple[int, Credentials]:
            with deps.db.connection() as conn:
                rid = gateway_in_district(conn, admin, gateway_id)
            return rid, replace(deps, admin, gateway_id)

        return await credentials_page(request, admin, deps, lang, True, work)

    @router.post("/gateways/{gateway_id}/remove")
    async def remove_gateway(
        gateway_id: str, request: Request, admin: AdminDep, deps: AppDeps, lang: Lang
    ) -> Response:
        form = await request.form()
        check_csrf(request, _str(form.get(CSRF_FIELD)))

        def work() -> tuple[int, bool]:
            with deps.db.connection() as conn:
                rid = gateway_in_district(conn, admin, gateway_id)
            return rid, bool(remove(deps, admin, gateway_id).pending)

        rid, pending = await run_in_threadpool(work)
        flag = "?pending=1" if pending else ""
        return RedirectResponse(f"/enrol/residents/{rid}{flag}#home", status_code=303)

    @router.post("/gateways/{gateway_id}/sensors")
    async def add_sensor(
        gateway_id: str, request: Request, admin: AdminDep, deps: AppDeps, lang: Lang
    ) -> Response:
        def work(form: Any) -> int:
            with deps.db.connection() as conn:
                rid = gateway_in_district(conn, admin, gateway_id)
            register_sensor(
                deps, admin, gateway_id, _str(form.get("vendor_id")) or "",
                _str(form.get("kind")) or "", _str(form.get("room")) or "other",
            )  # fmt: skip
            return rid

        return await device_change(request, admin, deps, lang, work)

    @router.post("/sensors/{sensor_id}/remove")
    async def remove_sensor(
        sensor_id: int, request: Request, admin: AdminDep, deps: AppDeps, lang: Lang
    ) -> Response:
        def work(form: Any) -> int:
            with deps.db.connection() as conn:
                rid = sensor_in_district(conn, admin, sensor_id)
                home.remove_sensor(conn, sensor_id)
            return rid

        return await device_change(request, admin, deps, lang, work)

    @router.get("/import", response_class=HTMLResponse)
    def upload_page(request: Request, admin: AdminDep, deps: AppDeps, lang: Lang) -> HTMLResponse:
        return _page(
            request, deps, lang, admin, "enrol_import.html",
            report=None, problems=[], notes=[], dry_run=True,
        )  # fmt: skip

    @router.post("/import", response_class=HTMLResponse)
    async def upload(request: Request, admin: AdminDep, deps: AppDeps, lang: Lang) -> Response:
        form = await request.form()
        check_csrf(request, _str(form.get(CSRF_FIELD)))
        sent = form.get("file")
        data = await sent.read() if isinstance(sent, UploadFile) else b""
        dry_run = form.get("action") != "apply"
        try:
            report = await run_in_threadpool(run_import, deps, admin, data, dry_run)
        except FileRefused as exc:
            return _page(
                request, deps, lang, admin, "enrol_import.html", 422, report=None,
                problems=[(exc.error, edit.problem_message(exc.error, lang))], notes=[],
                dry_run=dry_run,
            )  # fmt: skip
        except DataKeyError:
            return _page(
                request, deps, lang, admin, "error.html", 503, message=word(lang, "data_key")
            )
        return _page(
            request, deps, lang, admin, "enrol_import.html",
            422 if report.errors else 200, report=report, dry_run=dry_run,
            problems=[(e, edit.problem_message(e, lang)) for e in report.errors],
            notes=[(e, edit.problem_message(e, lang)) for e in report.warnings],
        )  # fmt: skip

    return router


def _str(value: object) -> str | None:
    return value if isinstance(value, str) else None
