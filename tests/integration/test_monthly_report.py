"""The district's monthly report on the real app and PostgreSQL, over a November 2026 built by
hand: two dongs of 종로구 and one of 중구 that must never show; residents enrolled and ended
inside and outside the month, one moved from one dong to the other in the middle of it; alerts
acknowledged after known delays (median and 90th percentile worked out below); calls answered
and not; and things placed on both sides of the month's edges, midnight in Seoul (15:00 UTC the
day before). Every expected number is written by hand: exact as alerts.report computes them,
and as the page, the CSV and the API show them with counts of 1 and 2 (and what would give them
back) withheld."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from itertools import count
from pathlib import Path
from typing import Any
from urllib.parse import quote
from zoneinfo import ZoneInfo

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

import dashboards.report
import registry
from alerts.policy import EscalationPolicy
from alerts.report import Month, MonthlyReport, monthly_report
from alerts.service import AlertService
from core.clock import VirtualClock
from core.config import Settings
from core.db import Database
from dashboards.app import create_app
from dashboards.report_view import (
    Line,
    Withheld,
    cell,
    kind_label,
    neutralise,
    outcome_label,
    protect,
)
from tests.integration.dashboard_support import RecordingTelephony, bearer, login_page

A, B, C = "1111051500", "1111053000", "1114055000"  # 종로구 청운효자동, 종로구 사직동, 중구 소공동
PASSWORD = "report-pass-9Zq"
NOW = datetime(2026, 12, 3, 1, 0, tzinfo=UTC)  # 10:00 on 3 December in Seoul
START = datetime(2026, 10, 31, 15, 0, tzinfo=UTC)  # 1 November 00:00 in Seoul
END = datetime(2026, 11, 30, 15, 0, tzinfo=UTC)  # 1 December 00:00 in Seoul
SECOND = timedelta(seconds=1)
SEOUL = ZoneInfo("Asia/Seoul")
STATIC = Path(__file__).resolve().parents[2] / "dashboards" / "static"


def nov(day: int, hour: int = 1, minute: int = 0) -> datetime:
    return datetime(2026, 11, day, hour, minute, tzinfo=UTC)


@dataclass
class Builder:
    """Writes the month's rows straight into the tables, as the services would have left them."""

    conn: Any
    numbers: Iterator[int]

    def resident(
        self, dong: str, created: datetime, ended: datetime | None = None, reason: str = ""
    ) -> int:
        n = next(self.numbers)
        rid = registry.add_resident(self.conn, f"home-report-{n}", dong, "홍길순", "+821055550000")
        self.conn.execute(
            """UPDATE anbu.resident SET created_at = %s, status = %s, ended_at = %s,
                      end_reason = %s WHERE id = %s""",
            (created, "ended" if ended else "active", ended, reason or None, rid),
        )
        return rid

    def transfer(self, rid: int, old: str, new: str, at: datetime) -> None:
        self.conn.execute("UPDATE anbu.resident SET dong_code = %s WHERE id = %s", (new, rid))
        self.conn.execute(
            """INSERT INTO anbu.resident_changes (resident_id, actor, at, field, old_value,
                                                  new_value)
               VALUES (%s, 'test', %s, 'dong_code', %s, %s)""",
            (rid, at, old, new),
        )

    def gateway(
        self,
        rid: int,
        heard: datetime | None = None,
        last_seen: datetime | None = None,
        pending: datetime | None = None,
    ) -> None:
        """A gateway with a door sensor; `heard`: a reading received then (stamped a minute
        earlier)."""
        gid = registry.add_gateway(self.conn, f"gw-report-{next(self.numbers)}", rid)
        sensor = registry.add_sensor(self.conn, gid, "door-1", "door", "entrance")
        self.conn.execute(
            "UPDATE anbu.gateway SET last_seen_at = %s, revocation_pending = %s WHERE id = %s",
            (last_seen, pending, gid),
        )
        if heard is not None:
            self.conn.execute(
                """INSERT INTO anbu.readings (ts, sensor_id, value, received_at)
                   VALUES (%s, %s, 1, %s)""",
                (heard - timedelta(minutes=1), sensor, heard),
            )

    def alert(
        self,
        rid: int,
        kind: str,
        severity: str,
        opened: datetime,
        ack_min: int | None = None,
        resolved: datetime | None = None,
        outcome: str | None = None,
    ) -> int:
        acked = None if ack_min is None else opened + timedelta(minutes=ack_min)
        state = "resolved" if resolved else ("acknowledged" if acked else "escalated")
        row = self.conn.execute(
            """INSERT INTO anbu.alerts (resident_id, kind, severity, state, opened_at, updated_at,
                                        acknowledged_at, resolved_at, outcome)
               VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s) RETURNING id""",
            (rid, kind, severity, state, opened, opened, acked, resolved, outcome),
        ).fetchone()
        alert_id = int(row[0])
        events = [(opened, "system", None, "escalated", "opened")]
        if acked is not None:
            events.append((acked, "care_manager:1", "escalated", "acknowledged", "확인"))
            # a later change that keeps the state is not a second acknowledgement
            events.append((acked + timedelta(minutes=50), "system", "acknowledged",
                           "acknowledged", "severity raised"))  # fmt: skip
        if resolved is not None:
            events.append((resolved, "care_manager:1", "acknowledged", "resolved", "종결"))
        for at, actor, old, new, why in events:
            self.conn.execute(
                """INSERT INTO anbu.alert_events (alert_id, at, actor, from_state, to_state,
                                                  reason) VALUES (%s, %s, %s, %s, %s, %s)""",
                (alert_id, at, actor, old, new, why),
            )
        return alert_id

    def round(self, rid: int, slot: datetime, state: str) -> int:
        plan = self.conn.execute(
            """INSERT INTO anbu.checkin_plans (resident_id, weekdays, local_time)
               VALUES (%s, '{1,2,3,4,5,6,7}', '09:00') RETURNING id""",
            (rid,),
        ).fetchone()
        row = self.conn.execute(
            """INSERT INTO anbu.checkin_rounds (plan_id, resident_id, slot, state)
               VALUES (%s, %s, %s, %s) RETURNING id""",
            (plan[0], rid, slot, state),
        ).fetchone()
        return int(row[0])

    def call(
        self,
        rid: int,
        dialled: datetime | None,
        outcome: str | None,
        *,
        round_id: int | None = None,
        alert_id: int | None = None,
        purpose: str = "routine",
        status: str = "completed",
        answer: str | None = None,
        created: datetime | None = None,
    ) -> None:
        created = created or (dialled - timedelta(seconds=30) if dialled else nov(1))
        self.conn.execute(
            """INSERT INTO anbu.calls (idempotency_key, resident_id, alert_id, purpose, status,
                   outcome, answer, created_at, updated_at, dial_state, dialled_at, round_id)
               VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, 'dialled', %s, %s)""",
            (f"report:{next(self.numbers)}", rid, alert_id, purpose, status, outcome, answer,
             created, created, dialled, round_id),
        )  # fmt: skip


@dataclass
class Town:
    app: FastAPI
    db: Database
    users: dict[str, str]  # who -> username


@pytest.fixture
def town(database: Database, db_url: str, unique: str) -> Iterator[Town]:
    users: dict[str, str] = {}
    with database.connection() as conn:
        registry.add_dong(conn, A, "청운효자동", "종로구")
        registry.add_dong(conn, B, "사직동", "종로구")
        registry.add_dong(conn, C, "소공동", "중구")
        for who, dong, role in (("supervisor", A, "supervisor"), ("admin", B, "admin"),
                                ("manager", A, "manager"), ("technician", A, "technician"),
                                ("junggu", C, "supervisor")):  # fmt: skip
            users[who] = f"{who}-{unique}"
            registry.add_care_manager(conn, users[who], dong, who, "+821000000001", PASSWORD, role)
        build(Builder(conn, count(1)))
    settings = Settings(database_url=db_url, session_secret=f"test-secret-{unique}-0123456789ab")
    clock = VirtualClock(NOW)
    service = AlertService(database, RecordingTelephony(), EscalationPolicy(), clock, "http://t")
    yield Town(create_app(database, settings, service), database, users)


def build(b: Builder) -> None:
    """November 2026; what each row should count for is said beside it."""
    # -- 청운효자동 (A) ---------------------------------------------------------------------
    a1 = b.resident(A, datetime(2026, 9, 1, tzinfo=UTC))  # served
    a2 = b.resident(A, nov(10))  # new, served
    a3 = b.resident(A, START - SECOND)  # 31 Oct 23:59:59 in Seoul: served, not new
    a4 = b.resident(A, START)  # 1 Nov 00:00 in Seoul: new, served
    a5 = b.resident(A, datetime(2026, 8, 1, tzinfo=UTC), nov(20), "moved")  # ended: moved
    a6 = b.resident(A, datetime(2026, 8, 1, tzinfo=UTC), END, "died")  # ends 1 Dec: served
    b.resident(A, datetime(2026, 8, 1, tzinfo=UTC), datetime(2026, 10, 15, tzinfo=UTC),
               "care_home")  # ended in October: nothing  # fmt: skip
    b.resident(A, datetime(2026, 12, 1, 1, tzinfo=UTC))  # enrolled in December: nothing
    # -- 사직동 (B) -------------------------------------------------------------------------
    b1 = b.resident(B, datetime(2026, 7, 1, tzinfo=UTC))  # served
    b2 = b.resident(B, nov(5), nov(25), "care_home")  # new and ended: care home
    b3 = b.resident(A, datetime(2026, 6, 1, tzinfo=UTC))  # in A until 15 Nov, then B: served in B
    b.transfer(b3, A, B, nov(15, 3))
    # -- 소공동 (C), another district: none of this may show ----------------------------------
    c1 = b.resident(C, nov(3))

    # gateways of residents served at the month's end; heard in its last 24 hours?
    b.gateway(a1, heard=nov(30, 10))  # heard
    b.gateway(a2, heard=nov(29, 14, 59), last_seen=datetime(2026, 12, 2, tzinfo=UTC))  # not
    b.gateway(a3, last_seen=nov(30, 14))  # heard (only its status: last seen)
    b.gateway(a4, heard=nov(30, 10), pending=nov(20))  # taken out on 20 Nov: not counted
    b.gateway(a5, heard=nov(30, 10))  # its resident ended: not counted
    b.gateway(b1, heard=END)  # received at midnight, 1 Dec: not heard in November
    b.gateway(b3, heard=nov(30, 12))  # heard
    b.gateway(c1, heard=nov(30, 12))

    # alerts: opened in the month (dong at opening), acknowledged after ack_min minutes
    b.alert(a1, "inactivity", "warning", nov(3), 4, nov(3, 3), "visited_ok")
    b.alert(a1, "inactivity", "critical", nov(5), 10, nov(5, 5), "hospitalised")
    b.alert(a2, "inactivity", "warning", nov(12), 20)
    x4 = b.alert(a3, "not_up", "watch", nov(13), 30, nov(13, 6), "contacted_ok")
    x5 = b.alert(a4, "help_request", "critical", nov(14), 100, nov(14, 8), "emergency_119")
    # opened 23:50 on 30 Nov in Seoul, acknowledged 40 minutes later in December: counts;
    # resolved in December: not an outcome of November
    b.alert(a6, "inactivity", "warning", END - timedelta(minutes=10), 40, END + timedelta(hours=1),
            "visited_ok")  # fmt: skip
    b.alert(a1, "not_up", "watch", nov(20), None, nov(20, 1, 30), "resident_ok")  # never acked
    # b3's, opened while in A (counts in A), resolved after the move (an outcome of B)
    b.alert(b3, "inactivity", "warning", nov(10), 6, nov(16, 0), "false_alarm")
    # opened 23:50 on 31 Oct in Seoul: not November's; resolved 00:20 on 1 Nov: an outcome
    b.alert(a2, "not_up", "watch", START - timedelta(minutes=10), 20, START + timedelta(minutes=20),
            "away")  # fmt: skip
    b.alert(b1, "inactivity", "warning", nov(8), 2, nov(8, 2), "visited_ok")
    b.alert(b3, "inactivity", "critical", nov(20), 12)
    b.alert(b2, "inactivity", "watch", nov(21), None, nov(25), "service_ended")
    b.alert(c1, "inactivity", "warning", nov(10), 3, nov(10, 5), "visited_ok")

    # check-in rounds and calls to residents
    r1 = b.round(a1, nov(2, 0), "ok")
    b.call(a1, nov(2, 0), "ok", round_id=r1)  # A: placed, answered
    r2 = b.round(a2, nov(3, 0), "unreached")
    b.call(a2, nov(3, 0), "no_answer", round_id=r2)  # A: placed
    b.call(a2, nov(3, 0, 10), "unclear", round_id=r2)  # A: placed, answered (not reached)
    b.call(a3, nov(13, 1, 1), "voicemail", alert_id=x4, purpose="check_in")  # A: placed
    b.call(a4, None, None, alert_id=x5, purpose="check_in", status="canceled",
           created=nov(14, 1, 1))  # cancelled in the queue: rang nobody  # fmt: skip
    r4 = b.round(a4, nov(15, 0), "ok")
    b.call(a4, nov(15, 0), "failed", round_id=r4, status="lost")  # never reached Twilio
    b.call(a4, nov(15, 0, 5), "ok", round_id=r4)  # A: placed, answered
    r8 = b.round(a1, START - timedelta(minutes=2), "ok")  # 31 Oct in Seoul: not November's
    b.call(a1, START - timedelta(minutes=1), "ok", round_id=r8)
    r9 = b.round(a1, END - timedelta(minutes=2), "calling")
    b.call(a1, END - timedelta(seconds=30), "no_answer", round_id=r9)  # A: placed
    b.call(a6, END - timedelta(minutes=5), "ok", purpose="manager_alert")  # a care manager's
    r5 = b.round(a5, nov(10, 0), "missed")  # never called: a5 not reached
    b.round(a5, nov(22, 0), "cancelled")  # cancelled by the end of service: not a try
    b.round(a6, START, "missed")  # 1 Nov 00:00 in Seoul: November's; a6 not reached
    assert r5
    r11 = b.round(b3, nov(5, 0), "unreached")
    b.call(b3, nov(5, 0), "busy", round_id=r11)  # A (b3 was there): placed
    r12 = b.round(b3, nov(20, 0), "help")
    b.call(b3, nov(20, 0), "unclear", round_id=r12, answer="help")  # B: placed, answered
    r13 = b.round(b1, nov(8, 0), "unreached")
    b.call(b1, nov(8, 0), "call_back_later", round_id=r13)  # B: placed, answered (not reached)
    b.call(b1, nov(8, 0, 10), "no_answer", round_id=r13)  # B: placed
    r15 = b.round(b1, END, "ok")  # 1 Dec 00:00 in Seoul: December's
    b.call(b1, END, "ok", round_id=r15, created=END)
    b.round(b2, START - SECOND, "missed")  # 31 Oct in Seoul: b2 had no try in November
    rc = b.round(c1, nov(4, 0), "unreached")
    b.call(c1, nov(4, 0), "no_answer", round_id=rc)


MIN = 60.0
EXPECTED_A = {
    "dong_code": A, "dong_name": "청운효자동",
    "residents_at_end": 5, "residents_new": 2, "residents_ended": 1,
    "ended_by_reason": {"moved": 1},
    "gateways": 3, "gateways_heard": 2,
    "alerts": 8,
    "alerts_by_kind": {"inactivity": {"warning": 4, "critical": 1}, "not_up": {"watch": 2},
                       "help_request": {"critical": 1}},
    # acknowledged after 4, 6, 10, 20, 30, 40, 100 minutes: the median is the 4th, 20; the
    # 90th percentile lies 0.9 x 6 = 5.4 places in: 40 + 0.4 x (100 - 40) = 64
    "acknowledged": 7, "ack_median_s": 20 * MIN, "ack_p90_s": 64 * MIN,
    "resolved": 6,
    "resolved_by_outcome": {"visited_ok": 1, "hospitalised": 1, "contacted_ok": 1,
                            "emergency_119": 1, "resident_ok": 1, "away": 1},
    "calls_placed": 7, "calls_answered": 3, "answered_share": 3 / 7,
    "residents_called": 6, "residents_not_reached": 4,
}  # fmt: skip
EXPECTED_B = {
    "dong_code": B, "dong_name": "사직동",
    "residents_at_end": 2, "residents_new": 1, "residents_ended": 1,
    "ended_by_reason": {"care_home": 1},
    "gateways": 2, "gateways_heard": 1,
    "alerts": 3,
    "alerts_by_kind": {"inactivity": {"watch": 1, "warning": 1, "critical": 1}},
    # 2 and 12 minutes: median 7; 90th percentile 2 + 0.9 x 10 = 11
    "acknowledged": 2, "ack_median_s": 7 * MIN, "ack_p90_s": 11 * MIN,
    "resolved": 3,
    "resolved_by_outcome": {"false_alarm": 1, "visited_ok": 1, "service_ended": 1},
    "calls_placed": 3, "calls_answered": 2, "answered_share": 2 / 3,
    "residents_called": 2, "residents_not_reached": 1,
}  # fmt: skip
EXPECTED_DISTRICT = {
    "dong_code": None, "dong_name": "종로구",
    "residents_at_end": 7, "residents_new": 3, "residents_ended": 2,
    "ended_by_reason": {"moved": 1, "care_home": 1},
    "gateways": 5, "gateways_heard": 3,
    "alerts": 11,
    "alerts_by_kind": {"inactivity": {"watch": 1, "warning": 5, "critical": 2},
                       "not_up": {"watch": 2}, "help_request": {"critical": 1}},
    # 2, 4, 6, 10, 12, 20, 30, 40, 100: the median is the 5th, 12 (not a mean of the dongs'
    # medians); the 90th percentile lies 0.9 x 8 = 7.2 places in: 40 + 0.2 x 60 = 52
    "acknowledged": 9, "ack_median_s": 12 * MIN, "ack_p90_s": 52 * MIN,
    "resolved": 9,
    "resolved_by_outcome": {"visited_ok": 2, "hospitalised": 1, "contacted_ok": 1,
                            "emergency_119": 1, "resident_ok": 1, "away": 1, "false_alarm": 1,
                            "service_ended": 1},
    "calls_placed": 10, "calls_answered": 5, "answered_share": 0.5,
    "residents_called": 8, "residents_not_reached": 5,
}  # fmt: skip


def _api(town: Town, who: str) -> TestClient:
    client = TestClient(town.app)
    client.headers.update(bearer(client, town.users[who], PASSWORD))
    return client


def _browser(town: Town, who: str) -> TestClient:
    client = TestClient(town.app)
    login_page(client, town.users[who], PASSWORD)
    return client


def _close(got: dict[str, Any], want: dict[str, Any]) -> None:
    assert set(got) == set(want)
    for key, value in want.items():
        if isinstance(value, float):
            assert got[key] == pytest.approx(value), key
        else:
            assert got[key] == value, key


def _exact(report: MonthlyReport, index: int | None) -> dict[str, Any]:
    f = report.total if index is None else report.dongs[index]
    return {**asdict(f), "answered_share": f.answered_share}


@pytest.mark.storage_modes  # gateways are heard through the readings, stored either way
def test_the_month_by_hand(town: Town) -> None:
    """The exact figures, as alerts.report computes them before anything is withheld."""
    with town.db.connection() as conn:
        report = monthly_report(conn, [A, B], Month(2026, 11), NOW, SEOUL, "종로구")
    assert (report.month.label, report.district, report.partial) == ("2026-11", "종로구", False)
    assert (report.since, report.until, report.made_at) == (START, END, NOW)
    assert [d.dong_code for d in report.dongs] == [A, B]
    _close(_exact(report, 0), EXPECTED_A)
    _close(_exact(report, 1), EXPECTED_B)
    _close(_exact(report, None), EXPECTED_DISTRICT)
    for who in ("supervisor", "admin"):
        answer = _api(town, who).get("/api/v1/reports/monthly", params={"month": "2026-11"})
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert (body["month"], body["district"], body["partial"]) == ("2026-11", "종로구", False)
        since, until = (datetime.fromisoformat(body[k]) for k in ("since", "until"))
        assert (since, until) == (START, END)
        assert body["since"] == "2026-11-01T00:00:00+09:00"  # written in Seoul time
        assert [d["dong_code"] for d in body["dongs"]] == [A, B]  # 소공동 is not in 종로구
        # every figure of 3 or more that no small one hides behind is given exactly
        for got, want in ((body["dongs"][0], EXPECTED_A), (body["dongs"][1], EXPECTED_B),
                          (body["district_total"], EXPECTED_DISTRICT)):  # fmt: skip
            for key in ("alerts", "resolved", "calls_placed"):
                assert got[key] == want[key], key
        total = body["district_total"]
        assert (total["residents_at_end"], total["residents_new"], total["gateways"]) == (7, 3, 5)
        assert total["ack_median_s"] == pytest.approx(12 * MIN)
        assert body["dongs"][0]["ack_p90_s"] == pytest.approx(64 * MIN)
    # 중구's supervisor sees 소공동 alone, and nothing of 종로구 (every count of it is 0 or 1)
    other = _api(town, "junggu").get("/api/v1/reports/monthly?month=2026-11").json()
    assert [d["dong_code"] for d in other["dongs"]] == [C]
    total = other["district_total"]
    assert (total["residents_new"], total["alerts"], total["calls_placed"]) == (None, None, None)
    assert (total["residents_at_end"], total["residents_ended"]) == (None, 0)
    with town.db.connection() as conn:
        exact = monthly_report(conn, [C], Month(2026, 11), NOW, SEOUL, "중구").total
    assert (exact.residents_new, exact.alerts, exact.calls_placed) == (1, 1, 1)
    assert (exact.gateways, exact.gateways_heard, exact.residents_not_reached) == (1, 1, 1)


def test_small_counts_are_withheld_in_the_api_the_csv_and_the_page(town: Town) -> None:
    """1 and 2 show as <3 (0 stays 0); where a row's or a column's total would give a withheld
    count back, the smallest other part is withheld too (*); no median under 3 acknowledged."""
    body = _api(town, "supervisor").get("/api/v1/reports/monthly?month=2026-11").json()
    assert body["suppressed_below"] == 3
    a, b, total = body["dongs"][0], body["dongs"][1], body["district_total"]
    # served at month end: A 5, B 2, 종로구 7: B is small, so A would be 7 - 2: both withheld
    assert (a["residents_at_end"], b["residents_at_end"], total["residents_at_end"]) == (
        None, None, 7)  # fmt: skip
    # "died" in B: 0 stays 0; "moved" in A: 1 is withheld, in the district too
    assert b["ended_by_reason"]["died"] == 0 and a["ended_by_reason"]["moved"] is None
    assert total["ended_by_reason"]["moved"] is None and total["residents_ended"] is None
    # A's inactivity warnings (4) would be 5 - B's 1: withheld beside it
    assert a["alerts_by_kind"]["inactivity"]["warning"] is None
    assert total["alerts_by_kind"]["inactivity"]["warning"] == 5
    assert total["alerts_by_kind"]["help_request"]["critical"] is None  # "119 출동 1" stays hidden
    assert total["resolved_by_outcome"]["emergency_119"] is None
    # B's 2 acknowledgements: no median nor 90th percentile; answered share gone with its count
    assert (b["ack_median_s"], b["ack_p90_s"], b["answered_share"]) == (None, None, None)
    assert (a["answered_share"], total["answered_share"]) == (None, 0.5)
    assert (a["residents_not_reached"], b["residents_not_reached"]) == (None, None)
    csv_rows = list(csv.reader(io.StringIO(
        _browser(town, "admin").get("/reports/monthly.csv?month=2026-11").content.decode("utf-8-sig")
    )))  # fmt: skip
    by_label = {r[1]: r[2:] for r in csv_rows[1:]}
    assert by_label["관리 대상자 (기준 시각, 명)"] == ["*", "<3", "7"]
    assert by_label["신규 등록 (명)"] == ["<3", "<3", "3"]  # two withheld: neither comes back
    assert by_label["└ 전출"] == ["<3", "0", "<3"]
    assert by_label["└ 119 출동"] == ["<3", "0", "<3"]
    assert by_label["안부 확인 – 주의"] == ["*", "<3", "5"]
    assert by_label["확인 소요 시간 중앙값 (분)"] == ["20.0", "", "12.0"]
    assert by_label["응답 (건)"] == ["*", "<3", "5"]
    assert by_label["안부 미확인 대상자 (명)"] == ["*", "<3", "5"]
    page = _browser(town, "supervisor").get("/reports/monthly?month=2026-11").text
    assert ">&lt;3<" in page and ">*<" in page and ">—<" in page
    assert "1~2건(명)은 \u201c&lt;3\u201d으로" in page  # the help says what <3 and * are


@pytest.mark.parametrize(
    ("values", "want"),
    [
        ((5, 2, 7), ("*", "<3", 7)),  # one small part: the next smallest goes with it
        ((1, 2, 3), ("<3", "<3", 3)),  # two small parts: nothing more
        ((0, 4, 4), (0, 4, 4)),  # 0 stays 0
        ((1, 0, 1), ("<3", 0, "<3")),  # a part and its total withheld: nothing more
        ((9, 6, 15), (9, 6, 15)),
    ],
)
def test_withholding_a_row(values: tuple[int, ...], want: tuple[Any, ...]) -> None:
    got = protect([Line("s", "x", values)])[0].values
    assert tuple(v.value if isinstance(v, Withheld) else v for v in got) == want


def test_withholding_goes_on_across_rows_and_columns() -> None:
    """A part withheld by its column's sum leaves its row with one alone: that row pays too."""
    table = [
        Line("s", "alerts", (6, 9, 15)),
        Line("s", "kind x", (1, 4, 5), parent=0),  # A's 1: small; B's 4 withheld for the row
        Line("s", "kind y", (5, 5, 10), parent=0),  # A's column: 5 withheld for the column
    ]
    got = [[v.value if isinstance(v, Withheld) else v for v in row.values]
           for row in protect(table)]  # fmt: skip
    assert got[1] == ["<3", "*", 5]
    # A's column (6 = 1 + 5) and B's (9 = 4 + 5) each had one withheld part: their 5s go too
    assert got[2] == ["*", "*", 10]
    for sums in ([got[1][0], got[2][0]], [got[1][1], got[2][1]], got[1][:2], got[2][:2]):
        assert sum(isinstance(v, str) for v in sums) != 1


def test_the_page_korean_first_english_on_the_switch_and_the_last_full_month(town: Town) -> None:
    browser = _browser(town, "supervisor")
    page = browser.get("/reports/monthly")  # no month: the last full one, November
    assert page.status_code == 200
    html = page.text
    assert "<title>종로구 월간 보고서 (2026년 11월)" in html
    assert "<h1>종로구 안부 돌봄 월간 보고서 (2026년 11월)</h1>" in html
    assert ("기관: 종로구 · 기간: 2026년 11월 1일 ~ 11월 30일 (한국 시간) · "
            "작성일: 2026년 12월 3일 10:00 · 작성자: supervisor (구 통합돌봄 담당자)") in html  # fmt: skip
    assert "청운효자동" in html and "사직동" in html and "종로구 전체" in html
    assert "소공동" not in html and "홍길순" not in html  # another district; no names
    assert "/static/report.css" in html and 'href="/reports/monthly.csv?month=2026-11"' in html
    assert ">64.0<" in html and ">52.0<" in html  # A's and the district's p90 in minutes
    for words in ("안부 미확인 대상자 (명)", "확인 소요 시간 90백분위수 (분)", "알림 확인",
                  "이 달 종결된 알림 (건)", "이전 달 발생분 포함", "└ 기타",
                  "설치된 게이트웨이 (대)", "그중 기준 시각 전 24시간 안에 신호 수신 (대)",
                  "기준 시각: 월말(진행 중인 달은 작성 시각)", "행정동별", "개인정보",
                  "90백분위수: 알림 10건 중 9건이 이 시간 안에 확인됨",
                  "각 건은 발생 당시 소속 행정동에 집계합니다", "A4 가로 방향으로 인쇄됩니다",
                  "괜찮음·불편·도움 요청·응급 중 어느 답도 받지 못한 대상자"):  # fmt: skip
        assert words in html, words
    for gone in ("연락 안 된", "사유 없음", "(inactivity)", "종료 사유"):
        assert gone not in html, gone
    english = browser.get("/reports/monthly?month=2026-11&lang=en").text
    assert "종로구 check-in care monthly report (November 2026)" in english
    assert "Check-in not confirmed (persons)" in english and "종로구 total" in english
    assert "Period: 1 November 2026 ~ 30 November (Korea time)" in english
    # December is still running: counted up to now, and said so
    december = _api(town, "admin").get("/api/v1/reports/monthly?month=2026-12").json()
    assert december["partial"] is True and datetime.fromisoformat(december["until"]) == NOW
    running = browser.get("/reports/monthly?month=2026-12&lang=ko").text
    assert "아직 끝나지 않았습니다" in running
    assert "기간: 2026년 12월 1일 ~ 12월 3일 10:00 현재" in running
    assert "관리 대상자 (기준 시각, 명)" in running


def test_big_counts_have_thousands_separators_on_the_page_only() -> None:
    assert cell(12345, "count") == "12,345" and cell(12345, "count", grouped=False) == "12345"
    assert cell(1234.56, "minutes") == "1,234.6" and cell(None, "count") == "—"


def test_an_alert_closed_without_an_outcome_says_so() -> None:
    assert outcome_label("ko", "") == "결과 미입력"
    assert outcome_label("en", "") == "no outcome entered"


def test_a_kind_shows_its_code_only_beside_another_of_the_same_words() -> None:
    assert kind_label("ko", "inactivity", ["inactivity", "not_up"]) == "안부 확인"
    both = ["inactivity", "lonely_kitchen"]  # no route of its own: "안부 확인" as well
    assert kind_label("ko", "inactivity", both) == "안부 확인 (inactivity)"
    assert kind_label("en", "lonely_kitchen", both) == "check on the resident (lonely_kitchen)"


def test_the_csv_opens_in_excel_and_runs_no_formula(town: Town) -> None:
    with town.db.connection() as conn:  # a dong name someone typed as a formula
        conn.execute("UPDATE anbu.dong SET name = '=HYPERLINK(\"http://x\",\"x\")' WHERE code = %s",
                     (B,))  # fmt: skip
    browser = _browser(town, "admin")
    got = browser.get("/reports/monthly.csv?month=2026-11")
    assert got.status_code == 200
    assert got.headers["content-type"].startswith("text/csv")
    disposition = got.headers["content-disposition"]
    assert 'filename="anbu-monthly-2026-11.csv"' in disposition  # the ASCII fallback
    assert "filename*=UTF-8''" + quote("월간보고서_종로구_2026-11.csv") in disposition
    assert got.content.startswith(b"\xef\xbb\xbf")  # UTF-8 BOM: Korean Excel reads it as UTF-8
    rows = list(csv.reader(io.StringIO(got.content.decode("utf-8-sig"))))
    assert rows[0] == ["구분", "항목", "청운효자동 (1111051500)",
                       "'=HYPERLINK(\"http://x\",\"x\") (1111053000)", "종로구 전체"]  # fmt: skip
    by_label = {r[1]: r[2:] for r in rows[1:]}
    assert by_label["발신 (건)"] == ["7", "3", "10"]
    assert by_label["발생한 알림 (건)"] == ["8", "3", "11"]
    assert by_label["이 달 종결된 알림 (건)"] == ["6", "3", "9"]
    assert by_label["응답률 (%)"] == ["", "", "50.0"]  # A's and B's answered are withheld
    assert by_label["확인 소요 시간 90백분위수 (분)"] == ["64.0", "", "52.0"]
    assert not any(c.startswith(("=", "+", "-", "@", "\t", "\r")) for r in rows for c in r)


@pytest.mark.parametrize("text", ["=1+2", "+1", "-1", "@SUM(A1)", "\tx", "\rx"])
def test_a_cell_that_would_run_is_quoted(text: str) -> None:
    assert neutralise(text) == "'" + text
    assert neutralise("청운효자동") == "청운효자동"


def test_a_manager_and_a_technician_are_refused(town: Town) -> None:
    for who in ("manager", "technician"):
        api = _api(town, who)
        refused = api.get("/api/v1/reports/monthly?month=2026-11")
        assert refused.status_code == 403
        assert refused.json()["detail"] and refused.json()["detail_en"]  # Korean first
        browser = _browser(town, who)
        for path in ("/reports/monthly", "/reports/monthly.csv"):
            page = browser.get(path)
            assert page.status_code == 403 and "청운효자동 (" not in page.text
        assert 'href="/reports/monthly"' not in browser.get("/account").text  # no link for them
    assert 'href="/reports/monthly"' in _browser(town, "supervisor").get("/account").text


@pytest.mark.parametrize(
    ("month", "korean"),
    [
        ("2026-13", "YYYY-MM 형식"),
        ("2026-1", "YYYY-MM 형식"),
        ("11-2026", "YYYY-MM 형식"),
        ("=cmd|' /C calc'!A0", "YYYY-MM 형식"),
        ("２０２６-１１", "YYYY-MM 형식"),  # full-width digits
        ("٢٠٢٦-١١", "YYYY-MM 형식"),  # Arabic-Indic digits
        ("1999-12", "2000년 1월 이후"),
        ("2027-01", "2027년 1월은 아직 시작되지 않았습니다. 이번 달이나 그 이전 달을 골라 주세요."),
    ],
)
def test_a_month_that_cannot_be_reported_is_a_clear_422(
    town: Town, month: str, korean: str
) -> None:
    answer = _api(town, "supervisor").get("/api/v1/reports/monthly", params={"month": month})
    assert answer.status_code == 422
    assert korean in answer.json()["detail"] and answer.json()["detail_en"]
    browser = _browser(town, "supervisor")
    for path in ("/reports/monthly", "/reports/monthly.csv"):
        page = browser.get(path, params={"month": month})
        assert page.status_code == 422 and korean in page.text
        assert '<a href="/reports/monthly">월간 보고서로 돌아가기</a>' in page.text
    english = browser.get("/reports/monthly", params={"month": month, "lang": "en"})
    assert english.status_code == 422 and korean not in english.text
    assert "Back to the monthly report" in english.text


def test_the_first_month_has_no_previous_link(town: Town) -> None:
    browser = _browser(town, "supervisor")
    first = browser.get("/reports/monthly", params={"month": "2000-01"})
    assert first.status_code == 200 and "1999-12" not in first.text
    assert "← 이전 달" not in first.text
    assert (
        'href="/reports/monthly?month=2000-01"'
        in browser.get("/reports/monthly", params={"month": "2000-02"}).text
    )


def test_a_report_past_its_time_is_a_clear_503(town: Town, monkeypatch: Any) -> None:
    """Each statement runs under SET LOCAL statement_timeout: one held up by a lock is cancelled
    and the answer is a Korean 503, not a request hanging on."""
    monkeypatch.setattr(dashboards.report, "REPORT_TIMEOUT", timedelta(milliseconds=300))
    api, browser = _api(town, "supervisor"), _browser(town, "supervisor")
    with town.db.connection() as locker:  # only the report reads the transfers
        locker.execute("LOCK TABLE anbu.resident_changes IN ACCESS EXCLUSIVE MODE")
        answer = api.get("/api/v1/reports/monthly?month=2026-11")
        page = browser.get("/reports/monthly?month=2026-11")
        table = browser.get("/reports/monthly.csv?month=2026-11")
    assert answer.status_code == 503 and answer.headers["retry-after"]
    assert "시간이 너무 오래 걸려" in answer.json()["detail"] and answer.json()["detail_en"]
    for refused in (page, table):
        assert refused.status_code == 503 and "시간이 너무 오래 걸려" in refused.text
    assert api.get("/api/v1/reports/monthly?month=2026-11").status_code == 200  # lock gone


def test_the_report_reads_in_a_read_only_snapshot(town: Town) -> None:
    with town.db.connection() as conn:
        conn.execute("SELECT 1")
        with pytest.raises(RuntimeError):  # it will not join a transaction begun elsewhere
            monthly_report(conn, [A], Month(2026, 11), NOW, SEOUL)
    with town.db.connection() as conn:
        monthly_report(conn, [A], Month(2026, 11), NOW, SEOUL)
        # its own transaction is over, the connection's settings untouched
        row = conn.execute("SHOW transaction_read_only").fetchone()
        assert row is not None and row[0] == "off"
        row = conn.execute("SHOW statement_timeout").fetchone()
        assert row is not None and row[0] != "20s"


def test_an_ended_month_is_kept_a_while_a_running_one_is_not(town: Town) -> None:
    api = _api(town, "supervisor")
    path = "/api/v1/reports/monthly?month="
    assert api.get(path + "2026-11").json()["district_total"]["alerts"] == 11
    assert api.get(path + "2026-12").json()["district_total"]["alerts"] == 0
    with town.db.connection() as conn:
        row = conn.execute("SELECT id FROM anbu.resident WHERE dong_code = %s AND status = "
                           "'active' ORDER BY id LIMIT 1", (A,)).fetchone()  # fmt: skip
        assert row is not None
        b = Builder(conn, count(1000))
        for day in (21, 22, 23):
            b.alert(row[0], "night", "watch", nov(day), 5, nov(day, 3), "visited_ok")
            b.alert(row[0], "routine", "watch", NOW - timedelta(hours=day), 5, NOW, "visited_ok")
    assert api.get(path + "2026-11").json()["district_total"]["alerts"] == 11  # kept
    assert api.get(path + "2026-12").json()["district_total"]["alerts"] == 3  # afresh
    # kept per district and dongs: another district's supervisor is not given 종로구's month
    other = _api(town, "junggu").get(path + "2026-11").json()
    assert [d["dong_code"] for d in other["dongs"]] == [C]


@pytest.mark.storage_modes
def test_the_reports_indexes_exist(town: Town) -> None:
    with town.db.connection() as conn:
        found = dict(conn.execute(
            "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = 'anbu'"
        ).fetchall())  # fmt: skip
    assert "(resident_id, at) WHERE (field = 'dong_code'::text)" in found["resident_changes_dong"]
    assert "checkin_rounds USING btree (slot)" in found["checkin_rounds_slot"]
    assert "alerts USING btree (opened_at)" in found["alerts_opened"]
    assert "alerts USING btree (resolved_at)" in found["alerts_resolved"]


def test_the_print_layout_fits_a4() -> None:
    css = (STATIC / "report.css").read_text()
    assert "@page { size: A4 landscape" in css
    printed = css[css.index("@media print") :]
    assert "header.top" in printed and "display: none" in printed
    hidden = [r for r in printed.splitlines() if "display: none" in r]
    assert not any("report-meta" in r for r in hidden)  # the meta block prints
    assert ".report-meta { display: block" in printed
