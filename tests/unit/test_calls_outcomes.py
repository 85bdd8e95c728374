"""The outcome tables: only a pressed 1 or a reassuring answer is OK."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from anbu.domain import CallOutcome
from calls.outcomes import (
    ANSWERED_BY_OUTCOMES,
    SPEECH_RULES,
    STATUS_OUTCOMES,
    classify,
    classify_answer,
    classify_speech,
    classify_status,
)

STATUSES = list(STATUS_OUTCOMES)
ANSWERED_BY = [None, *ANSWERED_BY_OUTCOMES]
OK_PATTERNS = [p for p, outcome in SPEECH_RULES if outcome is CallOutcome.OK]


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
        ("completed", "fax", CallOutcome.VOICEMAIL),
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
        (None, "좋아요", CallOutcome.OK),
        (None, "도와주세요", CallOutcome.HELP),
        (None, "살려줘", CallOutcome.HELP),
        (None, "아이고 허리가 아파 죽겠어", CallOutcome.HELP),
        (None, "119 불러줘", CallOutcome.HELP),
        (None, "어제 쓰러졌어요", CallOutcome.HELP),
        (None, "숨이 차요", CallOutcome.HELP),
        (None, "네 도와주세요", CallOutcome.HELP),
        (None, "안 괜찮아요", CallOutcome.HELP),
        (None, "모르겠네요", CallOutcome.UNCLEAR),
        (None, "오늘 날씨가 흐리네", CallOutcome.UNCLEAR),
        (None, "help me please", CallOutcome.HELP),
        (None, "I'm fine, thanks", CallOutcome.OK),
        (None, "I am not ok", CallOutcome.HELP),
        ("1", "도와주세요", CallOutcome.OK),  # the key pressed is what the resident chose
    ],
)
def test_answer_table(digits: str | None, speech: str | None, expected: CallOutcome | None) -> None:
    assert classify_answer(digits, speech) is expected


def test_an_answer_beats_the_call_status() -> None:
    assert classify("completed", "human", "1", None) is CallOutcome.OK
    assert classify("completed", "machine_end_beep", "2", None) is CallOutcome.HELP
    assert classify("completed", "human", None, None) is CallOutcome.UNCLEAR


def _has_ok_phrase(speech: str | None) -> bool:
    return bool(speech) and any(p.search(speech or "") for p in OK_PATTERNS)


@given(
    status=st.sampled_from(STATUSES),
    answered_by=st.sampled_from(ANSWERED_BY),
    digits=st.one_of(st.none(), st.text(max_size=3)),
    speech=st.one_of(st.none(), st.text(max_size=40)),
)
def test_nothing_but_a_1_or_an_ok_answer_is_ok(
    status: str, answered_by: str | None, digits: str | None, speech: str | None
) -> None:
    outcome = classify(status, answered_by, digits, speech)
    if outcome is CallOutcome.OK:
        assert (digits or "").strip() == "1" or (not digits and _has_ok_phrase(speech))


@given(
    status=st.sampled_from(STATUSES),
    answered_by=st.sampled_from(ANSWERED_BY),
    digits=st.one_of(st.none(), st.text(max_size=3).filter(lambda d: d.strip() != "1")),
    speech=st.one_of(st.none(), st.text(alphabet="가나다라마바사자차카타파하 .,?!0123456789")),
)
def test_without_1_or_reassuring_words_nothing_is_ok(
    status: str, answered_by: str | None, digits: str | None, speech: str | None
) -> None:
    assert classify(status, answered_by, digits, speech) is not CallOutcome.OK


@given(prefix=st.text(max_size=20), suffix=st.text(max_size=20))
def test_a_risk_word_anywhere_is_help(prefix: str, suffix: str) -> None:
    outcome = classify_speech(f"{prefix} 도와주세요 {suffix}")
    assert outcome is CallOutcome.HELP
