"""How a check-in call ended, from what Twilio reports: pure tables, no I/O.

Only a pressed 1 or a clearly reassuring answer is OK; silence, machines and anything
unclear never are. Risk words win over reassuring ones ("네, 도와주세요" is HELP).
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from anbu.domain import CallOutcome

# Twilio CallStatus -> outcome once the call is over; None while it is still going.
STATUS_OUTCOMES: Mapping[str, CallOutcome | None] = {
    "queued": None,
    "initiated": None,
    "ringing": None,
    "in-progress": None,
    "completed": CallOutcome.UNCLEAR,  # answered, but nobody told us they are fine
    "busy": CallOutcome.BUSY,
    "no-answer": CallOutcome.NO_ANSWER,
    "canceled": CallOutcome.NO_ANSWER,
    "failed": CallOutcome.FAILED,
}

TERMINAL_STATUSES = frozenset(s for s, o in STATUS_OUTCOMES.items() if o is not None)

# Twilio AnsweredBy (answering machine detection) -> outcome; None means a person (or unknown).
ANSWERED_BY_OUTCOMES: Mapping[str, CallOutcome | None] = {
    "human": None,
    "unknown": None,
    "machine_start": CallOutcome.VOICEMAIL,
    "machine_end_beep": CallOutcome.VOICEMAIL,
    "machine_end_silence": CallOutcome.VOICEMAIL,
    "machine_end_other": CallOutcome.VOICEMAIL,
    "fax": CallOutcome.VOICEMAIL,
}

# Keypad answers; any other key pressed is UNCLEAR.
DIGIT_OUTCOMES: Mapping[str, CallOutcome] = {
    "1": CallOutcome.OK,
    "2": CallOutcome.HELP,
}

# Speech rules, checked in order; the first pattern found decides.
SPEECH_RULES: tuple[tuple[re.Pattern[str], CallOutcome], ...] = (
    # risk words escalate at once
    (re.compile(r"도와|살려|아파|아프|119|쓰러|숨이|다쳤|응급"), CallOutcome.HELP),
    (re.compile(r"\b(help|hurt|pain|emergency|fell|ambulance)\b", re.I), CallOutcome.HELP),
    # "not fine" is a call for help, not reassurance
    (re.compile(r"안\s*괜찮|괜찮지\s*않|not\s+(ok|okay|fine|good)", re.I), CallOutcome.HELP),
    # doubt is never reassurance
    (re.compile(r"모르|글쎄|아니|\b(no|maybe|not sure)\b", re.I), CallOutcome.UNCLEAR),
    # reassurance: whole-word "네"/"예" only, so "모르겠네" does not count
    (
        re.compile(r"괜찮|좋아|좋습니다|건강|(^|[\s,.!?])(네|예|넵|응)+($|[\s,.!?요])"),
        CallOutcome.OK,
    ),
    (re.compile(r"\b(yes|yeah|fine|ok|okay|good|all right|alright)\b", re.I), CallOutcome.OK),
)


def classify_speech(speech: str) -> CallOutcome:
    """What a spoken answer means; anything not understood is UNCLEAR."""
    for pattern, outcome in SPEECH_RULES:
        if pattern.search(speech):
            return outcome
    return CallOutcome.UNCLEAR


def classify_answer(digits: str | None, speech: str | None) -> CallOutcome | None:
    """The outcome of one gathered answer, or None when nothing was pressed or said."""
    if digits:
        return DIGIT_OUTCOMES.get(digits.strip(), CallOutcome.UNCLEAR)
    if speech and speech.strip():
        return classify_speech(speech.strip())
    return None


def classify_status(call_status: str, answered_by: str | None) -> CallOutcome | None:
    """The outcome a status report implies when no answer was gathered; None while ringing."""
    outcome = STATUS_OUTCOMES.get(call_status)
    if outcome is None:
        return None
    if outcome is CallOutcome.UNCLEAR and answered_by:
        return ANSWERED_BY_OUTCOMES.get(answered_by) or outcome
    return outcome


def classify(
    call_status: str, answered_by: str | None, digits: str | None, speech: str | None
) -> CallOutcome | None:
    """The outcome of a call from everything Twilio told us; an answer beats the call status."""
    answer = classify_answer(digits, speech)
    if answer is not None:
        return answer
    return classify_status(call_status, answered_by)
