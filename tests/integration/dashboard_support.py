"""Shared set-up for the dashboard tests: two dongs, a care manager each, one alert in dong A."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

import registry
from alerts.policy import EscalationPolicy
from alerts.service import AlertService, IncomingFinding
from core.clock import VirtualClock
from core.config import Settings
from core.db import Database
from core.domain import Finding, Severity
from dashboards.app import create_app

DONG_A, DONG_B = "1111051500", "1111053000"
PASSWORD_A, PASSWORD_B = "청운-pass-A1", "사직-pass-B2"
RESIDENT_NAME = "김순자"
# 00:30 UTC is 09:30 in Seoul: the pages must show the latter.
OPENED_AT = datetime(2026, 11, 22, 0, 30, tzinfo=UTC)
REASON_KO = "14시간 동안 움직임이 없습니다"
REASON_EN = "No movement for 14 hours"


@dataclass
class RecordingTelephony:
    """The phone network stand-in: records what alerts asked for; no network."""

    calls: list[tuple[int, int | None, int]] = field(default_factory=list)
    sms: list[tuple[str, str]] = field(default_factory=list)

    def place_check_in(self, resident_id: int, alert_id: int | None, attempt: int) -> int:
        self.calls.append((resident_id, alert_id, attempt))
        return 0

    def queue_check_in(self, conn: Any, resident_id: int, alert_id: int, attempt: int) -> int:
        return self.place_check_in(resident_id, alert_id, attempt)

    def dial_check_ins(self, alert_id: int) -> int:
        return 0

    def send_sms(self, to: str, body: str) -> str | None:
        self.sms.append((to, body))
        return None

    def call_care_manager(
        self, alert_id: int, care_manager_id: int, message_ko: str, step: int = 0
    ) -> int:
        return 0


@dataclass(frozen=True)
class Town:
    """What was seeded; each test opens its own TestClient (one browser) per care manager."""

    app: FastAPI
    manager_a: int
    manager_b: int
    username_a: str
    username_b: str
    resident_id: int
    alert_id: int


def seed_alert(database: Database, clock: VirtualClock, resident_id: int, kind: str) -> int:
    """A finding stored as the detectors would, turned into an alert by the real AlertService."""
    with database.connection() as conn:
        row = conn.execute(
            """INSERT INTO anbu.findings (resident_id, kind, severity, raised_at, reason_ko,
                                          reason_en)
               VALUES (%s, %s, 'warning', %s, %s, %s) RETURNING id""",
            (resident_id, kind, clock.now(), REASON_KO, REASON_EN),
        ).fetchone()
    assert row is not None
    finding = Finding(
        f"home-{resident_id}", kind, Severity.WARNING, clock.now(), REASON_KO, REASON_EN
    )
    service = AlertService(
        database, RecordingTelephony(), EscalationPolicy(), clock, "http://dashboard.test"
    )
    (alert_id,) = service.on_findings([IncomingFinding(int(row[0]), resident_id, finding)])
    return alert_id


@pytest.fixture
def town(database: Database, db_url: str, unique: str) -> Iterator[Town]:
    """The real app over a fresh database: dong A with an alert, dong B with none."""
    with database.connection() as conn:
        registry.add_dong(conn, DONG_A, "청운효자동", "종로구")
        registry.add_dong(conn, DONG_B, "사직동", "종로구")
        manager_a = registry.add_care_manager(
            conn, f"kim{unique}", DONG_A, "김복지", "+821000000001", PASSWORD_A
        )
        manager_b = registry.add_care_manager(
            conn, f"lee{unique}", DONG_B, "이복지", "+821000000002", PASSWORD_B
        )
        resident = registry.add_resident(
            conn, f"home-{unique}", DONG_A, RESIDENT_NAME, "+821099990000"
        )
    clock = VirtualClock(OPENED_AT)
    alert_id = seed_alert(database, clock, resident, "inactivity")
    settings = Settings(database_url=db_url, session_secret=f"test-secret-{unique}")
    service = AlertService(
        database, RecordingTelephony(), EscalationPolicy(), clock, "http://dashboard.test"
    )
    app = create_app(database, settings, service)
    yield Town(app, manager_a, manager_b, f"kim{unique}", f"lee{unique}", resident, alert_id)


def csrf_of(html: str) -> str:
    """The CSRF token a page's form carries."""
    found = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert found, "page has no CSRF field"
    return found.group(1)


def login_page(client: TestClient, username: str, password: str) -> None:
    """Log in through the login form, as a browser would."""
    token = csrf_of(client.get("/login").text)
    response = client.post(
        "/login",
        data={"username": username, "password": password, "csrf_token": token},
        follow_redirects=False,
    )
    assert response.status_code == 303, response.text


def bearer(client: TestClient, username: str, password: str) -> dict[str, str]:
    """An Authorization header from POST /api/v1/token."""
    response = client.post("/api/v1/token", data={"username": username, "password": password})
    assert response.status_code == 200, response.text
    return {"Authorization": f"Bearer {response.json()['access_token']}"}


def app_with_key(database: Database, db_url: str, unique: str, data_key: str) -> FastAPI:
    """The real app over the town's database with a data key (what it seals, it seals)."""
    settings = Settings(
        database_url=db_url, session_secret=f"test-secret-{unique}", data_key=data_key
    )
    service = AlertService(
        database, RecordingTelephony(), EscalationPolicy(), VirtualClock(OPENED_AT),
        "http://dashboard.test",
    )  # fmt: skip
    return create_app(database, settings, service)
