"""Who may enrol, and what the enrolment pages and API both do.

Only role `admin` (403 otherwise), and every object is looked up within the dongs of the admin's
district (another district's is a 404). A resident is checked as an enrolment file's row and
written by the import's own functions (registry.residents_edit, registry.residents_import).
"""

# No `from __future__ import annotations`: FastAPI resolves the Annotated aliases at runtime.
import logging
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, Request

from core.crypto import Keyring
from dashboards import residents
from dashboards.auth import CareManager
from dashboards.authz import Action, may
from dashboards.deps import Deps, api_manager, get_deps, language, page_manager
from dashboards.enrolment_schemas import GatewayOut
from dashboards.schemas import HeardDeviceOut
from ingest import devices
from registry import home_devices as home
from registry import residents_edit as edit
from registry.residents_import import ImportReport, import_residents

log = logging.getLogger(__name__)

CARD_FIELDS = ("name", "contacts", "health_notes", "access_notes")


class EnrolmentDenied(Exception):
    """Refused before any work: 403 (not an admin) or 404 (not in the admin's district)."""

    def __init__(self, status: int, key: str) -> None:
        super().__init__(key)
        self.status = status
        self.key = key


@dataclass(frozen=True, slots=True)
class Admin:
    """A district's admin and the dongs they enrol in."""

    manager: CareManager
    district: edit.District

    @property
    def actor(self) -> str:
        return f"web:{self.manager.username}"


def require_admin(request: Request) -> Admin:
    """The logged-in care manager if their role is admin (403 otherwise), with their district."""
    is_api = request.url.path.startswith("/api/")
    manager = api_manager(request) if is_api else page_manager(request)
    if not may(manager, Action.ENROL):
        raise EnrolmentDenied(403, "admin_only")
    with get_deps(request).db.connection() as conn:
        district = edit.district_of(conn, manager.dong_code)
    return Admin(manager, district)


AdminDep = Annotated[Admin, Depends(require_admin)]
AppDeps = Annotated[Deps, Depends(get_deps)]
Lang = Annotated[str, Depends(language)]


def keyring_of(deps: Deps) -> Keyring | None:
    return Keyring.from_settings(deps.settings) if deps.settings.data_key else None


def _in_district(found: tuple[int, str] | str | None, admin: Admin) -> int | None:
    """The resident id (or None) of a lookup, 404 unless it lies in the admin's district."""
    dong = found if isinstance(found, str) or found is None else found[1]
    if dong is None or dong not in admin.district.codes:
        raise EnrolmentDenied(404, "not_in_district")
    return found[0] if isinstance(found, tuple) else None


def resident_in_district(conn: Any, admin: Admin, resident_id: int) -> None:
    _in_district(edit.resident_dong(conn, resident_id), admin)


def gateway_in_district(conn: Any, admin: Admin, gateway_id: str) -> int:
    rid = _in_district(edit.gateway_dong(conn, gateway_id), admin)
    assert rid is not None
    return rid


def sensor_in_district(conn: Any, admin: Admin, sensor_id: int) -> int:
    rid = _in_district(edit.sensor_dong(conn, sensor_id), admin)
    assert rid is not None
    return rid


# --- what both the pages and the API do ------------------------------------------------------


def save_resident(
    deps: Deps,
    admin: Admin,
    values: dict[str, str],
    resident_id: int | None,
    manager_id: int | None,
) -> int:
    with deps.db.connection() as conn:
        if resident_id is not None:
            resident_in_district(conn, admin, resident_id)
        return edit.save_resident(
            conn, values, district=admin.district, actor=admin.actor, resident_id=resident_id,
            care_manager_id=manager_id, now=deps.clock.now(), keyring=keyring_of(deps),
        )  # fmt: skip


def register_sensor(
    deps: Deps, admin: Admin, gateway_id: str, vendor_id: str, kind: str, room: str
) -> tuple[int, int]:
    """(sensor id, readings replayed): a heard device through ingest's register_device, which
    replays its dead letters; any other id registered as given."""
    with deps.db.connection() as conn:
        gateway_in_district(conn, admin, gateway_id)
        vendor_id, sensor_kind, room = home.check_sensor(conn, gateway_id, vendor_id, kind, room)
        heard = home.is_heard(conn, gateway_id, vendor_id)
        if not heard:
            return home.add_home_sensor(conn, gateway_id, vendor_id, kind, room), 0
    done = devices.register_device(
        deps.db, gateway_id, vendor_id, sensor_kind, room, deps.clock.now(),
        future_tolerance_s=deps.settings.future_tolerance_s,
    )  # fmt: skip
    return done.sensor_id, done.replay.replayed


def run_import(deps: Deps, admin: Admin, data: bytes, dry_run: bool) -> ImportReport:
    with deps.db.connection() as conn:
        return import_residents(
            conn, data, actor=admin.actor, dry_run=dry_run, now=deps.clock.now(),
            keyring=keyring_of(deps), dongs=admin.district.lookup(),
        )  # fmt: skip


def home_of(deps: Deps, resident_id: int) -> list[GatewayOut]:
    with deps.db.connection() as conn:
        gateways = home.home_devices(conn, resident_id)
    return [
        GatewayOut.of(
            g,
            [
                HeardDeviceOut.of(d)
                for d in devices.list_heard_devices(deps.db, g.id, include_removed=False)
            ],
        )
        for g in gateways
    ]


def enrolled_card(deps: Deps, request: Request, admin: Admin, resident_id: int) -> edit.Enrolled:
    """A resident's values with notes opened; the read is recorded in the access log."""
    with deps.db.connection() as conn:
        resident_in_district(conn, admin, resident_id)
        found = edit.enrolled(conn, resident_id, keyring_of(deps))
        residents.record_read(conn, request, admin.manager, resident_id, "card", CARD_FIELDS)
    return found
