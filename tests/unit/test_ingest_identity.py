"""Each ingest replica's MQTT client id: its own, the same on every start, never the shared
default when several replicas run."""

from __future__ import annotations

import pytest

from core.config import Settings
from ingest.identity import DEFAULT_CLIENT_ID, SharedClientId, client_id


def _settings(**values: object) -> Settings:
    return Settings.model_validate(values)


def test_one_replica_keeps_the_configured_id() -> None:
    assert client_id(_settings()) == DEFAULT_CLIENT_ID == "anbu-ingest-1"


def test_each_replica_adds_its_stable_name() -> None:
    ids = [client_id(_settings(ingest_replicas=3, ingest_replica=str(n))) for n in range(3)]
    assert ids == ["anbu-ingest-1-0", "anbu-ingest-1-1", "anbu-ingest-1-2"]
    assert ids == [client_id(_settings(ingest_replicas=3, ingest_replica=str(n))) for n in range(3)]


def test_the_host_name_can_name_the_replica_and_is_made_safe() -> None:
    settings = _settings(ingest_replicas=2, ingest_replica="@host")
    assert client_id(settings, hostname="node a/7") == "anbu-ingest-1-node-a-7"


def test_several_replicas_refuse_the_shared_default() -> None:
    with pytest.raises(SharedClientId, match="ANBU_INGEST_REPLICAS=2 but every replica"):
        client_id(_settings(ingest_replicas=2))


def test_several_replicas_with_their_own_client_ids_are_accepted() -> None:
    settings = _settings(ingest_replicas=2, mqtt_client_id="ingest-seoul-b")
    assert client_id(settings) == "ingest-seoul-b"
