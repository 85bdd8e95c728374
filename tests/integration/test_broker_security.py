"""The broker confines gateways: on the real Mosquitto, with the production mosquitto.conf."""

from __future__ import annotations

import ssl
import threading
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.subscribeoptions import SubscribeOptions

from core.config import Settings
from registry.broker_accounts import BrokerAccounts, InvalidGatewayId
from simulators.servers import EmbeddedMosquitto

PASSWORD = "gw-security-test-pw"
WAIT_S = 10.0


class Client:
    """An MQTT 5 client whose CONNACK, SUBACKs, messages and disconnections can be awaited."""

    def __init__(
        self, port: int, username: str, password: str, client_id: str, ca: Path | None = None
    ) -> None:
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id,
                                  protocol=mqtt.MQTTv5)  # fmt: skip
        self.client.username_pw_set(username, password)
        if ca is not None:
            self.client.tls_set(ca_certs=str(ca))
        self.connack = threading.Event()
        self.connect_code = -1
        self.subacks: dict[int, int] = {}
        self.suback = threading.Condition()
        self.messages: list[str] = []
        self.arrived = threading.Condition()
        self.disconnects: list[int] = []
        self.gone = threading.Event()
        self.pubacks: dict[int, int] = {}
        self.client.on_publish = self._on_publish
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = self._on_subscribe
        self.client.on_message = self._on_message
        self.client.on_disconnect = self._on_disconnect
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        assert self.connack.wait(WAIT_S), "no CONNACK"

    def _on_connect(self, _c: Any, _u: Any, _f: Any, rc: Any, _p: Any = None) -> None:
        self.connect_code = rc.value
        self.connack.set()

    def _on_subscribe(self, _c: Any, _u: Any, mid: int, codes: Any, _p: Any = None) -> None:
        with self.suback:
            self.subacks[mid] = codes[0].value
            self.suback.notify_all()

    def _on_message(self, _c: Any, _u: Any, msg: mqtt.MQTTMessage) -> None:
        with self.arrived:
            self.messages.append(msg.topic)
            self.arrived.notify_all()

    def _on_disconnect(self, _c: Any, _u: Any, _f: Any, rc: Any, _p: Any = None) -> None:
        self.disconnects.append(rc.value)
        self.gone.set()

    def _on_publish(self, _c: Any, _u: Any, mid: int, rc: Any, _p: Any = None) -> None:
        self.pubacks[mid] = rc.value

    def publish_one(self, topic: str) -> int:
        """Publish QoS 1; the PUBACK's reason code (0x87: not authorized)."""
        info = self.client.publish(topic, b"{}", qos=1)
        info.wait_for_publish(WAIT_S)
        return self.pubacks[info.mid]

    def subscribe(self, topic: str) -> int:
        """Subscribe QoS 1; the SUBACK's reason code (>= 0x80: refused)."""
        _, mid = self.client.subscribe(topic, options=SubscribeOptions(qos=1))
        with self.suback:
            assert self.suback.wait_for(lambda: mid in self.subacks, WAIT_S), f"no SUBACK {topic}"
            return self.subacks[mid]

    def publish(self, topic: str, n: int) -> None:
        infos = [self.client.publish(topic, b'{"readings": []}', qos=1) for _ in range(n)]
        for info in infos:
            info.wait_for_publish(WAIT_S)

    def wait_messages(self, n: int) -> bool:
        with self.arrived:
            return self.arrived.wait_for(lambda: len(self.messages) >= n, WAIT_S)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def refused_without_certificate(port: int, ca: Path, username: str, client_id: str) -> bool:
    """Connect over TLS without a client certificate: True when the broker closes the
    connection before any CONNACK (under TLS 1.3 the refusal arrives after the handshake)."""
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
    client.username_pw_set(username, PASSWORD)
    client.tls_set(ca_certs=str(ca))
    outcome: list[str] = []
    done = threading.Event()
    client.on_connect = lambda *_: (outcome.append("connected"), done.set())
    client.on_disconnect = lambda *_: (outcome.append("closed"), done.set())
    try:
        client.connect("127.0.0.1", port)
    except (ssl.SSLError, OSError):
        return True
    client.loop_start()
    try:
        assert done.wait(WAIT_S), "neither CONNACK nor close"
    finally:
        client.loop_stop()
    return outcome[0] == "closed"


def test_a_gateway_cannot_take_a_share_of_ingest_shared_subscription(
    broker: EmbeddedMosquitto, settings: Settings, unique: str
) -> None:
    thief, home = f"th{unique}", f"ho{unique}"
    broker.add_user(thief, PASSWORD)
    broker.add_user(home, PASSWORD)
    group = settings.mqtt_shared_group
    ingest = Client(broker.port, settings.mqtt_username, settings.mqtt_password,
                    settings.mqtt_client_id)  # fmt: skip
    assert ingest.subscribe(f"$share/{group}/gw/#") == 1
    gateway = Client(broker.port, thief, PASSWORD, thief)
    attempts = [f"$share/{group}/gw/#", f"$share/{group}/gw/+/anbu/readings", "gw/#",
                f"gw/{home}/#", f"$share/{group}/gw/{thief}/#"]  # fmt: skip
    refused = {topic: gateway.subscribe(topic) for topic in attempts}
    publisher = Client(broker.port, home, PASSWORD, home)
    publisher.publish(f"gw/{home}/anbu/readings", 20)
    ingest.wait_messages(20)
    try:
        assert len(ingest.messages) == 20, f"ingest got {len(ingest.messages)} of 20"
        assert {t: c >= 0x80 for t, c in refused.items()} == dict.fromkeys(attempts, True), refused
        assert gateway.messages == []
    finally:
        for c in (ingest, gateway, publisher):
            c.close()


def test_a_gateway_cannot_disconnect_ingest_with_its_client_id(
    broker: EmbeddedMosquitto, settings: Settings, unique: str
) -> None:
    """On the gateways' listener the broker makes the client id the username; elsewhere a
    gateway provisioned as anbu provisions it is bound to its own id; the services' listener
    wants a client certificate first."""
    attacker, home = f"at{unique}", f"ho{unique}"
    with BrokerAccounts(broker.admin()) as accounts:
        accounts.add_gateways({attacker: PASSWORD, home: PASSWORD})  # bound, as in production
    assert broker.pki is not None
    ingest = Client(broker.port, settings.mqtt_username, settings.mqtt_password,
                    settings.mqtt_client_id)  # fmt: skip
    assert ingest.subscribe(f"gw/{home}/#") == 1
    # over TLS on the gateways' listener: let in, but as itself
    impostor = Client(broker.gateway_port, attacker, PASSWORD, settings.mqtt_client_id,
                      ca=broker.pki.ca)  # fmt: skip
    assert impostor.connect_code == 0
    assert impostor.subscribe(f"gw/{attacker}/#") == 1  # a session of its own
    # on the plain development listener: its client id is bound to its name
    bound = Client(broker.port, attacker, PASSWORD, settings.mqtt_client_id)
    assert bound.connect_code == 0x87  # not authorized
    # on the services' listener: no client certificate, no TLS session
    assert refused_without_certificate(broker.service_port, broker.pki.ca, attacker,
                                       settings.mqtt_client_id)  # fmt: skip
    publisher = Client(broker.gateway_port, home, PASSWORD, home, ca=broker.pki.ca)
    publisher.publish(f"gw/{home}/anbu/readings", 1)
    try:
        assert ingest.wait_messages(1)
        assert ingest.disconnects == [], "the impostor disconnected ingest"
    finally:
        for c in (ingest, impostor, bound, publisher):
            c.close()


def test_anbu_issues_replaces_and_revokes_a_gateways_credentials(
    broker: EmbeddedMosquitto, unique: str
) -> None:
    """registry.broker_accounts on the real broker: in effect at once, no reload."""
    gw, other = f"is{unique}", f"ot{unique}"
    assert broker.pki is not None
    ca = broker.pki.ca
    with BrokerAccounts(broker.admin()) as accounts:
        accounts.add_gateways({gw: "first-password-1", other: "other-password-1"})
        first = Client(broker.gateway_port, gw, "first-password-1", "", ca=ca)
        assert first.connect_code == 0
        assert first.publish_one(f"gw/{gw}/anbu/readings") < 0x80  # 0x10: nobody listens
        assert first.publish_one(f"gw/{other}/anbu/readings") == 0x87  # not as another gateway
        assert first.subscribe(f"gw/{other}/#") == 0x87
        accounts.add_gateway(gw, "second-password-2")  # replaced: the old session is closed
        assert first.gone.wait(WAIT_S)
        first.close()
        assert Client(broker.gateway_port, gw, "first-password-1", "", ca=ca).connect_code in (
            0x86, 0x87)  # fmt: skip
        second = Client(broker.gateway_port, gw, "second-password-2", "", ca=ca)
        assert second.connect_code == 0
        accounts.revoke_gateway(gw)  # ended: closed at once, refused from now on
        assert second.gone.wait(WAIT_S)
        second.close()
        again = Client(broker.port, gw, "second-password-2", gw)
        again.close()
        assert again.connect_code in (0x86, 0x87)
        with pytest.raises(InvalidGatewayId):
            accounts.add_gateway("gw/+/#", "whatever-password")


def test_the_dynsec_admin_is_refused_on_the_gateways_listener(broker: EmbeddedMosquitto) -> None:
    """The admin's password alone does not open the public TLS listener: its account is bound
    to a client id other than its username, and there the client id is the username. Over the
    other listeners, with its own client id, it still administers the broker."""
    assert broker.pki is not None
    admin = broker.admin()
    for client_id in ("", admin.client_id, admin.username):
        refused = Client(broker.gateway_port, admin.username, admin.password, client_id,
                         ca=broker.pki.ca)  # fmt: skip
        refused.close()
        assert refused.connect_code in (0x86, 0x87), (client_id, refused.connect_code)
    with BrokerAccounts(admin) as accounts:
        accounts.run([{"command": "listClients"}])
