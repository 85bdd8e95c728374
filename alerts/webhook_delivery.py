"""The webhook outbox and its delivery (issue 22): ordered, at-least-once.

Each pass (the worker's `webhooks` job, WebhookDelivery.run_once):
1. copies new alert events into the feed (alerts.feed.publish);
2. fills each subscription's outbox: one anbu.webhook_delivery row per feed event of its
   residents, in seq order, the subscription's row locked (FOR UPDATE SKIP LOCKED) so two
   workers never enqueue for it at once; `feed_after` remembers how far it looked;
3. delivers: per active subscription with a due head, a session advisory lock on the
   subscription (pg_try_advisory_lock: a worker that does not get it moves on), then its
   lowest pending seq, re-read under the lock, is POSTed; the next waits for its success.
   The lock lives on the connection, not in a transaction: no row is locked and no transaction
   is open while the receiver answers, and a worker that dies lets go of it with its
   connection.

A POST carries the event as `GET /api/v1/events` gives it, `Anbu-Event-Id` (the feed seq:
receivers de-duplicate by it), `Anbu-Timestamp` (Unix seconds) and `Anbu-Signature`
(alerts.webhook_targets.signature). Only a 2xx is success; a redirect is not followed. Its
target is resolved and checked again first, and the request goes to the address checked. A
failure is retried after a growing wait with jitter (30 s doubling, capped at an hour); a
subscription failing for longer than ANBU_EVENT_WEBHOOKS_PAUSE_AFTER_HOURS is paused
('failing'), which its listing shows. A worker that dies between the receiver's 2xx and
recording it delivers that event once more: receivers de-duplicate by Anbu-Event-Id.

Every attempt is logged in anbu.webhook_attempt: time, HTTP status or the error's class,
duration. Bodies are never logged anywhere.
"""

from __future__ import annotations

import json
import logging
import random
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import psycopg
from psycopg.rows import dict_row

from alerts import feed
from alerts.feed import FeedEvent
from alerts.webhook_targets import Resolver, TargetRefused, check, signature, system_resolver
from alerts.webhooks import secret_field
from core.clock import Clock
from core.config import Settings
from core.crypto import DataKeyError, Keyring
from core.db import Database
from core.domain import Severity
from registry.access_log import Reader, record_access

log = logging.getLogger(__name__)

LOCK_CLASS = 0x616E6277  # 'anbw': pg_try_advisory_lock(LOCK_CLASS, subscription id)
RETRY_FIRST = timedelta(seconds=30)
RETRY_MAX = timedelta(hours=1)
ENQUEUE_BATCH = 5_000  # feed events looked at per subscription and pass
PER_SUBSCRIPTION = 100  # deliveries per subscription and pass (others wait no longer)
PUSHED_FIELDS = ("timeline", "transcripts")  # in the access log, as GET /api/v1/events records
SUBSCRIPTION_BUDGET_S = 30.0  # a subscription's share of a pass: a slow receiver delays only itself
USER_AGENT = "anbu-webhooks/1"

_ENQUEUE = """
INSERT INTO anbu.webhook_delivery (subscription_id, seq, next_attempt_at, created_at)
SELECT %(id)s, f.seq, %(now)s, %(now)s
  FROM anbu.event_feed f
  JOIN anbu.alert_events e ON e.id = f.event_id
  JOIN anbu.alerts a ON a.id = e.alert_id
  JOIN anbu.resident r ON r.id = a.resident_id
  JOIN anbu.dong d ON d.code = r.dong_code
 WHERE f.seq > %(after)s AND f.seq <= %(top)s
   AND (CASE WHEN %(dongs)s::text[] IS NULL THEN d.district = %(district)s
             ELSE r.dong_code = ANY(%(dongs)s::text[]) END)
 ORDER BY f.seq
    ON CONFLICT ON CONSTRAINT webhook_delivery_once DO NOTHING
"""

_HEAD = """
SELECT d.id, d.seq, d.attempts, d.next_attempt_at, s.state, s.url, s.secret_sealed,
       s.secret_key_id, s.failing_since
  FROM anbu.webhook_delivery d JOIN anbu.webhook_subscription s ON s.id = d.subscription_id
 WHERE d.subscription_id = %s AND d.state = 'pending'
 ORDER BY d.seq LIMIT 1
"""

_EVENT = """
SELECT f.seq, f.published_at, e.id AS event_id, e.at, e.alert_id, a.resident_id,
       r.dong_code, a.kind, a.severity, e.from_state, e.to_state, e.actor, e.reason
  FROM anbu.event_feed f
  JOIN anbu.alert_events e ON e.id = f.event_id
  JOIN anbu.alerts a ON a.id = e.alert_id
  JOIN anbu.resident r ON r.id = a.resident_id
 WHERE f.seq = %s
"""


def retry_after(attempts: int, rng: random.Random) -> timedelta:
    """The wait after the `attempts`-th failure in a row: 30 s doubling up to an hour, of which
    a random part of up to half is taken off (subscriptions that failed together do not retry
    together)."""
    wait: timedelta = min(RETRY_FIRST * 2 ** min(max(attempts - 1, 0), 20), RETRY_MAX)
    return wait * (1.0 - 0.5 * rng.random())


def _utc(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def event_payload(e: FeedEvent) -> dict[str, Any]:
    """The event as `GET /api/v1/events` gives it (dashboards.schemas.FeedEventOut)."""
    moved = e.from_state != e.to_state
    return {
        "seq": e.seq, "event_id": e.event_id,
        "type": f"alert.{e.to_state}" if moved else "alert.updated",
        "at": _utc(e.at), "published_at": _utc(e.published_at), "alert_id": e.alert_id,
        "resident_id": e.resident_id, "dong_code": e.dong_code, "kind": e.kind,
        "severity": Severity.parse(e.severity).label, "from_state": e.from_state,
        "to_state": e.to_state, "actor": e.actor, "reason": e.reason,
    }  # fmt: skip


@dataclass(frozen=True, slots=True)
class Outcome:
    """One attempt's result: 2xx, or the HTTP status or the error's class."""

    ok: bool
    http_status: int | None
    error: str | None
    duration_ms: int


@dataclass(frozen=True, slots=True)
class DeliveryPass:
    enqueued: int = 0
    delivered: int = 0
    failed: int = 0


class WebhookDelivery:
    """The outbox's filler and sender; nothing happens before run_once()."""

    def __init__(
        self,
        db: Database,
        clock: Clock,
        keyring: Keyring | None,
        *,
        allow_loopback: bool = False,
        timeout_s: float = 10.0,
        pause_after: timedelta = timedelta(hours=72),
        resolver: Resolver = system_resolver,
        rng: random.Random | None = None,
    ) -> None:
        self.db = db
        self.clock = clock
        self.keyring = keyring
        self.allow_loopback = allow_loopback
        self.timeout_s = timeout_s
        self.pause_after = pause_after
        self.resolver = resolver
        self.rng = rng or random.Random()

    def run_once(self) -> DeliveryPass:
        """Publish, enqueue, then deliver what is due of every active subscription."""
        with self.db.connection() as conn:
            feed.publish(conn, self.clock.now())
        enqueued = self.enqueue()
        delivered = failed = 0
        with self.db.connection() as conn:
            ids = [int(r[0]) for r in conn.execute(
                """SELECT s.id FROM anbu.webhook_subscription s
                    WHERE s.state = 'active' AND EXISTS (
                          SELECT 1 FROM anbu.webhook_delivery d WHERE d.subscription_id = s.id
                             AND d.state = 'pending' AND d.next_attempt_at <= %s)
                    ORDER BY s.id""", (self.clock.now(),))]  # fmt: skip
            conn.commit()
            with httpx.Client(
                timeout=self.timeout_s, follow_redirects=False, trust_env=False,
                headers={"User-Agent": USER_AGENT},
            ) as client:  # fmt: skip
                for sub_id in ids:
                    try:  # one subscription's trouble never keeps the others waiting
                        ok, bad = self._deliver_subscription(conn, client, sub_id)
                    except Exception:
                        log.exception("webhook subscription not delivered",
                                      extra={"subscription_id": sub_id})  # fmt: skip
                        if conn.closed or conn.broken:
                            raise
                        conn.rollback()
                        ok, bad = 0, 1
                    delivered, failed = delivered + ok, failed + bad
        return DeliveryPass(enqueued, delivered, failed)

    def enqueue(self) -> int:
        """Each subscription's new feed events in scope, into its outbox in seq order."""
        now = self.clock.now()
        added = 0
        with self.db.connection() as conn:
            subs = conn.execute(
                """SELECT id, district, dongs, feed_after FROM anbu.webhook_subscription
                    WHERE state <> 'deleted' ORDER BY id FOR UPDATE SKIP LOCKED"""
            ).fetchall()
            for sub_id, district, dongs, after in subs:
                (top,) = conn.execute(
                    """SELECT coalesce(max(seq), %s) FROM (
                         SELECT seq FROM anbu.event_feed WHERE seq > %s ORDER BY seq LIMIT %s) x""",
                    (after, after, ENQUEUE_BATCH),
                ).fetchone() or (after,)
                if top == after:
                    continue
                params = {"id": sub_id, "now": now, "after": after, "top": top,
                          "dongs": dongs, "district": district}  # fmt: skip
                added += conn.execute(_ENQUEUE, params).rowcount
                conn.execute(
                    "UPDATE anbu.webhook_subscription SET feed_after = %s WHERE id = %s",
                    (top, sub_id),
                )
        return added

    def _deliver_subscription(
        self, conn: psycopg.Connection[Any], client: httpx.Client, sub_id: int
    ) -> tuple[int, int]:
        """Deliver `sub_id`'s due events in order while they succeed, under its lock."""
        (got,) = conn.execute(
            "SELECT pg_try_advisory_lock(%s, %s)", (LOCK_CLASS, sub_id)
        ).fetchone() or (False,)
        conn.commit()
        if not got:
            return 0, 0  # another worker is delivering it
        delivered = 0
        budget = time.monotonic() + SUBSCRIPTION_BUDGET_S
        try:
            for _ in range(PER_SUBSCRIPTION):
                if time.monotonic() > budget:  # a slow receiver: the rest waits for next pass
                    return delivered, 0
                with conn.cursor(row_factory=dict_row) as cur:
                    head = cur.execute(_HEAD, (sub_id,)).fetchone()
                    now = self.clock.now()
                    if head is None or head["state"] != "active" or head["next_attempt_at"] > now:
                        conn.commit()
                        return delivered, 0
                    event = cur.execute(_EVENT, (head["seq"],)).fetchone()
                conn.commit()  # nothing open while the receiver answers
                outcome = self._post(client, sub_id, head, event)
                self._record(conn, sub_id, head, outcome)
                if outcome.ok and event is not None:  # a resident's alert story left anbu
                    record_access(conn, Reader(actor=f"webhook:{sub_id}"),
                                  int(event["resident_id"]), "alert", PUSHED_FIELDS)  # fmt: skip
                conn.commit()
                if not outcome.ok:
                    return delivered, 1
                delivered += 1
            return delivered, 0
        finally:
            if not conn.closed and not conn.broken:
                conn.rollback()
                conn.execute("SELECT pg_advisory_unlock(%s, %s)", (LOCK_CLASS, sub_id))
                conn.commit()

    def _post(
        self, client: httpx.Client, sub_id: int, head: dict[str, Any],
        event: dict[str, Any] | None,
    ) -> Outcome:  # fmt: skip
        """One signed POST of `event` to the subscription's checked address."""
        started = time.monotonic()

        def failed(error: str, status: int | None = None) -> Outcome:
            return Outcome(False, status, error, int((time.monotonic() - started) * 1000))

        if event is None:  # cannot happen while event_feed rows are kept; never silently ok
            return failed("event_missing")
        try:
            if self.keyring is None:
                raise DataKeyError("ANBU_DATA_KEY is not set")
            secret = self.keyring.open(
                head["secret_sealed"], head["secret_key_id"], secret_field(sub_id)
            )
        except DataKeyError:
            return failed("data_key")
        try:
            target, address = check(head["url"], self.allow_loopback, self.resolver)
        except TargetRefused as exc:
            return failed(exc.code)
        body = json.dumps(
            event_payload(FeedEvent(**event)), ensure_ascii=False, separators=(",", ":")
        ).encode()
        stamp = str(int(self.clock.now().timestamp()))
        headers = {
            "Host": target.host_header,
            "Content-Type": "application/json",
            "Anbu-Event-Id": str(head["seq"]),
            "Anbu-Timestamp": stamp,
            "Anbu-Signature": signature(secret, stamp, body),
        }
        extensions = {"sni_hostname": target.host} if target.scheme == "https" else {}
        try:
            with client.stream(
                "POST", target.at(address), content=body, headers=headers, extensions=extensions
            ) as answer:  # the answer's body is never read
                status = answer.status_code
        except httpx.TimeoutException:
            return failed("timeout")
        except httpx.ConnectError:
            return failed("connect")
        except httpx.HTTPError as exc:
            return failed(type(exc).__name__.lower()[:40])
        except Exception as exc:  # anything else is this attempt's failure, never the pass's
            log.warning("webhook delivery failed", extra={"subscription_id": sub_id,
                                                          "error": type(exc).__name__})  # fmt: skip
            return failed(type(exc).__name__.lower()[:40])
        if 200 <= status < 300:
            return Outcome(True, status, None, int((time.monotonic() - started) * 1000))
        return failed("http_status", status)

    def _record(
        self, conn: psycopg.Connection[Any], sub_id: int, head: dict[str, Any], outcome: Outcome
    ) -> None:
        """The attempt in the log and its delivery settled; on failure the next try planned
        and, past the failing limit, the subscription paused."""
        now = self.clock.now()
        attempt = int(head["attempts"]) + 1
        next_at = None if outcome.ok else now + retry_after(attempt, self.rng)
        conn.execute(
            """UPDATE anbu.webhook_delivery
                  SET attempts = %(attempt)s,
                      state = CASE WHEN %(ok)s THEN 'delivered' ELSE state END,
                      delivered_at = CASE WHEN %(ok)s THEN %(now)s END,
                      finished_at = CASE WHEN %(ok)s THEN %(now)s END,
                      next_attempt_at = coalesce(%(next)s, next_attempt_at)
                WHERE id = %(id)s AND state = 'pending'""",
            {"attempt": attempt, "ok": outcome.ok, "now": now, "next": next_at, "id": head["id"]},
        )
        conn.execute(
            """INSERT INTO anbu.webhook_attempt (delivery_id, subscription_id, seq, attempt, at,
                   duration_ms, http_status, error, ok, next_attempt_at)
               VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)""",
            (head["id"], sub_id, head["seq"], attempt, now, outcome.duration_ms,
             outcome.http_status, outcome.error, outcome.ok, next_at),
        )  # fmt: skip
        if outcome.ok:
            conn.execute(
                """UPDATE anbu.webhook_subscription
                      SET failing_since = NULL, last_success_at = %s WHERE id = %s""",
                (now, sub_id),
            )
            return
        log.warning("webhook delivery failed", extra={
            "subscription_id": sub_id, "seq": head["seq"], "attempt": attempt,
            "http_status": outcome.http_status, "error": outcome.error})  # fmt: skip
        since = head["failing_since"] or now
        paused = conn.execute(
            """UPDATE anbu.webhook_subscription
                  SET failing_since = coalesce(failing_since, %(now)s),
                      state = CASE WHEN %(give_up)s THEN 'paused' ELSE state END,
                      paused_reason = CASE WHEN %(give_up)s THEN 'failing' ELSE paused_reason END,
                      state_changed_at = CASE WHEN %(give_up)s THEN %(now)s
                                              ELSE state_changed_at END,
                      state_changed_by = CASE WHEN %(give_up)s THEN 'system'
                                              ELSE state_changed_by END
                WHERE id = %(id)s AND state = 'active'
               RETURNING state""",
            {"now": now, "give_up": now - since >= self.pause_after, "id": sub_id},
        ).fetchone()
        if paused is not None and paused[0] == "paused":
            log.warning("webhook subscription paused: failing too long",
                        extra={"subscription_id": sub_id, "failing_since": since.isoformat()})  # fmt: skip


def from_settings(db: Database, clock: Clock, settings: Settings) -> WebhookDelivery:
    """The worker's delivery, as configured (ANBU_EVENT_WEBHOOKS_*, the data key that opens
    the secrets: without one, attempts fail as 'data_key' and the log says so)."""
    keyring = None
    if settings.data_key:
        try:
            keyring = Keyring.from_settings(settings)
        except DataKeyError:
            log.error("webhook secrets cannot be opened: the data key is unreadable")
    return WebhookDelivery(
        db, clock, keyring, allow_loopback=settings.event_webhooks_allow_loopback,
        timeout_s=settings.event_webhooks_timeout_s,
        pause_after=timedelta(hours=settings.event_webhooks_pause_after_hours),
    )  # fmt: skip
