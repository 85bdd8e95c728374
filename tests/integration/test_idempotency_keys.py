"""`Idempotency-Key` on the API's POSTs (issue 22), on the real app over a real PostgreSQL.

A retry with the same key gets the first answer again and nothing is done twice; another request
under the key is refused; a key still being worked on, or whose answer held a secret or was lost
to a failure after the write, is told so and never carried out twice; a key whose holder stopped
before writing is taken over; a holder whose key was taken over cannot write; the answer is kept
sealed; keys are their principal's, and are forgotten after a day.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

import registry
from core.crypto import Keyring, new_key
from core.db import Database, watched
from dashboards import idempotency
from registry.key_rotation import api_answer_field, key_census, rotate_keys
from tests.integration.dashboard_support import (
    DONG_A,
    PASSWORD_A,
    PASSWORD_B,
    RESIDENT_NAME,
    Town,
    app_with_key,
    bearer,
    town,
)

__all__ = ["town"]  # the fixture
ADMIN_PASSWORD = "admin-pass-9z"
NOTE = "오전 방문: 무릎 통증 호소, 병원 동행 필요"
KEY = new_key()


@pytest.fixture
def app(town: Town, database: Database, db_url: str, unique: str) -> FastAPI:
    """The town's app with a data key: kept answers are sealed under it."""
    return app_with_key(database, db_url, unique, KEY)


def _acks(database: Database, alert_id: int) -> int:
    with database.connection() as conn:
        row = conn.execute(
            "SELECT count(*) FROM anbu.alert_events WHERE alert_id = %s AND to_state = 'acknowledged'",
            (alert_id,),
        ).fetchone()
    assert row is not None
    return int(row[0])


def _manager_a(app: FastAPI, town: Town) -> tuple[TestClient, dict[str, str]]:
    """A client of dong A's care manager and their bearer token."""
    client = TestClient(app)
    return client, bearer(client, town.username_a, PASSWORD_A)


def _keyed(headers: dict[str, str], key: str) -> dict[str, str]:
    return {**headers, idempotency.HEADER: key}


def test_a_retry_with_the_same_key_gets_the_first_answer_and_acts_once(
    app: FastAPI, town: Town, database: Database
) -> None:
    client, auth = _manager_a(app, town)
    url = f"/api/v1/alerts/{town.alert_id}/acknowledge"
    first = client.post(url, json={"note": "방문 예정"}, headers=_keyed(auth, "ack-1"))
    again = client.post(url, json={"note": "방문 예정"}, headers=_keyed(auth, "ack-1"))
    assert (first.status_code, again.status_code) == (200, 200), again.text
    assert again.json() == first.json()
    assert again.headers[idempotency.REPLAYED] == "true"
    assert idempotency.REPLAYED not in first.headers
    assert again.headers["etag"] == first.headers["etag"]
    assert _acks(database, town.alert_id) == 1
    # without a key the same retry is the alert's own refusal: it was taken already
    bare = client.post(url, json={"note": "방문 예정"}, headers=auth)
    assert (bare.status_code, bare.json()["code"]) == (409, "illegal_acknowledge"), bare.text
    # the same key with another request: refused, whatever it asks
    other = client.post(url, json={"note": "다른 내용"}, headers=_keyed(auth, "ack-1"))
    assert (other.status_code, other.json()["code"]) == (422, "idempotency_key_reused")
    assert _acks(database, town.alert_id) == 1


def test_a_key_is_its_principal_s_and_a_refusal_that_changed_nothing_is_asked_again(
    app: FastAPI, town: Town, database: Database
) -> None:
    client = TestClient(app)
    a = bearer(client, town.username_a, PASSWORD_A)
    b = bearer(client, town.username_b, PASSWORD_B)
    url = f"/api/v1/alerts/{town.alert_id}/acknowledge"
    # B's key "k" is B's: B sees no alert of dong A (404), which changed nothing: not kept
    refused = client.post(url, json={}, headers=_keyed(b, "k"))
    assert refused.status_code == 404
    mine = client.post(url, json={}, headers=_keyed(a, "k"))
    assert mine.status_code == 200, mine.text
    again = client.post(url, json={}, headers=_keyed(b, "k"))
    assert again.status_code == 404 and idempotency.REPLAYED not in again.headers
    with database.connection() as conn:
        kept = conn.execute(
            "SELECT principal_id FROM anbu.api_idempotency WHERE key = 'k'"
        ).fetchall()
    assert kept == [(town.manager_a,)]
    assert _acks(database, town.alert_id) == 1


def test_a_kept_answer_is_not_shown_once_its_caller_s_dongs_changed(
    app: FastAPI, town: Town, database: Database
) -> None:
    client, auth = _manager_a(app, town)
    url = f"/api/v1/alerts/{town.alert_id}/acknowledge"
    first = client.post(url, json={}, headers=_keyed(auth, "ack-moved"))
    assert first.status_code == 200
    with database.connection() as conn:
        conn.execute(
            "UPDATE anbu.care_manager SET role = 'supervisor' WHERE id = %s", (town.manager_a,)
        )
    again = client.post(url, json={}, headers=_keyed(auth, "ack-moved"))
    assert (again.status_code, again.json()["code"]) == (409, "idempotency_grant_changed")
    assert RESIDENT_NAME not in again.text
    assert _acks(database, town.alert_id) == 1


def _claim_row(
    database: Database, principal: int, key: str, age_s: int, applied: bool, fingerprint: bytes
) -> uuid.UUID:
    """A claim as a request left it `age_s` ago (its first use and last renewal); its lease."""
    lease = uuid.uuid4()
    with database.connection() as conn:
        conn.execute(
            """INSERT INTO anbu.api_idempotency
                      (principal_id, key, fingerprint, grant_hash, path, lease, first_at,
                       claimed_at, applied_at)
               VALUES (%s, %s, %s, decode(repeat('00', 32), 'hex'), '/api/v1/x', %s,
                       now() - make_interval(secs => %s),
                       now() - make_interval(secs => %s),
                       CASE WHEN %s THEN now() - make_interval(secs => %s) END)""",
            (principal, key, fingerprint, lease, age_s, age_s, applied, age_s),
        )
    return lease


def _holding(database: Database, principal: int, key: str, age_s: int) -> idempotency.Pending:
    """A request holding a claim on `key`, as the middleware and `claim` would leave it."""
    pending = idempotency.Pending(key, bytes(32), "/api/v1/x", principal)
    pending.lease = _claim_row(database, principal, key, age_s, False, pending.fingerprint)
    return pending


def _fingerprint_of(database: Database, principal: int, key: str) -> bytes:
    with database.connection() as conn:
        row = conn.execute(
            "SELECT fingerprint FROM anbu.api_idempotency WHERE principal_id = %s AND key = %s",
            (principal, key),
        ).fetchone()
    assert row is not None
    return bytes(row[0])


def test_a_key_being_worked_on_waits_one_whose_holder_stopped_before_writing_is_taken_over(
    app: FastAPI, town: Town, database: Database, unique: str
) -> None:
    secret = f"test-secret-{unique}"
    client, auth = _manager_a(app, town)
    url = f"/api/v1/alerts/{town.alert_id}/acknowledge"
    # what TestClient sends: the app's session secret, the JSON body and its type
    fingerprint = idempotency.fingerprint(
        secret, "POST", url, b"", [(b"content-type", b"application/json")], b"{}"
    )
    _claim_row(database, town.manager_a, "busy", 5, False, fingerprint)
    busy = client.post(url, json={}, headers=_keyed(auth, "busy"))
    assert (busy.status_code, busy.json()["code"]) == (409, "idempotency_in_progress")
    assert int(busy.headers["retry-after"]) >= 1
    assert _acks(database, town.alert_id) == 0

    _claim_row(database, town.manager_a, "died", idempotency.LEASE_S + 5, False, fingerprint)
    taken = client.post(url, json={}, headers=_keyed(auth, "died"))
    assert taken.status_code == 200, taken.text
    assert _acks(database, town.alert_id) == 1


def test_an_answer_lost_after_the_write_is_never_carried_out_again(
    app: FastAPI, town: Town, database: Database
) -> None:
    client, auth = _manager_a(app, town)
    url = f"/api/v1/residents/{town.resident_id}/notes"
    probe = client.post(url, json={"body": NOTE}, headers=_keyed(auth, "probe"))
    assert probe.status_code == 201, probe.text
    fingerprint = _fingerprint_of(database, town.manager_a, "probe")
    # the process died between the note's commit (which marked the key) and keeping its answer
    _claim_row(database, town.manager_a, "crashed", idempotency.LEASE_S + 5, True, fingerprint)
    lost = client.post(url, json={"body": NOTE}, headers=_keyed(auth, "crashed"))
    assert (lost.status_code, lost.json()["code"]) == (409, "idempotency_answer_lost")
    assert "다시 실행하지 않았습니다" in lost.json()["detail"]
    # and while its holder may still be answering, the retry waits
    _claim_row(database, town.manager_a, "answering", 1, True, fingerprint)
    wait = client.post(url, json={"body": NOTE}, headers=_keyed(auth, "answering"))
    assert (wait.status_code, wait.json()["code"]) == (409, "idempotency_in_progress")
    with database.connection() as conn:
        row = conn.execute(
            "SELECT count(*) FROM anbu.care_note WHERE resident_id = %s", (town.resident_id,)
        ).fetchone()
    assert row == (1,)


def test_the_kept_answer_is_sealed(app: FastAPI, town: Town, database: Database) -> None:
    client, auth = _manager_a(app, town)
    url = f"/api/v1/residents/{town.resident_id}/notes"
    first = client.post(url, json={"body": NOTE}, headers=_keyed(auth, "note-1"))
    again = client.post(url, json={"body": NOTE}, headers=_keyed(auth, "note-1"))
    assert (first.status_code, again.status_code) == (201, 201)
    assert again.json() == first.json() and again.json()["body"] == NOTE
    with database.connection() as conn:
        row = conn.execute(
            "SELECT body, body_key_id, status, kept FROM anbu.api_idempotency WHERE key = 'note-1'"
        ).fetchone()
    assert row is not None and row[1] is not None and row[2:] == (201, "answer")
    assert NOTE.encode() not in bytes(row[0]) and b"body" not in bytes(row[0])


def test_a_key_rotation_counts_and_reseals_the_kept_answers(
    app: FastAPI, town: Town, database: Database
) -> None:
    client, auth = _manager_a(app, town)
    url = f"/api/v1/residents/{town.resident_id}/notes"
    first = client.post(url, json={"body": NOTE}, headers=_keyed(auth, "rot-1"))
    assert first.status_code == 201
    old, new = Keyring.of(KEY), Keyring.of(new_key(), [KEY])
    with database.connection() as conn:
        assert key_census(conn).by_key.get(old.current_id, 0) >= 2  # the note and its answer
        rotate_keys(conn, new)
        census = key_census(conn).by_key
        row = conn.execute(
            "SELECT body, body_key_id FROM anbu.api_idempotency WHERE key = 'rot-1'"
        ).fetchone()
    assert old.current_id not in census and census[new.current_id] >= 2
    assert row is not None and row[1] == new.current_id
    opened = new.open(bytes(row[0]), row[1], api_answer_field(town.manager_a, "rot-1"))
    assert json.loads(opened.encode("latin-1")) == first.json()


def test_a_secret_shown_once_is_not_kept_and_not_made_twice(
    app: FastAPI, town: Town, database: Database, unique: str
) -> None:
    with database.connection() as conn:
        registry.add_care_manager(
            conn, f"adm{unique}", DONG_A, "박관리", "+821000000009", ADMIN_PASSWORD, role="admin"
        )
    client = TestClient(app)
    admin = bearer(client, f"adm{unique}", ADMIN_PASSWORD)
    body = {"name": "통합정보시스템", "scopes": ["alerts:read"], "dongs": [DONG_A]}
    headers = _keyed(admin, "sa-1")
    made = client.post("/api/v1/service-accounts", json=body, headers=headers)
    assert made.status_code == 201, made.text
    again = client.post("/api/v1/service-accounts", json=body, headers=headers)
    assert (again.status_code, again.json()["code"]) == (409, "idempotency_answer_withheld")
    with database.connection() as conn:
        rows = conn.execute(
            """SELECT (SELECT count(*) FROM anbu.service_account),
                      (SELECT count(*) FROM anbu.api_idempotency
                        WHERE key = 'sa-1' AND body IS NULL AND kept = 'withheld')"""
        ).fetchone()
    assert rows == (1, 1)
    assert made.json()["token"].split("_")[-1] not in again.text
    # a refusal on such a route showed no secret and changed nothing: asked again
    wrong = {**body, "dongs": ["1168064000"]}
    refused = [
        client.post("/api/v1/service-accounts", json=wrong, headers=_keyed(admin, "sa-2"))
        for _ in range(2)
    ]
    assert [r.status_code for r in refused] == [422, 422]
    assert idempotency.REPLAYED not in refused[1].headers
    assert refused[1].json()["code"] == refused[0].json()["code"] == "service_account_dongs"


def test_a_holder_whose_key_was_taken_over_cannot_write(town: Town, database: Database) -> None:
    """The mark rides in the writing transaction under the lease: a lease taken over fails it,
    and the write is rolled back with it; a block with savepoints inside is one transaction."""
    pending = _holding(database, town.manager_a, "k-lease", 0)
    with watched(pending):
        with database.connection() as conn:  # only reads: no mark
            conn.execute("SELECT count(*) FROM anbu.resident")
        with database.connection() as conn, conn.transaction():  # a savepoint now, not a commit
            conn.execute(
                "UPDATE anbu.resident SET language = 'en' WHERE id = %s", (town.resident_id,)
            )
    with database.connection() as conn:
        row = conn.execute(
            "SELECT applied_at IS NOT NULL FROM anbu.api_idempotency WHERE key = 'k-lease'"
        ).fetchone()
        assert row == (True,)
        conn.execute(
            "UPDATE anbu.api_idempotency SET lease = %s, applied_at = NULL WHERE key = 'k-lease'",
            (uuid.uuid4(),),
        )
    with (
        watched(pending),
        pytest.raises(idempotency.Answered) as refused,
        database.connection() as conn,
        conn.transaction(),
    ):
        conn.execute("UPDATE anbu.resident SET language = 'ko' WHERE id = %s", (town.resident_id,))
    assert refused.value.response.status_code == 409 and pending.lost
    with database.connection() as conn:
        row = conn.execute(
            """SELECT language, (SELECT applied_at FROM anbu.api_idempotency WHERE key = 'k-lease')
                 FROM anbu.resident WHERE id = %s""",
            (town.resident_id,),
        ).fetchone()
    assert row == ("en", None)


def test_a_failure_before_any_write_gives_the_key_back(town: Town, database: Database) -> None:
    pending = _holding(database, town.manager_a, "k-503", 0)
    idempotency._finish(database, None, pending, 503, [], b"{}", False)
    with database.connection() as conn:
        gone = conn.execute(
            "SELECT count(*) FROM anbu.api_idempotency WHERE key = 'k-503'"
        ).fetchone()
    assert gone == (0,)


def test_a_malformed_key_is_refused_and_keys_are_forgotten_after_a_day(
    app: FastAPI, town: Town, database: Database
) -> None:
    client, auth = _manager_a(app, town)
    url = f"/api/v1/alerts/{town.alert_id}/acknowledge"
    for bad in (b"has space", b"x" * 256, "키".encode()):
        refused = client.post(url, json={}, headers={**auth, idempotency.HEADER: bad})  # type: ignore[dict-item]
        assert (refused.status_code, refused.json()["code"]) == (400, "idempotency_key_invalid")
    assert _acks(database, town.alert_id) == 0
    _claim_row(database, town.manager_a, "old", 25 * 3600, True, b"\2" * 32)
    with database.connection() as conn:
        conn.execute("UPDATE anbu.api_idempotency SET finished_at = now(), kept = 'lost'")
    fresh = client.post(url, json={}, headers=_keyed(auth, "new"))
    assert fresh.status_code == 200
    with database.connection() as conn:
        keys = [r[0] for r in conn.execute("SELECT key FROM anbu.api_idempotency ORDER BY key")]
    assert keys == ["new"]


def test_every_post_that_names_its_caller_documents_the_key(app: FastAPI) -> None:
    spec: dict[str, Any] = TestClient(app).get("/openapi.json").json()
    posts = {
        path: ops["post"]
        for path, ops in spec["paths"].items()
        if path.startswith("/api/v1/") and "post" in ops
    }
    keyed = {p for p, op in posts.items() if any(
        q["name"] == idempotency.HEADER for q in op.get("parameters", []))}  # fmt: skip
    unkeyed = {"/api/v1/password", "/api/v1/logout"}
    assert keyed == {p for p, op in posts.items() if op.get("security")} - unkeyed
    assert "/api/v1/token" not in keyed and len(keyed) >= 20
    assert all(posts[p].get("x-idempotent-answer") == "unkeyed" for p in unkeyed)
    withheld = {p for p, op in posts.items() if op.get("x-idempotent-answer") == "withheld"}
    assert withheld == {
        "/api/v1/service-accounts",
        "/api/v1/webhooks",
        "/api/v1/residents/{resident_id}/gateways",
        "/api/v1/gateways/{gateway_id}/credentials",
    }


def test_a_password_change_keeps_no_copy_under_its_key(
    app: FastAPI, town: Town, database: Database
) -> None:
    client, auth = _manager_a(app, town)
    changed = client.post(
        "/api/v1/password",
        json={"current_password": PASSWORD_A, "new_password": "a-new-pass-77x"},
        headers=_keyed(auth, "pw-1"),
    )
    assert changed.status_code == 200, changed.text
    with database.connection() as conn:
        rows = conn.execute("SELECT count(*) FROM anbu.api_idempotency").fetchone()
    assert rows == (0,)


def test_a_live_holder_renews_its_lease(town: Town, database: Database, monkeypatch: Any) -> None:
    """The heartbeat keeps a long request's claim fresh: a retry waits instead of taking over."""
    pending = _holding(database, town.manager_a, "k-beat", 59)
    monkeypatch.setattr(idempotency, "HEARTBEAT_S", 0.05)

    async def beat_a_while() -> None:
        task = asyncio.create_task(idempotency._heartbeat(database, pending))
        await asyncio.sleep(0.5)
        task.cancel()

    asyncio.run(beat_a_while())
    with database.connection() as conn:
        row = conn.execute(
            """SELECT claimed_at > now() - interval '5 s' FROM anbu.api_idempotency
                WHERE key = 'k-beat'"""
        ).fetchone()
    assert row == (True,)
