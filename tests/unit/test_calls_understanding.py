"""The speech classifier: trained from the shipped utterances, held-out accuracy above a floor."""

from __future__ import annotations

from collections import Counter

from calls.understanding import SpeechModel, evaluate, load_utterances, understand
from core.domain import CallOutcome

LABELS = {
    CallOutcome.OK, CallOutcome.UNWELL, CallOutcome.HELP, CallOutcome.EMERGENCY,
    CallOutcome.CALL_BACK_LATER, CallOutcome.UNCLEAR,
}  # fmt: skip


def test_the_shipped_set_is_large_varied_and_labelled() -> None:
    pairs = load_utterances()
    assert len(pairs) >= 300
    counts = Counter(o for _, o in pairs)
    assert set(counts) == LABELS
    assert min(counts.values()) >= 40
    assert len({t for t, _ in pairs}) == len(pairs)  # no duplicated lines


def test_held_out_accuracy_is_above_the_floor() -> None:
    result = evaluate(load_utterances(), test_share=0.25, seed=13)
    assert result.test >= 75
    assert result.model_accuracy >= 0.72
    assert result.accuracy >= 0.75


def test_the_model_alone_never_makes_an_unsure_answer_ok() -> None:
    model = SpeechModel().fit(load_utterances())
    for text in ("음 글쎄 괜찮은가", "괜찮은지 모르겠어", "잘 모르겠는데 괜찮아?"):
        assert understand(text, model) is not CallOutcome.OK


def test_dialect_and_elderly_answers() -> None:
    model = SpeechModel().fit(load_utterances())
    assert understand("괜찮심더 걱정 마이소", model) is CallOutcome.OK
    assert understand("아이고 삭신이 쑤셔", model) is CallOutcome.UNWELL
    assert understand("살려 주이소", model) is CallOutcome.EMERGENCY
