"""What a spoken answer means: risk-word rules first, then a small classifier trained at start.

The classifier is character n-gram TF-IDF + logistic regression over calls/data/utterances_ko.tsv,
a hand-written set of colloquial, dialect (Jeolla first: the district is in Gwangju) and elderly
Korean answers. It is trained from that text when first used (well under a second); nothing binary
is shipped or loaded.

An answer is read in this order:

1. calls.reading rewrites what sounds like risk or pain but is not ("안 아파요" reads as
   괜찮아) and notes what the answer signals: a negated wellbeing word, an ailment, a low mood
   or reassurance that says less than it seems ("허리 빼고는 괜찮아", "괜찮다고 해야지")
   make it unwell; a negation, a hedge or a doubt keep it from being reassurance on its own;
2. risk rules (emergency words and a wish to die, a fall one cannot get up from; then help
   words, a fall): the first match decides, even when negated ("숨이 안 쉬어져" is an
   emergency). Only a rule reaches EMERGENCY, the top of the alert ladder;
3. a key said aloud anywhere that asks for more than reassurance ("괜찮아요 2번") is heard:
   the words may add to it, never soften it;
4. cues: what reads as unwell is UNWELL; a key said aloud or a bare "예" answers the question
   that was asked (see Question), and nothing when none was;
5. a hedge ("괜찮은 것 같기도 하고") asks again; then the model, which may raise an answer
   (at most to HELP) only when confident, and settle it (OK) only when confident and nothing
   blocks reassurance;
6. otherwise UNCLEAR: the call asks again, and silence on risk is never taken as fine.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass, field
from importlib import resources
from types import MappingProxyType
from typing import Any, TypeVar

from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline

from calls.reading import CANT_GET_UP, CANT_MOVE, FALL, NOT_H, H, Reading, any_of, normalize, read
from core.domain import CallOutcome

__all__ = [
    "CHECK_IN", "UNPROMPTED", "Evaluation", "Question", "Reading", "SpeechModel", "evaluate",
    "load_utterances", "normalize", "read", "understand",
]  # fmt: skip

DATA_FILE = "utterances_ko.tsv"
OK_CONFIDENCE = 0.5  # the model must be this sure before silence on risk becomes reassurance
RAISE_CONFIDENCE = 0.4  # ... and this sure before its word alone raises or defers an answer


@dataclass(frozen=True, slots=True)
class Question:
    """What the resident was just asked, as far as understanding the answer needs it."""

    keys: Mapping[str, CallOutcome] = field(default_factory=dict)  # a key said aloud -> outcome
    yes_means_ok: bool = False  # a bare "예" / "응" answers "are you all right?"


# A message left on the 돌봄콜 line answers no question: a key or a bare yes there means nothing.
UNPROMPTED = Question()
# The check-in call: "괜찮으시면 1번, 도움이 필요하시면 2번을 누르시거나 말씀해 주세요".
CHECK_IN = Question(
    keys=MappingProxyType({"1": CallOutcome.OK, "2": CallOutcome.HELP}), yes_means_ok=True
)

# "영감 따라가고 싶어", "이제 그만 가야지", "빨리 가야 쓰겄어", "살아서 뭐 해"; not "병원 가야 돼"
# (a place before 가야) nor "빨리 가야 돼, 이따 전화해" (in a hurry).
WISH_TO_DIE = any_of(
    r"따라\s*(?:가고|가야|갔으면|가면|가고만)",
    r"그만\s*(?:가야|갔으면|가고\s*싶|가면|죽어야|죽었으면|죽고)",
    rf"{NOT_H}(?:빨리|얼른|어서|일찍|콱)\s*(?:가야|갔으면|죽어야|죽었으면)(?!.*(?:이따|나중|바빠|바뻐|전화|끊))",
    r"가야\s*할\s*때|갈\s*때가\s*(?:됐|되었|다\s*됐|다\s*되)",
    r"죽어야(?:지|제|겄|것|겠|\s*(?:쓰|하|혀|할|돼|되))|죽었으면\s*(?:좋|싶|하)",
    r"(?:자는\s*듯이?|자다가)\s*(?:가고|가면|갔으면|죽)",
    r"(?:하늘나라|저세상|저\s*세상|저승)\S*\s*(?:가고|가면|갔으면|가야|보내)",
    r"(?:하느님|하나님|부처님|영감|저승사자)\S*\s*(?:빨리\s*)?(?:나\s*)?(?:좀\s*)?데려가",
    r"살아서?\s*(?:뭐|머|뭣|무엇)\s*(?:해|혀|하|할)|사는\s*게\s*(?:지겨|지긋지긋|무슨\s*의미)",
    # "그만 살았으면", "빨리 데려갔으면", "아침에 안 깨어났으면", "눈 감고 안 떴으면",
    # "내가 없어져야 자식들이 편하지", "자식들한테 짐만 되고"
    r"(?:그만|고만)\s*살았으면|데려갔으면|안\s*깨어?났으면|(?:눈\s*)?안\s*떴으면",
    r"(?:내가|나만|나\s*하나)\s*없어져야|짐만\s*(?:되|돼)|짐이\s*(?:되|돼)",
    # giving up on living: "사는 게 그만하고 싶다", "다 그만하고 싶어", "인생 그만두고 싶어"
    r"(?:사는\s*(?:게|것|거)?|다|인생|세상|목숨)\s*(?:그만|고만)\s*(?:하고\s*싶|두고\s*싶|둘래|살)",
)  # fmt: skip

# A wish to die or to stop living, said any way the rules know: the call closes with words of
# its own (calls.twiml.DESPAIR_CLOSING), not "hang up and call 119".
DESPAIR = re.compile(
    WISH_TO_DIE + "|" + any_of(r"죽고\s*싶|죽고만\s*싶|살기\s*싫|그만\s*살고|살고\s*싶지\s*않",
                               r"죽어\s*버리|목숨을?\s*끊|자살")
)  # fmt: skip


def despairs(text: str | None) -> bool:
    """The answer says the resident wishes to die or to stop living."""
    return bool(text) and DESPAIR.search(normalize(text or "")) is not None


# -- rules ---------------------------------------------------------------------------------------

# Checked in order before the model; the first match decides.
RISK_RULES: tuple[tuple[re.Pattern[str], CallOutcome], ...] = (
    (
        re.compile(
            r"살려|119|일일구|구급|앰뷸|응급|위급|쓰러|숨이|숨을|숨\s*막|호흡|의식|마비|"
            r"피가|가슴이|심장|발작|경련|불이\s*났|불났|불이야|가스\s*냄새|"
            r"급해|급합|급혀|(?:빨리|당장|얼른)\s*(?:좀\s*)?와|"
            r"죽고\s*싶|죽고만\s*싶|살기\s*싫|그만\s*살고|살고\s*싶지\s*않|죽어\s*버리|목숨을?\s*끊|자살|"
            r"정신을?\s*잃|정신이\s*가물|눈앞이\s*캄캄|말이\s*(?:잘\s*)?안\s*나|부러졌|부러진|"
            r"머리를?\s*(?:세게\s*)?(?:부딪|박았|박아|찧)|목에\s*뭐가\s*걸|약을?\s*너무\s*많이|"
            r"한쪽이\s*(?:안\s*움직|마비)|입이\s*돌아|말이\s*어눌|혀가\s*꼬|가슴을|"
            r"죽을\s*것\s*같|나\s*죽(?:네|는다|겄네)|토(?:하|했)\S*\s*정신"
        ),
        CallOutcome.EMERGENCY,
    ),
    # a wish to die, said the way the old say it: as 죽고 싶어 (the top of the ladder)
    (re.compile(WISH_TO_DIE), CallOutcome.EMERGENCY),
    # a fall one cannot get up from
    (
        re.compile(rf"{FALL}.*(?:{CANT_GET_UP}|{CANT_MOVE})|{CANT_GET_UP}.*{FALL}"),
        CallOutcome.EMERGENCY,
    ),
    (
        re.compile(r"\b(ambulance|emergency|can'?t breathe|chest pain|fell|fallen)\b", re.I),
        CallOutcome.EMERGENCY,
    ),
    (re.compile(r"도와|도움|와\s*주|와\s*줘|다쳤|다쳐"), CallOutcome.HELP),
    # someone asked for: "나 좀 봐줘", "와서 봐 줘", "병원 좀 데려다 줘"
    (
        re.compile(
            r"봐\s*(?:줘|주쇼|주소|주라|주세요|주이소|주시오|달라)(?!서)|들여다\s*봐|"
            r"와\s*(?:봐|보쇼|보소|보세요|봐라|보랑께)(?!야|서)|데려다\s*(?:줘|주|줄)|데리러|와\s*달라|"
            r"사람\s*(?:좀\s*)?보내"
        ),
        CallOutcome.HELP,
    ),
    (re.compile(f"{FALL}|{CANT_GET_UP}"), CallOutcome.HELP),
    (re.compile(r"\b(help|hurt)\b", re.I), CallOutcome.HELP),
)

_YES_WORD = any_of(
    "네", "예", "응", "으응", "어", "엉", "웅", "야", "잉", "오냐", "암", "아먼", "그래", "그려",
    "그랴", "그럼", "그렇지", "그렇제", "그라제", "하모", "맞아", "맞제",
)  # fmt: skip
# One word of a bare yes or a bare no ("예", "네네", "그럼요"; "아니요", "아녀").
BARE_YES = re.compile(rf"^(?:{_YES_WORD})+(?:요|예|유|라우)?$|^(?:yes|yeah|yep)$", re.I)
BARE_NO = re.compile(
    r"^(?:아니|아니요|아니오|아뇨|아녀|아니여|아냐|아니야|아이다|아이요|아닙니다|아니에요|아니라우)$"
    r"|^(?:no|nope)$",
    re.I,
)
# A key said aloud: "1번", "일 번이요", "하나", "둘", "두 번"; the whole answer is the key.
_KEY_FORMS = (
    ("1", r"(?:1|일|하나)(?:\s*번)?|첫\s*번째|첫째"),
    ("2", r"(?:2|둘)(?:\s*번)?|(?:이|두)\s*번|두\s*번째|둘째"),
)
_KEY_ENDING = (
    r"(?:이요|요|이에요|이예요|예요|에요|입니다|이여|여|이라우|라우|이오|이유|유|임다|이다|이야)?"
    r"(?:\s*(?:누를게요|누를게|누를께요|할게요|할게|눌렀어요|눌렀어|눌러요))?"
)
_KEY_LEAD = rf"(?:(?:{_YES_WORD}|음|저)\s+)?"
SPOKEN_KEYS = tuple(
    (digit, re.compile(rf"^{_KEY_LEAD}(?:{form})\s*{_KEY_ENDING}$")) for digit, form in _KEY_FORMS
)
# A key said first, then words: "1번 괜찮아요", "일 번이요, 아파요" (not "이번 주는...").
LEADING_KEY = re.compile(
    r"^(?P<key>(?P<one>1\s*번?|일\s*번)|(?P<two>2\s*번?))(?:이요|요|이에요|예요)?[\s,]+(?P<rest>.+)$"
)
# A key said anywhere in the answer, after other words: "괜찮아 2번", "괜찮아요 이 번이요", "둘"
# (not "이번 주", "이 번 주는", "두 번 전화했는데", "둘이 살아", "손주가 둘이여").
_HEARD_KEY_ENDING = r"(?:이요|요|이에요|예요|에요|입니다|이여|여|이라우|라우|이유|유)?"
HEARD_KEYS = (
    ("1", re.compile(rf"(?<!\S)(?:1\s*번?|일\s*번){_HEARD_KEY_ENDING}(?!\S)")),
    (
        "2",
        re.compile(
            any_of(
                rf"(?<!\S)2\s*번?{_HEARD_KEY_ENDING}(?!\S)",
                rf"(?<!\S)이\s+번{_HEARD_KEY_ENDING}(?!\S)"
                r"(?!\s*(?:주|달|해|겨울|여름|봄|가을|명절|설|추석|에|엔))",
                r"(?<!\S)이번(?:이요|요|이에요|예요|입니다|이라우)(?!\S)",
                rf"(?<![가이은는도]\s)(?<!\S)둘{_HEARD_KEY_ENDING}(?!\S)"
                r"(?!\s*(?:다|이서|명|개|살|째|밖에|뿐))",
            )
        ),
    ),
)
ENGLISH_OK = re.compile(r"\b(yes|yeah|fine|ok|okay|good|all right|alright)\b", re.I)
ENGLISH_LATER = re.compile(r"\b(later|busy|call (me )?back)\b", re.I)


def load_utterances() -> list[tuple[str, CallOutcome]]:
    """The shipped (text, outcome) pairs; '#' lines are comments."""
    text = resources.files("calls").joinpath("data", DATA_FILE).read_text(encoding="utf-8")
    pairs: list[tuple[str, CallOutcome]] = []
    for line in text.splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        label, _, utterance = line.partition("\t")
        pairs.append((utterance.strip(), CallOutcome(label.strip())))
    return pairs


def char_ngram_pipeline() -> Pipeline:
    """Character 1-3-grams (TF-IDF) and logistic regression: both classifiers of answers."""
    return Pipeline(
        [
            ("tfidf", TfidfVectorizer(analyzer="char_wb", ngram_range=(1, 3), sublinear_tf=True)),
            ("clf", LogisticRegression(C=8.0, max_iter=2000)),
        ]
    )


@dataclass(frozen=True, slots=True)
class Evaluation:
    """Held-out accuracy of the model alone and of rules + model."""

    train: int
    test: int
    model_accuracy: float
    accuracy: float


class SpeechModel:
    """The classifier; fit() learns, predict() answers. Nothing happens in the constructor.

    It sees answers as read() leaves them, so "안 아파요" reaches it as "괜찮아".
    """

    def __init__(self) -> None:
        self._pipeline: Pipeline | None = None

    def fit(self, pairs: list[tuple[str, CallOutcome]]) -> SpeechModel:
        pipeline = char_ngram_pipeline()
        pipeline.fit([read(t).text for t, _ in pairs], [o.value for _, o in pairs])
        self._pipeline = pipeline
        return self

    @property
    def fitted(self) -> bool:
        return self._pipeline is not None

    def predict(self, text: str) -> tuple[CallOutcome, float]:
        """The most likely outcome and its probability."""
        if self._pipeline is None:
            raise RuntimeError("SpeechModel.fit() first")
        probs: Any = self._pipeline.predict_proba([read(text).text])[0]
        classes = list(self._pipeline.classes_)
        best = int(probs.argmax())
        return CallOutcome(classes[best]), float(probs[best])


def rule_outcome(text: str) -> CallOutcome | None:
    """The outcome a risk rule forces, if any (on the answer as read())."""
    for pattern, outcome in RISK_RULES:
        if pattern.search(text):
            return outcome
    return None


def spoken_key(text: str) -> str | None:
    """The key ("1", "2") an answer consists of, said aloud; None for anything more."""
    for digit, pattern in SPOKEN_KEYS:
        if pattern.match(text):
            return digit
    return None


def heard_key(text: str, question: Question) -> CallOutcome | None:
    """The most urgent outcome a key said anywhere asks for, when it asks for more than OK."""
    heard = [question.keys.get(digit) for digit, pattern in HEARD_KEYS if pattern.search(text)]
    urgent = [o for o in heard if o in (CallOutcome.HELP, CallOutcome.EMERGENCY)]
    if not urgent:
        return None
    return CallOutcome.EMERGENCY if CallOutcome.EMERGENCY in urgent else CallOutcome.HELP


def understand(
    text: str, model: SpeechModel | None, question: Question = UNPROMPTED
) -> CallOutcome:
    """Rules, then cues, then the model; UNCLEAR when nothing is understood with confidence."""
    reading = read(text)
    if not reading.text:
        return CallOutcome.UNCLEAR
    ruled = rule_outcome(reading.text)
    if ruled is not None:
        return ruled
    urgent = heard_key(reading.text, question)
    if urgent is not None:
        return urgent  # "괜찮아 2번": the words may add to the key, never soften it
    if reading.negated_well or reading.unwell:
        return CallOutcome.UNWELL  # the words say it; the model may not make more of it
    key = spoken_key(reading.text)
    if key is not None:
        return question.keys.get(key, CallOutcome.UNCLEAR)
    if _every_word(BARE_YES, reading.text):
        return CallOutcome.OK if question.yes_means_ok else CallOutcome.UNCLEAR
    if _every_word(BARE_NO, reading.text):
        return CallOutcome.UNCLEAR  # "no" to "are you all right?", or to "do you need help?"
    lead = LEADING_KEY.match(reading.text)
    if lead is not None:
        return _with_key(lead, model, question)
    if reading.hedged:
        return CallOutcome.UNCLEAR  # neither yes nor no: ask again
    predicted, confidence = _predict(reading.text, model)
    if predicted is CallOutcome.OK:
        if confidence >= OK_CONFIDENCE and not reading.blocks_ok:
            return CallOutcome.OK
        return CallOutcome.UNCLEAR
    if confidence < RAISE_CONFIDENCE:
        return CallOutcome.UNCLEAR
    if predicted is CallOutcome.EMERGENCY:
        return CallOutcome.HELP  # the top of the ladder takes a risk word, not a likeness to one
    return predicted


def _every_word(pattern: re.Pattern[str], text: str) -> bool:
    return all(pattern.match(word) for word in text.split())


def _predict(text: str, model: SpeechModel | None) -> tuple[CallOutcome, float]:
    """The model's word on a Korean answer; simple keywords without it, or for English."""
    if model is not None and model.fitted and re.search(H, text):
        return model.predict(text)
    if ENGLISH_LATER.search(text):
        return CallOutcome.CALL_BACK_LATER, 1.0
    if ENGLISH_OK.search(text) or re.search(rf"괜찮|{NOT_H}(?:네|예)(?!{H})", text):
        return CallOutcome.OK, 1.0
    return CallOutcome.UNCLEAR, 1.0


def _with_key(lead: re.Match[str], model: SpeechModel | None, question: Question) -> CallOutcome:
    """A key said first and words after it: the words may add to the key, never soften it."""
    rest = understand(lead.group("rest"), model, question)
    key = question.keys.get("1" if lead.group("one") else "2")
    if key is None or rest not in (CallOutcome.OK, CallOutcome.UNCLEAR):
        return rest
    if key is CallOutcome.OK:
        return rest  # "1번 괜찮아요" is OK; "1번 ... (unclear)" confirms nothing
    return key


T = TypeVar("T", bound=tuple[Any, ...])


def stratified_split(
    items: list[T], stratum: Callable[[T], Hashable], test_share: float, seed: int
) -> tuple[list[T], list[T]]:
    """(train, test): `test_share` of each stratum (at least one) held out, drawn by `seed`."""
    rng = random.Random(seed)
    strata: dict[Hashable, list[T]] = {}
    for item in items:
        strata.setdefault(stratum(item), []).append(item)
    train: list[T] = []
    test: list[T] = []
    for group in strata.values():
        group = sorted(group)
        rng.shuffle(group)
        cut = max(1, round(len(group) * test_share))
        test += group[:cut]
        train += group[cut:]
    return train, test


def evaluate(
    pairs: list[tuple[str, CallOutcome]],
    test_share: float = 0.25,
    seed: int = 13,
    question: Question = CHECK_IN,
) -> Evaluation:
    """Stratified held-out split: accuracy of the model alone and of understand().

    The shipped utterances answer the check-in call, so they are read as answers to CHECK_IN.
    """
    train, test = stratified_split(pairs, lambda pair: pair[1], test_share, seed)
    model = SpeechModel().fit(train)
    model_hits = sum(model.predict(t)[0] is o for t, o in test)
    hits = sum(understand(t, model, question) is o for t, o in test)
    return Evaluation(len(train), len(test), model_hits / len(test), hits / len(test))
