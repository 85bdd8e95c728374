"""Limits on what refused messages may cost: payload size, rows per gateway per hour, age.

A gateway gone wrong (or a hostile one) can send a stream of refusals as fast as the broker
lets it. Each refusal is still counted, but only the first `per_gateway_per_hour` of a gateway
in an hour are kept as rows (and logged); the rest add to `anbu.dead_letter_budget.suppressed`
with the last reason, so a technician sees how much was refused without the table or the log
growing with the flood. Payloads are kept up to `max_payload_bytes`, with their full size.
Rows older than the retention are deleted by `expire_dead_letters`.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import psycopg

from core.config import Settings
from core.db import Database

log = logging.getLogger(__name__)

REASON_MAX_CHARS = 500
TOPIC_MAX_CHARS = 512


@dataclass(frozen=True, slots=True)
class DeadLetterLimits:
    """How much refused traffic is kept; validated so a bad setting fails at start."""

    max_payload_bytes: int = 16384
    per_gateway_per_hour: int = 1000
    retention: timedelta = timedelta(days=30)

    def __post_init__(self) -> None:
        if self.max_payload_bytes < 256:
            raise ValueError("dead letters must keep at least 256 bytes of a payload")
        if self.per_gateway_per_hour < 1:
            raise ValueError("dead letters: at least one a gateway an hour must be kept")
        if self.retention < timedelta(days=1):
            raise ValueError("dead letters must be kept at least a day")


def dead_letter_limits(settings: Settings) -> DeadLetterLimits:
    """The limits the settings ask for."""
    return DeadLetterLimits(
        max_payload_bytes=settings.dead_letter_max_payload_bytes,
        per_gateway_per_hour=settings.dead_letter_per_gateway_per_hour,
        retention=timedelta(days=settings.dead_letter_retention_days),
    )


def gateway_of(topic: str) -> str:
    """The gateway a topic belongs to (`gw/<id>/...`), or '' for a topic outside gw/."""
    parts = topic.split("/", 2)
    return parts[1][:TOPIC_MAX_CHARS] if len(parts) >= 2 and parts[0] == "gw" else ""


def admit(
    conn: psycopg.Connection[Any],
    gateways: list[str],
    now: datetime,
    limits: DeadLetterLimits,
    reasons: list[str],
) -> list[bool]:
    """Which of these refusals (one per entry, in order) may be kept as rows this hour.

    Counts every refusal in `anbu.dead_letter_budget` (one row per gateway and hour, updated
    atomically, so several ingest workers share one budget) and returns True for those still
    inside the gateway's hourly allowance.
    """
    hour = now.replace(minute=0, second=0, microsecond=0)
    wanted = Counter(gateways)
    last_reason = {g: r for g, r in zip(gateways, reasons, strict=True)}
    allowed: dict[str, int] = {}
    for gateway in sorted(wanted):  # a fixed order: two workers never wait on each other's rows
        n = wanted[gateway]
        row = conn.execute(
            """INSERT INTO anbu.dead_letter_budget AS b (gateway_id, hour, refused, kept, last_reason)
               VALUES (%(g)s, %(h)s, %(n)s, LEAST(%(n)s, %(cap)s), %(r)s)
               ON CONFLICT (gateway_id, hour) DO UPDATE SET
                   refused = b.refused + %(n)s,
                   kept = LEAST(b.kept + %(n)s, %(cap)s),
                   last_reason = %(r)s
               RETURNING kept, refused""",
            {
                "g": gateway,
                "h": hour,
                "n": n,
                "cap": limits.per_gateway_per_hour,
                "r": last_reason[gateway][:REASON_MAX_CHARS],
            },
        ).fetchone()
        assert row is not None
        kept_after, refused_after = int(row[0]), int(row[1])
        kept_before = min(refused_after - n, limits.per_gateway_per_hour)
        allowed[gateway] = max(0, kept_after - kept_before)
        if allowed[gateway] < n:
            log.warning(
                "dead letters over the gateway's hourly limit; counted, not kept",
                extra={
                    "gateway": gateway,
                    "suppressed": n - allowed[gateway],
                    "refused_this_hour": refused_after,
                },
            )
    out: list[bool] = []
    for gateway in gateways:
        out.append(allowed[gateway] > 0)
        allowed[gateway] -= 1
    return out


def cut_payload(payload: bytes, limits: DeadLetterLimits) -> tuple[bytes, bool]:
    """The payload as kept (at most `max_payload_bytes`) and whether it was cut."""
    if len(payload) <= limits.max_payload_bytes:
        return payload, False
    return payload[: limits.max_payload_bytes], True


@dataclass(frozen=True, slots=True)
class Expired:
    """What one expiry pass deleted."""

    letters: int
    budgets: int


def expire_dead_letters(
    db: Database, now: datetime, limits: DeadLetterLimits, batch: int = 10000
) -> Expired:
    """Delete dead letters and hourly counts older than the retention, in short transactions."""
    cutoff = now - limits.retention
    letters = 0
    while True:
        with db.connection() as conn:
            cur = conn.execute(
                """DELETE FROM anbu.dead_letters WHERE id IN (
                       SELECT id FROM anbu.dead_letters WHERE received_at < %s
                       ORDER BY received_at LIMIT %s FOR UPDATE SKIP LOCKED)""",
                (cutoff, batch),
            )
            letters += cur.rowcount
        if cur.rowcount < batch:
            break
    with db.connection() as conn:
        budgets = conn.execute(
            "DELETE FROM anbu.dead_letter_budget WHERE hour < %s", (cutoff,)
        ).rowcount
    if letters or budgets:
        log.info("dead letters expired", extra={"letters": letters, "budgets": budgets})
    return Expired(letters, budgets)
