"""The consumer's inbox makes batches bounded in bytes as well as in messages."""

from __future__ import annotations

import threading

from ingest.inbox import Inbox


def _filled(sizes: list[int]) -> Inbox[bytes]:
    inbox: Inbox[bytes] = Inbox(100)
    for n in sizes:
        assert inbox.offer(b"x" * n, 1, threading.Event())
    return inbox


def test_a_batch_stops_before_the_message_that_would_pass_the_budget_and_it_comes_next() -> None:
    inbox = _filled([3, 4, 5, 1, 1])
    assert [len(x) for x in inbox.take(10, 0, len, 8)] == [3, 4]
    assert inbox.size() == 3  # the held-back message is still waiting
    assert [len(x) for x in inbox.take(10, 0, len, 8)] == [5, 1, 1]
    assert inbox.size() == 0


def test_a_message_over_the_budget_goes_alone_and_nothing_is_lost_or_reordered() -> None:
    inbox = _filled([2, 20, 2, 2])
    batches = [inbox.take(10, 0, len, 8) for _ in range(3)]
    assert [[len(x) for x in b] for b in batches] == [[2], [20], [2, 2]]


def test_without_a_weight_only_the_count_bounds_a_batch() -> None:
    inbox = _filled([50, 50, 50])
    assert len(inbox.take(2, 0)) == 2
    assert len(inbox.take(2, 0)) == 1


def test_clearing_forgets_a_held_back_message_too() -> None:
    inbox = _filled([5, 5])
    assert len(inbox.take(10, 0, len, 6)) == 1
    inbox.clear()
    assert inbox.size() == 0 and inbox.take(10, 0, len, 6) == []
