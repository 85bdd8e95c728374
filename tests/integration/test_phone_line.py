"""The 돌봄콜 line and care-manager alert calls over real HTTP, signed both ways; phone numbers
never reach the logs."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

import httpx
import psycopg
import pytest
from fastapi.testclient import TestClient
from twilio.request_validator import RequestValidator

import registry
from alerts.intake import Intake
from alerts.policy import EscalationPolicy
from alerts.service import AlertService
from core.clock import SystemClock
from dashboards.app import create_app
from simulators import personas
from tests.calls_support import AUTH_TOKEN, CallsRig, calls_rig
from tests.integration.dashboard_support import login_page

DONG = "1111051500"
RESIDENT = "+821055501111"
MANAGER = "+821099990002"
LINE = "+82215880000"


def _seed(db_url: str) -> tuple[int, int]:
    with psycopg.connect(db_url) as conn:
        registry.add_dong(conn, DONG, "청운효자동", "종로구")
        rid = registry.add_resident(conn, "h-line", DONG, "이말순", RESIDENT)
        cm = registry.add_care_manager(conn, "cm-line", DONG, "최담당", MANAGER, "pw")
        return rid, cm


def _alerts(rig: CallsRig) -> AlertService:
    return AlertService(rig.database, rig.service, EscalationPolicy(), SystemClock(),
                        rig.settings.public_base_url)  # fmt: skip


def _dial_in(rig: CallsRig, caller: str, persona: personas.Persona) -> str:
    url = f"{rig.settings.public_base_url}/twilio/line"
    sid = rig.network.dial_in(caller, LINE, url, persona)
    assert rig.network.wait_idle(20)
    return sid


def test_pressing_2_is_a_help_request_for_the_dong_care_manager(db_url: str) -> None:
    rid, _ = _seed(db_url)
    with calls_rig(db_url) as rig:
        sid = _dial_in(rig, RESIDENT, personas.caller("2"))
        call = rig.network.call(sid)
        assert call is not None and call.errors == ()
        # 2 is help here as on the check-in call (1 fine, 2 help): one key for help everywhere
        assert call.heard[0].startswith("안부 돌봄콜입니다. 도움이 필요하시면 2번을 눌러 주세요.")
        assert "동 케어매니저 선생님께 바로 알리겠습니다" in call.heard[-1]
        assert "일일구" in call.heard[-1] and "119" not in call.heard[-1]
        assert rig.query("SELECT resident_id, choice FROM anbu.incoming_calls") == [(rid, "help")]
        assert Intake(rig.database, _alerts(rig), SystemClock()).run_once() == 1
        assert rig.query("SELECT resident_id, kind, severity FROM anbu.alerts") == [
            (rid, "help_request", "critical")
        ]


def test_pressing_1_leaves_a_message_heard_by_korean_speech_recognition(db_url: str) -> None:
    _seed(db_url)
    with calls_rig(db_url) as rig:
        sid = _dial_in(rig, RESIDENT, personas.caller("1", "가슴이 답답하고 식은땀이 나요"))
        call = rig.network.call(sid)
        assert call is not None and call.errors == ()
        assert call.heard[-1] == "말씀을 동 케어매니저 선생님께 전하겠습니다. 감사합니다."
        [(choice, recording, transcript, outcome)] = rig.query(
            "SELECT choice, recording_url, transcript, outcome FROM anbu.incoming_calls"
        )
        assert (choice, recording, transcript, outcome) == (
            "message",
            None,  # recognised as it was said: nothing was recorded
            "가슴이 답답하고 식은땀이 나요",
            "emergency",
        )
        assert Intake(rig.database, _alerts(rig), SystemClock()).run_once() == 1
        [(kind, severity)] = rig.query("SELECT kind, severity FROM anbu.alerts")
        assert (kind, severity) == ("voice_message", "critical")
        assert rig.query("SELECT reason_ko FROM anbu.findings") == [
            ("돌봄콜 메시지: 가슴이 답답하고 식은땀이 나요",)
        ]


def test_a_message_nobody_could_write_down_is_recorded_and_filed_at_warning(db_url: str) -> None:
    """Twilio's transcription serves no Korean: a message the recogniser missed is never lost
    nor filed at 관심 with no words; it reaches the care manager at 주의 with its recording,
    and a transcript that comes later and reads as urgent raises it."""
    _seed(db_url)
    with calls_rig(db_url) as rig:
        persona = personas.caller("1", "아이고 허리가 너무 아파 죽겄어", recognised=False)
        sid = _dial_in(rig, RESIDENT, persona)
        call = rig.network.call(sid)
        assert call is not None and call.errors == ()
        assert "삐 소리가 나면" in " ".join(call.heard)
        assert call.heard[-1] == "말씀을 동 케어매니저 선생님께 전하겠습니다. 감사합니다."
        [(recording, transcript)] = rig.query(
            "SELECT recording_url, transcript FROM anbu.incoming_calls"
        )
        assert transcript is None and recording.startswith(rig.network.base_url)
        intake = Intake(rig.database, _alerts(rig), SystemClock())
        assert intake.run_once() == 1
        assert rig.query("SELECT severity FROM anbu.alerts") == [("warning",)]
        [(reason, details)] = rig.query("SELECT reason_ko, details FROM anbu.findings")
        assert "녹음을 들어 주세요" in reason
        assert details["recording_url"] == recording
        assert intake.run_once() == 0  # reported once
        # a recogniser the district runs posts the transcript later: urgent, so reported again
        url = f"{rig.settings.public_base_url}/twilio/line/transcript"
        params = {"CallSid": sid, "TranscriptionText": "숨이 안 쉬어져요"}
        signature = RequestValidator(AUTH_TOKEN).compute_signature(url, params)
        with httpx.Client(timeout=30) as http:
            r = http.post(url, data=params, headers={"X-Twilio-Signature": signature})
        assert r.status_code == 204
        assert intake.run_once() == 1
        assert rig.query("SELECT max(severity) FROM anbu.alerts") == [("critical",)]


def test_two_messages_nobody_could_write_down_are_two_findings(db_url: str) -> None:
    """One resident, two unrecognised messages, one intake pass: neither is dropped."""
    _seed(db_url)
    with calls_rig(db_url) as rig:
        for said in ("허리가 아파서 그래", "아까 말한 거 말이여"):
            _dial_in(rig, RESIDENT, personas.caller("1", said, recognised=False))
        Intake(rig.database, _alerts(rig), SystemClock()).run_once()
        rows = rig.query("SELECT details->>'incoming_call_id' FROM anbu.findings ORDER BY id")
        assert len(rows) == 2 and rows[0] != rows[1]
        assert rig.query("SELECT count(*) FROM anbu.incoming_calls WHERE reported_at IS NULL") == [
            (0,)
        ]


def test_the_care_manager_reads_and_hears_the_message_on_the_alert_page(db_url: str) -> None:
    """The recording linked: fetched from the provider with the account's credentials and
    passed through, for the resident's dong only."""
    _seed(db_url)
    with psycopg.connect(db_url) as conn:
        registry.add_dong(conn, "1111053000", "사직동", "종로구")
        registry.add_care_manager(conn, "cm-other", "1111053000", "이다른", "+821099990003", "pw")
    with calls_rig(db_url) as rig:
        _dial_in(rig, RESIDENT, personas.caller("1", "허리가 아파서 그래", recognised=False))
        assert Intake(rig.database, _alerts(rig), SystemClock()).run_once() == 1
        [(alert_id,)] = rig.query("SELECT id FROM anbu.alerts")
        [(message_id,)] = rig.query("SELECT id FROM anbu.incoming_calls")
        settings = rig.settings.model_copy(
            update={"session_secret": "line-test-secret-0123456789abcdef"}
        )
        app = create_app(rig.database, settings, _alerts(rig))
        browser = TestClient(app)
        login_page(browser, "cm-line", "pw")
        page = browser.get(f"/alerts/{alert_id}").text
        assert "돌봄콜 메시지" in page and "받아쓰지 못했습니다. 녹음을 들어 주세요." in page
        assert f"/line-messages/{message_id}/recording" in page
        audio = browser.get(f"/line-messages/{message_id}/recording")
        assert audio.status_code == 200 and audio.headers["content-type"] == "audio/mpeg"
        assert audio.content.startswith(b"ID3")
        other = TestClient(app)
        login_page(other, "cm-other", "pw")
        assert other.get(f"/line-messages/{message_id}/recording").status_code == 404


def test_an_unknown_caller_is_told_how_to_reach_the_city(db_url: str) -> None:
    _seed(db_url)
    with calls_rig(db_url) as rig:
        sid = _dial_in(rig, "+821012345678", personas.caller("2"))
        call = rig.network.call(sid)
        assert call is not None
        assert "지역 콜센터 일이공" in call.heard[0] and len(call.heard) == 1
        assert rig.query("SELECT resident_id, choice FROM anbu.incoming_calls") == [(None, None)]
        assert Intake(rig.database, _alerts(rig), SystemClock()).run_once() == 0


def test_line_webhooks_with_a_bad_signature_change_nothing(db_url: str) -> None:
    _seed(db_url)
    with calls_rig(db_url) as rig:
        url = f"{rig.settings.public_base_url}/twilio/line"
        params = {"CallSid": "CAforged", "From": RESIDENT, "To": LINE, "CallStatus": "ringing"}
        forged = RequestValidator("not-the-token").compute_signature(url, params)
        with httpx.Client() as http:
            assert (
                http.post(url, data=params, headers={"X-Twilio-Signature": forged}).status_code
                == 403
            )
            menu = url + "/menu"
            good_for_other_url = RequestValidator(AUTH_TOKEN).compute_signature(url, params)
            r = http.post(menu, data={**params, "Digits": "1"},
                          headers={"X-Twilio-Signature": good_for_other_url})  # fmt: skip
            assert r.status_code == 403
            amd = f"{rig.settings.public_base_url}/twilio/amd/1"
            assert http.post(amd, data={"AnsweredBy": "human"}).status_code == 403
        assert rig.query("SELECT count(*) FROM anbu.incoming_calls") == [(0,)]
        # correctly signed, the same request is taken (so the 403s were about the signature)
        good = RequestValidator(AUTH_TOKEN).compute_signature(url, params)
        with httpx.Client() as http:
            assert (
                http.post(url, data=params, headers={"X-Twilio-Signature": good}).status_code == 200
            )
        assert rig.query("SELECT count(*) FROM anbu.incoming_calls") == [(1,)]


def test_a_care_manager_pressing_1_takes_the_critical_alert(db_url: str) -> None:
    rid, cm = _seed(db_url)
    with calls_rig(db_url) as rig:
        now = datetime.now(UTC)
        with psycopg.connect(db_url) as conn:
            conn.execute(
                """INSERT INTO anbu.alerts (resident_id, kind, severity, state, opened_at,
                       updated_at) VALUES (%s, 'help_request', 'critical', 'escalated', %s, %s)""",
                (rid, now, now),
            )
        [(alert_id,)] = rig.query("SELECT id FROM anbu.alerts")
        rig.network.set_persona(MANAGER, personas.PRESS_1)
        message = "청운효자동 주민이 돌봄콜로 도움을 요청했습니다."
        call_id = rig.service.call_care_manager(alert_id, cm, message)
        assert rig.service.call_care_manager(alert_id, cm, message) == call_id  # once per step
        assert rig.network.wait_idle(20)
        [call] = rig.network.calls
        assert call.to == MANAGER and call.machine_detection is None
        assert message in call.heard[0] and "1번을 눌러" in call.heard[0]
        assert call.heard[-1].startswith("확인되었습니다")
        assert rig.query("SELECT priority, outcome FROM anbu.calls") == [(0, "ok")]
        assert Intake(rig.database, _alerts(rig), SystemClock()).run_once() == 1
        [(state, by)] = rig.query("SELECT state, acknowledged_by FROM anbu.alerts")
        assert (state, by) == ("acknowledged", cm)


def test_phone_numbers_never_reach_the_logs(db_url: str, caplog: pytest.LogCaptureFixture) -> None:
    rid, _ = _seed(db_url)
    caplog.set_level(logging.DEBUG)
    with calls_rig(db_url) as rig:
        rig.network.set_persona(RESIDENT, personas.SCRIPTED["says_help"])
        rig.service.place_check_in(rid, None, 1)
        assert rig.network.wait_idle(20)
        _dial_in(rig, RESIDENT, personas.caller("1", "저 좀 도와주세요"))
        rig.network.set_persona(RESIDENT, personas.INVALID_NUMBER)
        rig.service.place_check_in(rid, None, 2)
        rig.service.send_sms(MANAGER, "[안부] 알림")
    assert caplog.records, "the calls code logs what it does"
    text = "\n".join(f"{r.getMessage()} {r.__dict__}" for r in caplog.records)
    for number in (RESIDENT, MANAGER, RESIDENT[3:], MANAGER[3:]):
        assert number not in text
