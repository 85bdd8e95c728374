"""The live queue's feed: migration 0073's trigger and the web process's one LISTEN.

A change to an alert notifies its resident's dong; the feed wakes only the streams showing that
dong; a timer's own update wakes nobody; the LISTEN connection closes once no stream is open.
The browser tests (tests/browser) run the page on top of it.
"""

from __future__ import annotations

import asyncio
import time

from fastapi.testclient import TestClient

from core.db import Database
from dashboards.queue_feed import QueueFeed
from tests.integration.dashboard_support import (
    DONG_A,
    DONG_B,
    Town,
    town,  # noqa: F401 - the fixture
)


def _wait(check: object, what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def test_a_change_wakes_the_streams_of_its_dong_only(
    town: Town,  # noqa: F811 - the fixture above
    database: Database,
) -> None:
    feed = QueueFeed(database.conninfo)

    def update(sql: str) -> None:
        with database.connection() as conn:
            conn.execute(sql, (town.alert_id,))

    async def scenario() -> None:
        a, b = feed.subscribe([DONG_A]), feed.subscribe([DONG_B])
        await asyncio.to_thread(_wait, feed.listening.is_set, "the feed listening")
        await asyncio.wait_for(a.changed.wait(), 10)  # woken once on connect: catch up
        a.changed.clear()
        b.changed.clear()
        # the timer's own update: the queue shows nothing new, nobody is woken
        await asyncio.to_thread(
            update, "UPDATE anbu.alerts SET next_action_at = now() WHERE id = %s"
        )
        await asyncio.sleep(0.5)  # a notification would have arrived by now
        assert not a.changed.is_set(), "the timer's update woke the stream"
        # then one the queue shows (dong A's alert escalates)
        await asyncio.to_thread(
            update, "UPDATE anbu.alerts SET severity = 'critical' WHERE id = %s"
        )
        await asyncio.wait_for(a.changed.wait(), 10)
        await asyncio.sleep(0.3)
        assert not b.changed.is_set(), "dong B's stream was woken by dong A's alert"
        feed.unsubscribe(a)
        feed.unsubscribe(b)

    asyncio.run(scenario())
    _wait(lambda: not feed.listening.is_set(), "the feed closing with no stream open")
    assert feed.connects == 1
    feed.stop()


def test_the_stream_is_for_logged_in_care_managers_only(town: Town) -> None:  # noqa: F811
    client = TestClient(town.app, base_url="http://dashboard.test")
    response = client.get("/alerts/events", follow_redirects=False)
    assert response.status_code in (303, 401)
    assert response.headers.get("content-type", "").startswith("text/event-stream") is False
