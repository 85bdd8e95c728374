"""The outcome tables: only a pressed 1 or a reassuring answer is OK; risk words always escalate."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from calls.outcomes import (
    ANSWERED_BY_OUTCOMES,
    STATUS_OUTCOMES,
    classify,
    classify_answer,
    classify_status,
)
from calls.understanding import SpeechModel, load_utterances
from core.domain import CallOutcome

STATUSES = list(STATUS_OUTCOMES)
# answers as residents give them (the shipped set), so the property tests reach the model too
SAID = sorted(t for t, _ in load_utterances())
ANY_SPEECH = st.one_of(st.none(), st.just(""), st.text(max_size=40), st.sampled_from(SAID))
AROUND = st.one_of(st.text(max_size=20), st.sampled_from(SAID))
ANSWERED_BY = [None, *ANSWERED_BY_OUTCOMES]


@pytest.fixture(scope="module")
def model() -> SpeechModel:
    """The model production uses: CallService.speech_model() fits it on the shipped set."""
    return SpeechModel().fit(load_utterances())


@pytest.mark.parametrize(
    ("status", "answered_by", "expected"),
    [
        ("queued", None, None),
        ("initiated", None, None),
        ("ringing", None, None),
        ("in-progress", "human", None),
        ("completed", None, CallOutcome.UNCLEAR),
        ("completed", "human", CallOutcome.UNCLEAR),
        ("completed", "unknown", CallOutcome.UNCLEAR),
        ("completed", "machine_start", CallOutcome.VOICEMAIL),
        ("completed", "machine_end_beep", CallOutcome.VOICEMAIL),
        ("completed", "machine_end_silence", CallOutcome.VOICEMAIL),
        ("completed", "machine_end_other", CallOutcome.VOICEMAIL),
        ("completed", "fax", CallOutcome.FAILED),
        ("busy", None, CallOutcome.BUSY),
        ("no-answer", None, CallOutcome.NO_ANSWER),
        ("canceled", None, CallOutcome.NO_ANSWER),
        ("failed", None, CallOutcome.FAILED),
        ("something-new", None, None),
    ],
)
def test_status_table(status: str, answered_by: str | None, expected: CallOutcome | None) -> None:
    assert classify_status(status, answered_by) is expected


@pytest.mark.parametrize(
    ("digits", "speech", "expected"),
    [
        ("1", None, CallOutcome.OK),
        ("2", None, CallOutcome.HELP),
        ("9", None, CallOutcome.UNCLEAR),
        ("*", None, CallOutcome.UNCLEAR),
        (None, None, None),
        ("", "  ", None),
        (None, "네", CallOutcome.OK),
        (None, "네, 괜찮아요", CallOutcome.OK),
        (None, "잘 있어 걱정 마", CallOutcome.OK),
        (None, "도와주세요", CallOutcome.HELP),
        (None, "네 도와주세요", CallOutcome.HELP),
        (None, "살려줘", CallOutcome.EMERGENCY),
        (None, "119 불러줘", CallOutcome.EMERGENCY),
        (None, "어제 쓰러졌어요", CallOutcome.EMERGENCY),
        (None, "숨이 차요", CallOutcome.EMERGENCY),
        (None, "아이고 허리가 아파 죽겠어", CallOutcome.UNWELL),
        (None, "안 괜찮아요", CallOutcome.UNWELL),
        (None, "지금 밥 먹는 중이야 이따 해", CallOutcome.CALL_BACK_LATER),
        (None, "모르겠네요", CallOutcome.UNCLEAR),
        (None, "help me please", CallOutcome.HELP),
        (None, "I'm fine, thanks", CallOutcome.OK),
        (None, "call me later", CallOutcome.CALL_BACK_LATER),
        ("1", "도와주세요", CallOutcome.OK),  # the key pressed is what the resident chose
    ],
)
def test_answer_table(
    model: SpeechModel, digits: str | None, speech: str | None, expected: CallOutcome | None
) -> None:
    assert classify_answer(digits, speech, model) is expected


def test_an_answer_beats_the_call_status(model: SpeechModel) -> None:
    assert classify("completed", "human", "1", None, model) is CallOutcome.OK
    assert classify("completed", "machine_end_beep", "2", None, model) is CallOutcome.HELP
    assert classify("completed", "human", None, None, model) is CallOutcome.UNCLEAR


@settings(max_examples=150, deadline=None)
@given(
    status=st.sampled_from(STATUSES),
    answered_by=st.sampled_from(ANSWERED_BY),
    digits=st.one_of(st.none(), st.text(max_size=3).filter(lambda d: d.strip() != "1")),
    speech=ANY_SPEECH,
)
def test_without_a_1_machines_and_silence_are_never_ok(
    model: SpeechModel,
    status: str,
    answered_by: str | None,
    digits: str | None,
    speech: str | None,
) -> None:
    """With the model production uses (CallService.speech_model)."""
    outcome = classify(status, answered_by, digits, speech, model)
    if not (speech or "").strip() and not digits:
        assert outcome is not CallOutcome.OK  # silence, voicemail, fax, unknown
    if digits:
        assert outcome is not CallOutcome.OK


@settings(max_examples=150, deadline=None)
@given(
    prefix=AROUND,
    word=st.sampled_from(["도와주세요", "살려", "119", "쓰러졌어", "숨이 차", "아파"]),
    suffix=AROUND,
)
def test_a_risk_word_anywhere_is_never_fine(
    model: SpeechModel, prefix: str, word: str, suffix: str
) -> None:
    """With the model production uses: it never softens a risk word into OK."""
    outcome = classify_answer(None, f"{prefix} {word} {suffix}", model)
    assert outcome in (CallOutcome.HELP, CallOutcome.EMERGENCY, CallOutcome.UNWELL)


NOT_OK_SAID = sorted(t for t, o in load_utterances() if o is not CallOutcome.OK)


@settings(max_examples=150, deadline=None)
@given(
    status=st.sampled_from(STATUSES),
    answered_by=st.sampled_from(ANSWERED_BY),
    speech=st.sampled_from(NOT_OK_SAID),
)
def test_no_answer_that_is_not_fine_is_made_ok_by_the_model(
    model: SpeechModel, status: str, answered_by: str | None, speech: str
) -> None:
    """Whatever the call status, a shipped answer labelled anything but OK (help, unwell,
    later, unclear) never becomes OK through the production model."""
    assert classify(status, answered_by, None, speech, model) is not CallOutcome.OK
