"""axe-core (from the npm registry; scripts/browser-deps.sh installs it) on every page a care
manager's menu reaches, an alert's page and a resident's card, at desk and phone sizes: no
violation of serious or critical impact. The pages' CSP allows no injected script, so this
test's browser context alone bypasses it (the other browser tests keep it)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.browser.conftest import Browser, axe_script
from tests.browser.test_care_queue import log_in
from tests.browser.test_phone_layout import _pages
from tests.integration.dashboard_support import Town

pytestmark = pytest.mark.browser

RUN = """() => axe.run(document, {resultTypes: ['violations']}).then(r => r.violations
    .filter(v => v.impact === 'serious' || v.impact === 'critical')
    .map(v => v.id + ' (' + v.impact + '): ' + v.nodes.slice(0, 3).map(n => n.target.join(' ')).join(' | ')))"""


def _violations(page: Any) -> list[str]:
    page.add_script_tag(path=str(axe_script()))
    return list(page.evaluate(RUN))


@pytest.mark.parametrize("width,height", [(360, 740), (1366, 900)], ids=["phone", "desk"])
def test_no_serious_or_critical_accessibility_violation_on_any_page(
    browser: Browser, served: str, town: Town, width: int, height: int
) -> None:
    context = browser.new_context(served, width=width, height=height, bypass_csp=True)
    page = context.new_page()
    log_in(page, served, town.username_a)
    found: dict[str, list[str]] = {}
    for path in [*_pages(page, served, town), "/login"]:
        if path == "/login":
            context.clear_cookies()
        page.goto(f"{served}{path}")
        bad = _violations(page)
        if bad:
            found[path] = bad
    context.close()
    assert found == {}, found
