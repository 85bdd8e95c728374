"""Bad input on every write route of the web app (pages, API, Twilio webhooks): oversized bodies
(announced, chunked, lying about their length), malformed JSON, wrong content types, another
dong's ids, replayed webhooks. Each gets a clear 4xx, nothing in the database changes, and no
body reaches the logs."""

from __future__ import annotations

import logging
import re
import socket
from collections.abc import Iterator
from datetime import timedelta
from typing import Any
from urllib.parse import urlencode

import pytest
from fastapi.testclient import TestClient
from twilio.request_validator import RequestValidator

from core.db import Database
from simulators.servers import free_port
from tests.calls_support import WebServer
from tests.integration.dashboard_support import OPENED_AT, PASSWORD_A, PASSWORD_B, csrf_of, town
from tests.integration.web_edge_support import (
    AUTH_TOKEN,
    BASE_URL,
    MAX_BODY,
    Edge,
    edge,
    fill,
    routes,
    snapshot,
)

__all__ = ["edge", "town"]  # the fixtures

WRITES = frozenset({"POST", "PUT", "PATCH", "DELETE"})
# Writes that read no body (a bearer token's logout): only the size cap concerns them; any
# other body is rightly ignored.
BODYLESS = frozenset({"/api/v1/logout"})
MARKER = "BODY-MARKER-3c9e"  # in every bad body: it must never be logged
UNTIL = (OPENED_AT + timedelta(days=3)).isoformat()
# A well-formed body for each API write (what another dong's care manager would send).
VALID: dict[str, dict[str, Any]] = {
    "/api/v1/alerts/{alert_id}/acknowledge": {"note": MARKER},
    "/api/v1/alerts/{alert_id}/resolve": {"outcome": "visited_ok", "note": MARKER},
    "/api/v1/residents/{resident_id}/status": {"status": "away", "until": UNTIL},
    "/api/v1/residents/{resident_id}/quiet-hours": {"start": "22:00", "end": "07:00"},
    "/api/v1/residents/{resident_id}/levels": {
        "watch_h_max": 8,
        "warning_h_max": 10,
        "critical_h_max": 20,
    },
    "/api/v1/gateways/{gateway_id}/devices": {"device": MARKER, "kind": "door", "room": "living"},
}
# Form bodies for the pages (another dong's care manager, with a valid CSRF token).
PAGE_FORMS: dict[str, dict[str, str]] = {
    "/alerts/{alert_id}/acknowledge": {"note": MARKER},
    "/alerts/{alert_id}/resolve": {"outcome": "visited_ok", "note": MARKER},
    "/residents/{resident_id}/status": {"status": "away", "until": UNTIL[:16]},
}


def write_routes(edge: Edge) -> list[tuple[str, str]]:
    found = [(m, p) for m, p in routes(edge.app) if m in WRITES]
    assert ("POST", "/api/v1/token") in found and ("POST", "/login") in found
    assert ("POST", "/twilio/gather/{call_id}") in found
    return found


def bad_bodies() -> Iterator[tuple[str, dict[str, Any], int | None]]:
    """(what, request arguments, the status it must get; None: any 4xx)."""
    big = ('{"note": "' + MARKER + "x" * MAX_BODY + '"}').encode()
    yield "oversized", {"content": big, "headers": {"content-type": "application/json"}}, 413

    def chunks() -> Iterator[bytes]:
        yield MARKER.encode()
        for _ in range(MAX_BODY // 1024 + 1):
            yield b"y" * 1024

    yield "chunked, no length", {"content": chunks()}, 413
    yield (
        "lying length",
        {"content": MARKER.encode() + b"z" * MAX_BODY, "headers": {"content-length": "10"}},
        413,
    )
    yield "bad length", {"content": b"{}", "headers": {"content-length": "-1"}}, 413
    yield (
        "malformed JSON",
        {
            "content": ('{"note": "' + MARKER).encode(),
            "headers": {"content-type": "application/json"},
        },
        None,
    )
    yield (
        "JSON nested too deep",
        {
            "content": b"[" * 50000 + MARKER.encode(),
            "headers": {"content-type": "application/json"},
        },
        None,
    )
    yield (
        "JSON not an object",
        {"content": f'["{MARKER}"]'.encode(), "headers": {"content-type": "application/json"}},
        None,
    )
    yield (
        "wrong content type",
        {"content": f"<x>{MARKER}</x>".encode(), "headers": {"content-type": "text/xml"}},
        None,
    )
    yield (
        "broken form",
        {
            "content": f"note=%ZZ{MARKER}&&=%%".encode(),
            "headers": {"content-type": "application/x-www-form-urlencoded"},
        },
        None,
    )
    yield (
        "broken multipart",
        {
            "content": f"--b\r\n{MARKER}".encode(),
            "headers": {"content-type": "multipart/form-data; boundary=b"},
        },
        None,
    )


@pytest.fixture
def logs(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.DEBUG)
    return caplog


def logged(caplog: pytest.LogCaptureFixture) -> str:
    """Every captured record with all its extra fields."""
    return "\n".join(f"{r.getMessage()} {r.__dict__!r}" for r in caplog.records)


def test_every_write_route_refuses_bad_bodies_and_changes_nothing(
    edge: Edge, database: Database, logs: pytest.LogCaptureFixture
) -> None:
    clients = {
        "nobody": edge.client(None),
        "dong B (page)": edge.client("b"),
        "dong B (token)": edge.client("b", "api"),
        "dong A (token)": edge.client("a", "api"),
    }
    clients["dong A (page)"] = edge.client("a")
    # the manager's page session sends its CSRF token as the API asks (header) on every request
    page_a = clients["dong A (page)"]
    page_a.headers["x-csrf-token"] = csrf_of(page_a.get("/alerts").text)
    before = snapshot(database)
    tried = 0
    for method, template in write_routes(edge):
        path = fill(template, edge.ids())
        for who, client in clients.items():
            for what, kwargs, expected in bad_bodies():
                if template in BODYLESS and expected is None:
                    continue
                response = client.request(method, path, follow_redirects=False, **kwargs)
                status = response.status_code
                case = f"{method} {path} as {who}, {what}: {status} {response.text[:200]}"
                if status == 303 and "page" not in who:  # a page without a session: log in first
                    assert response.headers["location"].startswith("/login"), case
                else:
                    assert 400 <= status < 500, case
                if expected is not None:
                    assert status == expected, case
                    assert "입력한 내용이 너무 깁니다" in response.text, case
                    assert MARKER not in response.text, case
                assert MARKER not in response.headers.get("location", ""), case
                tried += 1
    assert tried >= 10 * 5 * 10
    assert snapshot(database) == before
    text = logged(logs)
    for secret in (MARKER, PASSWORD_A, PASSWORD_B):
        assert secret not in text


def test_a_page_form_too_large_is_a_korean_page(edge: Edge) -> None:
    client = edge.client("a")
    token = csrf_of(client.get("/alerts").text)
    response = client.post(
        f"/alerts/{edge.town.alert_id}/acknowledge",
        data={"csrf_token": token, "note": "x" * (MAX_BODY + 1)},
    )
    assert response.status_code == 413
    assert response.headers["content-type"].startswith("text/html")
    assert "입력한 내용이 너무 깁니다" in response.text
    assert response.text.index("입력한 내용") < response.text.index("too large")


def test_another_dongs_ids_are_404_and_change_nothing(
    edge: Edge, database: Database, logs: pytest.LogCaptureFixture
) -> None:
    """Dong B's care manager, well-formed requests, dong A's alert, resident and gateway."""
    api = edge.client("b", "api")
    page = edge.client("b")
    token = csrf_of(page.get("/alerts").text)
    before = snapshot(database)
    for template, body in VALID.items():
        response = api.post(fill(template, edge.ids()), json=body)
        assert response.status_code == 404, (template, response.text)
        assert "detail" in response.json()
    for template, form in PAGE_FORMS.items():
        response = page.post(
            fill(template, edge.ids()), data={**form, "csrf_token": token}, follow_redirects=False
        )
        assert response.status_code == 404, (template, response.text[:300])
    for template in ("/api/v1/alerts/{alert_id}", "/api/v1/residents/{resident_id}/activity",
                     "/api/v1/gateways/{gateway_id}/devices"):  # fmt: skip
        assert api.get(fill(template, edge.ids())).status_code == 404, template
    assert snapshot(database) == before
    assert MARKER not in logged(logs)
    # and the same requests from dong A's own care manager do change things (so the 404s
    # above were about the dong)
    own = edge.client("a", "api")
    done = own.post(fill("/api/v1/alerts/{alert_id}/acknowledge", edge.ids()), json={})
    assert done.status_code == 200, done.text
    assert snapshot(database) != before


def sign(path: str, params: dict[str, str]) -> dict[str, str]:
    return {"X-Twilio-Signature": RequestValidator(AUTH_TOKEN).compute_signature(
        BASE_URL + path, params)}  # fmt: skip


def test_a_replayed_webhook_changes_nothing(
    edge: Edge, database: Database, logs: pytest.LogCaptureFixture
) -> None:
    client = TestClient(edge.app, base_url=BASE_URL)
    call = edge.call_id
    status_path = f"/twilio/status/{call}"
    ringing = {"CallSid": "CA" + "1" * 32, "CallStatus": "in-progress", "Note": MARKER}
    first = client.post(status_path, data=ringing, headers=sign(status_path, ringing))
    assert first.status_code == 204
    after_first = snapshot(database)
    again = client.post(status_path, data=ringing, headers=sign(status_path, ringing))
    assert again.status_code == 204
    assert snapshot(database) == after_first

    gather_path = f"/twilio/gather/{call}"
    pressed = {"CallSid": "CA" + "1" * 32, "Digits": "2", "Note": MARKER}
    answer = client.post(gather_path, data=pressed, headers=sign(gather_path, pressed))
    assert answer.status_code == 200 and answer.text.startswith("<?xml")
    after_answer = snapshot(database)
    assert after_answer != after_first  # the first one was taken
    for _ in range(3):
        replay = client.post(gather_path, data=pressed, headers=sign(gather_path, pressed))
        assert (replay.status_code, replay.text) == (200, answer.text)  # the same TwiML
    assert snapshot(database) == after_answer
    # a new, different report is still taken
    done = {"CallSid": "CA" + "1" * 32, "CallStatus": "completed"}
    assert client.post(status_path, data=done, headers=sign(status_path, done)).status_code == 204
    assert snapshot(database) != after_answer
    assert MARKER not in logged(logs)


def test_a_webhook_replayed_with_its_fields_reordered_changes_nothing(
    edge: Edge, database: Database
) -> None:
    """Twilio signs the sorted fields, so a reordered body carries the same valid signature: it
    is still the same request, answered as before; a field named twice is refused."""
    client = TestClient(edge.app, base_url=BASE_URL)
    path = f"/twilio/gather/{edge.call_id}"
    pressed = {"CallSid": "CA" + "3" * 32, "Digits": "2", "AccountSid": "AC" + "4" * 32}
    form = {"content-type": "application/x-www-form-urlencoded", **sign(path, pressed)}
    answer = client.post(path, content=urlencode(list(pressed.items())), headers=form)
    assert answer.status_code == 200
    after = snapshot(database)
    for order in (sorted(pressed.items()), sorted(pressed.items(), reverse=True)):
        replay = client.post(path, content=urlencode(order), headers=form)
        assert (replay.status_code, replay.text) == (200, answer.text)
    assert snapshot(database) == after
    twice = urlencode([*pressed.items(), ("Digits", "1")])
    signed = {**form, **sign(path, pressed | {"Digits": "2"})}
    assert client.post(path, content=twice, headers=signed).status_code in (400, 403)
    double = [("Digits", "2"), ("Digits", "2"), ("CallSid", pressed["CallSid"])]
    assert client.post(path, content=urlencode(double), headers=form).status_code in (400, 403)
    assert snapshot(database) == after


def test_the_docs_page_loads_nothing_from_another_site(edge: Edge) -> None:
    page = TestClient(edge.app).get("/docs")
    assert page.status_code == 200
    assert "/openapi.json" in page.text
    assert not re.search(r"<(script|link)[^>]+(src|href)=\"https?://", page.text), page.text
    assert "https://" not in page.headers["content-security-policy"]


def test_webhooks_check_the_signature_before_the_body(edge: Edge, database: Database) -> None:
    client = TestClient(edge.app, base_url=BASE_URL)
    path = f"/twilio/status/{edge.call_id}"
    params = {"CallSid": "CA" + "2" * 32, "CallStatus": "completed"}
    before = snapshot(database)
    # unsigned: 403 whatever the body, however unreadable
    for kwargs in ({"data": params}, {"content": b"%%\xff\xfe", "headers": {
            "content-type": "application/x-www-form-urlencoded"}}):  # fmt: skip
        assert client.post(path, **kwargs).status_code == 403  # type: ignore[arg-type]
    forged = {"X-Twilio-Signature": RequestValidator("another-token").compute_signature(
        BASE_URL + path, params)}  # fmt: skip
    assert client.post(path, data=params, headers=forged).status_code == 403
    # signed, but not a form, or unreadable, or too many fields: refused
    signed = sign(path, params)
    assert client.post(path, json=params, headers=signed).status_code == 415
    bad = {**signed, "content-type": "application/x-www-form-urlencoded"}
    assert client.post(path, content=b"CallSid=%FF%FE", headers=bad).status_code in (400, 403)
    many = "&".join(f"f{i}=1" for i in range(500)).encode()
    assert client.post(path, content=many, headers=bad).status_code == 400
    assert snapshot(database) == before


def test_a_real_server_cuts_a_chunked_body_without_length(edge: Edge, database: Database) -> None:
    """Over a socket to uvicorn: chunks past the cap, no Content-Length and no last chunk. The
    413 comes while the body is still open (a server reading to the end would wait forever)."""
    port = free_port()
    server = WebServer(edge.app, port)
    server.start()
    before = snapshot(database)
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            sock.sendall(
                b"POST /api/v1/token HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                b"Content-Type: application/x-www-form-urlencoded\r\n"
                b"Transfer-Encoding: chunked\r\n\r\n"
            )
            chunk = b"username=" + b"u" * 4087
            for _ in range(MAX_BODY // len(chunk) + 2):
                sock.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            answer = b""
            while b"\r\n\r\n" not in answer:
                more = sock.recv(65536)  # times out (10 s) if the server waits for more
                if not more:
                    break
                answer += more
        assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    finally:
        server.stop()
    assert snapshot(database) == before
