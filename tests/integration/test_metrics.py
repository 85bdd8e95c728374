"""/metrics against real PostgreSQL: the right aggregates, nothing personal, no 500 without the
database; and the ingest worker's counters on their own port."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import psycopg
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

import registry
from alerts.policy import EscalationPolicy
from alerts.service import AlertService
from anbu.service import build
from core.clock import VirtualClock
from core.config import Settings
from core.crypto import Keyring, new_key
from core.db import Database
from core.domain import SensorKind
from dashboards.app import create_app
from dashboards.metrics import DB_METRICS
from simulators.servers import EmbeddedMosquitto
from tests.conftest import PgServer
from tests.integration.dashboard_support import RecordingTelephony
from tests.integration.test_ingest_consumer import Gateway, clear_session, eventually

NOW = datetime(2026, 11, 22, 9, 0, tzinfo=UTC)
DONG_A, DONG_B = "1111051500", "1111053000"
NAMES = ("김순자", "박영희", "이말순", "최복동")
PHONES = ("+821011110001", "+821011110002", "+821011110003", "+821011110004")
NOTES = "당뇨, 인슐린 복용"
# Prometheus sends it as a bearer token (ANBU_METRICS_TOKEN); test_metrics_access.py checks
# the refusals without it.
METRICS_TOKEN = "metrics-token-for-the-tests-0123456789"
SCRAPER = {"Authorization": f"Bearer {METRICS_TOKEN}"}
CONNECTION_REFUSED = r"(?i)refused|connection attempts failed"
ALLOWED_LABELS = {"dong", "kind", "severity", "state", "status", "over", "purpose", "name",
                  "district"}  # fmt: skip

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def samples(text: str) -> Samples:
    """Every sample of a Prometheus text exposition by (name, labels)."""
    out: Samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def value(found: Samples, metric: str, /, **labels: str) -> float | None:
    return found.get((metric, frozenset(labels.items())))


def app_for(db: Database, db_url: str, clock: VirtualClock, **settings: Any) -> FastAPI:
    alerts = AlertService(db, RecordingTelephony(), EscalationPolicy(), clock, "http://t.test")
    settings.setdefault("metrics_token", METRICS_TOKEN)
    return create_app(db, Settings(database_url=db_url, **settings), alerts)


def _alert(conn: psycopg.Connection[Any], resident: int, kind: str, severity: str,
           state: str) -> None:  # fmt: skip
    conn.execute(
        """INSERT INTO anbu.alerts (resident_id, kind, severity, state, opened_at, updated_at)
           VALUES (%s, %s, %s, %s, %s, %s)""",
        (resident, kind, severity, state, NOW - timedelta(hours=2), NOW),
    )


@pytest.fixture
def seeded(database: Database, unique: str) -> dict[str, Any]:
    """Two dongs: A with two open alerts (and a resolved one), B with one; a silent home, ..."""
    with database.connection() as conn:
        registry.add_dong(conn, DONG_A, "청운효자동", "종로구")
        registry.add_dong(conn, DONG_B, "사직동", "종로구")
        homes = [f"home-{unique}-{i}" for i in range(4)]
        ring = Keyring.of(new_key())  # notes are sealed at rest
        a1, a2, a3 = (
            registry.add_resident(
                conn, homes[i], DONG_A, NAMES[i], PHONES[i], notes=NOTES, keyring=ring
            )
            for i in range(3)
        )
        b1 = registry.add_resident(
            conn, homes[3], DONG_B, NAMES[3], PHONES[3], notes=NOTES, keyring=ring
        )
        conn.execute("UPDATE anbu.resident SET status = 'hospital' WHERE id = %s", (a3,))
        _alert(conn, a1, "inactivity", "warning", "open")
        _alert(conn, a2, "inactivity", "warning", "open")
        _alert(conn, a1, "help", "critical", "resolved")
        _alert(conn, b1, "not_back", "watch", "acknowledged")
        for resident, kind, hours_ago in ((a1, "inactivity", 2), (a2, "inactivity", 3),
                                          (b1, "not_back", 30)):  # fmt: skip
            conn.execute(
                """INSERT INTO anbu.findings (resident_id, kind, severity, raised_at, reason_ko,
                                              reason_en)
                   VALUES (%s, %s, 'warning', %s, '사유', 'reason')""",
                (resident, kind, NOW - timedelta(hours=hours_ago)),
            )
        # a1 silent 13 h (past 6 h and 12 h, not 24 h); a2 seen lately; a3 is in hospital
        # (silent, but not counted); b1 never reported.
        for resident, hours_ago in ((a1, 13), (a2, 1), (a3, 40)):
            conn.execute(
                """INSERT INTO anbu.home_activity (resident_id, last_activity_at)
                   VALUES (%s, %s)""",
                (resident, NOW - timedelta(hours=hours_ago)),
            )
        registry.add_gateway(conn, f"{unique}-gw1", a1)
        registry.add_gateway(conn, f"{unique}-gw2", a2)
        registry.add_gateway(conn, f"{unique}-gw3", b1)
        conn.execute("UPDATE anbu.gateway SET online = true WHERE id = %s", (f"{unique}-gw1",))
        conn.execute("UPDATE anbu.gateway SET online = false WHERE id = %s", (f"{unique}-gw2",))
        sensor = registry.add_sensor(conn, f"{unique}-gw1", "pir1", SensorKind.MOTION, "living")
        for minutes_ago in (1, 2, 30):
            conn.execute(
                "INSERT INTO anbu.readings (ts, sensor_id, value, received_at) VALUES (%s, %s, 1, %s)",
                (NOW - timedelta(minutes=minutes_ago + 1), sensor,
                 NOW - timedelta(minutes=minutes_ago)),
            )  # fmt: skip
        for minutes_ago in (10, 300):
            conn.execute(
                """INSERT INTO anbu.dead_letters (received_at, topic, payload, reason)
                   VALUES (%s, %s, %s, 'not JSON')""",
                (NOW - timedelta(minutes=minutes_ago), f"gw/{unique}-gw1/anbu/readings", b"{x"),
            )
        for key, status, hours_ago in (("c1", "completed", 1), ("c2", "no-answer", 2),
                                       ("c3", "completed", 3), ("c4", "completed", 30)):  # fmt: skip
            conn.execute(
                """INSERT INTO anbu.calls (idempotency_key, resident_id, status, created_at,
                                           updated_at)
                   VALUES (%s, %s, %s, %s, %s)""",
                (f"{unique}-{key}", a1, status, NOW - timedelta(hours=hours_ago), NOW),
            )
        conn.execute(
            """INSERT INTO anbu.incidents (kind, started_at, gateways, dong_codes, reason_ko,
                                           reason_en, updated_at)
               VALUES ('site_outage', %s, 12, %s, '정전', 'power cut', %s)""",
            (NOW - timedelta(minutes=20), [DONG_B], NOW),
        )
    return {"homes": homes, "residents": (a1, a2, a3, b1)}


def test_metrics_count_what_the_database_holds(
    database: Database, db_url: str, seeded: dict[str, Any]
) -> None:
    client = TestClient(app_for(database, db_url, VirtualClock(NOW)), headers=SCRAPER)
    response = client.get("/metrics")  # no login: Prometheus scrapes it with its token
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    found = samples(response.text)

    assert value(found, "anbu_metrics_database_up") == 1
    open_a = dict(dong=DONG_A, kind="inactivity", severity="warning", state="open")
    assert value(found, "anbu_alerts_open", **open_a) == 2
    assert value(found, "anbu_alerts_open", dong=DONG_B, kind="not_back", severity="watch",
                 state="acknowledged") == 1  # fmt: skip
    assert sum(v for (n, _), v in found.items() if n == "anbu_alerts_open") == 3  # resolved: no
    assert value(found, "anbu_findings_raised_24h", kind="inactivity", severity="warning") == 2
    assert value(found, "anbu_findings_raised_24h", kind="not_back", severity="warning") is None
    assert value(found, "anbu_homes", dong=DONG_A, status="active") == 2
    assert value(found, "anbu_homes", dong=DONG_A, status="hospital") == 1
    assert value(found, "anbu_homes", dong=DONG_B, status="active") == 1
    assert value(found, "anbu_homes_silent", dong=DONG_A, over="6h") == 1
    assert value(found, "anbu_homes_silent", dong=DONG_A, over="12h") == 1
    assert value(found, "anbu_homes_silent", dong=DONG_A, over="24h") is None
    assert value(found, "anbu_homes_without_activity", dong=DONG_B) == 1
    assert value(found, "anbu_gateways", dong=DONG_A, state="online") == 1
    assert value(found, "anbu_gateways", dong=DONG_A, state="offline") == 1
    assert value(found, "anbu_gateways", dong=DONG_B, state="unknown") == 1
    assert value(found, "anbu_dead_letters_total") == 2
    assert value(found, "anbu_dead_letters_last_hour") == 1
    assert value(found, "anbu_readings_stored_5m") == 2
    assert value(found, "anbu_calls_24h", purpose="check_in", status="completed") == 2
    assert value(found, "anbu_calls_24h", purpose="check_in", status="no-answer") == 1
    assert value(found, "anbu_site_incidents_open") == 1
    assert value(found, "anbu_dong_info", dong=DONG_B, name="사직동", district="종로구") == 1
    for metric in DB_METRICS:
        assert f"# HELP {metric.name}" in response.text, metric.name

    # Aggregates only: no name, phone, notes or home id, no per-resident label.
    for secret in (*NAMES, *PHONES, NOTES, *seeded["homes"]):
        assert secret not in response.text
    labels = {label for (_, pairs) in found for label, _ in pairs}
    assert labels <= ALLOWED_LABELS, labels - ALLOWED_LABELS


def test_an_unreachable_database_is_a_gauge_not_a_500(
    db_url: str, pg_server: PgServer, seeded: dict[str, Any]
) -> None:
    name = db_url.rpartition("/")[2]
    db = Database(db_url, min_size=1, max_size=2)
    db.open()
    client = TestClient(
        app_for(db, db_url, VirtualClock(NOW), metrics_timeout_s=0.5), headers=SCRAPER
    )

    def admin(sql: str) -> None:
        with psycopg.connect(pg_server.admin_dsn, autocommit=True) as conn:
            conn.execute(sql)

    try:
        assert value(samples(client.get("/metrics").text), "anbu_metrics_database_up") == 1
        admin(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
        admin(f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'")
        response = client.get("/metrics")
        assert response.status_code == 200
        found = samples(response.text)
        assert value(found, "anbu_metrics_database_up") == 0
        assert not any(n.startswith("anbu_alerts_open") for n, _ in found)  # absent, not zero

        admin(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
        eventually(
            lambda: value(samples(client.get("/metrics").text), "anbu_metrics_database_up") == 1,
            timeout=30,
            what="the database back",
        )
    finally:
        admin(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
        db.close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def runtime_settings(settings: Settings) -> Iterator[Settings]:
    yield settings.model_copy(update={"ingest_metrics_port": _free_port()})
    clear_session(settings)


def test_ingest_counters_are_served_when_asked(
    runtime_settings: Settings, database: Database, broker: EmbeddedMosquitto, unique: str
) -> None:
    gateway_id = f"{unique}-gw"
    with database.connection() as conn:
        registry.add_dong(conn, DONG_A, "청운효자동", "종로구")
        resident = registry.add_resident(conn, f"{unique}-h", DONG_A, NAMES[0], PHONES[0])
        registry.add_gateway(conn, gateway_id, resident)
        registry.add_sensor(conn, gateway_id, "door1", SensorKind.DOOR, "entrance")
    broker.add_user(gateway_id, "gw-test-password")
    runtime = build(runtime_settings, VirtualClock(NOW), run_migrations=False)
    url = f"http://127.0.0.1:{runtime_settings.ingest_metrics_port}/metrics"
    gateway = Gateway(broker, gateway_id)
    try:
        runtime.start_ingest()
        assert runtime.ingest is not None
        eventually(runtime.ingest.subscribed.is_set, what="subscription")
        gateway.readings(("door1", "door", NOW - timedelta(minutes=1), 1))
        gateway.publish(f"gw/{gateway_id}/anbu/readings", b"{not json")

        def scraped() -> Samples | None:
            found = samples(httpx.get(url, timeout=5).text)
            done = value(found, "anbu_ingest_stored_total") == 1
            return found if done and value(found, "anbu_ingest_dead_lettered_total") == 1 else None

        found = eventually(scraped, what="ingest counters")
        assert value(found, "anbu_ingest_messages_total") == 2
        assert value(found, "anbu_ingest_acked_total") == 2
        for counter in ("batches", "db_errors", "connects", "duplicates", "restarts"):
            assert value(found, f"anbu_ingest_{counter}_total") is not None, counter
    finally:
        gateway.close()
        runtime.stop()
    with pytest.raises(httpx.ConnectError, match=CONNECTION_REFUSED):
        httpx.get(url, timeout=2)
