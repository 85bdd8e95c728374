"""Webhook subscriptions (issue 22): a district admin's target for the event feed, pushed.

A subscription covers a district, or some of its dongs, and receives the feed's events of the
residents in them (alerts.feed), from its creation on, in the feed's order. Its secret is made
here, shown once, and kept sealed with the data key bound to the subscription's id, because the
worker needs it to sign. Pausing stops deliveries, not the outbox: a resumed subscription gets
what it missed, in order. Deleting stops both, drops the secret and cancels what was waiting;
the row and its delivery log stay. The worker pauses a subscription that failed for too long
(alerts.webhook_delivery); an admin resumes it. Every read and change is scoped to the
admin's district: another district's subscription is not found.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg.rows import dict_row

from alerts import feed
from alerts.webhook_targets import Resolver, check, system_resolver
from core.crypto import DataKeyMissing, Keyring
from core.db import Database, keyset_page
from registry.key_rotation import webhook_secret_field

SECRET_BYTES = 32


class SubscriptionNotFound(LookupError):
    """No such subscription in the admin's district (or it was deleted)."""


class DongsRefused(ValueError):
    """Dongs outside the admin's district, or none."""


def secret_field(subscription_id: int) -> str:
    """The sealed secret's associated data: it opens for its own subscription only (the key
    rotation re-seals it under the same)."""
    return webhook_secret_field(subscription_id)


@dataclass(frozen=True, slots=True)
class Subscription:
    id: int
    district: str
    dongs: tuple[str, ...] | None  # None: every dong of the district
    url: str
    description: str
    state: str  # active | paused
    paused_reason: str | None  # admin | failing
    state_changed_at: datetime
    state_changed_by: str
    created_by: int
    created_at: datetime
    failing_since: datetime | None
    last_success_at: datetime | None
    pending: int  # deliveries waiting
    last_error: str | None  # the latest attempt's failure, when it failed


@dataclass(frozen=True, slots=True)
class Attempt:
    id: int
    seq: int
    attempt: int
    at: datetime
    duration_ms: int
    http_status: int | None
    error: str | None
    ok: bool
    next_attempt_at: datetime | None


_SELECT = """
SELECT s.id, s.district, s.dongs, s.url, s.description, s.state, s.paused_reason,
       s.state_changed_at, s.state_changed_by, s.created_by, s.created_at, s.failing_since,
       s.last_success_at,
       (SELECT count(*) FROM anbu.webhook_delivery d
         WHERE d.subscription_id = s.id AND d.state = 'pending') AS pending,
       (SELECT CASE WHEN t.ok THEN NULL
                    WHEN t.http_status IS NOT NULL THEN 'http_' || t.http_status
                    ELSE t.error END
          FROM anbu.webhook_attempt t WHERE t.subscription_id = s.id
         ORDER BY t.id DESC LIMIT 1) AS last_error
  FROM anbu.webhook_subscription s
 WHERE s.district = %(district)s AND s.state <> 'deleted'
"""


def _of(row: dict[str, Any]) -> Subscription:
    dongs = tuple(row.pop("dongs")) if row["dongs"] is not None else None
    return Subscription(dongs=dongs, **{k: v for k, v in row.items() if k != "dongs"})


def create(
    conn: psycopg.Connection[Any],
    keyring: Keyring | None,
    *,
    district: str,
    district_dongs: Sequence[str],
    dongs: Sequence[str] | None,
    url: str,
    description: str,
    by: int,
    now: datetime,
    allow_loopback: bool,
    resolver: Resolver = system_resolver,
) -> tuple[Subscription, str]:
    """A new active subscription and its secret (the only time it is given out). Refused:
    TargetRefused (the URL), DongsRefused, DataKeyMissing."""
    if dongs is not None:
        wanted = sorted(set(dongs))
        if not wanted or any(d not in district_dongs for d in wanted):
            raise DongsRefused(", ".join(d for d in wanted if d not in district_dongs))
        dongs = wanted
    check(url, allow_loopback, resolver)
    if keyring is None:
        raise DataKeyMissing("ANBU_DATA_KEY is not set: webhook secrets are sealed with it")
    feed.publish(conn, now)  # events already in anbu.alert_events are not the new one's
    row = conn.execute(
        """SELECT nextval('anbu.webhook_subscription_id_seq'),
                  (SELECT coalesce(max(seq), 0) FROM anbu.event_feed)"""
    ).fetchone()
    assert row is not None
    sub_id, top = int(row[0]), int(row[1])
    secret = secrets.token_urlsafe(SECRET_BYTES)
    sealed = keyring.seal(secret, secret_field(sub_id))
    conn.execute(
        """INSERT INTO anbu.webhook_subscription
               (id, district, dongs, url, description, secret_sealed, secret_key_id,
                state_changed_at, state_changed_by, created_by, created_at, feed_after)
           VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)""",
        (sub_id, district, dongs, url, description, sealed.blob, sealed.key_id, now,
         f"care_manager:{by}", by, now, top),
    )  # fmt: skip
    return get(conn, district, sub_id), secret


def get(conn: psycopg.Connection[Any], district: str, subscription_id: int) -> Subscription:
    with conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute(
            _SELECT + " AND s.id = %(id)s", {"district": district, "id": subscription_id}
        ).fetchone()
    if row is None:
        raise SubscriptionNotFound(subscription_id)
    return _of(row)


def page(
    conn: psycopg.Connection[Any], district: str, limit: int, after: Sequence[Any] | None
) -> tuple[list[Subscription], tuple[Any, ...] | None]:
    """The district's subscriptions by id, a page at a time."""
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(
            _SELECT + " AND s.id > %(after)s ORDER BY s.id LIMIT %(n)s",
            {"district": district, "after": after[0] if after else 0, "n": limit + 1},
        ).fetchall()
    return keyset_page([_of(r) for r in rows], limit, lambda s: (s.id,))


_CHANGE = """UPDATE anbu.webhook_subscription SET {sets},
                   state_changed_at = %(now)s, state_changed_by = %(by)s
             WHERE id = %(id)s AND district = %(district)s AND state <> 'deleted'
            RETURNING id"""


def _change(
    conn: psycopg.Connection[Any], district: str, subscription_id: int, sets: str,
    params: dict[str, Any],
) -> None:  # fmt: skip
    # `sets` is one of this module's constant assignments; every value is a parameter
    done = conn.execute(
        _CHANGE.replace("{sets}", sets),
        {**params, "id": subscription_id, "district": district},
    ).fetchone()
    if done is None:
        raise SubscriptionNotFound(subscription_id)


def pause(
    conn: psycopg.Connection[Any], district: str, subscription_id: int, by: int, now: datetime
) -> Subscription:
    """Stop deliveries; the outbox keeps filling (a resume delivers what was missed)."""
    _change(conn, district, subscription_id, "state = 'paused', paused_reason = 'admin'",
            {"now": now, "by": f"care_manager:{by}"})  # fmt: skip
    return get(conn, district, subscription_id)


def resume(
    conn: psycopg.Connection[Any], district: str, subscription_id: int, by: int, now: datetime
) -> Subscription:
    """Deliver again, the waiting head at once; the failing streak starts over."""
    _change(
        conn, district, subscription_id,
        "state = 'active', paused_reason = NULL, failing_since = NULL",
        {"now": now, "by": f"care_manager:{by}"},
    )  # fmt: skip
    conn.execute(
        """UPDATE anbu.webhook_delivery SET next_attempt_at = %s
            WHERE subscription_id = %s AND state = 'pending' AND next_attempt_at > %s""",
        (now, subscription_id, now),
    )
    return get(conn, district, subscription_id)


def delete(
    conn: psycopg.Connection[Any], district: str, subscription_id: int, by: int, now: datetime
) -> None:
    """No more deliveries, the secret dropped, what waited cancelled; the log stays."""
    _change(
        conn, district, subscription_id,
        "state = 'deleted', paused_reason = NULL, secret_sealed = NULL, secret_key_id = NULL",
        {"now": now, "by": f"care_manager:{by}"},
    )  # fmt: skip
    conn.execute(
        """UPDATE anbu.webhook_delivery SET state = 'cancelled', finished_at = %s
            WHERE subscription_id = %s AND state = 'pending'""",
        (now, subscription_id),
    )


def attempts_page(
    conn: psycopg.Connection[Any],
    district: str,
    subscription_id: int,
    limit: int,
    after: Sequence[Any] | None,
) -> tuple[list[Attempt], tuple[Any, ...] | None]:
    """A subscription's delivery attempts, newest first, a page at a time."""
    get(conn, district, subscription_id)  # else SubscriptionNotFound
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(
            """SELECT id, seq, attempt, at, duration_ms, http_status, error, ok, next_attempt_at
                 FROM anbu.webhook_attempt
                WHERE subscription_id = %(id)s AND (%(after)s::bigint IS NULL OR id < %(after)s)
                ORDER BY id DESC LIMIT %(n)s""",
            {"id": subscription_id, "after": after[0] if after else None, "n": limit + 1},
        ).fetchall()
    return keyset_page([Attempt(**r) for r in rows], limit, lambda a: (a.id,))


_PRUNE = """
WITH old AS MATERIALIZED (
    SELECT id FROM anbu.webhook_delivery
     WHERE state <> 'pending' AND finished_at < %(before)s
     ORDER BY finished_at, id LIMIT %(batch)s
       FOR UPDATE SKIP LOCKED  -- another worker's prune, or a row in use, is let be
), attempts AS (
    DELETE FROM anbu.webhook_attempt a USING old WHERE a.delivery_id = old.id RETURNING 1
), deliveries AS (
    DELETE FROM anbu.webhook_delivery d USING old WHERE d.id = old.id RETURNING 1
)
SELECT (SELECT count(*) FROM deliveries), (SELECT count(*) FROM attempts)
"""
PRUNE_BATCH = 10_000


def prune_log(db: Database, before: datetime) -> tuple[int, int]:
    """Delete the delivery log's delivered and cancelled deliveries finished (delivered, or
    cancelled with their subscription) before `before`, with their attempts, a batch per
    transaction (a big backlog never holds one long lock); pending ones stay whatever their
    age. Returns (deliveries, attempts) deleted."""
    deliveries = attempts = 0
    while True:
        with db.connection() as conn:
            row = conn.execute(_PRUNE, {"before": before, "batch": PRUNE_BATCH}).fetchone()
        d, a = (int(row[0]), int(row[1])) if row else (0, 0)
        deliveries, attempts = deliveries + d, attempts + a
        if d < PRUNE_BATCH:
            return deliveries, attempts
