"""How a simulated resident (or their line) responds when the phone network rings them."""

from __future__ import annotations

import enum
from dataclasses import dataclass


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
    speech: str | None = None

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
