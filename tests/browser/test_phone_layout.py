"""Every page a care manager's menu reaches, and an alert and a resident's page, at a phone's
360 px and a desk's 1366 px in Chromium: nothing wider than the screen (a table may scroll
inside itself, the page never sideways), the menu's links, the buttons and the queue's links
at least 44 px tall, the care queue as cards. Each page is kept as a screenshot at both sizes.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.browser.conftest import Browser, shot
from tests.browser.test_care_queue import log_in
from tests.integration.dashboard_support import Town

pytestmark = pytest.mark.browser

TAPPABLE = "header nav a, header nav button, main button:visible, table.alerts td a"


def _pages(page: Any, base: str, town: Town) -> list[str]:
    """The menu's pages (not the language switch), an alert's and a resident's."""
    page.goto(f"{base}/alerts")
    found = page.eval_on_selector_all(
        "header nav a[href^='/']", "links => links.map(a => a.getAttribute('href'))"
    )
    menu = [h for h in found if "lang=" not in h]
    assert "/alerts" in menu and "/residents" in menu
    return [*menu, f"/alerts/{town.alert_id}", f"/residents/{town.resident_id}"]


def _too_small(page: Any) -> list[str]:
    small = []
    for handle in page.query_selector_all(TAPPABLE):
        box = handle.bounding_box()
        if box is not None and box["height"] < 44:
            small.append(f"{handle.text_content()!r} {box['height']:.0f} px")
    return small


@pytest.mark.parametrize("width,height", [(360, 740), (1366, 900)], ids=["phone", "desk"])
def test_every_page_fits_the_screen_with_thumb_sized_targets(
    browser: Browser, served: str, town: Town, width: int, height: int
) -> None:
    context = browser.new_context(served, width=width, height=height)
    page = context.new_page()
    log_in(page, served, town.username_a)
    for path in _pages(page, served, town):
        page.goto(f"{served}{path}")
        wide = page.evaluate("document.documentElement.scrollWidth")
        assert wide <= width, f"{path}: the page is {wide} px wide on a {width} px screen"
        if width < 640:
            assert _too_small(page) == [], f"{path}: tap targets under 44 px"
        name = path.strip("/").replace("/", "-") or "home"
        shot(page, f"{name}-{'phone' if width < 640 else 'desk'}")
    if width < 640:
        page.goto(f"{served}/alerts")
        shown = page.evaluate(  # one evaluation: the page may swap the queue in meanwhile
            "getComputedStyle(document.querySelector('table.alerts tr[data-alert]')).display"
        )
        assert shown == "grid"  # a card, not a squeezed table row
    context.close()
