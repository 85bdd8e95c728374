"""MQTT over TLS on the real Mosquitto: gateways on 8883, ingest on the mutual-TLS 8884, and the
production configuration (deploy/mosquitto.production.conf), which has no plain listener."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import psycopg
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.subscribeoptions import SubscribeOptions

import registry
from core.clock import VirtualClock
from core.config import Settings
from core.db import Database
from core.domain import SensorKind
from ingest.consumer import IngestService
from simulators.certs import Pki, make_pki
from simulators.servers import EmbeddedMosquitto

ROOT = Path(__file__).resolve().parents[2]
PRODUCTION_CONF = ROOT / "deploy" / "mosquitto.production.conf"
NOW = datetime(2026, 11, 22, 9, 30, tzinfo=UTC)
T0 = datetime(2026, 11, 22, 9, 0, tzinfo=UTC)
PASSWORD = "gw-tls-test-password"
WAIT_S = 15.0


def tls_client(
    port: int, username: str, password: str, ca: Path, client_id: str = "", cert: Pki | None = None
) -> tuple[mqtt.Client, int]:
    """Connect over TLS and wait for the CONNACK; the client (looping) and its reason code,
    -1 when the broker closed the connection first (a refused client certificate, under TLS
    1.3, is refused after the handshake)."""
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
    client.username_pw_set(username, password)
    client.tls_set(
        ca_certs=str(ca),
        certfile=str(cert.client_cert) if cert else None,
        keyfile=str(cert.client_key) if cert else None,
    )
    codes: list[int] = []
    connack = threading.Event()

    def on_connect(_c: Any, _u: Any, _f: Any, rc: Any, _p: Any = None) -> None:
        codes.append(rc.value)
        connack.set()

    def on_disconnect(_c: Any, _u: Any, _f: Any, _rc: Any, _p: Any = None) -> None:
        codes.append(-1)
        connack.set()

    client.on_connect = on_connect
    client.on_disconnect = on_disconnect
    client.connect("127.0.0.1", port)
    client.loop_start()
    assert connack.wait(WAIT_S), "no CONNACK"
    return client, codes[0]


def close(client: mqtt.Client) -> None:
    client.disconnect()
    client.loop_stop()


def reading(sensor: str, ts: datetime, value: float) -> bytes:
    return json.dumps(
        {"readings": [{"sensor": sensor, "kind": "door", "ts": ts.isoformat(), "value": value}]}
    ).encode()


@pytest.fixture
def gateway(database: Database, broker: EmbeddedMosquitto, unique: str) -> str:
    gw = f"{unique}-tls"
    with database.connection() as conn:
        registry.add_dong(conn, "1111051500", "청운효자동", "종로구")
        rid = registry.add_resident(conn, f"{unique}-h1", "1111051500", "홍길동", "+821000000001")
        registry.add_gateway(conn, gw, rid)
        registry.add_sensor(conn, gw, "door1", SensorKind.DOOR, "entrance")
    broker.add_user(gw, PASSWORD)
    return gw


@pytest.fixture
def tls_settings(settings: Settings, broker: EmbeddedMosquitto) -> Settings:
    """Ingest on the broker's mutual-TLS services listener, with its client certificate."""
    assert broker.pki is not None
    return settings.model_copy(
        update={
            "mqtt_port": broker.service_port,
            "mqtt_tls_ca": str(broker.pki.ca),
            "mqtt_tls_cert": str(broker.pki.client_cert),
            "mqtt_tls_key": str(broker.pki.client_key),
        }
    )


@pytest.fixture
def ingest(tls_settings: Settings, database: Database) -> Iterator[IngestService]:
    service = IngestService(tls_settings, database, VirtualClock(NOW))
    service.start()
    assert service.subscribed.wait(WAIT_S), "ingest did not subscribe over TLS"
    yield service
    service.stop()


def count_readings(db_url: str) -> int:
    with psycopg.connect(db_url) as conn:
        row = conn.execute("SELECT count(*) FROM anbu.readings").fetchone()
    assert row is not None
    return int(row[0])


def test_a_gateway_over_tls_reaches_ingest_over_mutual_tls(
    broker: EmbeddedMosquitto, gateway: str, ingest: IngestService, db_url: str
) -> None:
    assert broker.pki is not None
    client, code = tls_client(broker.gateway_port, gateway, PASSWORD, broker.pki.ca, "any-id")
    stored = threading.Event()
    ingest.on_batch = lambda _s: stored.set() if count_readings(db_url) == 1 else None
    try:
        assert code == 0
        info = client.publish(f"gw/{gateway}/anbu/readings", reading("door1", T0, 1), qos=1)
        info.wait_for_publish(WAIT_S)
        assert info.is_published()
        assert stored.wait(WAIT_S), f"{count_readings(db_url)} readings stored, 1 expected"
    finally:
        close(client)


def test_the_tls_listeners_refuse_what_they_should(
    broker: EmbeddedMosquitto, gateway: str, tmp_path: Path
) -> None:
    assert broker.pki is not None
    # a wrong password over TLS: refused in the CONNACK
    client, code = tls_client(broker.gateway_port, gateway, "wrong-" + PASSWORD, broker.pki.ca)
    close(client)
    assert code in (0x86, 0x87)  # bad user name or password / not authorized
    # a client that trusts another CA does not accept the broker's certificate
    stranger = make_pki(tmp_path / "other-ca")
    with pytest.raises(OSError):  # ssl.SSLCertVerificationError
        tls_client(broker.gateway_port, gateway, PASSWORD, stranger.ca)
    # plain MQTT on a TLS port: no CONNACK, the broker closes the connection
    with socket.create_connection(("127.0.0.1", broker.gateway_port), timeout=WAIT_S) as s:
        s.sendall(bytes([0x10, 0x0D, 0, 4]) + b"MQTT" + bytes([5, 2, 0, 30, 0, 0, 0]))
        try:
            answer = s.recv(16)
        except ConnectionResetError:
            answer = b""
        assert answer == b""
    # the services listener wants a client certificate signed by the broker's CA
    ingest_pw = broker.users["ingest"]
    for cert in (None, stranger):
        try:
            client, code = tls_client(
                broker.service_port, "ingest", ingest_pw, broker.pki.ca, cert=cert
            )
            close(client)
        except OSError:
            code = -1
        assert code == -1, f"the services listener let in a client with certificate {cert}"


def _directives(text: str) -> list[tuple[str, ...]]:
    """The configuration's directives, with the values of `# path`/`# port` lines left out."""
    out = []
    for line in text.splitlines():
        body, _, comment = line.partition("#")
        words = body.split()
        if not words:
            continue
        out.append(
            tuple(words[:1]) if comment.split()[:1] in (["path"], ["port"]) else tuple(words)
        )
    return out


def test_the_production_configuration_is_the_development_one_without_plain_mqtt() -> None:
    dev = _directives((ROOT / "mosquitto.conf").read_text())
    prod = _directives(PRODUCTION_CONF.read_text())
    plain = dev.index(("listener",))  # the first listener is the plain development one
    assert dev[:plain] + dev[plain + 1 :] == prod
    assert prod.count(("listener",)) == 2
    listeners = [i for i, d in enumerate(prod) if d == ("listener",)]
    for start, end in zip(listeners, [*listeners[1:], len(prod)], strict=True):
        keys = {d[0] for d in prod[start:end]}
        assert {"cafile", "certfile", "keyfile"} <= keys  # every listener speaks TLS


def test_the_production_configuration_runs(tmp_path: Path, unique: str) -> None:
    """Mosquitto with deploy/mosquitto.production.conf: no plain listener; anbu provisions a
    gateway over mutual TLS; the gateway publishes over TLS; ingest receives over mutual TLS."""
    gw = f"{unique}-prod"
    broker = EmbeddedMosquitto(tmp_path / "mq", users={"ingest": "ingest-prod-test-pw"},
                               conf_source=PRODUCTION_CONF, bind_client_ids=True)  # fmt: skip
    broker.start()
    try:
        assert broker.pki is not None
        with pytest.raises(OSError):  # nothing listens on the plain port
            socket.create_connection(("127.0.0.1", broker.port), timeout=WAIT_S).close()
        broker.add_user(gw, PASSWORD)  # over the services listener, as anbu does in production
        ingest, code = tls_client(broker.service_port, "ingest", "ingest-prod-test-pw",
                                  broker.pki.ca, f"ingest-{unique}", cert=broker.pki)  # fmt: skip
        assert code == 0
        got = threading.Event()
        ingest.on_message = lambda *_: got.set()
        subscribed = threading.Event()
        ingest.on_subscribe = lambda *_: subscribed.set()
        ingest.subscribe("$share/ingest/gw/#", options=SubscribeOptions(qos=1))
        assert subscribed.wait(WAIT_S)
        client, code = tls_client(broker.gateway_port, gw, PASSWORD, broker.pki.ca, "its-own")
        assert code == 0
        client.publish(f"gw/{gw}/anbu/readings", reading("door1", T0, 1), qos=1)
        assert got.wait(WAIT_S)
        close(client)
        close(ingest)
    finally:
        broker.stop()


def test_production_refuses_the_admin_and_ingest_on_the_gateways_listener(
    tmp_path: Path, unique: str
) -> None:
    """With deploy/mosquitto.production.conf and accounts provisioned as in production (the
    admin and each ingest replica bound to a client id that is not their username), their
    passwords alone open nothing on 8883, not even with a client certificate; on 8884, with the
    certificate and their own client id, ingest reads and the admin provisions."""
    ingest_id = f"anbu-ingest-{unique}"
    broker = EmbeddedMosquitto(tmp_path / "mq", users={"ingest": "ingest-prod-test-pw"},
                               conf_source=PRODUCTION_CONF, bind_client_ids=True,
                               service_client_ids={"ingest": ingest_id})  # fmt: skip
    broker.start()
    try:
        pki = broker.pki
        assert pki is not None
        admin = broker.admin()
        for username, password in (("ingest", "ingest-prod-test-pw"),
                                   (admin.username, admin.password)):  # fmt: skip
            for client_id in ("", ingest_id, admin.client_id):
                for cert in (None, pki):
                    client, code = tls_client(broker.gateway_port, username, password, pki.ca,
                                              client_id, cert=cert)  # fmt: skip
                    close(client)
                    assert code in (0x86, 0x87), (username, client_id, cert, code)
        # on the services' listener, with another client id: refused too
        client, code = tls_client(broker.service_port, "ingest", "ingest-prod-test-pw", pki.ca,
                                  f"other-{unique}", cert=pki)  # fmt: skip
        close(client)
        assert code == 0x87
        gw = f"{unique}-gw"
        broker.add_user(gw, PASSWORD)  # the admin, over 8884 with its bound id
        ingest, code = tls_client(broker.service_port, "ingest", "ingest-prod-test-pw", pki.ca,
                                  ingest_id, cert=pki)  # fmt: skip
        assert code == 0
        got = threading.Event()
        subscribed = threading.Event()
        ingest.on_message = lambda *_: got.set()
        ingest.on_subscribe = lambda *_: subscribed.set()
        ingest.subscribe("gw/#", options=SubscribeOptions(qos=1))
        assert subscribed.wait(WAIT_S)
        gateway, code = tls_client(broker.gateway_port, gw, PASSWORD, pki.ca)
        assert code == 0
        gateway.publish(f"gw/{gw}/anbu/readings", reading("door1", T0, 1), qos=1)
        assert got.wait(WAIT_S)
        close(gateway)
        close(ingest)
    finally:
        broker.stop()
