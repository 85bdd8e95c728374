"""Each ingest worker's own share of the gateways, as plain persistent subscriptions.

Several workers used to split the stream with one shared subscription ($share/<group>/gw/#).
Mosquitto 2.0 keeps no shared subscription across its own restart: what gateways published
after the broker came back and before the workers subscribed again was acknowledged to them
and reached nobody. Plain subscriptions are kept in each worker's persistent session across
the broker's restart, so here every worker subscribes `gw/<id>/#` for the gateways it owns:
from the first message after a restart, each one has a session to queue in.

Who owns a gateway: rendezvous hashing over the ingest members (anbu.ingest_members, one row
per client id, written by each worker every POLL_S), so adding a worker moves about 1/N of the
gateways to it and no other. A member stays a member while the broker may still hold its
session (seen within the session expiry): a worker that died keeps its share, queued in its
session for it, as a shared-subscription member's was; one gone longer is dropped, and its
share moves. A gateway registered after the last poll is subscribed within POLL_S; a gateway
that stops being owned is unsubscribed HANDOVER_S later, once its new owner has subscribed
(the overlap's copies are refused by the readings' unique key).
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
HANDOVER_S = 30.0
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


def read_members(conninfo: str, me: str, expiry_s: int) -> tuple[list[str], list[str]]:
    """Mark `me` seen now (the database's clock) and read the members and the gateways that
    can be subscribed (registered, not removed, an id that is one topic level). A connection
    of its own each time (every POLL_S): the ingest worker keeps no pool."""
    with psycopg.connect(conninfo, connect_timeout=10) as conn:
        conn.execute(
            """INSERT INTO anbu.ingest_members (client_id, seen_at) VALUES (%s, now())
               ON CONFLICT (client_id) DO UPDATE SET seen_at = now()""",
            (me,),
        )
        members = [
            str(r[0])
            for r in conn.execute(
                "SELECT client_id FROM anbu.ingest_members WHERE seen_at > now() - %s",
                (timedelta(seconds=expiry_s),),
            ).fetchall()
        ]
        rows = conn.execute("SELECT id FROM anbu.gateway WHERE removed_at IS NULL").fetchall()
    gateways = [str(r[0]) for r in rows if GATEWAY_ID.fullmatch(str(r[0]))]
    return members, gateways


@dataclass
class Plan:
    """What to subscribe and unsubscribe now, and when each no-longer-owned filter was let go."""

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
        for f in wanted:
            self.released_at.pop(f, None)
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
