"""GET/POST /api/v1/gateways/{id}/devices: a gateway's unregistered devices, its own dong only."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from fastapi.testclient import TestClient

import registry
from core.db import Database
from ingest.store import Message, Store
from tests.integration.dashboard_support import PASSWORD_A, PASSWORD_B, Town, bearer, town

__all__ = ["town"]  # the fixture

NOW = datetime(2026, 11, 22, 9, 30, tzinfo=UTC)


def rows(db: Database, sql: str, params: Any = None) -> list[tuple[Any, ...]]:
    with db.connection() as conn:
        return list(conn.execute(sql, params).fetchall())


def test_api_lists_a_gateways_devices_to_its_own_dong_only(
    town: Town, database: Database, unique: str
) -> None:
    gw = f"{unique}-gwa"
    with database.connection() as conn:
        registry.add_gateway(conn, gw, town.resident_id)  # the resident lives in dong A
    reading = {"readings": [{"sensor": "door1", "kind": "door", "ts": NOW.isoformat(), "value": 1}]}
    Store(database).store_batch(
        [Message(f"gw/{gw}/anbu/readings", json.dumps(reading).encode(), received_at=NOW)], NOW
    )
    client = TestClient(town.app)
    a = bearer(client, town.username_a, PASSWORD_A)
    b = bearer(client, town.username_b, PASSWORD_B)

    listed = client.get(f"/api/v1/gateways/{gw}/devices", headers=a)
    assert listed.status_code == 200, listed.text
    (door,) = listed.json()
    assert (door["device"], door["suggested_kind"], door["suggested_kind_ko"]) == (
        "door1", "door", "현관문",
    )  # fmt: skip
    assert door["dead_letters"] == 1
    for headers, name in ((b, gw), (a, "no-such-gateway")):
        hidden = client.get(f"/api/v1/gateways/{name}/devices", headers=headers)
        assert hidden.status_code == 404 and "door1" not in hidden.text
        assert hidden.json()["detail_en"] == "Gateway not found."
    body = {"device": "door1", "kind": "door", "room": "entrance"}
    refused = client.post(f"/api/v1/gateways/{gw}/devices", json=body, headers=b)
    assert refused.status_code == 404
    assert rows(database, "SELECT count(*) FROM anbu.sensor WHERE gateway_id = %s", (gw,)) == [(0,)]

    done = client.post(f"/api/v1/gateways/{gw}/devices", json=body, headers=a)
    assert done.status_code == 200, done.text
    assert (done.json()["replayed"], done.json()["still_refused"]) == (1, 0)
    assert rows(database, "SELECT value, ts FROM anbu.readings") == [(1.0, NOW)]
    assert client.get(f"/api/v1/gateways/{gw}/devices", headers=a).json() == []
    bad_room = client.post(
        f"/api/v1/gateways/{gw}/devices", json={**body, "room": "garage"}, headers=a
    )
    assert bad_room.status_code == 422
