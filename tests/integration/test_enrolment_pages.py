"""The enrolment pages on the real app and PostgreSQL: Korean first, English with ?lang=en, the
admin's district only, forms that refuse as a whole and name the field, the list upload."""

from __future__ import annotations

import json
import re

from fastapi.testclient import TestClient

from core.db import Database
from ingest.store import Message, Store
from tests.integration.dashboard_support import csrf_of, login_page
from tests.integration.enrolment_support import (
    DONG_B,
    NOW,
    PASSWORD,
    District,
    count,
    district,
    registry_counts,
    rows,
)

__all__ = ["district"]  # the fixture

FORM = {
    "external_id": "JR-77",
    "display_name": "김순자",
    "birth_year": "1941",
    "address": "서울 종로구 자하문로 1",
    "dong_code": DONG_B,
    "mobile_phone": "010-2345-6789",
    "landline_phone": "",
    "contact1_name": "이민정",
    "contact1_relationship": "딸",
    "contact1_phone": "010-9876-5432",
    "contact1_may_call": "예",
    "consent_date": "2026-11-20",
    "consent_recorded_by": "박관리",
    "consent_sensors": "예",
    "health_notes": "고혈압",
    "access_notes": "경비실 문의",
}
INLINE = re.compile(r"<script(?![^>]*\bsrc=)|\sstyle=|\son[a-z]+=", re.IGNORECASE)


def _browser(d: District, who: str) -> TestClient:
    client = TestClient(d.app)
    login_page(client, who, PASSWORD)
    return client


def test_pages_are_for_the_districts_admin_only(district: District) -> None:
    manager = _browser(district, district.manager)
    page = manager.get("/enrol")
    assert page.status_code == 403
    assert "대상자 등록은 구 시스템 관리자만 할 수 있습니다." in page.text
    assert manager.get("/enrol/import").status_code == 403
    anonymous = TestClient(district.app).get("/enrol", follow_redirects=False)
    assert anonymous.status_code == 303 and anonymous.headers["location"].startswith("/login")

    assert 'href="/enrol"' not in manager.get("/alerts").text
    admin = _browser(district, district.admin)
    assert 'href="/enrol"' in admin.get("/alerts").text  # the admin's menu leads here
    listed = admin.get("/enrol")
    assert listed.status_code == 200
    assert "대상자 등록" in listed.text and "이말순" in listed.text  # dong A, 종로구
    assert "정옥자" not in listed.text  # 중구
    assert "Enrolment" in admin.get("/enrol?lang=en").text
    hidden = admin.get(f"/enrol/residents/{district.resident_c}?lang=ko")
    assert hidden.status_code == 404 and "정옥자" not in hidden.text
    for path in ("/enrol", "/enrol/residents/new", f"/enrol/residents/{district.resident_a}",
                 "/enrol/import"):  # fmt: skip
        html = admin.get(path).text
        assert not INLINE.search(html), path  # the CSP forbids inline scripts, styles, handlers
        assert "/static/enrol.css" in html


def test_a_resident_is_enrolled_and_edited_through_the_form(
    district: District, database: Database
) -> None:
    admin = _browser(district, district.admin)
    page = admin.get("/enrol/residents/new")
    assert page.status_code == 200 and "사례번호" in page.text and "비상연락1 성명" in page.text
    assert "센서 설치 동의" in page.text and "보호자 연락 동의" in page.text  # not the headers
    token = csrf_of(page.text)
    assert admin.post("/enrol/residents", data=FORM).status_code == 403  # no CSRF token

    before = registry_counts(database)
    bad = admin.post(
        "/enrol/residents",
        data={**FORM, "csrf_token": token, "mobile_phone": "010-12", "consent_recorded_by": ""},
    )
    assert bad.status_code == 422
    assert "저장하지 않았습니다" in bad.text
    assert "휴대전화: 전화번호 자릿수가 맞지 않습니다" in bad.text
    assert "동의: 동의한 항목이 있으면" in bad.text
    assert 'value="서울 종로구 자하문로 1"' in bad.text  # what was typed is kept
    assert registry_counts(database) == before

    made = admin.post(
        "/enrol/residents",
        data={**FORM, "csrf_token": token, "care_manager_id": str(district.manager_id)},
        follow_redirects=False,
    )
    assert made.status_code == 303, made.text
    rid = int(made.headers["location"].split("/")[-1].split("?")[0])
    (stored,) = rows(
        database,
        """SELECT dong_code, mobile_phone, care_manager_id, consent_sensors, notes
             FROM anbu.resident WHERE id = %s""",
        (rid,),
    )
    assert stored == (DONG_B, "+821023456789", district.manager_id, True, None)
    edit = admin.get(made.headers["location"])
    assert "저장했습니다." in edit.text and "고혈압" in edit.text
    # phones as Koreans write them (the API keeps E.164), read back unchanged on save
    assert 'value="010-2345-6789"' in edit.text and 'value="010-9876-5432"' in edit.text
    assert "+8210" not in edit.text
    assert "Edit resident" in admin.get(f"/enrol/residents/{rid}?lang=en").text

    changed = admin.post(
        f"/enrol/residents/{rid}",
        data={**FORM, "csrf_token": token, "address": "서울 종로구 사직로 9", "contact1_name": "",
              "contact1_relationship": "", "contact1_phone": "", "contact1_may_call": ""},
        follow_redirects=False,
    )  # fmt: skip
    assert changed.status_code == 303
    assert rows(
        database, "SELECT address, care_manager_id FROM anbu.resident WHERE id = %s", (rid,)
    ) == [("서울 종로구 사직로 9", None)]
    assert count(database, "emergency_contact") == 0
    english = admin.post(
        f"/enrol/residents/{rid}?lang=en", data={**FORM, "csrf_token": token, "dong_code": "999"}
    )
    assert english.status_code == 422 and "dong: is not a registered dong" in english.text


def test_a_homes_gateways_and_sensors_from_the_page(
    district: District, database: Database, unique: str
) -> None:
    admin = _browser(district, district.admin)
    ra = district.resident_a
    token = csrf_of(admin.get(f"/enrol/residents/{ra}").text)
    gw = f"gw-{unique}"
    added = admin.post(
        f"/enrol/residents/{ra}/gateways", data={"csrf_token": token, "gateway_id": gw},
        follow_redirects=False,
    )  # fmt: skip
    assert added.status_code == 200  # its credentials, shown once (test_gateway_credentials)
    assert "지금 한 번만 표시됩니다" in added.text and f"/enrol/residents/{ra}#home" in added.text
    taken = admin.post(
        f"/enrol/residents/{ra}/gateways", data={"csrf_token": token, "gateway_id": gw}
    )
    assert (
        taken.status_code == 422 and "게이트웨이 ID: 이미 등록된 게이트웨이 ID입니다" in taken.text
    )

    reading = {
        "readings": [{"sensor": "pir9", "kind": "motion", "ts": NOW.isoformat(), "value": 1}]
    }
    Store(database).store_batch(
        [Message(f"gw/{gw}/anbu/readings", json.dumps(reading).encode(), received_at=NOW)], NOW
    )
    page = admin.get(f"/enrol/residents/{ra}")
    assert "pir9" in page.text and "센서로 등록" in page.text
    registered = admin.post(
        f"/enrol/gateways/{gw}/sensors",
        data={"csrf_token": token, "vendor_id": "pir9", "kind": "motion", "room": "bedroom"},
        follow_redirects=False,
    )
    assert registered.status_code == 303
    assert rows(database, "SELECT vendor_id, kind, room FROM anbu.sensor") == [
        ("pir9", "motion", "bedroom")
    ]
    assert count(database, "readings") == 1  # its dead letter replayed
    page = admin.get(f"/enrol/residents/{ra}")
    assert "침실" in page.text and "센서로 등록" not in page.text
    sensor = int(rows(database, "SELECT id FROM anbu.sensor")[0][0])
    admin.post(f"/enrol/sensors/{sensor}/remove", data={"csrf_token": token})
    admin.post(f"/enrol/gateways/{gw}/remove", data={"csrf_token": token})
    assert count(database, "sensor") == count(database, "gateway") == 0


HEADER = "사례번호,성명,출생연도,주소,행정동,휴대전화"


def test_upload_dry_run_shows_every_bad_line_then_applies(
    district: District, database: Database
) -> None:
    admin = _browser(district, district.admin)
    token = csrf_of(admin.get("/enrol/import").text)
    bad = f"{HEADER}\nU-1,홍길동,1940,종로 1,청운효자동,010-1111-2222\nU-2,김영희,1940,종로 2,없는동,010-1\nU-3,,1940,종로 3,사직동,010-3333-4444\n"
    before = registry_counts(database)

    def send(data: bytes, action: str) -> str:
        answer = admin.post(
            "/enrol/import",
            data={"csrf_token": token, "action": action},
            files={"file": ("명단.csv", data, "text/csv")},
        )
        return answer.text

    dry = send(bad.encode("cp949"), "dry_run")
    lines = re.findall(
        r'<tr class="bad"><td class="num">(\d+)</td><td>([^<]+)</td><td>([^<]+)</td>', dry
    )
    assert [(n, f) for n, f, _ in lines] == [("3", "행정동"), ("3", "휴대전화"), ("4", "성명")]
    assert "행정동: 등록되지 않은 행정동입니다" in lines[0][2]
    assert "cp949" in dry and "아무것도 저장하지 않았습니다." in dry
    assert "총 3행 ·" in dry  # the rows read, counted as a Korean reader counts them
    send(bad.encode("cp949"), "apply")
    assert registry_counts(database) == before

    good = bad.replace("없는동,010-1", "사직동,010-2222-3333").replace("U-3,,", "U-3,박철수,")
    applied = send(good.encode("utf-8-sig"), "apply")
    assert "저장했습니다." in applied
    assert count(database, "resident") == before[0] + 3
    unknown = send(b"\x00\x81\xff" * 20, "dry_run")
    assert "파일의 문자 인코딩을 알 수 없습니다" in unknown
