"""Every route × every role × an object of the own dong, another dong of the district and
another district answers exactly as issue 15's roles say: 403 when the role lacks the action,
404 when the object lies outside what the role sees, success otherwise. On the real app and
PostgreSQL.

The table below is written by hand from the issue's text, not imported from dashboards.authz:
it is the second opinion the rule is checked against. A route the app has and this table has
not fails `test_every_route_has_a_row` by name: add its row here.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from itertools import count
from typing import Any

import pytest
from fastapi import FastAPI, routing
from fastapi.testclient import TestClient

import registry
from alerts.policy import EscalationPolicy
from alerts.service import AlertService
from core.clock import VirtualClock
from core.config import Settings
from core.crypto import new_key
from core.db import Database
from dashboards import queue_feed
from dashboards.app import create_app
from dashboards.auth import CareManager
from dashboards.authz import RULES, Action, may, visible_dongs
from simulators.phone import PhoneNetwork
from simulators.servers import EmbeddedMosquitto
from tests.integration.dashboard_support import (
    OPENED_AT,
    RecordingTelephony,
    bearer,
    csrf_of,
    login_page,
)

DONG_A, DONG_B, DONG_C = "1111051500", "1111053000", "1114055000"  # 종로구, 종로구, 중구
PASSWORD = "roles-pass-7Q2x"
ROLES = ("manager", "supervisor", "admin", "technician")
OWN, SAME_DISTRICT, OTHER_DISTRICT = "own dong", "another dong, same district", "other district"
WHERE = {OWN: DONG_A, SAME_DISTRICT: DONG_B, OTHER_DISTRICT: DONG_C}

# -- the rule, by hand, from issue 15 ------------------------------------------------------
ALL = frozenset(ROLES)
CARE = frozenset({"manager", "supervisor", "admin"})  # alerts, residents, reports
SENIOR = frozenset({"supervisor", "admin"})  # reassign; the access log; a resident's course
ENROL = frozenset({"admin"})  # enrolment: residents, their gateways and sensors
DEVICES = frozenset({"manager", "admin", "technician"})  # gateways, sensors, device findings
NOTES = frozenset({"manager"})  # care notes: the care roles of the resident's own dong only
NOTE = {"body": "오전 방문, 잘 지내심", "kind": "visit"}
ACCOUNT, PHONE_TOKEN = "AC" + "7" * 32, "roles-phone-token-0123456789abcdef"
UNTIL_UTC = (OPENED_AT + timedelta(days=2)).isoformat()


@pytest.fixture(autouse=True)
def _short_streams(monkeypatch: pytest.MonkeyPatch) -> None:
    """The care queue's stream (GET /alerts/events) ends at once here: a TestClient reads
    every answer to its end."""
    monkeypatch.setattr(queue_feed, "STREAM_LIFE_S", 0.0)


@dataclass(frozen=True)
class Row:
    """Who may use a route, on what object, with which body; `public`: no login needed,
    `own_account`: any role, on their own account (not exercised here: it changes the caller)."""

    roles: frozenset[str] = frozenset()
    target: str | None = None  # alert, acknowledged, resident, gateway, sensor, request; None
    body: dict[str, Any] = field(default_factory=dict)  # "{key}": an object; "x-{serial}": new
    upload: bool = False  # the body is a CSV file (a page's form upload, or the API's raw body)
    public: bool = False
    own_account: bool = False


PUBLIC = Row(public=True)
OWN_ACCOUNT = Row(own_account=True)
REASSIGN = {"care_manager_id": "{assignee}"}
ENROLLED = {"external_id": "case-{serial}", "display_name": "김순자", "birth_year": 1941,
            "address": "서울 종로구 자하문로 1", "dong": DONG_A,
            "mobile_phone": "010-2345-6789"}  # fmt: skip
ENROLLED_FORM = {**{k: v for k, v in ENROLLED.items() if k != "dong"}, "dong_code": DONG_A}
SENSOR = {"vendor_id": "pir-1", "kind": "motion", "room": "living"}
ENROL_CSV = (
    "external_id,display_name,birth_year,address,dong,mobile_phone\n"
    f"case-{{serial}},이말순,1938,서울 종로구 사직로 1,{DONG_A},010-3456-7890\n"
)

TABLE: dict[tuple[str, str], Row] = {
    ("GET", "/openapi.json"): PUBLIC,
    ("GET", "/healthz"): PUBLIC,
    ("GET", "/metrics"): PUBLIC,
    ("GET", "/docs"): PUBLIC,
    ("GET", "/"): PUBLIC,
    ("GET", "/login"): PUBLIC,
    ("POST", "/login"): PUBLIC,
    ("GET", "/login/code"): PUBLIC,
    ("POST", "/login/code"): PUBLIC,
    ("POST", "/logout"): PUBLIC,
    ("POST", "/api/v1/token"): PUBLIC,
    ("POST", "/api/v1/logout"): OWN_ACCOUNT,
    ("POST", "/api/v1/password"): OWN_ACCOUNT,
    ("POST", "/account/password"): OWN_ACCOUNT,
    ("POST", "/account/totp/start"): OWN_ACCOUNT,
    ("POST", "/account/totp"): OWN_ACCOUNT,
    ("POST", "/account/totp/remove"): OWN_ACCOUNT,
    ("GET", "/account"): Row(ALL),
    ("GET", "/api/v1/me"): Row(ALL),
    # alerts: care roles; reassigning: supervisors and admins
    ("GET", "/api/v1/alerts"): Row(CARE),
    ("GET", "/api/v1/events"): Row(CARE),
    ("GET", "/api/v1/alerts/{alert_id}"): Row(CARE, "alert"),
    ("POST", "/api/v1/alerts/{alert_id}/acknowledge"): Row(CARE, "alert", {"note": "확인"}),
    ("POST", "/api/v1/alerts/{alert_id}/resolve"): Row(
        CARE, "acknowledged", {"outcome": "visited_ok"}
    ),
    ("POST", "/api/v1/alerts/{alert_id}/reassign"): Row(SENIOR, "alert", REASSIGN),
    ("GET", "/alerts"): Row(CARE),
    ("GET", "/alerts/events"): Row(CARE),
    ("GET", "/alerts/{alert_id}"): Row(CARE, "alert"),
    ("GET", "/line-messages/{message_id}/recording"): Row(CARE, "message"),
    ("POST", "/alerts/{alert_id}/acknowledge"): Row(CARE, "alert", {"note": "확인"}),
    ("POST", "/alerts/{alert_id}/resolve"): Row(CARE, "acknowledged", {"outcome": "visited_ok"}),
    ("POST", "/alerts/{alert_id}/reassign"): Row(SENIOR, "alert", REASSIGN),
    # residents: care roles (health notes on the card: never a technician)
    ("GET", "/api/v1/residents"): Row(CARE),
    ("GET", "/api/v1/residents/{resident_id}"): Row(CARE, "resident"),
    ("GET", "/api/v1/residents/{resident_id}/activity"): Row(CARE, "resident"),
    ("GET", "/api/v1/residents/{resident_id}/history"): Row(CARE, "resident"),
    ("POST", "/api/v1/residents/{resident_id}/status"): Row(
        CARE, "resident", {"status": "away", "until": UNTIL_UTC}
    ),
    ("POST", "/api/v1/residents/{resident_id}/quiet-hours"): Row(
        CARE, "resident", {"start": "22:00", "end": "07:00"}
    ),
    ("POST", "/api/v1/residents/{resident_id}/levels"): Row(
        CARE, "resident", {"watch_h_max": 6, "warning_h_max": 12, "critical_h_max": 20}
    ),
    ("GET", "/api/v1/residents/{resident_id}/settings"): Row(CARE, "resident"),
    ("PATCH", "/api/v1/residents/{resident_id}/settings"): Row(
        CARE, "resident", {"quiet_hours": {"start": "22:00", "end": "07:00"}}
    ),
    ("PUT", "/api/v1/residents/{resident_id}/settings"): Row(
        CARE,
        "resident",
        {
            "status": {"status": "active"},
            "quiet_hours": {"start": None, "end": None},
            "levels": {"watch_h_max": None, "warning_h_max": None, "critical_h_max": None},
        },
    ),
    ("POST", "/api/v1/residents/{resident_id}/reassign"): Row(SENIOR, "resident", REASSIGN),
    ("GET", "/residents"): Row(CARE),
    ("GET", "/residents/{resident_id}"): Row(CARE, "resident"),
    ("POST", "/residents/{resident_id}/status"): Row(
        CARE, "resident", {"status": "away", "until": "2026-11-24T10:00"}
    ),
    ("POST", "/residents/{resident_id}/reassign"): Row(SENIOR, "resident", REASSIGN),
    # care notes on the card (sealed with the data key)
    ("GET", "/api/v1/residents/{resident_id}/notes"): Row(NOTES, "resident"),
    ("POST", "/api/v1/residents/{resident_id}/notes"): Row(NOTES, "resident", NOTE),
    ("POST", "/residents/{resident_id}/notes"): Row(NOTES, "resident", NOTE),
    # install address and access notes: everyone who may visit, the technician included
    ("GET", "/api/v1/residents/{resident_id}/site"): Row(ALL, "resident"),
    ("GET", "/sites/{resident_id}"): Row(ALL, "resident"),
    ("GET", "/sites"): Row(DEVICES),
    # service requests residents stated on calls: care roles, their dongs
    ("GET", "/api/v1/service-requests"): Row(CARE),
    ("POST", "/api/v1/service-requests/{request_id}/accept"): Row(CARE, "request"),
    ("POST", "/api/v1/service-requests/{request_id}/link"): Row(
        CARE, "request", {"provider": "우산동 행정복지센터"}
    ),
    ("POST", "/api/v1/service-requests/{request_id}/close"): Row(CARE, "request"),
    ("GET", "/requests"): Row(CARE),
    ("POST", "/requests/{request_id}/accept"): Row(CARE, "request"),
    ("POST", "/requests/{request_id}/link"): Row(CARE, "request", {"provider": "복지관"}),
    ("POST", "/requests/{request_id}/close"): Row(CARE, "request"),
    # reports
    ("GET", "/api/v1/review"): Row(CARE),
    ("GET", "/review"): Row(CARE),
    # the district's monthly report: supervisors and admins
    ("GET", "/api/v1/reports/monthly"): Row(SENIOR),
    ("GET", "/reports/monthly"): Row(SENIOR),
    ("GET", "/reports/monthly.csv"): Row(SENIOR),
    # gateways, sensors, device findings: managers (their dong), admins, technicians
    ("GET", "/api/v1/gateways/{gateway_id}/devices"): Row(DEVICES, "gateway"),
    ("POST", "/api/v1/gateways/{gateway_id}/devices"): Row(
        DEVICES, "gateway", {"device": "{device}", "kind": "motion", "room": "living"}
    ),
    ("GET", "/api/v1/device-findings"): Row(DEVICES),
    # who read whom: supervisors and admins
    ("GET", "/api/v1/access-log"): Row(SENIOR),
    ("GET", "/access-log"): Row(SENIOR),
    # webhook subscriptions: the district's admin only (their district's, wherever its dong)
    ("POST", "/api/v1/webhooks"): Row(ENROL, None, {"url": "https://1.1.1.1/anbu"}),
    ("GET", "/api/v1/webhooks"): Row(ENROL),
    ("GET", "/api/v1/webhooks/{webhook_id}"): Row(ENROL, "webhook"),
    ("GET", "/api/v1/webhooks/{webhook_id}/deliveries"): Row(ENROL, "webhook"),
    ("POST", "/api/v1/webhooks/{webhook_id}/pause"): Row(ENROL, "webhook"),
    ("POST", "/api/v1/webhooks/{webhook_id}/resume"): Row(ENROL, "webhook"),
    ("DELETE", "/api/v1/webhooks/{webhook_id}"): Row(ENROL, "webhook"),
    # service accounts: the district's admin only (their district's, wherever its dong)
    ("POST", "/api/v1/service-accounts"): Row(
        ENROL, None, {"name": "통합정보시스템", "scopes": ["alerts:read"], "dongs": [DONG_A]}
    ),
    ("GET", "/api/v1/service-accounts"): Row(ENROL),
    ("POST", "/api/v1/service-accounts/{account_id}/revoke"): Row(ENROL, "service_account"),
    # a resident's course: supervisors and admins of the district
    ("POST", "/api/v1/residents/{resident_id}/transfer"): Row(
        SENIOR, "resident", {"dong_code": "{elsewhere}"}
    ),
    ("POST", "/api/v1/residents/{resident_id}/pause"): Row(
        SENIOR, "resident", {"until": UNTIL_UTC}
    ),
    ("POST", "/api/v1/residents/{resident_id}/end"): Row(SENIOR, "resident", {"reason": "moved"}),
    # enrolment: the district's admin only
    ("POST", "/api/v1/residents"): Row(ENROL, None, ENROLLED),
    ("POST", "/api/v1/residents/import"): Row(ENROL, None, {"csv": ENROL_CSV}, upload=True),
    ("GET", "/api/v1/residents/{resident_id}/enrolment"): Row(ENROL, "resident"),
    # the resident stays in their dong: a move is the transfer's (alerts.course), refused here
    ("PUT", "/api/v1/residents/{resident_id}"): Row(
        ENROL, "resident", {**ENROLLED, "dong": "{dong}"}
    ),
    ("PATCH", "/api/v1/residents/{resident_id}"): Row(
        ENROL,
        "resident",
        {
            "external_id": "case-{serial}",
            "birth_year": 1939,
            "mobile_phone": "010-4567-8901",
            "address": "서울 종로구 필운대로 2",
        },
    ),
    ("POST", "/api/v1/residents/{resident_id}/gateways"): Row(
        ENROL, "resident", {"gateway_id": "gw-new-{serial}"}
    ),
    ("DELETE", "/api/v1/gateways/{gateway_id}"): Row(ENROL, "gateway"),
    ("POST", "/api/v1/gateways/{gateway_id}/credentials"): Row(ENROL, "gateway"),
    ("POST", "/api/v1/gateways/{gateway_id}/sensors"): Row(ENROL, "gateway", SENSOR),
    ("PATCH", "/api/v1/sensors/{sensor_id}"): Row(
        ENROL, "sensor", {"kind": "door", "room": "entrance"}
    ),
    ("DELETE", "/api/v1/sensors/{sensor_id}"): Row(ENROL, "sensor"),
    ("GET", "/enrol"): Row(ENROL),
    ("GET", "/enrol/import"): Row(ENROL),
    ("POST", "/enrol/import"): Row(ENROL, None, {"csv": ENROL_CSV}, upload=True),
    ("GET", "/enrol/residents/new"): Row(ENROL),
    ("POST", "/enrol/residents"): Row(ENROL, None, ENROLLED_FORM),
    ("GET", "/enrol/residents/{resident_id}"): Row(ENROL, "resident"),
    ("POST", "/enrol/residents/{resident_id}"): Row(
        ENROL, "resident", {**ENROLLED_FORM, "dong_code": "{dong}"}
    ),
    ("POST", "/enrol/residents/{resident_id}/gateways"): Row(
        ENROL, "resident", {"gateway_id": "gw-page-{serial}"}
    ),
    ("POST", "/enrol/gateways/{gateway_id}/remove"): Row(ENROL, "gateway"),
    ("POST", "/enrol/gateways/{gateway_id}/credentials"): Row(ENROL, "gateway"),
    ("POST", "/enrol/gateways/{gateway_id}/sensors"): Row(ENROL, "gateway", SENSOR),
    ("POST", "/enrol/sensors/{sensor_id}/remove"): Row(ENROL, "sensor"),
}


def expected(row: Row, role: str, where: str | None) -> str:
    """'ok', 'forbidden' or 'not found', as the issue's rule says."""
    if role not in row.roles:
        return "forbidden"
    if where in (None, OWN):
        return "ok"
    if where == SAME_DISTRICT and role != "manager":
        return "ok"
    return "not found"


def verdict(status: int) -> str:
    return {200: "ok", 201: "ok", 204: "ok", 303: "ok", 403: "forbidden", 404: "not found"}.get(
        status, str(status)
    )


# -- the town --------------------------------------------------------------------------------


def app_routes(app: FastAPI) -> list[tuple[str, str]]:
    """(method, path) of every route the app serves, pages and API alike."""
    found = set()
    for route in routing.iter_route_contexts(app.routes):
        for method in route.methods or ():
            if method != "HEAD" and route.path is not None:
                found.add((method, route.path))
    return sorted(found)


@dataclass
class Town:
    app: FastAPI
    db: Database
    actors: dict[str, str]  # role -> username (each in dong A)
    spare: dict[str, int]  # dong -> a care manager to reassign to
    numbers: Iterator[int]
    phone: PhoneNetwork  # serves the line messages' recordings

    def objects(self, dong: str) -> dict[str, Any]:
        """A fresh resident of `dong` with a gateway, a heard device, an open alert and an
        acknowledged one."""
        n = next(self.numbers)
        with self.db.connection() as conn:
            rid = registry.add_resident(conn, f"home-{n}", dong, "박영희", "+821055550000")
            gateway = registry.add_gateway(conn, f"gw-roles-{n}", rid)
            sensor = registry.add_sensor(conn, gateway, "door-1", "door", "entrance")
            conn.execute(
                """INSERT INTO anbu.heard_devices (gateway_id, device, source, first_heard,
                                                   last_heard)
                   VALUES (%s, 'pir-1', 'zigbee2mqtt', %s, %s)""",
                (gateway, OPENED_AT, OPENED_AT),
            )
            alerts = [
                conn.execute(
                    """INSERT INTO anbu.alerts (resident_id, kind, severity, state, opened_at,
                                                updated_at)
                       VALUES (%s, %s, 'warning', %s, %s, %s) RETURNING id""",
                    (rid, kind, state, OPENED_AT, OPENED_AT),
                ).fetchone()[0]  # type: ignore[index]
                for kind, state in (("inactivity", "open"), ("no_answer", "acknowledged"))
            ]
            message = conn.execute(
                """INSERT INTO anbu.incoming_calls (twilio_sid, resident_id, received_at,
                                                    updated_at, choice, recording_url)
                   VALUES (%s, %s, %s, %s, 'message', %s) RETURNING id""",
                (
                    f"CAroles{n}",
                    rid,
                    OPENED_AT,
                    OPENED_AT,
                    f"{self.phone.base_url}/2010-04-01/Accounts/{ACCOUNT}/Recordings/RE{n}",
                ),
            ).fetchone()[0]  # type: ignore[index]
            request = conn.execute(
                """INSERT INTO anbu.service_requests (resident_id, category, words, created_at,
                                                      updated_at)
                   VALUES (%s, 'meals', '반찬 좀 갖다 줘', %s, %s) RETURNING id""",
                (rid, OPENED_AT, OPENED_AT),
            ).fetchone()[0]  # type: ignore[index]
            webhook = conn.execute(  # a subscription of the dong's district
                """INSERT INTO anbu.webhook_subscription (district, url, secret_sealed,
                       secret_key_id, state_changed_at, state_changed_by, created_by, created_at)
                   SELECT d.district, 'https://1.1.1.1/anbu', '\\x00', 'k', %s, 'system', %s, %s
                     FROM anbu.dong d WHERE d.code = %s RETURNING id""",
                (OPENED_AT, self.spare[dong], OPENED_AT, dong),
            ).fetchone()[0]  # type: ignore[index]
            principal = conn.execute(  # a service account of the dong's district
                """INSERT INTO anbu.care_manager (username, dong_code, display_name, phone,
                       password_hash, role, active)
                   VALUES (%s, %s, 'svc', '', 'x', 'service', false) RETURNING id""",
                (f"svc.roles{n}", dong),
            ).fetchone()[0]  # type: ignore[index]
            conn.execute(
                """INSERT INTO anbu.service_account (care_manager_id, name, district, scopes,
                       dongs, token_hash, created_by, created_at)
                   SELECT %s, 'svc', d.district, ARRAY['alerts:read'], ARRAY[d.code],
                          sha256('x'), %s, %s
                     FROM anbu.dong d WHERE d.code = %s""",
                (principal, self.spare[dong], OPENED_AT, dong),
            )
        return {"resident": rid, "webhook": webhook, "service_account": principal, "gateway": gateway, "sensor": sensor, "alert": alerts[0],
                "acknowledged": alerts[1], "request": request, "message": message, "device": "pir-1", "assignee": self.spare[dong],
                "serial": n, "elsewhere": DONG_B if dong == DONG_A else DONG_A,
                "dong": dong}  # fmt: skip


@pytest.fixture
def town(database: Database, db_url: str, unique: str, broker: EmbeddedMosquitto) -> Iterator[Town]:
    actors: dict[str, str] = {}
    spare: dict[str, int] = {}
    with database.connection() as conn:
        registry.add_dong(conn, DONG_A, "청운효자동", "종로구")
        registry.add_dong(conn, DONG_B, "사직동", "종로구")
        registry.add_dong(conn, DONG_C, "소공동", "중구")
        for role in ROLES:
            actors[role] = f"{role}-{unique}"
            registry.add_care_manager(
                conn, actors[role], DONG_A, role, "+821000000001", PASSWORD, role
            )
        for dong in (DONG_A, DONG_B, DONG_C):
            spare[dong] = registry.add_care_manager(
                conn, f"spare-{dong}-{unique}", dong, "대리", "+821000000002", PASSWORD
            )
    admin = broker.admin()  # gateways' MQTT accounts are issued and revoked on it
    phone = PhoneNetwork(ACCOUNT, PHONE_TOKEN)
    phone.start()
    settings = Settings(
        database_url=db_url, session_secret=f"test-secret-{unique}-0123456789ab",
        mqtt_port=admin.port, broker_admin_username=admin.username,
        broker_admin_password=admin.password, twilio_account_sid=ACCOUNT,
        twilio_auth_token=PHONE_TOKEN, twilio_api_base_url=phone.base_url,
        data_key=new_key(),
    )  # fmt: skip
    clock = VirtualClock(OPENED_AT)
    service = AlertService(database, RecordingTelephony(), EscalationPolicy(), clock, "http://t")
    try:
        yield Town(create_app(database, settings, service), database, actors, spare, count(1),
                   phone)  # fmt: skip
    finally:
        phone.stop()


# -- the tests -------------------------------------------------------------------------------


def test_every_route_has_a_row(town: Town) -> None:
    """A route without a row is a route nobody decided the rule for: name it."""
    routes = app_routes(town.app)
    schema = town.app.openapi()
    documented = {(m.upper(), p) for p, ops in schema["paths"].items() for m in ops}
    assert documented <= set(routes)  # the enumeration sees the whole OpenAPI schema
    missing = [f"{m} {p}" for m, p in routes if (m, p) not in TABLE]
    stale = [f"{m} {p}" for m, p in TABLE if (m, p) not in routes]
    assert not missing, "routes with no row in test_roles.TABLE: " + ", ".join(missing)
    assert not stale, "rows for routes the app does not have: " + ", ".join(stale)


def _call(
    client: TestClient, method: str, path: str, row: Row, body: dict[str, Any], csrf: str
) -> int:
    page = not path.startswith("/api/")
    if method == "GET":
        return client.get(path, follow_redirects=False).status_code
    if row.upload:
        data = body["csv"].encode()
        if page:
            form = {"csrf_token": csrf, "action": "dry_run"}
            files = {"file": ("list.csv", data, "text/csv")}
            return client.post(path, data=form, files=files, follow_redirects=False).status_code
        sent = client.post(path, content=data, headers={"content-type": "text/csv"})
        return sent.status_code
    if page:
        data = {**{k: str(v) for k, v in body.items()}, "csrf_token": csrf}
        return client.post(path, data=data, follow_redirects=False).status_code
    return client.request(method, path, json=body or None, follow_redirects=False).status_code


def _fill(template: dict[str, Any], objects: dict[str, Any]) -> dict[str, Any]:
    """The body with "{key}" replaced by the object itself and "{key}" inside text by its
    value."""
    out: dict[str, Any] = {}
    for key, value in template.items():
        if isinstance(value, str) and value.startswith("{") and value.endswith("}"):
            value = objects[value[1:-1]]
        elif isinstance(value, str) and "{" in value:
            value = value.format_map(objects)
        out[key] = value
    return out


def test_every_route_every_role_every_place(town: Town) -> None:
    api: dict[str, TestClient] = {}
    pages: dict[str, tuple[TestClient, str]] = {}
    for role, username in town.actors.items():
        api[role] = TestClient(town.app)
        api[role].headers.update(bearer(api[role], username, PASSWORD))
        browser = TestClient(town.app)
        login_page(browser, username, PASSWORD)
        pages[role] = (browser, csrf_of(browser.get("/account").text))
    wrong: list[str] = []
    checked = 0
    served = set(app_routes(town.app))
    for (method, path), row in sorted(TABLE.items()):
        if row.public or row.own_account or (method, path) not in served:
            continue
        page = not path.startswith("/api/")
        places = (OWN, SAME_DISTRICT, OTHER_DISTRICT) if row.target else (None,)
        for role in ROLES:
            for where in places:
                objects = town.objects(WHERE[where]) if where else {"serial": next(town.numbers)}
                url = path
                if row.target:
                    ident = str(objects[row.target])
                    for name in (
                        "alert_id",
                        "resident_id",
                        "gateway_id",
                        "sensor_id",
                        "request_id",
                        "message_id",
                        "webhook_id",
                        "account_id",
                    ):
                        url = url.replace("{" + name + "}", ident)
                client, csrf = pages[role] if page else (api[role], "")
                status = _call(client, method, url, row, _fill(row.body, objects), csrf)
                want, got = expected(row, role, where), verdict(status)
                checked += 1
                if want != got:
                    wrong.append(f"{method} {path} as {role} on {where}: want {want}, got {status}")
    assert not wrong, f"{len(wrong)} of {checked} answers break the rule:\n" + "\n".join(wrong)
    assert checked > 150


def test_a_supervisor_sees_the_district_and_a_manager_only_the_dong(town: Town) -> None:
    a, b, c = (town.objects(d) for d in (DONG_A, DONG_B, DONG_C))
    seen: dict[str, set[int]] = {}
    for role in ("manager", "supervisor"):
        client = TestClient(town.app)
        headers = bearer(client, town.actors[role], PASSWORD)
        alerts = client.get("/api/v1/alerts", headers=headers).json()["data"]
        residents = client.get("/api/v1/residents", headers=headers).json()["data"]
        seen[role] = {x["id"] for x in alerts}
        assert {x["id"] for x in residents} == (
            {a["resident"]} if role == "manager" else {a["resident"], b["resident"]}
        )
        me = client.get("/api/v1/me", headers=headers).json()
        assert me["district"] == "종로구"
        assert set(me["dongs"]) == ({DONG_A} if role == "manager" else {DONG_A, DONG_B})
    assert seen["manager"] == {a["alert"], a["acknowledged"]}
    assert seen["supervisor"] == {a["alert"], a["acknowledged"], b["alert"], b["acknowledged"]}
    assert not seen["supervisor"] & {c["alert"], c["acknowledged"]}


def test_a_supervisor_reassigns_an_alert_and_a_resident_within_the_district(town: Town) -> None:
    b = town.objects(DONG_B)
    client = TestClient(town.app)
    headers = bearer(client, town.actors["supervisor"], PASSWORD)
    done = client.post(
        f"/api/v1/alerts/{b['alert']}/reassign",
        json={"care_manager_id": town.spare[DONG_B], "note": "휴가"},
        headers=headers,
    )
    assert done.status_code == 200, done.text
    assert done.json()["events"][-1]["reason"].endswith(f"#{town.spare[DONG_B]} — 휴가")
    # a care manager of another district is nobody a 종로구 supervisor can hand work to
    refused = client.post(
        f"/api/v1/alerts/{b['alert']}/reassign",
        json={"care_manager_id": town.spare[DONG_C]},
        headers=headers,
    )
    assert refused.status_code == 422
    # nor a care manager of another dong of the district: the resident's dong looks after them
    for kind in ("alerts", "residents"):
        other_dong = client.post(
            f"/api/v1/{kind}/{b[kind[:-1]]}/reassign",
            json={"care_manager_id": town.spare[DONG_A]},
            headers=headers,
        )
        assert other_dong.status_code == 422, other_dong.text
        assert "행정동의 담당자" in other_dong.json()["detail"]
    moved = client.post(
        f"/api/v1/residents/{b['resident']}/reassign",
        json={"care_manager_id": town.spare[DONG_B]},
        headers=headers,
    )
    assert moved.status_code == 200, moved.text
    with town.db.connection() as conn:
        assigned = conn.execute(
            "SELECT assigned_to FROM anbu.alerts WHERE id = %s", (b["alert"],)
        ).fetchone()
        owner = conn.execute(
            "SELECT care_manager_id FROM anbu.resident WHERE id = %s", (b["resident"],)
        ).fetchone()
        audit = conn.execute(
            """SELECT field, new_value FROM anbu.resident_changes
                WHERE resident_id = %s AND field = 'care_manager_id'""",
            (b["resident"],),
        ).fetchall()
    assert assigned == (town.spare[DONG_B],)
    assert owner == (town.spare[DONG_B],)
    assert audit == [("care_manager_id", str(town.spare[DONG_B]))]
    # the buttons are on the pages for a supervisor, not for a manager
    for role, shown in (("supervisor", True), ("manager", False)):
        browser = TestClient(town.app)
        login_page(browser, town.actors[role], PASSWORD)
        a = town.objects(DONG_A)
        assert (
            f"/alerts/{a['alert']}/reassign" in browser.get(f"/alerts/{a['alert']}").text
        ) is shown
        page = browser.get(f"/residents/{a['resident']}").text
        assert (f"/residents/{a['resident']}/reassign" in page) is shown


def test_a_technician_sees_devices_and_the_way_in_but_no_care_record(town: Town) -> None:
    b = town.objects(DONG_B)
    with town.db.connection() as conn:
        conn.execute(
            "UPDATE anbu.resident SET address = '서울 종로구 사직로 1', access_notes = '현관 1234*',"
            " notes = '당뇨' WHERE id = %s",
            (b["resident"],),
        )
        for kind, reason in (("battery_low", "배터리 부족"), ("inactivity", "움직임 없음")):
            conn.execute(
                """INSERT INTO anbu.findings (resident_id, kind, severity, raised_at, reason_ko,
                                              reason_en)
                   VALUES (%s, %s, 'watch', %s, %s, 'x')""",
                (b["resident"], kind, OPENED_AT, reason),
            )
    client = TestClient(town.app)
    headers = bearer(client, town.actors["technician"], PASSWORD)
    site = client.get(f"/api/v1/residents/{b['resident']}/site", headers=headers)
    assert site.status_code == 200, site.text
    body = site.json()
    assert (body["address"], body["access_notes"]) == ("서울 종로구 사직로 1", "현관 1234*")
    assert [g["id"] for g in body["gateways"]] == [b["gateway"]]
    assert "당뇨" not in site.text and "health_notes" not in body
    assert [f["kind"] for f in body["findings"]] == ["battery_low"]
    listed = client.get("/api/v1/device-findings", headers=headers).json()["data"]
    assert {f["kind"] for f in listed} == {"battery_low"}
    for path in (f"/api/v1/residents/{b['resident']}", f"/api/v1/alerts/{b['alert']}"):
        refused = client.get(path, headers=headers)
        assert refused.status_code == 403
        assert "당뇨" not in refused.text and "움직임" not in refused.text
    browser = TestClient(town.app)
    login_page(browser, town.actors["technician"], PASSWORD)
    assert browser.get("/", follow_redirects=False).headers["location"] == "/sites"
    listing = browser.get("/sites")
    assert listing.status_code == 200
    assert f"/sites/{b['resident']}" in listing.text and "배터리 부족" in listing.text
    assert "움직임 없음" not in listing.text
    page = browser.get(f"/sites/{b['resident']}")
    assert page.status_code == 200
    assert "현관 1234*" in page.text and "서울 종로구 사직로 1" in page.text
    assert "당뇨" not in page.text and "박영희" not in page.text
    for path in (f"/residents/{b['resident']}", f"/alerts/{b['alert']}", "/review"):
        assert browser.get(path).status_code == 403


def test_the_rule_is_total_and_an_unknown_role_may_nothing() -> None:
    assert set(RULES) == set(Action)
    district = (DONG_A, DONG_B)
    actors = {
        role: CareManager(1, role, role, DONG_A, "청운효자동", role, 0, False, "종로구", district)
        for role in (*ROLES, "intern")
    }
    assert not any(may(actors["intern"], action) for action in Action)
    assert visible_dongs(actors["intern"]) == (DONG_A,)
    assert visible_dongs(actors["manager"]) == (DONG_A,)
    for role in ("supervisor", "admin", "technician"):
        assert visible_dongs(actors[role]) == district
