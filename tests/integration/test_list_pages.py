"""No list is silently cut (issue 22): the API's lists come in cursor pages and the care queue's
page links to the rest; against the real app and PostgreSQL, with more rows than a page holds
(the queue was cut at 200 before, the least severe alerts lost)."""

from __future__ import annotations

import base64
import json
import re
from datetime import timedelta
from typing import Any

from fastapi.testclient import TestClient

import registry
from core.db import Database
from tests.integration.dashboard_support import (
    DONG_A,
    OPENED_AT,
    PASSWORD_A,
    PASSWORD_B,
    Town,
    bearer,
    login_page,
    town,
)

__all__ = ["town"]  # the fixture

N = 130  # alerts seeded beside the town's own: more than two API pages, more than a web page
SEVERITIES = ("watch", "warning", "critical")


def _seed(database: Database, unique: str) -> list[int]:
    """N residents of dong A, each with one alert: severities in turn, opened a minute apart,
    every tenth pair at the same moment (the id must break the tie); every 13th resolved."""
    ids = []
    with database.connection() as conn:
        for i in range(N):
            resident = registry.add_resident(
                conn, f"page-{unique}-{i:03d}", DONG_A, f"주민{i}", f"+8210555{i:05d}"
            )
            opened = OPENED_AT - timedelta(minutes=i - (i % 10 == 1))
            row = conn.execute(
                """INSERT INTO anbu.alerts (resident_id, kind, severity, state, opened_at,
                                            updated_at)
                   VALUES (%s, 'inactivity', %s, %s, %s, %s) RETURNING id""",
                (resident, SEVERITIES[i % 3], "resolved" if i % 13 == 0 else "open",
                 opened, opened + timedelta(hours=i % 5)),
            ).fetchone()  # fmt: skip
            assert row is not None
            ids.append(int(row[0]))
    return ids


def _all_pages(client: TestClient, path: str, headers: dict[str, str]) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    url = path
    for _ in range(20):
        page = client.get(url, headers=headers)
        assert page.status_code == 200, page.text
        body = page.json()
        assert set(body) == {"data", "has_more", "next_cursor"}
        rows.extend(body["data"])
        assert body["has_more"] == (body["next_cursor"] is not None)
        if not body["has_more"]:
            return rows
        url = f"{path}{'&' if '?' in path else '?'}cursor={body['next_cursor']}"
    raise AssertionError("paging never ended")


def test_alert_pages_hold_every_alert_once_in_a_stable_order(
    town: Town, database: Database, unique: str
) -> None:
    _seed(database, unique)
    client = TestClient(town.app)
    a = bearer(client, town.username_a, PASSWORD_A)
    first = client.get("/api/v1/alerts", headers=a).json()
    assert len(first["data"]) == 50 and first["has_more"]

    rows = _all_pages(client, "/api/v1/alerts?limit=50", a)
    with database.connection() as conn:
        expected = [
            r[0]
            for r in conn.execute(
                """SELECT a.id FROM anbu.alerts a JOIN anbu.resident r ON r.id = a.resident_id
                   WHERE r.dong_code = %s AND a.state <> 'resolved'
                   ORDER BY a.opened_at DESC, a.id DESC""",
                (DONG_A,),
            ).fetchall()
        ]
    assert [x["id"] for x in rows] == expected  # every open one, once, newest first
    assert len(expected) == N - len(range(0, N, 13)) + 1  # the town's own alert too

    everything = _all_pages(client, "/api/v1/alerts?include_resolved=true&limit=100", a)
    assert len(everything) == N + 1
    resolved = _all_pages(client, "/api/v1/alerts?state=resolved", a)
    assert len(resolved) == len(range(0, N, 13))
    assert {x["state"] for x in resolved} == {"resolved"}
    critical = _all_pages(client, "/api/v1/alerts?severity=critical&severity=watch", a)
    assert {x["severity"] for x in critical} == {"critical", "watch"}
    assert len(critical) == sum(1 for i in range(N) if i % 3 != 1 and i % 13)
    since = (OPENED_AT + timedelta(hours=3)).isoformat()
    changed = _all_pages(client, f"/api/v1/alerts?updated_since={since.replace('+', '%2B')}", a)
    assert changed
    assert len(changed) == sum(1 for i in range(N) if i % 5 - i / 60 >= 3 and i % 13)

    # another dong's manager, even with A's cursor, sees none of A's alerts
    b = bearer(client, town.username_b, PASSWORD_B)
    page_b = client.get(f"/api/v1/alerts?cursor={first['next_cursor']}", headers=b)
    assert page_b.status_code == 200 and page_b.json()["data"] == []


def test_a_bad_cursor_or_limit_is_refused_with_a_reason(
    town: Town, database: Database, unique: str
) -> None:
    with database.connection() as conn:
        registry.add_resident(conn, f"second-{unique}", DONG_A, "박영희", "+821055500000")
    client = TestClient(town.app)
    a = bearer(client, town.username_a, PASSWORD_A)
    residents = client.get("/api/v1/residents?limit=1", headers=a).json()
    assert residents["has_more"]  # a real cursor, of another list
    for cursor in ("not-a-cursor", "e30", "W10", residents["next_cursor"]):
        refused = client.get(f"/api/v1/alerts?cursor={cursor}", headers=a)
        assert refused.status_code == 400, cursor
        assert "cursor" in refused.json()["detail"]
    # a residents cursor whose text parts PostgreSQL cannot take: a 400, never a 500
    for text in ("a\u0000b", "\ud800", "x" * 300):
        raw = json.dumps(["residents", 0, text, "h", 1]).encode()
        odd = base64.urlsafe_b64encode(raw).decode().rstrip("=")
        assert client.get(f"/api/v1/residents?cursor={odd}", headers=a).status_code == 400
    assert client.get("/api/v1/alerts?kind=%00", headers=a).status_code == 422
    assert client.get("/api/v1/alerts?limit=101", headers=a).status_code == 422
    assert client.get("/api/v1/alerts?limit=0", headers=a).status_code == 422
    naive = client.get("/api/v1/alerts?updated_since=2026-11-22T00:00:00", headers=a)
    assert naive.status_code == 422


def test_resident_pages_hold_every_resident_once(
    town: Town, database: Database, unique: str
) -> None:
    _seed(database, unique)
    client = TestClient(town.app)
    a = bearer(client, town.username_a, PASSWORD_A)
    rows = _all_pages(client, "/api/v1/residents?limit=40", a)
    ids = [r["id"] for r in rows]
    assert len(ids) == len(set(ids)) == N + 1
    with database.connection() as conn:
        (count,) = conn.execute(
            "SELECT count(*) FROM anbu.resident WHERE dong_code = %s", (DONG_A,)
        ).fetchone() or (0,)
    assert count == N + 1


def test_the_care_queue_page_links_to_every_open_alert(
    town: Town, database: Database, unique: str
) -> None:
    seeded = _seed(database, unique)
    client = TestClient(town.app)
    login_page(client, town.username_a, PASSWORD_A)
    shown: list[int] = []
    page = client.get("/alerts")
    assert page.status_code == 200
    open_count = N - len(range(0, N, 13)) + 1
    assert f"<small>(전체 {open_count}건, " in page.text  # the heading counts them all
    assert "심각 단계부터 100건씩" in page.text
    for _ in range(5):
        ids = [
            int(x) for x in dict.fromkeys(re.findall(r'<td><a href="/alerts/(\d+)">', page.text))
        ]
        assert 0 < len(ids) <= 100
        shown.extend(ids)
        following = re.search(r'href="(/alerts\?after=[^"]+)" rel="next"', page.text)
        if following is None:
            break
        page = client.get(following.group(1))
        assert page.status_code == 200
        assert 'href="/alerts">' in page.text  # back to the first page
        # a later page does not reload itself (a raised alert moves to the first page)
        assert 'http-equiv="refresh"' not in page.text
    assert len(shown) == len(set(shown)) == open_count
    assert set(seeded) - set(shown) == {seeded[i] for i in range(0, N, 13)}  # the resolved
    # most severe first: every critical alert before any warning, every warning before watch
    rank = {"critical": 0, "warning": 1, "watch": 2}
    with database.connection() as conn:
        severity = dict(
            conn.execute(
                "SELECT id, severity FROM anbu.alerts WHERE id = ANY(%s)", (shown,)
            ).fetchall()
        )
    ranks = [rank[severity[i]] for i in shown]
    assert ranks == sorted(ranks)
    assert client.get("/alerts?after=garbage").status_code == 400


def test_a_residents_setting_history_pages_newest_first_in_the_own_dong_only(
    town: Town, database: Database
) -> None:
    client = TestClient(town.app)
    a = bearer(client, town.username_a, PASSWORD_A)
    url = f"/api/v1/residents/{town.resident_id}"
    for start in range(7):  # seven changes of the quiet hours, each audited
        body = {"start": f"2{start}:00" if start < 4 else f"0{start - 4}:00", "end": "06:30"}
        done = client.post(f"{url}/quiet-hours", json=body, headers=a)
        assert done.status_code == 200, done.text
    rows = _all_pages(client, f"{url}/history?limit=3", a)
    with database.connection() as conn:
        expected = conn.execute(
            """SELECT id, field, new_value FROM anbu.resident_changes WHERE resident_id = %s
               ORDER BY id DESC""",
            (town.resident_id,),
        ).fetchall()
    assert [(r["id"], r["field"], r["new_value"]) for r in rows] == [tuple(e) for e in expected]
    assert len(rows) >= 7 and rows[0]["care_manager_id"] == town.manager_a
    b = bearer(client, town.username_b, PASSWORD_B)
    assert client.get(f"{url}/history", headers=b).status_code == 404


def test_the_weekly_review_page_shows_every_resident_once_a_page_at_a_time(
    town: Town, database: Database, unique: str
) -> None:
    with database.connection() as conn:
        registry.add_synthetic_homes(conn, DONG_A, [f"rv{unique}{n:03d}" for n in range(130)], [])
        everyone = {
            int(r[0])
            for r in conn.execute(
                "SELECT id FROM anbu.resident WHERE dong_code = %s AND status <> 'ended'",
                (DONG_A,),
            ).fetchall()
        }
    client = TestClient(town.app)
    login_page(client, town.username_a, PASSWORD_A)
    page = client.get("/review")
    shown: list[int] = []
    for turn in range(5):
        assert page.status_code == 200
        ids = [int(x) for x in re.findall(r'<tr id="review-(\d+)"', page.text)]
        assert 0 < len(ids) <= 100
        shown.extend(ids)
        if turn == 0:  # meanwhile a resident of a later page is raised for review, dated
            later = min(everyone - set(ids))  # before the first page was read: it would move
            with database.connection() as conn:  # up to the first page, and be skipped
                conn.execute(
                    """INSERT INTO anbu.findings (resident_id, kind, severity, raised_at,
                           reason_ko, reason_en)
                       VALUES (%s, 'routine_change', 'watch', %s, '생활 변화', 'change')""",
                    (later, OPENED_AT - timedelta(minutes=1)),
                )
        following = re.search(r'href="(/review\?after=[^"]+)" rel="next"', page.text)
        if following is None:
            break
        page = client.get(following.group(1))
    assert len(shown) == len(set(shown)) == len(everyone) > 100
    assert set(shown) == everyone
