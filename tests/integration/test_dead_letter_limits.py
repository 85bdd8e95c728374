"""Refused messages cost bounded room: payloads cut, a flood counted not kept, old rows expire."""

from __future__ import annotations

import logging
import threading
from datetime import UTC, datetime, timedelta

import pytest

import registry
from core.db import Database
from ingest.dead_letter_limits import DeadLetterLimits, expire_dead_letters
from ingest.deadletters import replay_dead_letters
from ingest.store import Message, Store

NOW = datetime(2026, 11, 22, 9, 30, tzinfo=UTC)
LIMITS = DeadLetterLimits(max_payload_bytes=1024, per_gateway_per_hour=20)


def _flood(gateway: str, n: int, payload: bytes = b"not json") -> list[Message]:
    return [Message(f"gw/{gateway}/anbu/readings", payload + str(i).encode()) for i in range(n)]


def _rows(db: Database, sql: str, *params: object) -> list[tuple[object, ...]]:
    with db.connection() as conn:
        return conn.execute(sql, params).fetchall()


def test_a_flood_from_one_gateway_is_counted_but_kept_only_to_its_allowance(
    database: Database, caplog: pytest.LogCaptureFixture
) -> None:
    store = Store(database, dead_letters=LIMITS)
    caplog.set_level(logging.INFO, logger="ingest")
    for _ in range(5):
        summary = store.store_batch(_flood("gw-loud", 30), NOW)
        assert summary.dead_lettered == 30  # every refusal is still reported
    store.store_batch(_flood("gw-quiet", 3), NOW)
    kept = _rows(database, "SELECT topic, count(*) FROM anbu.dead_letters GROUP BY 1 ORDER BY 1")
    assert kept == [("gw/gw-loud/anbu/readings", 20), ("gw/gw-quiet/anbu/readings", 3)]
    budget = _rows(
        database,
        "SELECT gateway_id, refused, kept FROM anbu.dead_letter_budget ORDER BY gateway_id",
    )
    assert budget == [("gw-loud", 150, 20), ("gw-quiet", 3, 3)]
    per_letter = [r for r in caplog.records if r.getMessage() == "dead letter"]
    assert len(per_letter) == 23  # logged one by one only while kept
    # the next hour, the loud gateway has a fresh allowance
    store.store_batch(_flood("gw-loud", 30), NOW + timedelta(hours=1))
    assert _rows(
        database, "SELECT count(*) FROM anbu.dead_letters WHERE topic LIKE 'gw/gw-loud/%%'"
    ) == [(40,)]


def test_two_workers_share_one_allowance(database: Database) -> None:
    errors: list[BaseException] = []
    start = threading.Barrier(2)

    def worker() -> None:
        try:
            store = Store(database, dead_letters=LIMITS)
            start.wait(10)
            for _ in range(10):
                store.store_batch(_flood("gw-loud", 7), NOW)
        except BaseException as exc:  # collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == [] and not any(t.is_alive() for t in threads)
    assert _rows(database, "SELECT count(*) FROM anbu.dead_letters") == [(20,)]
    assert _rows(database, "SELECT refused, kept FROM anbu.dead_letter_budget") == [(140, 20)]


def test_a_huge_payload_is_cut_to_the_limit_and_never_replayed(database: Database) -> None:
    store = Store(database, dead_letters=LIMITS)
    big = b'{"readings": [' + b" " * 50_000 + b"]}"
    store.store_batch([Message("gw/gw-a/anbu/readings", big)], NOW)
    rows = _rows(
        database, "SELECT length(payload), payload_bytes, truncated FROM anbu.dead_letters"
    )
    assert rows == [(1024, len(big), True)]
    with database.connection() as conn:
        registry.add_dong(conn, "1111051500", "청운효자동", "종로구")
    result = replay_dead_letters(database, store, NOW)
    assert (result.replayed, result.still_dead) == (0, 0)  # a cut payload is not read again
    assert _rows(database, "SELECT replayed_at FROM anbu.dead_letters") == [(None,)]


def test_old_dead_letters_and_counts_expire(database: Database) -> None:
    store = Store(database, dead_letters=LIMITS)
    store.store_batch(_flood("gw-a", 3), NOW - timedelta(days=40))
    store.store_batch(_flood("gw-a", 2), NOW - timedelta(days=1))
    done = expire_dead_letters(database, NOW, LIMITS, batch=2)  # several short batches
    assert (done.letters, done.budgets) == (3, 1)
    assert _rows(database, "SELECT count(*) FROM anbu.dead_letters") == [(2,)]
    assert _rows(database, "SELECT count(*) FROM anbu.dead_letter_budget") == [(1,)]


def test_limits_refuse_settings_that_would_keep_nothing() -> None:
    with pytest.raises(ValueError, match="at least 256 bytes"):
        DeadLetterLimits(max_payload_bytes=10)
    with pytest.raises(ValueError, match="at least one"):
        DeadLetterLimits(per_gateway_per_hour=0)
