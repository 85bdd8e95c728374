"""The check-in call script as TwiML: Korean first, English for residents who chose it."""

from __future__ import annotations

import re
from dataclasses import dataclass

from twilio.twiml.voice_response import VoiceResponse

from core.domain import CallOutcome


@dataclass(frozen=True, slots=True)
class Script:
    """Every line of the check-in call in one language."""

    language: str  # BCP-47 tag for <Say> and speech recognition
    voice: str
    greeting: str
    reprompt: str
    no_input: str
    voicemail: str
    closings: dict[CallOutcome, str]
    question: str = ""  # the greeting's question alone, after an opening that says why we call


KOREAN = Script(
    language="ko-KR",
    voice="Polly.Seoyeon",
    greeting=(
        "안녕하세요, 안부 확인 전화입니다. 괜찮으시면 1번, "
        "도움이 필요하시면 2번을 누르시거나 말씀해 주세요."
    ),
    reprompt="다시 한 번 여쭙겠습니다. 괜찮으시면 1번, 도움이 필요하시면 2번을 눌러 주세요.",
    no_input="응답이 없어 잠시 후 다시 전화드리겠습니다. 담당 복지사께도 알리겠습니다.",
    voicemail="안부 확인 전화였습니다. 잠시 후 다시 전화드리겠습니다.",
    closings={
        CallOutcome.OK: "감사합니다. 건강하세요.",
        CallOutcome.HELP: "담당 복지사께 바로 알리겠습니다. 조금만 기다려 주세요.",
        CallOutcome.UNCLEAR: "잘 알아듣지 못했습니다. 담당 복지사께서 곧 확인 연락을 드리겠습니다.",
    },
    question="괜찮으시면 1번, 도움이 필요하시면 2번을 누르시거나 말씀해 주세요.",
)

ENGLISH = Script(
    language="en-US",
    voice="Polly.Joanna",
    greeting=(
        "Hello, this is your check-in call. If you are fine, press 1. "
        "If you need help, press 2, or just tell us."
    ),
    reprompt="Let me ask once more. If you are fine, press 1. If you need help, press 2.",
    no_input="We did not hear an answer. We will call again shortly and let your care manager know.",
    voicemail="This was your check-in call. We will call again shortly.",
    closings={
        CallOutcome.OK: "Thank you. Take care.",
        CallOutcome.HELP: "We are letting your care manager know right away. Please wait a moment.",
        CallOutcome.UNCLEAR: "Sorry, we did not understand. Your care manager will call you soon.",
    },
    question="If you are fine, press 1. If you need help, press 2, or just tell us.",
)

SCRIPTS: dict[str, Script] = {"ko": KOREAN, "en": ENGLISH}

GATHER_TIMEOUT_S = 8

# A call about something the resident's own device reported opens with what happened, in plain
# words, before the same question (1 fine, 2 help): alert kind -> language -> opening.
_HELLO_KO = "어르신, 안녕하세요. 안부 확인 전화입니다."
_HELLO_EN = "Hello, this is your check-in call."
# what a resident must do at once on a fire or gas alarm: said in the opening, again before the
# re-prompt, and in the closing and voicemail (alert kind -> language -> line)
SAFETY_LINES: dict[str, dict[str, str]] = {
    "fire_alarm": {
        "ko": "연기나 불이 보이면 바로 밖으로 나가신 뒤 일일구에 전화해 주세요.",
        "en": "If you see smoke or fire, go outside now and then call one one nine.",
    },
    "gas_alarm": {
        "ko": "가스 밸브를 잠그시고, 전기 스위치는 켜지도 끄지도 마시고, "
        "창문을 연 뒤 밖으로 나가 주세요.",
        "en": "Turn off the gas valve, don't touch any switch, open a window and go outside.",
    },
}
OPENINGS: dict[str, dict[str, str]] = {
    "help_button": {
        "ko": f"{_HELLO_KO} 댁의 응급호출기가 눌려 전화드렸습니다.",
        "en": f"{_HELLO_EN} Your emergency button was pressed, so we are calling you.",
    },
    "fire_alarm": {
        "ko": f"{_HELLO_KO} 댁의 화재 감지기가 울려 전화드렸습니다. "
        + SAFETY_LINES["fire_alarm"]["ko"],
        "en": f"{_HELLO_EN} Your smoke alarm went off, so we are calling you. "
        + SAFETY_LINES["fire_alarm"]["en"],
    },
    "gas_alarm": {
        "ko": f"{_HELLO_KO} 댁의 가스 감지기가 울려 전화드렸습니다. "
        + SAFETY_LINES["gas_alarm"]["ko"],
        "en": f"{_HELLO_EN} Your gas alarm went off, so we are calling you. "
        + SAFETY_LINES["gas_alarm"]["en"],
    },
    "water_leak": {
        "ko": f"{_HELLO_KO} 댁의 누수 감지기에서 물 새는 것이 감지되어 전화드렸습니다.",
        "en": f"{_HELLO_EN} Your water leak detector found water, so we are calling you.",
    },
}

# The care manager is told of these alerts as the call is placed: no answer is not followed by
# another call from us (the care manager calls), and an OK does not close the alert.
_TOLD_KO = "응답이 없으셔서 담당 복지사께 알렸습니다. 곧 연락드리겠습니다."
_TOLD_EN = (
    "We did not hear an answer, so we have told your care manager. They will contact you soon."
)
NO_ANSWER: dict[str, str] = {"ko": _TOLD_KO, "en": _TOLD_EN}
# alert kind -> language -> outcome -> closing, where it differs from the script's own
CLOSINGS: dict[str, dict[str, dict[CallOutcome, str]]] = {
    kind: {
        "ko": {CallOutcome.OK: "감사합니다. 담당 복지사께서 곧 확인 연락을 드리겠습니다."},
        "en": {CallOutcome.OK: "Thank you. Your care manager will call you soon to check."},
    }
    for kind in OPENINGS
}
CLOSINGS["fire_alarm"]["ko"][CallOutcome.HELP] = (
    "담당 복지사께 바로 알리겠습니다. 연기나 불이 보이면 기다리지 마시고 "
    "바로 밖으로 나가 일일구에 전화해 주세요."
)
CLOSINGS["fire_alarm"]["en"][CallOutcome.HELP] = (
    "We are letting your care manager know right away. If you see smoke or fire, do not wait: "
    "go outside now and call one one nine."
)
CLOSINGS["gas_alarm"]["ko"][CallOutcome.HELP] = (
    "담당 복지사께 바로 알리겠습니다. 가스 밸브를 잠그고 바로 밖으로 나가 주세요."
)
CLOSINGS["gas_alarm"]["en"][CallOutcome.HELP] = (
    "We are letting your care manager know right away. Turn off the gas valve and go outside now."
)


def spoken(text: str) -> str:
    """Korean speech of `text`: the emergency number read digit by digit (일일구), as people
    say it, never 백십구. Written text (SMS, pages) keeps 119."""
    return re.sub(r"(?<!\d)119(?!\d)", "일일구", text)


def script_for(language: str | None) -> Script:
    """The resident's script; Korean unless they chose English."""
    return SCRIPTS.get(language or "ko", KOREAN)


def _say(parent: VoiceResponse, script: Script, text: str) -> None:
    parent.say(spoken(text), voice=script.voice, language=script.language)


def _lang(script: Script) -> str:
    return "en" if script is ENGLISH else "ko"


def greeting(language: str | None = "ko", about: str | None = None) -> str:
    """The call's first words: for an alert of a kind in OPENINGS (`about`), what happened and
    then the question; else the plain greeting."""
    script = script_for(language)
    opening = OPENINGS.get(about or "", {}).get(_lang(script))
    return f"{opening} {script.question}" if opening else script.greeting


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


def check_in(gather_url: str, language: str | None = "ko", about: str | None = None) -> str:
    """The greeting with a keypad-or-speech question, one re-prompt, then a closing line;
    `about` is the alert kind the call is for (see greeting)."""
    script = script_for(language)
    response = VoiceResponse()
    for text in (greeting(language, about), reprompt(language, about)):
        gather = response.gather(
            input="dtmf speech",
            action=gather_url,
            method="POST",
            language=script.language,
            num_digits=1,
            timeout=GATHER_TIMEOUT_S,
            speech_timeout="auto",
        )
        gather.say(spoken(text), voice=script.voice, language=script.language)
    _say(response, script, no_answer(language, about))
    response.hangup()
    return str(response)


def closing(
    outcome: CallOutcome | None, language: str | None = "ko", about: str | None = None
) -> str:
    """What the resident hears after answering: what happens next; `about` is the alert kind
    the call is for (on a fire or gas alarm, help is told what to do first)."""
    script = script_for(language)
    response = VoiceResponse()
    closings = {**script.closings, **CLOSINGS.get(about or "", {}).get(_lang(script), {})}
    text = closings.get(outcome or CallOutcome.UNCLEAR, closings[CallOutcome.UNCLEAR])
    _say(response, script, text)
    response.hangup()
    return str(response)


def voicemail(language: str | None = "ko", about: str | None = None) -> str:
    """A short message left on an answering machine; for an alert the care manager was told of
    at once, that they were told (and on a fire or gas alarm, what to do first)."""
    script = script_for(language)
    response = VoiceResponse()
    text = script.voicemail
    if about in OPENINGS:
        lang = _lang(script)
        text = " ".join(
            t for t in (SAFETY_LINES.get(about or "", {}).get(lang), NO_ANSWER[lang]) if t
        )
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
        f"안부 알림입니다. {message_ko} 확인하시려면 1번을 눌러 주세요.",
        "확인하시려면 1번을 눌러 주세요.",
    ):
        gather = response.gather(
            input="dtmf", action=gather_url, method="POST", num_digits=1, timeout=GATHER_TIMEOUT_S
        )
        gather.say(spoken(text), voice=KO.voice, language=KO.language)
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

LINE_MENU = "안부 돌봄콜입니다. 도움이 필요하시면 1번, 메시지를 남기시려면 2번을 눌러 주세요."


def line_menu(action_url: str) -> str:
    """The menu for a known resident: 1 help, 2 leave a message; asked twice."""
    response = VoiceResponse()
    for text in (LINE_MENU, "다시 한 번 안내드립니다. " + LINE_MENU):
        gather = response.gather(
            input="dtmf", action=action_url, method="POST", num_digits=1, timeout=GATHER_TIMEOUT_S
        )
        gather.say(spoken(text), voice=KO.voice, language=KO.language)
    _say(response, KO, "선택이 없어 전화를 마칩니다. 급하시면 일일구로 전화해 주세요.")
    response.hangup()
    return str(response)


def line_unknown(city_contact_ko: str) -> str:
    """An unregistered number: how to reach the city instead."""
    response = VoiceResponse()
    _say(
        response,
        KO,
        "안부 돌봄콜입니다. 등록되지 않은 번호입니다. "
        f"돌봄 서비스 신청과 문의는 {city_contact_ko}로 전화해 주세요. "
        "급한 상황이면 일일구로 전화해 주세요.",
    )
    response.hangup()
    return str(response)


def line_help_taken() -> str:
    response = VoiceResponse()
    _say(
        response,
        KO,
        "담당 복지사께 바로 알리겠습니다. 곧 연락드리겠습니다. 급하시면 일일구로 전화해 주세요.",
    )
    response.hangup()
    return str(response)


def line_record(action_url: str, transcript_url: str) -> str:
    """Record a message of up to a minute, with its transcript posted separately."""
    response = VoiceResponse()
    _say(response, KO, "삐 소리가 나면 메시지를 남겨 주세요. 다 남기시면 전화를 끊으셔도 됩니다.")
    response.record(
        action=action_url,
        method="POST",
        max_length=60,
        play_beep=True,
        timeout=5,
        transcribe=True,
        transcribe_callback=transcript_url,
    )
    _say(response, KO, "메시지가 녹음되지 않았습니다. 다시 전화해 주세요.")
    response.hangup()
    return str(response)


def line_message_taken() -> str:
    response = VoiceResponse()
    _say(response, KO, "메시지를 담당 복지사께 전하겠습니다. 감사합니다.")
    response.hangup()
    return str(response)
