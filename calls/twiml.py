"""The check-in call script as TwiML: Korean first, English for residents who chose it."""

from __future__ import annotations

from dataclasses import dataclass

from twilio.twiml.voice_response import VoiceResponse

from anbu.domain import CallOutcome


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
)

SCRIPTS: dict[str, Script] = {"ko": KOREAN, "en": ENGLISH}

GATHER_TIMEOUT_S = 8


def script_for(language: str | None) -> Script:
    """The resident's script; Korean unless they chose English."""
    return SCRIPTS.get(language or "ko", KOREAN)


def _say(parent: VoiceResponse, script: Script, text: str) -> None:
    parent.say(text, voice=script.voice, language=script.language)


def check_in(gather_url: str, language: str | None = "ko") -> str:
    """The greeting with a keypad-or-speech question, one re-prompt, then a closing line."""
    script = script_for(language)
    response = VoiceResponse()
    for text in (script.greeting, script.reprompt):
        gather = response.gather(
            input="dtmf speech",
            action=gather_url,
            method="POST",
            language=script.language,
            num_digits=1,
            timeout=GATHER_TIMEOUT_S,
            speech_timeout="auto",
        )
        gather.say(text, voice=script.voice, language=script.language)
    _say(response, script, script.no_input)
    response.hangup()
    return str(response)


def closing(outcome: CallOutcome | None, language: str | None = "ko") -> str:
    """What the resident hears after answering: what happens next."""
    script = script_for(language)
    response = VoiceResponse()
    text = script.closings.get(outcome or CallOutcome.UNCLEAR, script.closings[CallOutcome.UNCLEAR])
    _say(response, script, text)
    response.hangup()
    return str(response)


def voicemail(language: str | None = "ko") -> str:
    """A short message left on an answering machine."""
    script = script_for(language)
    response = VoiceResponse()
    _say(response, script, script.voicemail)
    response.hangup()
    return str(response)


def hang_up() -> str:
    """An empty answer that ends the call (unknown call)."""
    response = VoiceResponse()
    response.hangup()
    return str(response)
