"""An alert is never acted on blind (issue 22): its version (ETag) moves with every change its
timeline shows, and an acknowledge, resolve or reassign naming an older one is refused with 412
and changes nothing; the care manager's page sends the version it showed. Real app, real
PostgreSQL."""

from __future__ import annotations

import re

from fastapi.testclient import TestClient

from alerts.policy import EscalationPolicy
from alerts.service import AlertService, IncomingFinding
from core.clock import VirtualClock
from core.db import Database
from core.domain import Finding, Severity
from tests.integration.dashboard_support import (
    OPENED_AT,
    PASSWORD_A,
    REASON_EN,
    REASON_KO,
    RecordingTelephony,
    Town,
    bearer,
    csrf_of,
    login_page,
    town,
)

__all__ = ["town"]  # the fixture


def _raise_to_critical(database: Database, town: Town) -> None:
    """A critical inactivity finding for the alert's resident: the open alert is raised."""
    clock = VirtualClock(OPENED_AT)
    with database.connection() as conn:
        row = conn.execute(
            """INSERT INTO anbu.findings (resident_id, kind, severity, raised_at, reason_ko,
                                          reason_en)
               VALUES (%s, 'inactivity', 'critical', %s, %s, %s) RETURNING id""",
            (town.resident_id, clock.now(), REASON_KO, REASON_EN),
        ).fetchone()
    assert row is not None
    finding = Finding(
        f"home-{town.resident_id}", "inactivity", Severity.CRITICAL, clock.now(), REASON_KO,
        REASON_EN,
    )  # fmt: skip
    service = AlertService(
        database, RecordingTelephony(), EscalationPolicy(), clock, "http://dashboard.test"
    )
    service.on_findings([IncomingFinding(int(row[0]), town.resident_id, finding)])


def _state(database: Database, alert_id: int) -> tuple[str, str]:
    with database.connection() as conn:
        row = conn.execute(
            "SELECT state, severity FROM anbu.alerts WHERE id = %s", (alert_id,)
        ).fetchone()
    assert row is not None
    return str(row[0]), str(row[1])


def test_a_raised_alert_is_not_resolved_on_the_version_read_before(
    town: Town, database: Database
) -> None:
    client = TestClient(town.app)
    a = bearer(client, town.username_a, PASSWORD_A)
    url = f"/api/v1/alerts/{town.alert_id}"
    read = client.get(url, headers=a)
    etag = read.headers["etag"]
    assert etag == f'"{read.json()["version"]}"'
    taken = client.post(f"{url}/acknowledge", json={}, headers={**a, "If-Match": etag})
    assert taken.status_code == 200, taken.text
    seen = taken.headers["etag"]
    assert seen != etag  # acknowledging changed it

    _raise_to_critical(database, town)  # 주의 → 심각 while the care manager is away
    stale = client.post(
        f"{url}/resolve", json={"outcome": "visited_ok"}, headers={**a, "If-Match": seen}
    )
    assert stale.status_code == 412, stale.text
    body = stale.json()
    assert (body["state"], body["severity"]) == ("acknowledged", "critical")
    assert "심각" in body["detail"] and "critical" in body["detail_en"]
    assert stale.headers["etag"] == f'"{body["version"]}"' != seen
    assert _state(database, town.alert_id) == ("acknowledged", "critical")  # nothing done

    fresh = client.post(
        f"{url}/resolve", json={"outcome": "visited_ok"},
        headers={**a, "If-Match": stale.headers["etag"]},
    )  # fmt: skip
    assert fresh.status_code == 200, fresh.text
    assert _state(database, town.alert_id) == ("resolved", "critical")
    # a resolved alert says who took it, who closed it, when and how
    [listed] = client.get("/api/v1/alerts?state=resolved", headers=a).json()["data"]
    for alert in (listed, fresh.json()["alert"]):
        assert alert["outcome"] == "visited_ok"
        assert alert["acknowledged_by"] == alert["resolved_by"] == town.manager_a
        assert alert["acknowledged_at"] is not None and alert["resolved_at"] is not None


def test_if_match_is_optional_but_never_unreadable(town: Town, database: Database) -> None:
    client = TestClient(town.app)
    a = bearer(client, town.username_a, PASSWORD_A)
    url = f"/api/v1/alerts/{town.alert_id}/acknowledge"
    for bad in ("123", '"abc"', '"12', "", 'W/"1"', '"1 2"', '"' + "9" * 5000 + '"'):
        refused = client.post(url, json={}, headers={**a, "If-Match": bad})
        assert refused.status_code == 400, bad
    assert _state(database, town.alert_id) == ("open", "warning")
    assert client.post(url, json={}, headers={**a, "If-Match": "*"}).status_code == 200


def test_the_page_acts_only_on_the_version_it_showed(town: Town, database: Database) -> None:
    client = TestClient(town.app)
    login_page(client, town.username_a, PASSWORD_A)
    page = client.get(f"/alerts/{town.alert_id}").text
    shown = re.search(r'name="seen" value="(\d+)"', page)
    assert shown is not None
    _raise_to_critical(database, town)
    refused = client.post(
        f"/alerts/{town.alert_id}/acknowledge",
        data={"csrf_token": csrf_of(page), "note": "", "seen": shown.group(1)},
        follow_redirects=False,
    )
    assert refused.status_code == 412
    assert "이 화면을 연 뒤 알림 내용이 바뀌었습니다(현재 단계: 심각" in refused.text
    assert f'href="/alerts/{town.alert_id}"' in refused.text  # back to the alert, to look again
    assert _state(database, town.alert_id) == ("open", "critical")

    again = client.get(f"/alerts/{town.alert_id}").text
    now = re.search(r'name="seen" value="(\d+)"', again)
    assert now is not None and now.group(1) != shown.group(1)
    taken = client.post(
        f"/alerts/{town.alert_id}/acknowledge",
        data={"csrf_token": csrf_of(again), "note": "", "seen": now.group(1)},
        follow_redirects=False,
    )
    assert taken.status_code == 303
    assert _state(database, town.alert_id) == ("acknowledged", "critical")
