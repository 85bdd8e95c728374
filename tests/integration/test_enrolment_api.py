"""The enrolment JSON API on the real app and PostgreSQL: admins of a district only, residents
checked as an enrolment file's rows, refusals named field by field, nothing half-written."""

from __future__ import annotations

import json
from typing import Any

from fastapi.testclient import TestClient

from core.db import Database
from ingest.store import Message, Store
from tests.integration.dashboard_support import bearer
from tests.integration.enrolment_support import (
    DONG_A,
    DONG_B,
    DONG_C,
    NOW,
    PASSWORD,
    District,
    count,
    district,
    registry_counts,
    rows,
)

__all__ = ["district"]  # the fixture

RESIDENT: dict[str, Any] = {
    "external_id": "JR-2026-0001",
    "display_name": "김순자",
    "birth_year": 1941,
    "address": "서울 종로구 자하문로 1",
    "dong": "사직동",  # by name, as districts' sheets write it
    "mobile_phone": "010-2345-6789",
    "landline_phone": "02-734-1234",
    "emergency_contacts": [
        {"name": "이민정", "relationship": "딸", "phone": "010 9876 5432", "may_call": True}
    ],
    "consent": {"date": "2026-11-20", "recorded_by": "박관리", "sensors": True, "calls": True},
    "health_notes": "고혈압 약 복용",
    "access_notes": "현관 비밀번호 1234",
}


def _client(d: District, who: str) -> tuple[TestClient, dict[str, str]]:
    client = TestClient(d.app)
    return client, bearer(client, who, PASSWORD)


def test_only_an_admin_enrols(district: District, database: Database) -> None:
    client, manager = _client(district, district.manager)
    before = registry_counts(database)
    refused = client.post("/api/v1/residents", json=RESIDENT, headers=manager)
    assert refused.status_code == 403, refused.text
    assert refused.json()["detail"] == "대상자 등록은 구 시스템 관리자만 할 수 있습니다."
    assert client.post("/api/v1/residents", json=RESIDENT).status_code == 401
    data = "사례번호,성명,출생연도,주소,행정동,휴대전화\n".encode()
    assert client.post("/api/v1/residents/import", content=data, headers=manager).status_code == 403
    assert registry_counts(database) == before


def test_create_read_patch_and_put_a_resident(district: District, database: Database) -> None:
    client, admin = _client(district, district.admin)
    made = client.post(
        "/api/v1/residents", json={**RESIDENT, "care_manager_id": district.manager_id},
        headers=admin,
    )  # fmt: skip
    assert made.status_code == 201, made.text
    out = made.json()
    assert out["dong_code"] == DONG_B and out["home"] == "JR-2026-0001"
    assert (out["mobile_phone"], out["landline_phone"]) == ("+821023456789", "+8227341234")
    assert out["emergency_contacts"] == [
        {"name": "이민정", "relationship": "딸", "phone": "+821098765432", "may_call": True}
    ]
    assert out["consent"] == {"date": "2026-11-20", "recorded_by": "박관리", "sensors": True,
                              "calls": True, "family": False}  # fmt: skip
    assert out["care_manager_id"] == district.manager_id
    assert out["health_notes"] == "고혈압 약 복용" and out["gateways"] == []
    rid = out["id"]
    # notes sealed at rest: neither note is in any column in the clear
    (stored,) = rows(
        database,
        """SELECT notes, access_notes, notes_sealed IS NOT NULL, access_notes_sealed IS NOT NULL,
                  phone FROM anbu.resident WHERE id = %s""",
        (rid,),
    )
    assert stored == (None, None, True, True, "+821023456789")
    assert b"1234" not in b"".join(
        bytes(r[0])
        for r in rows(
            database, "SELECT access_notes_sealed FROM anbu.resident WHERE id = %s", (rid,)
        )
    )
    audit = rows(
        database,
        "SELECT actor, field, new_value FROM anbu.resident_changes WHERE resident_id = %s ORDER BY id",
        (rid,),
    )
    assert ("web:" + district.admin, "enrolled", "JR-2026-0001") in audit
    assert ("web:" + district.admin, "care_manager_id", str(district.manager_id)) in audit

    # a move to another dong is a transfer (alerts.course): an edit refuses it, writes nothing
    moved = client.patch(
        f"/api/v1/residents/{rid}",
        json={"address": "서울 종로구 사직로 9", "care_manager_id": None, "dong": DONG_A},
        headers=admin,
    )
    assert moved.status_code == 422, moved.text
    assert "'전출입(이관)' 기능" in moved.json()["detail"]
    assert rows(database, "SELECT dong_code FROM anbu.resident WHERE id = %s", (rid,)) == [
        (DONG_B,)
    ]
    patched = client.patch(
        f"/api/v1/residents/{rid}",
        json={"address": "서울 종로구 사직로 9", "care_manager_id": None},
        headers=admin,
    )
    assert patched.status_code == 200, patched.text
    p = patched.json()
    assert (p["address"], p["dong_code"], p["care_manager_id"]) == (
        "서울 종로구 사직로 9",
        DONG_B,
        None,
    )
    assert p["health_notes"] == "고혈압 약 복용" and p["mobile_phone"] == "+821023456789"
    assert len(p["emergency_contacts"]) == 1  # untouched

    put = client.put(
        f"/api/v1/residents/{rid}",
        json={**RESIDENT, "external_id": "JR-2026-0009", "emergency_contacts": [],
              "landline_phone": None, "health_notes": None},
        headers=admin,
    )  # fmt: skip
    assert put.status_code == 200, put.text
    q = put.json()
    assert (q["external_id"], q["home"], q["landline_phone"]) == (
        "JR-2026-0009",
        "JR-2026-0001",
        None,
    )
    assert q["emergency_contacts"] == [] and q["health_notes"] is None
    assert count(database, "emergency_contact") == 0
    got = client.get(f"/api/v1/residents/{rid}/enrolment", headers=admin)
    assert got.json() == q
    read = rows(database, "SELECT view FROM anbu.access_log WHERE resident_id = %s", (rid,))
    assert ("card",) in read


def test_bad_input_names_the_field_and_writes_nothing(
    district: District, database: Database
) -> None:
    client, admin = _client(district, district.admin)
    assert client.post("/api/v1/residents", json=RESIDENT, headers=admin).status_code == 201
    before = registry_counts(database)

    bad_phone = client.post(
        "/api/v1/residents",
        json={**RESIDENT, "external_id": "JR-2", "mobile_phone": "010-12-34",
              "emergency_contacts": [{"name": "a", "phone": "123"}]},
        headers=admin,
    )  # fmt: skip
    assert bad_phone.status_code == 422, bad_phone.text
    body = bad_phone.json()
    fields = {e["field"]: e for e in body["errors"]}
    assert fields["mobile_phone"]["message"] == "휴대전화: 전화번호 자릿수가 맞지 않습니다"
    assert fields["mobile_phone"]["message_en"] == "mobile: has the wrong number of digits"
    assert "contact1_phone" in fields
    assert body["detail"].startswith("휴대전화: ")

    other_district = client.post(
        "/api/v1/residents", json={**RESIDENT, "external_id": "JR-3", "dong": DONG_C}, headers=admin
    )
    assert other_district.status_code == 422
    assert other_district.json()["errors"][0]["message"].startswith("행정동: 등록되지 않은 행정동")

    duplicate = client.post("/api/v1/residents", json=RESIDENT, headers=admin)
    assert duplicate.status_code == 409
    assert duplicate.json()["errors"] == [
        {"line": 0, "field": "external_id", "code": "external_id_taken",
         "message": "사례번호: 이 사례번호(또는 가구ID)는 사용할 수 없습니다. 다른 번호인지 확인해 주세요.",
         "message_en": "external_id: this external id (or home) cannot be used. Please check "
                       "that the number is right."}
    ]  # fmt: skip

    # a PUT that fails part-way (the new external id is free, the manager is not of this
    # district) changes nothing at all
    rid = int(
        rows(database, "SELECT id FROM anbu.resident WHERE external_id = 'JR-2026-0001'")[0][0]
    )
    jung = int(
        rows(database, "SELECT id FROM anbu.care_manager WHERE dong_code = %s", (DONG_C,))[0][0]
    )
    refused = client.put(
        f"/api/v1/residents/{rid}",
        json={**RESIDENT, "external_id": "JR-NEW", "care_manager_id": jung},
        headers=admin,
    )
    assert refused.status_code == 422
    assert [e["field"] for e in refused.json()["errors"]] == ["care_manager_id"]
    too_many = client.patch(
        f"/api/v1/residents/{rid}",
        json={
            "emergency_contacts": [{"name": f"n{i}", "phone": "010-1111-2222"} for i in range(4)]
        },
        headers=admin,
    )
    assert too_many.status_code == 422
    assert too_many.json()["errors"][0]["field"] == "emergency_contacts"
    unreadable = client.post("/api/v1/residents", json={"external_id": 5}, headers=admin)
    assert unreadable.status_code == 422
    assert unreadable.json()["detail"] == "입력값을 읽을 수 없습니다. 형식을 확인해 주세요."
    assert registry_counts(database) == before
    assert rows(database, "SELECT external_id FROM anbu.resident WHERE id = %s", (rid,)) == [
        ("JR-2026-0001",)
    ]


def test_another_districts_objects_are_not_found(district: District, database: Database) -> None:
    client, admin = _client(district, district.admin)
    with database.connection() as conn:
        conn.execute(
            "INSERT INTO anbu.gateway (id, resident_id) VALUES ('gw-jung', %s)",
            (district.resident_c,),
        )
        conn.execute(
            "INSERT INTO anbu.sensor (gateway_id, vendor_id, kind) VALUES ('gw-jung', 'm1', 'motion')"
        )
    sensor = int(rows(database, "SELECT id FROM anbu.sensor")[0][0])
    before = registry_counts(database)
    rc = district.resident_c
    answers = [
        client.get(f"/api/v1/residents/{rc}/enrolment", headers=admin),
        client.put(f"/api/v1/residents/{rc}", json=RESIDENT, headers=admin),
        client.patch(f"/api/v1/residents/{rc}", json={"address": "x"}, headers=admin),
        client.post(f"/api/v1/residents/{rc}/gateways", json={"gateway_id": "gw-x"}, headers=admin),
        client.delete("/api/v1/gateways/gw-jung", headers=admin),
        client.post(
            "/api/v1/gateways/gw-jung/sensors",
            json={"vendor_id": "d", "kind": "door"},
            headers=admin,
        ),
        client.patch(
            f"/api/v1/sensors/{sensor}", json={"kind": "door", "room": "entrance"}, headers=admin
        ),
        client.delete(f"/api/v1/sensors/{sensor}", headers=admin),
        client.get("/api/v1/residents/999999/enrolment", headers=admin),
    ]
    assert [a.status_code for a in answers] == [404] * len(answers)
    assert answers[0].json()["detail"] == "이 구에서 찾을 수 없습니다."
    assert "정옥자" not in "".join(a.text for a in answers)
    assert registry_counts(database) == before
    # the other district's admin reaches them
    client_c, jung = _client(district, district.other_admin)
    assert client_c.delete(f"/api/v1/sensors/{sensor}", headers=jung).status_code == 204


def test_gateways_and_sensors_of_a_home(
    district: District, database: Database, unique: str
) -> None:
    client, admin = _client(district, district.admin)
    ra = district.resident_a
    gw = f"gw-{unique}"
    added = client.post(f"/api/v1/residents/{ra}/gateways", json={"gateway_id": gw}, headers=admin)
    assert added.status_code == 201, added.text
    issued = added.json()
    creds = issued.pop("credentials")  # shown once: test_gateway_credentials
    assert issued == {
        "id": gw,
        "online": None,
        "last_seen_at": None,
        "sensors": [],
        "heard": [],
    }
    assert (creds["username"], creds["topics"]) == (gw, f"gw/{gw}/#")
    # typed by hand into a gateway: no look-alike characters, and no weaker for it (198 bits)
    assert len(creds["password"]) == 34 and not set(creds["password"]) & set("l1IO0-_")
    assert creds["warning"].startswith("이 비밀번호는 지금 한 번만 표시됩니다.")
    again = client.post(f"/api/v1/residents/{ra}/gateways", json={"gateway_id": gw}, headers=admin)
    assert again.status_code == 409
    assert again.json()["errors"][0]["message"].startswith(
        "게이트웨이 ID: 이미 등록된 게이트웨이 ID입니다"
    )
    bad = client.post(
        f"/api/v1/residents/{ra}/gateways", json={"gateway_id": "gw/1"}, headers=admin
    )
    assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "gateway_id"

    # a device the gateway was heard reporting: registered with what it sent before
    reading = {"readings": [{"sensor": "door1", "kind": "door", "ts": NOW.isoformat(), "value": 1}]}
    Store(database).store_batch(
        [Message(f"gw/{gw}/anbu/readings", json.dumps(reading).encode(), received_at=NOW)], NOW
    )
    home = client.get(f"/api/v1/residents/{ra}/enrolment", headers=admin).json()["gateways"]
    assert [d["device"] for d in home[0]["heard"]] == ["door1"]
    door = client.post(
        f"/api/v1/gateways/{gw}/sensors",
        json={"vendor_id": "door1", "kind": "door", "room": "entrance"},
        headers=admin,
    )
    assert door.status_code == 201, door.text
    assert (door.json()["replayed"], door.json()["kind_ko"]) == (1, "현관문")
    assert rows(database, "SELECT value FROM anbu.readings") == [(1.0,)]
    motion = client.post(
        f"/api/v1/gateways/{gw}/sensors",
        json={"vendor_id": "pir-1", "kind": "motion"},
        headers=admin,
    )
    assert motion.status_code == 201 and motion.json()["room"] == "other"
    twice = client.post(
        f"/api/v1/gateways/{gw}/sensors",
        json={"vendor_id": "pir-1", "kind": "motion"},
        headers=admin,
    )
    assert twice.status_code == 409
    assert twice.json()["errors"][0]["field"] == "vendor_id"
    wrong = client.post(
        f"/api/v1/gateways/{gw}/sensors",
        json={"vendor_id": "x", "kind": "window", "room": "garage"},
        headers=admin,
    )
    assert wrong.status_code == 422
    assert [e["message"] for e in wrong.json()["errors"]] == [
        "센서 종류: 센서 종류가 올바르지 않습니다", "방: 방 이름이 올바르지 않습니다",
    ]  # fmt: skip
    sid = motion.json()["id"]
    changed = client.patch(
        f"/api/v1/sensors/{sid}", json={"kind": "motion", "room": "bedroom"}, headers=admin
    )
    assert changed.status_code == 200 and changed.json()["room"] == "bedroom"
    assert client.delete(f"/api/v1/sensors/{sid}", headers=admin).status_code == 204
    assert client.delete(f"/api/v1/gateways/{gw}", headers=admin).status_code == 204
    assert count(database, "sensor") == count(database, "gateway") == 0
    assert count(database, "readings") == 1  # history stays


CSV_HEADER = "사례번호,성명,출생연도,주소,행정동,휴대전화,집전화,비상연락1 성명,비상연락1 전화"


def test_import_dry_run_reports_every_bad_line_then_applies(
    district: District, database: Database
) -> None:
    client, admin = _client(district, district.admin)
    bad = "\n".join([
        CSV_HEADER,
        "C-1,홍길동,1940,서울 종로구 1,청운효자동,010-1111-2222,,,",
        "C-2,김영희,19x0,서울 종로구 2,소공동,010-12,,아들,",
        "C-3,박철수,1938,서울 종로구 3,사직동,,02-111-2222,,",
    ]).encode("cp949")  # fmt: skip
    before = registry_counts(database)
    dry = client.post("/api/v1/residents/import?dry_run=true", content=bad, headers=admin)
    assert dry.status_code == 200, dry.text
    report = dry.json()
    assert (report["encoding"], report["written"], report["dry_run"]) == ("cp949", False, True)
    assert {(e["line"], e["field"]) for e in report["errors"]} == {
        (3, "birth_year"), (3, "dong_code"), (3, "mobile_phone"), (3, "contact1_phone"),
    }  # fmt: skip
    assert all(e["message"] and e["message_en"] for e in report["errors"])
    refused = client.post("/api/v1/residents/import?dry_run=false", content=bad, headers=admin)
    assert refused.json()["written"] is False
    assert registry_counts(database) == before

    good = bad.decode("cp949").replace("C-2,김영희,19x0,서울 종로구 2,소공동,010-12,,아들,",
                                        "C-2,김영희,1930,서울 종로구 2,사직동,010-1234-5678,,,")  # fmt: skip
    data = "\ufeff".encode() + good.encode()  # UTF-8 with BOM, as Excel's 'CSV UTF-8'
    applied = client.post("/api/v1/residents/import?dry_run=false", content=data, headers=admin)
    assert applied.json()["created"] == 3 and applied.json()["written"] is True
    again = client.post("/api/v1/residents/import?dry_run=false", content=data, headers=admin)
    assert (again.json()["unchanged"], again.json()["written"]) == (3, False)

    unknown = client.post(
        "/api/v1/residents/import", content=b"\x00\xff\xfe\x81" * 10, headers=admin
    )
    assert unknown.status_code == 422
    assert unknown.json()["errors"][0]["field"] == "file"
    assert unknown.json()["detail"].startswith("파일: ")


def test_import_cannot_reach_another_district(district: District, database: Database) -> None:
    client_c, jung = _client(district, district.other_admin)
    made = client_c.post(
        "/api/v1/residents",
        json={**RESIDENT, "external_id": "JUNG-1", "dong": DONG_C},
        headers=jung,
    )
    assert made.status_code == 201, made.text
    client, admin = _client(district, district.admin)
    data = f"{CSV_HEADER}\nJUNG-1,남의주민,1940,서울 종로구 1,{DONG_A},010-1111-2222,,,\n".encode()
    report = client.post(
        "/api/v1/residents/import?dry_run=false", content=data, headers=admin
    ).json()
    assert report["written"] is False
    # the answer names no district (test_enrolment_oracles: the same as an ended service's)
    assert [(e["line"], e["code"]) for e in report["errors"]] == [(2, "external_id_taken")]
    assert rows(database, "SELECT dong_code FROM anbu.resident WHERE external_id = 'JUNG-1'") == [
        (DONG_C,)
    ]


def test_openapi_documents_the_enrolment_api(district: District) -> None:
    spec = TestClient(district.app).get("/openapi.json").json()
    paths = spec["paths"]
    assert {"post"} <= set(paths["/api/v1/residents"])
    assert {"put", "patch"} <= set(paths["/api/v1/residents/{resident_id}"])
    assert "post" in paths["/api/v1/residents/import"]
    assert "text/csv" in paths["/api/v1/residents/import"]["post"]["requestBody"]["content"]
    assert "delete" in paths["/api/v1/gateways/{gateway_id}"]
    assert {"patch", "delete"} <= set(paths["/api/v1/sensors/{sensor_id}"])
    schemas = spec["components"]["schemas"]
    assert {"ResidentIn", "ResidentPatch", "ResidentEnrolmentOut", "ImportOut", "RefusedOut",
            "SensorIn", "GatewayIn"} <= set(schemas)  # fmt: skip
    assert schemas["SensorIn"]["properties"]["kind"]["enum"] == [
        "door", "motion", "contact", "appliance", "power",
        "button", "smoke", "gas", "co", "water_leak", "tamper",
    ]  # fmt: skip
    refusal = paths["/api/v1/residents"]["post"]["responses"]["409"]
    problem, own = refusal["content"]["application/problem+json"]["schema"]["allOf"]
    assert problem["$ref"].endswith("/Problem") and own["$ref"].endswith("RefusedOut")
    assert DONG_B  # the other dong of the district exists for the tests above
