"""Webhook subscriptions (issue 22): the event feed pushed to a real HTTP receiver on a free
local port, from real alerts (the real AlertService, the real API), over real PostgreSQL.

Every event of a scenario arrives once and in order, across a worker that dies between the
receiver's 200 and recording it (its database connection killed, as a crash would) and a new
worker that takes over: one re-delivery, which the receiver drops by Anbu-Event-Id. The
signature verifies with the secret shown at creation, not with another. A receiver answering
500 is retried after growing waits (the virtual clock moves; nothing waits for real) while the
next event waits; failing for three days pauses the subscription, visibly. Scope, roles and the
address guard are held too.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import random
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import psycopg
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

import registry
from alerts.feed import FeedEvent
from alerts.policy import EscalationPolicy
from alerts.service import AlertService
from alerts.webhook_delivery import LOCK_CLASS, RETRY_MAX, WebhookDelivery, event_payload
from alerts.webhook_targets import address_allowed, read_url
from calls.client import make_twilio_client
from calls.service import CallService
from core.clock import VirtualClock
from core.config import Settings
from core.crypto import Keyring, new_key
from core.db import Database
from core.ticker import Ticker
from dashboards.app import create_app
from dashboards.schemas import FeedEventOut
from registry.key_rotation import key_census, rotate_keys
from tests.integration.dashboard_support import (
    OPENED_AT,
    RecordingTelephony,
    bearer,
    seed_alert,
)

DONG_A, DONG_B, DONG_C = "1111051500", "1111053000", "1114052000"
PASSWORD = "webhook-pass-1"
PHONES = ("+821099990001", "+821099990002", "+821099990003")


@dataclass
class Receiver:
    """A real HTTP server on a free port: records every POST, answers what `answer` says."""

    answer: Callable[[int], int] = lambda seq: 200
    got: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    server: ThreadingHTTPServer | None = None

    def start(self) -> None:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                with receiver.lock:
                    receiver.got.append((dict(self.headers.items()), body))
                status = receiver.answer(int(self.headers["Anbu-Event-Id"]))
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.server_address[1]}/anbu-events"

    def seqs(self) -> list[int]:
        with self.lock:
            return [int(h["Anbu-Event-Id"]) for h, _ in self.got]


@dataclass
class QueuedCalls(RecordingTelephony):
    """The alerts' check-in calls written into the real send queue, never dialled: the ladder
    moves on its timers as it does while calls wait."""

    queue: CallService | None = None

    def queue_check_in(self, conn: Any, resident_id: int, alert_id: int, attempt: int) -> int:
        assert self.queue is not None
        return self.queue.queue_check_in(conn, resident_id, alert_id, attempt)


@dataclass
class Rig:
    database: Database
    db_url: str
    clock: VirtualClock
    alerts: AlertService
    app: FastAPI
    keyring: Keyring
    admin: str
    manager: str
    supervisor: str
    other_admin: str
    residents: dict[str, int]  # dong code -> a resident there

    def client(self, username: str) -> tuple[TestClient, dict[str, str]]:
        client = TestClient(self.app)
        return client, bearer(client, username, PASSWORD)

    def deliverer(self, allow_loopback: bool = True, seed: int = 7) -> WebhookDelivery:
        return WebhookDelivery(
            self.database, self.clock, self.keyring, allow_loopback=allow_loopback,
            timeout_s=5.0, rng=random.Random(seed),
        )  # fmt: skip

    def subscribe(self, url: str, dongs: list[str] | None) -> dict[str, Any]:
        client, admin = self.client(self.admin)
        made = client.post("/api/v1/webhooks", json={"url": url, "dongs": dongs}, headers=admin)
        assert made.status_code == 201, made.text
        body: dict[str, Any] = made.json()
        return body

    def feed_seqs(self, dongs: tuple[str, ...], after: int) -> list[int]:
        with self.database.connection() as conn:
            rows = conn.execute(
                """SELECT f.seq FROM anbu.event_feed f
                     JOIN anbu.alert_events e ON e.id = f.event_id
                     JOIN anbu.alerts a ON a.id = e.alert_id
                     JOIN anbu.resident r ON r.id = a.resident_id
                    WHERE f.seq > %s AND r.dong_code = ANY(%s) ORDER BY f.seq""",
                (after, list(dongs)),
            ).fetchall()
        return [int(r[0]) for r in rows]

    def all_published(self) -> bool:
        with self.database.connection() as conn:
            row = conn.execute(
                """SELECT NOT EXISTS (SELECT 1 FROM anbu.alert_events e WHERE NOT EXISTS (
                          SELECT 1 FROM anbu.event_feed f WHERE f.event_id = e.id))"""
            ).fetchone()
        return bool(row and row[0])

    def attempts(self, sub_id: int, limit: int = 3) -> list[dict[str, Any]]:
        """The delivery log read through the API, page by page, oldest first."""
        client, admin = self.client(self.admin)
        found: list[dict[str, Any]] = []
        cursor: str | None = None
        while True:
            query = f"?limit={limit}&cursor={cursor}" if cursor else f"?limit={limit}"
            page = client.get(f"/api/v1/webhooks/{sub_id}/deliveries{query}", headers=admin)
            assert page.status_code == 200, page.text
            found += page.json()["data"]
            cursor = page.json()["next_cursor"]
            if cursor is None:
                return found[::-1]  # oldest first


def _rig(database: Database, db_url: str, unique: str, allow_loopback: bool) -> Rig:
    with database.connection() as conn:
        registry.add_dong(conn, DONG_A, "청운효자동", "종로구")
        registry.add_dong(conn, DONG_B, "사직동", "종로구")
        registry.add_dong(conn, DONG_C, "소공동", "중구")
        names = {
            "admin": (DONG_A, "admin"),
            "manager": (DONG_A, "manager"),
            "supervisor": (DONG_A, "supervisor"),
            "other_admin": (DONG_C, "admin"),
        }
        for name, (dong, role) in names.items():
            registry.add_care_manager(
                conn, f"{name}{unique}", dong, name, "+821000000001", PASSWORD, role=role
            )
        residents = {
            dong: registry.add_resident(conn, f"home-{dong}-{unique}", dong, "주민", phone)
            for dong, phone in zip((DONG_A, DONG_B, DONG_C), PHONES, strict=True)
        }
    clock = VirtualClock(OPENED_AT)
    key = new_key()
    settings = Settings(
        database_url=db_url, session_secret=f"test-secret-{unique}", data_key=key,
        event_webhooks_allow_loopback=allow_loopback,
    )  # fmt: skip
    calls = CallService(database, make_twilio_client(settings), settings, clock)
    alerts = AlertService(
        database, QueuedCalls(queue=calls), EscalationPolicy(), clock, "http://dashboard.test"
    )
    app = create_app(database, settings, alerts)
    return Rig(database, db_url, clock, alerts, app, Keyring.of(key), f"admin{unique}",
               f"manager{unique}", f"supervisor{unique}", f"other_admin{unique}", residents)  # fmt: skip


@pytest.fixture
def rig(database: Database, db_url: str, unique: str) -> Rig:
    return _rig(database, db_url, unique, allow_loopback=True)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    made = Receiver()
    made.start()
    yield made
    made.stop()


def _verifies(secret: str, headers: dict[str, str], body: bytes) -> bool:
    """What a receiver does: HMAC-SHA256 of '<timestamp>.<body>' under its secret."""
    signed = headers["Anbu-Timestamp"].encode() + b"." + body
    expected = "v1=" + hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, headers["Anbu-Signature"])


def _wait(what: str, done: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not done():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def _kill_lock_holder(db_url: str, sub_id: int) -> None:
    """The worker delivering `sub_id` loses its database connection, as if it crashed."""
    with psycopg.connect(db_url, autocommit=True) as conn:
        (pid,) = conn.execute(
            """SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted
                  AND classid = %s AND objid = %s""",
            (LOCK_CLASS, sub_id),
        ).fetchone() or (None,)
        assert pid is not None, "nobody holds the subscription's delivery lock"
        conn.execute("SELECT pg_terminate_backend(%s, 5000)", (pid,))


@pytest.mark.storage_modes
def test_every_event_once_in_order_across_a_worker_restart(rig: Rig, receiver: Receiver) -> None:
    sub = rig.subscribe(receiver.url, [DONG_A])
    assert sub["state"] == "active" and sub["dongs"] == [DONG_A] and sub["secret"]
    with rig.database.connection() as conn:
        (start,) = conn.execute(
            "SELECT feed_after FROM anbu.webhook_subscription WHERE id = %s", (sub["id"],)
        ).fetchone() or (0,)
    # part one: alerts in dong A (two of them) and in dong B, their first steps
    a1 = seed_alert(rig.database, rig.clock, rig.residents[DONG_A], "inactivity")
    seed_alert(rig.database, rig.clock, rig.residents[DONG_B], "inactivity")
    rig.alerts.process_due()
    seed_alert(rig.database, rig.clock, rig.residents[DONG_A], "no_return")
    rig.alerts.process_due()

    crashed = threading.Event()
    crash_at: list[int] = []

    def answer(seq: int) -> int:  # the third event: the worker dies after the receiver's 200
        distinct = list(dict.fromkeys(receiver.seqs()))
        if len(distinct) == 3 and not crashed.is_set():
            crash_at.append(seq)
            _kill_lock_holder(rig.db_url, sub["id"])
            crashed.set()
        return 200

    receiver.answer = answer
    first = Ticker()
    first.add("webhooks", rig.deliverer().run_once, 0.05, first_in_s=0)
    first.start()
    try:
        _wait("the worker's crash", crashed.is_set)
    finally:
        first.stop()

    # part two, while no worker runs: the manager acknowledges and resolves, the ladder moves
    client, manager = rig.client(rig.manager)
    taken = client.post(f"/api/v1/alerts/{a1}/acknowledge", json={}, headers=manager)
    assert taken.status_code == 200, taken.text
    closed = client.post(
        f"/api/v1/alerts/{a1}/resolve", json={"outcome": "visited_ok"}, headers=manager
    )
    assert closed.status_code == 200, closed.text
    rig.clock.advance(timedelta(minutes=20))
    rig.alerts.process_due()

    second = Ticker()  # a new worker takes over
    second.add("webhooks", rig.deliverer(seed=8).run_once, 0.05, first_in_s=0)
    second.start()
    try:
        _wait("the worker to publish every alert event", rig.all_published)
        expected = rig.feed_seqs((DONG_A,), start)
        _wait("every event", lambda: set(expected) <= set(receiver.seqs()))
    finally:
        second.stop()  # waits for a pass under way to record what it sent

    arrived = receiver.seqs()
    # two alerts' openings and calls, an acknowledgement, a resolution, an escalation
    assert len(expected) == 7
    assert list(dict.fromkeys(arrived)) == expected  # every one, in feed order, none other
    duplicates = [s for i, s in enumerate(arrived) if s in arrived[:i]]
    assert duplicates == crash_at  # the one the dead worker could not record, once again
    assert rig.feed_seqs((DONG_B,), start)  # dong B had events: none of them was sent
    bodies = [json.loads(b) for _, b in receiver.got]
    assert {b["dong_code"] for b in bodies} == {DONG_A}
    assert all(
        int(h["Anbu-Event-Id"]) == b["seq"] for (h, _), b in zip(receiver.got, bodies, strict=True)
    )

    # signed with the secret shown once; another secret, or another body, does not verify
    assert all(_verifies(sub["secret"], h, b) for h, b in receiver.got)
    headers, body = receiver.got[0]
    assert not _verifies(sub["secret"] + "x", headers, body)
    assert not _verifies(sub["secret"], headers, body.replace(b'"seq"', b'"seq" '))

    # the body is the events feed's item for that seq
    admin_client, admin = rig.client(rig.admin)
    page = admin_client.get(f"/api/v1/events?after={start}&limit=100", headers=admin).json()
    feed_items = {item["seq"]: item for item in page["data"]}
    for b in bodies:
        assert _same_moments(b) == _same_moments(feed_items[b["seq"]])

    # the log: one successful attempt per event, the crashed one twice (its first unrecorded)
    log = rig.attempts(sub["id"], limit=100)
    assert [a["event_seq"] for a in log] == expected
    assert all(a["ok"] and a["http_status"] == 200 and a["duration_ms"] >= 0 for a in log)
    assert "reason" not in json.dumps(log)  # no event body in the log


def _same_moments(item: dict[str, Any]) -> dict[str, Any]:
    return {
        k: datetime.fromisoformat(v.replace("Z", "+00:00")) if k in ("at", "published_at") else v
        for k, v in item.items()
    }


def test_the_payload_is_the_feed_item() -> None:
    e = FeedEvent(5, OPENED_AT, 9, OPENED_AT, 3, 4, DONG_A, "inactivity", "warning", "open",
                  "acknowledged", "care_manager:2", "확인")  # fmt: skip
    ours = _same_moments(event_payload(e))
    assert ours == _same_moments(FeedEventOut.of(e).model_dump(mode="json"))


def test_a_failing_receiver_is_retried_with_backoff_in_order_then_paused(
    rig: Rig, receiver: Receiver
) -> None:
    sub = rig.subscribe(receiver.url, None)
    seed_alert(rig.database, rig.clock, rig.residents[DONG_A], "inactivity")
    rig.alerts.process_due()  # the opening, then the check-in call: two events at least
    answers = iter([500, 500])
    receiver.answer = lambda seq: next(answers, 200)
    deliverer = rig.deliverer()

    deliverer.run_once()
    deliverer.run_once()  # not due yet: nothing sent
    [first] = receiver.seqs()
    log = rig.attempts(sub["id"])
    assert [(a["event_seq"], a["http_status"], a["error"], a["ok"]) for a in log] == [
        (first, 500, "http_status", False)
    ]
    waits = []
    for expected_attempts in (2, 3):
        at = datetime.fromisoformat(log[-1]["next_attempt_at"])
        waits.append(at - datetime.fromisoformat(log[-1]["at"]))
        rig.clock.advance(at - rig.clock.now() - timedelta(seconds=1))
        deliverer.run_once()  # a second early: still waiting
        assert len(receiver.seqs()) == expected_attempts - 1
        rig.clock.advance(timedelta(seconds=1))
        deliverer.run_once()
        log = rig.attempts(sub["id"])
    # 30 s then 60 s, each less a random part of up to half
    assert timedelta(seconds=15) <= waits[0] <= timedelta(seconds=30)
    assert timedelta(seconds=30) <= waits[1] <= timedelta(seconds=60)
    arrived = receiver.seqs()
    assert arrived[:3] == [first] * 3 and len(arrived) >= 4  # the next only after a success
    assert arrived == sorted(arrived)
    assert [a["http_status"] for a in log[:3]] == [500, 500, 200]

    # a receiver down for good: retried at most hourly, paused after three days of failing
    receiver.answer = lambda seq: 503
    seed_alert(rig.database, rig.clock, rig.residents[DONG_B], "inactivity")
    deliverer.run_once()
    failing_from = rig.clock.now()
    client, admin = rig.client(rig.admin)
    for _ in range(200):
        shown = client.get(f"/api/v1/webhooks/{sub['id']}", headers=admin).json()
        if shown["state"] == "paused":
            break
        last = client.get(f"/api/v1/webhooks/{sub['id']}/deliveries?limit=1", headers=admin)
        pending = last.json()["data"][0]
        at = datetime.fromisoformat(pending["next_attempt_at"])
        assert at - datetime.fromisoformat(pending["at"]) <= RETRY_MAX
        rig.clock.advance(at - rig.clock.now())
        deliverer.run_once()
    assert shown["paused_reason"] == "failing" and shown["state_changed_by"] == "system"
    assert shown["last_error"] == "http_503" and shown["pending"] >= 1
    paused_at = datetime.fromisoformat(shown["state_changed_at"])
    assert paused_at - failing_from >= timedelta(hours=72)
    assert paused_at - failing_from < timedelta(hours=72) + RETRY_MAX
    tried = len(receiver.seqs())
    rig.clock.advance(timedelta(days=1))
    deliverer.run_once()
    assert len(receiver.seqs()) == tried  # paused: nothing sent

    receiver.answer = lambda seq: 200  # the receiver is back and an admin resumes
    resumed = client.post(f"/api/v1/webhooks/{sub['id']}/resume", headers=admin)
    assert resumed.status_code == 200 and resumed.json()["state"] == "active"
    deliverer.run_once()
    shown = client.get(f"/api/v1/webhooks/{sub['id']}", headers=admin).json()
    assert shown["pending"] == 0 and shown["failing_since"] is None
    distinct = list(dict.fromkeys(receiver.seqs()))
    assert distinct == sorted(distinct)


def test_each_subscription_gets_only_its_scope(rig: Rig, receiver: Receiver) -> None:
    only_b = Receiver()
    only_b.start()
    try:
        district = rig.subscribe(receiver.url, None)
        dong_b = rig.subscribe(only_b.url, [DONG_B])
        for dong in (DONG_A, DONG_B, DONG_C):
            seed_alert(rig.database, rig.clock, rig.residents[dong], "inactivity")
        rig.deliverer().run_once()
        dongs = {json.loads(b)["dong_code"] for _, b in receiver.got}
        assert dongs == {DONG_A, DONG_B}  # the district's dongs, not 중구's
        assert {json.loads(b)["dong_code"] for _, b in only_b.got} == {DONG_B}
        assert district["dongs"] is None and dong_b["dongs"] == [DONG_B]
    finally:
        only_b.stop()

    # pause, list, delete: a deleted subscription gets nothing more and is gone from the list
    client, admin = rig.client(rig.admin)
    paused = client.post(f"/api/v1/webhooks/{district['id']}/pause", headers=admin).json()
    assert (paused["state"], paused["paused_reason"]) == ("paused", "admin")
    first = client.get("/api/v1/webhooks?limit=1", headers=admin).json()
    assert first["has_more"] and [w["id"] for w in first["data"]] == [district["id"]]
    rest = client.get(f"/api/v1/webhooks?cursor={first['next_cursor']}", headers=admin).json()
    assert [w["id"] for w in rest["data"]] == [dong_b["id"]] and not rest["has_more"]
    assert "secret" not in json.dumps(first) + json.dumps(rest)
    assert client.delete(f"/api/v1/webhooks/{district['id']}", headers=admin).status_code == 204
    assert client.get(f"/api/v1/webhooks/{district['id']}", headers=admin).status_code == 404
    sent = len(receiver.got)
    seed_alert(rig.database, rig.clock, rig.residents[DONG_A], "no_return")
    rig.deliverer().run_once()
    assert len(receiver.got) == sent
    with rig.database.connection() as conn:
        row = conn.execute(
            "SELECT secret_sealed, state FROM anbu.webhook_subscription WHERE id = %s",
            (district["id"],),
        ).fetchone()
    assert row == (None, "deleted")


def test_only_a_district_admin_manages_webhooks(rig: Rig, receiver: Receiver) -> None:
    sub = rig.subscribe(receiver.url, [DONG_A])
    for who in (rig.manager, rig.supervisor):
        client, headers = rig.client(who)
        made = client.post("/api/v1/webhooks", json={"url": receiver.url}, headers=headers)
        assert made.status_code == 403
        assert client.get("/api/v1/webhooks", headers=headers).status_code == 403
        log = client.get(f"/api/v1/webhooks/{sub['id']}/deliveries", headers=headers)
        assert log.status_code == 403
    client, other = rig.client(rig.other_admin)  # another district's admin: not theirs
    assert client.get(f"/api/v1/webhooks/{sub['id']}", headers=other).status_code == 404
    assert client.get(f"/api/v1/webhooks/{sub['id']}/deliveries", headers=other).status_code == 404
    assert client.delete(f"/api/v1/webhooks/{sub['id']}", headers=other).status_code == 404
    assert client.get("/api/v1/webhooks", headers=other).json()["data"] == []
    refused = client.post(
        "/api/v1/webhooks", json={"url": receiver.url, "dongs": [DONG_A]}, headers=other
    )
    assert refused.status_code == 422 and refused.json()["code"] == "webhook_dongs"


@pytest.mark.parametrize(
    ("url", "code"),
    [
        ("http://127.0.0.1:{port}/x", "webhook_address_refused"),
        ("https://localhost:{port}/x", "webhook_address_refused"),
        ("https://10.1.2.3/x", "webhook_address_refused"),
        ("https://192.168.0.10/x", "webhook_address_refused"),
        ("https://169.254.169.254/latest/meta-data", "webhook_address_refused"),
        ("https://[::1]/x", "webhook_address_refused"),
        ("https://[::ffff:10.0.0.1]/x", "webhook_address_refused"),
        ("https://[fe80::1]/x", "webhook_address_refused"),
        ("https://100.64.0.1/x", "webhook_address_refused"),
        ("http://1.1.1.1/x", "webhook_https_required"),
        ("https://user:pw@1.1.1.1/x", "webhook_url_invalid"),
        ("ftp://1.1.1.1/x", "webhook_url_invalid"),
        ("https://no-such-host.invalid/x", "webhook_address_unresolved"),
    ],
)
def test_private_and_loopback_targets_are_refused(
    database: Database, db_url: str, unique: str, receiver: Receiver, url: str, code: str
) -> None:
    rig = _rig(database, db_url, unique, allow_loopback=False)
    client, admin = rig.client(rig.admin)
    assert receiver.server is not None
    target = url.format(port=receiver.server.server_address[1])
    refused = client.post("/api/v1/webhooks", json={"url": target}, headers=admin)
    assert refused.status_code == 422, refused.text
    assert (
        refused.json()["code"] == code and refused.json()["detail"] != refused.json()["detail_en"]
    )


def test_loopback_only_where_allowed_and_checked_again_at_delivery(
    rig: Rig, receiver: Receiver
) -> None:
    client, admin = rig.client(rig.admin)
    for url in ("http://10.0.0.1/x", "https://172.16.0.1/x"):  # never, loopback allowed or not
        refused = client.post("/api/v1/webhooks", json={"url": url}, headers=admin)
        assert refused.status_code == 422 and refused.json()["code"] == "webhook_address_refused"
    sub = rig.subscribe(receiver.url, None)  # the test setting allows the loopback receiver
    seed_alert(rig.database, rig.clock, rig.residents[DONG_A], "inactivity")
    rig.deliverer(allow_loopback=False).run_once()  # a worker that does not allow it
    assert receiver.got == []
    with rig.database.connection() as conn:  # a target changed behind the API's back
        conn.execute(
            "UPDATE anbu.webhook_subscription SET url = 'https://10.0.0.1/x' WHERE id = %s",
            (sub["id"],),
        )
    rig.clock.advance(timedelta(hours=2))
    rig.deliverer().run_once()
    assert receiver.got == []
    assert [(a["error"], a["http_status"]) for a in rig.attempts(sub["id"])] == [
        ("address_refused", None),
        ("address_refused", None),
    ]


def test_two_workers_never_deliver_the_same_event_twice(rig: Rig, receiver: Receiver) -> None:
    rig.subscribe(receiver.url, None)
    for dong, kind in ((DONG_A, "inactivity"), (DONG_B, "inactivity"), (DONG_A, "no_return"),
                       (DONG_B, "no_return")):  # fmt: skip
        seed_alert(rig.database, rig.clock, rig.residents[dong], kind)
        rig.alerts.process_due()
    slow = threading.Event()

    def answer(seq: int) -> int:  # slow enough that both workers are at it together
        slow.wait(0.02)
        return 200

    receiver.answer = answer
    workers = [threading.Thread(target=rig.deliverer(seed=n).run_once) for n in range(4)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(60)
    for _ in range(3):  # whatever a worker skipped while another held the subscription
        rig.deliverer().run_once()
    arrived = receiver.seqs()
    assert len(arrived) >= 8 and arrived == sorted(set(arrived))


def test_timestamps_are_utc_seconds(rig: Rig, receiver: Receiver) -> None:
    rig.subscribe(receiver.url, None)
    seed_alert(rig.database, rig.clock, rig.residents[DONG_A], "inactivity")
    rig.deliverer().run_once()
    headers, _ = receiver.got[0]
    assert int(headers["Anbu-Timestamp"]) == int(rig.clock.now().astimezone(UTC).timestamp())


def test_a_key_rotation_reseals_the_secrets_and_deliveries_go_on(
    rig: Rig, receiver: Receiver
) -> None:
    """anbu keys rotate re-seals a subscription's secret under the new key (the census counts
    it there), and a worker holding only the new key still signs with the same secret; every
    delivery is in the access log as the subscription's read of that resident."""
    made = rig.subscribe(receiver.url, None)
    fresh = Keyring.of(new_key())
    ring = Keyring(fresh.current_id, {**rig.keyring.keys, **fresh.keys})
    with psycopg.connect(rig.db_url, autocommit=True) as conn:
        rotate_keys(conn, ring)
        census = key_census(conn)
    assert census.by_key.get(ring.current_id) == 1 and rig.keyring.current_id not in census.by_key
    rig.keyring = fresh  # the old key gone
    rid = rig.residents[DONG_A]
    seed_alert(rig.database, rig.clock, rid, "inactivity")
    assert rig.deliverer().run_once().delivered >= 1
    headers, body = receiver.got[0]
    assert _verifies(made["secret"], headers, body)
    with rig.database.connection() as conn:
        reads = conn.execute(
            """SELECT actor, view, fields FROM anbu.access_log WHERE resident_id = %s
                AND actor = %s""",
            (rid, f"webhook:{made['id']}"),
        ).fetchall()
    assert reads and reads[0][1:] == ("alert", ["timeline", "transcripts"])


def test_names_and_addresses_in_other_spellings_are_read_as_dns_has_them() -> None:
    """An internationalised host is sent as punycode (it stopped every later webhook before);
    IPv6 forms carrying a private or loopback IPv4 address, and site-local ones, are refused."""
    assert read_url("https://bücher.example/hook").host == "xn--bcher-kva.example"
    assert read_url("https://한국.kr/").host == "xn--3e0b707e.kr"
    for address in ("64:ff9b::a00:1", "64:ff9b:1::a00:1", "2002:7f00:1::", "::127.0.0.1",
                    "::ffff:0:7f00:1", "fec0::1", "::ffff:10.0.0.1"):  # fmt: skip
        assert not address_allowed(address, allow_loopback=False), address
    assert address_allowed("2606:4700:4700::1111", allow_loopback=False)
    assert address_allowed("64:ff9b::808:808", allow_loopback=False)  # 8.8.8.8 through NAT64
