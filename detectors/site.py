"""Site incidents: many gateways going offline within minutes is one incident, not many alerts.

A power cut, a broker or a network outage takes whole neighbourhoods offline at once. The
detector looks, among the gateways offline right now, for the densest burst of gateways that
went offline within `window_s` of each other: the burst is a site outage when it holds at least
`min_gateways` gateways anywhere, or at least `dong_fraction` of one dong's gateways (and at
least `min_dong_gateways` of them). Pure and clock-injected; the health sweep stores the
incident in `anbu.incidents` and holds back the per-home findings of the gateways it covers.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

KIND = "site_outage"


@dataclass(frozen=True, slots=True)
class SitePolicy:
    """When a burst of gateways going offline is a site outage."""

    window_s: float = 300.0
    min_gateways: int = 20
    dong_fraction: float = 0.3
    min_dong_gateways: int = 3

    def __post_init__(self) -> None:
        if self.window_s <= 0 or self.min_gateways < 2 or self.min_dong_gateways < 2:
            raise ValueError("site policy: window > 0, at least two gateways")
        if not 0 < self.dong_fraction <= 1:
            raise ValueError("site policy: dong_fraction in (0, 1]")


@dataclass(frozen=True, slots=True)
class OfflineEvent:
    """A gateway offline now, its dong, and when it went offline."""

    gateway: str
    dong: str
    went_offline_at: datetime


@dataclass(frozen=True, slots=True)
class SiteIncident:
    """One site outage: the gateways in it, their dongs, and a reason people can read."""

    started_at: datetime
    gateways: tuple[str, ...]
    dong_codes: tuple[str, ...]
    reason_ko: str
    reason_en: str


def detect_site_outage(
    offline_events: Sequence[OfflineEvent | tuple[str, str, datetime]],
    now: datetime,
    policy: SitePolicy,
    dong_gateways: Mapping[str, int] | None = None,
) -> SiteIncident | None:
    """The site outage among the gateways offline at `now`, or None.

    `dong_gateways` is how many gateways each dong has in all (for the fraction rule). Events
    after `now` are ignored (strictly causal). The incident's gateways are the qualifying
    burst plus every gateway that went offline after the burst began (a power cut spreads),
    within the qualifying dongs when only the fraction rule held.
    """
    events = sorted(
        (e if isinstance(e, OfflineEvent) else OfflineEvent(*e) for e in offline_events),
        key=lambda e: (e.went_offline_at, e.gateway),
    )
    events = [e for e in events if e.went_offline_at <= now]
    totals = dong_gateways or {}
    window = timedelta(seconds=policy.window_s)
    start: datetime | None = None
    scope: frozenset[str] | None = None
    lo = 0
    for hi, event in enumerate(events):
        while events[lo].went_offline_at < event.went_offline_at - window:
            lo += 1
        burst = events[lo : hi + 1]
        found, scope = _qualifies(burst, totals, policy)
        if found:
            start = burst[0].went_offline_at
            break
    if start is None:
        return None
    members = [
        e for e in events if e.went_offline_at >= start and (scope is None or e.dong in scope)
    ]
    gateways = tuple(sorted({e.gateway for e in members}))
    dongs = tuple(sorted({e.dong for e in members}))
    minutes = max(1, round((members[-1].went_offline_at - start).total_seconds() / 60))
    ko = (f"게이트웨이 {len(gateways)}대가 {minutes}분 사이에 끊겼습니다 (동 {len(dongs)}곳): "
          "정전이나 통신 장애로 보입니다. 가구별 알림은 보류합니다")  # fmt: skip
    en = (f"{len(gateways)} gateways went offline within {minutes} min ({len(dongs)} dongs): "
          "likely a power or network outage; per-home alerts are held")  # fmt: skip
    return SiteIncident(start, gateways, dongs, ko, en)


def _qualifies(
    burst: Sequence[OfflineEvent], totals: Mapping[str, int], policy: SitePolicy
) -> tuple[bool, frozenset[str] | None]:
    """Whether the burst is an outage, and its scope: None = anywhere, else these dongs."""
    if len({e.gateway for e in burst}) >= policy.min_gateways:
        return True, None
    per_dong: dict[str, set[str]] = {}
    for e in burst:
        per_dong.setdefault(e.dong, set()).add(e.gateway)
    dongs = frozenset(
        dong
        for dong, gateways in per_dong.items()
        if totals.get(dong, 0)
        and len(gateways) >= policy.min_dong_gateways
        and len(gateways) >= policy.dong_fraction * totals[dong]
    )
    return bool(dongs), dongs
