"""The demo town enrolled the way a district enrols its residents: from its file, through the import.

`data/demo_town.csv` is the demo district's enrolment sheet, in the columns `anbu import
residents` reads (a title row above the header, as districts' sheets have): characters of Korean
folk tales, so nobody real; mobile numbers 010-1000-xxxx (emergency contacts 010-1500-xxxx), in
the block of middle digits 0000-1999 that is never given to carriers (010-1121 would dial 112),
so no number rings a real person, yet each passes the import's checks; addresses in the demo's
dongs; consent and emergency contacts filled in. Its 12 rows alternate 청운효자동 and 사직동, as
the demo's cast expects. Asked for more homes than it holds, `town_file` appends rows made from
the row number alone (deterministic: same columns, same kinds of values, numbers from the same
blocks), and they go through the same import. Each home's gateway and sensors are then enrolled
with `registry.home_devices`, as the enrolment page does: its activity sensors, a pendant
button and a kitchen smoke detector. Nothing here writes a resident row.
"""

from __future__ import annotations

import csv
import io
import random
import secrets
from collections.abc import Mapping, Sequence
from datetime import date
from pathlib import Path
from typing import Any

import psycopg

import registry
from core.crypto import Keyring
from registry.home_devices import add_home_gateway, add_home_sensor, home_devices
from registry.residents_csv import Dongs, LineError, parse_file
from registry.residents_edit import Refused
from registry.residents_import import import_residents
from registry.residents_text import HEADER_INDEX, header_key
from simulators.routines import SAFETY_SENSORS, HomeSpec, default_sensors

TOWN_FILE = Path(__file__).with_name("data") / "demo_town.csv"
ACTOR = "anbu demo"  # who the import's audit names
RESIDENT_BLOCK = 1000  # 010-1000-0001: middle digits 1000-1499 for residents
CONTACT_BLOCK = 1500  # 010-1500-0001: 1500-1999 for their emergency contacts
MAX_HOMES = 5_000_000  # numbers each block holds
_HEADER_SEARCH = 10  # as the import: the header is among the top rows

# the generated rows' dongs (by name, as the file writes them) and streets, cycling like the file
_DONGS = ("청운효자동", "사직동")
_STREETS = {
    "청운효자동": ("자하문로", "창의문로", "효자로", "옥인길"),
    "사직동": ("사직로", "인왕산로", "경희궁1가길", "필운대로"),
}
_RELATIONSHIPS = ("딸", "아들", "조카", "며느리", "이웃")


class TownRefused(ValueError):
    """The town's file (or a home's devices) refused by the enrolment's checks."""

    def __init__(self, problems: Sequence[LineError]) -> None:
        self.problems = tuple(problems)
        super().__init__(self.message())

    def message(self, lang: str = "ko") -> str:
        row = "{line}행" if lang == "ko" else "row {line}"
        return "; ".join(
            (f"{row.format(line=p.line)} · " if p.line else "") + p.message(lang)
            for p in self.problems
        )


def town_file(homes: int, source: Path = TOWN_FILE) -> bytes:
    """The enrolment file of a town of `homes` homes (UTF-8): the first `homes` rows of the
    repository's file, then generated rows in the same columns when it holds fewer."""
    if not 1 <= homes <= MAX_HOMES:
        raise ValueError(f"집 수는 1부터 {MAX_HOMES}까지입니다 (homes must be 1 to {MAX_HOMES})")
    records = list(csv.reader(io.StringIO(source.read_text("utf-8-sig"), newline="")))
    at = max(
        range(min(len(records), _HEADER_SEARCH)),
        key=lambda i: sum(header_key(c) in HEADER_INDEX for c in records[i]),
    )
    header = records[at]
    rows = [r for r in records[at + 1 :] if any(c.strip() for c in r)]
    fields = [HEADER_INDEX.get(header_key(h), "") for h in header]
    made = [[_generated(n).get(f, "") for f in fields] for n in range(len(rows) + 1, homes + 1)]
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerows([*records[: at + 1], *rows[:homes], *made])
    return out.getvalue().encode("utf-8")


def _phone(block: int, n: int) -> str:
    return f"010-{block + n // 10_000}-{n % 10_000:04d}"


def _generated(n: int) -> dict[str, str]:
    """Row `n` of the town beyond the file, by field: fictitious, a function of `n` only."""
    dong = _DONGS[(n - 1) % len(_DONGS)]
    streets = _STREETS[dong]
    return {
        "external_id": f"JN-DEMO-{n:04d}",
        "display_name": f"가상주민{n:04d}",
        "birth_year": str(1930 + (n * 7) % 22),
        "address": f"서울특별시 종로구 {streets[n % len(streets)]} {1 + n % 97}",
        "dong_code": dong,
        "mobile_phone": _phone(RESIDENT_BLOCK, n),
        "home": f"home{n:03d}",
        "consent_date": "2025-11-12",
        "consent_recorded_by": f"{dong} 맞춤돌봄 담당",
        "consent_sensors": "예",
        "consent_calls": "예",
        "consent_family": "예" if n % 4 else "아니오",
        "contact1_name": f"가상가족{n:04d}",
        "contact1_relationship": _RELATIONSHIPS[n % len(_RELATIONSHIPS)],
        "contact1_phone": _phone(CONTACT_BLOCK, n),
        "contact1_may_call": "예" if n % 4 else "아니오",
    }


def homes_of_file(
    data: bytes, seed: int, dongs: Mapping[str, tuple[str, str]], today: date
) -> list[HomeSpec]:
    """The simulated homes of the town's file, checked as the import checks it: each row's
    home, dong, name and phone (as it will be stored); its gateway and usual sensors."""
    parsed = parse_file(data, Dongs.of((code, name) for code, (name, _) in dongs.items()), today)
    if parsed.errors:
        raise TownRefused(parsed.errors)
    specs = []
    for row in parsed.rows:
        home = row.home or row.external_id
        phone = row.mobile_phone or row.landline_phone
        assert phone is not None  # the file's check wants one
        specs.append(
            HomeSpec(
                home=home,
                gateway_id=f"gw-{home}",
                gateway_password=secrets.token_urlsafe(12),
                dong_code=row.dong_code,
                display_name=row.display_name,
                phone=phone,
                # and the emergency-safety service's pendant and kitchen smoke detector
                sensors=default_sensors(random.Random(f"{seed}:{home}:sensors")) + SAFETY_SENSORS,
            )
        )
    return specs


def enrol_town(
    conn: psycopg.Connection[Any],
    data: bytes,
    homes: Sequence[HomeSpec],
    dongs: Mapping[str, tuple[str, str]],
    *,
    keyring: Keyring | None,
) -> dict[str, int]:
    """Enrol the town: its dongs, the residents through `import_residents` (all or nothing),
    then each home's gateway and sensors as an admin adds them; resident id by home.

    Idempotent: a second run finds the residents unchanged and adds no device twice.
    TownRefused when the import or a device is refused.
    """
    for code in sorted({h.dong_code for h in homes}):
        name, district = dongs.get(code, (code, ""))
        registry.add_dong(conn, code, name, district)
    report = import_residents(conn, data, actor=ACTOR, keyring=keyring)
    if report.errors:
        raise TownRefused(report.errors)
    ids = {
        str(home): int(rid)
        for home, rid in conn.execute(
            "SELECT home, id FROM anbu.resident WHERE home = ANY(%s)", ([h.home for h in homes],)
        )
    }
    try:
        for h in homes:
            have = {g.id: {s.vendor_id for s in g.sensors} for g in home_devices(conn, ids[h.home])}
            if h.gateway_id not in have:
                add_home_gateway(conn, ids[h.home], h.gateway_id)
            for s in h.sensors:
                if s.vendor_id not in have.get(h.gateway_id, set()):
                    add_home_sensor(conn, h.gateway_id, s.vendor_id, s.kind.value, s.room)
    except Refused as refused:
        raise TownRefused(refused.problems) from None
    return ids
