"""Broker accounts: gateways' and services' MQTT credentials in Mosquitto's dynamic security plugin.

Mosquitto 2's plugin (mosquitto_dynamic_security.so, shipped with Debian's mosquitto) checks
subscriptions, not only deliveries as the ACL file does, binds a client to its client id, and
takes changes at once over its control topic, without a reload. anbu talks to it as an admin
client (`mosquitto_ctrl dynsec init` makes one). What each account may do is the table
`POLICY` below plus one role per gateway; Mosquitto 2.0's plugin does not expand `%u` in its
ACLs, so a gateway's own subtree is a role of its own, `gw:<id>`, allowing only `gw/<id>/#`.

The admin and the services are bound to a client id other than their username. On the
gateways' TLS listener (8883) the broker makes every client id the username
(`use_username_as_clientid`), so there a bound account never matches and is refused, password
or not: their way in is the mutual-TLS services listener (8884), where they choose their id.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import secrets
import ssl
import string
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Self

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

CONTROL_TOPIC = "$CONTROL/dynamic-security/v1"
# The admin's client id: not its username, so the gateways' listener (client id := username)
# refuses it. One admin session at a time: a second one with this id takes the first over.
ADMIN_CLIENT_ID = "anbu-dynsec-control"
# PBKDF2-SHA512 iterations of the passwords `plugin_file` writes. The plugin of Mosquitto 2.0
# hashes what its control topic receives with 101 (it takes no count there); every connect
# pays this cost once on the broker's single thread (≈ 5 ms here for 10,000).
PBKDF2_ITERATIONS = 10_000
# What Mosquitto 2.0's plugin stores for a password set over its control topic, as anbu
# provisions gateways (seen in its saved file): each gateway's connect checks that many.
CONTROL_TOPIC_ITERATIONS = 101
GATEWAY_ROLE = "anbu-gateway"
INGEST_ROLE = "anbu-ingest"
# A gateway id becomes a topic level and a role name: no '/', '+', '#', '$', spaces or NUL.
CHUNK = 100  # gateways per message to the plugin (it saves its whole file after each)
GATEWAY_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}")

# acltype, topic, allow, priority (higher is checked first)
Acl = tuple[str, str, bool, int]
POLICY: dict[str, tuple[Acl, ...]] = {
    # every gateway: never a shared subscription (it would take a share of ingest's messages),
    # never the control topic; its own subtree comes from its `gw:<id>` role
    GATEWAY_ROLE: (
        ("subscribePattern", "$share/#", False, 100),
        ("subscribePattern", "$CONTROL/#", False, 100),
        ("publishClientSend", "$CONTROL/#", False, 100),
    ),
    # ingest reads every gateway, through a shared subscription or a plain one, writes nothing
    INGEST_ROLE: (
        ("subscribePattern", "$share/+/gw/#", True, 0),
        ("subscribePattern", "gw/#", True, 0),
        ("publishClientReceive", "gw/#", True, 0),
    ),
}
# What nobody is granted is refused, reads included (the plugin's default lets every client
# receive whatever its subscriptions match).
DEFAULT_ACCESS = {
    "publishClientSend": False,
    "publishClientReceive": False,
    "subscribe": False,
    "unsubscribe": True,
}


def gateway_acls(gateway_id: str) -> tuple[Acl, ...]:
    """The ACLs of one gateway's own role: read and write `gw/<id>/#`, nothing else."""
    own = f"gw/{gateway_id}/#"
    return (
        ("publishClientSend", own, True, 0),
        ("publishClientReceive", own, True, 0),
        ("subscribePattern", own, True, 0),
    )


# letters and digits a person cannot misread when typing them into a gateway (no l/1/I/O/0)
PASSWORD_ALPHABET = "".join(
    c for c in string.ascii_letters + string.digits if c not in "l1IO0"
)  # 57 symbols
PASSWORD_LENGTH = 34  # 34 x log2(57) = 198 bits, more than the 192 of 24 random bytes


def new_password() -> str:
    """A gateway's password, as anbu issues them: 34 characters drawn by `secrets` from
    `PASSWORD_ALPHABET` (no look-alike characters), 198 bits."""
    return "".join(secrets.choice(PASSWORD_ALPHABET) for _ in range(PASSWORD_LENGTH))


class BrokerCommandFailed(RuntimeError):
    """The dynamic security plugin refused a command (its error text is in the message)."""


class InvalidGatewayId(ValueError):
    """A gateway id that cannot be an MQTT username, topic level and role name."""


class NotAGatewayAccount(ValueError):
    """A broker account under that name is not a gateway's (ingest, the admin, another
    service): anbu never deletes or replaces it as a gateway."""

    def __init__(self, names: list[str]) -> None:
        super().__init__(", ".join(names))
        self.names = names


class UnboundClientId(ValueError):
    """A service bound to its own username: the gateways' listener would let it in."""


def _check_binding(username: str, client_id: str) -> None:
    if not client_id or client_id == username:
        raise UnboundClientId(f"{username!r} needs a client id other than its username")


@dataclass(frozen=True)
class BrokerAdmin:
    """How to reach the broker as its dynsec admin (TLS when `tls_ca` is given), with the
    client id its account is bound to."""

    host: str
    port: int
    username: str
    password: str
    tls_ca: str | None = None
    tls_cert: str | None = None
    tls_key: str | None = None
    timeout_s: float = 10.0
    client_id: str = ADMIN_CLIENT_ID


def _acl(acl: Acl) -> dict[str, Any]:
    acltype, topic, allow, priority = acl
    return {"acltype": acltype, "topic": topic, "allow": allow, "priority": priority}


def stored_password(password: str, iterations: int = PBKDF2_ITERATIONS) -> dict[str, Any]:
    """A password as the plugin stores it: PBKDF2-SHA512, `iterations`, 12-byte salt."""
    salt = os.urandom(12)
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, iterations)
    return {"password": base64.b64encode(digest).decode(),
            "salt": base64.b64encode(salt).decode(), "iterations": iterations}  # fmt: skip


def plugin_file(
    admin: tuple[str, str],
    services: dict[str, str],
    gateways: dict[str, str],
    *,
    bind_client_id: bool = True,
    admin_client_id: str = ADMIN_CLIENT_ID,
    service_client_ids: dict[str, str] | None = None,
    hashed: Callable[[str], dict[str, Any]] = stored_password,
) -> dict[str, Any]:
    """The plugin's JSON file for a broker not yet started: an admin client on the control
    topic only (as `mosquitto_ctrl dynsec init` makes, bound to `admin_client_id`), `POLICY`,
    ingest-like `services` and `gateways` (username: password), as the control commands below
    would leave it; a service named in `service_client_ids` is bound to that id. Thousands
    of gateways at once are written here in a moment (`hashed` makes each stored password;
    a bench of tens of thousands gateways sharing one password passes a cached one); over the
    control topic each change rewrites the whole file."""
    _check_binding(admin[0], admin_client_id)
    bound = service_client_ids or {}
    control = "$CONTROL/dynamic-security/#"
    clients: list[dict[str, Any]] = [
        {"username": admin[0], **hashed(admin[1]), "clientid": admin_client_id,
         "roles": [{"rolename": "admin"}]}
    ]  # fmt: skip
    roles: list[dict[str, Any]] = [
        {"rolename": "admin", "acls": [
            _acl((t, control, True, 0))
            for t in ("publishClientSend", "publishClientReceive", "subscribePattern")]},
    ]  # fmt: skip
    roles += [{"rolename": r, "acls": [_acl(a) for a in acls]} for r, acls in POLICY.items()]
    for username, password in services.items():
        service = {"username": username, **hashed(password), "roles": [{"rolename": INGEST_ROLE}]}
        if username in bound:
            _check_binding(username, bound[username])
            service["clientid"] = bound[username]
        clients.append(service)
    for gateway_id, password in gateways.items():
        if not GATEWAY_ID.fullmatch(gateway_id):
            raise InvalidGatewayId(gateway_id)
        own = f"gw:{gateway_id}"
        roles.append({"rolename": own, "acls": [_acl(a) for a in gateway_acls(gateway_id)]})
        client = {"username": gateway_id, **hashed(password),
                  "roles": [{"rolename": GATEWAY_ROLE}, {"rolename": own}]}  # fmt: skip
        if bind_client_id:
            client["clientid"] = gateway_id
        clients.append(client)
    return {"clients": clients, "roles": roles, "defaultACLAccess": DEFAULT_ACCESS}


def _acl_command(command: str, role: str, acl: Acl) -> dict[str, Any]:
    acltype, topic, allow, priority = acl
    return {"command": command, "rolename": role, "acltype": acltype, "topic": topic,
            "allow": allow, "priority": priority}  # fmt: skip


class BrokerAccounts:
    """A session with the broker's dynamic security plugin: `with BrokerAccounts(admin) as a:`."""

    def __init__(self, admin: BrokerAdmin) -> None:
        self.admin = admin
        self._client: mqtt.Client | None = None
        self._lock = threading.Lock()
        self._answer = threading.Condition()
        self._answers: dict[str, list[dict[str, Any]]] = {}

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()

    def start(self) -> None:
        """Connect as the admin and subscribe to the plugin's responses."""
        a = self.admin
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=a.client_id,
                             protocol=mqtt.MQTTv5)  # fmt: skip
        client.username_pw_set(a.username, a.password)
        if a.tls_ca:
            client.tls_set(ca_certs=a.tls_ca, certfile=a.tls_cert, keyfile=a.tls_key,
                           tls_version=ssl.PROTOCOL_TLS_CLIENT)  # fmt: skip
        ready = threading.Event()
        refused: list[str] = []

        def on_connect(c: mqtt.Client, _u: Any, _f: Any, rc: Any, _p: Any = None) -> None:
            if rc.is_failure:
                refused.append(str(rc))
                ready.set()
            else:
                c.subscribe(f"{CONTROL_TOPIC}/response", qos=1)

        def on_subscribe(_c: mqtt.Client, _u: Any, _m: int, codes: Any, _p: Any = None) -> None:
            if codes[0].is_failure:
                refused.append(f"subscribe: {codes[0]}")
            ready.set()

        client.on_connect = on_connect
        client.on_subscribe = on_subscribe
        client.on_message = self._on_message
        client.connect(a.host, a.port, keepalive=30)
        client.loop_start()
        self._client = client
        if not ready.wait(a.timeout_s) or refused:
            self.stop()
            raise BrokerCommandFailed(f"dynsec admin session: {refused or 'no answer'}")

    def stop(self) -> None:
        if self._client is not None:
            self._client.disconnect()
            self._client.loop_stop()
            self._client = None

    def _on_message(self, _c: mqtt.Client, _u: Any, msg: mqtt.MQTTMessage) -> None:
        responses = json.loads(msg.payload).get("responses", [])
        tag = next((r.get("correlationData") for r in responses if "correlationData" in r), None)
        with self._answer:
            self._answers[str(tag)] = responses
            self._answer.notify_all()

    def run(
        self, commands: list[dict[str, Any]], ok: frozenset[str] = frozenset()
    ) -> list[dict[str, Any]]:
        """Send commands in one message; raise on the first error not in `ok` (substrings);
        the plugin's responses."""
        if self._client is None:
            raise RuntimeError("BrokerAccounts.start() first")
        tag = uuid.uuid4().hex
        body = [dict(c, correlationData=tag) for c in commands]
        with self._lock:
            self._client.publish(CONTROL_TOPIC, json.dumps({"commands": body}), qos=1)
            with self._answer:
                if not self._answer.wait_for(lambda: tag in self._answers, self.admin.timeout_s):
                    raise BrokerCommandFailed("the dynamic security plugin did not answer")
                responses = self._answers.pop(tag)
        for r in responses:
            error = r.get("error")
            if error and not any(o in error for o in ok):
                raise BrokerCommandFailed(f"{r.get('command')}: {error}")
        return responses

    def foreign_accounts(self, names: list[str]) -> list[str]:
        """Those of `names` that are broker accounts but not a gateway's: without the gateway
        role, or with any role other than it and its own `gw:<name>` (absent names are not)."""
        foreign: list[str] = []
        for start in range(0, len(names), CHUNK):
            chunk = names[start : start + CHUNK]
            answers = self.run([{"command": "getClient", "username": n} for n in chunk],
                               ok=frozenset({"not found"}))  # fmt: skip
            for name, answer in zip(chunk, answers, strict=True):
                client = (answer.get("data") or {}).get("client")
                if answer.get("error") or not client:
                    continue
                roles = {str(r.get("rolename")) for r in client.get("roles") or []}
                if GATEWAY_ROLE not in roles or roles - {GATEWAY_ROLE, f"gw:{name}"}:
                    foreign.append(name)
        return foreign

    def ensure_policy(self) -> None:
        """Create the roles of `POLICY` and set the default access (idempotent)."""
        commands: list[dict[str, Any]] = [
            {"command": "setDefaultACLAccess",
             "acls": [{"acltype": k, "allow": v} for k, v in DEFAULT_ACCESS.items()]},
        ]  # fmt: skip
        for role, acls in POLICY.items():
            commands.append({"command": "createRole", "rolename": role})
            commands += [_acl_command("addRoleACL", role, acl) for acl in acls]
        self.run(commands, ok=frozenset({"already exists"}))

    def set_service(
        self, username: str, password: str, role: str = INGEST_ROLE, *, client_id: str | None = None
    ) -> None:
        """Create (or re-password) a service account such as ingest, with `role`; bound to
        `client_id` (one account per ingest replica: its ANBU_MQTT_USERNAME and client id) so
        that the gateways' listener refuses it. Unbound (None) it is let in there too: for the
        development listener only."""
        fields: dict[str, Any] = {"username": username, "password": password,
                                  "roles": [{"rolename": role}]}  # fmt: skip
        if client_id is not None:
            _check_binding(username, client_id)
        self.run([{"command": "createClient", **fields}], ok=frozenset({"already exists"}))
        self.run([{"command": "modifyClient", **fields}])
        self.run([{"command": "setClientId", "username": username, "clientid": client_id}]
                 if client_id is not None else
                 [{"command": "setClientId", "username": username}])  # fmt: skip

    def add_gateway(self, gateway_id: str, password: str, *, bind_client_id: bool = True) -> None:
        """Issue a gateway's credentials: username = gateway id, `gw/<id>/#` only, and (bound)
        no other client id, so it cannot take over another client's session. Replaces any
        earlier credentials of the gateway (its open connection is closed); NotAGatewayAccount,
        nothing changed, when the name is another kind of account (ingest, the admin)."""
        self.add_gateways({gateway_id: password}, bind_client_id=bind_client_id)

    def add_gateways(self, passwords: dict[str, str], *, bind_client_id: bool = True) -> None:
        """`add_gateway` for many gateways, `CHUNK` to a message."""
        bad = [g for g in passwords if not GATEWAY_ID.fullmatch(g)]
        if bad:
            raise InvalidGatewayId(", ".join(bad))
        self.revoke_gateways(list(passwords))
        self.create_gateways(passwords, bind_client_id=bind_client_id)

    def create_gateways(self, passwords: dict[str, str], *, bind_client_id: bool = True) -> None:
        """Make gateways' accounts whose earlier ones `revoke_gateways` deleted."""
        items = list(passwords.items())
        for start in range(0, len(items), CHUNK):
            self._create_gateways(items[start : start + CHUNK], bind_client_id)

    def _create_gateways(self, items: list[tuple[str, str]], bind_client_id: bool) -> None:
        commands: list[dict[str, Any]] = []
        for gateway_id, password in items:
            own = f"gw:{gateway_id}"
            client: dict[str, Any] = {
                "command": "createClient", "username": gateway_id, "password": password,
                "roles": [{"rolename": GATEWAY_ROLE}, {"rolename": own}],
            }  # fmt: skip
            if bind_client_id:
                client["clientid"] = gateway_id
            commands.append({"command": "createRole", "rolename": own,
                             "acls": [_acl(acl) for acl in gateway_acls(gateway_id)]})  # fmt: skip
            commands.append(client)
        self.run(commands)

    def revoke_gateway(self, gateway_id: str) -> None:
        """Delete a gateway's account and role; its connection is closed at once."""
        self.revoke_gateways([gateway_id])

    def revoke_gateways(self, gateway_ids: list[str]) -> None:
        """`revoke_gateway` for many gateways, `CHUNK` to a message; NotAGatewayAccount, nothing
        deleted, when any of the names is another kind of account."""
        foreign = self.foreign_accounts(gateway_ids)
        if foreign:
            raise NotAGatewayAccount(foreign)
        for start in range(0, len(gateway_ids), CHUNK):
            commands: list[dict[str, Any]] = []
            for gateway_id in gateway_ids[start : start + CHUNK]:
                commands.append({"command": "deleteClient", "username": gateway_id})
                commands.append({"command": "deleteRole", "rolename": f"gw:{gateway_id}"})
            self.run(commands, ok=frozenset({"not found"}))
