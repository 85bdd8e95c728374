"""Gateways get their MQTT credentials from anbu (issue 15), on the real Mosquitto with its dynamic
security plugin and the real PostgreSQL: issued with the gateway and shown once, replaced and
revoked at once without a broker restart, never wider than `gw/<id>/#`; the registry and the
broker never disagree, the broker unreachable included."""

from __future__ import annotations

import dataclasses
import html
import json
import logging
import re
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from fastapi.testclient import TestClient
from paho.mqtt.enums import CallbackAPIVersion
from psycopg import sql

from alerts import course
from core.clock import VirtualClock
from core.config import Settings
from core.db import Database
from ingest.consumer import IngestService
from simulators.servers import EmbeddedMosquitto, free_port
from tests.integration.dashboard_support import bearer, csrf_of, login_page
from tests.integration.enrolment_support import (
    NOW,
    PASSWORD,
    District,
    district,
    registry_counts,
    rows,
)
from tests.integration.test_ingest_consumer import clear_session, eventually

__all__ = ["district"]  # the fixture
WAIT_S = 10.0
REFUSED = (0x86, 0x87)  # bad user name or password / not authorized


class Gateway:
    """A home gateway connecting with what anbu handed out: CONNACK, PUBACKs and being
    disconnected can be awaited."""

    def __init__(self, host: str, port: int, username: str, password: str) -> None:
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=username,
                                  protocol=mqtt.MQTTv5)  # fmt: skip
        self.client.username_pw_set(username, password)
        self.connack = threading.Event()
        self.code = -1
        self.gone = threading.Event()
        self.gone_at = 0.0
        self.pubacks: dict[int, int] = {}
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_publish = self._on_publish
        self.client.connect(host, port)
        self.client.loop_start()
        assert self.connack.wait(WAIT_S), "no CONNACK"

    def _on_connect(self, _c: Any, _u: Any, _f: Any, rc: Any, _p: Any = None) -> None:
        self.code = rc.value
        self.connack.set()

    def _on_disconnect(self, _c: Any, _u: Any, _f: Any, rc: Any, _p: Any = None) -> None:
        self.gone_at = time.monotonic()
        self.gone.set()

    def _on_publish(self, _c: Any, _u: Any, mid: int, rc: Any, _p: Any = None) -> None:
        self.pubacks[mid] = rc.value

    def reading(self, gateway_id: str, sensor: str, minutes_ago: int, value: int = 1) -> int:
        """Publish one native reading under `gw/<gateway_id>/`, QoS 1; the PUBACK's code."""
        ts = (NOW - timedelta(minutes=minutes_ago)).isoformat()
        body = {"readings": [{"sensor": sensor, "kind": "door", "ts": ts, "value": value}]}
        info = self.client.publish(f"gw/{gateway_id}/anbu/readings", json.dumps(body), qos=1)
        info.wait_for_publish(WAIT_S)
        return self.pubacks[info.mid]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def connect_code(creds: dict[str, Any], password: str | None = None) -> int:
    """The CONNACK reason code for these credentials (another password when given)."""
    gateway = Gateway(creds["host"], creds["port"], creds["username"],
                      password or creds["password"])  # fmt: skip
    gateway.close()
    return gateway.code


@pytest.fixture
def ingest(settings: Settings, database: Database) -> Iterator[IngestService]:
    svc = IngestService(settings, database, VirtualClock(NOW))
    svc.start()
    eventually(svc.subscribed.is_set, what="subscription")
    yield svc
    svc.stop()
    clear_session(settings)


def api(d: District) -> tuple[TestClient, dict[str, str]]:
    client = TestClient(d.app)
    return client, bearer(client, d.admin, PASSWORD)


def enrol(client: TestClient, headers: dict[str, str], rid: int, gw: str) -> dict[str, Any]:
    """Enrol a gateway with a door sensor `door1`; its credentials."""
    added = client.post(f"/api/v1/residents/{rid}/gateways", json={"gateway_id": gw},
                        headers=headers)  # fmt: skip
    assert added.status_code == 201, added.text
    assert added.headers["cache-control"] == "no-store"
    sensor = client.post(f"/api/v1/gateways/{gw}/sensors",
                         json={"vendor_id": "door1", "kind": "door"}, headers=headers)  # fmt: skip
    assert sensor.status_code == 201, sensor.text
    creds: dict[str, Any] = added.json()["credentials"]
    return creds


def readings_of(db: Database, gw: str) -> list[tuple[Any, ...]]:
    return rows(db, """SELECT r.ts, r.value FROM anbu.readings r
                         JOIN anbu.sensor s ON s.id = r.sensor_id
                        WHERE s.gateway_id = %s ORDER BY r.ts""", (gw,))  # fmt: skip


def unreachable(d: District) -> Settings:
    """The app's settings with the broker admin pointed at a port nobody listens on; the app
    uses them from now on."""
    deps = d.app.state.deps
    gone = deps.settings.model_copy(update={"mqtt_port": free_port()})
    d.app.state.deps = dataclasses.replace(deps, settings=gone)
    reachable: Settings = deps.settings
    return reachable


def test_an_enrolled_gateway_connects_with_what_anbu_returned_and_its_reading_is_stored(
    district: District, database: Database, broker: EmbeddedMosquitto, ingest: IngestService,
    unique: str,
) -> None:  # fmt: skip
    client, admin = api(district)
    gw, other = f"gc-{unique}", f"go-{unique}"
    creds = enrol(client, admin, district.resident_a, gw)
    assert (creds["host"], creds["port"]) == ("127.0.0.1", broker.port)
    assert (creds["username"], creds["topics"]) == (gw, f"gw/{gw}/#")
    assert len(creds["password"]) >= 32 and "지금 한 번만 표시됩니다" in creds["warning"]
    assert "shown only this once" in creds["warning_en"]
    neighbour_creds = enrol(client, admin, district.resident_a, other)
    home = Gateway(creds["host"], creds["port"], creds["username"], creds["password"])
    try:
        assert home.code == 0
        assert home.reading(gw, "door1", 5) == 0
        eventually(lambda: readings_of(database, gw), what="the reading stored")
        assert readings_of(database, gw) == [(NOW - timedelta(minutes=5), 1.0)]
        # not as another gateway: refused by the broker, so never stored under it
        assert home.reading(other, "door1", 4) == 0x87
    finally:
        home.close()
    neighbour = Gateway(neighbour_creds["host"], neighbour_creds["port"], other,
                        neighbour_creds["password"])  # fmt: skip
    try:
        assert neighbour.reading(other, "door1", 3) == 0  # after the refused one
        eventually(lambda: readings_of(database, other), what="the neighbour's own reading")
    finally:
        neighbour.close()
    assert readings_of(database, other) == [(NOW - timedelta(minutes=3), 1.0)]
    assert rows(database, "SELECT count(*) FROM anbu.dead_letters") == [(0,)]


def test_replacing_and_removing_refuse_the_old_credentials_at_once(
    district: District, database: Database, unique: str
) -> None:
    client, admin = api(district)
    gw = f"gr-{unique}"
    first = enrol(client, admin, district.resident_a, gw)
    session = Gateway(first["host"], first["port"], gw, first["password"])
    assert session.code == 0
    asked = time.monotonic()
    replaced = client.post(f"/api/v1/gateways/{gw}/credentials", headers=admin)
    assert replaced.status_code == 200, replaced.text
    assert replaced.headers["cache-control"] == "no-store"
    second = replaced.json()
    assert second["password"] != first["password"] and second["username"] == gw
    assert session.gone.wait(WAIT_S), "the old session stayed open"
    session.close()
    logging.getLogger(__name__).info(
        "old session closed %.0f ms after the request", (session.gone_at - asked) * 1000
    )
    assert connect_code(first) in REFUSED
    now_in = Gateway(second["host"], second["port"], gw, second["password"])
    assert now_in.code == 0
    removed = client.delete(f"/api/v1/gateways/{gw}", headers=admin)
    assert removed.status_code == 204, removed.text
    assert now_in.gone.wait(WAIT_S), "the removed gateway's session stayed open"
    now_in.close()
    assert connect_code(second) in REFUSED
    assert rows(database, "SELECT count(*) FROM anbu.gateway WHERE id = %s", (gw,)) == [(0,)]
    assert rows(database, "SELECT count(*) FROM anbu.sensor WHERE gateway_id = %s", (gw,)) == [(0,)]
    audit = rows(database, """SELECT old_value, new_value FROM anbu.resident_changes
                               WHERE field = 'broker_access' AND resident_id = %s ORDER BY id""",
                 (district.resident_a,))  # fmt: skip
    assert audit == [(None, "active"), ("active", "password_replaced"),
                     ("active", "revocation_pending"), ("revocation_pending", "revoked")]  # fmt: skip
    gone = client.post(f"/api/v1/gateways/{gw}/credentials", headers=admin)
    assert gone.status_code == 404


def test_with_the_broker_unreachable_adding_writes_nothing_and_removal_waits_for_the_night(
    district: District, database: Database, unique: str
) -> None:
    client, admin = api(district)
    gw = f"gu-{unique}"
    creds = enrol(client, admin, district.resident_a, gw)
    reachable = unreachable(district)
    before = registry_counts(database)
    refused = client.post(f"/api/v1/residents/{district.resident_a}/gateways",
                          json={"gateway_id": f"gn-{unique}"}, headers=admin)  # fmt: skip
    assert refused.status_code == 503, refused.text
    assert refused.json()["detail"] == (
        "MQTT 브로커에 연결할 수 없어 게이트웨이를 등록하지 못했습니다(등록 내용은 저장되지 "
        "않았습니다). 잠시 후 다시 시도해 주세요."
    )
    assert "the gateway was not enrolled" in refused.json()["detail_en"]
    assert registry_counts(database) == before
    not_replaced = client.post(f"/api/v1/gateways/{gw}/credentials", headers=admin)
    assert not_replaced.status_code == 503
    assert not_replaced.json()["detail"] == (  # not the add's words: it says the old one works
        "MQTT 브로커에 연결할 수 없어 새 비밀번호를 발급하지 못했습니다. 기존 비밀번호는 "
        "그대로 쓸 수 있습니다. 잠시 후 다시 시도해 주세요."
    )
    assert "The current password still works" in not_replaced.json()["detail_en"]
    assert connect_code(creds) == 0  # the old password still works: nothing changed
    removed = client.delete(f"/api/v1/gateways/{gw}", headers=admin)
    assert removed.status_code == 202, removed.text
    assert removed.json()["revocation_pending"] is True
    assert removed.json()["detail"] == (
        "게이트웨이를 삭제했습니다. MQTT 브로커에 연결할 수 없어 이 게이트웨이의 접속 계정은 "
        "아직 차단되지 않았습니다. 오늘 밤 자동으로 다시 차단을 시도합니다."
    )
    assert "tried again automatically tonight" in removed.json()["detail_en"]
    assert rows(database, """SELECT removed_at IS NOT NULL, revocation_pending IS NOT NULL
                               FROM anbu.gateway WHERE id = %s""", (gw,)) == [(True, True)]  # fmt: skip
    assert rows(database, "SELECT count(*) FROM anbu.sensor WHERE gateway_id = %s", (gw,)) == [(0,)]
    home = client.get(f"/api/v1/residents/{district.resident_a}/enrolment", headers=admin)
    assert home.json()["gateways"] == []  # no longer the home's
    assert connect_code(creds) == 0  # nobody could tell the broker yet
    again = client.post(f"/api/v1/gateways/{gw}/credentials", headers=admin)
    assert again.status_code == 404  # no longer anybody's gateway: nothing to rotate
    sensor = client.post(f"/api/v1/gateways/{gw}/sensors",
                         json={"vendor_id": "door2", "kind": "door"}, headers=admin)  # fmt: skip
    assert sensor.status_code == 404  # nor to add a sensor to
    retried = client.post(f"/api/v1/residents/{district.resident_a}/gateways",
                          json={"gateway_id": gw}, headers=admin)  # fmt: skip
    assert retried.status_code == 409
    assert "차단이 끝난 뒤(다음 날) 같은 ID로 다시 등록할 수 있습니다." in retried.json()["detail"]
    assert "the same id can be enrolled again" in retried.json()["detail_en"]
    # the nightly job, with the broker back: the same retry as an ended service's gateways
    course.nightly_purge(database, reachable, VirtualClock(NOW + timedelta(hours=12)))()
    assert connect_code(creds) in REFUSED
    assert rows(database, "SELECT count(*) FROM anbu.gateway WHERE id = %s", (gw,)) == [(0,)]
    # without broker admin credentials at all: refused as clearly, nothing written
    bare = reachable.model_copy(update={"broker_admin_username": None})
    district.app.state.deps = dataclasses.replace(district.app.state.deps, settings=bare)
    before = registry_counts(database)
    none = client.post(f"/api/v1/residents/{district.resident_a}/gateways",
                       json={"gateway_id": f"gb-{unique}"}, headers=admin)  # fmt: skip
    assert none.status_code == 503
    assert none.json()["detail"].endswith("시스템 운영 담당자에게 문의해 주세요.")
    assert "ANBU_" not in none.json()["detail"]  # the variables' names are the operator's
    assert "ANBU_BROKER_ADMIN_USERNAME" in none.json()["detail_en"]
    assert registry_counts(database) == before


def _shown(page: str) -> dict[str, Any]:
    found = {k: html.unescape(re.search(rf'id="{k}">([^<]+)<', page).group(1))  # type: ignore[union-attr]
             for k in ("broker-host", "broker-port", "mqtt-username", "mqtt-password")}  # fmt: skip
    return {"host": found["broker-host"], "port": int(found["broker-port"]),
            "username": found["mqtt-username"], "password": found["mqtt-password"]}  # fmt: skip


def test_the_pages_show_the_credentials_once_in_korean_and_never_cached(
    district: District, database: Database, unique: str
) -> None:
    browser = TestClient(district.app)
    login_page(browser, district.admin, PASSWORD)
    ra = district.resident_a
    token = csrf_of(browser.get(f"/enrol/residents/{ra}").text)
    gw = f"gp-{unique}"
    added = browser.post(f"/enrol/residents/{ra}/gateways",
                         data={"csrf_token": token, "gateway_id": gw})  # fmt: skip
    assert added.status_code == 200, added.text
    assert added.headers["cache-control"] == "no-store"
    assert "이 비밀번호는 지금 한 번만 표시됩니다" in added.text
    assert "게이트웨이를 등록하고 접속 계정을 발급했습니다. 아래 정보를" in added.text
    assert "서버 주소 (MQTT 브로커)" in added.text and "허용된 토픽" in added.text
    assert "대상자 정보로 돌아가기" in added.text
    first = _shown(added.text)
    assert first["username"] == gw and connect_code(first) == 0
    later = browser.get(f"/enrol/residents/{ra}").text
    assert gw in later and first["password"] not in later  # once
    # the reissue is a second step, behind its warning (no script: the CSP forbids it)
    confirm = re.search(rf'<details class="rotate" id="rotate-{gw}">(.*?)</details>', later,
                        re.DOTALL)  # fmt: skip
    assert confirm is not None and f"/enrol/gateways/{gw}/credentials" in confirm.group(1)
    assert "<summary title=" in confirm.group(1)
    assert "재발급하면 새 비밀번호를 입력할 때까지 이 게이트웨이의 연결이 끊깁니다." in (
        confirm.group(1))  # fmt: skip
    rotated = browser.post(f"/enrol/gateways/{gw}/credentials", data={"csrf_token": token})
    assert rotated.status_code == 200
    assert "새 비밀번호를 발급했습니다. 아래 정보를 게이트웨이 설정에 입력하세요." in rotated.text
    second = _shown(rotated.text)
    assert connect_code(first) in REFUSED and connect_code(second) == 0
    english = browser.post(f"/enrol/gateways/{gw}/credentials?lang=en",
                           data={"csrf_token": token})  # fmt: skip
    assert "shown only this once" in english.text and "Allowed topics" in english.text
    assert "A new password was issued." in english.text
    browser.get(f"/enrol/residents/{ra}?lang=ko")  # back to Korean
    unreachable(district)
    refused = browser.post(f"/enrol/residents/{ra}/gateways",
                           data={"csrf_token": token, "gateway_id": f"gq-{unique}"})  # fmt: skip
    assert refused.status_code == 503
    removed = browser.post(f"/enrol/gateways/{gw}/remove", data={"csrf_token": token},
                           follow_redirects=False)  # fmt: skip
    assert removed.status_code == 303 and "pending=1" in removed.headers["location"]
    notice = browser.get(removed.headers["location"]).text
    assert "이 게이트웨이의 접속 계정은 아직 차단되지 않았습니다" in notice


def test_anbu_neither_logs_nor_stores_a_password(
    district: District, database: Database, unique: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    client, admin = api(district)
    gw = f"gl-{unique}"
    shown = [enrol(client, admin, district.resident_a, gw)["password"]]
    shown.append(
        client.post(f"/api/v1/gateways/{gw}/credentials", headers=admin).json()["password"]
    )
    assert client.delete(f"/api/v1/gateways/{gw}", headers=admin).status_code == 204
    assert caplog.records and not any(p in caplog.text for p in shown)
    tables = [r[0] for r in rows(database, """SELECT table_name FROM information_schema.tables
                                              WHERE table_schema = 'anbu'
                                                AND table_type = 'BASE TABLE'""")]  # fmt: skip
    with database.connection() as conn:
        for table in tables:
            query = sql.SQL("SELECT count(*) FROM anbu.{} t WHERE t::text LIKE %s").format(
                sql.Identifier(table)
            )
            for password in shown:
                found = conn.execute(query, (f"%{password}%",)).fetchone()
                assert found == (0,), f"a password in anbu.{table}"


def test_the_command_line_adds_rotates_and_removes_a_gateway(
    district: District, database: Database, broker: EmbeddedMosquitto, unique: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    from typer.testing import CliRunner

    from anbu.cli import app, gateways_cmds  # noqa: F401

    settings = district.app.state.deps.settings
    with database.connection() as conn:
        conn.execute("UPDATE anbu.resident SET external_id = %s WHERE id = %s",
                     (f"CASE-{unique}", district.resident_a))  # fmt: skip
    monkeypatch.setenv("ANBU_DATABASE_URL", settings.database_url)
    monkeypatch.setenv("ANBU_MQTT_PORT", str(broker.port))
    monkeypatch.delenv("ANBU_BROKER_ADMIN_USERNAME", raising=False)
    gw = f"gx-{unique}"
    no_admin = CliRunner().invoke(app, ["gateways", "add", "--resident", f"CASE-{unique}", gw])
    assert no_admin.exit_code == 3 and "브로커 관리자 계정이 설정되지 않아" in no_admin.output
    assert "시스템 운영 담당자에게 문의해 주세요. / No broker admin" in no_admin.output
    monkeypatch.setenv("ANBU_BROKER_ADMIN_USERNAME", str(settings.broker_admin_username))
    monkeypatch.setenv("ANBU_BROKER_ADMIN_PASSWORD", str(settings.broker_admin_password))
    unknown = CliRunner().invoke(app, ["gateways", "add", "--resident", "CASE-none", gw])
    assert unknown.exit_code == 1 and "찾을 수 없음 / not found" in unknown.output

    def printed(output: str) -> dict[str, Any]:
        got = dict(re.findall(r"^\S[^/]* / (username|password): (\S+)$", output, re.MULTILINE))
        return {"host": "127.0.0.1", "port": broker.port, **got}

    added = CliRunner().invoke(app, ["gateways", "add", "--resident", f"CASE-{unique}", gw])
    assert added.exit_code == 0, added.output
    assert f"브로커 주소 / broker: 127.0.0.1:{broker.port}" in added.output
    assert f"허용된 토픽 / topics: gw/{gw}/#" in added.output
    assert "지금 한 번만 표시됩니다" in added.output
    first = printed(added.output)
    assert first["username"] == gw and connect_code(first) == 0
    rotated = CliRunner().invoke(app, ["gateways", "rotate", gw])
    assert rotated.exit_code == 0, rotated.output
    second = printed(rotated.output)
    assert connect_code(first) in REFUSED and connect_code(second) == 0
    removed = CliRunner().invoke(app, ["gateways", "remove", gw])
    assert removed.exit_code == 0 and "removed and revoked" in removed.output
    assert connect_code(second) in REFUSED
    assert CliRunner().invoke(app, ["gateways", "rotate", gw]).exit_code == 1
    # the broker unreachable: the reissue leaves the old password, the removal waits; the
    # Korean half names no exception
    other = f"gy-{unique}"
    kept = printed(CliRunner().invoke(app, ["gateways", "add", "--resident", f"CASE-{unique}",
                                            other]).output)  # fmt: skip
    monkeypatch.setenv("ANBU_MQTT_PORT", str(free_port()))
    not_rotated = CliRunner().invoke(app, ["gateways", "rotate", other])
    assert not_rotated.exit_code == 3 and "기존 비밀번호는 그대로 쓸 수 있습니다" in (
        not_rotated.output)  # fmt: skip
    pending = CliRunner().invoke(app, ["gateways", "remove", other])
    assert pending.exit_code == 0, pending.output
    korean, english = pending.output.split(" / ", 1)
    assert korean == "삭제함, 브로커 연결 실패로 접속 계정 차단 대기(오늘 밤 다시 시도)"
    assert "revocation pending (" in english
    monkeypatch.setenv("ANBU_MQTT_PORT", str(broker.port))
    assert connect_code(kept) == 0  # nobody could tell the broker yet
    retried = CliRunner().invoke(app, ["gateways", "remove", other])
    assert "removed and revoked" in retried.output and connect_code(kept) in REFUSED


# --- the broker's own names, races and locks (review of issue 15) ----------------------------


def service_connects(broker: EmbeddedMosquitto, username: str, password: str, cid: str) -> int:
    """The CONNACK code of a service account connecting with its own client id."""
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=cid, protocol=mqtt.MQTTv5)
    client.username_pw_set(username, password)
    answered = threading.Event()
    code: list[int] = []

    def on_connect(_c: Any, _u: Any, _f: Any, rc: Any, _p: Any = None) -> None:
        code.append(rc.value)
        answered.set()

    client.on_connect = on_connect
    client.connect("127.0.0.1", broker.port)
    client.loop_start()
    try:
        assert answered.wait(WAIT_S), "no CONNACK"
    finally:
        client.disconnect()
        client.loop_stop()
    return code[0]


def test_a_gateway_id_is_never_one_of_the_brokers_own_names(
    district: District, database: Database, broker: EmbeddedMosquitto, ingest: IngestService,
    unique: str,
) -> None:  # fmt: skip
    from tests.conftest import INGEST_PASSWORD

    client, admin = api(district)
    deps = district.app.state.deps
    replicas = deps.settings.model_copy(update={"mqtt_username": "svc-{replica}"})
    district.app.state.deps = dataclasses.replace(deps, settings=replicas)
    before = registry_counts(database)
    names = ["ingest", "INGEST", str(deps.settings.broker_admin_username), "anbu-ingest-1",
             "Anbu-Ingest-1-0", "anbu-dynsec-control", "anbu-gateway", "admin", "svc-7"]  # fmt: skip
    for name in names:
        refused = client.post(f"/api/v1/residents/{district.resident_a}/gateways",
                              json={"gateway_id": name}, headers=admin)  # fmt: skip
        assert refused.status_code == 422, (name, refused.text)
        assert "MQTT 브로커가 쓰는 이름" in refused.json()["detail"], name
        assert refused.json()["errors"][0]["code"] == "gateway_reserved"
    assert registry_counts(database) == before
    # ingest kept its session and its account, the admin its own
    assert ingest.subscribed.is_set()
    assert service_connects(broker, "ingest", INGEST_PASSWORD, f"probe-{unique}") == 0
    from registry.broker_accounts import BrokerAccounts

    with BrokerAccounts(broker.admin()) as accounts:
        assert accounts.foreign_accounts(["ingest"]) == ["ingest"]


def test_an_account_that_is_not_a_gateways_is_never_replaced_nor_revoked(
    district: District, database: Database, broker: EmbeddedMosquitto, unique: str
) -> None:
    from registry.broker_accounts import BrokerAccounts
    from registry.gateway_accounts import revoke_pending

    name, password, cid = f"svc-{unique}", f"pw-{unique}", f"svc-{unique}-c"
    with BrokerAccounts(broker.admin()) as accounts:
        accounts.set_service(name, password, client_id=cid)
    client, admin = api(district)
    before = registry_counts(database)
    refused = client.post(f"/api/v1/residents/{district.resident_a}/gateways",
                          json={"gateway_id": name}, headers=admin)  # fmt: skip
    assert refused.status_code == 422 and "MQTT 브로커가 쓰는 이름" in refused.json()["detail"]
    assert registry_counts(database) == before
    assert service_connects(broker, name, password, cid) == 0
    # a registry row under that name (from before this check) pending revocation: the
    # nightly revocation leaves the service's account alone
    with database.connection() as conn:
        conn.execute("""INSERT INTO anbu.gateway (id, resident_id, revocation_pending)
                        VALUES (%s, %s, %s)""", (name, district.resident_a, NOW))  # fmt: skip
    done = revoke_pending(database, broker.admin(), NOW, gateway_id=name)
    assert done.revoked == [name] and done.pending == []
    assert service_connects(broker, name, password, cid) == 0


def test_the_nightly_revocation_leaves_a_gateway_being_changed_for_the_next_night(
    district: District, database: Database, broker: EmbeddedMosquitto, unique: str
) -> None:
    from registry.gateway_accounts import revoke_pending

    client, admin = api(district)
    gw = f"gn-{unique}"
    creds = enrol(client, admin, district.resident_a, gw)
    with database.connection() as conn:
        conn.execute("UPDATE anbu.gateway SET revocation_pending = %s WHERE id = %s", (NOW, gw))
    with database.connection() as held, held.transaction():  # an add/rotate/remove under way
        held.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (f"gateway:{gw}",))
        during = revoke_pending(database, broker.admin(), NOW)
        assert gw in during.pending and gw not in during.revoked
        assert connect_code(creds) == 0  # the broker was not told
    after = revoke_pending(database, broker.admin(), NOW, gateway_id=gw)
    assert after.revoked == [gw]
    assert connect_code(creds) in REFUSED


class SilentBroker:
    """A TCP port that accepts and never answers: a broker too slow to say anything."""

    def __init__(self) -> None:
        import socket

        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.accepted = threading.Event()
        self._conns: list[Any] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        try:
            conn, _ = self.server.accept()
        except OSError:
            return
        self._conns.append(conn)
        self.accepted.set()

    def close(self) -> None:
        for c in self._conns:
            c.close()
        self.server.close()


def test_readings_are_never_stalled_by_a_rotation_waiting_for_the_broker(
    district: District, database: Database, unique: str
) -> None:
    from ingest.store import Message, Store
    from registry.broker_accounts import BrokerAdmin
    from registry.gateway_accounts import BrokerUnavailable, replace_password

    client, admin = api(district)
    gw = f"gs-{unique}"
    enrol(client, admin, district.resident_a, gw)
    store = Store(database)

    def batch_committed(minutes_ago: int) -> float:
        """Store one reading of `gw` off this thread; seconds until it committed (≤ 2)."""
        ts = (NOW - timedelta(minutes=minutes_ago)).isoformat()
        body = {"readings": [{"sensor": "door1", "kind": "door", "ts": ts, "value": 1}]}
        message = Message(f"gw/{gw}/anbu/readings", json.dumps(body).encode())
        done = threading.Event()
        started = time.monotonic()
        took: list[float] = []

        def run() -> None:
            store.store_batch([message], NOW)
            took.append(time.monotonic() - started)
            done.set()

        threading.Thread(target=run, daemon=True).start()
        assert done.wait(2.0), "the batch waited on the gateway's row"
        return took[0]

    slow = SilentBroker()
    stuck = BrokerAdmin("127.0.0.1", slow.port, "anbu-dynsec-admin", "x", timeout_s=6.0)
    failed: list[BaseException] = []

    def rotate() -> None:
        try:
            replace_password(database, stuck, gw, NOW)
        except BrokerUnavailable as exc:
            failed.append(exc)

    rotation = threading.Thread(target=rotate)
    rotation.start()
    try:
        assert slow.accepted.wait(WAIT_S), "the rotation never reached the broker"
        during = batch_committed(2)
        assert rotation.is_alive()  # still waiting for the broker
    finally:
        slow.close()
        rotation.join(WAIT_S + 5)
    assert failed and failed[0].args == ("reissue_unavailable",)  # never reached: old intact
    with database.connection() as held, held.transaction():  # any lock on its row meanwhile
        held.execute("SELECT 1 FROM anbu.gateway WHERE id = %s FOR UPDATE", (gw,))
        locked = batch_committed(1)
    logging.getLogger(__name__).info("batches committed in %.0f / %.0f ms",
                                     during * 1000, locked * 1000)  # fmt: skip
    assert readings_of(database, gw) == [(NOW - timedelta(minutes=m), 1.0) for m in (2, 1)]


def test_a_rotation_failing_half_way_says_the_old_password_may_be_gone(
    district: District, database: Database, unique: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from registry.broker_accounts import BrokerAccounts, BrokerCommandFailed

    client, admin = api(district)
    gw = f"gh-{unique}"
    creds = enrol(client, admin, district.resident_a, gw)

    def refused(*_a: Any, **_k: Any) -> None:  # the broker deleted the old one, then refused
        raise BrokerCommandFailed("createClient: refused")

    monkeypatch.setattr(BrokerAccounts, "create_gateways", refused)
    answer = client.post(f"/api/v1/gateways/{gw}/credentials", headers=admin)
    assert answer.status_code == 503, answer.text
    assert (
        "이전 비밀번호는 이미 해지되었을 수 있습니다. 비밀번호를 다시 발급해 주세요."
        in (answer.json()["detail"])
    )
    assert "may already have been revoked" in answer.json()["detail_en"]
    assert connect_code(creds) in REFUSED  # said so truly
    monkeypatch.undo()
    again = client.post(f"/api/v1/gateways/{gw}/credentials", headers=admin)
    assert again.status_code == 200 and connect_code(again.json()) == 0


def test_a_retried_add_is_told_to_reissue_and_never_learns_another_districts_ids(
    district: District, database: Database, unique: str
) -> None:
    client, admin = api(district)
    gw = f"gt-{unique}"
    enrol(client, admin, district.resident_a, gw)
    retried = client.post(f"/api/v1/residents/{district.resident_a}/gateways",
                          json={"gateway_id": gw}, headers=admin)  # fmt: skip
    assert retried.status_code == 409 and "비밀번호 재발급" in retried.json()["detail"]
    other = TestClient(district.app)
    jung = bearer(other, district.other_admin, PASSWORD)
    elsewhere = other.post(f"/api/v1/residents/{district.resident_c}/gateways",
                           json={"gateway_id": gw}, headers=jung)  # fmt: skip
    assert elsewhere.status_code == 409
    # the same answer either way, but for the path each client asked (its `instance`)
    assert {**elsewhere.json(), "instance": ""} == {**retried.json(), "instance": ""}


def test_a_gateway_gone_in_a_race_is_a_404_not_a_500(
    district: District, database: Database, unique: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from dashboards import enrolment_api, enrolment_pages

    client, admin = api(district)
    gw, raced = f"gz-{unique}", f"gy-{unique}"
    enrol(client, admin, district.resident_a, gw)
    real_check = enrolment_api.gateway_in_district

    def checked_then_gone(conn: Any, who: Any, gateway_id: str) -> int:
        rid = real_check(conn, who, gateway_id)
        conn.execute("DELETE FROM anbu.sensor WHERE gateway_id = %s", (gateway_id,))
        conn.execute("DELETE FROM anbu.gateway WHERE id = %s", (gateway_id,))
        return rid

    monkeypatch.setattr(enrolment_api, "gateway_in_district", checked_then_gone)
    monkeypatch.setattr(enrolment_pages, "gateway_in_district", checked_then_gone)
    rotated = client.post(f"/api/v1/gateways/{gw}/credentials", headers=admin)
    assert rotated.status_code == 404, rotated.text
    enrol(client, admin, district.resident_a, gw)
    removed = client.delete(f"/api/v1/gateways/{gw}", headers=admin)
    assert removed.status_code == 404, removed.text
    browser = TestClient(district.app)  # the pages the same
    login_page(browser, district.admin, PASSWORD)
    token = csrf_of(browser.get(f"/enrol/residents/{district.resident_a}").text)
    for action in ("credentials", "remove"):
        enrol(client, admin, district.resident_a, gw)
        page = browser.post(f"/enrol/gateways/{gw}/{action}", data={"csrf_token": token},
                            follow_redirects=False)  # fmt: skip
        assert page.status_code == 404, (action, page.text[:200])
    # an add answered from what was issued, though the gateway is gone by the time it answers
    real_issue = enrolment_api.issue_gateway

    def issued_then_gone(*args: Any) -> Any:
        made = real_issue(*args)
        with database.connection() as conn:
            conn.execute("DELETE FROM anbu.gateway WHERE id = %s", (made.gateway_id,))
        return made

    monkeypatch.setattr(enrolment_api, "issue_gateway", issued_then_gone)
    added = client.post(f"/api/v1/residents/{district.resident_a}/gateways",
                        json={"gateway_id": raced}, headers=admin)  # fmt: skip
    assert added.status_code == 201, added.text
    assert added.json()["id"] == raced and added.json()["credentials"]["username"] == raced


def test_a_removed_gateway_counts_nowhere_as_a_live_one(
    district: District, database: Database, unique: str
) -> None:
    from dashboards.sites import list_sites
    from detectors import health_sweep, sweep
    from detectors.inactivity import InactivityPolicy
    from detectors.routine import RoutinePolicy
    from ingest.store import Message, Store
    from tests.integration.enrolment_support import DONG_A

    client, admin = api(district)
    rid = district.resident_a
    down, gone = f"gd-{unique}", f"gg-{unique}"
    enrol(client, admin, rid, down)
    enrol(client, admin, rid, gone)
    unreachable(district)  # the removal stays pending: its row stays, removed
    assert client.delete(f"/api/v1/gateways/{gone}", headers=admin).status_code == 202
    stale = NOW - timedelta(days=3)
    with database.connection() as conn:
        conn.execute("""UPDATE anbu.gateway SET online = false, status_changed_at = %s,
                               last_seen_at = %s WHERE id = %s""", (stale, stale, down))  # fmt: skip
        conn.execute("""INSERT INTO anbu.home_activity (resident_id, last_activity_at)
                        VALUES (%s, %s) ON CONFLICT (resident_id) DO UPDATE
                        SET last_activity_at = EXCLUDED.last_activity_at""", (rid, stale))  # fmt: skip
    # the removed gateway still talking: neither seen nor online
    status = Message(f"gw/{gone}/anbu/status", b"online")
    Store(database).store_batch([status], NOW)
    assert rows(database, "SELECT online, last_seen_at FROM anbu.gateway WHERE id = %s",
                (gone,)) == [(None, None)]  # fmt: skip
    with database.connection() as conn:
        # every live gateway of the home is down: no inactivity judged on its silence
        policy = InactivityPolicy()
        params = sweep.sweep_params(NOW, policy, RoutinePolicy(fixed=policy))
        homes = [r[0] for r in conn.execute(sweep._HOMES, params).fetchall()]
        assert rid not in homes
        totals = dict(conn.execute(health_sweep._DONG_TOTALS).fetchall())
        live = rows(database, """SELECT count(*) FROM anbu.gateway g JOIN anbu.resident r
                                   ON r.id = g.resident_id WHERE r.dong_code = %s
                                    AND r.status <> 'ended' AND g.removed_at IS NULL""",
                    (DONG_A,))[0][0]  # fmt: skip
        assert totals[DONG_A] == live
        listed = next(s for s in list_sites(conn, DONG_A) if s.resident_id == rid)
        assert (listed.gateways, listed.offline) == (1, 1)
