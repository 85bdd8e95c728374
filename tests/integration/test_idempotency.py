"""Idempotency-Key (issue 22): a write sent again with the same key is done once and answered
as the first time; another request under the same key is refused; a key still in use waits.
Real app, real PostgreSQL."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime

from fastapi.testclient import TestClient

from core.db import Database
from tests.integration.dashboard_support import PASSWORD_A, Town, bearer, town

__all__ = ["town"]  # the fixture


def _events(database: Database, alert_id: int) -> int:
    with database.connection() as conn:
        row = conn.execute(
            "SELECT count(*) FROM anbu.alert_events WHERE alert_id = %s", (alert_id,)
        ).fetchone()
    return int(row[0]) if row else 0


def test_a_retried_write_is_done_once_and_answered_the_same(town: Town, database: Database) -> None:
    client = TestClient(town.app)
    a = bearer(client, town.username_a, PASSWORD_A)
    url = f"/api/v1/alerts/{town.alert_id}/acknowledge"
    keyed = {**a, "Idempotency-Key": "ack-7f3a-1"}
    before = _events(database, town.alert_id)
    first = client.post(url, json={"note": "방문 예정"}, headers=keyed)
    assert first.status_code == 200, first.text
    assert "idempotent-replayed" not in first.headers
    again = client.post(url, json={"note": "방문 예정"}, headers=keyed)
    assert again.status_code == 200 and again.headers["idempotent-replayed"] == "true"
    assert again.json() == first.json()
    assert _events(database, town.alert_id) == before + 1  # acknowledged once

    # without the key the same write is a new one: refused, the alert is taken already
    assert client.post(url, json={"note": "방문 예정"}, headers=a).status_code == 409
    # the same key for another request is refused and changes nothing
    other = client.post(url, json={"note": "다른 메모"}, headers=keyed)
    assert other.status_code == 422 and other.json()["code"] == "idempotency_key_reused"
    assert _events(database, town.alert_id) == before + 1
    # a key belongs to its token: the table holds a digest of it, never the token
    token = a["Authorization"].encode()
    with database.connection() as conn:
        owners = [bytes(r[0]) for r in conn.execute("SELECT owner FROM anbu.idempotency_keys")]
    assert owners == [hashlib.sha256(token).digest()]


def test_a_key_in_use_waits_and_a_bad_key_is_refused(town: Town, database: Database) -> None:
    client = TestClient(town.app)
    a = bearer(client, town.username_a, PASSWORD_A)
    url = f"/api/v1/alerts/{town.alert_id}/acknowledge"
    owner = hashlib.sha256(a["Authorization"].encode()).digest()
    with database.connection() as conn:  # the first request under this key is still running
        conn.execute(
            """INSERT INTO anbu.idempotency_keys (owner, key, request_hash, created_at)
               VALUES (%s, 'busy-1', %s, %s)""",
            (owner, hashlib.sha256(b"POST\0" + url.encode() + b"\0\0{}").digest(),
             datetime.now(UTC)),
        )  # fmt: skip
    busy = client.post(
        url,
        content=b"{}",
        headers={**a, "Idempotency-Key": "busy-1", "Content-Type": "application/json"},
    )
    assert busy.status_code == 409 and busy.json()["code"] == "idempotency_in_progress"
    assert busy.headers["retry-after"] == "1"
    for bad in ("has space", "x" * 256):
        refused = client.post(url, json={}, headers={**a, "Idempotency-Key": bad})
        assert refused.status_code == 400 and refused.json()["code"] == "bad_idempotency_key"
    assert _events(database, town.alert_id) == 1  # still only opened
