"""Login throttling, counted before any password is checked.

Each attempt is first counted, in one transaction with its rows locked, against three keys:
the (account name, address) pair, the address, and the account name alone. An attempt meeting a
running lockout on any of them is refused unchecked and counts nothing; otherwise it is counted
and may be checked, so however many arrive at once, at most the limit are ever verified.

- the pair locks out after a few failures, twice as long for each lockout in a row: someone
  guessing one account from one address is stopped without locking the owner out elsewhere;
- the address locks out the same way after more failures (one address trying many names);
- the account name alone is only slowed down: at most `account_per_minute` checks a minute
  across all addresses, far more than a person types, so a distributed guesser is capped and a
  stranger knowing a name cannot keep its owner out for longer than the rest of that minute.

Names are counted whether or not they exist, so both are answered alike. The counts live in
`anbu.login_throttle`, so every web replica sees the same ones. Keys are HMAC-SHA256 under a
server key (derived from the session secret): no name or address can be recovered from a row by
hashing guesses.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

import psycopg

MAX_LOCKOUT = timedelta(days=1)
FORGET_AFTER = timedelta(days=2)  # rows untouched this long are deleted
MINUTE = timedelta(minutes=1)
_KEY_LABEL = b"anbu.login-throttle.v2"


@dataclass(frozen=True, slots=True)
class Rule:
    """`limit` attempts within `window` lock a key for `lockout` (doubling each time in a row
    when `grows`)."""

    limit: int
    window: timedelta
    lockout: timedelta
    grows: bool = True


@dataclass(frozen=True, slots=True)
class ThrottlePolicy:
    """Failures from one address against one account, failures from one address, and checks
    per minute against one account from anywhere."""

    pair_failures: int = 5
    address_failures: int = 20
    account_per_minute: int = 30
    window: timedelta = timedelta(minutes=15)
    lockout: timedelta = timedelta(minutes=5)

    def __post_init__(self) -> None:
        if min(self.pair_failures, self.address_failures, self.account_per_minute) < 1:
            raise ValueError("attempts before a lockout must be at least 1")
        if self.window <= timedelta(0) or self.lockout <= timedelta(0):
            raise ValueError("window and lockout must be positive")

    @property
    def pair(self) -> Rule:
        return Rule(self.pair_failures, self.window, self.lockout)

    @property
    def address(self) -> Rule:
        return Rule(self.address_failures, self.window, self.lockout)

    @property
    def account(self) -> Rule:
        return Rule(self.account_per_minute, MINUTE, MINUTE, grows=False)


@dataclass(frozen=True, slots=True)
class KeyState:
    """One key's attempts in its current window and its lockouts in a row."""

    failures: int
    window_start: datetime
    lockouts: int
    locked_until: datetime | None


def after_failure(state: KeyState | None, now: datetime, rule: Rule) -> KeyState:
    """The key's state after one more attempt at `now`: the limit-th within the window starts a
    lockout (twice as long as the previous one when the rule grows, capped at a day)."""
    if state is None:
        state = KeyState(0, now, 0, None)
    if now - state.window_start >= rule.window:
        lockouts = state.lockouts
        if state.locked_until is None or now - state.locked_until >= MAX_LOCKOUT:
            lockouts = 0  # a quiet day forgives earlier lockouts
        state = KeyState(0, now, lockouts, state.locked_until)
    failures = state.failures + 1
    if failures < rule.limit:
        return replace(state, failures=failures)
    lockouts = state.lockouts + 1
    doubling = min(lockouts - 1, 20) if rule.grows else 0
    length = min(rule.lockout * 2**doubling, MAX_LOCKOUT)
    return KeyState(0, now, lockouts, now + length)


@dataclass(frozen=True, slots=True)
class Keys:
    """The three keys of one attempt."""

    pair: str
    address: str
    account: str

    def rules(self, policy: ThrottlePolicy) -> dict[str, Rule]:
        return {self.pair: policy.pair, self.address: policy.address, self.account: policy.account}


def server_key(secret: str) -> bytes:
    """The HMAC key of throttle rows, derived from the session secret."""
    return hmac.new(secret.encode("utf-8"), _KEY_LABEL, hashlib.sha256).digest()


def keys_of(key: bytes, username: str, address: str) -> Keys:
    name = username.strip().casefold()
    return Keys(
        pair=_mac(key, "pair", name, address),
        address=_mac(key, "addr", address),
        account=_mac(key, "user", name),
    )


def _mac(key: bytes, *parts: str) -> str:
    return hmac.new(key, "\x00".join(parts).encode("utf-8"), hashlib.sha256).hexdigest()


def admit(
    conn: psycopg.Connection[Any], keys: Keys, now: datetime, policy: ThrottlePolicy
) -> datetime | None:
    """Count one attempt on every key of `keys` and return None, or return the end of a lockout
    running on one of them and count nothing. The rows stay locked until the caller's
    transaction ends, so concurrent attempts are counted one after another."""
    rules = keys.rules(policy)
    ordered = sorted(rules)  # one locking order for every attempt: no deadlock
    conn.execute(
        """INSERT INTO anbu.login_throttle (key, window_start, updated_at)
           SELECT k, %s, %s FROM unnest(%s::text[]) AS k ORDER BY k
           ON CONFLICT (key) DO NOTHING""",
        (now, now, ordered),
    )
    rows = conn.execute(
        """SELECT key, failures, window_start, lockouts, locked_until FROM anbu.login_throttle
           WHERE key = ANY(%s) ORDER BY key FOR UPDATE""",
        (ordered,),
    ).fetchall()
    states = {row[0]: KeyState(*row[1:]) for row in rows}
    running = [s.locked_until for s in states.values() if s.locked_until and s.locked_until > now]
    if running:
        return max(running)
    updates = []
    for key in ordered:
        state = after_failure(states.get(key), now, rules[key])
        updates.append(
            (state.failures, state.window_start, state.lockouts, state.locked_until, now, key)
        )
    with conn.cursor() as cur:
        cur.executemany(
            """UPDATE anbu.login_throttle
               SET failures = %s, window_start = %s, lockouts = %s, locked_until = %s,
                   updated_at = %s
               WHERE key = %s""",
            updates,
        )
    return None


def refund(conn: psycopg.Connection[Any], keys: list[str]) -> None:
    """Take back one counted attempt on `keys` (it turned out right)."""
    conn.execute(
        """UPDATE anbu.login_throttle SET failures = greatest(failures - 1, 0)
           WHERE key = ANY(%s)""",
        (sorted(keys),),
    )


def succeeded(conn: psycopg.Connection[Any], keys: Keys, now: datetime) -> None:
    """A completed login clears its pair and takes its attempt back from the address and the
    account; long-idle rows go too."""
    conn.execute("DELETE FROM anbu.login_throttle WHERE key = %s", (keys.pair,))
    refund(conn, [keys.address, keys.account])
    conn.execute("DELETE FROM anbu.login_throttle WHERE updated_at < %s", (now - FORGET_AFTER,))
