"""Cursors that come back crafted are refused as cursors (a 400), never an error of ours."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime
from typing import Any

import pytest

from dashboards import paging

NOW = datetime(2026, 12, 7, 9, 0, tzinfo=UTC).isoformat()


def _cursor(*parts: Any) -> str:
    raw = json.dumps(["review", *parts]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


@pytest.mark.parametrize(
    "change",
    [10**310, -(10**20), True, "0.5", None],
    ids=["too-big-for-a-float", "past-2**53", "bool", "text", "null"],
)
def test_a_review_cursor_whose_change_is_no_number_is_refused(change: Any) -> None:
    with pytest.raises(paging.CursorError):
        paging.decode("review", _cursor(NOW, 0, change, "home-1", 7))


def test_nan_and_infinity_are_refused() -> None:
    for text in ("NaN", "Infinity", "-Infinity"):
        raw = f'["review","{NOW}",0,{text},"home-1",7]'.encode()
        cursor = base64.urlsafe_b64encode(raw).decode().rstrip("=")
        with pytest.raises(paging.CursorError):
            paging.decode("review", cursor)


def test_a_review_cursor_round_trips() -> None:
    place = (datetime.fromisoformat(NOW), 1, -0.25, "home-1", 7)
    cursor = paging.encode("review", place)
    assert paging.decode("review", cursor) == place
    assert paging.decode("review", _cursor(NOW, 0, 3, "home-1", 7)) == (
        datetime.fromisoformat(NOW), 0, 3.0, "home-1", 7,
    )  # fmt: skip
