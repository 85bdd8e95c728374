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
