"""The whole web app as `anbu serve web` builds it (pages, API, metrics, Twilio webhooks) over
the dashboard tests' town, and a way to call every one of its routes."""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from psycopg import sql
from starlette.routing import BaseRoute, Mount, Route

import registry
from alerts.policy import EscalationPolicy
from alerts.service import AlertService
from calls.client import make_twilio_client
from calls.service import CallService
from calls.webhooks import build_router
from core.clock import VirtualClock
from core.config import Settings
from core.db import Database
from dashboards.app import create_app
from tests.integration.dashboard_support import (
    OPENED_AT,
    PASSWORD_A,
    PASSWORD_B,
    RecordingTelephony,
    Town,
    bearer,
    login_page,
)

AUTH_TOKEN = "edge-test-twilio-auth-token-0123456789abcdef"
METRICS_TOKEN = "edge-test-metrics-token-0123456789abcdef"
BASE_URL = "http://testserver"  # TestClient's; the webhooks are signed for it
MAX_BODY = 65536


@dataclass(frozen=True)
class Edge:
    """The full app, what its path ids stand for, and one browser per dong."""

    app: FastAPI
    town: Town
    call_id: int
    gateway_id: str
    settings: Settings

    def ids(self) -> dict[str, str]:
        """Path parameters: dong A's alert, resident, gateway and call."""
        return {
            "alert_id": str(self.town.alert_id),
            "resident_id": str(self.town.resident_id),
            "gateway_id": self.gateway_id,
            "call_id": str(self.call_id),
            "sensor_id": "1",  # the enrolment routes' sensors: none needed to be refused
            "question": "meal",  # the conversation's answer webhook
            "request_id": "1",  # service requests: none needed to be refused
            "message_id": "1",  # line messages' recordings
            "webhook_id": "1",  # webhook subscriptions: admins only, refused here
            "account_id": "1",  # service accounts: admins only, refused here
        }

    def client(self, who: str | None, how: str = "page") -> TestClient:
        """A browser logged in as dong `who` ('a', 'b'), or nobody; `how`='api': a bearer token."""
        client = TestClient(self.app, base_url=BASE_URL)
        if who is None:
            return client
        username = self.town.username_a if who == "a" else self.town.username_b
        password = PASSWORD_A if who == "a" else PASSWORD_B
        if how == "api":
            client.headers.update(bearer(client, username, password))
        else:
            login_page(client, username, password)
        return client


@pytest.fixture
def edge(town: Town, database: Database, db_url: str, unique: str) -> Iterator[Edge]:
    with database.connection() as conn:
        registry.add_gateway(conn, f"gw-{unique}", town.resident_id)
        row = conn.execute(
            """INSERT INTO anbu.calls (idempotency_key, resident_id, alert_id, status, created_at,
                                       updated_at)
               VALUES (%s, %s, %s, 'ringing', %s, %s) RETURNING id""",
            (f"edge-{unique}", town.resident_id, town.alert_id, OPENED_AT, OPENED_AT),
        ).fetchone()
    assert row is not None
    settings = Settings(
        database_url=db_url,
        session_secret=f"edge-session-secret-{unique}-0123456789",
        twilio_auth_token=AUTH_TOKEN,
        twilio_api_base_url="http://127.0.0.1:9",  # never dialled here
        public_base_url=BASE_URL,
        metrics_token=METRICS_TOKEN,
        web_max_body_bytes=MAX_BODY,
    )
    clock = VirtualClock(OPENED_AT)
    alerts = AlertService(
        database, RecordingTelephony(), EscalationPolicy(), clock, "http://dashboard.test"
    )
    calls = CallService(database, make_twilio_client(settings), settings, clock)
    app = create_app(database, settings, alerts, build_router(calls, settings))
    yield Edge(app, town, int(row[0]), f"gw-{unique}", settings)


def routes(app: FastAPI) -> list[tuple[str, str]]:
    """Every (method, path template) the app answers, the static mount's one file included.

    FastAPI keeps an included router as one entry of `app.routes` (its routes inside, under
    `original_router`), so the walk goes into those."""
    found: list[tuple[str, str]] = []

    def walk(entries: Iterable[BaseRoute], prefix: str) -> None:
        for route in entries:
            inner = getattr(route, "original_router", None)
            if inner is not None:
                context = getattr(route, "include_context", None)
                walk(inner.routes, prefix + str(getattr(context, "prefix", "")))
            elif isinstance(route, Mount):
                found.append(("GET", prefix + route.path + "/style.css"))
            elif isinstance(route, Route):
                for method in sorted(route.methods or ()):
                    if method != "HEAD":
                        # a template as FastAPI writes it: {call_id}, not {call_id:int}
                        found.append(
                            (method, re.sub(r"\{(\w+):\w+\}", r"{\1}", prefix + route.path))
                        )

    walk(app.routes, "")
    webhooks = getattr(app.state, "webhooks", None)  # Twilio's, served ahead of the dashboard
    if webhooks is not None:
        walk(webhooks.routes, "")
    return found


def fill(path: str, ids: dict[str, str]) -> str:
    """A path template with its parameters filled from `ids`."""

    def one(match: re.Match[str]) -> str:
        return ids[match.group(1).split(":")[0]]

    return re.sub(r"\{([^}]+)\}", one, path)


def snapshot(database: Database) -> dict[str, Any]:
    """Every row of every table of the anbu schema, as text: equal means nothing changed."""
    with database.connection() as conn:
        tables = [
            r[0]
            for r in conn.execute(
                """SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                   WHERE n.nspname = 'anbu' AND c.relkind IN ('r', 'p') AND NOT c.relispartition
                   ORDER BY 1"""
            ).fetchall()
        ]
        return {
            t: conn.execute(
                sql.SQL(
                    "SELECT coalesce(array_agg(x::text ORDER BY x::text), '{{}}') FROM {} x"
                ).format(sql.Identifier("anbu", t))
            ).fetchone()
            for t in tables
        }
