"""What the enrolment API takes and gives: a resident as districts record one, their home's
gateways and sensors, an import's report. Bodies are read loosely and checked by the registry,
so every refusal names its field in Korean (and English), as an enrolment file's would."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from pydantic import BaseModel, Field

from core.domain import SensorKind
from dashboards.enrolment_text import kind_label
from dashboards.schemas import HeardDeviceOut
from registry.enrolment import ROOMS
from registry.home_devices import GatewayView, SensorView
from registry.residents_csv import LineError
from registry.residents_edit import Enrolled, problem_message
from registry.residents_import import ImportReport
from registry.residents_text import CONTACT_SLOTS

KINDS = tuple(k.value for k in SensorKind)


def _enum(values: tuple[str, ...]) -> dict[str, Any]:
    """A string field's allowed values, documented in OpenAPI but checked by the registry, so
    a wrong one is refused in the registry's words."""
    return {"enum": list(values)}


_YES = "예"


class ContactIn(BaseModel):
    name: str = Field(max_length=100, description="Personal data.")
    relationship: str = Field(default="", max_length=50, description="아들, 딸, 이웃 ...")
    phone: str = Field(description="Korean format (010-1234-5678) or E.164.")
    may_call: bool = Field(default=False, description="Consented to be called about the resident.")


class ConsentIn(BaseModel):
    date: str | None = Field(default=None, description="When consent was given: 2026-03-15.")
    recorded_by: str | None = Field(default=None, description="Who recorded it.")
    sensors: bool = Field(default=False, description="Sensors in the home.")
    calls: bool = Field(default=False, description="Check-in calls.")
    family: bool = Field(default=False, description="Contacting family.")


class ResidentIn(BaseModel):
    """A resident as enrolled: every field (PUT replaces all, POST creates)."""

    external_id: str = Field(description="The city's case number (사례번호); unique.")
    display_name: str = Field(description="Name (personal data).")
    birth_year: int | str = Field(description="Four-digit year.")
    address: str
    dong: str = Field(description="A dong of the admin's district: its code or its name.")
    mobile_phone: str | None = Field(default=None, description="010-1234-5678 or +821012345678.")
    landline_phone: str | None = Field(default=None, description="02-123-4567 or E.164.")
    home: str | None = Field(default=None, description="Home id (default: the external id).")
    emergency_contacts: list[ContactIn] = Field(default_factory=list, description="1 is first.")
    care_manager_id: int | None = Field(default=None, description="Assigned care manager.")
    consent: ConsentIn = Field(default_factory=ConsentIn)
    health_notes: str | None = Field(default=None, description="Sealed at rest.")
    access_notes: str | None = Field(default=None, description="Sealed at rest.")

    def values(self) -> dict[str, str]:
        """The fields as an enrolment file's row gives them."""
        return {
            "external_id": self.external_id,
            "display_name": self.display_name,
            "birth_year": str(self.birth_year),
            "address": self.address,
            "dong_code": self.dong,
            "mobile_phone": self.mobile_phone or "",
            "landline_phone": self.landline_phone or "",
            **({"home": self.home} if self.home else {}),
            **consent_values(self.consent),
            "health_notes": self.health_notes or "",
            "access_notes": self.access_notes or "",
            **contact_values(self.emergency_contacts),
        }


class ConsentPatch(BaseModel):
    date: str | None = None
    recorded_by: str | None = None
    sensors: bool | None = None
    calls: bool | None = None
    family: bool | None = None


class ResidentPatch(BaseModel):
    """Only the fields sent change; null clears an optional one."""

    external_id: str | None = None
    display_name: str | None = None
    birth_year: int | str | None = None
    address: str | None = None
    dong: str | None = None
    mobile_phone: str | None = None
    landline_phone: str | None = None
    emergency_contacts: list[ContactIn] | None = None
    care_manager_id: int | None = None
    consent: ConsentPatch | None = None
    health_notes: str | None = None
    access_notes: str | None = None

    def apply(self, values: dict[str, str]) -> dict[str, str]:
        """`values` with this patch laid over them."""
        sent = self.model_fields_set
        out = dict(values)
        simple = {"external_id", "display_name", "birth_year", "address", "mobile_phone",
                  "landline_phone", "health_notes", "access_notes"}  # fmt: skip
        for name in sent & simple:
            value = getattr(self, name)
            out[name] = "" if value is None else str(value)
        if "dong" in sent:
            out["dong_code"] = self.dong or ""
        if "emergency_contacts" in sent:
            out |= contact_values(self.emergency_contacts or [])
        if "consent" in sent and self.consent is not None:
            for name in self.consent.model_fields_set:
                value = getattr(self.consent, name)
                key = "consent_" + name
                out[key] = _yes_no(value) if isinstance(value, bool) else (value or "")
        return out


def _yes_no(value: bool) -> str:
    return _YES if value else "아니오"


def consent_values(c: ConsentIn) -> dict[str, str]:
    return {
        "consent_date": c.date or "",
        "consent_recorded_by": c.recorded_by or "",
        "consent_sensors": _yes_no(c.sensors),
        "consent_calls": _yes_no(c.calls),
        "consent_family": _yes_no(c.family),
    }


def contact_values(contacts: list[ContactIn]) -> dict[str, str]:
    """contactN_* values, every slot (empty ones clear); more than the slots is refused later."""
    out: dict[str, str] = {}
    for n in range(1, max(CONTACT_SLOTS, len(contacts)) + 1):
        c = contacts[n - 1] if n <= len(contacts) else None
        out[f"contact{n}_name"] = c.name if c else ""
        out[f"contact{n}_relationship"] = c.relationship if c else ""
        out[f"contact{n}_phone"] = c.phone if c else ""
        out[f"contact{n}_may_call"] = _yes_no(c.may_call) if c else ""
    return out


class ContactOut(BaseModel):
    name: str
    relationship: str
    phone: str = Field(description="E.164")
    may_call: bool


class ConsentOut(BaseModel):
    date: date | None
    recorded_by: str | None
    sensors: bool
    calls: bool
    family: bool


class SensorOut(BaseModel):
    id: int
    gateway_id: str
    vendor_id: str
    kind: str = Field(json_schema_extra=_enum(KINDS))
    kind_ko: str
    room: str = Field(json_schema_extra=_enum(ROOMS))

    @classmethod
    def of(cls, s: SensorView) -> SensorOut:
        return cls(
            id=s.id, gateway_id=s.gateway_id, vendor_id=s.vendor_id, kind=s.kind,
            kind_ko=kind_label("ko", s.kind), room=s.room,
        )  # fmt: skip


class GatewayOut(BaseModel):
    id: str
    online: bool | None
    last_seen_at: datetime | None
    sensors: list[SensorOut]
    heard: list[HeardDeviceOut] = Field(description="Devices heard on it with no sensor yet.")

    @classmethod
    def of(cls, g: GatewayView, heard: list[HeardDeviceOut]) -> GatewayOut:
        return cls(
            id=g.id, online=g.online, last_seen_at=g.last_seen_at,
            sensors=[SensorOut.of(s) for s in g.sensors], heard=heard,
        )  # fmt: skip


class ResidentEnrolmentOut(BaseModel):
    """A resident as enrolled, notes opened (the read is recorded in the access log)."""

    id: int
    home: str
    external_id: str | None
    display_name: str
    birth_year: int | None
    address: str | None
    dong_code: str
    mobile_phone: str | None
    landline_phone: str | None
    emergency_contacts: list[ContactOut]
    care_manager_id: int | None
    consent: ConsentOut
    health_notes: str | None
    access_notes: str | None
    gateways: list[GatewayOut]

    @classmethod
    def of(cls, e: Enrolled, gateways: list[GatewayOut]) -> ResidentEnrolmentOut:
        v = e.values
        contacts = [
            ContactOut(
                name=v[f"contact{n}_name"], relationship=v[f"contact{n}_relationship"],
                phone=v[f"contact{n}_phone"], may_call=v[f"contact{n}_may_call"] == _YES,
            )
            for n in range(1, CONTACT_SLOTS + 1)
            if v.get(f"contact{n}_name")
        ]  # fmt: skip
        return cls(
            id=e.id, home=e.home, external_id=v["external_id"] or None,
            display_name=v["display_name"],
            birth_year=int(v["birth_year"]) if v["birth_year"] else None,
            address=v["address"] or None, dong_code=v["dong_code"],
            mobile_phone=v["mobile_phone"] or None, landline_phone=v["landline_phone"] or None,
            emergency_contacts=contacts, care_manager_id=e.care_manager_id,
            consent=ConsentOut(
                date=date.fromisoformat(v["consent_date"]) if v["consent_date"] else None,
                recorded_by=v["consent_recorded_by"] or None,
                sensors=v["consent_sensors"] == _YES, calls=v["consent_calls"] == _YES,
                family=v["consent_family"] == _YES,
            ),
            health_notes=v["health_notes"] or None, access_notes=v["access_notes"] or None,
            gateways=gateways,
        )  # fmt: skip


class GatewayIn(BaseModel):
    gateway_id: str = Field(description="Its MQTT username: letters, digits, _.:- (64 at most).")


class SensorIn(BaseModel):
    vendor_id: str = Field(
        description="The id the gateway publishes; a device heard on the gateway is registered "
        "with what it sent before (its dead letters are replayed)."
    )
    kind: str = Field(json_schema_extra=_enum(KINDS))
    room: str = Field(default="other", json_schema_extra=_enum(ROOMS))


class SensorPatch(BaseModel):
    kind: str = Field(json_schema_extra=_enum(KINDS))
    room: str = Field(json_schema_extra=_enum(ROOMS))


class SensorAddedOut(SensorOut):
    replayed: int = Field(default=0, description="Earlier readings of a heard device stored.")


class ProblemOut(BaseModel):
    """One bad cell or field: the file's row (0 for a page or the API), field, reason."""

    line: int
    field: str
    code: str = Field(description="Reason code, stable for programs.")
    message: str = Field(description="Korean: `field: reason`.")
    message_en: str

    @classmethod
    def of(cls, e: LineError) -> ProblemOut:
        return cls(
            line=e.line, field=e.field, code=e.code,
            message=problem_message(e, "ko"), message_en=problem_message(e, "en"),
        )  # fmt: skip


class RefusedOut(BaseModel):
    detail: str
    detail_en: str
    errors: list[ProblemOut]


class ImportOut(BaseModel):
    """What an import did or, with dry_run, would do; errors name every bad line."""

    dry_run: bool
    encoding: str
    rows: int
    created: int
    updated: int
    unchanged: int
    written: bool
    errors: list[ProblemOut]
    warnings: list[ProblemOut]

    @classmethod
    def of(cls, r: ImportReport, dry_run: bool) -> ImportOut:
        return cls(
            dry_run=dry_run, encoding=r.encoding, rows=r.rows, created=r.created,
            updated=r.updated, unchanged=r.unchanged, written=r.written,
            errors=[ProblemOut.of(e) for e in r.errors],
            warnings=[ProblemOut.of(e) for e in r.warnings],
        )  # fmt: skip


# reasons that mean "already someone else's": 409 instead of 422
IN_USE_CODES = frozenset({"external_id_taken", "home_taken_new", "gateway_taken", "sensor_taken",
                          "home_taken"})  # fmt: skip


def refusal_body(problems: tuple[LineError, ...]) -> dict[str, Any]:
    """The JSON of a refusal: the first problem as the detail, every problem listed."""
    first = problems[0] if problems else None
    return RefusedOut(
        detail=problem_message(first, "ko") if first else "입력을 고쳐 주세요.",
        detail_en=problem_message(first, "en") if first else "Please correct the input.",
        errors=[ProblemOut.of(p) for p in problems],
    ).model_dump()
