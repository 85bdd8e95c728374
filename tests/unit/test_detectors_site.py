"""Site outage detection: a burst of gateways offline is one incident; scattered ones are not."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from detectors.site import OfflineEvent, SitePolicy, detect_site_outage

NOW = datetime(2026, 11, 24, 3, 0, tzinfo=UTC)
POLICY = SitePolicy()


def _burst(n: int, dong: str, start: datetime, step_s: float) -> list[OfflineEvent]:
    return [
        OfflineEvent(f"{dong}-gw{i}", dong, start + timedelta(seconds=i * step_s)) for i in range(n)
    ]


def test_twenty_gateways_within_minutes_are_one_incident() -> None:
    events = _burst(12, "A", NOW - timedelta(minutes=10), 10) + _burst(
        10, "B", NOW - timedelta(minutes=9), 10
    )
    incident = detect_site_outage(events, NOW, POLICY)
    assert incident is not None
    assert len(incident.gateways) == 22
    assert incident.dong_codes == ("A", "B")
    assert incident.started_at == NOW - timedelta(minutes=10)
    assert "게이트웨이 22대" in incident.reason_ko and "22 gateways" in incident.reason_en


def test_scattered_failures_are_not_an_incident() -> None:
    events = _burst(40, "A", NOW - timedelta(hours=20), 1800)  # one every half hour
    assert detect_site_outage(events, NOW, POLICY) is None
    assert detect_site_outage([], NOW, POLICY) is None


def test_a_third_of_one_dong_is_an_incident_of_that_dong_only() -> None:
    events = _burst(4, "A", NOW - timedelta(minutes=3), 20)
    stray = OfflineEvent("B-gw", "B", NOW - timedelta(minutes=1))
    assert detect_site_outage(events, NOW, POLICY) is None  # no totals: only the global rule
    incident = detect_site_outage([*events, stray], NOW, POLICY, {"A": 10, "B": 50})
    assert incident is not None
    assert incident.dong_codes == ("A",)
    assert "B-gw" not in incident.gateways
    assert detect_site_outage(events, NOW, POLICY, {"A": 100}) is None  # 4 % of the dong


def test_future_events_are_ignored_and_order_does_not_matter() -> None:
    events = _burst(25, "A", NOW + timedelta(minutes=1), 5)
    assert detect_site_outage(events, NOW, POLICY) is None
    past = _burst(25, "A", NOW - timedelta(minutes=4), 5)
    a = detect_site_outage(past, NOW, POLICY)
    b = detect_site_outage(list(reversed(past)) + past[:3], NOW, POLICY)
    assert a == b and a is not None


def test_tuples_are_accepted() -> None:
    events = [(f"gw{i}", "A", NOW - timedelta(seconds=i)) for i in range(20)]
    incident = detect_site_outage(events, NOW, POLICY)
    assert incident is not None and len(incident.gateways) == 20


def test_policy_is_checked() -> None:
    with pytest.raises(ValueError, match="window > 0"):
        SitePolicy(window_s=0)
    with pytest.raises(ValueError, match=r"dong_fraction in \(0, 1\]"):
        SitePolicy(dong_fraction=1.5)
