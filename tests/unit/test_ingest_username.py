"""Each ingest replica's broker username: ANBU_MQTT_USERNAME with `{replica}` filled in, the
same replica name its client id carries, so one account per replica can be bound to its id."""

from __future__ import annotations

import pytest

from core.config import Settings
from ingest.identity import SharedClientId, client_id, username


def settings(**kw: object) -> Settings:
    return Settings(mqtt_client_id="anbu-ingest-1", **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("replica", "user", "cid"),
    [("0", "ingest-0", "anbu-ingest-1-0"), ("@host", "ingest-gw-host", "anbu-ingest-1-gw-host"),
     ("a/b c", "ingest-a-b-c", "anbu-ingest-1-a-b-c")],
)  # fmt: skip
def test_a_replica_gets_its_own_username_beside_its_client_id(
    replica: str, user: str, cid: str
) -> None:
    s = settings(mqtt_username="ingest-{replica}", ingest_replica=replica, ingest_replicas=2)
    assert (username(s, "gw-host"), client_id(s, "gw-host")) == (user, cid)
    assert username(s, "gw-host") != client_id(s, "gw-host")


def test_a_plain_username_is_every_replicas() -> None:
    assert username(settings(mqtt_username="ingest", ingest_replica="1")) == "ingest"


def test_a_username_naming_a_replica_wants_one() -> None:
    with pytest.raises(SharedClientId, match="ANBU_INGEST_REPLICA is unset"):
        username(settings(mqtt_username="ingest-{replica}"))
