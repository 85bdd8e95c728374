"""Real answers, one a row, and what each must be understood as (issue 19).

The check-in call asks "괜찮으시면 1번, 도움이 필요하시면 2번을 누르시거나 말씀해 주세요";
answers to it go through calls.outcomes.classify_speech. A message left on the 돌봄콜 line goes
through understand() with no question: there a spoken key or a bare "예" answers nothing.
The worst error is false reassurance: no negated answer may ever be OK.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from calls.outcomes import classify_answer, classify_speech
from calls.understanding import SpeechModel, load_utterances, understand
from core.domain import CallOutcome

OK = CallOutcome.OK
UNWELL = CallOutcome.UNWELL
HELP = CallOutcome.HELP
EMERGENCY = CallOutcome.EMERGENCY
LATER = CallOutcome.CALL_BACK_LATER
UNCLEAR = CallOutcome.UNCLEAR

NEGATED = [
    ("괜찮지가 않아", UNWELL),
    ("잘 못 지내", UNWELL),
    ("안 괜찮아요", UNWELL),
    ("별로 안 좋아", UNWELL),
    ("괜찮긴 뭐가 괜찮아", UNWELL),
    ("못 지내요", UNWELL),
    ("좋지 않아", UNWELL),
    ("괜찮지 못해", UNWELL),
    ("안괜찮아", UNWELL),
    ("괜찮지 않어", UNWELL),
    ("괜찮지는 않아요", UNWELL),
    ("괜찮진 않아", UNWELL),
    ("좋진 않아요", UNWELL),
    ("별로 좋지 않아요", UNWELL),
    ("영 안 좋아", UNWELL),
    ("하나도 안 괜찮아", UNWELL),
    ("전혀 안 괜찮아요", UNWELL),
    ("전혀 괜찮지 않아", UNWELL),
    ("몸이 안 좋아부러", UNWELL),
    ("괜찮은 게 아니야", UNWELL),
    ("괜찮은 거 아녀", UNWELL),
    ("건강하지 않아요", UNWELL),
    ("잘 지내지 못해요", UNWELL),
    ("요즘 잘 못 지내요", UNWELL),
    ("별로야", UNWELL),
    ("컨디션이 별로여", UNWELL),
    ("괜찮을 리가 있나", UNWELL),
    ("좋긴 뭐가 좋아", UNWELL),
    ("괜찮다고는 못 하겠어", UNWELL),
    ("괜찮들 안 해", UNWELL),
    ("편하지 않아요", UNWELL),
    ("밥 못 묵었어", UNWELL),
    ("잠을 못 잤어", UNWELL),
    ("아니 잘 못 지내", UNWELL),
    ("예 안 괜찮아요", UNWELL),
    ("네 별로 안 좋아요", UNWELL),
    ("응 안 좋아", UNWELL),
    ("멀쩡하지 않아", UNWELL),
    ("썩 좋지는 않아", UNWELL),
    ("그다지 좋지 않네", UNWELL),
    ("괜찮지 않습니다", UNWELL),
    ("안 좋습니다", UNWELL),
    ("어제는 괜찮았는데 오늘은 안 좋아", UNWELL),
    ("내가 괜찮겄냐", UNWELL),
    ("괜찮은 편은 아니야", UNWELL),
    ("괜찮다 할 수 없어", UNWELL),
    ("괜찮을 것 같지 않아", UNWELL),
    ("잘 지낸다고 할 수 없지", UNWELL),
    ("괜찮다고 말은 못 하지", UNWELL),
    ("안 괜찮심더", UNWELL),
    ("좋아지지 않아", UNWELL),
    ("I'm not ok", UNWELL),
    ("not so good", UNWELL),
]

# A negated ailment is reassurance ("안 아파요" = it does not hurt) unless something else is not.
DOUBLE_NEGATIVES = [
    ("안 아파요", OK),
    ("아프지 않아", OK),
    ("하나도 안 아파", OK),
    ("이제 안 아파요", OK),
    ("아프진 않아요 괜찮아", OK),
    ("안 아프고 잘 있어", OK),
    ("나쁘지 않아요", OK),
    ("아무렇지도 않아요", OK),
    ("안 어지러워요 괜찮아요", OK),
    ("외롭지 않아 괜찮아", OK),
    ("안 심심해 괜찮아", OK),
    ("안 다쳤어요", OK),
    ("다친 데 없어요", OK),
    ("아픈 데 없어요", OK),
    ("아픈 데 없이 잘 있어요", OK),
    ("도움 필요 없어요 괜찮아요", OK),
    ("도움은 필요 없어요", OK),
    ("걱정 안 해도 돼 잘 있어", OK),
    ("안 넘어졌어 괜찮아", OK),
    ("지난번에 도와줘서 고마워요 잘 지내요", OK),
    ("괜찮아요 도움이 필요하면 연락할게요", OK),
    ("안 아픈 데가 없어", UNWELL),  # no place that does not hurt: everything hurts
    ("아프지 않은 곳이 없어", UNWELL),
    ("아프진 않은데 기운이 없어", UNWELL),
    ("안 아파 근데 어지러워", UNWELL),
    ("별로 안 아파요", UNWELL),  # "not much": some pain
    ("그렇게 많이 아프진 않아", UNWELL),
    ("도움은 필요 없는데 좀 아파", UNWELL),
    ("넘어질 뻔했어", UNWELL),
    ("아프지 않았으면 좋겠어", UNWELL),  # a wish: it hurts
    ("안 아프면 좋겠다", UNWELL),
    ("안 아픈 날이 없어", UNWELL),
    ("전혀 문제없어요", OK),
    ("넘어지지는 않았어", OK),
    ("넘어진 적 없어요", OK),
]

# "아니 괜찮아" is as often "no, I'm fine" as "no, not fine": ask again, never settle.
NO = [
    ("아니 괜찮아", UNCLEAR),
    ("아녀 괜찮어", UNCLEAR),
    ("아니요", UNCLEAR),
    ("아뇨", UNCLEAR),
    ("아니 아파", UNWELL),
]

# The check-in prompt: 1 = fine, 2 = help; a key said aloud means what the pressed key means.
SPOKEN_KEYS = [
    ("1번", OK),
    ("일 번", OK),
    ("하나", OK),
    ("일번이요", OK),
    ("1번이요", OK),
    ("일", OK),
    ("1", OK),
    ("하나요", OK),
    ("예 1번이요", OK),
    ("1번 누를게요", OK),
    ("1번 괜찮아요", OK),
    ("2번", HELP),
    ("이 번", HELP),
    ("둘", HELP),
    ("두 번", HELP),
    ("이번이요", HELP),
    ("2번 도와줘요", HELP),
    ("일 번 아파요", UNWELL),
    ("119", EMERGENCY),
    ("일일구", EMERGENCY),
    ("일일구 불러 줘", EMERGENCY),
]

# Boredom and loneliness: the care manager should know; never an emergency or a help request.
MOOD = [
    ("심심해", UNWELL),
    ("심심해 죽겄어", UNWELL),
    ("너무 심심하다", UNWELL),
    ("외로워", UNWELL),
    ("적적하네", UNWELL),
    ("쓸쓸해요", UNWELL),
    ("혼자라 심심해요", UNWELL),
    ("말할 사람이 없어", UNWELL),
]

# The commonest answers to "are you all right": yes, unless something else says otherwise.
YES = [
    ("예", OK),
    ("응", OK),
    ("네", OK),
    ("어", OK),
    ("그려", OK),
    ("야", OK),
    ("잉", OK),
    ("예예", OK),
    ("네네", OK),
    ("응응", OK),
    ("그럼요", OK),
    ("네.", OK),
    ("예!", OK),
    ("그랴", OK),
    ("오냐", OK),
    ("네?", UNCLEAR),
    ("예?", UNCLEAR),
    ("응?", UNCLEAR),
    ("음", UNCLEAR),
    ("예 좀 아파요", UNWELL),
    ("응 근데 허리가 아파", UNWELL),
    ("네 도와주세요", HELP),
    ("예 모르겠어요", UNCLEAR),
]

# A fall reaches the care manager at once; a fall they cannot get up from is an emergency.
FALLS = [
    ("넘어졌어", HELP),
    ("넘어졌어요", HELP),
    ("자빠졌어", HELP),
    ("미끄러졌어", HELP),
    ("엎어졌어", HELP),
    ("주저앉았어", HELP),
    ("못 일어나", HELP),
    ("혼자 못 일어나겠어", HELP),
    ("자빠져부렀어", HELP),
    ("넘어져부렀당께", HELP),
    ("욕실에서 넘어졌어요", HELP),
    ("어제 넘어졌는데 지금은 괜찮아", HELP),
    ("계단에서 굴렀어", HELP),
    ("침대에서 떨어졌어", HELP),
    ("넘어졌는데 못 일어나", EMERGENCY),
    ("화장실에서 미끄러져서 못 일어나겠어", EMERGENCY),
    ("엎어져서 일어날 수가 없어", EMERGENCY),
    ("주저앉아서 못 일어나요", EMERGENCY),
    ("넘어져서 꼼짝을 못 해", EMERGENCY),
    ("넘어져서 머리를 부딪혔어", EMERGENCY),
    ("I fell", EMERGENCY),
]

# Gwangju: Jeolla endings (-부러, -쇼, -라우, -당께, 잉) and verbs (묵다), and elderly speech.
JEOLLA = [
    ("괜찮허요", OK),
    ("괜찮애라", OK),
    ("잉 괜찮어", OK),
    ("밥 묵었어", OK),
    ("괜찮당께", OK),
    ("걱정 마쇼 잘 있응께", OK),
    ("밥 잘 묵고 잘 있어라우", OK),
    ("아따 괜찮다니께", OK),
    ("괜찮은께 걱정 마쇼", OK),
    ("예 괜찮아라우", OK),
    ("아이고 괜찮허당께", OK),
    ("겁나 아파부러", UNWELL),
    ("아파 죽겄어", UNWELL),
    ("허리가 쑤셔부러", UNWELL),
    ("징하게 아파", UNWELL),
    ("허벌나게 아프당께", UNWELL),
    ("몸이 겁나 안 좋아부러", UNWELL),
    ("혼자 있응께 적적허네", UNWELL),
    ("다리가 저려부러", UNWELL),
    ("무릎이 시려", UNWELL),
    ("도와주쇼", HELP),
    ("나 좀 살려 주쇼", EMERGENCY),
    ("이따 전화하쇼", LATER),
    ("지금 밭에 있응께 나중에 해", LATER),
]

# What already worked, and the doubts that may never become reassurance.
OTHERS = [
    ("살려줘", EMERGENCY),
    ("도와주세요", HELP),
    ("숨이 차요", EMERGENCY),
    ("죽고 싶어", EMERGENCY),
    ("살기 싫어", EMERGENCY),
    ("지금 밥 먹는 중이야 이따 해", LATER),
    ("모르겠네요", UNCLEAR),
    ("여보세요", UNCLEAR),
    ("괜찮은지 모르겠어", UNCLEAR),
    ("음 글쎄 괜찮은가", UNCLEAR),
    ("괜찮나", UNCLEAR),
    ("어제까진 괜찮았는데", UNCLEAR),
    ("괜찮긴 한데", UNCLEAR),
    ("네 괜찮아요", OK),
    ("괜찮아요 잘 지내요", OK),
    ("뭐 괜찮겠지", UNCLEAR),
    ("이번 주는 괜찮아", OK),
    ("1시간 뒤에 전화해", LATER),
    ("두 번 전화했는데 안 받더라", UNCLEAR),
    # the simulator's scripted residents (simulators/personas.py)
    ("응 괜찮어 걱정 말어", OK),
    ("요새 영 기운이 없어 머리가 어질어질해", UNWELL),
    ("보일러가 고장 나서 추워요 좀 도와주세요", HELP),
    ("숨이 안 쉬어져요 119 불러 줘", EMERGENCY),
    ("지금 밥 먹는 중이야 이따 전화해", LATER),
    ("뭐라카노 잘 안 들린다", UNCLEAR),
]

# False reassurance the review found (issue 31): an OK word that says less than it seems.
# "X 빼고는 괜찮아": something is wrong.
EXCEPTIONS = [
    ("허리 빼고는 다 괜찮아", UNWELL),
    ("다리만 빼면 괜찮혀", UNWELL),
    ("무릎 말고는 괜찮아요", UNWELL),
    ("허리만 아니면 괜찮은디", UNWELL),
    ("눈 빼곤 다 멀쩡해", UNWELL),
    ("다리 빼믄 괜찮당께", UNWELL),
    ("걱정 말고 잘 지내", OK),  # 말고 after 걱정 is "don't worry"
]
# The help key said after a reassurance: the key is heard (the words may add, never soften).
KEYS_ANYWHERE = [
    ("괜찮아 2번", HELP),
    ("괜찮아요 이 번이요", HELP),
    ("괜찮은디 2번", HELP),
    ("예 괜찮아요 둘", HELP),
    ("괜찮아 이번이요", HELP),
    ("잘 있어요 2번이요", HELP),
    ("아파 2번", HELP),
    ("괜찮아요 1번이요", OK),
    ("이번 주는 괜찮아", OK),
    ("이번에는 괜찮아요", OK),
]
# Resignation, pretending, hiding it from the family: not fine.
RESIGNATION = [
    ("괜찮다고 해야지", UNWELL),
    ("괜찮다 해야지 어쩌겄어", UNWELL),
    ("괜찮아야지", UNWELL),
    ("괜찮은 척 해야지", UNWELL),
    ("괜찮아 나만 참으면 돼", UNWELL),
    ("애들한테는 말하지 마 괜찮아", UNWELL),
    ("괜찮다고 혀야제", UNWELL),
    ("괜찮은 체 하는 거지", UNWELL),
    ("어쩌겄어 참아야지", UNWELL),
    ("아들한테 얘기하지 말어 괜찮응께", UNWELL),
    ("자식들 걱정할까 봐 괜찮다 했어", UNWELL),
    ("내가 참고 살아야지 괜찮아", UNWELL),
    ("괜찮아야 쓰겄는디", UNWELL),
    ("참 좋아요", OK),  # 참 = very
]
# "Bearable" is said of a pain.
BEARABLE = [
    ("견딜 만해", UNWELL),
    ("견딜 만혀", UNWELL),
    ("참을 만해", UNWELL),
    ("아직은 견딜 만해요", UNWELL),
    ("참을 만혀", UNWELL),
    ("버틸 만해", UNWELL),
    ("참을만 해요 괜찮아", UNWELL),
]
# Hedges and the borderline: ask again (or unwell), never OK.
NOT_SETTLED = [
    ("괜찮은 것 같기도 하고", UNCLEAR),
    ("괜찮은 것도 같고", UNCLEAR),
    ("괜찮은 거 같기도 허고", UNCLEAR),
    ("좋은 것 같기도 하고 아닌 것 같기도 하고", UNCLEAR),
    ("네 예 예 뭐라고요", UNCLEAR),
    ("뭐라고요?", UNCLEAR),
    ("예 예 예?", UNCLEAR),
    ("뭐라고 했어", UNCLEAR),
]
BORDERLINE = [
    "그냥 그려",
    "그럭저럭 지내",
    "그럭저럭 살아",
    "그냥 그래요",
    "그저 그래",
    "그냥저냥 살아",
    "그럭저럭 지내지 뭐",
    "그냥 사는 거지",
    "그럭저럭 잘 지내요",
]
# A wish to die, however it is said, is what "죽고 싶어" is: the top of the ladder.
WISH_TO_DIE = [
    ("영감 따라가고 싶어", EMERGENCY),
    ("이제 그만 가야지", EMERGENCY),
    ("빨리 가야 쓰겄어", EMERGENCY),
    ("얼른 가야제", EMERGENCY),
    ("할아버지 따라 가고 싶어", EMERGENCY),
    ("그만 죽어야지", EMERGENCY),
    ("자는 듯이 가고 싶어", EMERGENCY),
    ("하늘나라 가고 싶어", EMERGENCY),
    ("오래 살아서 뭐 해", EMERGENCY),
    ("살아서 뭐하겄어", EMERGENCY),
    ("이제 가야 할 때가 됐지", EMERGENCY),
    ("병원 가야 쓰겄는디", UNWELL),  # going somewhere real is not a wish to die
    ("병원에 가 봐야겠어", UNWELL),
    ("시장 가야 돼 이따 전화해", LATER),
]
# Asking for someone, or for a ride to the doctor.
REQUESTS = [
    ("아이고 나 좀 봐줘", HELP),
    ("누가 좀 와서 봐 줘", HELP),
    ("병원 좀 데려다 줘", HELP),
    ("나 좀 들여다봐 주쇼", HELP),
]

CHECK_IN_TABLE = (
    NEGATED
    + DOUBLE_NEGATIVES
    + NO
    + SPOKEN_KEYS
    + MOOD
    + YES
    + FALLS
    + JEOLLA
    + OTHERS
    + EXCEPTIONS
    + KEYS_ANYWHERE
    + RESIGNATION
    + BEARABLE
    + NOT_SETTLED
    + WISH_TO_DIE
    + REQUESTS
)

# A message on the 돌봄콜 line answers no question: a key or a bare yes there means nothing.
MESSAGE_TABLE = [
    ("1번", UNCLEAR),
    ("일 번", UNCLEAR),
    ("하나", UNCLEAR),
    ("일번이요", UNCLEAR),
    ("2번", UNCLEAR),
    ("예", UNCLEAR),
    ("응", UNCLEAR),
    ("119", EMERGENCY),
    ("일일구 불러 줘", EMERGENCY),
    ("괜찮지가 않아", UNWELL),
    ("심심해", UNWELL),
    ("넘어졌어", HELP),
    ("넘어졌는데 못 일어나", EMERGENCY),
    ("괜찮아요 잘 지내요", OK),
]

OK_PHRASES = [
    "괜찮아요",
    "괜찮아",
    "잘 지내요",
    "네 괜찮아요",
    "괜찮습니다",
    "응 괜찮어",
    "괜찮허요",
    "괜찮애라",
    "잉 괜찮어",
    "좋아요",
    "건강해요",
    "잘 있어요",
    "밥 잘 먹고 잘 있어",
    "괜찮당께",
    "예",
    "응",
    "네",
    "그려",
    "1번",
    "아픈 데 없이 잘 있어요",
]
NEGATION_PREFIXES = [
    "안",
    "못",
    "별로",
    "전혀",
    "아니",
    "아녀",
    "아니요",
    "아뇨",
    "별로 안",
    "안 괜찮아",
    "괜찮지가 않아",
    "잘 못 지내요",
]
NEGATION_SUFFIXES = [
    "아니",
    "아니야",
    "아녀",
    "아니여",
    "안 괜찮아",
    "괜찮지가 않아",
    "별로야",
    "근데 잘 못 지내",
    "는 아니고",
    "좋지 않아",
]


SAID_KEYS = {
    "1": ["1", "1번", "일", "일 번", "일번", "하나"],
    "2": ["2", "2번", "이 번", "이번", "둘", "두 번"],
}


def _id(row: tuple[str, CallOutcome]) -> str:
    return f"{row[0]}->{row[1].value}"


@pytest.fixture(scope="module")
def model() -> SpeechModel:
    return SpeechModel().fit(load_utterances())


@pytest.mark.parametrize(("answer", "expected"), CHECK_IN_TABLE, ids=map(_id, CHECK_IN_TABLE))
def test_check_in_answers(model: SpeechModel, answer: str, expected: CallOutcome) -> None:
    assert classify_speech(answer, model) is expected


@pytest.mark.parametrize("answer", BORDERLINE)
def test_a_borderline_answer_is_never_ok(model: SpeechModel, answer: str) -> None:
    assert classify_speech(answer, model) in (UNCLEAR, UNWELL)
    assert classify_speech(answer) in (UNCLEAR, UNWELL)


@pytest.mark.parametrize(
    "answer",
    [a for a, o in EXCEPTIONS + RESIGNATION + BEARABLE + NOT_SETTLED + WISH_TO_DIE if o is not OK]
    + BORDERLINE,
)
def test_false_reassurance_is_never_ok_even_without_the_model(answer: str) -> None:
    assert classify_speech(answer) is not OK


@pytest.mark.parametrize(("answer", "expected"), MESSAGE_TABLE, ids=map(_id, MESSAGE_TABLE))
def test_line_messages(model: SpeechModel, answer: str, expected: CallOutcome) -> None:
    assert understand(answer, model) is expected


@pytest.mark.parametrize("answer", [a for a, o in NEGATED + NO if o is not OK])
def test_a_negation_is_never_ok_even_without_the_model(answer: str) -> None:
    assert classify_speech(answer) is not OK
    assert understand(answer, None) is not OK


@pytest.mark.parametrize("answer", OK_PHRASES)
def test_the_ok_phrases_are_ok(model: SpeechModel, answer: str) -> None:
    assert classify_speech(answer, model) is OK


@settings(max_examples=300, deadline=None)
@given(
    phrase=st.sampled_from(OK_PHRASES),
    negation=st.one_of(
        st.tuples(st.just("prefix"), st.sampled_from(NEGATION_PREFIXES)),
        st.tuples(st.just("suffix"), st.sampled_from(NEGATION_SUFFIXES)),
    ),
    separator=st.sampled_from([" ", ", ", "... ", "  "]),
)
def test_a_negated_ok_phrase_is_never_ok(
    model: SpeechModel, phrase: str, negation: tuple[str, str], separator: str
) -> None:
    where, form = negation
    answer = f"{form}{separator}{phrase}" if where == "prefix" else f"{phrase}{separator}{form}"
    assert classify_speech(answer, model) is not OK, answer
    assert classify_speech(answer) is not OK, answer
    assert understand(answer, model) is not OK, answer


@settings(max_examples=200, deadline=None)
@given(
    key=st.sampled_from([(d, said) for d, forms in SAID_KEYS.items() for said in forms]),
    ending=st.sampled_from(["", "요", "이요", "이에요", "입니다", " 누를게요", "."]),
)
def test_a_spoken_key_means_the_pressed_key_and_never_an_emergency(
    model: SpeechModel, key: tuple[str, str], ending: str
) -> None:
    digit, said = key
    answer = f"{said}{ending}"
    assert classify_answer(None, answer, model) is classify_answer(digit, None), answer
    assert understand(answer, model) is UNCLEAR, answer  # a message answers no key prompt


@settings(max_examples=200, deadline=None)
@given(
    yes=st.sampled_from(["예", "응", "네", "어", "그려", "야", "잉"]),
    unwell=st.sampled_from(["좀 아파요", "허리가 쑤셔", "심심해", "안 좋아", "잘 못 지내"]),
)
def test_a_yes_with_anything_unwell_is_unwell(model: SpeechModel, yes: str, unwell: str) -> None:
    assert classify_speech(f"{yes} {unwell}", model) is UNWELL
