"""The enrolment JSON API under /api/v1: residents (POST/PUT/PATCH), their homes' gateways and
sensors, list imports with a dry run; refusals name every field, Korean and English."""

# No `from __future__ import annotations`: FastAPI resolves the Annotated aliases at runtime.
import logging
from collections.abc import Callable
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Query, Request, Security
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, Response
from fastapi.security import OAuth2PasswordBearer

from core.crypto import DataKeyError
from dashboards import idempotency
from dashboards.deps import Deps
from dashboards.enrolment_access import (
    Admin,
    AdminDep,
    AppDeps,
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
    IN_USE_CODES,
    GatewayIn,
    GatewayOut,
    ImportOut,
    RefusedOut,
    ResidentEnrolmentOut,
    ResidentIn,
    ResidentPatch,
    SensorAddedOut,
    SensorIn,
    SensorOut,
    SensorPatch,
    refusal_body,
)
from dashboards.enrolment_text import word
from dashboards.gateway_credentials import (
    NO_STORE,
    GatewayCredentialsOut,
    GatewayIssuedOut,
    RemovedOut,
    credential_word,
    credentials_out,
)
from dashboards.gateway_credentials import issue as issue_gateway
from dashboards.gateway_credentials import remove as remove_home_gateway
from dashboards.gateway_credentials import replace as replace_password
from registry import home_devices as home
from registry import residents_edit as edit
from registry.gateway_accounts import BrokerUnavailable, GatewayStateRefused
from registry.residents_csv import FileRefused, LineError

log = logging.getLogger(__name__)
T = TypeVar("T")

# --- the JSON API ----------------------------------------------------------------------------

_REFUSED = {"model": RefusedOut}
_WRITE_RESPONSES: dict[int | str, dict[str, Any]] = {
    403: {"description": "Not an admin", **_REFUSED},
    404: {"description": "Not in the admin's district", **_REFUSED},
    409: {
        "description": "External id, home, gateway or sensor id already in use; a gateway "
        "removed, revoked or of an ended service",
        **_REFUSED,
    },
    422: {
        "description": "Bad input: every problem, field by field (Korean and English)",
        **_REFUSED,
    },
    503: {
        "description": "Notes cannot be sealed or opened (data key); the MQTT broker cannot "
        "issue a gateway's account (nothing written)",
        **_REFUSED,
    },
}


def _refused(problems: tuple[LineError, ...]) -> JSONResponse:
    status = 409 if any(p.code in IN_USE_CODES for p in problems) else 422
    return JSONResponse(refusal_body(problems), status_code=status)


async def _answer(work: Callable[[], T], ok: Callable[[T], Any]) -> Any:
    """Run `work` off the event loop; its refusals as JSON, its result through `ok`."""
    try:
        result = await run_in_threadpool(work)
    except edit.Refused as exc:
        return _refused(exc.problems)
    except FileRefused as exc:
        return JSONResponse(refusal_body((exc.error,)), status_code=422)
    except GatewayStateRefused as exc:
        return JSONResponse(
            {"detail": exc.message("ko"), "detail_en": exc.message("en"), "errors": []},
            status_code=503 if isinstance(exc, BrokerUnavailable) else 409,
        )
    except DataKeyError:
        log.error("enrolment: notes could not be sealed or opened (data key)")
        return JSONResponse(
            {"detail": word("ko", "data_key"), "detail_en": word("en", "data_key"), "errors": []},
            status_code=503,
        )
    return ok(result)


def enrolment_api_router() -> APIRouter:
    """POST/PUT/PATCH residents, their gateways and sensors, imports; admins of a district."""
    router = APIRouter(prefix="/api/v1", tags=["enrolment"])
    scheme = OAuth2PasswordBearer(tokenUrl="/api/v1/token", auto_error=False)
    secured = [Security(scheme)]

    def card(deps: Deps, request: Request, admin: Admin, rid: int) -> ResidentEnrolmentOut:
        return ResidentEnrolmentOut.of(enrolled_card(deps, request, admin, rid), home_of(deps, rid))

    @router.post(
        "/residents", status_code=201, response_model=ResidentEnrolmentOut,
        dependencies=secured, responses=_WRITE_RESPONSES,
    )  # fmt: skip
    async def create_resident(
        body: ResidentIn, request: Request, admin: AdminDep, deps: AppDeps
    ) -> Any:
        """Enrol a resident in a dong of the admin's district (the external id must be new)."""
        return await _answer(
            lambda: card(
                deps,
                request,
                admin,
                save_resident(deps, admin, body.values(), None, body.care_manager_id),
            ),
            lambda out: JSONResponse(out.model_dump(mode="json"), status_code=201),
        )

    @router.get(
        "/residents/{resident_id}/enrolment", response_model=ResidentEnrolmentOut,
        dependencies=secured, responses=_WRITE_RESPONSES,
    )  # fmt: skip
    async def get_enrolment(
        resident_id: int, request: Request, admin: AdminDep, deps: AppDeps
    ) -> Any:
        """Everything enrolled for a resident, notes opened, with the home's gateways and
        sensors; the read is recorded in the access log."""
        return await _answer(lambda: card(deps, request, admin, resident_id), lambda out: out)

    @router.put(
        "/residents/{resident_id}", response_model=ResidentEnrolmentOut,
        dependencies=secured, responses=_WRITE_RESPONSES,
    )  # fmt: skip
    async def replace_resident(
        resident_id: int, body: ResidentIn, request: Request, admin: AdminDep, deps: AppDeps
    ) -> Any:
        """Replace every enrolled field of a resident (the home stays)."""
        return await _answer(
            lambda: card(
                deps,
                request,
                admin,
                save_resident(deps, admin, body.values(), resident_id, body.care_manager_id),
            ),
            lambda out: out,
        )

    @router.patch(
        "/residents/{resident_id}", response_model=ResidentEnrolmentOut,
        dependencies=secured, responses=_WRITE_RESPONSES,
    )  # fmt: skip
    async def patch_resident(
        resident_id: int, body: ResidentPatch, request: Request, admin: AdminDep, deps: AppDeps
    ) -> Any:
        """Change only the fields sent; the result is checked as a whole resident."""

        def work() -> ResidentEnrolmentOut:
            current = enrolled_card(deps, request, admin, resident_id)
            manager = (
                body.care_manager_id if "care_manager_id" in body.model_fields_set
                else current.care_manager_id
            )  # fmt: skip
            save_resident(deps, admin, body.apply(current.values), resident_id, manager)
            return card(deps, request, admin, resident_id)

        return await _answer(work, lambda out: out)

    @router.post(
        "/residents/import", response_model=ImportOut, dependencies=secured,
        responses=_WRITE_RESPONSES,
        openapi_extra={"requestBody": {"required": True, "content": {
            "text/csv": {"schema": {"type": "string", "format": "binary"}},
            "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
        }}},
    )  # fmt: skip
    async def import_file(
        request: Request,
        admin: AdminDep,
        deps: AppDeps,
        dry_run: Annotated[bool, Query(description="Check every line, write nothing.")] = True,
    ) -> Any:
        """Import an enrolment CSV (UTF-8 with or without BOM, or CP949) as `anbu import
        residents` does, into the admin's district: all or nothing; a known external id
        updates. 200 with the report; `written` is false when any line is bad."""
        data = await request.body()
        return await _answer(
            lambda: run_import(deps, admin, data, dry_run), lambda r: ImportOut.of(r, dry_run)
        )

    @router.post(
        "/residents/{resident_id}/gateways", status_code=201, response_model=GatewayIssuedOut,
        dependencies=secured, responses=_WRITE_RESPONSES,
        openapi_extra=idempotency.WITHHELD,  # the MQTT password is shown once
    )  # fmt: skip
    async def add_gateway(resident_id: int, body: GatewayIn, admin: AdminDep, deps: AppDeps) -> Any:
        """Give the resident's home a gateway (its id must be new) with its MQTT account: the
        answer holds its username and password, shown this once (anbu keeps no copy). The
        broker cannot be told: 503, nothing written."""

        def work() -> GatewayIssuedOut:
            with deps.db.connection() as conn:
                resident_in_district(conn, admin, resident_id)
            made = issue_gateway(deps, admin, resident_id, body.gateway_id)
            creds = credentials_out(deps.settings, made)
            # from what was issued: the gateway may be gone again already (a removal meanwhile)
            shown = next((g for g in home_of(deps, resident_id) if g.id == made.gateway_id), None)
            if shown is None:
                shown = GatewayOut(id=made.gateway_id, online=None, last_seen_at=None,
                                   sensors=[], heard=[])  # fmt: skip
            return GatewayIssuedOut(**shown.model_dump(), credentials=creds)

        return await _answer(
            work,
            lambda out: JSONResponse(
                out.model_dump(mode="json"), status_code=201, headers=NO_STORE
            ),
        )

    @router.post(
        "/gateways/{gateway_id}/credentials", response_model=GatewayCredentialsOut,
        dependencies=secured, responses=_WRITE_RESPONSES,
        openapi_extra=idempotency.WITHHELD,  # the MQTT password is shown once
    )  # fmt: skip
    async def replace_credentials(gateway_id: str, admin: AdminDep, deps: AppDeps) -> Any:
        """A new password for the gateway, shown this once; the old one is refused from now on
        and its open session closed."""

        def work() -> GatewayCredentialsOut:
            with deps.db.connection() as conn:
                gateway_in_district(conn, admin, gateway_id)
            return credentials_out(deps.settings, replace_password(deps, admin, gateway_id))

        return await _answer(
            work, lambda out: JSONResponse(out.model_dump(mode="json"), headers=NO_STORE)
        )

    @router.delete(
        "/gateways/{gateway_id}", status_code=204, response_model=None, dependencies=secured,
        responses={**_WRITE_RESPONSES, 202: {
            "description": "Removed; the broker could not be told, so the revocation of its "
            "account is pending (the nightly job retries it)", "model": RemovedOut}},
    )  # fmt: skip
    async def remove_gateway(gateway_id: str, admin: AdminDep, deps: AppDeps) -> Any:
        """Take a gateway and its sensors out of the registry (readings stay) and revoke its
        MQTT account at once; 202 when the broker cannot be told yet (retried nightly)."""

        def work() -> RemovedOut | None:
            with deps.db.connection() as conn:
                gateway_in_district(conn, admin, gateway_id)
            done = remove_home_gateway(deps, admin, gateway_id)
            if not done.pending:
                return None
            return RemovedOut(
                gateway_id=gateway_id, revocation_pending=True,
                detail=credential_word("ko", "revocation_pending"),
                detail_en=credential_word("en", "revocation_pending"),
            )  # fmt: skip

        return await _answer(
            work,
            lambda out: (
                Response(status_code=204)
                if out is None
                else JSONResponse(out.model_dump(), status_code=202)
            ),
        )

    @router.post(
        "/gateways/{gateway_id}/sensors", status_code=201, response_model=SensorAddedOut,
        dependencies=secured, responses=_WRITE_RESPONSES,
    )  # fmt: skip
    async def add_sensor(gateway_id: str, body: SensorIn, admin: AdminDep, deps: AppDeps) -> Any:
        """Register a sensor on the gateway; a device the gateway was heard reporting is
        registered with what it sent before (its dead letters replayed into the readings)."""

        def work() -> SensorAddedOut:
            sensor_id, replayed = register_sensor(
                deps, admin, gateway_id, body.vendor_id, body.kind, body.room
            )
            return SensorAddedOut(
                **_sensor_out(deps, admin, sensor_id).model_dump(), replayed=replayed
            )

        return await _answer(
            work, lambda out: JSONResponse(out.model_dump(mode="json"), status_code=201)
        )

    @router.patch(
        "/sensors/{sensor_id}", response_model=SensorOut, dependencies=secured,
        responses=_WRITE_RESPONSES,
    )  # fmt: skip
    async def change_sensor(
        sensor_id: int, body: SensorPatch, admin: AdminDep, deps: AppDeps
    ) -> Any:
        """A sensor's kind and room."""

        def work() -> SensorOut:
            with deps.db.connection() as conn:
                sensor_in_district(conn, admin, sensor_id)
                home.change_sensor(conn, sensor_id, body.kind, body.room)
            return _sensor_out(deps, admin, sensor_id)

        return await _answer(work, lambda out: out)

    @router.delete(
        "/sensors/{sensor_id}",
        status_code=204,
        response_model=None,
        dependencies=secured,
        responses=_WRITE_RESPONSES,
    )
    async def remove_sensor(sensor_id: int, admin: AdminDep, deps: AppDeps) -> Any:
        """Take a sensor out of the registry (its readings stay)."""

        def work() -> None:
            with deps.db.connection() as conn:
                sensor_in_district(conn, admin, sensor_id)
                home.remove_sensor(conn, sensor_id)

        return await _answer(work, lambda _: Response(status_code=204))

    return router


def _sensor_out(deps: Deps, admin: Admin, sensor_id: int) -> SensorOut:
    with deps.db.connection() as conn:
        rid = sensor_in_district(conn, admin, sensor_id)
        gateways = home.home_devices(conn, rid)
    return next(SensorOut.of(s) for g in gateways for s in g.sensors if s.id == sensor_id)
