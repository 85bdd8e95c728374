"""What each role sees on the pages, beyond may-or-may-not: where a login lands, which links
the navigation offers, the installer's pages in words rather than codes, and the reassignment
pickers naming dongs and the current assignee. On the real app and PostgreSQL, in the town of
test_roles (every role in 청운효자동, a spare care manager in each dong)."""

from __future__ import annotations

import re

from fastapi.testclient import TestClient

import registry
from registry.residents_edit import care_managers, district_of
from tests.integration import test_roles as roles
from tests.integration.dashboard_support import OPENED_AT, csrf_of, login_page

town = roles.town  # the fixture, under its own name
Town = roles.Town
DONG_A, DONG_B, PASSWORD = roles.DONG_A, roles.DONG_B, roles.PASSWORD
NAV = ("/alerts", "/residents", "/review", "/sites", "/enrol")


def _browser(t: Town, role: str) -> TestClient:
    client = TestClient(t.app)
    login_page(client, t.actors[role], PASSWORD)
    return client


def _nav(html: str) -> set[str]:
    """The links of the page's navigation (the header's <nav>)."""
    nav = html.split("<nav>", 1)[1].split("</nav>", 1)[0]
    return set(re.findall(r'<a href="(/[a-z/]*)"', nav))


def test_a_technician_lands_on_the_sites_and_is_offered_only_what_they_may_open(
    town: Town,
) -> None:
    browser = TestClient(town.app)
    token = csrf_of(browser.get("/login").text)
    landed = browser.post(
        "/login",
        data={"username": town.actors["technician"], "password": PASSWORD, "csrf_token": token},
    )
    assert landed.status_code == 200 and landed.url.path == "/sites"  # not a 403 on /alerts
    assert _nav(landed.text) & set(NAV) == {"/sites"}
    assert '<a class="brand" href="/">' in landed.text
    assert "설치·점검 기사" in landed.text and "관할: 종로구 전체" in landed.text
    refused = browser.get("/alerts")
    assert refused.status_code == 403
    assert "이 계정에는 이 화면을 사용할 권한이 없습니다." in refused.text
    english = browser.get("/alerts?lang=en")
    assert "Your account does not have permission to use this page." in english.text

    offered = {role: _nav(_browser(town, role).get("/account").text) & set(NAV) for role in
               ("manager", "supervisor", "admin")}  # fmt: skip
    assert offered == {
        "manager": {"/alerts", "/residents", "/review", "/sites"},
        "supervisor": {"/alerts", "/residents", "/review"},
        "admin": set(NAV),
    }
    for role, (label, where) in {
        "manager": ("담당자(생활지원사·전담사회복지사)", "담당 행정동: 청운효자동"),
        "supervisor": ("구 통합돌봄 담당자", "관할: 종로구 전체"),
    }.items():
        page = _browser(town, role).get("/account").text
        assert label in page and where in page, role
    for role in ("manager", "supervisor", "admin"):
        landing = _browser(town, role).get("/")
        assert landing.url.path == "/alerts", role


def test_the_installers_pages_name_dongs_kinds_and_rooms(town: Town) -> None:
    b = town.objects(DONG_B)
    with town.db.connection() as conn:
        conn.execute(
            """INSERT INTO anbu.findings (resident_id, kind, severity, raised_at, reason_ko,
                                          reason_en)
               VALUES (%s, 'battery_low', 'watch', %s, '배터리 부족', 'battery low')""",
            (b["resident"], OPENED_AT),
        )
    browser = _browser(town, "technician")
    listing = browser.get("/sites").text
    row = listing.split(f'href="/sites/{b["resident"]}"', 2)[2].split("</tr>", 1)[0]
    assert "<td>사직동</td>" in row and DONG_B not in listing
    assert "배터리 교체" in listing and ">battery_low<" not in listing
    assert "끊긴 게이트웨이" in listing
    page = browser.get(f"/sites/{b['resident']}").text
    assert "<small>(사직동)</small>" in page and DONG_B not in page
    assert "<td>현관문</td><td>현관</td>" in page  # the door sensor of the entrance
    assert ">door<" not in page and ">entrance<" not in page
    assert "배터리 교체" in page and ">battery_low<" not in page
    assert f"{b['gateway']} — 연결 기록 없음" in page  # never heard from
    with town.db.connection() as conn:
        conn.execute(
            "UPDATE anbu.gateway SET online = false, last_seen_at = %s WHERE id = %s",
            (OPENED_AT, b["gateway"]),
        )
    assert f"{b['gateway']} — 연결 끊김" in browser.get(f"/sites/{b['resident']}").text


def test_the_pickers_name_the_dong_and_the_current_assignee(town: Town) -> None:
    b = town.objects(DONG_B)
    spare = town.spare[DONG_B]
    with town.db.connection() as conn:  # an installer of the same dong: nobody to hand work to
        registry.add_care_manager(conn, f"tech-b-{b['serial']}", DONG_B, "설치기사",
                                  "+821000000003", PASSWORD, "technician")  # fmt: skip
    browser = _browser(town, "supervisor")
    for path in (f"/alerts/{b['alert']}", f"/residents/{b['resident']}"):
        page = browser.get(path).text
        assert "현재 담당자: 행정동 공동 담당" in page, path
        assert f'<option value="{spare}">대리 (사직동)</option>' in page, path
        assert "(1111053000)" not in page and "설치기사" not in page, path
    token = csrf_of(page)
    for path in (f"/alerts/{b['alert']}", f"/residents/{b['resident']}"):
        done = browser.post(
            f"{path}/reassign", data={"csrf_token": token, "care_manager_id": str(spare)}
        )
        assert done.status_code == 200, path
        assert "현재 담당자: 대리 (사직동)" in done.text, path
        assert f'<option value="{spare}" selected>대리 (사직동)</option>' in done.text, path
    timeline = browser.get(f"/alerts/{b['alert']}").text
    assert (
        f"담당자 변경: 행정동 공동 담당 → 담당자 #{spare} / "
        f"reassigned: the dong&#39;s care managers → care manager #{spare}"
    ) in timeline
    with town.db.connection() as conn:  # the enrolment form's picker: no technician either
        offered = care_managers(conn, district_of(conn, DONG_A))
        technician = conn.execute(
            "SELECT id FROM anbu.care_manager WHERE username = %s", (town.actors["technician"],)
        ).fetchone()
    assert technician is not None and technician[0] not in {m.id for m in offered}
    assert {(m.id, m.dong_name) for m in offered} >= {(spare, "사직동")}
