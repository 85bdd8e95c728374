"""The check-in script as TwiML: Korean first, keypad or speech, one re-prompt, a closing for
every outcome; who is calling said first; read slowly, a pause after every sentence."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from calls import twiml
from core.domain import CallOutcome

GATHER_URL = "https://anbu.example/twilio/gather/7"
CENTRE = "광산구 통합돌봄센터"


def _text(say: ET.Element) -> str:
    return " ".join(" ".join(part.split()) for part in say.itertext() if part.strip())


def _says(xml: str) -> list[str]:
    return [_text(say) for say in ET.fromstring(xml).iter("Say")]


def test_korean_greeting_says_who_calls_and_asks_by_keypad_or_speech() -> None:
    root = ET.fromstring(twiml.check_in(GATHER_URL, "ko", None, CENTRE))
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
    first = _text(gathers[0].find("Say"))  # type: ignore[arg-type]
    # older people hang up on unknown callers: who calls, first, and the resident as 어르신
    assert first.startswith("어르신, 안녕하세요. 광산구 통합돌봄센터에서 안부 전화 드렸습니다.")
    # a question, then one choice per sentence
    assert "괜찮으세요? 괜찮으시면 1번을 눌러 주세요. 도움이 필요하시면 2번을 눌러 주세요." in first
    # after two unanswered questions: a closing line that says what happens next, then hang up
    tail = [child.tag for child in root][2:]
    assert tail == ["Say", "Hangup"]
    assert "다시 전화" in _text(root[2])


def test_every_sentence_is_read_slowly_with_a_pause_after_it() -> None:
    root = ET.fromstring(twiml.check_in(GATHER_URL, "ko", None, CENTRE))
    say = root.find("Gather/Say")
    assert say is not None
    [prosody] = list(say)
    assert prosody.tag == "prosody" and prosody.get("rate") == twiml.SPEECH_RATE
    breaks = prosody.findall("break")
    assert len(breaks) == len(twiml.sentences(_text(say))) >= 5
    assert all(b.get("time") == twiml.PAUSE for b in breaks)
    # each sentence is text of its own between two pauses
    assert prosody.text == "어르신, 안녕하세요."
    assert [b.tail for b in breaks[:2]] == [
        "광산구 통합돌봄센터에서 안부 전화 드렸습니다.",
        "괜찮으세요?",
    ]


def test_english_residents_hear_english() -> None:
    says = _says(twiml.check_in(GATHER_URL, "en", None, "the Gwangsan care centre"))
    assert says[0].startswith("Hello. This is the Gwangsan care centre")
    assert "press 1" in says[0]
    root = ET.fromstring(twiml.check_in(GATHER_URL, "en"))
    assert root.find("Gather").get("language") == "en-US"  # type: ignore[union-attr]


def test_unknown_language_falls_back_to_korean() -> None:
    root = ET.fromstring(twiml.check_in(GATHER_URL, None))
    assert root.find("Gather/Say").get("language") == "ko-KR"  # type: ignore[union-attr]


@pytest.mark.parametrize("language", ["ko", "en"])
def test_every_outcome_has_its_own_closing(language: str) -> None:
    """Help, unwell, emergency and call-me-later never hear the closing for an unclear answer."""
    answers = [o for o in CallOutcome if o not in (
        CallOutcome.NO_ANSWER, CallOutcome.BUSY, CallOutcome.FAILED, CallOutcome.VOICEMAIL)]  # fmt: skip
    closings = {o: _says(twiml.closing(o, language))[0] for o in answers}
    assert len(set(closings.values())) == len(answers)
    for root in (ET.fromstring(twiml.closing(o, language)) for o in answers):
        assert root[-1].tag == "Hangup"


def test_closings_say_what_happens_next_in_the_programme_s_words() -> None:
    ko = {o: _says(twiml.closing(o, "ko"))[0] for o in CallOutcome}
    assert ko[CallOutcome.OK] == "네, 알겠습니다. 오늘도 건강하게 지내세요. 감사합니다."
    assert "동 케어매니저 선생님께 바로 알리겠습니다" in ko[CallOutcome.HELP]
    assert "동 케어매니저 선생님께 알려서" in ko[CallOutcome.UNWELL]
    # the emergency closing says 119, as people say it, twice
    assert ko[CallOutcome.EMERGENCY].count("일일구") == 2 and "119" not in ko[CallOutcome.EMERGENCY]
    assert "다시 전화" in ko[CallOutcome.CALL_BACK_LATER]
    assert "알아듣지 못했습니다" in ko[CallOutcome.UNCLEAR]
    assert ko[CallOutcome.UNCLEAR] == _says(twiml.closing(None, "ko"))[0]
    assert not any("복지사" in text for text in ko.values())
    assert "one one nine" in _says(twiml.closing(CallOutcome.EMERGENCY, "en"))[0]


def test_voicemail_says_who_called_and_leaves_a_short_message() -> None:
    root = ET.fromstring(twiml.voicemail("ko", None, CENTRE))
    assert [c.tag for c in root] == ["Say", "Hangup"]
    assert _says(twiml.voicemail("ko", None, CENTRE)) == [
        "광산구 통합돌봄센터의 안부 전화였습니다. 조금 뒤에 다시 전화드리겠습니다."
    ]


def test_a_fire_or_gas_resident_asking_for_help_hears_what_to_do_first() -> None:
    fire = _says(twiml.closing(CallOutcome.HELP, "ko", "fire_alarm"))
    assert fire == [
        "동 케어매니저 선생님께 바로 알리겠습니다. 연기나 불이 보이면 기다리지 마시고 "
        "바로 밖으로 나가 일일구에 전화해 주세요."
    ]
    gas = _says(twiml.closing(CallOutcome.HELP, "ko", "gas_alarm"))
    assert gas == [
        "동 케어매니저 선생님께 바로 알리겠습니다. 가스 밸브를 잠그시고 바로 밖으로 나가 주세요."
    ]
    assert "call one one nine" in _says(twiml.closing(CallOutcome.HELP, "en", "fire_alarm"))[0]
    assert "gas valve" in _says(twiml.closing(CallOutcome.HELP, "en", "gas_alarm"))[0]
    # any other call's help closing is the script's own
    plain = _says(twiml.closing(CallOutcome.HELP, "ko", None))[0]
    assert _says(twiml.closing(CallOutcome.HELP, "ko", "inactivity"))[0] == plain
    assert _says(twiml.closing(CallOutcome.HELP, "ko", "help_button"))[0] == plain


def test_an_ok_on_a_device_alert_says_the_care_manager_will_still_call() -> None:
    for kind in ("help_button", "fire_alarm", "gas_alarm", "water_leak"):
        ok = _says(twiml.closing(CallOutcome.OK, "ko", kind))
        assert ok == [
            "네, 알겠습니다. 그래도 동 케어매니저 선생님이 곧 확인 전화를 드릴 거예요."
        ], kind
    assert _says(twiml.closing(CallOutcome.OK, "ko", None)) == [
        "네, 알겠습니다. 오늘도 건강하게 지내세요. 감사합니다."
    ]


def test_the_gas_opening_covers_carbon_monoxide_and_the_retry_repeats_it() -> None:
    root = ET.fromstring(twiml.check_in(GATHER_URL, "ko", "gas_alarm", CENTRE))
    first, again = (_text(g.find("Say")) for g in root.findall("Gather"))  # type: ignore[arg-type]
    safety = (
        "가스 밸브를 잠가 주세요. 전기 스위치는 만지지 마세요. 창문을 열고 밖으로 나가 주세요. "
        "밖에서 일일구에 전화해 주세요."
    )
    assert first.startswith(
        "어르신, 안녕하세요. 광산구 통합돌봄센터에서 안부 전화 드렸습니다. "
        "댁의 가스 감지기가 울려 전화드렸습니다. " + safety
    )
    assert "냄새" not in first  # carbon monoxide has none
    assert again.startswith(safety) and again.endswith("2번을 눌러 주세요.")
    en = _says(twiml.check_in(GATHER_URL, "en", "gas_alarm"))
    assert "Turn off the gas valve. Don't touch any switch. Open a window and go outside." in en[0]


def test_device_alert_calls_open_with_the_greeting_and_what_happened() -> None:
    leak = _says(twiml.check_in(GATHER_URL, "ko", "water_leak", CENTRE))[0]
    assert leak.startswith(
        "어르신, 안녕하세요. 광산구 통합돌봄센터에서 안부 전화 드렸습니다. "
        "댁의 누수 감지기에서 물 새는 것이 감지되어 전화드렸습니다."
    )
    fire = _says(twiml.check_in(GATHER_URL, "ko", "fire_alarm", CENTRE))
    assert "연기나 불이 보이면 바로 밖으로 나가신 뒤 일일구에 전화해 주세요." in fire[0]
    assert fire[1].startswith("연기나 불이 보이면")  # the retry says it again


def test_no_answer_on_a_device_alert_says_the_care_manager_was_told() -> None:
    told = "대답이 없으셔서 동 케어매니저 선생님께 알렸습니다. 곧 연락드리겠습니다."
    for kind in ("help_button", "fire_alarm", "gas_alarm", "water_leak"):
        assert _says(twiml.check_in(GATHER_URL, "ko", kind))[-1] == told
        assert told in _says(twiml.voicemail("ko", kind))[-1]
    assert "다시 전화" in _says(twiml.check_in(GATHER_URL, "ko", None))[-1]  # a routine call
    assert "다시 전화" in _says(twiml.voicemail("ko"))[-1]


def test_119_is_spoken_as_il_il_gu() -> None:
    manager = _says(twiml.manager_alert("청운효자동 대상자 댁, 화재 감지기 경보입니다. 화재 의심: "
                                        "119에 먼저 신고하세요.", GATHER_URL))  # fmt: skip
    assert "화재 의심: 일일구에 먼저 신고하세요." in manager[0]
    lines = [
        *_says(twiml.line_menu(GATHER_URL)),
        *_says(twiml.line_unknown("종로구청 02-2148-1114")),
        *_says(twiml.line_help_taken()),
    ]
    assert sum("일일구에 전화해 주세요" in s for s in lines) == 3
    assert not any("119" in s for s in (*manager, *lines))
    assert twiml.spoken("1190번 버스, 119") == "1190번 버스, 일일구"  # only the number itself


def test_the_line_takes_a_message_by_korean_speech_then_by_recording() -> None:
    root = ET.fromstring(twiml.line_message("https://a/spoken", "https://a/recorded"))
    gather = root.find("Gather")
    assert gather is not None
    assert (gather.get("input"), gather.get("language")) == ("speech", "ko-KR")
    record = root.find("Record")
    assert record is not None and record.get("action") == "https://a/recorded"
    assert record.get("transcribe") is None  # Twilio's transcription serves no Korean


@pytest.mark.parametrize(
    "url",
    [
        "https://anbu.example.kr/twilio/answer/7/meal?week=0&tries=1&then=0",
        'https://anbu.example.kr/twilio/gather/8?a="b"&c=<d>',
        "http://127.0.0.1:8080/twilio/gather/9",
    ],
)
def test_a_script_built_once_carries_each_calls_own_url(url: str) -> None:
    """The scripts are kept built (twiml.URL_MARK in place of the URL): each answer still has
    its own call's URL exactly, in every place the script names it, and nothing else moves."""
    other = "https://anbu.example.kr/twilio/answer/1/meal?week=1&tries=2&then=1"
    for build in (
        lambda u: twiml.question(u, "식사는 하셨어요?"),
        lambda u: twiml.question(u, "무엇이 필요하세요?", words_only=True),
        lambda u: twiml.check_in(u, "ko", None, "광산구 돌봄센터"),
        lambda u: twiml.check_in(u, "en", "inactivity", "Gwangsan care centre"),
    ):
        xml = build(url)
        root = ET.fromstring(xml)
        named = [g.get("action") for g in root.iter("Gather")]
        named += [r.text for r in root.iter("Redirect")]
        assert named and all(n == url for n in named), xml
        assert twiml.URL_MARK not in xml
        assert _says(build(other)) == _says(xml)  # the same words for every call
        assert build(other) != xml
