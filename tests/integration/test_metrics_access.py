"""/metrics tells per dong how many homes are silent or away: only Prometheus, with the bearer
token ANBU_METRICS_TOKEN, or on an internal port, may read it; `serve web` will not expose it
otherwise."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime

import httpx
import pytest
from fastapi.testclient import TestClient

from alerts.policy import EscalationPolicy
from alerts.service import AlertService
from anbu.service import build
from core.clock import VirtualClock
from core.config import Settings
from core.db import Database
from dashboards.app import create_app
from dashboards.metrics import serve_metrics
from simulators.servers import free_port
from tests.integration.dashboard_support import RecordingTelephony

NOW = datetime(2026, 11, 22, 9, 0, tzinfo=UTC)
TOKEN = "metrics-access-token-0123456789abcdef"
GOOD_SECRETS = {
    "ANBU_SESSION_SECRET": "a-session-secret-for-this-test-0123456789",
    "ANBU_TWILIO_AUTH_TOKEN": "a-twilio-token-for-this-test-0123456789",
}


def client_for(database: Database, db_url: str, **settings: object) -> TestClient:
    alerts = AlertService(database, RecordingTelephony(), EscalationPolicy(), VirtualClock(NOW), "")
    return TestClient(create_app(database, Settings(database_url=db_url, **settings), alerts))


def test_metrics_need_the_token(database: Database, db_url: str) -> None:
    client = client_for(database, db_url, metrics_token=TOKEN)
    missing = client.get("/metrics")
    assert missing.status_code == 401 and missing.headers["www-authenticate"] == "Bearer"
    assert missing.json()["detail"] == "인증이 필요합니다."
    for wrong in (f"Bearer {TOKEN[:-1]}", f"Bearer {TOKEN}x", f"Basic {TOKEN}", TOKEN):
        response = client.get("/metrics", headers={"Authorization": wrong})
        assert response.status_code in (401, 403), wrong
        assert "anbu_" not in response.text
    good = client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    assert good.status_code == 200 and "anbu_metrics_database_up 1.0" in good.text
    assert good.headers["cache-control"] == "no-store"


def test_without_a_token_the_web_port_serves_no_metrics(database: Database, db_url: str) -> None:
    client = client_for(database, db_url)
    for headers in ({}, {"Authorization": "Bearer "}, {"Authorization": "Bearer None"}):
        response = client.get("/metrics", headers=headers)
        assert response.status_code == 403
        assert "anbu_" not in response.text
        assert response.json()["detail"].startswith("지표는 ANBU_METRICS_TOKEN")


def test_the_internal_port_serves_them_and_asks_the_token_when_set(
    database: Database, db_url: str
) -> None:
    app = client_for(database, db_url).app
    port = free_port()
    server = serve_metrics(app.state.metrics_registry, "127.0.0.1", port)  # type: ignore[attr-defined]
    try:
        response = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10)
        assert response.status_code == 200 and "anbu_metrics_database_up 1.0" in response.text
    finally:
        server.shutdown()
        server.server_close()
    port = free_port()
    server = serve_metrics(app.state.metrics_registry, "127.0.0.1", port, TOKEN)  # type: ignore[attr-defined]
    try:
        url = f"http://127.0.0.1:{port}/metrics"
        assert httpx.get(url, timeout=10).status_code == 401
        assert httpx.get(url, headers={"Authorization": "Bearer x"}, timeout=10).status_code == 401
        good = httpx.get(url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10)
        assert good.status_code == 200 and "anbu_" in good.text
    finally:
        server.shutdown()
        server.server_close()


def test_serve_web_starts_the_internal_metrics_port_and_stops_it(
    settings: Settings, database: Database
) -> None:
    web_port, metrics_port = free_port(), free_port()
    runtime = build(
        settings.model_copy(update={"web_port": web_port, "web_metrics_port": metrics_port}),
        VirtualClock(NOW),
        run_migrations=False,
    )
    internal = f"http://127.0.0.1:{metrics_port}/metrics"
    try:
        runtime.start_web()
        assert httpx.get(internal, timeout=10).status_code == 200
        public = httpx.get(f"http://127.0.0.1:{web_port}/metrics", timeout=10)
        assert public.status_code == 403  # no token: not on the public port
    finally:
        runtime.stop()
    with pytest.raises(httpx.TransportError):
        httpx.get(internal, timeout=2)


def test_exposure_rules() -> None:
    assert Settings().ingest_metrics_host == "127.0.0.1"
    assert Settings().web_metrics_host == "127.0.0.1"
    assert len(Settings().metrics_exposure()) == 1
    assert Settings(web_metrics_port=9101).metrics_exposure() == []
    assert Settings(metrics_token=TOKEN).metrics_exposure() == []
    for weak in ("short", "x" * 40, "change-me"):
        [why] = Settings(metrics_token=weak).metrics_exposure()
        assert weak not in why and "ANBU_METRICS_TOKEN" in why


def test_serve_web_refuses_to_expose_metrics_without_a_token() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANBU_")}
    env |= GOOD_SECRETS | {"ANBU_DATABASE_URL": "postgresql://nobody@127.0.0.1:1/none"}
    done = subprocess.run(
        [sys.executable, "-m", "anbu.cli", "serve", "web"],
        capture_output=True, text=True, env=env, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr[-2000:]
    assert "ANBU_METRICS_TOKEN" in done.stderr
