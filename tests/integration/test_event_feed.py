"""The event feed (issue 22): a system polling GET /api/v1/events?after=SEQ sees every alert
event of its dongs once, in published order, including one whose transaction committed after a
later event's (alert_events.id is taken at insert, not at commit). Real app, real PostgreSQL,
two real transactions."""

from __future__ import annotations

from typing import Any

import psycopg
from fastapi.testclient import TestClient

from alerts.audit import record_event
from core.db import Database
from core.domain import AlertState
from tests.integration.dashboard_support import (
    OPENED_AT,
    PASSWORD_A,
    PASSWORD_B,
    Town,
    bearer,
    town,
)

__all__ = ["town"]  # the fixture


def _poll(client: TestClient, headers: dict[str, str], after: int) -> dict[str, Any]:
    answer = client.get(f"/api/v1/events?after={after}&limit=2", headers=headers)
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    return body


def _drain(client: TestClient, headers: dict[str, str], after: int) -> tuple[list[Any], int]:
    seen: list[Any] = []
    for _ in range(20):
        body = _poll(client, headers, after)
        seen.extend(body["data"])
        after = body["next_after"]
        if not body["has_more"]:
            return seen, after
    raise AssertionError("the feed never ended")


def test_every_event_once_in_order_a_late_commit_included(
    town: Town, database: Database, db_url: str
) -> None:
    client = TestClient(town.app)
    a = bearer(client, town.username_a, PASSWORD_A)
    first, after = _drain(client, a, 0)
    assert [e["type"] for e in first] == ["alert.open"]
    assert first[0]["alert_id"] == town.alert_id and first[0]["severity"] == "warning"

    # a transaction takes the next event id and holds it, uncommitted...
    late = psycopg.connect(db_url)
    try:
        record_event(late, town.alert_id, OPENED_AT, "system", AlertState.OPEN, AlertState.OPEN,
                     "늦게 끝난 기록")  # fmt: skip
        # ...while a later event (the acknowledgement) commits
        taken = client.post(f"/api/v1/alerts/{town.alert_id}/acknowledge", json={}, headers=a)
        assert taken.status_code == 200
        now, after = _drain(client, a, after)
        assert [e["type"] for e in now] == ["alert.acknowledged"]
        late.commit()
    finally:
        late.close()
    then, after = _drain(client, a, after)
    assert [(e["type"], e["reason"]) for e in then] == [("alert.updated", "늦게 끝난 기록")]
    assert then[0]["event_id"] < now[0]["event_id"]  # an older id, published later: not lost
    every = [e["seq"] for e in first + now + then]
    assert every == sorted(every) and len(set(every)) == 3
    assert _poll(client, a, after)["data"] == []  # nothing twice

    # another dong's manager sees none of it; each read of a timeline is in the access log
    b = bearer(client, town.username_b, PASSWORD_B)
    none, moved_on = _drain(client, b, 0)
    assert none == [] and moved_on == every[-1]  # past dong A's events, not from 0 again
    assert client.get(f"/api/v1/events?after={2**63}", headers=b).status_code == 422
    with database.connection() as conn:
        (reads,) = conn.execute(
            "SELECT count(*) FROM anbu.access_log WHERE view = 'alert' AND resident_id = %s",
            (town.resident_id,),
        ).fetchone() or (0,)
    assert reads >= 3
