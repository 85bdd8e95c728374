"""What a spoken answer means: risk-word rules first, then a small classifier trained at start.

The classifier is character n-gram TF-IDF + logistic regression over calls/data/utterances_ko.tsv,
a hand-written set of colloquial, dialect (Jeolla first: the district is in Gwangju) and elderly
Korean answers. It is trained from that text when first used (well under a second); nothing binary
is shipped or loaded.

An answer is read in this order:

1. rewrites of what sounds like risk or pain but is not: a negated ailment ("안 아파요",
   "아프지 않아") reads as 괜찮아, and so do a declined or thanked-for help ("도움 필요 없어요",
   "와 줘서 고마워") and a fall that did not happen ("안 넘어졌어"); forms worse than they look
   are marked unwell on the way ("안 아픈 데가 없어" = everything hurts, "별로 안 아파" = some
   pain, "넘어질 뻔했어");
2. risk rules (emergency words, a fall one cannot get up from; then help words, a fall): the
   first match decides, even when negated ("숨이 안 쉬어져" is an emergency). Only a rule
   reaches EMERGENCY, the top of the alert ladder;
3. cues: a negated wellbeing word ("괜찮지가 않아", "잘 못 지내", "괜찮긴 뭐가 괜찮아"), an
   ailment or a low mood ("쑤셔부러", "심심해") make UNWELL; a key said aloud or a bare "예"
   answers the question that was asked (see Question), and nothing when none was;
4. the model, which may raise an answer (at most to HELP) only when confident, and settle it
   (OK) only when confident and nothing blocks reassurance: a negation (안, 못, -지 않, 아니),
   a hedge (별로, 전혀), a doubt (모르겠어, 글쎄, "괜찮은가", "괜찮았는데");
5. otherwise UNCLEAR: the call asks again, and silence on risk is never taken as fine.
"""

from __future__ import annotations

import random
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from types import MappingProxyType
from typing import Any

from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline

from core.domain import CallOutcome

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

H = "[가-힣]"  # one Hangul syllable
NOT_H = f"(?<!{H})"  # at the start of a word


def _any(*words: str) -> str:
    return "(?:" + "|".join(words) + ")"


# -- the words ---------------------------------------------------------------------------------

# Saying one is fine: negate it and the answer is not ("안 괜찮아", "괜찮지가 않아").
WELL = _any(
    "괜찮", "괜찬", "갠찮", "개안", "좋", "건강", "멀쩡", "편안", "편하", "편해", "지내", "지냈", "지낸",
    "정정", "튼튼",
)  # fmt: skip
# Saying one is not: negate it and the answer is ("안 아파요", "아프지 않아", "안 심심해").
AILMENT = _any(
    "아프", "아파", "아퍼", "아픈", "아팠", "아펐", "편찮", "어지러", "어지럽", "힘들", "힘드",
    "쑤시", "쑤셔", "쑤신", "결리", "결려", "저리", "저려", "저린", "시리", "시려", "시린",
    "피곤", "외로", "외롭", "심심", "적적", "쓸쓸", "우울", "울적", "서글", "서럽", "허전",
    "불편", "나쁘", "나빠", "나뻐", "다치", "다쳐", "다쳤", "다친", "답답", "추워", "춥",
    "메스껍", "메스꺼", "쓰리", "쓰려", "가렵", "어질",
)  # fmt: skip
# Unwell however it is said (no negation turns these around).
UNWELL_PHRASES = _any(
    r"죽겄", r"죽겠", r"죽것", r"기운이?\s*(?:하나도\s*|통\s*|영\s*)?없", r"기력이?\s*없",
    r"힘이\s*없", r"입맛이?\s*없", r"밥맛이?\s*없", r"잠이\s*안\s*(?:와|오)",
    r"잠을?\s*(?:통\s*|잘\s*)?못", r"소화가?\s*안", r"말이\s*(?:아니|아녀|아냐|아이)",
    r"시원찮", r"시원치\s*않", r"찌뿌", r"으슬으슬", r"지끈", r"욱신", r"따끔", r"침침",
    r"깜빡깜빡", r"몸이\s*무거", r"몸살", r"감기", r"기침", r"가래", r"열이\s*(?:좀\s*|많이\s*)?(?:나|있|났|올)",
    r"열나", r"설사", r"체했", r"체한", r"토하", r"토할", r"토했", r"구역질", r"붓고", r"부었",
    r"삭신", r"골골", r"시름시름", r"혈압이\s*(?:좀\s*|많이\s*)?(?:올|높)",
    r"당이\s*(?:좀\s*|많이\s*)?(?:높|올)", r"약이?\s*(?:다\s*)?떨어", r"약을?\s*다\s*먹어",
    r"(?:말|얘기|이야기)\s*할\s*사람이?\s*없", r"말동무가?\s*없", r"예전\s*같지",
)  # fmt: skip
WEAK_HEDGE = _any("별로", "그다지", "그닥", "그리", "그렇게", "많이", "크게", "심하게", "썩")
FALL = _any(
    "넘어지", "넘어졌", "넘어져", "넘어짐", "넘어진", "넘어질", "자빠", "미끄러지", "미끄러졌",
    "미끄러져", "미끄러진", "엎어지", "엎어졌", "엎어져", "엎어진", "주저앉", "낙상", "굴렀",
    r"굴러\s*떨어", r"에서\s*떨어(?:졌|져)", "헛디", "고꾸라", "꼬꾸라", "엉덩방아",
)  # fmt: skip
CANT_GET_UP = _any(
    r"못\s*(?:일어|일나|인나)", r"(?:일어나|일어서|인나)(?:지|질|들)\s*(?:를|도|가)?\s*못",
    r"(?:일어날|일어설)\s*수(?:가|도)?\s*없",
)  # fmt: skip
CANT_MOVE = _any(r"못\s*움직", r"움직이지\s*(?:를|도)?\s*못", r"움직일\s*수(?:가|도)?\s*없", "꼼짝")


# -- rewrites: (pattern, replacement, marks the answer unwell) ------------------------------------

_NEGATED_AILMENT = re.compile(
    _any(
        rf"{NOT_H}안\s*{AILMENT}{H}*",
        rf"{AILMENT}{H}{{0,2}}?(?:지|진|들|덜)\s*(?:가|는|도|요)?\s*(?:않{H}*|안\s*(?:해|혀){H}*)",
        rf"(?:아픈|아프신|다친|불편한)\s*(?:데|곳|덴|구석)\s*(?:가|는|도|이|은)?\s*"
        rf"(?:하나\s*|하나도\s*|전혀\s*|별로\s*|딱히\s*|한\s*군데도\s*)?(?:없|읎|엄){H}*",
    )
)
_HEDGED = re.compile(rf"{NOT_H}{WEAK_HEDGE}(?!{H})\s*(?:{WEAK_HEDGE}\s*)?$")
_WISH = re.compile(r"(?:면|기를|도록|게|길)$")  # a wish or a condition, not a statement
_HEDGE_INSIDE = re.compile(rf"{NOT_H}(?:별로|그다지|그닥|많이|크게|썩)(?!{H})")

REWRITES: tuple[tuple[re.Pattern[str], str, bool], ...] = (
    # "안 아픈 데가 없어": no place that does not hurt
    (
        re.compile(
            _any(
                rf"{NOT_H}안\s*{AILMENT}{H}*", rf"{AILMENT}{H}{{0,2}}?(?:지|진)\s*(?:는|도)?\s*않은"
            )
            + r"\s*(?:데|곳|구석|덴|날|때)\s*(?:가|이|는|도)?\s*(?:하나도\s*|한\s*군데도\s*)?(?:없|읎|엄)\S*"
        ),
        "다 아파",
        True,
    ),
    # "넘어질 뻔했어": nearly fell (unsteady, not a fall)
    (re.compile(r"(?:넘어|자빠|미끄러|엎어)질\s*(?:뻔|번)\S*"), "휘청했어", True),
    # "안 넘어졌어", "넘어지진 않았어", "넘어진 적 없어": no fall
    (
        re.compile(
            _any(
                rf"{NOT_H}안\s*(?:넘어|자빠|미끄러|엎어)(?:졌|져|지){H}*",
                rf"(?:넘어|자빠|미끄러|엎어)지(?:지|진)?\s*(?:는|도)?\s*않{H}*",
                rf"(?:넘어|자빠|미끄러|엎어)진\s*적\s*(?:은|도|이)?\s*(?:없|읎){H}*",
            )
        ),
        "괜찮아",
        False,
    ),
    # "도움 필요 없어요", "도움은 안 필요해", "안 도와줘도 돼": help declined
    (
        re.compile(
            _any(
                r"(?:도움|도와\s*(?:줄|주실|드릴)?)\s*(?:이|은|는|도|가)?\s*"
                r"(?:별로\s*|전혀\s*|하나도\s*|딱히\s*|아직\s*)?"
                rf"(?:필요\s*(?:없|읎|엄|하지\s*않|치\s*않|안\s*해){H}*|안\s*필요{H}*)",
                rf"{NOT_H}안\s*도와{H}*\s*(?:돼|되|괜찮){H}*",
            )
        ),
        "괜찮아",
        False,
    ),
    # "도움이 필요하면 연락할게요": no help needed now
    (re.compile(rf"(?:도움|도와\S*)\s*(?:이|가)?\s*필요(?:하면|허면|하믄|할\s*때){H}*"), "", False),
    # "와 줘서 고마워", "도와주셔서 감사합니다": thanks, not a request
    (
        re.compile(
            r"\S*(?:와|해|봐|챙겨|물어)\s*(?:줘서|주셔서|주어서|줘가|주니께|주니까|준\s*거|주신\s*거)"
            r"\s*(?:\S+\s*)?(?:고마|감사|고맙)\S*"
        ),
        "고마워",
        False,
    ),
    # "걱정 안 해도 돼", "걱정하지 않아도 돼"
    (
        re.compile(
            _any(
                r"걱정\s*(?:은|을|는)?\s*안\s*(?:해도|하셔도|허셔도|혀도)",
                r"걱정\S*지\s*않아도",
            )
        ),
        "걱정 마",
        False,
    ),
    # "아무렇지도 않아", Jeolla "암시랑토 안 해": nothing wrong at all
    (
        re.compile(rf"(?:아무렇지|암시랑|암시롱|암시렁)(?:도|토)?\s*(?:않{H}*|안\s*(?:해|혀){H}*)"),
        "괜찮아",
        False,
    ),
    # "안 와도 돼", "전화 안 해도 돼": no need
    (
        re.compile(
            rf"{NOT_H}안\s*(?:해도|하셔도|허셔도|혀도|와도|오셔도)\s*(?:돼|되|괜찮|된당께){H}*"
        ),
        "괜찮아",
        False,
    ),
    (re.compile(rf"{NOT_H}안\s*그래도"), "", False),
    # "전혀 문제없어요", "하나도 이상 없어": nothing wrong at all
    (
        re.compile(rf"{NOT_H}(?:전혀|하나도|아무)\s*(문제|이상|탈)\s*(?:가|이|는|도)?\s*(?:없|읎)"),
        r"\1 없",
        False,
    ),
)

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
    (re.compile(f"{FALL}|{CANT_GET_UP}"), CallOutcome.HELP),
    (re.compile(r"\b(help|hurt)\b", re.I), CallOutcome.HELP),
)

# -- cues ----------------------------------------------------------------------------------------

_NOT_A_QUESTION = r"(?!나|을까|겠나|니|은가|을랑가)"
NEGATED_WELL = re.compile(
    _any(
        # 안 / 못 before: "안 괜찮아", "안좋아", "못 지내요", "밥 못 묵었어", "안 나아"
        rf"{NOT_H}(?:안|못)\s*{WELL}",
        rf"{NOT_H}못\s*(?:먹|묵|자|잤|잡숴|살겠|살겄|살것|견디|견뎌|버티|버텨|걷|걸어|움직|참겠|참겄|쉬)",
        rf"{NOT_H}안\s*(?:먹|묵|나아|나았|낫|나사)",
        # "잘 못 지내", "잘 못 먹어" (not "잘 안 들려": that is not hearing the call)
        rf"{NOT_H}잘\s+(?:안|못)\s*(?!들|알아|모르){H}",
        rf"{NOT_H}잘못\s*(?:지내|지냈|먹|묵|자|잤|살)",
        # -지 않 / -지가 않 / -진 않 / -지 못 / -들 않: "괜찮지가 않아", "좋진 않아", "괜찮들 안 해"
        rf"{WELL}{H}{{0,2}}?(?:지|진|질|들|덜|치|친)\s*(?:가|는|도|를|요|만)?\s*"
        rf"(?:않{_NOT_A_QUESTION}|안(?!{H})|안\s*(?:해|혀)|못|아니|아녀)",
        # "괜찮은 게 아니야", "좋은 거 아녀"
        rf"{WELL}{H}{{0,3}}\s*(?:게|거|건|것|거는|것은|게는|편은|편이|편도)\s*"
        r"(?:아니|아녀|아냐|아이다|아닌|아입|아이)",
        rf"{WELL}{H}{{0,2}}\s*(?:것|거)\s*같지\s*(?:않|안(?!{H})|못)",
        # "괜찮긴 뭐가 괜찮아", "괜찮을 리가 있나", "내가 괜찮겄냐", "괜찮다고는 못 하겠어"
        rf"{WELL}{H}{{0,2}}(?:긴|기는)\s*(?:뭐가|뭐|머가|머|무슨|무신|개뿔|쥐뿔)",
        rf"{WELL}{H}{{0,3}}\s*리가\s*(?:있|없)",
        rf"{WELL}{H}{{0,2}}(?:겠냐|겄냐|것냐|겠니|겄니)",
        rf"{WELL}{H}{{0,3}}(?:다고|다곤|단|라고|다)\s*(?:는|은)?\s*"
        rf"(?:못|안(?!{H})|할\s*(?:수|순)\s*(?:가|는|도)?\s*없|말\s*(?:은|도)?\s*못|하기\s*어렵)",
        # "별로야", "컨디션이 별로여": 별로 as the answer itself
        rf"{NOT_H}별로(?:야|여|다|예요|에요|네|네요|인데|인디|라우|유|랑께|당께|이여|이야|임)(?!{H})",
        rf"{NOT_H}별로\s*$",
        r"\bnot\s+(?:\w+\s+){0,2}?(?:ok|okay|fine|good|well|great|alright|all right)\b",
        r"n't\s+(?:\w+\s+){0,2}?(?:ok|okay|fine|good|well|great|alright)\b",
        r"\bnot\s+doing\b",
    ),
    re.I,
)
UNWELL_CUE = re.compile(
    _any(AILMENT, UNWELL_PHRASES) + r"|\b(sick|pain|dizzy|lonely|tired)\b", re.I
)
DOUBT = re.compile(
    _any(
        "모르", "몰라", "몰겄", "몰것", "글쎄", "긴가민가", "아마", r"\?",
        rf"{WELL}{H}{{0,2}}?(?:은가|는가|은감|을까|을랑가|려나|나\s*몰)",
        rf"{WELL}{H}{{0,2}}?(?:나|니|냐|나요)(?:\s*$)",
        rf"않(?:나|을까|겠나|니|은가)(?!{H})",
        rf"{WELL}{H}{{0,3}}(?:긴|기는)\s*(?:한데|하지만|헌디|한디|하는데|허는디|헌데)",
        rf"{WELL}{H}{{0,2}}(?:겠지|겄지|것지)",
        r"(?:괜찮았|괜찮었|좋았|지냈|건강했|멀쩡했|편했)\S*?(?:는데|는디|지만|다가)",
    )
    + r"|\b(no|maybe|not sure|don'?t know)\b",
    re.I,
)  # fmt: skip
# Words that keep any answer from being reassurance on their own.
BLOCKS_OK = re.compile(
    _any(
        rf"{NOT_H}(?:안|못)(?!{H})", rf"{NOT_H}않", rf"{NOT_H}(?:아니|아녀|아냐|아뇨|아닌|아닙|아이다|아입)",
        rf"{NOT_H}(?:별로|그다지|그닥|썩|전혀|영)(?!{H})",
    )
    + r"|\b(not|never|no)\b|n't",
    re.I,
)  # fmt: skip

_YES_WORD = _any(
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
ENGLISH_OK = re.compile(r"\b(yes|yeah|fine|ok|okay|good|all right|alright)\b", re.I)
ENGLISH_LATER = re.compile(r"\b(later|busy|call (me )?back)\b", re.I)


@dataclass(frozen=True, slots=True)
class Reading:
    """An answer with what sounds like risk but is not rewritten, and what it signals."""

    text: str
    negated_well: bool  # "괜찮지가 않아": never OK, UNWELL
    unwell: bool  # an ailment, a low mood, or a form worse than it looks
    blocks_ok: bool  # a negation, a hedge or a doubt: reassurance needs more than this


def normalize(text: str) -> str:
    """One line, single spaces, no decoration; a question mark is kept (it is doubt)."""
    text = re.sub(r"[.,!~…·\"'“”‘’]+", " ", text)
    return re.sub(r"\s+", " ", text).strip()


def read(text: str) -> Reading:
    """Rewrite double negatives and declined help; note what the answer signals."""
    text = normalize(text)
    unwell = False
    for pattern, replacement, marks in REWRITES:
        if pattern.search(text):
            unwell |= marks
            text = pattern.sub(replacement, text)

    def negated_ailment(m: re.Match[str]) -> str:
        nonlocal unwell
        if _WISH.search(m.group()):
            unwell = True  # "아프지 않았으면 좋겠어", "안 아프면": it hurts
            return "아파"
        if _HEDGED.search(m.string[: m.start()]) or _HEDGE_INSIDE.search(m.group()):
            unwell = True  # "별로 안 아파", "그렇게 아프진 않아": some pain
            return "좀 아파"
        return "괜찮아"

    text = normalize(_NEGATED_AILMENT.sub(negated_ailment, text))
    negated_well = bool(NEGATED_WELL.search(text))
    unwell = unwell or bool(UNWELL_CUE.search(text))
    blocks_ok = negated_well or unwell or bool(DOUBT.search(text) or BLOCKS_OK.search(text))
    return Reading(text, negated_well, unwell, blocks_ok)


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


def _pipeline() -> Pipeline:
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
        pipeline = _pipeline()
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


def evaluate(
    pairs: list[tuple[str, CallOutcome]],
    test_share: float = 0.25,
    seed: int = 13,
    question: Question = CHECK_IN,
) -> Evaluation:
    """Stratified held-out split: accuracy of the model alone and of understand().

    The shipped utterances answer the check-in call, so they are read as answers to CHECK_IN.
    """
    rng = random.Random(seed)
    by_label: dict[CallOutcome, list[tuple[str, CallOutcome]]] = {}
    for pair in pairs:
        by_label.setdefault(pair[1], []).append(pair)
    train: list[tuple[str, CallOutcome]] = []
    test: list[tuple[str, CallOutcome]] = []
    for items in by_label.values():
        items = sorted(items)
        rng.shuffle(items)
        cut = max(1, round(len(items) * test_share))
        test += items[:cut]
        train += items[cut:]
    model = SpeechModel().fit(train)
    model_hits = sum(model.predict(t)[0] is o for t, o in test)
    hits = sum(understand(t, model, question) is o for t, o in test)
    return Evaluation(len(train), len(test), model_hits / len(test), hits / len(test))
