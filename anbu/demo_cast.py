"""The demo town's cast and narrator: who plays which scenario, the findings each must raise,
and the story told as the database shows it happening (readings, findings, site incidents,
alerts, calls, notifications). Wired by anbu.demo.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import psycopg
from rich.console import Console

from core.clock import VirtualClock
from core.db import Database
from core.domain import Severity
from detectors.routine import RoutinePolicy
from detectors.site import KIND as SITE_OUTAGE
from detectors.site import SitePolicy
from simulators.routines import (
    HomeSpec,
    Scenario,
    gateway_offline,
    leaves_home,
    presses_alarm_test,
    presses_button,
    sleeps_in,
    stops_moving,
)
from simulators.town import DONGS, Town, local_midnight


@dataclass(frozen=True, slots=True)
class Expect:
    """A finding the demo must show: its kind, for which home (None: the site), and the story."""

    kind: str
    home: str | None
    story: str


@dataclass
class Cast:
    """Who plays which scenario in the town, and the findings their scenarios must raise."""

    scenarios: list[Scenario]
    expected: list[Expect]
    sleepers: list[str]  # who may sleep in: one whose learned routine has a wake time
    absent: list[Expect] = dataclasses.field(default_factory=list)  # must not be raised

    @classmethod
    def of(cls, town: Town, specs: list[HomeSpec], dongs: list[str], start: datetime) -> Cast:
        """Roles by dong: residents in the first (청운효자동, the demo login's), gateways in the
        second (사직동), whose every gateway the power cut takes down."""
        first = [h.home for h in specs if h.dong_code == dongs[0]]
        second = [h.home for h in specs if h.dong_code == dongs[1]]
        scenarios: list[Scenario] = []
        expected: list[Expect] = []
        fall = start + timedelta(hours=4, minutes=30)  # mid-morning
        scenarios.append(stops_moving(first[0], fall))
        expected.append(
            Expect("inactivity", first[0], f"stops moving at {fall:%H:%M} and does not answer")
        )
        if second:
            outage = start + timedelta(hours=3)
            scenarios.append(gateway_offline(second[0], outage, outage + timedelta(hours=2)))
            expected.append(
                Expect("gateway_offline", second[0], f"gateway offline at {outage:%H:%M} for 2 h")
            )
        if len(first) >= 3:  # out yesterday morning through the front door, not back
            yesterday = local_midnight(start - timedelta(days=1))
            wake = town.habits(first[2]).wake_hour
            leave = (yesterday + timedelta(hours=wake + 2.5)).replace(second=0, microsecond=0)
            scenarios.append(leaves_home(first[2], leave))
            expected.append(
                Expect("not_back", first[2], f"went out yesterday at {leave:%H:%M}, not back")
            )
        if len(second) >= SitePolicy().min_dong_gateways:  # a power cut: the whole dong
            cut = start + timedelta(hours=8)
            # three hours: 5.4 s at x2000, so that the health sweep (every real second, slower
            # on a loaded host) sees the dong down more than once before the power comes back
            for i, home in enumerate(second):
                at = cut + timedelta(seconds=15 * i)
                scenarios.append(gateway_offline(home, at, cut + timedelta(hours=3)))
            name = DONGS.get(dongs[1], (dongs[1], ""))[0]
            expected.append(
                Expect(SITE_OUTAGE, None, f"power cut in {name} at {cut:%H:%M}: "
                       f"{len(second)} gateways for 3 h")
            )  # fmt: skip
        sleepers = first[1:2] + first[3:] + second[1:]
        absent: list[Expect] = []
        safety = {h.home for h in specs if {s.kind.value for s in h.sensors} >= {"button", "smoke"}}
        # safety devices: a pendant pressed, a kitchen smoke detector's test button (no fire),
        # late in the morning: whoever sleeps in is up by then (their usual wake + 1.5 h), and
        # before the power cut
        spare = [h for h in second[1:] + first[1:2] if h in safety]
        if spare:
            presser = spare[0]
            press = start + timedelta(hours=5)
            scenarios.append(presses_button(presser, press))
            expected.append(Expect("help_button", presser, f"presses the pendant at {press:%H:%M}"))
        if len(spare) > 1:
            tester = spare[1]
            test = start + timedelta(hours=6)
            scenarios.append(presses_alarm_test(tester, test))
            expected.append(
                Expect(
                    "alarm_test", tester, f"presses the kitchen smoke alarm's test at {test:%H:%M}"
                )
            )
            absent.append(Expect("fire_alarm", tester, "a test press is not a fire"))
        return cls(scenarios, expected, sleepers, absent)

    def sleep_in(self, db: Database, town: Town, start: datetime) -> None:
        """The first candidate whose learned routine knows when they get up sleeps in today."""
        policy = RoutinePolicy()
        with db.connection() as conn:
            wakes = dict(
                conn.execute(
                    """SELECT r.home, b.wake_h FROM anbu.baselines b
                       JOIN anbu.resident r ON r.id = b.resident_id
                       WHERE NOT b.grace AND r.home = ANY(%s)""",
                    (self.sleepers,),
                ).fetchall()
            )
        lo, hi = policy.wake_range
        home = next((h for h in self.sleepers if lo <= (wakes.get(h) or -1.0) <= hi), None)
        if home is None:  # no routine says when anyone gets up: no morning to miss
            return
        midnight = local_midnight(start)
        usual = midnight + timedelta(hours=wakes[home])
        up = max(start + timedelta(hours=1), usual + timedelta(hours=1.5))
        up = up.replace(second=0, microsecond=0)
        town.add_scenario(sleeps_in(home, midnight, up))
        self.expected.append(
            Expect("not_up", home, f"usually up by {usual:%H:%M}, sleeps in until {up:%H:%M}")
        )


@dataclass
class Narrator:
    """Polls the database and tells the story: readings, findings and site incidents as the
    detectors raise them, alerts, calls, notifications."""

    console: Console
    tz: ZoneInfo
    clock: VirtualClock
    last_event: int = 0
    last_notification: int = 0
    readings: int = 0
    shown_readings_at: float = 0.0
    call_outcomes: dict[int, str | None] | None = None
    last_finding: int = 0
    incidents: dict[int, bool] | None = None  # id -> ended

    def _t(self, at: datetime | None = None) -> str:
        return (at or self.clock.now()).astimezone(self.tz).strftime("%m-%d %H:%M")

    def _findings(self, conn: psycopg.Connection[Any]) -> None:
        """Every finding as the detectors store it, and each site incident's start and end."""
        for fid, home, kind, severity, raised_at, reason in conn.execute(
            """SELECT f.id, r.home, f.kind, f.severity, f.raised_at, f.reason_ko
               FROM anbu.findings f JOIN anbu.resident r ON r.id = f.resident_id
               WHERE f.id > %s ORDER BY f.id""",
            (self.last_finding,),
        ):
            label = Severity.parse(severity).korean
            self.console.print(
                f"[dim]{self._t(raised_at)}[/] [magenta]발견 finding[/] {home} "
                f"[bold]{kind}[/] ({label}): {reason}"
            )
            self.last_finding = fid
        seen = self.incidents if self.incidents is not None else {}
        self.incidents = seen
        for iid, kind, started, ended, gateways, reason in conn.execute(
            """SELECT id, kind, started_at, ended_at, gateways, reason_ko FROM anbu.incidents
               ORDER BY id"""
        ):
            if iid not in seen:
                self.console.print(
                    f"[dim]{self._t(started)}[/] [bold magenta]지역 장애 incident[/] "
                    f"[bold]{kind}[/]: {reason}"
                )
                seen[iid] = False
            if ended is not None and not seen[iid]:
                self.console.print(
                    f"[dim]{self._t(ended)}[/] [bold magenta]지역 장애 종료[/] {kind} ended "
                    f"({gateways} gateways back)"
                )
                seen[iid] = True

    def poll(self, conn: psycopg.Connection[Any]) -> None:
        calls = self.call_outcomes if self.call_outcomes is not None else {}
        self.call_outcomes = calls
        now = time.monotonic()
        if now - self.shown_readings_at > 5:
            (count,) = conn.execute("SELECT count(*) FROM anbu.readings").fetchone() or (0,)
            if count != self.readings:
                self.console.print(
                    f"[dim]{self._t()}[/] 센서 수신 저장 readings stored: {count} "
                    f"(+{count - self.readings})"
                )
                self.readings = count
            self.shown_readings_at = now
        self._findings(conn)
        for eid, alert_id, home, to_state, reason in conn.execute(
            """SELECT e.id, e.alert_id, r.home, e.to_state, e.reason FROM anbu.alert_events e
               JOIN anbu.alerts a ON a.id = e.alert_id JOIN anbu.resident r ON r.id = a.resident_id
               WHERE e.id > %s ORDER BY e.id""",
            (self.last_event,),
        ):
            self.console.print(
                f"[dim]{self._t()}[/] [bold yellow]알림 #{alert_id}[/] {home} → {to_state}: {reason}"
            )
            self.last_event = eid
        for cid, alert_id, status, outcome in conn.execute(
            "SELECT id, alert_id, status, outcome FROM anbu.calls ORDER BY id"
        ):
            if cid not in calls:
                self.console.print(
                    f"[dim]{self._t()}[/] [cyan]안부전화 #{cid}[/] 발신 call placed (alert #{alert_id})"
                )
                calls[cid] = None
            if outcome and calls[cid] != outcome:
                self.console.print(
                    f"[dim]{self._t()}[/] [cyan]안부전화 #{cid}[/] 결과 outcome: {outcome} ({status})"
                )
                calls[cid] = outcome
        for nid, alert_id, cm_id, channel in conn.execute(
            """SELECT id, alert_id, care_manager_id, channel FROM anbu.notifications
               WHERE id > %s ORDER BY id""",
            (self.last_notification,),
        ):
            self.console.print(
                f"[dim]{self._t()}[/] [bold red]담당자 알림[/] care manager #{cm_id} "
                f"notified by {channel} (alert #{alert_id})"
            )
            self.last_notification = nid


def raised_findings(conn: psycopg.Connection[Any], absent: list[Expect]) -> list[Expect]:
    """The findings that must not be raised, raised (a test press taken for a fire)."""
    return [e for e in absent if e not in missing_findings(conn, absent)]


def missing_findings(conn: psycopg.Connection[Any], expected: list[Expect]) -> list[Expect]:
    """The expected findings not raised (yet)."""
    raised = {
        (str(kind), str(home))
        for kind, home in conn.execute(
            """SELECT DISTINCT f.kind, r.home FROM anbu.findings f
               JOIN anbu.resident r ON r.id = f.resident_id"""
        )
    }
    kinds = {str(k) for (k,) in conn.execute("SELECT DISTINCT kind FROM anbu.incidents")}
    return [
        e
        for e in expected
        if not ((e.kind, e.home) in raised if e.home is not None else e.kind in kinds)
    ]
