"""Who owns which gateway among the ingest workers, and what a worker subscribes and lets go
(ingest.shares): the broker side is tests/integration/test_ingest_shares.py."""

from __future__ import annotations

from ingest.shares import HANDOVER_S, Holdings, share, topic_filter

GATEWAYS = [f"gw-{i:04d}" for i in range(2000)]


def test_every_gateway_has_one_owner_and_a_newcomer_takes_only_its_own_share() -> None:
    two = ["ingest-1", "ingest-2"]
    shares = {m: share(GATEWAYS, two, m) for m in two}
    assert shares["ingest-1"] | shares["ingest-2"] == set(GATEWAYS)
    assert not shares["ingest-1"] & shares["ingest-2"]
    assert 800 < len(shares["ingest-1"]) < 1200  # about half each
    three = [*two, "ingest-3"]
    after = {m: share(GATEWAYS, three, m) for m in three}
    for m in two:  # the old members only give gateways away, to the newcomer
        assert after[m] <= shares[m]
    moved = set(GATEWAYS) - after["ingest-1"] - after["ingest-2"]
    assert moved == after["ingest-3"] and 500 < len(moved) < 850  # about a third
    assert share(GATEWAYS, [], "alone") == set(GATEWAYS)  # a worker counts itself


def test_a_worker_subscribes_what_it_owns_and_lets_go_only_after_the_handover() -> None:
    held = Holdings()
    mine, theirs = set(GATEWAYS[:10]), set(GATEWAYS[10:20])
    known = GATEWAYS[:20]
    first = held.plan(mine | theirs, known, now=0.0)
    assert set(first.subscribe) == {topic_filter(g) for g in mine | theirs}
    assert first.unsubscribe == []
    held.subscribed(first.subscribe)
    # a second worker arrives and takes `theirs`: kept until its subscriptions are surely in
    assert held.plan(mine, known, now=1.0).unsubscribe == []
    assert held.plan(mine, known, now=HANDOVER_S).unsubscribe == []
    later = held.plan(mine, known, now=1.0 + HANDOVER_S)
    assert set(later.unsubscribe) == {topic_filter(g) for g in theirs} and later.subscribe == []
    held.unsubscribed(later.unsubscribe)
    assert held.held == {topic_filter(g) for g in mine}
    # owned again before the handover ends: never let go
    held.plan(set(GATEWAYS[:5]), known, now=100.0)
    assert held.plan(mine, known, now=100.0 + HANDOVER_S).unsubscribe == []


def test_after_a_start_or_a_reconnect_what_another_life_held_is_swept_late() -> None:
    held = Holdings()
    mine, known = set(GATEWAYS[:3]), GATEWAYS[:8]
    first = held.plan(mine, known, now=0.0)
    held.subscribed(first.subscribe)
    assert first.unsubscribe == []  # not at once: one may be in handover to another worker
    swept = held.plan(mine, known, now=HANDOVER_S)
    assert set(swept.unsubscribe) == {topic_filter(g) for g in known[3:]}
    assert held.plan(mine, known, now=2 * HANDOVER_S).unsubscribe == []  # once
    held.forget()  # a new connection: everything sent again, swept again later
    again = held.plan(mine, known, now=500.0)
    assert set(again.subscribe) == {topic_filter(g) for g in mine} and again.unsubscribe == []
    held.subscribed(again.subscribe)
    assert len(held.plan(mine, known, now=500.0 + HANDOVER_S).unsubscribe) == 5
