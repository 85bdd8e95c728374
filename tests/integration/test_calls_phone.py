"""Check-in calls end to end over real HTTP: the real twilio client, the local phone network,
anbu's signed webhooks in a real uvicorn server, and a real PostgreSQL."""

from __future__ import annotations

import json
import logging
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime

import httpx
import psycopg
import pytest
from twilio.base.exceptions import TwilioRestException
from twilio.request_validator import RequestValidator

import registry
from calls.client import make_twilio_client
from calls.conversation import load_programme
from calls.service import CallService
from calls.webhooks import build_router
from core.clock import SystemClock
from core.config import Settings
from core.db import Database
from core.domain import CallOutcome
from dashboards.app import edged_webhooks
from simulators import personas
from simulators.personas import Persona
from simulators.phone import PhoneNetwork
from simulators.servers import free_port
from tests.calls_support import WebServer

ACCOUNT_SID = "AC" + "1" * 32
AUTH_TOKEN = "phone-test-token"
PHONE = "+821055501234"
DONG = "1111051500"


@dataclass
class Rig:
    settings: Settings
    network: PhoneNetwork
    service: CallService
    database: Database
    resident_id: int

    def place(self, persona: Persona, alert_id: int | None = None, attempt: int = 1) -> int:
        self.network.set_persona(PHONE, persona)
        call_id = self.service.place_check_in(self.resident_id, alert_id, attempt)
        assert self.network.wait_idle(20), "the simulated call did not end"
        return call_id

    def row(self, call_id: int) -> dict[str, object]:
        with psycopg.connect(self.database.conninfo) as conn:
            cur = conn.execute("SELECT * FROM anbu.calls WHERE id = %s", (call_id,))
            names = [d.name for d in cur.description or []]
            values = cur.fetchone()
        assert values is not None
        return dict(zip(names, values, strict=True))

    def events(self, call_id: int) -> list[tuple[str, dict[str, str]]]:
        with psycopg.connect(self.database.conninfo) as conn:
            rows = conn.execute(
                "SELECT status, params FROM anbu.call_events WHERE call_id = %s ORDER BY id",
                (call_id,),
            ).fetchall()
        return [(r[0], r[1]) for r in rows]


def _seed(db_url: str, language: str = "ko") -> int:
    with psycopg.connect(db_url) as conn:
        registry.add_dong(conn, DONG, "청운효자동", "종로구")
        return registry.add_resident(conn, "h-phone", DONG, "김영희", PHONE, language=language)


def _rig(db_url: str, language: str = "ko", api_base: str | None = None) -> Iterator[Rig]:
    network = PhoneNetwork(ACCOUNT_SID, AUTH_TOKEN)
    network.start()
    port = free_port()
    settings = Settings(
        database_url=db_url,
        twilio_account_sid=ACCOUNT_SID,
        twilio_auth_token=AUTH_TOKEN,
        twilio_api_base_url=api_base or network.base_url,
        public_base_url=f"http://127.0.0.1:{port}",
        call_ring_timeout_s=30,
        call_cps=100.0,
    )
    database = Database(db_url, min_size=1, max_size=4)
    database.open()
    service = CallService(database, make_twilio_client(settings), settings, SystemClock())
    web = WebServer(edged_webhooks(build_router(service, settings), settings), port)
    web.start()
    try:
        yield Rig(settings, network, service, database, _seed(db_url, language))
    finally:
        network.stop()
        web.stop()
        database.close()


@pytest.fixture
def rig(db_url: str) -> Iterator[Rig]:
    yield from _rig(db_url)


EXPECTED: dict[str, tuple[CallOutcome, str]] = {
    "press_1": (CallOutcome.OK, "completed"),
    "press_2": (CallOutcome.HELP, "completed"),
    "says_fine": (CallOutcome.OK, "completed"),
    "says_unwell": (CallOutcome.UNWELL, "completed"),
    "says_help": (CallOutcome.HELP, "completed"),
    "says_emergency": (CallOutcome.EMERGENCY, "completed"),
    "says_later": (CallOutcome.CALL_BACK_LATER, "completed"),
    "mumbles": (CallOutcome.UNCLEAR, "completed"),
    "silent": (CallOutcome.UNCLEAR, "completed"),
    "no_answer": (CallOutcome.NO_ANSWER, "no-answer"),
    "slow_answer": (CallOutcome.OK, "completed"),
    "too_slow": (CallOutcome.NO_ANSWER, "no-answer"),
    "busy": (CallOutcome.BUSY, "busy"),
    "voicemail": (CallOutcome.VOICEMAIL, "completed"),
    "machine_start": (CallOutcome.VOICEMAIL, "completed"),
    "fax": (CallOutcome.FAILED, "completed"),
    "unknown_amd": (CallOutcome.UNCLEAR, "completed"),
    "failed": (CallOutcome.FAILED, "failed"),
}


def test_every_scripted_persona_is_covered() -> None:
    assert set(EXPECTED) | {"invalid_number"} == set(personas.SCRIPTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_each_persona_ends_with_its_outcome(rig: Rig, name: str) -> None:
    outcome, status = EXPECTED[name]
    call_id = rig.place(personas.SCRIPTED[name])
    row = rig.row(call_id)
    assert row["outcome"] == outcome.value
    assert row["status"] == status
    assert row["ended_at"] is not None
    [simulated] = rig.network.calls
    assert simulated.errors == ()
    assert row["twilio_sid"] == simulated.sid
    assert simulated.callbacks[0] == "initiated"
    assert simulated.callbacks[-1] == status
    # the real client reaches the override for fetch too
    assert rig.service.client.calls(simulated.sid).fetch().status == status
    # phone numbers are never copied into the call's events
    assert PHONE not in json.dumps([params for _, params in rig.events(call_id)])


def test_a_machine_hears_the_voicemail_line_not_the_question(rig: Rig) -> None:
    call_id = rig.place(personas.VOICEMAIL)
    [simulated] = rig.network.calls
    assert simulated.heard == (
        "구청 통합돌봄센터의 안부 전화였습니다. 조금 뒤에 다시 전화드리겠습니다.",
    )
    statuses = [status for status, _ in rig.events(call_id)]
    assert "amd" in statuses
    assert rig.row(call_id)["answered_by"] == "machine_end_beep"


def test_pressing_1_is_heard_in_korean_and_stays_ok_after_completed(rig: Rig) -> None:
    call_id = rig.place(personas.PRESS_1)
    [simulated] = rig.network.calls
    # 'ringing' and 'answered' are not asked for (the voice request reports the answer)
    assert simulated.callbacks == ("initiated", "completed")
    assert simulated.answered_by == "human"
    assert simulated.heard[0].startswith("어르신, 안녕하세요. 구청 통합돌봄센터에서 안부 전화")
    # a routine call goes on to the day's conversation (pressing 1 again: yes, all is well)
    assert simulated.heard[-1] == load_programme().closing_ok
    row = rig.row(call_id)
    assert row["digits"] == "1"
    assert row["answered_by"] == "human"
    statuses = [status for status, _ in rig.events(call_id)]
    # the voice request recorded the answer ('in-progress'); the resident's answer came before
    # the final status, which did not overwrite OK
    assert statuses.index("in-progress") < statuses.index("gather") < statuses.index("completed")
    assert row["outcome"] == "ok"


def test_a_resident_asking_for_help_hears_what_happens_next(rig: Rig) -> None:
    rig.place(personas.SAY("도와주세요"))
    [simulated] = rig.network.calls
    assert simulated.answers == ("도와주세요",)
    assert "동 케어매니저 선생님께 바로 알리겠습니다" in simulated.heard[-1]


def test_silence_gets_one_reprompt_then_a_closing(rig: Rig) -> None:
    rig.place(personas.SILENT)
    [simulated] = rig.network.calls
    assert len(simulated.heard) == 3  # question, re-prompt, closing
    assert "다시 전화" in simulated.heard[-1]


def test_english_resident_hears_english(db_url: str) -> None:
    for rig in _rig(db_url, language="en"):
        rig.place(personas.PRESS_1)
        [simulated] = rig.network.calls
        assert simulated.heard[0].startswith("Hello")
        assert simulated.heard[-1] == "Thank you. Take care today."


def test_the_same_idempotency_key_places_one_call(rig: Rig) -> None:
    first = rig.place(personas.PRESS_1)
    second = rig.place(personas.PRESS_1)
    assert first == second
    assert len(rig.network.calls) == 1
    with psycopg.connect(rig.database.conninfo) as conn:
        now = datetime.now(UTC)
        row = conn.execute(
            """INSERT INTO anbu.alerts (resident_id, kind, severity, state, opened_at, updated_at)
               VALUES (%s, 'inactivity', 'warning', 'open', %s, %s) RETURNING id""",
            (rig.resident_id, now, now),
        ).fetchone()
    assert row is not None
    a1 = rig.place(personas.PRESS_1, alert_id=row[0], attempt=1)
    a1_again = rig.place(personas.PRESS_1, alert_id=row[0], attempt=1)
    a2 = rig.place(personas.PRESS_1, alert_id=row[0], attempt=2)
    assert a1 == a1_again and a2 != a1
    assert len(rig.network.calls) == 3
    assert rig.row(a1)["idempotency_key"] == f"alert:{row[0]}:attempt:1"


def test_concurrent_requests_for_one_key_place_one_call(rig: Rig) -> None:
    rig.network.set_persona(PHONE, personas.PRESS_1)
    ids: list[int] = []
    threads = [
        threading.Thread(
            target=lambda: ids.append(rig.service.place_check_in(rig.resident_id, None, 1))
        )
        for _ in range(4)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    assert rig.network.wait_idle(20)
    assert len(set(ids)) == 1 and len(ids) == 4
    assert len(rig.network.calls) == 1


def test_a_refused_number_is_failed_not_raised(rig: Rig) -> None:
    call_id = rig.place(personas.INVALID_NUMBER)
    row = rig.row(call_id)
    assert (row["status"], row["outcome"]) == ("failed", "failed")
    assert rig.network.calls == []
    [(first, _), (last, failed)] = rig.events(call_id)
    assert (first, last) == ("queued", "failed")
    assert failed == {"error": "TwilioRestException", "code": "21211", "http_status": "400"}


def test_an_unreachable_carrier_is_failed_not_raised(db_url: str) -> None:
    for rig in _rig(db_url, api_base=f"http://127.0.0.1:{free_port()}"):
        call_id = rig.service.place_check_in(rig.resident_id, None, 1)
        row = rig.row(call_id)
        assert (row["status"], row["outcome"]) == ("failed", "failed")


def test_a_webhook_with_a_bad_signature_is_refused_and_changes_nothing(rig: Rig) -> None:
    call_id = rig.place(personas.NO_ANSWER)
    before, events_before = rig.row(call_id), rig.events(call_id)
    url = f"{rig.settings.public_base_url}/twilio/gather/{call_id}"
    params = {"CallSid": before["twilio_sid"], "CallStatus": "in-progress", "Digits": "1"}
    good = RequestValidator(AUTH_TOKEN).compute_signature(url, params)
    forged = RequestValidator("not-the-token").compute_signature(url, params)
    with httpx.Client() as http:
        assert (
            http.post(url, data=params, headers={"X-Twilio-Signature": forged}).status_code == 403
        )
        assert http.post(url, data=params).status_code == 403
        tampered = {**params, "Digits": "2"}
        response = http.post(url, data=tampered, headers={"X-Twilio-Signature": good})
        assert response.status_code == 403
        status_url = f"{rig.settings.public_base_url}/twilio/status/{call_id}"
        completed = {"CallSid": str(before["twilio_sid"]), "CallStatus": "completed"}
        response = http.post(status_url, data=completed, headers={"X-Twilio-Signature": good})
        assert response.status_code == 403  # signed for another URL
        for odd in (b"\xff\xfe=", "é".encode("latin-1") + good.encode()):  # not base64 at all
            response = http.post(url, data=params, headers={"X-Twilio-Signature": odd})
            assert response.status_code == 403
    assert rig.row(call_id) == before
    assert rig.events(call_id) == events_before
    # a correctly signed request is accepted (so the 403s above are about the signature)
    with httpx.Client() as http:
        response = http.post(url, data=params, headers={"X-Twilio-Signature": good})
    assert response.status_code == 200
    assert len(rig.events(call_id)) == len(events_before) + 1


def test_a_signature_over_the_url_without_its_port_is_accepted(rig: Rig) -> None:
    """Twilio signs a URL with a port with or without it: the exact URL is tried first, then
    the library's whole check (the fast path must not refuse what Twilio sends)."""
    call_id = rig.place(personas.NO_ANSWER)
    url = f"{rig.settings.public_base_url}/twilio/gather/{call_id}"
    assert re.search(r":\d+/", url)
    without_port = re.sub(r":\d+/", "/", url, count=1)
    params = {"CallSid": str(rig.row(call_id)["twilio_sid"]), "CallStatus": "in-progress"}
    signature = RequestValidator(AUTH_TOKEN).compute_signature(without_port, params)
    events = len(rig.events(call_id))
    with httpx.Client() as http:
        response = http.post(url, data=params, headers={"X-Twilio-Signature": signature})
    assert response.status_code == 200
    assert len(rig.events(call_id)) == events + 1


def test_odd_webhook_paths_are_refused_before_anything_runs(
    rig: Rig, caplog: pytest.LogCaptureFixture
) -> None:
    """An id of thousands of digits (Python refuses to read past 4,300) is no route, not a 500;
    a path with a newline or tab (which the signed URL would not contain) is refused; a
    trailing slash is no redirect to whatever Host the caller named."""
    base = rig.settings.public_base_url
    call_id = rig.place(personas.NO_ANSWER)
    params = {"CallSid": str(rig.row(call_id)["twilio_sid"]), "CallStatus": "completed"}
    with caplog.at_level(logging.INFO), httpx.Client() as http:
        huge = http.post(f"{base}/twilio/answer/{'9' * 4301}/meal", data=params)
        assert huge.status_code == 404
        url = f"{base}/twilio/answer/{call_id}/me%0Aal"
        signed = RequestValidator(AUTH_TOKEN).compute_signature(url.replace("%0A", ""), params)
        forged = http.post(url, data=params, headers={"X-Twilio-Signature": signed})
        assert forged.status_code == 400
        slash = http.post(f"{base}/twilio/status/{call_id}/", data=params,
                          headers={"Host": "evil.example"})  # fmt: skip
        assert slash.status_code == 404 and "location" not in slash.headers
    assert "unhandled" not in caplog.text


def test_sms_reaches_the_network(rig: Rig) -> None:
    sid = rig.service.send_sms("+821099990000", "김영희님 안부 확인이 필요합니다.")
    assert sid is not None and sid.startswith("SM")
    [message] = rig.network.messages
    assert (message.sid, message.to, message.body) == (
        sid,
        "+821099990000",
        "김영희님 안부 확인이 필요합니다.",
    )
    assert message.from_ == rig.settings.twilio_from_number


def test_the_network_checks_basic_auth(rig: Rig) -> None:
    wrong = rig.settings.model_copy(update={"twilio_auth_token": "wrong-token"})
    client = make_twilio_client(wrong)
    with pytest.raises(TwilioRestException, match="HTTP 401") as refused:
        client.calls.create(to=PHONE, from_=wrong.twilio_from_number, url="http://x/voice")
    assert refused.value.status == 401
    assert rig.network.calls == []
