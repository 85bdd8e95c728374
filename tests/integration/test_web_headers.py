"""Every answer of the web app, on every route, carries the security headers; no page or template
has an inline script, event handler or style, so the Content-Security-Policy can forbid them."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import pytest

from dashboards import queue_feed
from dashboards.edge import CONTENT_SECURITY_POLICY
from tests.integration.dashboard_support import town
from tests.integration.web_edge_support import Edge, edge, fill, routes

__all__ = ["edge", "town"]  # the fixtures

TEMPLATES = Path(__file__).parents[2] / "dashboards" / "templates"
STATIC = Path(__file__).parents[2] / "dashboards" / "static"
INLINE_SCRIPT = re.compile(r"<script(?![^>]*\bsrc=)[^>]*>", re.IGNORECASE)
HANDLER = re.compile(r"\son[a-z]+\s*=", re.IGNORECASE)
STYLE_ATTRIBUTE = re.compile(r"\sstyle\s*=", re.IGNORECASE)
STYLE_ELEMENT = re.compile(r"<style[\s>]", re.IGNORECASE)
JS_URL = re.compile(r"""(href|src|action)\s*=\s*["']?\s*javascript:""", re.IGNORECASE)


def directives(policy: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for part in policy.split(";"):
        words = part.split()
        if words:
            out[words[0]] = words[1:]
    return out


def assert_secured(response: httpx.Response, what: str) -> None:
    h = response.headers
    csp = directives(h.get("content-security-policy", ""))
    assert csp.get("default-src") == ["'self'"], what
    for directive in ("script-src", "style-src"):
        sources = csp.get(directive, [])
        assert sources and sources[0] == "'self'", (what, directive)
        assert not {"'unsafe-inline'", "'unsafe-eval'", "*", "data:"} & set(sources), what
    assert csp.get("frame-ancestors") == ["'none'"], what
    assert csp.get("base-uri") == ["'none'"], what
    assert csp.get("form-action") == ["'self'"], what
    assert csp.get("object-src") == ["'none'"], what
    assert h.get("strict-transport-security", "").startswith("max-age="), what
    assert int(h["strict-transport-security"].split(";")[0].split("=")[1]) >= 15552000, what
    assert h.get("x-frame-options") == "DENY", what
    assert h.get("x-content-type-options") == "nosniff", what
    assert h.get("referrer-policy") == "no-referrer", what
    if not response.request.url.path.startswith("/static/"):
        assert h.get("cache-control") == "no-store", what


def assert_no_inline_code(html: str, what: str) -> None:
    for name, pattern in (
        ("inline <script>", INLINE_SCRIPT),
        ("event handler attribute", HANDLER),
        ("style attribute", STYLE_ATTRIBUTE),
        ("<style> element", STYLE_ELEMENT),
        ("javascript: URL", JS_URL),
    ):
        found = pattern.search(html)
        assert found is None, f"{what}: {name} at {html[max(found.start() - 40, 0) :][:120]!r}"


def test_the_policy_is_the_strict_one() -> None:
    policy = directives(CONTENT_SECURITY_POLICY)
    assert policy["script-src"] == ["'self'"]
    assert policy["style-src"] == ["'self'"]
    assert policy["img-src"] == ["'self'", "data:"]


@pytest.fixture(autouse=True)
def _short_streams(monkeypatch: pytest.MonkeyPatch) -> None:
    """The care queue's stream (GET /alerts/events) ends at once here: a TestClient reads
    every answer to its end."""
    monkeypatch.setattr(queue_feed, "STREAM_LIFE_S", 0.0)


@pytest.mark.parametrize("who", [None, "a"])
def test_every_route_answers_with_the_security_headers(edge: Edge, who: str | None) -> None:
    """GET every route (pages, API, metrics, docs, static), logged in or not, and send every
    write route an empty request: whatever the status, the headers are there."""
    client = edge.client(who)
    seen = routes(edge.app)
    assert ("GET", "/alerts") in seen and ("POST", "/twilio/status/{call_id}") in seen
    assert ("GET", "/metrics") in seen and ("GET", "/api/v1/alerts") in seen
    statuses: dict[str, int] = {}
    for method, template in seen:
        path = fill(template, edge.ids())
        response = client.request(method, path, follow_redirects=False)
        what = f"{method} {path} ({who or 'nobody'}) -> {response.status_code}"
        assert response.status_code < 500, what
        assert_secured(response, what)
        statuses[f"{method} {template}"] = response.status_code
        if response.headers.get("content-type", "").startswith("text/html"):
            assert_no_inline_code(response.text, what)
    if who is None:  # the pages sent nobody to log in; the API and metrics refused
        assert statuses["GET /alerts"] == 303
        assert statuses["GET /api/v1/alerts"] == 401
        assert statuses["GET /metrics"] == 401
    else:
        assert statuses["GET /alerts"] == statuses["GET /residents/{resident_id}"] == 200
    # and the refusals made by the edge itself
    too_big = client.post("/api/v1/token", content=b"x" * (edge.settings.web_max_body_bytes + 1))
    assert too_big.status_code == 413
    assert_secured(too_big, "413")


def test_the_pages_keep_working_without_inline_code(edge: Edge) -> None:
    """The alert queue still refreshes itself (a meta refresh, no script), forms still post."""
    client = edge.client("a")
    queue = client.get("/alerts")
    assert re.search(r'<meta http-equiv="refresh" content="\d+">', queue.text)
    assert '<link rel="stylesheet" href="/static/style.css">' in queue.text
    assert client.get("/static/style.css").status_code == 200
    docs = client.get("/docs")
    assert docs.status_code == 200
    assert '<a href="/openapi.json">' in docs.text and "/api/v1/token" in docs.text
    assert_no_inline_code(docs.text, "/docs")


@pytest.mark.parametrize("template", sorted(p.name for p in TEMPLATES.glob("*.html")))
def test_no_template_has_inline_code(template: str) -> None:
    assert_no_inline_code((TEMPLATES / template).read_text(encoding="utf-8"), template)


def test_the_check_finds_inline_code() -> None:
    """The patterns above catch what they must (so a pass means something)."""
    for bad in (
        "<script>alert(1)</script>",
        '<SCRIPT type="module">x()</SCRIPT>',
        '<button onclick="go()">',
        '<body onload = "x()">',
        '<td style="color:red">',
        "<style>p{}</style>",
        '<a href="javascript:alert(1)">',
    ):
        with pytest.raises(AssertionError):
            assert_no_inline_code(bad, "sample")
    assert_no_inline_code('<script src="/static/docs.js"></script><p class="onward">', "good")
    assert any(STATIC.glob("*.js")) and any(STATIC.glob("*.css"))
