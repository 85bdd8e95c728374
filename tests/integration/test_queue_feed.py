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
from dashboards.queue_feed import (
    STREAMS_PER_MANAGER,
    QueueFeed,
    Subscription,
    feed_of,
    queue_events,
)
from tests.integration.dashboard_support import (
    DONG_A,
    DONG_B,
    PASSWORD_A,
    Town,
    login_page,
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
        a, b = feed.subscribe(1, [DONG_A]), feed.subscribe(2, [DONG_B])
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

    async def later() -> None:  # a page opened after it closed: a new connection
        c = feed.subscribe(1, [DONG_A])
        await asyncio.wait_for(c.changed.wait(), 10)
        feed.unsubscribe(c)

    asyncio.run(later())
    assert feed.connects == 2
    feed.stop()


class _Request:
    """What queue_events asks of the request: whether the browser left."""

    def __init__(self) -> None:
        self.gone = False

    async def is_disconnected(self) -> bool:
        return self.gone


def test_a_stream_says_ready_then_queue_and_ends_when_the_server_closes(
    database: Database,
) -> None:
    feed = QueueFeed(database.conninfo)

    async def scenario() -> list[str]:
        got: list[str] = []
        events = queue_events(feed, 7, [DONG_A], _Request())
        got.append(await anext(events))
        (sub,) = feed._subs  # the stream's own subscription
        sub.wake()
        got.append(await anext(events))
        feed.close()  # the server begins to stop: the stream ends without waiting
        async for more in events:
            got.append(more)
        return got

    got = asyncio.run(scenario())
    assert got[0].startswith("retry: ") and "event: ready" in got[0]
    assert got[1] == "event: queue\ndata: {}\n\n"
    assert not feed._subs, "the ended stream kept its subscription"
    feed.stop()


def test_a_care_manager_has_at_most_four_streams(town: Town) -> None:  # noqa: F811
    client = TestClient(town.app, base_url="http://dashboard.test")
    login_page(client, town.username_a, PASSWORD_A)
    feed = feed_of(town.app.state, "")  # never connects here: the streams are made up
    loop = asyncio.new_event_loop()
    held = [
        Subscription(town.manager_a, frozenset([DONG_A]), loop) for _ in range(STREAMS_PER_MANAGER)
    ]
    feed._subs.update(held)
    response = client.get("/alerts/events")
    assert response.status_code == 429
    assert response.headers["retry-after"] == "60"
    feed._subs.clear()
    loop.close()


def test_the_stream_is_for_logged_in_care_managers_only(town: Town) -> None:  # noqa: F811
    client = TestClient(town.app, base_url="http://dashboard.test")
    response = client.get("/alerts/events", follow_redirects=False)
    assert response.status_code in (303, 401)
    assert response.headers.get("content-type", "").startswith("text/event-stream") is False
