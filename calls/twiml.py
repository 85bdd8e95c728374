"""The check-in call script as TwiML: Korean first, English for residents who chose it."""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from typing import Any
from xml.sax.saxutils import escape

from twilio.twiml.voice_response import VoiceResponse

from core.domain import CallOutcome


@dataclass(frozen=True, slots=True)
class Script:
    """Every line of the check-in call in one language. One choice per sentence: `_say` reads
    each sentence slowly with a pause after it."""

    language: str  # BCP-47 tag for <Say> and speech recognition
    voice: str
    hello: str  # who is calling, first: "{caller}" is the programme's centre (settings)
    question: str  # are you all right: 1 fine, 2 help, by keypad or speech
    reprompt: str
    no_input: str
    voicemail: str
    closings: dict[CallOutcome, str]  # one for every outcome an answer can have


KOREAN = Script(
    language="ko-KR",
    voice="Polly.Seoyeon",
    hello="어르신, 안녕하세요. {caller}에서 안부 전화 드렸습니다.",
    question=(
        "괜찮으세요? 괜찮으시면 1번을 눌러 주세요. 도움이 필요하시면 2번을 눌러 주세요. "
        "말씀으로 하셔도 됩니다."
    ),
    reprompt=(
        "다시 한 번 여쭙겠습니다. 괜찮으시면 1번을 눌러 주세요. "
        "도움이 필요하시면 2번을 눌러 주세요."
    ),
    no_input="대답이 없으셔서 조금 뒤에 다시 전화드리겠습니다.",
    voicemail="{caller}의 안부 전화였습니다. 조금 뒤에 다시 전화드리겠습니다.",
    closings={
        CallOutcome.OK: "네, 알겠습니다. 오늘도 건강하게 지내세요. 감사합니다.",
        CallOutcome.HELP: (
            "네, 알겠습니다. 동 케어매니저 선생님께 바로 알리겠습니다. "
            "동 케어매니저 선생님이 곧 전화드릴 거예요."
        ),
        CallOutcome.UNWELL: (
            "몸이 불편하시군요. 동 케어매니저 선생님께 알려서 곧 연락드리겠습니다. "
            "갑자기 더 아프시면 바로 119에 전화해 주세요."
        ),
        CallOutcome.EMERGENCY: (
            "지금 바로 동 케어매니저 선생님께 알리겠습니다. 위급하시면 전화를 끊고 바로 119에 "
            "전화해 주세요. 다시 말씀드립니다. 119입니다."
        ),
        CallOutcome.CALL_BACK_LATER: "네, 알겠습니다. 조금 뒤에 다시 전화드리겠습니다.",
        CallOutcome.UNCLEAR: (
            "죄송합니다. 잘 알아듣지 못했습니다. 다시 연락드리겠습니다. "
            "급하시면 119에 전화해 주세요."
        ),
    },
)

ENGLISH = Script(
    language="en-US",
    voice="Polly.Joanna",
    hello="Hello. This is {caller}, with your check-in call.",
    question=(
        "Are you all right? If you are fine, press 1. If you need help, press 2. "
        "You can also just tell us."
    ),
    reprompt="Let me ask once more. If you are fine, press 1. If you need help, press 2.",
    no_input="We did not hear an answer. We will call again shortly.",
    voicemail="This was a check-in call from {caller}. We will call again shortly.",
    closings={
        CallOutcome.OK: "Thank you. Take care today.",
        CallOutcome.HELP: (
            "All right. We are letting your care manager know right away. "
            "They will contact you soon. Please wait a moment."
        ),
        CallOutcome.UNWELL: (
            "We are sorry you are not feeling well. We will let your care manager know, and "
            "they will contact you soon. If you suddenly feel worse, call one one nine."
        ),
        CallOutcome.EMERGENCY: (
            "We are letting your care manager know right now. If this is an emergency, hang up "
            "and call one one nine now. Again: one one nine."
        ),
        CallOutcome.CALL_BACK_LATER: "All right. We will call again a little later.",
        CallOutcome.UNCLEAR: (
            "Sorry, we did not understand. We will contact you again. "
            "If it is urgent, call one one nine."
        ),
    },
)

SCRIPTS: dict[str, Script] = {"ko": KOREAN, "en": ENGLISH}

GATHER_TIMEOUT_S = 8

# A call about something the resident's own device reported opens with what happened, in plain
# words, before the same question (1 fine, 2 help): alert kind -> language -> opening.
# what a resident must do at once on a fire or gas alarm: said in the opening, again before the
# re-prompt, and in the closing and voicemail (alert kind -> language -> line)
SAFETY_LINES: dict[str, dict[str, str]] = {
    "fire_alarm": {
        "ko": "연기나 불이 보이면 바로 밖으로 나가신 뒤 119에 전화해 주세요.",
        "en": "If you see smoke or fire, go outside now and then call one one nine.",
    },
    "gas_alarm": {
        "ko": "가스 밸브를 잠가 주세요. 전기 스위치는 만지지 마세요. 창문을 열고 밖으로 "
        "나가 주세요. 밖에서 119에 전화해 주세요.",
        "en": "Turn off the gas valve. Don't touch any switch. Open a window and go outside. "
        "Then call one one nine from outside.",
    },
}
OPENINGS: dict[str, dict[str, str]] = {
    "help_button": {
        "ko": "댁의 응급호출기가 눌려 전화드렸습니다.",
        "en": "Your emergency button was pressed, so we are calling you.",
    },
    "fire_alarm": {
        "ko": "댁의 화재 감지기가 울려 전화드렸습니다. " + SAFETY_LINES["fire_alarm"]["ko"],
        "en": "Your smoke alarm went off, so we are calling you. "
        + SAFETY_LINES["fire_alarm"]["en"],
    },
    "gas_alarm": {
        "ko": "댁의 가스 감지기가 울려 전화드렸습니다. " + SAFETY_LINES["gas_alarm"]["ko"],
        "en": "Your gas alarm went off, so we are calling you. " + SAFETY_LINES["gas_alarm"]["en"],
    },
    "water_leak": {
        "ko": "댁의 누수 감지기에서 물 새는 것이 감지되어 전화드렸습니다.",
        "en": "Your water leak detector found water, so we are calling you.",
    },
}

# The care manager is told of these alerts as the call is placed: no answer is not followed by
# another call from us (the care manager calls), and an OK does not close the alert.
_TOLD_KO = "대답이 없으셔서 동 케어매니저 선생님께 알렸습니다. 곧 연락드리겠습니다."
_TOLD_EN = (
    "We did not hear an answer, so we have told your care manager. They will contact you soon."
)
NO_ANSWER: dict[str, str] = {"ko": _TOLD_KO, "en": _TOLD_EN}
# alert kind -> language -> outcome -> closing, where it differs from the script's own
CLOSINGS: dict[str, dict[str, dict[CallOutcome, str]]] = {
    kind: {
        "ko": {
            CallOutcome.OK: "네, 알겠습니다. 그래도 동 케어매니저 선생님이 곧 확인 전화를 드릴 거예요."
        },
        "en": {CallOutcome.OK: "Thank you. Your care manager will still call you soon to check."},
    }
    for kind in OPENINGS
}
CLOSINGS["fire_alarm"]["ko"][CallOutcome.HELP] = (
    "동 케어매니저 선생님께 바로 알리겠습니다. 연기나 불이 보이면 기다리지 마시고 "
    "바로 밖으로 나가 119에 전화해 주세요."
)
CLOSINGS["fire_alarm"]["en"][CallOutcome.HELP] = (
    "We are letting your care manager know right away. If you see smoke or fire, do not wait: "
    "go outside now and call one one nine."
)
CLOSINGS["gas_alarm"]["ko"][CallOutcome.HELP] = (
    "동 케어매니저 선생님께 바로 알리겠습니다. 가스 밸브를 잠그시고 바로 밖으로 나가 주세요."
)
CLOSINGS["gas_alarm"]["en"][CallOutcome.HELP] = (
    "We are letting your care manager know right away. Turn off the gas valve and go outside now."
)


def spoken(text: str) -> str:
    """Korean speech of `text`: the emergency and service numbers read digit by digit
    (일일구, never 백십구; 일공구; 일이공), as people say them. Written text keeps 119."""
    return _SPOKEN_NUMBERS.sub(lambda m: _DIGITS_KO[m.group()], text)


# service numbers read digit by digit, as people say them (일일구, 일공구, 일이공)
_DIGITS_KO = {"119": "일일구", "109": "일공구", "120": "일이공", "112": "일일이"}
_SPOKEN_NUMBERS = re.compile(r"(?<![\d-])(?:119|109|120|112)(?![\d-])")


def script_for(language: str | None) -> Script:
    """The resident's script; Korean unless they chose English."""
    return SCRIPTS.get(language or "ko", KOREAN)


SPEECH_RATE = "90%"  # older listeners: a little slower than the voice's default
PAUSE = "700ms"  # after every sentence: one choice per sentence, time to take it in
_SENTENCE_END = re.compile(r"(?<=[.?!])\s+")


def sentences(text: str) -> list[str]:
    """`text` cut after each sentence's full stop, question or exclamation mark."""
    return [part for part in _SENTENCE_END.split(text.strip()) if part]


def _say(parent: Any, script: Script, text: str) -> None:
    """One <Say> of `text`, read at SPEECH_RATE with a PAUSE after each sentence (SSML, which
    Twilio's Polly voices read); the emergency number spoken as people say it."""
    say = parent.say(voice=script.voice, language=script.language)
    prosody = say.prosody(rate=SPEECH_RATE)
    for sentence in sentences(spoken(text) if script is KOREAN else text):
        prosody.nest(sentence)
        prosody.break_(time=PAUSE)


def _lang(script: Script) -> str:
    return "en" if script is ENGLISH else "ko"


def hello(language: str | None, caller: str) -> str:
    """Who is calling, before anything else: older people hang up on unknown callers."""
    return script_for(language).hello.format(caller=caller)


def greeting(language: str | None = "ko", about: str | None = None, caller: str = "") -> str:
    """The call's first words: who calls, then for an alert of a kind in OPENINGS (`about`)
    what happened, then the question."""
    script = script_for(language)
    opening = OPENINGS.get(about or "", {}).get(_lang(script))
    return " ".join(t for t in (hello(language, caller), opening, script.question) if t)


def reprompt(language: str | None = "ko", about: str | None = None) -> str:
    """The question asked once more; on a fire or gas alarm, what to do first said again."""
    script = script_for(language)
    safety = SAFETY_LINES.get(about or "", {}).get(_lang(script))
    return f"{safety} {script.reprompt}" if safety else script.reprompt


def no_answer(language: str | None = "ko", about: str | None = None) -> str:
    """The last words of a call nobody answered: for an alert the care manager was told of at
    once (a kind in OPENINGS), that they were told; else that we will call again."""
    script = script_for(language)
    return NO_ANSWER[_lang(script)] if about in OPENINGS else script.no_input


# A round of calls answers the same few scripts tens of thousands of times, each with its own
# call's URL: a script is built once (twilio's TwiML classes and ElementTree, 1 in 20 of a web
# worker's CPU per webhook) with URL_MARK for its URL, and the call's URL, escaped as
# ElementTree escapes it, put in its place.
URL_MARK = "https://anbu.invalid/url"
SCRIPTS_KEPT = 512


def _with_url(template: str, url: str) -> str:
    return template.replace(URL_MARK, escape(url, {'"': "&quot;"}))


def check_in(
    gather_url: str, language: str | None = "ko", about: str | None = None, caller: str = ""
) -> str:
    """The greeting with a keypad-or-speech question, one re-prompt, then a closing line;
    `about` is the alert kind the call is for (see greeting), `caller` the programme's centre."""
    return _with_url(_check_in(language, about, caller), gather_url)


@functools.lru_cache(maxsize=SCRIPTS_KEPT)
def _check_in(language: str | None, about: str | None, caller: str) -> str:
    gather_url = URL_MARK
    script = script_for(language)
    response = VoiceResponse()
    for text in (greeting(language, about, caller), reprompt(language, about)):
        gather = response.gather(
            input="dtmf speech",
            action=gather_url,
            method="POST",
            language=script.language,
            num_digits=1,
            timeout=GATHER_TIMEOUT_S,
            speech_timeout="auto",
        )
        _say(gather, script, text)
    _say(response, script, no_answer(language, about))
    response.hangup()
    return str(response)


def closing_text(
    outcome: CallOutcome | None, language: str | None = "ko", about: str | None = None
) -> str:
    """What the resident hears after answering: what happens next, in words of its own for
    every outcome; `about` is the alert kind the call is for (on a fire or gas alarm, help is
    told what to do first)."""
    script = script_for(language)
    closings = {**script.closings, **CLOSINGS.get(about or "", {}).get(_lang(script), {})}
    return closings.get(outcome or CallOutcome.UNCLEAR, closings[CallOutcome.UNCLEAR])


@functools.lru_cache(maxsize=SCRIPTS_KEPT)
def closing(
    outcome: CallOutcome | None, language: str | None = "ko", about: str | None = None
) -> str:
    """closing_text as TwiML, then hang up."""
    script = script_for(language)
    response = VoiceResponse()
    _say(response, script, closing_text(outcome, language, about))
    response.hangup()
    return str(response)


def voicemail(language: str | None = "ko", about: str | None = None, caller: str = "") -> str:
    """A short message left on an answering machine, saying who called; for an alert the care
    manager was told of at once, that they were told (and on a fire or gas alarm, what to do
    first)."""
    script = script_for(language)
    response = VoiceResponse()
    text = script.voicemail.format(caller=caller)
    if about in OPENINGS:
        lang = _lang(script)
        text = " ".join(
            t
            for t in (hello(language, caller), SAFETY_LINES.get(about or "", {}).get(lang),
                      NO_ANSWER[lang])
            if t
        )  # fmt: skip
    _say(response, script, text)
    response.hangup()
    return str(response)


# after a wish to die or to stop living: thanks for saying it, a person calls at once, stay near
# the phone, and where to call (119, the suicide prevention line 109), said as people say them
DESPAIR_CLOSING = (
    "말씀해 주셔서 고맙습니다. 동 케어매니저 선생님이 바로 전화드릴 거예요. 전화기 가까이에 "
    "계셔 주세요. 힘드시면 119나 자살예방 상담전화 109로 전화하세요."
)

# A person asked for and nobody to put them through to (no care manager's number could be
# read): that the transfer is not happening, that the care manager knows and will call, that
# they may hang up, and 119 (older residents otherwise wait on a line that goes dead)
NOT_CONNECTED = (
    "죄송합니다. 지금은 연결이 어렵습니다. 동 케어매니저 선생님께 바로 알렸습니다. "
    "동 케어매니저 선생님이 곧 전화드릴 거예요. 전화를 끊고 기다려 주세요. "
    "급하시면 119에 전화해 주세요."
)

# before the conversation's first question: what comes, and the way to help at any time
TALK_OPENING = (
    "다행입니다. 몇 가지만 더 여쭙겠습니다. 언제든 상담사와 통화하시려면 0번을 눌러 주세요."
)
CONNECT_TIMEOUT_S = 25  # rings at the care manager's before the resident hears they will call


def connect(number: str, caller_id: str, action_url: str) -> str:
    """Put the resident through to their care manager (상담사 연결); the result posts to
    `action_url` (calls.webhooks: a closing when nobody took it)."""
    response = VoiceResponse()
    _say(response, KOREAN, "동 케어매니저 선생님께 연결해 드리겠습니다. 잠시만 기다려 주세요.")
    response.dial(
        number, caller_id=caller_id, timeout=CONNECT_TIMEOUT_S, action=action_url, method="POST"
    )
    return str(response)


def connected(status: str) -> str:
    """After the transfer: nothing more when they talked; else that the care manager calls."""
    response = VoiceResponse()
    if status != "completed":
        _say(
            response, KOREAN,
            "지금은 연결이 되지 않았습니다. 동 케어매니저 선생님이 곧 전화드릴 거예요. "
            "급하시면 119에 전화해 주세요.",
        )  # fmt: skip
    response.hangup()
    return str(response)


def question(action_url: str, text: str, words_only: bool = False) -> str:
    """One question of the routine conversation, by keypad or speech (`words_only`: speech,
    for a need said in words); silence posts to the same URL with nothing answered (unclear)."""
    return _with_url(_question(text, words_only), action_url)


@functools.lru_cache(maxsize=SCRIPTS_KEPT)
def _question(text: str, words_only: bool) -> str:
    action_url = URL_MARK
    response = VoiceResponse()
    gather = response.gather(
        input="speech" if words_only else "dtmf speech",
        action=action_url,
        method="POST",
        language=KOREAN.language,
        num_digits=None if words_only else 1,
        timeout=GATHER_TIMEOUT_S,
        speech_timeout="auto",
    )
    _say(gather, KOREAN, text)
    response.redirect(action_url, method="POST")
    return str(response)


@functools.lru_cache(maxsize=SCRIPTS_KEPT)
def words(text: str, language: str | None = "ko") -> str:
    """Last words of the script's own (the conversation's closing), then hang up."""
    script = script_for(language)
    response = VoiceResponse()
    _say(response, script, text)
    response.hangup()
    return str(response)


def hang_up() -> str:
    """An empty answer that ends the call (unknown call)."""
    response = VoiceResponse()
    response.hangup()
    return str(response)


# -- care-manager alert calls ---------------------------------------------------------------

KO = KOREAN


def manager_alert(message_ko: str, gather_url: str) -> str:
    """Tell a care manager what happened; pressing 1 takes the alert. Asked twice."""
    response = VoiceResponse()
    for text in (
        f"안부 돌봄 시스템입니다. {message_ko} 이 알림을 맡으시려면 1번을 눌러 주세요.",
        "이 알림을 맡으시려면 1번을 눌러 주세요.",
    ):
        gather = response.gather(
            input="dtmf", action=gather_url, method="POST", num_digits=1, timeout=GATHER_TIMEOUT_S
        )
        _say(gather, KO, text)
    _say(response, KO, "확인되지 않아 다음 담당자에게도 알리겠습니다.")
    response.hangup()
    return str(response)


def manager_closing(taken: bool) -> str:
    """After the care manager's key press."""
    response = VoiceResponse()
    text = (
        "확인되었습니다. 대시보드에서 자세한 내용을 보실 수 있습니다."
        if taken
        else "확인되지 않았습니다. 대시보드에서 확인해 주세요."
    )
    _say(response, KO, text)
    response.hangup()
    return str(response)


# -- the 돌봄콜 line (incoming) ---------------------------------------------------------------

# 2 is help on every line anbu answers or places (the check-in call: 1 fine, 2 help)
LINE_MENU = "안부 돌봄콜입니다. 도움이 필요하시면 2번을 눌러 주세요. 하실 말씀을 남기시려면 1번을 눌러 주세요."
MESSAGE_SECONDS = 60  # the longest message taken


def line_menu(action_url: str) -> str:
    """The menu for a known resident: 2 help, 1 leave a message; asked twice."""
    response = VoiceResponse()
    for text in (LINE_MENU, "다시 한 번 안내드립니다. " + LINE_MENU):
        gather = response.gather(
            input="dtmf", action=action_url, method="POST", num_digits=1, timeout=GATHER_TIMEOUT_S
        )
        _say(gather, KO, text)
    _say(response, KO, "누르신 번호가 없어서 전화를 끊겠습니다. 급하시면 119에 전화해 주세요.")
    response.hangup()
    return str(response)


def line_unknown(city_contact_ko: str) -> str:
    """An unregistered number: how to reach the city instead."""
    response = VoiceResponse()
    _say(
        response,
        KO,
        "안부 돌봄콜입니다. 이 번호는 저희 안부 명단에 없습니다. "
        f"돌봄 서비스 신청과 문의는 {city_contact_ko}로 전화해 주세요. "
        "급한 상황이면 119에 전화해 주세요.",
    )
    response.hangup()
    return str(response)


def line_help_taken() -> str:
    response = VoiceResponse()
    _say(
        response,
        KO,
        "동 케어매니저 선생님께 바로 알리겠습니다. 곧 연락드리겠습니다. 급하시면 119에 전화해 주세요.",
    )
    response.hangup()
    return str(response)


def line_message(spoken_url: str, recorded_url: str) -> str:
    """Take a message in Korean speech recognition (Twilio's recording transcription does not
    serve Korean): what the caller says arrives as the message's text at `spoken_url`. If
    nothing was recognised, the message is recorded instead (to `recorded_url`): it reaches
    the care manager as a recording to listen to."""
    response = VoiceResponse()
    gather = response.gather(
        input="speech",
        action=spoken_url,
        method="POST",
        language=KO.language,
        timeout=GATHER_TIMEOUT_S,
        speech_timeout="auto",
    )
    _say(gather, KO, "하실 말씀을 해 주세요. 다 말씀하시면 잠시 기다려 주세요.")
    _record(response, recorded_url)
    return str(response)


def line_record_again(recorded_url: str) -> str:
    """Speech recognition heard nothing it could write down: record the message instead."""
    response = VoiceResponse()
    _record(response, recorded_url)
    return str(response)


def _record(response: VoiceResponse, recorded_url: str) -> None:
    _say(response, KO, "말씀을 알아듣지 못했습니다. 삐 소리가 나면 다시 말씀해 주세요.")
    response.record(
        action=recorded_url, method="POST", max_length=MESSAGE_SECONDS, play_beep=True, timeout=5
    )
    _say(response, KO, "말씀이 녹음되지 않았습니다. 다시 전화해 주세요.")
    response.hangup()


def line_message_taken() -> str:
    response = VoiceResponse()
    _say(response, KO, "말씀을 동 케어매니저 선생님께 전하겠습니다. 감사합니다.")
    response.hangup()
    return str(response)
