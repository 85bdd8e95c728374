"""Cursor pages for every list the API and the pages serve: `{data, has_more, next_cursor}`.

A cursor is the last row's place in the list's order (its keyset), tagged with the list it
belongs to, as URL-safe base64 of JSON: opaque to clients, checked when it comes back (a cursor
of another list, or an unreadable one, is a 400). It carries no right to anything: every page is
read within the dongs the caller may see, wherever the cursor points.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
from collections.abc import Sequence
from datetime import datetime
from typing import Annotated, Any, Generic, TypeVar

from fastapi import HTTPException, Query
from pydantic import BaseModel, Field

LIMIT_DEFAULT = 50
LIMIT_MAX = 100
MAX_CURSOR_CHARS = 512
MAX_TEXT_PART = 200

T = TypeVar("T")

# a list route's query parameters
PageLimit = Annotated[int, Query(ge=1, le=LIMIT_MAX, description="Rows per page")]
PageCursor = Annotated[
    str | None, Query(max_length=MAX_CURSOR_CHARS, description="next_cursor of a page")
]

# what each place holds, in order: "i" an integer, "t" a timestamp with its zone, "s" a text,
# "f" a finite number
SHAPES = {
    "alerts": "ti",  # opened_at, id (newest first)
    "queue": "iiti",  # resolved, severity rank, opened_at, id (the care queue)
    "residents": "issi",  # ended, dong, home, id
    "device-findings": "ti",  # raised_at, id (newest first)
    "history": "i",  # id (newest first: ids only grow)
    "requests-open": "ti",  # created_at, id (open service requests, oldest first)
    "requests-all": "ti",  # created_at, id (every service request, newest first)
    "review": "tifsi",  # the week's end, not for review, change, home, id (dashboards.review)
    "care-notes": "ti",  # written_at, id (a resident's care notes, newest first)
    "webhooks": "i",  # id (a district's webhook subscriptions)
    "webhook-attempts": "i",  # id (a subscription's delivery attempts, newest first)
    "service-accounts": "i",  # id (a district's service accounts, newest first)
}


class Page(BaseModel, Generic[T]):
    """One page of a list, in the list's order."""

    data: list[T]
    has_more: bool = Field(description="More rows follow: ask again with next_cursor.")
    next_cursor: str | None = Field(
        description="Pass as `cursor` for the next page; null on the last one."
    )


def page(kind: str, data: list[T], place: Sequence[Any] | None) -> Page[T]:
    """The page of list `kind` holding `data`; `place` is the next page's keyset (or None)."""
    return Page[T](data=data, has_more=place is not None, next_cursor=encode(kind, place))


class CursorError(ValueError):
    """A cursor that is not one of this list's."""


def encode(kind: str, place: Sequence[Any] | None) -> str | None:
    """The cursor of `place` in list `kind`; None for no place (the last page)."""
    if place is None:
        return None
    shape = SHAPES[kind]
    if len(place) != len(shape):
        raise ValueError(f"{kind} places have {len(shape)} parts")
    values = [v.isoformat() if isinstance(v, datetime) else v for v in place]
    raw = json.dumps([kind, *values], separators=(",", ":"), ensure_ascii=False).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode(kind: str, cursor: str | None) -> tuple[Any, ...] | None:
    """The place a cursor of list `kind` holds; None for no cursor. CursorError otherwise."""
    if cursor is None or cursor == "":
        return None
    if len(cursor) > MAX_CURSOR_CHARS:
        raise CursorError("cursor too long")
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        values = json.loads(raw.decode())
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise CursorError("unreadable cursor") from None
    shape = SHAPES[kind]
    if not isinstance(values, list) or len(values) != len(shape) + 1 or values[0] != kind:
        raise CursorError("not a cursor of this list")
    place: list[Any] = []
    for part, value in zip(shape, values[1:], strict=True):
        if (part == "i" and isinstance(value, int) and not isinstance(value, bool)) or (
            part == "s" and isinstance(value, str) and _storable(value)
        ):
            place.append(value)
        elif part == "f" and _finite(value):
            place.append(float(value))
        elif part == "t" and isinstance(value, str):
            try:
                moment = datetime.fromisoformat(value)
            except ValueError:
                raise CursorError("unreadable cursor") from None
            if moment.tzinfo is None:
                raise CursorError("unreadable cursor")
            place.append(moment)
        else:
            raise CursorError("unreadable cursor")
    return tuple(place)


def _finite(value: Any) -> bool:
    """A number a float holds exactly enough (an int past 2**53, or one too big for a float,
    is no place in any list: refused, not an overflow)."""
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return abs(value) <= 2**53
    return isinstance(value, float) and math.isfinite(value)


def _storable(value: str) -> bool:
    """A text PostgreSQL can compare: no NUL, no lone surrogate, not absurdly long."""
    if len(value) > MAX_TEXT_PART or "\x00" in value:
        return False
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def place_or_400(kind: str, cursor: str | None) -> tuple[Any, ...] | None:
    """decode() for a route: a bad cursor is the client's error (400)."""
    try:
        return decode(kind, cursor)
    except CursorError as exc:
        raise HTTPException(status_code=400, detail=str(exc)) from None
