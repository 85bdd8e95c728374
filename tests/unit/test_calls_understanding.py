"""The speech classifier: trained from the shipped utterances, held-out accuracy above a floor."""

from __future__ import annotations

from collections import Counter

import pytest

from calls.reading import read
from calls.understanding import (
    CHECK_IN,
    LEADING_KEY,
    OK_CONFIDENCE,
    RAISE_CONFIDENCE,
    SpeechModel,
    evaluate,
    heard_key,
    load_utterances,
    rule_outcome,
    spoken_key,
    understand,
)
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


# -- the confidence cut-offs, where only the model decides --------------------------------------
# Everyday answers no word rule catches: no risk word, no key, no ailment, no hedge, no negation,
# not a bare yes or no. What understand() makes of them is the model's word and its cut-off.
MODEL_ONLY = [
    # (answer, what the production model predicts, its side of the cut-off, understood as)
    ("경로당 다녀왔어", CallOutcome.OK, "above", CallOutcome.OK),
    ("별일 없어", CallOutcome.OK, "above", CallOutcome.OK),
    ("약 먹었어", CallOutcome.OK, "below", CallOutcome.UNCLEAR),  # not sure enough to reassure
    ("국 끓이고 있어", CallOutcome.OK, "below", CallOutcome.UNCLEAR),
    ("지금 바빠", CallOutcome.CALL_BACK_LATER, "above", CallOutcome.CALL_BACK_LATER),
    ("누가 좀 와 줬으면", CallOutcome.HELP, "above", CallOutcome.HELP),
    ("시장 가는 길이야", CallOutcome.UNWELL, "below", CallOutcome.UNCLEAR),
    ("손주가 놀러 왔어", CallOutcome.EMERGENCY, "below", CallOutcome.UNCLEAR),
]


@pytest.fixture(scope="module")
def production_model() -> SpeechModel:
    """The model production uses: CallService.speech_model() fits this on the shipped set."""
    return SpeechModel().fit(load_utterances())


@pytest.mark.parametrize(("text", "predicted", "side", "understood"), MODEL_ONLY)
def test_only_the_model_and_its_cut_off_decide_an_everyday_answer(
    production_model: SpeechModel,
    text: str,
    predicted: CallOutcome,
    side: str,
    understood: CallOutcome,
) -> None:
    reading = read(text)
    assert rule_outcome(reading.text) is None and heard_key(reading.text, CHECK_IN) is None
    assert spoken_key(reading.text) is None and LEADING_KEY.match(reading.text) is None
    assert not (reading.unwell or reading.negated_well or reading.hedged or reading.blocks_ok)
    outcome, confidence = production_model.predict(text)
    cut = OK_CONFIDENCE if outcome is CallOutcome.OK else RAISE_CONFIDENCE
    assert (outcome, "above" if confidence >= cut else "below") == (predicted, side), confidence
    assert understand(text, production_model, CHECK_IN) is understood


class _Sure(SpeechModel):
    """A model whose word and confidence are given: the cut-offs, exactly at their edges."""

    def __init__(self, outcome: CallOutcome, confidence: float) -> None:
        super().__init__()
        self.answer = (outcome, confidence)

    @property
    def fitted(self) -> bool:
        return True

    def predict(self, text: str) -> tuple[CallOutcome, float]:
        return self.answer


@pytest.mark.parametrize(
    ("outcome", "confidence", "understood"),
    [
        (CallOutcome.OK, 0.5, CallOutcome.OK),  # OK_CONFIDENCE: sure enough to reassure
        (CallOutcome.OK, 0.4999, CallOutcome.UNCLEAR),
        (CallOutcome.CALL_BACK_LATER, 0.4, CallOutcome.CALL_BACK_LATER),  # RAISE_CONFIDENCE
        (CallOutcome.CALL_BACK_LATER, 0.3999, CallOutcome.UNCLEAR),
        (CallOutcome.HELP, 0.4, CallOutcome.HELP),
        (CallOutcome.HELP, 0.3999, CallOutcome.UNCLEAR),
        (CallOutcome.UNWELL, 0.4, CallOutcome.UNWELL),
        (CallOutcome.UNWELL, 0.3999, CallOutcome.UNCLEAR),
        (CallOutcome.EMERGENCY, 0.99, CallOutcome.HELP),  # a likeness never reaches the top
        (CallOutcome.EMERGENCY, 0.3999, CallOutcome.UNCLEAR),
    ],
)
def test_the_cut_offs_at_their_edges(
    outcome: CallOutcome, confidence: float, understood: CallOutcome
) -> None:
    assert (OK_CONFIDENCE, RAISE_CONFIDENCE) == (0.5, 0.4)
    assert understand("국 끓이고 있어", _Sure(outcome, confidence), CHECK_IN) is understood
