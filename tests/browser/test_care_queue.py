"""The care queue in a real browser: Debian's Chromium driven by Playwright, against the real
app in a real uvicorn server over a fresh database (`pytest -m browser` runs these alone).

A care manager logs in and keeps the queue open; an alert raised in their dong (by the
AlertService, as the worker raises it) appears without a reload, the title counts it, a
critical one rings (the page's own count of alarms: a headless browser has no speaker) and
shows a browser notification; another dong's alert never shows; with the stream refused the
page falls back to reading itself every 30 s. Screenshots of the queue at desk and phone
sizes are kept in .pytest-tmp/browser/ (see conftest.py).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

import registry
from alerts.policy import EscalationPolicy
from alerts.service import AlertService, IncomingFinding
from core.clock import SystemClock
from core.db import Database
from core.domain import Finding, Severity
from tests.browser.conftest import Browser, shot, until
from tests.integration.dashboard_support import (
    DONG_A,
    DONG_B,
    PASSWORD_A,
    RecordingTelephony,
    Town,
)

pytestmark = pytest.mark.browser


def raise_alert(database: Database, dong: str, home: str, severity: Severity) -> int:
    """A new resident of `dong` and an alert of theirs, raised as the worker raises it."""
    now = datetime.now(UTC)
    with database.connection() as conn:
        resident = registry.add_resident(conn, home, dong, "박영희", "+821099990001")
        row = conn.execute(
            """INSERT INTO anbu.findings (resident_id, kind, severity, raised_at, reason_ko,
                                          reason_en)
               VALUES (%s, 'inactivity', %s, %s, '20시간 동안 움직임이 없습니다',
                       'No movement for 20 hours') RETURNING id""",
            (resident, severity.label, now),
        ).fetchone()
    assert row is not None
    finding = Finding(home, "inactivity", severity, now, "20시간 동안 움직임이 없습니다",
                      "No movement for 20 hours")  # fmt: skip
    service = AlertService(
        database, RecordingTelephony(), EscalationPolicy(), SystemClock(), "http://dashboard.test"
    )
    (alert_id,) = service.on_findings([IncomingFinding(int(row[0]), resident, finding)])
    return alert_id


def log_in(page: Any, base: str, username: str) -> None:
    page.goto(f"{base}/login")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", PASSWORD_A)
    page.click("button[type=submit]")
    page.wait_for_url(lambda url: "/login" not in url)


def test_a_new_alert_appears_without_reload_rings_and_counts(
    browser: Browser,
    served: str,
    town: Town,
    database: Database,
    unique: str,
) -> None:
    context = browser.new_context(served)
    context.grant_permissions(["notifications"], origin=served)
    page = context.new_page()
    log_in(page, served, town.username_a)
    page.goto(f"{served}/alerts")
    until(page, "window.anbuQueue && window.anbuQueue.mode === 'live'")
    assert page.title().startswith("(미확인 1) ")  # the seeded alert, not yet acknowledged
    assert page.is_visible("#sound-hint")  # no sound before the page was used once
    page.click("h1")  # the manager's first click readies the sound
    page.wait_for_selector("#sound-hint", state="hidden")
    page.evaluate("window.sameDocument = true")  # gone if the page reloads

    other = raise_alert(database, DONG_B, f"b-{unique}", Severity.CRITICAL)
    mine = raise_alert(database, DONG_A, f"a-{unique}", Severity.CRITICAL)
    page.wait_for_selector(f"tr[data-alert='{mine}']", timeout=15_000)
    assert page.evaluate("window.sameDocument") is True, "the page reloaded"
    assert page.locator(f"tr[data-alert='{other}']").count() == 0  # another dong's
    assert page.title().startswith("(미확인 2) ")
    until(page, "window.anbuQueue.tones >= 1")  # played, not only asked for
    assert page.evaluate("window.anbuQueue.notified") >= 1
    news = page.locator("#live-news").text_content() or ""
    assert "심각 단계 알림 1건이 새로 생겼습니다" in news
    assert page.get_attribute(f"tr[data-alert='{mine}']", "class").split().count("fresh") == 1
    shot(page, "queue-desk")

    # turned off: the next critical alert appears, silently
    page.click("#alarm-toggle")
    assert page.get_attribute("#alarm-toggle", "data-on") == "false"
    assert "꺼짐" in (page.text_content("#alarm-toggle") or "")
    tones, notified = page.evaluate("[window.anbuQueue.tones, window.anbuQueue.notified]")
    third = raise_alert(database, DONG_A, f"c-{unique}", Severity.CRITICAL)
    page.wait_for_selector(f"tr[data-alert='{third}']", timeout=15_000)
    assert page.evaluate("[window.anbuQueue.tones, window.anbuQueue.notified]") == [
        tones, notified,
    ]  # fmt: skip
    page.reload()
    assert page.get_attribute("#alarm-toggle", "data-on") == "false"  # kept in the browser

    # acknowledge and resolve it from its page; the queue then counts one fewer
    page.click(f"tr[data-alert='{mine}'] td:nth-child(3) a")
    page.click("form[action$='/acknowledge'] button[type=submit]")
    page.wait_for_load_state()
    page.select_option("form[action$='/resolve'] select[name=outcome]", index=1)
    page.click("form[action$='/resolve'] button[type=submit]")
    page.wait_for_load_state()
    page.goto(f"{served}/alerts")
    assert page.title().startswith("(미확인 2) ")  # the seeded one and the third
    assert page.locator(f"tr[data-alert='{mine}']").count() == 0
    context.close()


def test_with_the_stream_refused_the_queue_reads_itself_every_30_s(
    browser: Browser,
    served: str,
    town: Town,
    database: Database,
    unique: str,
) -> None:
    context = browser.new_context(served, width=390, height=844)
    page = context.new_page()
    log_in(page, served, town.username_a)
    page.route("**/alerts/events", lambda route: route.abort())
    page.clock.install()
    page.goto(f"{served}/alerts")
    until(page, "window.anbuQueue && window.anbuQueue.mode !== 'live'")
    page.clock.run_for(16_000)  # no stream ready in 10 s: the page polls
    until(page, "window.anbuQueue.mode === 'polling'")
    status = page.locator("#live-status").text_content() or ""
    assert "30초마다" in status
    mine = raise_alert(database, DONG_A, f"p-{unique}", Severity.WARNING)
    refreshes = page.evaluate("window.anbuQueue.refreshes")
    page.clock.run_for(31_000)
    page.wait_for_selector(f"tr[data-alert='{mine}']", timeout=15_000)
    assert page.evaluate("window.anbuQueue.refreshes") > refreshes
    assert page.evaluate("window.anbuQueue.tones + window.anbuQueue.notified") == 0  # 주의
    # the stream allowed again: the page goes back to live by itself
    page.unroute("**/alerts/events")
    page.clock.run_for(16_000)
    until(page, "window.anbuQueue.mode === 'live'")
    assert "새로고침 없이" in (page.locator("#live-status").text_content() or "")
    shot(page, "queue-phone")
    context.close()
