"""The guards around the model, with a model that always says the same thing.

Whatever the model says, a negation is never reassurance, an unsure OK is not OK, and the model
alone never reaches the top of the alert ladder; a spoken key means what the question says.
"""

from __future__ import annotations

import pytest

from calls.understanding import CHECK_IN, UNPROMPTED, Question, SpeechModel, read, understand
from core.domain import CallOutcome

OK = CallOutcome.OK
UNWELL = CallOutcome.UNWELL
HELP = CallOutcome.HELP
EMERGENCY = CallOutcome.EMERGENCY
UNCLEAR = CallOutcome.UNCLEAR


class Always(SpeechModel):
    """A model that answers `outcome` with `confidence` to everything."""

    def __init__(self, outcome: CallOutcome, confidence: float) -> None:
        super().__init__()
        self.outcome = outcome
        self.confidence = confidence

    @property
    def fitted(self) -> bool:
        return True

    def predict(self, text: str) -> tuple[CallOutcome, float]:
        return self.outcome, self.confidence


SURE_OK = Always(OK, 0.99)
UNSURE_OK = Always(OK, 0.45)
SURE_EMERGENCY = Always(EMERGENCY, 0.99)
UNSURE_HELP = Always(HELP, 0.3)

NEGATED = [
    "괜찮지가 않아", "잘 못 지내", "안 괜찮아요", "별로 안 좋아", "괜찮긴 뭐가 괜찮아", "못 지내요",
    "좋지 않아", "괜찮지 못해", "괜찮은 편은 아니야", "괜찮다 할 수 없어", "괜찮을 것 같지 않아",
    "아프지 않았으면 좋겠어", "안 아프면 좋겠다", "안 아픈 날이 없어", "잘 지낸다고 할 수 없지",
]  # fmt: skip
# Reassurance that says less than it seems (issue 31): no model may settle it.
FALSE_REASSURANCE = [
    ("허리 빼고는 다 괜찮아", UNWELL), ("괜찮다고 해야지", UNWELL), ("괜찮아야지", UNWELL),
    ("괜찮은 척 해야지", UNWELL), ("괜찮아 나만 참으면 돼", UNWELL), ("견딜 만해", UNWELL),
    ("애들한테는 말하지 마 괜찮아", UNWELL), ("괜찮은 것 같기도 하고", UNCLEAR),
    ("괜찮은 것도 같고", UNCLEAR), ("그럭저럭 지내", UNCLEAR), ("그냥 그려", UNCLEAR),
    ("예 예 뭐라고요", UNCLEAR), ("괜찮아 2번", HELP), ("이제 그만 가야지", EMERGENCY),
]  # fmt: skip
DOUBTFUL = ["아니 괜찮아", "괜찮나", "뭐 괜찮겠지", "안 아파?", "전혀 괜찮아", "괜찮긴 한데", "예?"]


@pytest.mark.parametrize("answer", NEGATED)
def test_a_sure_ok_model_cannot_make_a_negation_ok(answer: str) -> None:
    assert understand(answer, SURE_OK, CHECK_IN) is UNWELL


@pytest.mark.parametrize(("answer", "expected"), FALSE_REASSURANCE)
def test_a_sure_ok_model_cannot_settle_false_reassurance(
    answer: str, expected: CallOutcome
) -> None:
    assert understand(answer, SURE_OK, CHECK_IN) is expected


@pytest.mark.parametrize("answer", DOUBTFUL)
def test_a_sure_ok_model_cannot_settle_a_doubt(answer: str) -> None:
    assert understand(answer, SURE_OK, CHECK_IN) is UNCLEAR


def test_an_unsure_ok_is_not_ok() -> None:
    assert understand("괜찮아요", SURE_OK, CHECK_IN) is OK
    assert understand("괜찮아요", UNSURE_OK, CHECK_IN) is UNCLEAR


def test_an_unsure_raise_is_unclear() -> None:
    assert understand("누가 시켰어", UNSURE_HELP, CHECK_IN) is UNCLEAR


def test_the_model_alone_never_reaches_the_top_of_the_ladder() -> None:
    assert understand("살 만해요", SURE_EMERGENCY, CHECK_IN) is HELP
    assert understand("심심해", SURE_EMERGENCY, CHECK_IN) is UNWELL
    assert understand("일 번", SURE_EMERGENCY, CHECK_IN) is OK
    assert understand("일 번", SURE_EMERGENCY, UNPROMPTED) is UNCLEAR
    assert understand("예", SURE_EMERGENCY, CHECK_IN) is OK
    assert understand("119", SURE_OK, CHECK_IN) is EMERGENCY  # a rule does


def test_negation_does_not_soften_an_emergency_word() -> None:
    assert understand("숨이 안 쉬어져", SURE_OK, CHECK_IN) is EMERGENCY
    assert understand("말이 잘 안 나와", SURE_OK, CHECK_IN) is EMERGENCY


def test_the_keys_follow_the_question() -> None:
    swapped = Question(keys={"1": HELP, "2": OK}, yes_means_ok=True)  # keys the other way
    assert understand("1번", SURE_OK, swapped) is HELP
    assert understand("일 번이요", SURE_OK, CHECK_IN) is OK
    assert understand("둘", SURE_OK, CHECK_IN) is HELP
    assert understand("이번 주는 괜찮아", SURE_OK, CHECK_IN) is OK  # 이번 = this, not key 2


def test_a_help_key_is_heard_anywhere_in_the_answer() -> None:
    swapped = Question(keys={"1": HELP, "2": OK}, yes_means_ok=True)
    assert understand("괜찮아요 이 번이요", SURE_OK, CHECK_IN) is HELP
    assert understand("괜찮아 1번", SURE_OK, swapped) is HELP
    assert understand("괜찮아 2번", SURE_OK, swapped) is OK
    assert understand("괜찮아 2번", SURE_OK, UNPROMPTED) is OK  # a message answers no key prompt
    assert understand("괜찮아 2번 숨이 차", SURE_OK, CHECK_IN) is EMERGENCY  # a key never lowers
    assert understand("이 번 주는 괜찮아", SURE_OK, CHECK_IN) is OK


@pytest.mark.parametrize(
    ("answer", "read_as"),
    [
        ("안 아파요", "괜찮아"),
        ("아프지 않아", "괜찮아"),
        ("도움 필요 없어요", "괜찮아"),
        ("안 넘어졌어", "괜찮아"),
        ("와 줘서 고마워", "고마워"),
        ("별로 안 아파요", "별로 좀 아파"),
    ],
)
def test_double_negatives_are_read_as_what_they_mean(answer: str, read_as: str) -> None:
    assert read(answer).text == read_as
