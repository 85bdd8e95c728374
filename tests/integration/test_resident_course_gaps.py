"""The seams of a resident's course, on the real database: a finding stored just before the end
of service never opens an alert or rings the resident afterwards; gateways of residents ended
before 0057 are marked for revocation; an ended or pseudonymised resident is never re-enrolled
onto; a dong changes only by a transfer, which hands the resident's open alerts to the new dong
at once; and an alert or a resident is handed only to a care manager of the resident's dong."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest

import registry
from alerts import course, retention
from alerts.policy import EscalationPolicy
from alerts.service import AlertService, IncomingFinding
from core.clock import VirtualClock
from core.config import Settings
from core.db import Database
from core.domain import Finding, Severity
from registry.assignment import reassign_resident
from registry.residents_edit import Refused, district_of, problem_message, save_resident
from registry.residents_import import import_residents
from tests.integration.dashboard_support import RecordingTelephony

NOW = datetime(2026, 3, 2, 1, 0, tzinfo=UTC)  # Monday 10:00 Asia/Seoul
PW = "gaps-manager-pass-1"
HEADER = "사례번호,성명,출생연도,주소,행정동,휴대전화,집전화,가구ID"
MIGRATION = Path(__file__).resolve().parents[2] / "core" / "migrations"
ENDED_KO = "서비스가 종료된 대상자입니다. 다시 등록하려면 새 사례번호로 등록해 주세요."
TRANSFER_KO = "행정동을 옮기려면 '전출입(이관)' 기능을 사용해 주세요."


class Town:
    def __init__(self, database: Database) -> None:
        self.database = database
        self.clock = VirtualClock(NOW)
        self.telephony = RecordingTelephony()
        self.alerts = AlertService(database, self.telephony, EscalationPolicy(), self.clock,  # type: ignore[arg-type]
                                   "http://dash.test")  # fmt: skip
        with database.connection() as conn:
            self.d1, self.d2 = "1111051500", "1111053000"
            registry.add_dong(conn, self.d1, "청운효자동", "종로구")
            registry.add_dong(conn, self.d2, "사직동", "종로구")
            self.m1 = registry.add_care_manager(conn, "m1", self.d1, "김담당", "+821011110001", PW)
            self.m2 = registry.add_care_manager(conn, "m2", self.d2, "이담당", "+821011110002", PW)
            self.sup = registry.add_care_manager(conn, "su", self.d1, "박구청", "+821011110003",
                                                 PW, role="supervisor")  # fmt: skip
            self.rid = registry.add_resident(conn, "home-gap", self.d1, "홍길순", "+821098761234")
            conn.execute("UPDATE anbu.resident SET external_id = 'JN-9' WHERE id = %s", (self.rid,))
        self.course = course.ResidentCourse(database, _settings(database), self.clock, None)

    def query(self, sql: str, *args: Any) -> list[tuple[Any, ...]]:
        with self.database.connection() as conn:
            return conn.execute(sql, args).fetchall()

    def finding(self, kind: str = "not_up") -> int:
        """Stored by the detectors, not yet handed to an alert."""
        [(fid,)] = self.query(
            """INSERT INTO anbu.findings (resident_id, kind, severity, raised_at, reason_ko,
                   reason_en) VALUES (%s, %s, 'warning', %s, '기상 확인 필요', 'not up')
               RETURNING id""",
            self.rid, kind, self.clock.now(),
        )  # fmt: skip
        return int(fid)

    def alert(self, state: str = "escalated", assigned_to: int | None = None) -> int:
        [(alert_id,)] = self.query(
            """INSERT INTO anbu.alerts (resident_id, kind, severity, state, opened_at, updated_at,
                   next_action_at, escalation_level, assigned_to)
               VALUES (%s, 'checkin_help', 'warning', %s, %s, %s, %s, 0, %s) RETURNING id""",
            self.rid, state, NOW, NOW, NOW + timedelta(minutes=20), assigned_to,
        )  # fmt: skip
        return int(alert_id)


def _settings(database: Database) -> Settings:
    return Settings(database_url=database.conninfo)


@pytest.fixture
def town(database: Database) -> Iterator[Town]:
    yield Town(database)


# -- 2. the end of service and findings in flight ---------------------------------------------


def test_a_finding_stored_just_before_the_end_never_opens_an_alert(town: Town) -> None:
    fid = town.finding()
    town.course.end(town.sup, town.rid, "moved")
    [(alerted, note)] = town.query(
        "SELECT alerted_at, not_alerted FROM anbu.findings WHERE id = %s", fid
    )
    assert alerted is not None and note == "service_ended"
    assert town.alerts.reconcile_findings() == 0
    assert town.query("SELECT id FROM anbu.alerts WHERE resident_id = %s", town.rid) == []
    assert town.telephony.calls == []


def test_a_finding_handed_over_after_the_end_is_refused_with_the_reason(town: Town) -> None:
    town.course.end(town.sup, town.rid, "died")
    fid = town.finding()  # a detector's sweep that read the resident before the end
    item = IncomingFinding(fid, town.rid, Finding("home-gap", "not_up", Severity.WARNING, NOW,
                                                  "기상 확인 필요", "not up", {}))  # fmt: skip
    assert town.alerts.on_findings([item]) == []
    assert town.query("SELECT id FROM anbu.alerts WHERE resident_id = %s", town.rid) == []
    [(alerted, note)] = town.query(
        "SELECT alerted_at, not_alerted FROM anbu.findings WHERE id = %s", fid
    )
    assert alerted is not None and note == "service_ended"
    assert town.telephony.calls == []


def test_an_alert_of_an_ended_resident_places_no_call(town: Town) -> None:
    [(alert_id,)] = town.query(
        """INSERT INTO anbu.alerts (resident_id, kind, severity, state, opened_at, updated_at,
               next_action_at) VALUES (%s, 'not_up', 'warning', 'open', %s, %s, %s) RETURNING id""",
        town.rid, NOW, NOW, NOW,
    )  # fmt: skip
    town.query("UPDATE anbu.resident SET status = 'ended' WHERE id = %s RETURNING id", town.rid)
    assert town.alerts.process_due() == 1
    assert town.telephony.calls == []
    [(state, outcome)] = town.query(
        "SELECT state, outcome FROM anbu.alerts WHERE id = %s", alert_id
    )
    assert (state, outcome) == ("resolved", "service_ended")


# -- 3. gateways of residents ended before 0057 -------------------------------------------------


def test_0062_marks_gateways_of_residents_ended_earlier_for_revocation(town: Town) -> None:
    with town.database.connection() as conn:
        registry.add_gateway(conn, "gw-ended-early", town.rid)
        other = registry.add_resident(conn, "home-live", town.d1, "김살아", "+821098761111")
        registry.add_gateway(conn, "gw-live", other)
        conn.execute("UPDATE anbu.resident SET status = 'ended' WHERE id = %s", (town.rid,))
    [sql] = [p.read_text() for p in MIGRATION.glob("0062_*.sql")]
    with town.database.connection() as conn:
        conn.execute(sql.encode())
    pending = dict(town.query("SELECT id, revocation_pending IS NOT NULL FROM anbu.gateway"))
    assert pending == {"gw-ended-early": True, "gw-live": False}


# -- 4. re-enrolment ------------------------------------------------------------------------------


def _import(town: Town, text: str) -> Any:
    with psycopg.connect(town.database.conninfo) as conn:
        return import_residents(conn, text.encode(), actor="cli:test", now=NOW)


def test_an_ended_residents_external_id_is_refused_with_a_clear_reason(town: Town) -> None:
    town.course.end(town.sup, town.rid, "care_home")
    report = _import(town, f"{HEADER}\nJN-9,홍길순,1940,주소,청운효자동,010-9876-1234,,\n")
    # an import (a dry run too) answers as for another district's case number: one answer,
    # so it tells nothing of other districts (the page and API below may say why)
    assert [(e.field, e.code) for e in report.errors] == [("external_id", "external_id_taken")]
    assert not report.written
    assert "다른 번호인지 확인해 주세요" in problem_message(report.errors[0])
    with psycopg.connect(town.database.conninfo) as conn:
        district = district_of(conn, town.d1)
        values = {"external_id": "JN-9", "display_name": "홍길순", "dong_code": town.d1,
                  "mobile_phone": "010-9876-1234", "birth_year": "1940", "address": "주소"}  # fmt: skip
        with pytest.raises(Refused) as refused:
            save_resident(conn, values, district=district, actor="web:test", now=NOW)
    assert [p.code for p in refused.value.problems] == ["resident_ended"]
    assert ENDED_KO in problem_message(refused.value.problems[0])
    assert "new external id" in problem_message(refused.value.problems[0], "en")
    [(status,)] = town.query("SELECT status FROM anbu.resident WHERE id = %s", town.rid)
    assert status == "ended"


def test_a_pseudonymised_home_is_never_adopted_by_a_file(town: Town) -> None:
    town.course.end(town.sup, town.rid, "moved")
    with town.database.connection() as conn:
        retention.pseudonymise(conn, [town.rid], NOW)
    [(home,)] = town.query("SELECT home FROM anbu.resident WHERE id = %s", town.rid)
    assert home != "home-gap"
    report = _import(
        town, f"{HEADER}\nJN-NEW,새주민,1945,주소,청운효자동,010-2222-3333,,home-gap\n"
    )
    assert (report.created, report.updated, report.errors) == (1, 0, ())
    [(name, pseudonymised)] = town.query(
        "SELECT display_name, pseudonymised_at IS NOT NULL FROM anbu.resident WHERE id = %s",
        town.rid,
    )
    assert pseudonymised and name.startswith("종료 대상자")


# -- 6. a dong changes only by a transfer ---------------------------------------------------


def test_a_transfer_hands_open_alerts_to_the_new_dong_at_once(town: Town) -> None:
    escalated = town.alert("escalated", assigned_to=town.m1)
    town.course.transfer(town.sup, town.rid, town.d2)
    [(assigned, due)] = town.query(
        "SELECT assigned_to, next_action_at FROM anbu.alerts WHERE id = %s", escalated
    )
    assert assigned is None and due == NOW
    [(reason,)] = town.query(
        "SELECT reason FROM anbu.alert_events WHERE alert_id = %s ORDER BY id DESC LIMIT 1",
        escalated,
    )
    assert "이관" in reason
    town.alerts.process_due()
    told = town.query(
        "SELECT DISTINCT level FROM anbu.notifications WHERE alert_id = %s", escalated
    )
    assert told == [(1,)]  # the next step, told now rather than after the old dong's wait


def test_an_alert_assigned_to_a_manager_of_the_new_dong_keeps_them(town: Town) -> None:
    alert_id = town.alert("escalated", assigned_to=town.m2)
    town.course.transfer(town.sup, town.rid, town.d2)
    [(assigned,)] = town.query("SELECT assigned_to FROM anbu.alerts WHERE id = %s", alert_id)
    assert assigned == town.m2


def test_an_import_or_edit_never_changes_a_dong_behind_the_transfers_back(town: Town) -> None:
    report = _import(town, f"{HEADER}\nJN-9,홍길순,1940,주소,사직동,010-9876-1234,,home-gap\n")
    assert [(e.field, e.code) for e in report.errors] == [("dong_code", "dong_via_transfer")]
    assert TRANSFER_KO in problem_message(report.errors[0])
    with psycopg.connect(town.database.conninfo) as conn:
        district = district_of(conn, town.d1)
        values = {"external_id": "JN-9", "display_name": "홍길순", "dong_code": town.d2,
                  "mobile_phone": "010-9876-1234", "birth_year": "1940", "address": "주소"}  # fmt: skip
        with pytest.raises(Refused) as refused:
            save_resident(conn, values, district=district, actor="web:test",
                          resident_id=town.rid, now=NOW)  # fmt: skip
    assert [p.code for p in refused.value.problems] == ["dong_via_transfer"]
    [(dong,)] = town.query("SELECT dong_code FROM anbu.resident WHERE id = %s", town.rid)
    assert dong == town.d1


# -- 10. reassignment stays in the resident's dong ---------------------------------------------


def test_an_alert_is_reassigned_only_to_a_care_manager_of_the_residents_dong(town: Town) -> None:
    alert_id = town.alert()
    with pytest.raises(registry.InvalidChange) as refused:
        town.alerts.reassign(alert_id, town.sup, [town.d1, town.d2], town.m2)
    assert refused.value.code == "assignee_not_in_dong"
    town.alerts.reassign(alert_id, town.sup, [town.d1, town.d2], town.m1)
    [(assigned,)] = town.query("SELECT assigned_to FROM anbu.alerts WHERE id = %s", alert_id)
    assert assigned == town.m1


def test_a_resident_is_reassigned_only_to_a_care_manager_of_their_dong(town: Town) -> None:
    with town.database.connection() as conn:
        with pytest.raises(registry.InvalidChange) as refused:
            reassign_resident(conn, town.rid, [town.d1, town.d2], town.m2, town.sup, NOW)
        assert refused.value.code == "assignee_not_in_dong"
        assert reassign_resident(conn, town.rid, [town.d1, town.d2], town.m1, town.sup, NOW)
