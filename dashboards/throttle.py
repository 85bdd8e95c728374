"""Login throttling: a burst of failed logins locks an account name (known or not) or a client
address out for a while, twice as long for each lockout in a row.

The counts live in `anbu.login_throttle`, so every web replica sees the same lockouts. Keys are
hashed: no typed name or address is stored as such.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

import psycopg

MAX_LOCKOUT = timedelta(days=1)
FORGET_AFTER = timedelta(days=2)  # rows untouched this long are deleted


@dataclass(frozen=True, slots=True)
class ThrottlePolicy:
    """How many failures within `window` lock a key out, and for how long at first."""

    account_failures: int = 5
    address_failures: int = 20
    window: timedelta = timedelta(minutes=15)
    lockout: timedelta = timedelta(minutes=5)

    def __post_init__(self) -> None:
        if self.account_failures < 1 or self.address_failures < 1:
            raise ValueError("failures before a lockout must be at least 1")
        if self.window <= timedelta(0) or self.lockout <= timedelta(0):
            raise ValueError("window and lockout must be positive")


@dataclass(frozen=True, slots=True)
class KeyState:
    """One key's failures in its current window and its lockouts in a row."""

    failures: int
    window_start: datetime
    lockouts: int
    locked_until: datetime | None


def after_failure(
    state: KeyState | None, now: datetime, limit: int, policy: ThrottlePolicy
) -> KeyState:
    """The key's state after one more failure at `now`: the limit-th failure within the window
    starts a lockout twice as long as the previous one (capped at a day)."""
    if state is None:
        state = KeyState(0, now, 0, None)
    if now - state.window_start >= policy.window:
        lockouts = state.lockouts
        if state.locked_until is None or now - state.locked_until >= MAX_LOCKOUT:
            lockouts = 0  # a quiet day forgives earlier lockouts
        state = KeyState(0, now, lockouts, state.locked_until)
    failures = state.failures + 1
    if failures < limit:
        return replace(state, failures=failures)
    lockouts = state.lockouts + 1
    length = min(policy.lockout * 2 ** min(lockouts - 1, 20), MAX_LOCKOUT)
    return KeyState(0, now, lockouts, now + length)


def account_key(username: str) -> str:
    return _digest("user:" + username.strip().casefold())


def address_key(address: str) -> str:
    return _digest("addr:" + address)


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def locked_until(conn: psycopg.Connection[Any], keys: list[str], now: datetime) -> datetime | None:
    """The latest end of a lockout on any of `keys` still running at `now`, else None."""
    row = conn.execute(
        """SELECT max(locked_until) FROM anbu.login_throttle
           WHERE key = ANY(%s) AND locked_until > %s""",
        (keys, now),
    ).fetchone()
    return row[0] if row else None


def record_failure(
    conn: psycopg.Connection[Any], key: str, limit: int, now: datetime, policy: ThrottlePolicy
) -> KeyState:
    """Count a failure for `key` (row-locked: concurrent replicas count each one)."""
    conn.execute(
        """INSERT INTO anbu.login_throttle (key, window_start, updated_at) VALUES (%s, %s, %s)
           ON CONFLICT (key) DO NOTHING""",
        (key, now, now),
    )
    row = conn.execute(
        """SELECT failures, window_start, lockouts, locked_until FROM anbu.login_throttle
           WHERE key = %s FOR UPDATE""",
        (key,),
    ).fetchone()
    assert row is not None
    state = after_failure(KeyState(*row), now, limit, policy)
    conn.execute(
        """UPDATE anbu.login_throttle
           SET failures = %s, window_start = %s, lockouts = %s, locked_until = %s,
               updated_at = %s
           WHERE key = %s""",
        (state.failures, state.window_start, state.lockouts, state.locked_until, now, key),
    )
    return state


def forget(conn: psycopg.Connection[Any], key: str, now: datetime) -> None:
    """A successful login clears its account's count; long-idle rows go too."""
    conn.execute("DELETE FROM anbu.login_throttle WHERE key = %s", (key,))
    conn.execute("DELETE FROM anbu.login_throttle WHERE updated_at < %s", (now - FORGET_AFTER,))
