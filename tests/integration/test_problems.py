"""One error shape (issue 22): every /api/ error is an RFC 9457 problem, Korean first, with a
machine-readable code, 500 and 503 included, and the spec documents it once. Real app, real
PostgreSQL (the 503 is a real pool with no connection to give)."""

from __future__ import annotations

import logging
import time

import psycopg
import pytest
from fastapi.testclient import TestClient
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route, Router

from alerts.policy import EscalationPolicy
from alerts.service import AlertService
from core.clock import VirtualClock
from core.config import Settings
from core.db import Database
from dashboards import problems
from dashboards.app import create_app, edged_webhooks
from tests.integration.dashboard_support import (
    OPENED_AT,
    PASSWORD_A,
    RecordingTelephony,
    Town,
    bearer,
    login_page,
    town,
)

__all__ = ["town"]  # the fixture

FIELDS = {"type", "title", "status", "code", "detail", "detail_en", "errors", "instance"}


def _problem(response: object, status: int, code: str) -> dict[str, object]:
    assert response.status_code == status, response.text  # type: ignore[attr-defined]
    assert response.headers["content-type"] == "application/problem+json"  # type: ignore[attr-defined]
    body: dict[str, object] = response.json()  # type: ignore[attr-defined]
    assert set(body) >= FIELDS, body
    assert (body["status"], body["code"], body["type"]) == (
        status, code, f"urn:anbu:problem:{code}",
    )  # fmt: skip
    assert isinstance(body["detail"], str) and isinstance(body["detail_en"], str)
    return body


def test_refusals_are_problems_with_their_codes(town: Town) -> None:
    client = TestClient(town.app)
    assert _problem(client.get("/api/v1/alerts"), 401, "unauthenticated")["detail"]
    assert client.get("/api/v1/alerts").headers["www-authenticate"] == "Bearer"
    a = bearer(client, town.username_a, PASSWORD_A)
    missing = _problem(client.get("/api/v1/alerts/987654321", headers=a), 404, "not_found")
    assert missing["instance"] == "/api/v1/alerts/987654321"
    invalid = _problem(client.get("/api/v1/alerts?limit=101", headers=a), 422, "invalid")
    assert invalid["detail"] == "입력이 올바르지 않습니다." and invalid["errors"]
    bad_cursor = _problem(client.get("/api/v1/alerts?cursor=x", headers=a), 400, "bad_request")
    assert "cursor" in str(bad_cursor["detail"])
    early = client.post(
        f"/api/v1/alerts/{town.alert_id}/resolve", json={"outcome": "visited_ok"}, headers=a
    )
    illegal = _problem(early, 409, "illegal_resolve")
    assert illegal["state"] == "open"  # what it is now
    # the pages stay pages
    login_page(client, town.username_a, PASSWORD_A)
    page = client.get("/alerts/987654321")
    assert page.status_code == 404 and page.headers["content-type"].startswith("text/html")


def test_no_connection_in_time_is_503_with_retry_after(db_url: str, unique: str) -> None:
    database = Database(db_url, min_size=1, max_size=1)
    database.open()
    try:
        settings = Settings(database_url=db_url, session_secret=f"test-secret-{unique}")
        service = AlertService(database, RecordingTelephony(), EscalationPolicy(),
                               VirtualClock(OPENED_AT), "http://dashboard.test")  # fmt: skip
        client = TestClient(create_app(database, settings, service))
        database.pool.timeout = 0.5
        with database.connection():  # the only connection, held
            started = time.monotonic()
            answer = client.post("/api/v1/token", data={"username": "x", "password": "y"})
        assert time.monotonic() - started < 10
        body = _problem(answer, 503, "unavailable")
        assert answer.headers["retry-after"] == "5"
        assert "Traceback" not in answer.text and "PoolTimeout" not in answer.text
        assert body["detail_en"] == "Not available right now; try again shortly."
    finally:
        database.close()


def test_a_failure_nobody_handled_is_500_and_its_values_reach_no_log(
    town: Town, caplog: pytest.LogCaptureFixture
) -> None:
    def boom() -> None:  # a database refusal whose DETAIL names a row's values
        raise psycopg.errors.UniqueViolation(
            "duplicate key value\nDETAIL:  Key (phone)=(+821099998888) already exists."
        )

    town.app.add_api_route("/api/v1/boom", boom)
    town.app.add_api_route("/boom", boom)
    town.app.add_api_route("/twilio/boom", boom, methods=["POST"])

    async def twilio_boom(request: Request) -> Response:
        boom()
        return Response()

    # Twilio's webhooks served ahead of the dashboard (dashboards.app.WebhooksFirst) have the
    # same last stop
    webhooks = Router(routes=[Route("/twilio/boom", twilio_boom, methods=["POST"])])
    served = TestClient(edged_webhooks(webhooks, Settings(database_url="postgresql://unused")))
    client = TestClient(town.app)
    with caplog.at_level(logging.INFO):
        api = client.get("/api/v1/boom")
        page = client.get("/boom")
        twilio = client.post("/twilio/boom")
        webhook = served.post("/twilio/boom")
    body = _problem(api, 500, "internal")
    assert "99998888" not in api.text and "UniqueViolation" not in str(body)
    assert page.status_code == 500 and "서버에서 오류가 났습니다" in page.text
    assert twilio.status_code == 500 and twilio.text == "internal error"
    assert webhook.status_code == 500 and webhook.text == "internal error"
    assert "99998888" not in caplog.text
    for answer in (api, page, twilio, webhook):  # the headers every answer has, a 500 too
        assert "content-security-policy" in answer.headers
        assert answer.headers["x-request-id"]
    logged = caplog.text
    assert "UniqueViolation" in logged and "23505" in logged  # what and where, for the fix
    assert "99998888" not in logged and "already exists" not in logged


def test_only_what_may_pass_is_a_503() -> None:
    assert problems.passes(psycopg.OperationalError("server closed the connection"))
    assert problems.passes(psycopg.errors.SerializationFailure())
    assert problems.passes(psycopg.errors.AdminShutdown())
    assert not problems.passes(psycopg.errors.ProgramLimitExceeded())
    assert not problems.passes(psycopg.errors.QueryCanceled())
    assert not problems.passes(psycopg.errors.InvalidPassword())


def test_an_unhandled_failure_is_a_500_problem_without_its_trace(db_url: str, unique: str) -> None:
    database = Database(db_url)
    settings = Settings(database_url=db_url, session_secret=f"test-secret-{unique}")
    service = AlertService(
        database, RecordingTelephony(), EscalationPolicy(), VirtualClock(OPENED_AT),
        "http://dashboard.test",
    )  # fmt: skip
    client = TestClient(create_app(database, settings, service), raise_server_exceptions=False)
    answer = client.post("/api/v1/token", data={"username": "x", "password": "y"})  # never opened
    body = _problem(answer, 500, "internal")
    assert body["detail"] == "서버에서 오류가 났습니다. 잠시 뒤 다시 해 주세요."
    assert "Traceback" not in answer.text and "open()" not in answer.text


def test_the_spec_documents_the_problem_once(town: Town) -> None:
    spec = TestClient(town.app).get("/openapi.json").json()
    problem = spec["components"]["schemas"]["Problem"]
    assert set(problem["properties"]) >= FIELDS
    listed = spec["paths"]["/api/v1/alerts"]["get"]["responses"]
    for status in ("4XX", "5XX", "422"):
        content = listed[status]["content"]
        assert set(content) == {"application/problem+json"}, status
        assert content["application/problem+json"]["schema"]["$ref"].endswith("/Problem")
    # Twilio's callbacks are not the public API's
    assert not [p for p in spec["paths"] if p.startswith("/twilio/")]
    # every operation has a stable, unique id and a tag
    ids = [op["operationId"] for ops in spec["paths"].values() for op in ops.values()]
    assert len(ids) == len(set(ids))
    assert spec["paths"]["/api/v1/alerts"]["get"]["operationId"] == "list_alerts"
    # closed vocabularies are enums
    alert = spec["components"]["schemas"]["AlertOut"]["properties"]
    assert set(alert["severity"]["enum"]) == {"watch", "warning", "critical"}
