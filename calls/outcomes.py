"""How a check-in call ended, from what Twilio reports: pure tables, no I/O.

Only a 1 (pressed or said) or a clearly reassuring answer is OK; silence, machines, faxes,
anything unclear and any negated answer ("괜찮지가 않아") never are. Risk words win over
reassuring ones ("네, 도와주세요" is HELP).
"""

from __future__ import annotations

from collections.abc import Mapping

from calls.understanding import CHECK_IN, SpeechModel, understand
from core.domain import CallOutcome

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

# anbu's own status, never one Twilio reports: dialled, but Twilio never took the call
# (calls/lost.py). Terminal like the others: no late report reopens it.
LOST_STATUS = "lost"

TERMINAL_STATUSES = frozenset(
    [*(s for s, o in STATUS_OUTCOMES.items() if o is not None), LOST_STATUS]
)

# Twilio AnsweredBy (answering machine detection) -> outcome; None means a person (or unknown,
# which then needs a real answer to be anything but UNCLEAR).
ANSWERED_BY_OUTCOMES: Mapping[str, CallOutcome | None] = {
    "human": None,
    "unknown": None,
    "machine_start": CallOutcome.VOICEMAIL,
    "machine_end_beep": CallOutcome.VOICEMAIL,
    "machine_end_silence": CallOutcome.VOICEMAIL,
    "machine_end_other": CallOutcome.VOICEMAIL,
    "fax": CallOutcome.FAILED,  # a fax line is not the resident: a wrong or changed number
}

# Keypad answers (the check-in prompt: 1 fine, 2 help); any other key pressed is UNCLEAR.
# The same table reads a key said aloud ("1번", "일 번이요", "둘").
DIGIT_OUTCOMES: Mapping[str, CallOutcome] = CHECK_IN.keys


# How urgent an answer is: a call keeps its most urgent answer ("1" then "도와주세요" is HELP;
# an unclear first try then "1" on the reprompt is OK).
ANSWER_RANK: Mapping[CallOutcome, int] = {
    CallOutcome.UNCLEAR: 0,
    CallOutcome.CALL_BACK_LATER: 1,
    CallOutcome.OK: 2,
    CallOutcome.UNWELL: 3,
    CallOutcome.HELP: 4,
    CallOutcome.EMERGENCY: 5,
}

# Answers that need a person: one that comes after the call's outcome was acted on still must.
HELP_ANSWERS = frozenset([CallOutcome.UNWELL, CallOutcome.HELP, CallOutcome.EMERGENCY])


def stronger_answer(old: CallOutcome | None, new: CallOutcome) -> CallOutcome:
    """The answer a call keeps when `new` comes after `old`: the more urgent one."""
    if old is None or ANSWER_RANK[new] >= ANSWER_RANK[old]:
        return new
    return old


def classify_speech(speech: str, model: SpeechModel | None = None) -> CallOutcome:
    """What a spoken answer to the check-in question means; not understood is UNCLEAR."""
    return understand(speech, model, CHECK_IN)


def classify_answer(
    digits: str | None, speech: str | None, model: SpeechModel | None = None
) -> CallOutcome | None:
    """The outcome of one gathered answer, or None when nothing was pressed or said."""
    if digits:
        return DIGIT_OUTCOMES.get(digits.strip(), CallOutcome.UNCLEAR)
    if speech and speech.strip():
        return classify_speech(speech.strip(), model)
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
    call_status: str,
    answered_by: str | None,
    digits: str | None,
    speech: str | None,
    model: SpeechModel | None = None,
) -> CallOutcome | None:
    """The outcome of a call from everything Twilio told us; an answer beats the call status."""
    answer = classify_answer(digits, speech, model)
    if answer is not None:
        return answer
    return classify_status(call_status, answered_by)
