"""Each ingest worker's own share of the gateways, as plain persistent subscriptions.

Several workers used to split the stream with one shared subscription ($share/<group>/gw/#).
Mosquitto 2.0 keeps no shared subscription across its own restart: what gateways published
after the broker came back and before the workers subscribed again was acknowledged to them
and reached nobody. Plain subscriptions are kept in each worker's persistent session across
the broker's restart, so here every worker subscribes `gw/<id>/#` for the gateways it owns.

Who owns a gateway: rendezvous hashing over the ready members (anbu.ingest_members: one row per
client id, seen every POLL_S; ready once the broker has acknowledged its share since its last
connect), so a new member takes about 1/N of the gateways and no other moves. Taking a share
is always safe (a copy both hold is refused by the readings' unique key); letting one go is
not, so a worker lets a gateway go only to a member that is alive (seen within LIVE_S) and
ready, and only HANDOVER_S after it stopped owning it: past two of the broker's autosaves
(30 s), so even a broker that crashes rather than stops restarts with the new owner's
subscription. A member that is not seen for LIVE_S (stopped, crashed, cut off from the
database, or never able to subscribe) owns nothing: the others take its share at once, and
what its session queued waits there for it. A gateway registered after the last poll is
subscribed within POLL_S.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import psycopg

from registry.broker_accounts import GATEWAY_ID

log = logging.getLogger(__name__)

POLL_S = 5.0
LIVE_S = 3 * POLL_S
HANDOVER_S = 60.0
CHUNK = 100  # topic filters per SUBSCRIBE / UNSUBSCRIBE packet


def topic_filter(gateway: str) -> str:
    return f"gw/{gateway}/#"


def owner(gateway: str, members: Iterable[str]) -> str:
    """The member owning `gateway`: the highest hash of (member, gateway)."""
    return max(members, key=lambda m: hashlib.sha256(f"{m}\0{gateway}".encode()).digest())


def share(gateways: Iterable[str], members: list[str], me: str) -> set[str]:
    """The gateways of `gateways` that `me` owns among `members` (itself included)."""
    everyone = sorted(set(members) | {me})
    return {g for g in gateways if owner(g, everyone) == me}


FULL_READ_EVERY = 60  # polls: the gateways are read whole at least every 5 minutes


@dataclass
class Census:
    """What the last poll read: the members, the gateways' fingerprint and ids, and this
    worker's share of them (computed again only when the members or the gateways change:
    hashing 280,000 gateways for each of 8 members takes seconds of a core)."""

    members: tuple[str, ...] = ()
    fingerprint: tuple[int, int] | None = None
    gateways: list[str] = field(default_factory=list)
    owned: set[str] = field(default_factory=set)
    polls: int = 0

    def take(self, conninfo: str, me: str, ready: bool) -> None:
        """Mark `me` seen now (the database's clock) and ready or not, read the live ready
        members, and the gateways that can be subscribed (registered, not removed, an id that
        is one topic level) when their fingerprint changed; a connection of its own each time
        (the worker keeps no pool), and never waiting long on a lock."""
        with psycopg.connect(conninfo, connect_timeout=10) as conn:
            conn.execute("SET LOCAL statement_timeout = '4s'")
            conn.execute(
                """INSERT INTO anbu.ingest_members (client_id, seen_at, ready_at)
                   VALUES (%(me)s, now(), CASE WHEN %(ready)s THEN now() END)
                   ON CONFLICT (client_id) DO UPDATE SET seen_at = now(),
                       ready_at = CASE WHEN %(ready)s
                                       THEN coalesce(ingest_members.ready_at, now()) END""",
                {"me": me, "ready": ready},
            )
            rows = conn.execute(
                """SELECT client_id FROM anbu.ingest_members
                   WHERE seen_at > now() - %s AND ready_at IS NOT NULL""",
                (timedelta(seconds=LIVE_S),),
            ).fetchall()
            members = tuple(sorted({str(r[0]) for r in rows} | {me}))
            row = conn.execute(
                """SELECT count(*), coalesce(sum(hashtext(id)::bigint), 0)
                   FROM anbu.gateway WHERE removed_at IS NULL"""
            ).fetchone()
            fingerprint = (int(row[0]), int(row[1])) if row else (0, 0)
            self.polls += 1
            whole = self.polls % FULL_READ_EVERY == 0
            changed = fingerprint != self.fingerprint or whole
            if changed:
                ids = conn.execute("SELECT id FROM anbu.gateway WHERE removed_at IS NULL")
                gateways = sorted(
                    str(r[0]) for r in ids.fetchall() if GATEWAY_ID.fullmatch(str(r[0]))
                )
        if changed:
            changed = gateways != self.gateways
            self.gateways, self.fingerprint = gateways, fingerprint
        if changed or members != self.members:
            self.members = members
            self.owned = share(self.gateways, list(members), me)


def leave(conninfo: str, me: str) -> None:
    """A worker stopping: no longer a member, so the others take its share within POLL_S
    rather than after LIVE_S."""
    with psycopg.connect(conninfo, connect_timeout=10) as conn:
        conn.execute("DELETE FROM anbu.ingest_members WHERE client_id = %s", (me,))


@dataclass
class Plan:
    """What to subscribe and unsubscribe now."""

    subscribe: list[str] = field(default_factory=list)
    unsubscribe: list[str] = field(default_factory=list)


@dataclass
class Holdings:
    """The filters this worker holds in its session (as far as it knows) and the ones it no
    longer owns, since when."""

    held: set[str] = field(default_factory=set)
    released_at: dict[str, float] = field(default_factory=dict)
    # Every filter not owned is unsubscribed once, HANDOVER_S after a start or a reconnect
    # (whatever an earlier life of this worker held is not known here), never at once: one of
    # them may be in handover to a worker that has not subscribed it yet.
    swept: bool = False
    sweep_from: float | None = None

    def plan(self, owned: set[str], known: Iterable[str], now: float | None = None) -> Plan:
        now = time.monotonic() if now is None else now
        wanted = {topic_filter(g) for g in owned}
        plan = Plan(subscribe=sorted(wanted - self.held))
        for f in [f for f in self.released_at if f in wanted]:  # owned again: kept
            del self.released_at[f]
        for f in self.held - wanted:
            since = self.released_at.setdefault(f, now)
            if now - since >= HANDOVER_S:
                plan.unsubscribe.append(f)
        if not self.swept:
            if self.sweep_from is None:
                self.sweep_from = now + HANDOVER_S
            if now >= self.sweep_from:
                others = {topic_filter(g) for g in known} - wanted - self.held
                plan.unsubscribe.extend(sorted(others))
                self.swept = True
        plan.unsubscribe.sort()
        return plan

    def subscribed(self, filters: Iterable[str]) -> None:
        self.held.update(filters)

    def unsubscribed(self, filters: Iterable[str]) -> None:
        for f in filters:
            self.held.discard(f)
            self.released_at.pop(f, None)

    def forget(self) -> None:
        """A new connection: what is held is sent again, and swept again later."""
        self.held.clear()
        self.released_at.clear()
        self.swept, self.sweep_from = False, None


def chunks(items: list[Any], size: int = CHUNK) -> list[list[Any]]:
    return [items[i : i + size] for i in range(0, len(items), size)]
