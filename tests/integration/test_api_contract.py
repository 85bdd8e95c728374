"""The API's contract (issue 22): the OpenAPI document the app generates is valid OpenAPI 3.1,
and a client that knows nothing but that document gets what it promises.

`SpecClient` finds an operation by its operationId (path, method, declared parameters), sends
the request to the real app over real PostgreSQL, and validates every answer's body against the
schema the spec declares for that status (or its 4XX/5XX range) and content type, with a JSON
Schema 2020-12 validator whose `$ref`s resolve inside the spec. It walks the alerts page by page,
receives a webhook delivery on a real local HTTP server (the body is the spec's FeedEventOut and
its signature verifies), is refused with 412 for a stale If-Match, and gets problem details for
a 404 and a 422. An answer the spec does not declare fails the test.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import random
import threading
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from jsonschema import Draft202012Validator
from openapi_spec_validator import validate as validate_spec
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

import registry
from alerts.policy import EscalationPolicy
from alerts.service import AlertService
from alerts.webhook_delivery import WebhookDelivery
from core.clock import VirtualClock
from core.config import Settings
from core.crypto import Keyring, new_key
from core.db import Database
from dashboards.app import create_app
from tests.integration.dashboard_support import OPENED_AT, RecordingTelephony, seed_alert

DONG = "1111051500"
PASSWORD = "contract-pass-1"
SPEC_URI = "urn:anbu:openapi"
METHODS = ("get", "put", "post", "delete", "patch", "head", "options", "trace")


def _pointer(*parts: str) -> str:
    """A JSON pointer (RFC 6901) into the spec."""
    return "".join("/" + p.replace("~", "~0").replace("/", "~1") for p in parts)


class ContractBroken(AssertionError):
    """An answer the spec does not declare, or whose body breaks the declared schema."""


@dataclass
class SpecClient:
    """A generic client written against the spec, not against the app."""

    spec: dict[str, Any]
    http: TestClient
    token: str | None = None
    registry: Registry = field(init=False)
    operations: dict[str, tuple[str, str, dict[str, Any]]] = field(init=False)

    def __post_init__(self) -> None:
        resource = Resource.from_contents(self.spec, default_specification=DRAFT202012)
        self.registry = Registry().with_resource(SPEC_URI, resource)
        self.operations = {
            op["operationId"]: (path, method, op)
            for path, item in self.spec["paths"].items()
            for method, op in item.items()
            if method in METHODS
        }

    def validator(self, pointer: str) -> Draft202012Validator:
        """A 2020-12 validator for the schema at `pointer` in the spec; its $refs resolve there."""
        return Draft202012Validator(
            {"$ref": f"{SPEC_URI}#{pointer}"},
            registry=self.registry,
            format_checker=Draft202012Validator.FORMAT_CHECKER,
        )

    def component(self, name: str) -> Draft202012Validator:
        assert name in self.spec["components"]["schemas"], f"no schema {name} in the spec"
        return self.validator(_pointer("components", "schemas", name))

    def call(
        self,
        operation_id: str,
        params: dict[str, Any] | None = None,
        **send: Any,
    ) -> httpx.Response:
        """Call `operation_id` with `params` (path, query and header parameters by their
        declared names; each must be declared); `send` goes to the request (json=, data=).
        The answer is checked against the spec before it is returned."""
        path, method, op = self.operations[operation_id]
        declared = {p["name"]: p for p in op.get("parameters", [])}
        given = dict(params or {})
        unknown = set(given) - set(declared)
        assert not unknown, f"{operation_id} declares no parameter {sorted(unknown)}"
        missing = [n for n, p in declared.items() if p.get("required") and n not in given]
        assert not missing, f"{operation_id} requires {missing}"
        url, query, headers = path, {}, {}
        for name, value in given.items():
            where = declared[name]["in"]
            if where == "path":
                url = url.replace("{" + name + "}", str(value))
            elif where == "query":
                query[name] = value
            elif where == "header":
                headers[name] = str(value)
        if self.token is not None:
            headers["Authorization"] = f"Bearer {self.token}"
        response = self.http.request(method.upper(), url, params=query, headers=headers, **send)
        self.check(operation_id, response)
        return response

    def check(self, operation_id: str, response: httpx.Response) -> None:
        """The body validates against the schema declared for its status and content type."""
        path, method, op = self.operations[operation_id]
        status = str(response.status_code)
        responses = op["responses"]
        key = next((k for k in (status, status[0] + "XX", "default") if k in responses), None)
        if key is None:
            raise ContractBroken(f"{operation_id} answered {status}, which the spec does not "
                                 f"declare ({sorted(responses)})")  # fmt: skip
        content = responses[key].get("content")
        if not response.content:
            assert not content or response.status_code == 204, f"{operation_id}: empty body"
            return
        kind = response.headers.get("content-type", "").split(";")[0].strip()
        if not content or kind not in content:
            raise ContractBroken(f"{operation_id} answered {status} as {kind!r}; the spec "
                                 f"declares {sorted(content or {})}")  # fmt: skip
        pointer = _pointer("paths", path, method, "responses", key, "content", kind, "schema")
        errors = list(self.validator(pointer).iter_errors(response.json()))
        if errors:
            raise ContractBroken(f"{operation_id} {status}: " + "; ".join(
                f"{list(e.absolute_path)}: {e.message}" for e in errors[:5]))  # fmt: skip

    def log_in(self, username: str, password: str) -> None:
        answer = self.call("token", data={"username": username, "password": password})
        assert answer.status_code == 200, answer.text
        self.token = answer.json()["access_token"]


@dataclass
class Receiver:
    """A real HTTP server on a free port that records every POST and answers 200."""

    got: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    server: ThreadingHTTPServer | None = None

    def start(self) -> None:
        got = self.got

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                got.append((dict(self.headers.items()), self.rfile.read(
                    int(self.headers.get("Content-Length", "0")))))  # fmt: skip
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.server_address[1]}/anbu-events"


@dataclass
class Rig:
    database: Database
    clock: VirtualClock
    keyring: Keyring
    spec: dict[str, Any]
    http: TestClient
    manager: str
    admin: str
    residents: list[int]

    def client(self, username: str) -> SpecClient:
        made = SpecClient(self.spec, self.http)
        made.log_in(username, PASSWORD)
        return made


@pytest.fixture
def rig(database: Database, db_url: str, unique: str) -> Iterator[Rig]:
    """The real app over a fresh database: one dong, its care manager and admin, 3 residents."""
    with database.connection() as conn:
        registry.add_dong(conn, DONG, "청운효자동", "종로구")
        for role in ("manager", "admin"):
            registry.add_care_manager(
                conn, f"{role}{unique}", DONG, role, "+821000000001", PASSWORD, role=role
            )
        residents = [
            registry.add_resident(conn, f"home-{i}-{unique}", DONG, "주민", f"+82109999000{i}")
            for i in range(3)
        ]
    clock = VirtualClock(OPENED_AT)
    key = new_key()
    settings = Settings(
        database_url=db_url, session_secret=f"test-secret-{unique}", data_key=key,
        event_webhooks_allow_loopback=True,
    )  # fmt: skip
    alerts = AlertService(
        database, RecordingTelephony(), EscalationPolicy(), clock, "http://dashboard.test"
    )
    app = create_app(database, settings, alerts)
    with TestClient(app) as http:
        yield Rig(database, clock, Keyring.of(key), app.openapi(), http, f"manager{unique}",
                  f"admin{unique}", residents)  # fmt: skip


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    made = Receiver()
    made.start()
    yield made
    made.stop()


def _closed(schema: dict[str, Any], spec: dict[str, Any]) -> bool:
    """Whether a property's schema is an enum (through $ref and a nullable anyOf)."""
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        return _closed(spec["components"]["schemas"][name], spec)
    if "anyOf" in schema:
        branches = [s for s in schema["anyOf"] if s.get("type") != "null"]
        return bool(branches) and all(_closed(s, spec) for s in branches)
    return "enum" in schema


def test_the_spec_is_valid_openapi_3_1_with_stable_operation_ids(rig: Rig) -> None:
    spec = rig.spec
    assert spec["openapi"].startswith("3.1")
    validate_spec(spec)  # raises on an invalid document
    ids = [
        op.get("operationId")
        for item in spec["paths"].values()
        for method, op in item.items()
        if method in METHODS
    ]
    assert all(ids), "an operation without an operationId"
    assert [i for i, n in Counter(ids).items() if n > 1] == []
    assert {"token", "list_alerts", "get_alert", "acknowledge", "resolve", "create_webhook"} <= (
        set(ids)
    )
    # the closed vocabularies of the schemas this test reads are enums, as in the code
    schemas = spec["components"]["schemas"]
    for name, fields in {
        "AlertOut": ("severity", "state"),
        "AlertEventOut": ("from_state", "to_state"),
        "FeedEventOut": ("severity", "from_state", "to_state"),
        "WebhookOut": ("state", "paused_reason"),
    }.items():
        for name_of_field in fields:
            assert _closed(schemas[name]["properties"][name_of_field], spec), (
                f"{name}.{name_of_field} is not an enum"
            )


def test_paging_sees_every_alert_once(rig: Rig) -> None:
    made = {
        seed_alert(rig.database, rig.clock, resident, kind)
        for resident in rig.residents
        for kind in ("inactivity", "no_return")
    }
    client = rig.client(rig.manager)
    seen: list[int] = []
    cursor: str | None = None
    pages = 0
    while True:
        params: dict[str, Any] = {"limit": 4} | ({"cursor": cursor} if cursor else {})
        page = client.call("list_alerts", params)
        assert page.status_code == 200, page.text
        body = page.json()
        seen += [a["id"] for a in body["data"]]
        pages += 1
        if not body["has_more"]:
            assert body["next_cursor"] is None
            break
        cursor = body["next_cursor"]
        assert cursor
    assert pages == 2 and len(seen) == len(made) == 6
    assert sorted(seen) == sorted(made)  # every alert, once


def _verifies(secret: str, headers: dict[str, str], body: bytes) -> bool:
    """What a receiver does: HMAC-SHA256 of '<timestamp>.<body>' under its secret."""
    signed = headers["Anbu-Timestamp"].encode() + b"." + body
    expected = "v1=" + hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, headers["Anbu-Signature"])


def test_a_webhook_delivery_is_the_specs_feed_item_and_signed(rig: Rig, receiver: Receiver) -> None:
    admin = rig.client(rig.admin)
    made = admin.call("create_webhook", json={"url": receiver.url, "dongs": [DONG]})
    assert made.status_code == 201, made.text
    secret = made.json()["secret"]
    alert_id = seed_alert(rig.database, rig.clock, rig.residents[0], "inactivity")

    deliverer = WebhookDelivery(
        rig.database, rig.clock, rig.keyring, allow_loopback=True, timeout_s=5.0,
        rng=random.Random(7),
    )  # fmt: skip
    for _ in range(10):  # one event per subscription and pass, each after the last one's 2xx
        if deliverer.run_once().delivered == 0:
            break
    assert receiver.got, "nothing was delivered"
    item = admin.component("FeedEventOut")
    for headers, body in receiver.got:
        errors = [e.message for e in item.iter_errors(json.loads(body))]
        assert errors == [], errors
        assert _verifies(secret, headers, body)
        assert not _verifies(secret + "x", headers, body)
    first = json.loads(receiver.got[0][1])
    assert first["alert_id"] == alert_id and first["to_state"] == "open"
    assert not item.is_valid({**first, "severity": "loud"})  # the schema does hold something

    listed = admin.call("webhook_deliveries", {"webhook_id": made.json()["id"]})
    assert listed.status_code == 200 and len(listed.json()["data"]) == len(receiver.got)


def test_a_stale_if_match_is_412_as_declared(rig: Rig) -> None:
    alert_id = seed_alert(rig.database, rig.clock, rig.residents[0], "inactivity")
    client = rig.client(rig.manager)
    read = client.call("get_alert", {"alert_id": alert_id})
    assert read.status_code == 200, read.text
    tag = read.headers["ETag"]
    assert tag == f'"{read.json()["version"]}"'

    taken = client.call(
        "acknowledge", {"alert_id": alert_id, "If-Match": tag}, json={"note": "방문 예정"}
    )
    assert taken.status_code == 200, taken.text
    assert taken.headers["ETag"] != tag

    stale = client.call(
        "resolve", {"alert_id": alert_id, "If-Match": tag}, json={"outcome": "visited_ok"}
    )
    assert stale.status_code == 412, stale.text
    assert stale.headers["content-type"].startswith("application/problem+json")
    problem = stale.json()
    assert problem["code"] == "changed" and problem["state"] == "acknowledged"
    assert stale.headers["ETag"] == f'"{problem["version"]}"' == taken.headers["ETag"]
    # the 412 is declared as its own answer, not only under 4XX
    assert "412" in client.operations["resolve"][2]["responses"]
    again = client.call("acknowledge", {"alert_id": alert_id}, json={})  # taken already: 409
    assert again.status_code == 409 and again.json()["state"] == "acknowledged"


def test_errors_are_problem_details_as_declared(rig: Rig) -> None:
    client = rig.client(rig.manager)
    missing = client.call("get_alert", {"alert_id": 2_000_000_000})
    assert missing.status_code == 404
    problem = missing.json()
    assert missing.headers["content-type"].startswith("application/problem+json")
    assert problem["type"] == "urn:anbu:problem:not_found" and problem["status"] == 404
    assert problem["code"] == "not_found" and problem["detail"] and problem["detail_en"]
    assert problem["title"] == "Not Found"

    invalid = client.call("list_alerts", {"limit": 0})
    assert invalid.status_code == 422
    problem = invalid.json()
    assert problem["code"] == "invalid" and problem["status"] == 422
    assert [e["loc"] for e in problem["errors"]] == [["query", "limit"]]

    # an undeclared answer, or a body off its schema, breaks the contract: the client says so
    anonymous = SpecClient(rig.spec, rig.http)
    refused = anonymous.call("me")  # 401: declared through 4XX, as a problem
    assert refused.status_code == 401 and refused.json()["code"] == "unauthenticated"
    with pytest.raises(ContractBroken):
        anonymous.check("me", httpx.Response(418, json={"detail": "teapot"}))
