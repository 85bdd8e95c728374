"""Logins a city's security review accepts, through the real app on real PostgreSQL: sessions
and tokens end on logout and password change and after an absolute lifetime, logout is a
CSRF-checked POST, failed logins lock out alike for known and unknown names, weak passwords are
refused in Korean first, and supervisors can require a TOTP code."""

from __future__ import annotations

import base64
import hashlib
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

import registry
from alerts.policy import EscalationPolicy
from alerts.service import AlertService
from core.clock import VirtualClock
from core.config import Settings
from core.crypto import Keyring, new_key
from core.db import Database
from dashboards import totp
from dashboards.app import create_app
from registry.key_rotation import rotate_keys
from tests.integration.dashboard_support import DONG_A, RecordingTelephony, csrf_of

PASSWORD = "청운동-돌봄-2026-봄"
SUPERVISOR_PASSWORD = "종로구-통합돌봄-감독관-2026"
NEW_PASSWORD = "새-비밀번호-바꿨어요-7"
START = datetime(2026, 12, 5, 0, 0, 7, tzinfo=UTC)
DATA_KEY = "Zq3xv0m8nYlB2-4kPcW7tRfE1uJ9sAhG6dLoQyT5iVM="  # test only


@dataclass(frozen=True)
class Site:
    app: FastAPI
    clock: VirtualClock  # the web app's clock: sessions, lockouts, TOTP steps
    manager: str
    supervisor: str
    manager_id: int


def _app(
    database: Database, db_url: str, unique: str, clock: VirtualClock, **extra: object
) -> FastAPI:
    settings = Settings.model_validate(
        {"database_url": db_url, "session_secret": f"test-secret-{unique}-{'x' * 24}", **extra}
    )
    alerts = AlertService(
        database, RecordingTelephony(), EscalationPolicy(), VirtualClock(START), "http://t.test"
    )
    return create_app(database, settings, alerts, auth_clock=clock)


@pytest.fixture
def site(database: Database, db_url: str, unique: str) -> Iterator[Site]:
    with database.connection() as conn:
        registry.add_dong(conn, DONG_A, "청운효자동", "종로구")
        manager_id = registry.enrol_care_manager(
            conn, f"kim{unique}", DONG_A, "김복지", "+821000000001", PASSWORD
        )
        registry.enrol_care_manager(
            conn, f"sup{unique}", DONG_A, "박감독", "+821000000002", SUPERVISOR_PASSWORD,
            "supervisor",
        )  # fmt: skip
    clock = VirtualClock(START)
    app = _app(database, db_url, unique, clock, data_key=DATA_KEY)
    yield Site(app, clock, f"kim{unique}", f"sup{unique}", manager_id)


def _login(client: TestClient, username: str, password: str) -> tuple[int, str, str]:
    """Post the login form as a browser would: (status, body, redirect target)."""
    token = csrf_of(client.get("/login").text)
    response = client.post(
        "/login",
        data={"username": username, "password": password, "csrf_token": token},
        follow_redirects=False,
    )
    return response.status_code, response.text, response.headers.get("location", "")


def _logged_in(client: TestClient, username: str, password: str) -> TestClient:
    status, body, _ = _login(client, username, password)
    assert status == 303, body
    return client


def _bearer(client: TestClient, username: str, password: str, code: str = "") -> dict[str, str]:
    data = {"username": username, "password": password} | ({"code": code} if code else {})
    response = client.post("/api/v1/token", data=data)
    assert response.status_code == 200, response.text
    return {"Authorization": f"Bearer {response.json()['access_token']}"}


def _in(client: TestClient) -> bool:
    """Whether the client's session cookie still opens a page."""
    return client.get("/alerts", follow_redirects=False).status_code == 200


# -- logout ---------------------------------------------------------------------------------


def test_logout_ends_every_session_and_token_of_the_care_manager(site: Site) -> None:
    browser = _logged_in(TestClient(site.app), site.manager, PASSWORD)
    other_browser = _logged_in(TestClient(site.app), site.manager, PASSWORD)
    headers = _bearer(TestClient(site.app), site.manager, PASSWORD)
    assert TestClient(site.app).get("/api/v1/me", headers=headers).status_code == 200

    token = csrf_of(browser.get("/alerts").text)
    response = browser.post("/logout", data={"csrf_token": token}, follow_redirects=False)
    assert response.status_code == 303 and response.headers["location"] == "/login"

    assert not _in(browser)
    assert not _in(other_browser)
    assert TestClient(site.app).get("/api/v1/me", headers=headers).status_code == 401
    # logging in again works, and gives a session of the new generation
    assert _in(_logged_in(TestClient(site.app), site.manager, PASSWORD))


def test_api_logout_revokes_the_token(site: Site) -> None:
    client = TestClient(site.app)
    headers = _bearer(client, site.manager, PASSWORD)
    assert client.post("/api/v1/logout", headers=headers).status_code == 204
    assert client.get("/api/v1/me", headers=headers).status_code == 401


def test_logout_by_get_or_without_csrf_is_refused(site: Site) -> None:
    browser = _logged_in(TestClient(site.app), site.manager, PASSWORD)
    assert browser.get("/logout", follow_redirects=False).status_code == 405
    assert browser.post("/logout", follow_redirects=False).status_code == 403
    forged = browser.post("/logout", data={"csrf_token": "forged"}, follow_redirects=False)
    assert forged.status_code == 403
    assert _in(browser)  # none of them logged anyone out


# -- password changes -----------------------------------------------------------------------


def test_password_change_ends_other_sessions_and_tokens(site: Site) -> None:
    browser = _logged_in(TestClient(site.app), site.manager, PASSWORD)
    other_browser = _logged_in(TestClient(site.app), site.manager, PASSWORD)
    headers = _bearer(TestClient(site.app), site.manager, PASSWORD)

    token = csrf_of(browser.get("/account").text)
    response = browser.post(
        "/account/password",
        data={"csrf_token": token, "current_password": PASSWORD, "new_password": NEW_PASSWORD,
              "confirm_password": NEW_PASSWORD},
        follow_redirects=False,
    )  # fmt: skip
    assert response.status_code == 303, response.text
    assert "비밀번호가 변경되었습니다" in browser.get(response.headers["location"]).text

    assert _in(browser)  # the browser that changed it stays logged in
    assert not _in(other_browser)
    assert TestClient(site.app).get("/api/v1/me", headers=headers).status_code == 401
    assert _login(TestClient(site.app), site.manager, PASSWORD)[0] == 401
    assert _in(_logged_in(TestClient(site.app), site.manager, NEW_PASSWORD))


def test_enrolling_a_name_again_ends_its_sessions_and_tokens(
    site: Site, database: Database
) -> None:
    """An administrator enrols a username again (a new password, another dong or another
    person at the desk): what the old password opened stops working, as after a change."""
    browser = _logged_in(TestClient(site.app), site.manager, PASSWORD)
    headers = _bearer(TestClient(site.app), site.manager, PASSWORD)
    with database.connection() as conn:
        registry.enrol_care_manager(
            conn, site.manager, DONG_A, "이복지", "+821000000009", NEW_PASSWORD
        )
    assert not _in(browser)
    assert TestClient(site.app).get("/api/v1/me", headers=headers).status_code == 401
    assert _login(TestClient(site.app), site.manager, PASSWORD)[0] == 401
    assert _in(_logged_in(TestClient(site.app), site.manager, NEW_PASSWORD))


def test_password_change_through_the_api_returns_a_new_token(site: Site) -> None:
    client = TestClient(site.app)
    old = _bearer(client, site.manager, PASSWORD)
    response = client.post(
        "/api/v1/password",
        json={"current_password": PASSWORD, "new_password": NEW_PASSWORD},
        headers=old,
    )
    assert response.status_code == 200, response.text
    new = {"Authorization": f"Bearer {response.json()['access_token']}"}
    assert client.get("/api/v1/me", headers=old).status_code == 401
    assert client.get("/api/v1/me", headers=new).status_code == 200

    wrong = client.post(
        "/api/v1/password",
        json={"current_password": "not-the-password-at-all", "new_password": PASSWORD},
        headers=new,
    )
    assert wrong.status_code == 422
    assert wrong.json()["detail"] == "현재 비밀번호가 올바르지 않습니다."


@pytest.mark.parametrize(
    ("weak", "korean", "english"),
    [
        ("short-9x", "12자 이상", "at least 12 characters"),
        ("Password2026!", "너무 흔하거나", "too common"),
        ("1q2w3e4r5t6y", "너무 흔하거나", "too common"),
        ("aaaaaaaaaaaaaaaa", "너무 흔하거나", "too common"),
    ],
)
def test_weak_passwords_are_refused_korean_first(
    site: Site, weak: str, korean: str, english: str
) -> None:
    browser = _logged_in(TestClient(site.app), site.manager, PASSWORD)
    token = csrf_of(browser.get("/account").text)
    form = {"csrf_token": token, "current_password": PASSWORD, "new_password": weak,
            "confirm_password": weak}  # fmt: skip
    page = browser.post("/account/password", data=form)
    assert page.status_code == 422 and korean in page.text
    page_en = browser.post("/account/password?lang=en", data=form)
    assert page_en.status_code == 422 and english in page_en.text

    headers = _bearer(TestClient(site.app), site.manager, PASSWORD)
    api = TestClient(site.app).post(
        "/api/v1/password", json={"current_password": PASSWORD, "new_password": weak},
        headers=headers,
    )  # fmt: skip
    assert api.status_code == 422
    assert korean in api.json()["detail"] and english in api.json()["detail_en"]
    assert _in(browser)  # nothing changed
    assert _login(TestClient(site.app), site.manager, PASSWORD)[0] == 303


def test_enrolment_refuses_weak_passwords(database: Database) -> None:
    with database.connection() as conn:
        registry.add_dong(conn, DONG_A, "청운효자동", "종로구")
        with pytest.raises(registry.WeakPassword) as refused:
            registry.enrol_care_manager(conn, "cm-weak", DONG_A, "김", "+821000000003", "anbu-demo")
    assert refused.value.code == "password_short"
    with database.connection() as conn:
        row = conn.execute(
            "SELECT count(*) FROM anbu.care_manager WHERE username = 'cm-weak'"
        ).fetchone()
    assert row == (0,)


# -- absolute lifetime and cookie flags -----------------------------------------------------


def test_session_and_token_end_twelve_hours_after_login_however_busy(site: Site) -> None:
    browser = _logged_in(TestClient(site.app), site.manager, PASSWORD)
    headers = _bearer(TestClient(site.app), site.manager, PASSWORD)
    for _ in range(11):  # busy all day: every request re-signs the cookie
        site.clock.advance(timedelta(hours=1))
        assert _in(browser)
        assert browser.get("/api/v1/me", headers=headers).status_code == 200
    site.clock.advance(timedelta(minutes=59, seconds=59))
    assert _in(browser)
    site.clock.advance(timedelta(seconds=1))
    assert not _in(browser)
    assert TestClient(site.app).get("/api/v1/me", headers=headers).status_code == 401
    assert _in(_logged_in(browser, site.manager, PASSWORD))


def test_session_cookie_flags(site: Site, database: Database, db_url: str, unique: str) -> None:
    client = TestClient(site.app)
    cookie = client.get("/login").headers["set-cookie"]
    assert "httponly" in cookie.lower() and "samesite=lax" in cookie.lower()
    assert "Max-Age=43200" in cookie
    assert "secure" not in cookie.lower()  # the demo's http://; default settings

    https = _app(database, db_url, unique, site.clock, public_base_url="https://anbu.example")
    cookie = TestClient(https, base_url="https://testserver").get("/login").headers["set-cookie"]
    assert "; secure" in cookie.lower() and "httponly" in cookie.lower()
    forced = _app(database, db_url, unique, site.clock, session_cookie_secure=True)
    cookie = TestClient(forced, base_url="https://testserver").get("/login").headers["set-cookie"]
    assert "; secure" in cookie.lower()


# -- throttling -----------------------------------------------------------------------------


def _wrong_logins(app: FastAPI, username: str, times: int) -> list[tuple[int, str]]:
    out = []
    client = TestClient(app)
    for _ in range(times):
        status, body, _ = _login(client, username, "wrong-password-guess")
        out.append((status, re.sub(r'name="csrf_token" value="[^"]+"', "", body)
                    .replace(f'value="{username}"', "")))  # fmt: skip
    return out


def test_thirty_wrong_passwords_lock_out_known_and_unknown_names_alike(site: Site) -> None:
    known = _wrong_logins(site.app, site.manager, 30)
    unknown = _wrong_logins(site.app, f"nobody-{site.manager}", 30)
    assert known == unknown  # same statuses, same bodies: nothing tells the names apart
    statuses = [status for status, _ in known]
    assert statuses == [401] * 5 + [429] * 25
    assert "로그인이 잠시 제한되었습니다" in known[-1][1]

    # locked: even the right password is refused, unchecked; the API says the same
    assert _login(TestClient(site.app), site.manager, PASSWORD)[0] == 429
    api = TestClient(site.app).post(
        "/api/v1/token", data={"username": site.manager, "password": PASSWORD}
    )
    assert api.status_code == 429 and int(api.headers["retry-after"]) <= 300

    site.clock.advance(timedelta(minutes=5))
    assert _in(_logged_in(TestClient(site.app), site.manager, PASSWORD))


def test_lockouts_in_a_row_grow_and_a_success_forgives(site: Site) -> None:
    for _ in range(5):
        _wrong_logins(site.app, site.manager, 1)
    site.clock.advance(timedelta(minutes=5))
    assert [s for s, _ in _wrong_logins(site.app, site.manager, 6)] == [401] * 5 + [429]
    site.clock.advance(timedelta(minutes=5))  # the second lockout lasts 10 minutes
    assert _login(TestClient(site.app), site.manager, PASSWORD)[0] == 429
    site.clock.advance(timedelta(minutes=5))
    assert _login(TestClient(site.app), site.manager, PASSWORD)[0] == 303
    # the success forgave the account: five more tries before the next lockout
    assert [s for s, _ in _wrong_logins(site.app, site.manager, 6)] == [401] * 5 + [429]


def test_one_address_trying_many_names_is_locked_out(site: Site) -> None:
    for n in range(20):
        assert _wrong_logins(site.app, f"guess{n}-{site.manager}", 1)[0][0] == 401
    assert _login(TestClient(site.app), site.manager, PASSWORD)[0] == 429
    site.clock.advance(timedelta(minutes=5))
    assert _login(TestClient(site.app), site.manager, PASSWORD)[0] == 303


# -- TOTP -------------------------------------------------------------------------------------


def _enrol_totp(site: Site) -> str:
    """The supervisor enrols an authenticator through the account page; its secret."""
    browser = _logged_in(TestClient(site.app), site.supervisor, SUPERVISOR_PASSWORD)
    token = csrf_of(browser.get("/account").text)
    browser.post("/account/totp/start", data={"csrf_token": token, "password": SUPERVISOR_PASSWORD})
    page = browser.get("/account").text
    found = re.search(r"secret=([A-Z2-7]+)", page)
    assert found, "the account page shows no setup key"
    secret = found.group(1)
    wrong = browser.post("/account/totp", data={"csrf_token": token, "code": "000000"})
    assert wrong.status_code == 422 or totp.code_at(secret, totp.step_of(site.clock.now())) == (
        "000000"
    )
    code = totp.code_at(secret, totp.step_of(site.clock.now()))
    done = browser.post(
        "/account/totp", data={"csrf_token": token, "code": code}, follow_redirects=False
    )
    assert done.status_code == 303, done.text
    assert _in(browser)
    return secret


def _code_step(client: TestClient, code: str) -> int:
    token = csrf_of(client.get("/login/code").text)
    return client.post(
        "/login/code", data={"csrf_token": token, "code": code}, follow_redirects=False
    ).status_code


def test_totp_required_checked_and_never_replayed(site: Site) -> None:
    secret = _enrol_totp(site)
    site.clock.advance(timedelta(seconds=30))  # the enrolment used this step's code

    browser = TestClient(site.app)
    status, _, target = _login(browser, site.supervisor, SUPERVISOR_PASSWORD)
    assert status == 303 and target.startswith("/login/code")
    assert not _in(browser)  # a right password alone opens nothing
    code = totp.code_at(secret, totp.step_of(site.clock.now()))
    wrong = f"{(int(code) + 1) % 1_000_000:06d}"
    assert _code_step(browser, wrong) == 401
    assert _code_step(browser, code) == 303
    assert _in(browser)

    replay = TestClient(site.app)
    assert _login(replay, site.supervisor, SUPERVISOR_PASSWORD)[0] == 303
    assert _code_step(replay, code) == 401  # the same code in the same window
    assert not _in(replay)

    api = TestClient(site.app)
    no_code = {"username": site.supervisor, "password": SUPERVISOR_PASSWORD}
    assert api.post("/api/v1/token", data=no_code).status_code == 401
    site.clock.advance(timedelta(seconds=30))
    fresh = totp.code_at(secret, totp.step_of(site.clock.now()))
    assert api.get("/api/v1/me", headers=_bearer(api, site.supervisor, SUPERVISOR_PASSWORD,
                                                  fresh)).status_code == 200  # fmt: skip


def test_wrong_totp_codes_are_throttled_like_passwords(site: Site) -> None:
    _enrol_totp(site)
    browser = TestClient(site.app)
    assert _login(browser, site.supervisor, SUPERVISOR_PASSWORD)[0] == 303
    statuses = [_code_step(browser, "999999") for _ in range(6)]
    # (a 1-in-a-million chance that 999999 is the code itself is ignored)
    assert statuses == [401] * 5 + [429]
    assert _login(TestClient(site.app), site.supervisor, SUPERVISOR_PASSWORD)[0] == 429


def test_totp_is_for_supervisors_and_admins(site: Site) -> None:
    browser = _logged_in(TestClient(site.app), site.manager, PASSWORD)
    token = csrf_of(browser.get("/account").text)
    browser.post("/account/totp/start", data={"csrf_token": token})
    page = browser.get("/account").text
    assert "secret=" not in page and "구 통합돌봄 담당자와 구 시스템 관리자" in page
    assert (
        browser.post("/account/totp", data={"csrf_token": token, "code": "123456"}).status_code
        == 409
    )


# -- the throttle under attack ----------------------------------------------------------------

ATTACKER = ("203.0.113.9", 40000)
OWNER = ("198.51.100.7", 40001)


def test_concurrent_wrong_passwords_are_verified_at_most_the_limit(site: Site) -> None:
    """Eight wrong passwords at once against a limit of five, each its own client through the
    real app and database: at most five are checked, the others refused unchecked."""
    tries = 8
    start = threading.Barrier(tries)
    statuses: list[int] = []
    lock = threading.Lock()

    def attempt() -> None:
        client = TestClient(site.app)
        start.wait()
        response = client.post(
            "/api/v1/token", data={"username": site.manager, "password": "wrong-guess-1234"}
        )
        with lock:
            statuses.append(response.status_code)

    threads = [threading.Thread(target=attempt) for _ in range(tries)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(set(statuses)) <= [401, 429] and len(statuses) == tries
    # each 401 is one verified password: admitted one by one, exactly the limit get checked
    assert (statuses.count(401), statuses.count(429)) == (5, 3), statuses


def test_an_attacker_locked_out_does_not_lock_the_owner_out(site: Site) -> None:
    attacker = TestClient(site.app, client=ATTACKER)
    statuses = [_login(attacker, site.manager, "wrong-guess-1234")[0] for _ in range(12)]
    assert statuses == [401] * 5 + [429] * 7
    assert _login(attacker, site.manager, PASSWORD)[0] == 429  # that pair stays locked
    # the owner, from their own address, with the right password, gets in at once
    owner = TestClient(site.app, client=OWNER)
    assert _in(_logged_in(owner, site.manager, PASSWORD))
    api = TestClient(site.app, client=OWNER)
    assert _bearer(api, site.manager, PASSWORD)


def test_many_addresses_only_slow_one_account_down(site: Site) -> None:
    """Spread over addresses, guesses against one account are capped per minute (refused
    unchecked past the cap), and known and unknown names are answered alike."""

    def spread(username: str) -> list[int]:
        out = []
        for n in range(40):
            client = TestClient(site.app, client=(f"192.0.2.{n % 10}", 1))
            out.append(_login(client, username, "wrong-guess-1234")[0])
        return out

    known, unknown = spread(site.manager), spread(f"nobody-{site.manager}")
    assert known == unknown
    assert known.count(401) == 30 and known[30:] == [429] * 10
    site.clock.advance(timedelta(minutes=1))
    assert _in(_logged_in(TestClient(site.app, client=OWNER), site.manager, PASSWORD))


def test_throttle_keys_are_keyed_not_plain_hashes(site: Site, database: Database) -> None:
    _wrong_logins(site.app, site.manager, 1)
    with database.connection() as conn:
        keys = {row[0] for row in conn.execute("SELECT key FROM anbu.login_throttle")}
    assert keys
    plain = {
        hashlib.sha256(text.encode()).hexdigest()
        for text in (f"user:{site.manager}", "addr:testclient")
    }
    assert not keys & plain  # a dictionary of names or addresses does not reverse them


# -- TOTP secrets at rest and re-authentication --------------------------------------------------


def _session_cookie(client: TestClient) -> str:
    value = next(v for k, v in client.cookies.items() if "session" in k)
    payload = value.split(".")[0]
    return base64.b64decode(payload + "=" * (-len(payload) % 4)).decode("utf-8", "replace")


def test_totp_secrets_are_sealed_at_rest_and_never_in_the_cookie(
    site: Site, database: Database
) -> None:
    browser = _logged_in(TestClient(site.app), site.supervisor, SUPERVISOR_PASSWORD)
    token = csrf_of(browser.get("/account").text)
    browser.post("/account/totp/start", data={"csrf_token": token, "password": SUPERVISOR_PASSWORD})
    found = re.search(r"secret=([A-Z2-7]+)", browser.get("/account").text)
    assert found
    pending = found.group(1)
    assert pending not in _session_cookie(browser)

    secret = _enrol_totp(site)
    with database.connection() as conn:
        row = conn.execute(
            "SELECT row_to_json(m)::text FROM anbu.care_manager m WHERE username = %s",
            (site.supervisor,),
        ).fetchone()
        everything = conn.execute(
            "SELECT coalesce(string_agg(row_to_json(t)::text, ''), '') FROM anbu.totp_enrolment t"
        ).fetchone()
    assert row is not None and everything is not None and secret not in row[0]
    assert pending not in everything[0] and secret not in everything[0]
    # and the sealed secret still opens: a login with a code works
    site.clock.advance(timedelta(seconds=30))
    api = TestClient(site.app)
    code = totp.code_at(secret, totp.step_of(site.clock.now()))
    assert _bearer(api, site.supervisor, SUPERVISOR_PASSWORD, code)


def test_totp_enrolment_needs_the_password_and_removal_a_code(site: Site) -> None:
    browser = _logged_in(TestClient(site.app), site.supervisor, SUPERVISOR_PASSWORD)
    token = csrf_of(browser.get("/account").text)
    for password in ("", "not-my-password-1"):
        browser.post("/account/totp/start", data={"csrf_token": token, "password": password})
        assert "secret=" not in browser.get("/account").text  # no setup key shown

    secret = _enrol_totp(site)
    site.clock.advance(timedelta(seconds=30))
    code = totp.code_at(secret, totp.step_of(site.clock.now()))
    browser = TestClient(site.app)
    assert _login(browser, site.supervisor, SUPERVISOR_PASSWORD)[0] == 303
    assert _code_step(browser, code) == 303
    token = csrf_of(browser.get("/account").text)
    site.clock.advance(timedelta(seconds=30))
    # a stolen session with the password alone cannot remove the second factor
    no_code = browser.post(
        "/account/totp/remove",
        data={"csrf_token": token, "password": SUPERVISOR_PASSWORD},
        follow_redirects=False,
    )
    assert no_code.status_code == 422
    code = totp.code_at(secret, totp.step_of(site.clock.now()))
    done = browser.post(
        "/account/totp/remove",
        data={"csrf_token": token, "password": SUPERVISOR_PASSWORD, "code": code},
        follow_redirects=False,
    )
    assert done.status_code == 303
    assert "totp_removed" in done.headers["location"]


def test_key_rotation_reseals_totp_secrets(
    site: Site, database: Database, db_url: str, unique: str
) -> None:
    secret = _enrol_totp(site)
    with database.connection() as conn:
        registry.enrol_care_manager(
            conn, f"adm{unique}", DONG_A, "최관리", "+821000000003", SUPERVISOR_PASSWORD, "admin"
        )
        legacy_secret = totp.new_secret()  # written before sealing existed: plain base32
        conn.execute(
            "UPDATE anbu.care_manager SET totp_secret = %s WHERE username = %s",
            (legacy_secret, f"adm{unique}"),
        )
    new = new_key()
    ring = Keyring.of(new, [DATA_KEY])
    with psycopg.connect(db_url, autocommit=True) as conn:
        rotate_keys(conn, ring)
        stored = {
            name: value
            for name, value in conn.execute(
                "SELECT username, totp_secret FROM anbu.care_manager WHERE totp_secret IS NOT NULL"
            )
        }
    assert set(stored) == {site.supervisor, f"adm{unique}"}
    assert all(v.startswith(f"sealed:v1:{ring.current_id}:") for v in stored.values())
    assert legacy_secret not in "".join(stored.values())
    # the new key alone opens both
    app = _app(database, db_url, unique, site.clock, data_key=new)
    site.clock.advance(timedelta(seconds=30))
    for name, key in ((site.supervisor, secret), (f"adm{unique}", legacy_secret)):
        code = totp.code_at(key, totp.step_of(site.clock.now()))
        assert _bearer(TestClient(app), name, SUPERVISOR_PASSWORD, code)
