"""A resident's whole course on the real database and broker: transfer, end of service (alerts,
calls, plans, the gateway's broker account, the audit) and the retention purge."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, time, timedelta
from typing import Any

import paho.mqtt.client as mqtt
import psycopg
import pytest
from fastapi.testclient import TestClient
from paho.mqtt.enums import CallbackAPIVersion

import registry
from alerts import course, retention
from alerts.policy import EscalationPolicy
from alerts.service import AlertService
from calls.checkins import add_plan
from core.clock import VirtualClock
from core.config import Settings
from core.db import Database
from dashboards.app import create_app
from dashboards.residents import list_residents
from registry.broker_accounts import BrokerAccounts
from registry.changes import record_changes
from simulators.servers import EmbeddedMosquitto
from tests.integration.dashboard_support import RecordingTelephony, bearer

NOW = datetime(2026, 3, 2, 1, 0, tzinfo=UTC)
NAME, ADDRESS, NOTE = "홍길동순", "서울특별시 종로구 세종대로 209 삼층", "고혈압약복용중비밀"
MOBILE, LANDLINE, CONTACT_PHONE = "+821098761234", "+8227654321", "+821055512345"
CONTACT, EXTERNAL, SPOKEN, ACCESS = "김영희딸", "CASE-77-4412", "가슴이아파요살려", "현관비번4321"
RECORDING = "https://api.twilio.com/2010-04-01/Accounts/AC1/Recordings/RE1"
PERSONAL = (RECORDING, NAME, ADDRESS, NOTE, MOBILE, LANDLINE, CONTACT_PHONE, CONTACT, EXTERNAL, SPOKEN,
            ACCESS, "98761234", "7654321", "55512345")  # fmt: skip
GW_PASSWORD = "course-gateway-pw-1"
PW = "course-manager-pass-1"


def _town(conn: psycopg.Connection[Any], unique: str) -> dict[str, Any]:
    d1, d2, far = f"d1{unique}", f"d2{unique}", f"df{unique}"
    registry.add_dong(conn, d1, "청운동", f"종로구{unique}")
    registry.add_dong(conn, d2, "사직동", f"종로구{unique}")
    registry.add_dong(conn, far, "역삼동", f"강남구{unique}")
    ids = {
        "d1": d1, "d2": d2, "far": far,
        "m1": registry.add_care_manager(conn, f"m1{unique}", d1, "김담당", "+821011110001", PW),
        "m2": registry.add_care_manager(conn, f"m2{unique}", d2, "이담당", "+821011110002", PW),
        "sup": registry.add_care_manager(conn, f"su{unique}", d1, "박구청", "+821011110003", PW,
                                         role="supervisor"),
        "far_admin": registry.add_care_manager(conn, f"fa{unique}", far, "최강남",
                                               "+821011110004", PW, role="admin"),
        "resident": registry.add_resident(conn, f"h{unique}", d1, NAME, MOBILE),
    }  # fmt: skip
    rid = ids["resident"]
    conn.execute(
        """UPDATE anbu.resident SET address = %s, mobile_phone = %s, landline_phone = %s,
               notes = %s, access_notes = %s, external_id = %s, birth_year = 1938,
               consent_recorded_by = %s WHERE id = %s""",
        (ADDRESS, MOBILE, LANDLINE, NOTE, ACCESS, EXTERNAL, NAME, rid),
    )
    conn.execute(
        """INSERT INTO anbu.emergency_contact (resident_id, position, name, relationship, phone,
               may_call) VALUES (%s, 1, %s, '딸', %s, true)""",
        (rid, CONTACT, CONTACT_PHONE),
    )
    return ids


def _open_alert_with_waiting_call(conn: psycopg.Connection[Any], rid: int, unique: str) -> int:
    row = conn.execute(
        """INSERT INTO anbu.alerts (resident_id, kind, severity, state, opened_at, updated_at,
               next_action_at, call_attempts, awaiting_call)
           VALUES (%s, 'inactivity', 'warning', 'calling', %s, %s, %s, 1, true) RETURNING id""",
        (rid, NOW, NOW, NOW + timedelta(minutes=5)),
    ).fetchone()
    assert row is not None
    alert_id = int(row[0])
    call = conn.execute(
        """INSERT INTO anbu.calls (idempotency_key, resident_id, alert_id, purpose, status,
               created_at, updated_at, dial_state, attempt)
           VALUES (%s, %s, %s, 'check_in', 'queued', %s, %s, 'waiting', 1) RETURNING id""",
        (f"alert:{alert_id}:attempt:1:{unique}", rid, alert_id, NOW, NOW),
    ).fetchone()
    assert call is not None
    conn.execute("UPDATE anbu.alerts SET last_call_id = %s WHERE id = %s", (call[0], alert_id))
    return alert_id


def _routine_round_with_waiting_call(
    conn: psycopg.Connection[Any], rid: int, unique: str
) -> tuple[int, int, int]:
    plan = add_plan(conn, rid, [1, 2, 3, 4, 5], time(10))
    k = conn.execute(
        """INSERT INTO anbu.checkin_rounds (plan_id, resident_id, slot, next_action_at, attempts)
           VALUES (%s, %s, %s, %s, 1) RETURNING id""",
        (plan, rid, NOW, NOW + timedelta(minutes=3)),
    ).fetchone()
    assert k is not None
    call = conn.execute(
        """INSERT INTO anbu.calls (idempotency_key, resident_id, purpose, status, created_at,
               updated_at, dial_state, attempt, round_id)
           VALUES (%s, %s, 'routine', 'queued', %s, %s, 'waiting', 1, %s) RETURNING id""",
        (f"routine:{k[0]}:attempt:1:{unique}", rid, NOW, NOW, k[0]),
    ).fetchone()
    assert call is not None
    conn.execute("UPDATE anbu.checkin_rounds SET last_call_id = %s WHERE id = %s", (call[0], k[0]))
    return plan, int(k[0]), int(call[0])


def _connects(broker: EmbeddedMosquitto, gateway_id: str, password: str) -> int:
    """The CONNACK reason code a gateway gets on the broker's gateways' listener."""
    assert broker.pki is not None
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=gateway_id, protocol=mqtt.MQTTv5)
    client.username_pw_set(gateway_id, password)
    client.tls_set(ca_certs=str(broker.pki.ca))
    codes: list[int] = []
    done = threading.Event()

    def on_connect(_c: Any, _u: Any, _f: Any, rc: Any, _p: Any = None) -> None:
        codes.append(rc.value)
        done.set()

    client.on_connect = on_connect
    client.connect("127.0.0.1", broker.gateway_port)
    client.loop_start()
    try:
        assert done.wait(10.0), "no CONNACK"
    finally:
        client.disconnect()
        client.loop_stop()
    return codes[0]


def _course(database: Database, settings: Settings, broker: EmbeddedMosquitto | None,
            at: datetime = NOW) -> course.ResidentCourse:  # fmt: skip
    return course.ResidentCourse(database, settings, VirtualClock(at),
                                 broker.admin() if broker else None)  # fmt: skip


def test_ending_a_service_closes_alerts_cancels_calls_and_plans_and_revokes_the_gateway(
    database: Database, settings: Settings, broker: EmbeddedMosquitto, unique: str
) -> None:
    gw = f"gc{unique}"
    with database.connection() as conn:
        town = _town(conn, unique)
        rid = town["resident"]
        registry.add_gateway(conn, gw, rid)
        alert_id = _open_alert_with_waiting_call(conn, rid, unique)
        plan, round_id, round_call = _routine_round_with_waiting_call(conn, rid, unique)
    with BrokerAccounts(broker.admin()) as accounts:
        accounts.add_gateway(gw, GW_PASSWORD)
    assert _connects(broker, gw, GW_PASSWORD) == 0

    admin = broker.admin()
    configured = settings.model_copy(
        update={"broker_admin_username": admin.username, "broker_admin_password": admin.password}
    )
    assert course.broker_admin_of(settings) is None
    assert course.broker_admin_of(configured) == admin  # the session broker's plain listener
    rig = course.ResidentCourse(database, configured, VirtualClock(NOW),
                                course.broker_admin_of(configured))  # fmt: skip
    with pytest.raises(course.NotAllowed):  # a dong's care manager does not end services
        rig.end(town["m1"], rid, "died")
    with pytest.raises(registry.ResidentNotFound):  # another district's admin cannot see them
        rig.end(town["far_admin"], rid, "died")
    ending, revocation = rig.end(town["sup"], rid, "care_home")

    assert ending.closed_alerts == [alert_id]
    assert revocation.revoked == [gw] and revocation.pending == []
    assert _connects(broker, gw, GW_PASSWORD) in (0x86, 0x87)  # bad credentials / not authorized
    with database.connection() as conn:
        state, outcome, resolved_by = conn.execute(
            "SELECT state, outcome, resolved_by FROM anbu.alerts WHERE id = %s", (alert_id,)
        ).fetchone() or (None, None, None)
        assert (state, outcome, resolved_by) == ("resolved", "service_ended", town["sup"])
        events = conn.execute(
            """SELECT actor, from_state, to_state, reason FROM anbu.alert_events
               WHERE alert_id = %s ORDER BY id""",
            (alert_id,),
        ).fetchall()
        assert events[-1][:3] == (f"care_manager:{town['sup']}", "calling", "resolved")
        assert "요양시설 입소" in events[-1][3]
        calls = dict(conn.execute(
            "SELECT id, status FROM anbu.calls WHERE resident_id = %s", (rid,)).fetchall())  # fmt: skip
        assert set(calls.values()) == {"canceled"} and round_call in calls
        assert set(ending.cancelled_calls) == set(calls)
        assert conn.execute("SELECT active FROM anbu.checkin_plans WHERE id = %s",
                            (plan,)).fetchone() == (False,)  # fmt: skip
        k = conn.execute("""SELECT state, next_action_at, reported_at IS NOT NULL
                            FROM anbu.checkin_rounds WHERE id = %s""", (round_id,)).fetchone()  # fmt: skip
        assert k == ("cancelled", None, True)
        assert conn.execute(
            "SELECT status, end_reason, ended_at FROM anbu.resident WHERE id = %s", (rid,)
        ).fetchone() == ("ended", "care_home", NOW)
        audit = conn.execute(
            """SELECT care_manager_id, actor, at, field, old_value, new_value
               FROM anbu.resident_changes WHERE resident_id = %s ORDER BY id""",
            (rid,),
        ).fetchall()
    sup = town["sup"]
    assert (sup, None, NOW, "status", "active", "ended") in audit
    assert (sup, None, NOW, "end_reason", None, "care_home") in audit
    assert (sup, None, NOW, "broker_access", "active", "revocation_pending") in audit
    assert (sup, None, NOW, "broker_access", "revocation_pending", "revoked") in audit
    with pytest.raises(registry.ResidentEnded):
        rig.end(sup, rid, "died")


def test_without_broker_admin_the_revocation_is_pending_and_the_end_still_happens(
    database: Database, settings: Settings, broker: EmbeddedMosquitto, unique: str
) -> None:
    gw = f"gp{unique}"
    with database.connection() as conn:
        town = _town(conn, unique)
        registry.add_gateway(conn, gw, town["resident"])
    with BrokerAccounts(broker.admin()) as accounts:
        accounts.add_gateway(gw, GW_PASSWORD)
    ending, revocation = _course(database, settings, None).end(town["sup"], town["resident"],
                                                               "moved")  # fmt: skip
    assert ending.gateways == [gw]
    assert revocation.pending == [gw] and revocation.error == "no_broker_admin"
    assert _connects(broker, gw, GW_PASSWORD) == 0  # still in: nobody could tell the broker
    # the nightly run with credentials finishes it
    _, later = _course(database, settings, broker).purge()
    assert later.revoked == [gw]
    assert _connects(broker, gw, GW_PASSWORD) in (0x86, 0x87)
    with database.connection() as conn:
        assert conn.execute("SELECT revoked_at IS NOT NULL, revocation_pending FROM anbu.gateway "
                            "WHERE id = %s", (gw,)).fetchone() == (True, None)  # fmt: skip


def _all_text(conn: psycopg.Connection[Any]) -> str:
    """Every text, varchar and jsonb value of every anbu table, as one string."""
    cols = conn.execute(
        """SELECT c.table_name, c.column_name FROM information_schema.columns c
             JOIN information_schema.tables t USING (table_schema, table_name)
            WHERE c.table_schema = 'anbu' AND t.table_type = 'BASE TABLE'
              AND c.data_type IN ('text', 'character varying', 'jsonb', 'ARRAY')"""
    ).fetchall()
    parts: list[str] = []
    for table, column in cols:
        rows = conn.execute(
            psycopg.sql.SQL("SELECT {}::text FROM anbu.{} WHERE {} IS NOT NULL").format(
                psycopg.sql.Identifier(column), psycopg.sql.Identifier(table),
                psycopg.sql.Identifier(column))
        ).fetchall()  # fmt: skip
        parts += [str(r[0]) for r in rows]
    return "\n".join(parts)


def test_the_retention_purge_leaves_no_personal_data_and_keeps_the_counts(
    database: Database, settings: Settings, unique: str
) -> None:
    with database.connection() as conn:
        town = _town(conn, unique)
        rid = town["resident"]
        alert_id = _open_alert_with_waiting_call(conn, rid, unique)
        _routine_round_with_waiting_call(conn, rid, unique)
        conn.execute("UPDATE anbu.calls SET speech = %s, digits = '1' WHERE resident_id = %s",
                     (SPOKEN, rid))  # fmt: skip
        conn.execute(
            """INSERT INTO anbu.call_events (call_id, at, status, params)
               SELECT id, %s, 'completed', jsonb_build_object('SpeechResult', %s::text,
                      'CallStatus', 'completed') FROM anbu.calls WHERE resident_id = %s""",
            (NOW, SPOKEN, rid),
        )
        conn.execute(
            """INSERT INTO anbu.notifications (alert_id, care_manager_id, channel, body,
                   created_at) VALUES (%s, %s, 'sms', %s, %s)""",
            (alert_id, town["m1"], f"[안부] {NAME} 님 {ADDRESS} 확인 필요", NOW),
        )
        conn.execute(
            """INSERT INTO anbu.incoming_calls (twilio_sid, resident_id, received_at, choice,
                   recording_url, transcript, updated_at)
               VALUES (%s, %s, %s, 'message', %s, %s, %s)""",
            (f"CA{unique}", rid, NOW, RECORDING, SPOKEN, NOW),
        )
        conn.execute(
            """INSERT INTO anbu.findings (resident_id, kind, severity, raised_at, reason_ko,
                   reason_en, details)
               VALUES (%s, 'voice_message', 'watch', %s, %s, 'left a message',
                       jsonb_build_object('recording_url', %s::text))""",
            (rid, NOW, f"돌봄콜 메시지: {SPOKEN}", RECORDING),
        )
        # the routine conversation: an answer in the resident's words and a need from it
        conn.execute(
            """INSERT INTO anbu.call_answers (call_id, question, resident_id, label, confidence,
                   digits, speech, answered_at)
               SELECT id, 'need', resident_id, 'meals', 1.0, '2', %s, %s
                 FROM anbu.calls WHERE resident_id = %s ORDER BY id LIMIT 1""",
            (SPOKEN, NOW, rid),
        )
        conn.execute(
            """INSERT INTO anbu.service_requests (resident_id, category, words, note, created_at,
                   updated_at) VALUES (%s, 'meals', %s, %s, %s, %s)""",
            (rid, SPOKEN, f"{NAME} 님 도시락", NOW, NOW),
        )
        conn.execute(
            """INSERT INTO anbu.alert_events (alert_id, at, actor, from_state, to_state, reason)
               VALUES (%s, %s, 'system', 'calling', 'calling', %s)""",
            (alert_id, NOW, f"음성 메시지: 돌봄콜 메시지: {SPOKEN}"),
        )
        record_changes(conn, rid, NOW, [
            ("display_name", "홍**순", "홍**순", True), ("external_id", None, EXTERNAL, False),
        ], care_manager_id=None, actor="cli:test")  # fmt: skip
        other = registry.add_resident(conn, f"o{unique}", town["d1"], "남은사람", "+821077778888")

    def counts() -> tuple[int, ...]:
        with database.connection() as conn:
            row = conn.execute(
                """SELECT (SELECT count(*) FROM anbu.alerts WHERE resident_id = %(r)s),
                          (SELECT count(*) FROM anbu.alert_events e JOIN anbu.alerts a
                             ON a.id = e.alert_id WHERE a.resident_id = %(r)s),
                          (SELECT count(*) FROM anbu.calls WHERE resident_id = %(r)s),
                          (SELECT count(*) FROM anbu.checkin_rounds WHERE resident_id = %(r)s)""",
                {"r": rid},
            ).fetchone()
        assert row is not None
        return tuple(row)

    _course(database, settings, None).end(town["sup"], rid, "died")
    before = counts()
    with database.connection() as conn:
        text = _all_text(conn)
    assert NAME in text and SPOKEN in text  # the harness finds them while they are there

    retention = timedelta(days=settings.retention_days_after_end)
    assert retention == timedelta(days=1825)
    early, _ = _course(database, settings, None, NOW + retention - timedelta(days=1)).purge()
    assert early == 0
    purged, _ = _course(database, settings, None, NOW + retention).purge()
    assert purged == 1
    with database.connection() as conn:
        text = _all_text(conn)
        leftover = [p for p in PERSONAL if p in text]
        assert leftover == []
        assert conn.execute("SELECT birth_year, pseudonymised_at FROM anbu.resident WHERE id = %s",
                            (rid,)).fetchone() == (1930, NOW + retention)  # fmt: skip
        assert conn.execute("SELECT display_name FROM anbu.resident WHERE id = %s",
                            (other,)).fetchone() == ("남은사람",)  # fmt: skip
        assert conn.execute(
            """SELECT actor, field, new_value FROM anbu.resident_changes WHERE resident_id = %s
               ORDER BY id DESC LIMIT 1""", (rid,)).fetchone() == (
            "system:retention", "pseudonymised", "true")  # fmt: skip
    assert counts() == before
    again, _ = _course(database, settings, None, NOW + 2 * retention).purge()
    assert again == 0  # idempotent


def test_a_transfer_moves_the_resident_to_the_other_dongs_manager(
    database: Database, settings: Settings, unique: str
) -> None:
    with database.connection() as conn:
        town = _town(conn, unique)
        conn.execute("UPDATE anbu.resident SET care_manager_id = %s WHERE id = %s",
                     (town["m1"], town["resident"]))  # fmt: skip
    rid, rig = town["resident"], _course(database, settings, None)
    with pytest.raises(registry.InvalidChange):  # another district's dong
        rig.transfer(town["sup"], rid, town["far"])
    with pytest.raises(registry.InvalidChange):  # the old dong's manager is not the new one's
        rig.transfer(town["sup"], rid, town["d2"], town["m1"])
    assert rig.transfer(town["sup"], rid, town["d2"], town["m2"]) == town["d1"]
    until = NOW + timedelta(days=30)
    with database.connection() as conn:
        assert [r.id for r in list_residents(conn, town["d1"])] == []
        assert [r.id for r in list_residents(conn, town["d2"])] == [rid]
        with pytest.raises(registry.ResidentNotFound):
            registry.set_status(conn, rid, "away", until, town["m1"], now=NOW)
        assert registry.set_status(conn, rid, "away", until, town["m2"], now=NOW) == [
            "status", "status_until"]  # fmt: skip
        audit = conn.execute(
            """SELECT care_manager_id, field, old_value, new_value FROM anbu.resident_changes
               WHERE resident_id = %s ORDER BY id""", (rid,)).fetchall()  # fmt: skip
    assert audit[:2] == [
        (town["sup"], "dong_code", town["d1"], town["d2"]),
        (town["sup"], "care_manager_id", str(town["m1"]), str(town["m2"])),
    ]
    with database.connection() as conn:
        assert conn.execute("SELECT care_manager_id FROM anbu.resident WHERE id = %s",
                            (rid,)).fetchone() == (town["m2"],)  # fmt: skip
    # the district's supervisor (of dong 1) still runs the course of a resident of dong 2
    assert rig.pause(town["sup"], rid, until).changed == ["status"]


def test_a_pause_with_an_end_date_by_a_supervisor(
    database: Database, settings: Settings, unique: str
) -> None:
    with database.connection() as conn:
        town = _town(conn, unique)
        rid = town["resident"]
        alert_id = _open_alert_with_waiting_call(conn, rid, unique)
        conn.execute("UPDATE anbu.alerts SET state = 'escalated', awaiting_call = false "
                     "WHERE id = %s", (alert_id,))  # fmt: skip
    rig = _course(database, settings, None)
    with pytest.raises(registry.InvalidChange):
        rig.pause(town["sup"], rid, None)  # a pause needs its end date
    change = rig.pause(town["sup"], rid, NOW + timedelta(days=60))
    assert change.changed == ["status", "status_until"]
    assert change.alerts.closed == [alert_id]
    with database.connection() as conn:
        assert conn.execute("SELECT status, status_until FROM anbu.resident WHERE id = %s",
                            (rid,)).fetchone() == ("hospital", NOW + timedelta(days=60))  # fmt: skip


def test_the_api_lets_only_the_districts_supervisor_or_admin_run_a_course(
    database: Database, db_url: str, unique: str
) -> None:
    with database.connection() as conn:
        town = _town(conn, unique)
        alert_id = _open_alert_with_waiting_call(conn, town["resident"], unique)
    clock = VirtualClock(NOW)
    alerts = AlertService(database, RecordingTelephony(), EscalationPolicy(), clock,
                          "http://dashboard.test")  # fmt: skip
    settings = Settings(database_url=db_url, session_secret=f"test-secret-{unique}")
    client = TestClient(create_app(database, settings, alerts))
    rid = town["resident"]
    manager = bearer(client, f"m1{unique}", PW)
    far = bearer(client, f"fa{unique}", PW)
    sup = bearer(client, f"su{unique}", PW)
    end = f"/api/v1/residents/{rid}/end"
    refused = client.post(end, json={"reason": "moved"}, headers=manager)
    assert refused.status_code == 403
    problem = refused.json()
    assert (problem["code"], problem["detail"], problem["detail_en"]) == (
        "forbidden",
        "구 통합돌봄 담당자와 구 시스템 관리자만 할 수 있습니다.",
        "Only the district's supervisors and admins may do this.",
    )
    assert client.post(end, json={"reason": "moved"}, headers=far).status_code == 404
    assert client.post(end, json={"reason": "gone"}, headers=sup).status_code == 422
    transfer = f"/api/v1/residents/{rid}/transfer"
    for body, ko, en in (
        ({"dong_code": town["far"]}, "관할 구에 없는 행정동입니다.", "No such dong"),
        ({"dong_code": town["d1"]}, "이미 해당 행정동의 대상자입니다.", "already belongs"),
        ({"dong_code": town["d2"], "care_manager_id": town["m1"]},
         "선택한 담당자는 옮겨 갈 행정동의 담당자가 아닙니다.", "not a care manager of the dong"),
    ):  # fmt: skip
        said = client.post(transfer, json=body, headers=sup)
        assert said.status_code == 422, said.text
        assert said.json()["detail"] == ko and en in said.json()["detail_en"]
    moved = client.post(f"/api/v1/residents/{rid}/transfer", json={"dong_code": town["d2"]},
                        headers=sup)  # fmt: skip
    assert moved.status_code == 200, moved.text
    assert moved.json() == {"resident_id": rid, "from_dong": town["d1"], "to_dong": town["d2"]}
    ended = client.post(end, json={"reason": "moved"}, headers=sup)
    assert ended.status_code == 200, ended.text
    assert ended.json()["alerts_closed"] == [alert_id]
    assert ended.json()["gateways_pending"] == []
    assert client.post(end, json={"reason": "moved"}, headers=sup).status_code == 409


def test_the_command_line_ends_a_service_and_says_the_revocation_is_pending(
    database: Database, db_url: str, unique: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from typer.testing import CliRunner

    from anbu.cli import app, course_cmds  # noqa: F401

    gw = f"gl{unique}"
    with database.connection() as conn:
        town = _town(conn, unique)
        registry.add_gateway(conn, gw, town["resident"])
    monkeypatch.setenv("ANBU_DATABASE_URL", db_url)
    monkeypatch.delenv("ANBU_BROKER_ADMIN_USERNAME", raising=False)
    rid = str(town["resident"])
    refused = CliRunner().invoke(app, ["residents", "end", rid, "--reason", "moved",
                                       "--by", f"m1{unique}"])  # fmt: skip
    assert refused.exit_code == 2, refused.output
    assert "구 통합돌봄 담당자와 구 시스템 관리자만 할 수 있습니다." in refused.output
    ended = CliRunner().invoke(app, ["residents", "end", rid, "--reason", "moved",
                                     "--by", f"su{unique}"])  # fmt: skip
    assert ended.exit_code == 0, ended.output
    assert "서비스 종료" in ended.output and f"revocation pending (no_broker_admin): {gw}" in (
        ended.output)  # fmt: skip
    purged = CliRunner().invoke(app, ["residents", "purge"])
    assert purged.exit_code == 0, purged.output
    assert "pseudonymised: 0" in purged.output and "pending 1" in purged.output
    with database.connection() as conn:
        assert conn.execute("SELECT status FROM anbu.resident WHERE id = %s",
                            (town["resident"],)).fetchone() == ("ended",)  # fmt: skip


def test_the_purge_goes_batch_by_batch_until_none_is_due(
    database: Database, settings: Settings, unique: str
) -> None:
    with database.connection() as conn:
        town = _town(conn, unique)
        second = registry.add_resident(conn, f"s{unique}", town["d1"], "둘째분", "+821033334444")
    rig = _course(database, settings, None)
    for rid in (town["resident"], second):
        rig.end(town["sup"], rid, "moved")
    later = NOW + timedelta(days=settings.retention_days_after_end)
    assert retention.purge_due(database, later, timedelta(days=1), batch=1) == 2
    assert retention.purge_due(database, later, timedelta(days=1), batch=1) == 0
    with database.connection() as conn:
        names = conn.execute(
            "SELECT display_name FROM anbu.resident WHERE id = ANY(%s) ORDER BY id",
            ([town["resident"], second],),
        ).fetchall()
    assert names == [(f"종료 대상자 {town['resident']}",), (f"종료 대상자 {second}",)]
