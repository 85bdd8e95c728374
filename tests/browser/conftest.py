"""Chromium for the browser tests: Debian's `chromium` package (scripts/system-deps.sh installs
it), driven by Playwright from PyPI. Playwright's own browser download is not reachable here,
so it is pointed at the system binary. A machine without either fails these tests, never skips
them: `make test` installs both.

Every page a test shoots is kept under .pytest-tmp/browser/ (the test run's artifacts).
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from simulators.servers import free_port
from tests.calls_support import WebServer
from tests.integration.dashboard_support import Town, town  # noqa: F401 - a fixture here

ARTIFACTS = Path(__file__).resolve().parents[2] / ".pytest-tmp" / "browser"
CHROMIUM_FLAGS = [
    "--no-sandbox",  # root in CI
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",  # this machine's closed network refuses its calls
    "--disable-component-update",
    "--disable-sync",
]


def chromium_binary() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    pytest.fail("Chromium is not installed: `make test` installs it (apt-get install chromium)")


@dataclass
class Browser:
    """One Chromium for the session; each test opens its own contexts (a fresh profile)."""

    chromium: Any

    def new_context(
        self, base: str, width: int = 1366, height: int = 900, bypass_csp: bool = False
    ) -> Any:
        return self.chromium.new_context(
            base_url=base,
            viewport={"width": width, "height": height},
            locale="ko-KR",
            timezone_id="Asia/Seoul",
            bypass_csp=bypass_csp,
        )


@pytest.fixture(scope="package")  # closed after tests/browser: Playwright's sync API keeps
def browser() -> Iterator[Browser]:  # an event loop running, which asyncio.run() refuses
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail("playwright is not installed: `make test` installs it (pip, the test extra)")
    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=chromium_binary(), args=CHROMIUM_FLAGS)
        try:
            yield Browser(chromium)
        finally:
            chromium.close()


@pytest.fixture
def served(town: Town) -> Iterator[str]:  # noqa: F811 - the fixture imported above
    """The town's app in a real uvicorn server; its base URL."""
    port = free_port()
    server = WebServer(town.app, port)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


def until(page: Any, expression: str, timeout: float = 15.0) -> None:
    """Wait until `expression` is true in the page. Evaluated afresh from here each time:
    Playwright's own wait_for_function polls inside the page with eval, which the pages'
    CSP (script-src 'self') rightly refuses."""
    deadline = time.monotonic() + timeout
    while not page.evaluate(expression):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {expression!r} in the page")
        time.sleep(0.05)


AXE_HOME = Path(__file__).resolve().parents[2] / ".browser-deps"


def axe_script() -> Path:
    """axe-core's script, installed from the npm registry by scripts/browser-deps.sh."""
    found = AXE_HOME / "node_modules" / "axe-core" / "axe.min.js"
    if not found.exists():
        pytest.fail("axe-core is not installed: `make test` installs it (npm, browser-deps)")
    return found


def shot(page: Any, name: str) -> Path:
    """Keep a screenshot of the whole page as a test artifact."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path
