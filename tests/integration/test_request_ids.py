"""Every web answer carries an X-Request-ID (the client's when well-formed, else a new one),
and the log lines and access-log reads of that request carry the same id (issue 22). Real app,
real PostgreSQL."""

from __future__ import annotations

import logging
import re

import pytest
from fastapi.testclient import TestClient

from core import logs
from core.db import Database
from tests.integration.dashboard_support import PASSWORD_A, Town, bearer, town

__all__ = ["town"]  # the fixture


def test_every_answer_carries_an_id_and_a_given_one_is_kept(town: Town) -> None:
    client = TestClient(town.app)
    ids = set()
    for path in ("/healthz", "/api/v1/alerts", "/login", "/api/v1/nowhere", "/static/style.css"):
        answer = client.get(path)
        rid = answer.headers["x-request-id"]
        assert re.fullmatch(r"[0-9a-f]{32}", rid), (path, rid)
        ids.add(rid)
    assert len(ids) == 5  # one per request
    kept = client.get("/healthz", headers={"X-Request-ID": "nginx-7f3a:01"})
    assert kept.headers["x-request-id"] == "nginx-7f3a:01"
    for odd in ("a b", "x" * 65, "<script>"):
        replaced = client.get("/healthz", headers={"X-Request-ID": odd})
        assert replaced.headers["x-request-id"] != odd
        assert re.fullmatch(r"[0-9a-f]{32}", replaced.headers["x-request-id"])


def test_log_lines_and_access_reads_carry_the_requests_id(
    town: Town, database: Database, caplog: pytest.LogCaptureFixture
) -> None:
    logs.install([caplog.handler])
    client = TestClient(town.app)
    with caplog.at_level(logging.INFO):
        refused = client.post(
            "/api/v1/token", data={"username": town.username_a, "password": "wrong"},
            headers={"X-Request-ID": "req-login-1"},
        )  # fmt: skip
    assert refused.status_code == 401
    said = [r for r in caplog.records if r.getMessage() == "login refused"]
    assert said and {getattr(r, "request_id", None) for r in said} == {"req-login-1"}
    outside = logging.LogRecord("x", logging.INFO, __file__, 1, "outside", None, None)
    assert logs.RequestIdFilter().filter(outside) and outside.request_id == "-"  # type: ignore[attr-defined]

    a = bearer(client, town.username_a, PASSWORD_A)
    card = client.get(f"/api/v1/residents/{town.resident_id}", headers=a)
    assert card.status_code == 200
    rid = card.headers["x-request-id"]
    with database.connection() as conn:
        row = conn.execute(
            "SELECT request_id FROM anbu.access_log ORDER BY id DESC LIMIT 1"
        ).fetchone()
    assert row == (rid,)  # the audit names the same request the client was told
