"""Two ingest worker processes without a shared group: each subscribes its own share of the
gateways (ingest.shares) as plain persistent subscriptions, real broker and database.

With a shared subscription, Mosquitto 2.0 forgets the group when it restarts: what gateways
publish after it is back and before the workers subscribe again is acknowledged to them and
reaches nobody (tests/integration/test_ingest_faults.py waits for the resubscription for that
reason). Here the rest of the stream is published the moment the broker is back, before either
worker has reconnected, and every reading is stored, once.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path

import psycopg
import pytest

from anbu.bench.ingest import (
    Worker,
    count_rows,
    messages,
    publish,
    register,
)
from ingest.shares import LIVE_S, Census, leave, share
from simulators.servers import EmbeddedMosquitto
from tests.conftest import INGEST_PASSWORD
from tests.integration.test_ingest_shared_group import starting, stats_of
from tests.integration.test_ingest_store_process import eventually

PASSWORD = "gw-shares-password"


@pytest.fixture
def own_broker(tmp_path: Path) -> Iterator[EmbeddedMosquitto]:
    """A broker of this test's own: it is restarted."""
    mq = EmbeddedMosquitto(tmp_path / "mq", users={"ingest": INGEST_PASSWORD})
    mq.start()
    yield mq
    mq.stop()


@pytest.fixture
def gateways(own_broker: EmbeddedMosquitto, db_url: str, unique: str) -> list[str]:
    names = [f"p{unique}{i}" for i in range(12)]
    own_broker.users.update(dict.fromkeys(names[:-1], PASSWORD))
    own_broker.add_user(names[-1], PASSWORD)
    register(db_url, names)
    return names


@pytest.fixture
def workers(
    db_url: str, own_broker: EmbeddedMosquitto, unique: str
) -> Iterator[Callable[..., Worker]]:
    """Start replica `name` of two, without a shared group."""
    with psycopg.connect(db_url) as conn:  # both known from the start, as after a first run
        for name in ("a", "b"):
            conn.execute(
                """INSERT INTO anbu.ingest_members (client_id, seen_at, ready_at)
                   VALUES (%s, now(), now())""",
                (f"{name}{unique}",),
            )
    yield from starting(db_url, own_broker.port, unique, "", ANBU_INGEST_REPLICAS="2")


@pytest.mark.parametrize("restart", [False, True], ids=["steady", "broker-restarted"])
def test_two_workers_store_each_their_own_share_once(
    db_url: str,
    own_broker: EmbeddedMosquitto,
    gateways: list[str],
    workers: Callable[..., Worker],
    unique: str,
    restart: bool,
) -> None:
    """The second half of the stream is published the moment the broker is back from a
    restart, before either worker has reconnected (they retry after a second or more); with a
    shared group, the same run stored 2,000 of 4,000."""
    n = 4_000
    batch, total = messages(gateways, 0, n, 1)
    a, b = workers("a"), workers("b")
    publish(own_broker.port, gateways, batch[: n // 2], PASSWORD)
    eventually(lambda: count_rows(db_url)[0] >= n // 2, timeout=60, what="the first half stored")
    if restart:
        own_broker.stop()  # SIGTERM: Mosquitto writes its sessions and subscriptions on the way
        own_broker.start()  # same port, same persistence
    publish(own_broker.port, gateways, batch[n // 2 :], PASSWORD)
    eventually(lambda: count_rows(db_url)[0] >= n, timeout=60, what="every reading stored")
    first, second = stats_of(a), stats_of(b)
    print(f"worker a: {first}\nworker b: {second}")
    assert count_rows(db_url) == (n, n, total)
    if restart:
        # Reconnected, each is not ready until the broker acknowledges its share again, and a
        # poll in that window has the other take its share too (ingest.shares: taking is safe,
        # the readings' key refuses the copy): the split may move, the count may not. One CI
        # run stored 1,998 / 2,002.
        assert first["stored"] + second["stored"] == n
    else:
        assert (first["stored"], second["stored"]) == _shares(batch, gateways, unique)
    with psycopg.connect(db_url) as conn:  # each left at its stop: no share waits for it
        assert conn.execute("SELECT count(*) FROM anbu.ingest_members").fetchone() == (0,)
    if restart:
        assert first["connects"] >= 2 and second["connects"] >= 2, "the broker did not restart"
    else:
        assert first["messages"] + second["messages"] == n  # each message went to one of them


def _shares(batch: list[tuple[str, bytes]], gateways: list[str], unique: str) -> tuple[int, int]:
    """How many of the batch's readings are a's and b's to store (ingest.shares.share)."""
    a = share(gateways, [f"a{unique}", f"b{unique}"], f"a{unique}")
    mine = sum(1 for topic, _ in batch if topic.split("/")[1] in a)
    return mine, len(batch) - mine


def test_only_live_members_whose_share_is_in_own_gateways(db_url: str, unique: str) -> None:
    """A worker lets gateways go only to members seen within LIVE_S whose subscriptions the
    broker acknowledged: a replica that cannot subscribe (a bad certificate, a refused
    SUBSCRIBE), or that stopped, owns nothing, and the others keep or take its share."""
    names = [f"c{unique}{i}" for i in range(200)]
    register(db_url, names)
    me, other = f"me{unique}", f"other{unique}"
    census = Census()
    census.take(db_url, me, ready=False)
    assert census.members == (me,) and census.owned == set(names)  # alone: every gateway
    with psycopg.connect(db_url) as conn:  # another replica, seen, never subscribed
        conn.execute(
            "INSERT INTO anbu.ingest_members (client_id, seen_at) VALUES (%s, now())", (other,)
        )
    census.take(db_url, me, ready=True)
    assert census.owned == set(names)
    with psycopg.connect(db_url) as conn:  # its share is in
        conn.execute(
            "UPDATE anbu.ingest_members SET ready_at = now() WHERE client_id = %s", (other,)
        )
    census.take(db_url, me, ready=True)
    assert census.members == tuple(sorted((me, other)))
    assert census.owned == share(names, [me, other], me) and census.owned != set(names)
    with psycopg.connect(db_url) as conn:  # not seen for longer than LIVE_S
        conn.execute(
            "UPDATE anbu.ingest_members SET seen_at = now() - %s WHERE client_id = %s",
            (timedelta(seconds=LIVE_S + 1), other),
        )
    census.take(db_url, me, ready=True)
    assert census.owned == set(names)
    leave(db_url, me)
    with psycopg.connect(db_url) as conn:
        assert conn.execute(
            "SELECT count(*) FROM anbu.ingest_members WHERE client_id = %s", (me,)
        ).fetchone() == (0,)
