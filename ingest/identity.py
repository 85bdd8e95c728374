"""Which MQTT client id this ingest worker connects with: one per replica, stable across its
restarts, so that workers never take each other's session and each finds its own again.

The broker keys a persistent session (its queued QoS 1 messages, its subscriptions) by client
id, and a second connection with the same id disconnects the first ("session taken over"). So
the id must be unique per replica, yet the same on every start of that replica: a random or
pid-based id would leave the old session's queue stranded until it expires.
"""

from __future__ import annotations

import re
import socket

from core.config import Settings

DEFAULT_CLIENT_ID = str(Settings.model_fields["mqtt_client_id"].default)
HOST = "@host"  # ANBU_INGEST_REPLICA's value meaning "this machine's host name"
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


REPLICA = "{replica}"  # in ANBU_MQTT_USERNAME: this replica's name (one broker account each)


class SharedClientId(ValueError):
    """Several replicas would connect with one client id and kick each other off."""


def _replica(settings: Settings, hostname: str | None) -> str:
    replica = settings.ingest_replica.strip()
    if replica == HOST:
        replica = hostname or socket.gethostname()
    return (_UNSAFE.sub("-", replica).strip("-") or "x") if replica else ""


def username(settings: Settings, hostname: str | None = None) -> str:
    """The MQTT username for this worker: ANBU_MQTT_USERNAME, its `{replica}` replaced by the
    replica's name (as in its client id). In production each replica has a broker account of
    its own, bound to its client id (registry.broker_accounts), so the gateways' listener,
    where the client id is the username, refuses it: `ingest-{replica}` gives anbu-ingest@0
    the account ingest-0.

    Raises SharedClientId when the username names `{replica}` and ANBU_INGEST_REPLICA is unset."""
    name = settings.mqtt_username
    if REPLICA not in name:
        return name
    replica = _replica(settings, hostname)
    if not replica:
        raise SharedClientId(
            f"ANBU_MQTT_USERNAME={name!r} names {REPLICA} but ANBU_INGEST_REPLICA is unset"
        )
    return name.replace(REPLICA, replica)


def client_id(settings: Settings, hostname: str | None = None) -> str:
    """The client id for this worker: ANBU_MQTT_CLIENT_ID, plus ANBU_INGEST_REPLICA when set.

    Raises SharedClientId when ANBU_INGEST_REPLICAS is above 1 and neither a replica name nor
    a client id of its own tells this worker apart from the others."""
    base = settings.mqtt_client_id
    replica = _replica(settings, hostname)
    if replica:
        return f"{base}-{replica}"
    if settings.ingest_replicas > 1 and base == DEFAULT_CLIENT_ID:
        raise SharedClientId(
            f"ANBU_INGEST_REPLICAS={settings.ingest_replicas} but every replica would connect as "
            f"{base!r} and take the others' session on each reconnect: give each replica "
            f"ANBU_INGEST_REPLICA (a stable name such as 0, 1, 2 or {HOST}) or its own "
            "ANBU_MQTT_CLIENT_ID"
        )
    return base
