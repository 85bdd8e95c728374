"""Shared set-up for the enrolment tests: two districts, an admin and a manager in 종로구, an admin
in 중구, a resident in each district; the real app over a fresh database with a data key and
the session's broker, whose dynamic-security admin issues gateways' accounts."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest
from fastapi import FastAPI

import registry
from alerts.policy import EscalationPolicy
from alerts.service import AlertService
from core.clock import VirtualClock
from core.config import Settings
from core.crypto import new_key
from core.db import Database
from dashboards.app import create_app
from simulators.servers import EmbeddedMosquitto
from tests.integration.dashboard_support import RecordingTelephony

DONG_A, DONG_B, DONG_C = "1111051500", "1111053000", "1114055000"  # 종로구 x2, 중구
PASSWORD = "enrol-pass-7Q!x"
NOW = datetime(2026, 12, 1, 1, 0, tzinfo=UTC)  # 10:00 in Seoul


@dataclass(frozen=True)
class District:
    app: FastAPI
    admin: str  # usernames; every account has PASSWORD
    manager: str
    other_admin: str
    admin_id: int
    manager_id: int
    resident_a: int  # in dong A (종로구)
    resident_c: int  # in dong C (중구)


@pytest.fixture
def district(
    database: Database, db_url: str, unique: str, broker: EmbeddedMosquitto
) -> Iterator[District]:
    with database.connection() as conn:
        registry.add_dong(conn, DONG_A, "청운효자동", "종로구")
        registry.add_dong(conn, DONG_B, "사직동", "종로구")
        registry.add_dong(conn, DONG_C, "소공동", "중구")
        admin_id = registry.add_care_manager(
            conn, f"adm{unique}", DONG_A, "박관리", "+821000000011", PASSWORD, role="admin"
        )
        manager_id = registry.add_care_manager(
            conn, f"mgr{unique}", DONG_B, "김복지", "+821000000012", PASSWORD
        )
        registry.add_care_manager(
            conn, f"jung{unique}", DONG_C, "최관리", "+821000000013", PASSWORD, role="admin"
        )
        resident_a = registry.add_resident(
            conn, f"home-a-{unique}", DONG_A, "이말순", "+821099990001"
        )
        resident_c = registry.add_resident(
            conn, f"home-c-{unique}", DONG_C, "정옥자", "+821099990003"
        )
    clock = VirtualClock(NOW)
    admin = broker.admin()  # gateways get their MQTT accounts from anbu
    settings = Settings(
        database_url=db_url, session_secret=f"s-{unique}" * 4, data_key=new_key(),
        mqtt_host=admin.host, mqtt_port=admin.port, broker_admin_username=admin.username,
        broker_admin_password=admin.password,
    )  # fmt: skip
    service = AlertService(
        database, RecordingTelephony(), EscalationPolicy(), clock, "http://dashboard.test"
    )
    app = create_app(database, settings, service)
    yield District(
        app, f"adm{unique}", f"mgr{unique}", f"jung{unique}", admin_id, manager_id,
        resident_a, resident_c,
    )  # fmt: skip


def rows(db: Database, sql: str, params: Any = None) -> list[tuple[Any, ...]]:
    with db.connection() as conn:
        return list(conn.execute(sql, params).fetchall())


def count(db: Database, table: str) -> int:
    return int(rows(db, f"SELECT count(*) FROM anbu.{table}")[0][0])


def registry_counts(db: Database) -> tuple[int, ...]:
    """Rows of every table an enrolment writes: equal before and after a refusal."""
    return tuple(
        count(db, t)
        for t in ("resident", "emergency_contact", "resident_changes", "gateway", "sensor")
    )
