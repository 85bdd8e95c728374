"""The check-in script as TwiML: Korean first, keypad or speech, one re-prompt, a closing."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from calls import twiml
from core.domain import CallOutcome

GATHER_URL = "https://anbu.example/twilio/gather/7"


def test_korean_greeting_asks_by_keypad_or_speech() -> None:
    root = ET.fromstring(twiml.check_in(GATHER_URL, "ko"))
    gathers = root.findall("Gather")
    assert len(gathers) == 2  # the question and one re-prompt
    for gather in gathers:
        assert gather.get("input") == "dtmf speech"
        assert gather.get("language") == "ko-KR"
        assert gather.get("numDigits") == "1"
        assert gather.get("timeout") == "8"
        assert gather.get("action") == GATHER_URL
        say = gather.find("Say")
        assert say is not None
        assert say.get("language") == "ko-KR"
        assert say.get("voice") == "Polly.Seoyeon"
    first = gathers[0].find("Say")
    assert first is not None and first.text is not None
    assert first.text.startswith("안녕하세요, 안부 확인 전화입니다.")
    assert "1번" in first.text and "2번" in first.text
    # after two unanswered questions: a closing line that says what happens next, then hang up
    tail = [child.tag for child in root][2:]
    assert tail == ["Say", "Hangup"]
    assert "다시 전화" in (root[2].text or "")


def test_english_residents_hear_english() -> None:
    root = ET.fromstring(twiml.check_in(GATHER_URL, "en"))
    gather = root.find("Gather")
    assert gather is not None and gather.get("language") == "en-US"
    say = gather.find("Say")
    assert say is not None and "press 1" in (say.text or "")


def test_unknown_language_falls_back_to_korean() -> None:
    root = ET.fromstring(twiml.check_in(GATHER_URL, None))
    assert root.find("Gather/Say").get("language") == "ko-KR"  # type: ignore[union-attr]


def test_closings_say_what_happens_next() -> None:
    ok = ET.fromstring(twiml.closing(CallOutcome.OK, "ko"))
    help_ = ET.fromstring(twiml.closing(CallOutcome.HELP, "ko"))
    unclear = ET.fromstring(twiml.closing(None, "ko"))
    assert ok.find("Say").text == "감사합니다. 건강하세요."  # type: ignore[union-attr]
    assert "담당 복지사께 바로 알리겠습니다" in (help_.find("Say").text or "")  # type: ignore[union-attr]
    assert "복지사" in (unclear.find("Say").text or "")  # type: ignore[union-attr]
    for root in (ok, help_, unclear):
        assert root[-1].tag == "Hangup"


def test_voicemail_leaves_a_short_message() -> None:
    root = ET.fromstring(twiml.voicemail("ko"))
    assert [c.tag for c in root] == ["Say", "Hangup"]
    assert root.find("Gather") is None


def _says(xml: str) -> list[str]:
    return [say.text or "" for say in ET.fromstring(xml).iter("Say")]


def test_a_fire_or_gas_resident_asking_for_help_hears_what_to_do_first() -> None:
    fire = _says(twiml.closing(CallOutcome.HELP, "ko", "fire_alarm"))
    assert fire == [
        "담당 복지사께 바로 알리겠습니다. 연기나 불이 보이면 기다리지 마시고 "
        "바로 밖으로 나가 일일구에 전화해 주세요."
    ]
    gas = _says(twiml.closing(CallOutcome.HELP, "ko", "gas_alarm"))
    assert gas == ["담당 복지사께 바로 알리겠습니다. 가스 밸브를 잠그고 바로 밖으로 나가 주세요."]
    assert "call one one nine" in _says(twiml.closing(CallOutcome.HELP, "en", "fire_alarm"))[0]
    assert "gas valve" in _says(twiml.closing(CallOutcome.HELP, "en", "gas_alarm"))[0]
    # any other call's help closing is as before
    assert "조금만 기다려" in _says(twiml.closing(CallOutcome.HELP, "ko", "inactivity"))[0]
    assert "조금만 기다려" in _says(twiml.closing(CallOutcome.HELP, "ko", "help_button"))[0]


def test_an_ok_on_a_device_alert_says_the_care_manager_will_still_call() -> None:
    for kind in ("help_button", "fire_alarm", "gas_alarm", "water_leak"):
        ok = _says(twiml.closing(CallOutcome.OK, "ko", kind))
        assert ok == ["감사합니다. 담당 복지사께서 곧 확인 연락을 드리겠습니다."], kind
    assert _says(twiml.closing(CallOutcome.OK, "ko", None)) == ["감사합니다. 건강하세요."]


def test_the_gas_opening_covers_carbon_monoxide_and_the_retry_repeats_it() -> None:
    root = ET.fromstring(twiml.check_in(GATHER_URL, "ko", "gas_alarm"))
    first, again = (g.find("Say").text or "" for g in root.findall("Gather"))  # type: ignore[union-attr]
    safety = (
        "가스 밸브를 잠그시고, 전기 스위치는 켜지도 끄지도 마시고, 창문을 연 뒤 밖으로 나가 주세요."
    )
    assert first.startswith(
        "어르신, 안녕하세요. 안부 확인 전화입니다. 댁의 가스 감지기가 울려 전화드렸습니다. "
        + safety
    )
    assert "냄새" not in first  # carbon monoxide has none
    assert again.startswith(safety) and again.endswith("2번을 눌러 주세요.")
    en = _says(twiml.check_in(GATHER_URL, "en", "gas_alarm"))
    assert "Turn off the gas valve, don't touch any switch, open a window and go outside." in en[0]


def test_device_alert_calls_open_with_the_greeting_and_what_happened() -> None:
    leak = _says(twiml.check_in(GATHER_URL, "ko", "water_leak"))[0]
    assert leak.startswith(
        "어르신, 안녕하세요. 안부 확인 전화입니다. "
        "댁의 누수 감지기에서 물 새는 것이 감지되어 전화드렸습니다."
    )
    fire = _says(twiml.check_in(GATHER_URL, "ko", "fire_alarm"))
    assert "연기나 불이 보이면 바로 밖으로 나가신 뒤 일일구에 전화해 주세요." in fire[0]
    assert fire[1].startswith("연기나 불이 보이면")  # the retry says it again
    assert not any("센터" in s for s in fire)


def test_no_answer_on_a_device_alert_says_the_care_manager_was_told() -> None:
    told = "응답이 없으셔서 담당 복지사께 알렸습니다. 곧 연락드리겠습니다."
    for kind in ("help_button", "fire_alarm", "gas_alarm", "water_leak"):
        assert _says(twiml.check_in(GATHER_URL, "ko", kind))[-1] == told
        assert told in _says(twiml.voicemail("ko", kind))[-1]
    assert "다시 전화" in _says(twiml.check_in(GATHER_URL, "ko", None))[-1]  # a routine call
    assert "다시 전화" in _says(twiml.voicemail("ko"))[-1]


def test_119_is_spoken_as_il_il_gu() -> None:
    manager = _says(twiml.manager_alert("청운효자동 대상자 댁 화재 감지기 경보 — 화재 의심: "
                                        "119에 먼저 신고하세요", GATHER_URL))  # fmt: skip
    assert "화재 의심: 일일구에 먼저 신고하세요" in manager[0]
    lines = [
        *_says(twiml.line_menu(GATHER_URL)),
        *_says(twiml.line_unknown("종로구청 02-2148-1114")),
        *_says(twiml.line_help_taken()),
    ]
    assert sum("일일구로 전화해 주세요" in s for s in lines) == 3
    assert not any("119" in s for s in (*manager, *lines))
    assert twiml.spoken("1190번 버스, 119") == "1190번 버스, 일일구"  # only the number itself
