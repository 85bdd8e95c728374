"""How a simulated resident (or their line) responds when the phone network rings them."""

from __future__ import annotations

import enum
from dataclasses import dataclass, replace


class Behaviour(enum.StrEnum):
    """What happens on the line."""

    PRESS = "press"  # answers and presses `digits`
    SAY = "say"  # answers and says `speech`
    SILENT = "silent"  # answers and says nothing
    NO_ANSWER = "no_answer"  # rings until the caller gives up
    BUSY = "busy"  # the line is busy
    VOICEMAIL = "voicemail"  # an answering machine picks up
    FAILED = "failed"  # the carrier cannot connect the call
    INVALID_NUMBER = "invalid_number"  # the REST API refuses the number outright (HTTP 400)


@dataclass(frozen=True, slots=True)
class Persona:
    """A scripted callee: a behaviour and, where it answers, what it presses or says."""

    behaviour: Behaviour
    digits: str | None = None
    speech: str | None = None  # said at a speech <Gather>, or the message left at a <Record>
    answer_after_s: float = 3.0  # seconds of ringing before a person picks up
    amd: str | None = None  # AnsweredBy to report; None = from the behaviour
    recognised: bool = True  # speech recognition writes down what they say (False: only a
    # <Record> keeps it, as for a voice or a line the recogniser misses)
    script: tuple[str, ...] = ()  # a conversation: what they answer at each <Gather> in turn
    # ("key:1" presses 1, "say:..." speaks, "" is silence, "hangup" hangs up; then silence)

    def __str__(self) -> str:
        return self.behaviour.value + (f":{self.digits}" if self.digits else "")


PRESS_1 = Persona(Behaviour.PRESS, digits="1")
PRESS_2 = Persona(Behaviour.PRESS, digits="2")
SILENT = Persona(Behaviour.SILENT)
NO_ANSWER = Persona(Behaviour.NO_ANSWER)
BUSY = Persona(Behaviour.BUSY)
VOICEMAIL = Persona(Behaviour.VOICEMAIL)
FAILED = Persona(Behaviour.FAILED)
INVALID_NUMBER = Persona(Behaviour.INVALID_NUMBER)


def say(text: str) -> Persona:
    """A resident who answers by speaking `text` (delivered as Twilio's SpeechResult)."""
    return Persona(Behaviour.SAY, speech=text)


SAY = say  # reads like the other personas: SAY("도와주세요")


def converse(*steps: str) -> Persona:
    """A resident who answers each question of a call in turn: "key:1", "say:밥 먹었어", ""
    (silence) or "hangup" (see Persona.script)."""
    return Persona(Behaviour.SAY, script=steps)


# Lines whose answering machine detection is not a clean "human"
FAX = Persona(Behaviour.SILENT, amd="fax")
UNKNOWN_AMD_SILENT = Persona(Behaviour.SILENT, amd="unknown")
MACHINE_START = Persona(Behaviour.VOICEMAIL, amd="machine_start")


def slow(persona: Persona, seconds: float) -> Persona:
    """The same callee, picking up only after `seconds` of ringing."""
    return replace(persona, answer_after_s=seconds)


def caller(digits: str, message: str | None = None, recognised: bool = True) -> Persona:
    """A resident calling the 돌봄콜 line: presses `digits`, then (for 1) says `message`, which
    speech recognition hears unless `recognised` is False (then it is recorded)."""
    return Persona(Behaviour.PRESS, digits=digits, speech=message, recognised=recognised)


# Scripted residents with names, for tests and the demo: what each does when rung.
SCRIPTED: dict[str, Persona] = {
    "press_1": PRESS_1,
    "press_2": PRESS_2,
    "says_fine": say("응 괜찮어 걱정 말어"),
    "says_unwell": say("요새 영 기운이 없어 머리가 어질어질해"),
    "says_help": say("보일러가 고장 나서 추워요 좀 도와주세요"),
    "says_emergency": say("숨이 안 쉬어져요 119 불러 줘"),
    "says_later": say("지금 밥 먹는 중이야 이따 전화해"),
    "mumbles": say("뭐라카노 잘 안 들린다"),
    "silent": SILENT,
    "no_answer": NO_ANSWER,
    "slow_answer": slow(PRESS_1, 20.0),
    "too_slow": slow(PRESS_1, 90.0),
    "busy": BUSY,
    "voicemail": VOICEMAIL,
    "machine_start": MACHINE_START,
    "fax": FAX,
    "unknown_amd": UNKNOWN_AMD_SILENT,
    "failed": FAILED,
    "invalid_number": INVALID_NUMBER,
}
