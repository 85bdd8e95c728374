"""The resident card's week grid in Chromium with an outing, a night's activity and today's
hours on it: axe-core finds no serious or critical violation at desk or phone size, and the
marks read as words, not colour alone."""

from __future__ import annotations

import pytest

from core.db import Database
from tests.browser.conftest import ARTIFACTS, Browser
from tests.browser.test_accessibility import _violations
from tests.browser.test_care_queue import log_in
from tests.integration.dashboard_support import Town
from tests.integration.test_week_grid import FULL, _home, _outing_day, _store, kst

pytestmark = pytest.mark.browser


@pytest.mark.parametrize("width,height", [(360, 740), (1366, 900)], ids=["phone", "desk"])
def test_the_week_grid_with_its_marks_passes_axe(
    browser: Browser, served: str, town: Town, database: Database, unique: str,
    width: int, height: int,
) -> None:  # fmt: skip
    rid, gw = _home(database, unique, "grid", FULL)
    night = [(kst(21, 3, 5), "pir-living", "motion", 1.0),
             (kst(21, 3, 6), "pir-living", "motion", 0.0),
             (kst(22, 9, 5), "pir-living", "motion", 1.0)]  # fmt: skip
    _store(database, gw, [*_outing_day(), *night], kst(22, 9, 10))
    context = browser.new_context(served, width=width, height=height, bypass_csp=True)
    page = context.new_page()
    log_in(page, served, town.username_a)
    page.goto(f"{served}/residents/{rid}")
    out = page.locator('td[data-hour="2026-11-21T11"]')
    # the words behind the pattern: no reading that hour, and out most of it
    assert out.inner_text().split() == ["기록", "없음", "외출", "추정", "60분"]
    assert page.locator('td[data-hour="2026-11-21T03"]').get_attribute("class") == (
        "a0 night night-active"
    )
    assert page.locator('td[data-hour="2026-11-22T09"]').get_attribute("data-activity") == "1"
    ARTIFACTS.mkdir(parents=True, exist_ok=True)  # the grid and its key, as a test artifact
    page.locator("table.week").screenshot(path=str(ARTIFACTS / f"resident-week-{width}.png"))
    page.locator("ul.week-legend").screenshot(path=str(ARTIFACTS / f"week-key-{width}.png"))
    bad = _violations(page)
    context.close()
    assert bad == [], bad
