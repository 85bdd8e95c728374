"""How an answer reads: what sounds like risk but is not is rewritten, and what it signals is noted.

1. rewrites of what sounds like risk or pain but is not: a negated ailment ("안 아파요",
   "아프지 않아") reads as 괜찮아, and so do a declined or thanked-for help ("도움 필요 없어요",
   "와 줘서 고마워") and a fall that did not happen ("안 넘어졌어"); forms worse than they look
   are marked unwell on the way ("안 아픈 데가 없어" = everything hurts, "별로 안 아파" = some
   pain, "넘어질 뻔했어");
2. cues: a negated wellbeing word ("괜찮지가 않아", "잘 못 지내", "괜찮긴 뭐가 괜찮아"), an
   ailment or a low mood ("쑤셔부러", "심심해"), and reassurance that says less than it seems
   (an exception, "허리 빼고는 괜찮아"; resignation or pretending, "괜찮다고 해야지",
   "괜찮은 척"; what is bearable, "견딜 만해") make the answer unwell; a negation, a hedge
   ("괜찮은 것 같기도 하고", "그럭저럭") or a doubt ("모르겠어", "뭐라고요") keeps it from being
   reassurance on its own.

Pure text in, a Reading out: calls.understanding decides what the answer means.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

H = "[가-힣]"  # one Hangul syllable
NOT_H = f"(?<!{H})"  # at the start of a word


def any_of(*words: str) -> str:
    """One regex group matching any of `words`."""
    return "(?:" + "|".join(words) + ")"


# -- the words ---------------------------------------------------------------------------------

# Saying one is fine: negate it and the answer is not ("안 괜찮아", "괜찮지가 않아").
WELL = any_of(
    "괜찮", "괜찬", "갠찮", "개안", "좋", "건강", "멀쩡", "편안", "편하", "편해", "지내", "지냈", "지낸",
    "정정", "튼튼",
)  # fmt: skip
# Saying one is not: negate it and the answer is ("안 아파요", "아프지 않아", "안 심심해").
AILMENT = any_of(
    "아프", "아파", "아퍼", "아픈", "아팠", "아펐", "편찮", "어지러", "어지럽", "힘들", "힘드",
    "쑤시", "쑤셔", "쑤신", "결리", "결려", "저리", "저려", "저린", "시리", "시려", "시린",
    "피곤", "외로", "외롭", "심심", "적적", "쓸쓸", "우울", "울적", "서글", "서럽", "허전",
    "불편", "나쁘", "나빠", "나뻐", "다치", "다쳐", "다쳤", "다친", "답답", "추워", "춥",
    "메스껍", "메스꺼", "쓰리", "쓰려", "가렵", "어질",
)  # fmt: skip
# Unwell however it is said (no negation turns these around).
UNWELL_PHRASES = any_of(
    r"죽겄", r"죽겠", r"죽것", r"기운이?\s*(?:하나도\s*|통\s*|영\s*)?없", r"기력이?\s*없",
    r"힘이\s*없", r"입맛이?\s*없", r"밥맛이?\s*없", r"잠이\s*안\s*(?:와|오)",
    r"잠을?\s*(?:통\s*|잘\s*)?못", r"소화가?\s*안", r"말이\s*(?:아니|아녀|아냐|아이)",
    r"시원찮", r"시원치\s*않", r"찌뿌", r"으슬으슬", r"지끈", r"욱신", r"따끔", r"침침",
    r"깜빡깜빡", r"몸이\s*무거", r"몸살", r"감기", r"기침", r"가래", r"열이\s*(?:좀\s*|많이\s*)?(?:나|있|났|올)",
    r"열나", r"설사", r"체했", r"체한", r"토하", r"토할", r"토했", r"구역질", r"붓고", r"부었",
    r"삭신", r"골골", r"시름시름", r"혈압이\s*(?:좀\s*|많이\s*)?(?:올|높)",
    r"당이\s*(?:좀\s*|많이\s*)?(?:높|올)", r"약이?\s*(?:다\s*)?떨어", r"약을?\s*다\s*먹어",
    r"(?:말|얘기|이야기)\s*할\s*사람이?\s*없", r"말동무가?\s*없", r"예전\s*같지",
    r"(?:병원|의원|보건소)\S*\s*(?:좀\s*)?(?:가야|가\s*봐야|가봐야|가\s*보까|가볼까|가\s*볼까|가고\s*싶)",
)  # fmt: skip
WEAK_HEDGE = any_of("별로", "그다지", "그닥", "그리", "그렇게", "많이", "크게", "심하게", "썩")
FALL = any_of(
    "넘어지", "넘어졌", "넘어져", "넘어짐", "넘어진", "넘어질", "자빠", "미끄러지", "미끄러졌",
    "미끄러져", "미끄러진", "엎어지", "엎어졌", "엎어져", "엎어진", "주저앉", "낙상", "굴렀",
    r"굴러\s*떨어", r"에서\s*떨어(?:졌|져)", "헛디", "고꾸라", "꼬꾸라", "엉덩방아",
)  # fmt: skip
CANT_GET_UP = any_of(
    r"못\s*(?:일어|일나|인나)", r"(?:일어나|일어서|인나)(?:지|질|들)\s*(?:를|도|가)?\s*못",
    r"(?:일어날|일어설)\s*수(?:가|도)?\s*없",
)  # fmt: skip
CANT_MOVE = any_of(
    r"못\s*움직", r"움직이지\s*(?:를|도)?\s*못", r"움직일\s*수(?:가|도)?\s*없", "꼼짝"
)


# -- rewrites: (pattern, replacement, marks the answer unwell) ------------------------------------

_NEGATED_AILMENT = re.compile(
    any_of(
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
            any_of(
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
            any_of(
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
            any_of(
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
            any_of(
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


# -- cues ----------------------------------------------------------------------------------------

_NOT_A_QUESTION = r"(?!나|을까|겠나|니|은가|을랑가)"
NEGATED_WELL = re.compile(
    any_of(
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
# Reassurance that says less than it seems: the resident is not fine however fine it sounds.
SAYS_LESS = any_of(
    # an exception: "허리 빼고는 다 괜찮아", "다리만 빼면 괜찮혀", "무릎 말고는", "허리만 아니면"
    r"(?:빼고|빼곤|빼면|빼믄|빼모|빼\s*놓고|제외하고|외에|외엔|말곤|"
    r"(?<!걱정)(?<!걱정\s)(?<!신경)(?<!신경\s)(?<!지)(?<!지\s)말고|"
    r"만\s*(?:아니면|아니믄|아니모|아니문|아니라면))"
    rf"(?:는|도|은|야)?(?!{H}).*(?:{WELL}|문제|이상|탈|별일|일없)",
    # resignation or pretending: "괜찮다고 해야지", "괜찮아야지", "괜찮은 척", "참아야지"
    rf"{WELL}{H}{{0,3}}(?:다고|다구|다곤|단|라고|라구|다)\s*(?:는|은|만)?\s*(?:해야|혀야|허야|하야)",
    rf"{WELL}{H}{{0,2}}?(?:아야|어야|여야|해야|혀야)(?:지|제|죠|\s*(?:쓰|하|혀|할|되|돼|겄|것|겠))",
    rf"{WELL}{H}{{0,2}}\s*(?:척|체|시늉)",
    rf"{NOT_H}참(?:으면|으믄|으모|아야|어야|고\s*(?:살|있|지내|견디|견뎌)|는\s*(?:거|수)|지\s*뭐)",
    rf"{NOT_H}(?:어쩌겄|어쩌겠|어쩌것|어쩔\s*수\s*(?:가|도)?\s*없|별수\s*(?:있|없)|별\s*수\s*(?:있|없))",
    # hiding it from the family: "애들한테는 말하지 마", "걱정할까 봐 괜찮다 했어"
    r"(?:말|얘기|이야기|애기)\s*(?:하|허)지\s*(?:마|말)|알리지\s*(?:마|말)",
    r"걱정\S*까\s*(?:봐|바|싶어|싶어서)",
    # what is bearable hurts: "견딜 만해", "참을 만혀", "버틸 만해"
    r"(?:견딜|참을|버틸)\s*(?:만|수)",
)  # fmt: skip
UNWELL_CUE = re.compile(
    any_of(AILMENT, UNWELL_PHRASES, SAYS_LESS) + r"|\b(sick|pain|dizzy|lonely|tired)\b", re.I
)
DOUBT = re.compile(
    any_of(
        "모르", "몰라", "몰겄", "몰것", "글쎄", "긴가민가", "아마", r"\?",
        rf"{WELL}{H}{{0,2}}?(?:은가|는가|은감|을까|을랑가|려나|나\s*몰)",
        rf"{WELL}{H}{{0,2}}?(?:나|니|냐|나요)(?:\s*$)",
        rf"않(?:나|을까|겠나|니|은가)(?!{H})",
        rf"{WELL}{H}{{0,3}}(?:긴|기는)\s*(?:한데|하지만|헌디|한디|하는데|허는디|헌데)",
        rf"{WELL}{H}{{0,2}}(?:겠지|겄지|것지)",
        r"(?:괜찮았|괜찮었|좋았|지냈|건강했|멀쩡했|편했)\S*?(?:는데|는디|지만|다가)",
        # the borderline: "그냥 그려", "그럭저럭 지내", "그저 그래"
        "그럭저럭", "그냥저냥", r"그저\s*그", "마지못해",
        rf"{NOT_H}그냥\s*(?:그래|그려|그랴|그렇|그라|그런|저냥|살|사는|지내|버텨|견뎌)",
        r"겨우\s*(?:살|지내|버텨|견뎌)",
        # not heard: "뭐라고요", "다시 말해 봐"
        r"(?:뭐|머|뭣|뭐시)\s*라(?:고|구|꼬|카|는|요|우)", "뭐랑가", r"다시\s*(?:한\s*번|말|좀)",
        r"안\s*들려", r"못\s*들었",
    )
    + r"|\b(no|maybe|not sure|don'?t know)\b",
    re.I,
)  # fmt: skip
# A hedge, "괜찮은 것 같기도 하고", "괜찮은 것도 같고": neither yes nor no, so the call asks again.
HEDGE = re.compile(any_of(r"같기(?:도|는|두)", r"(?:것|거)\s*도\s*같", r"듯\s*도", r"듯\s*말\s*듯"))
# Words that keep any answer from being reassurance on their own.
BLOCKS_OK = re.compile(
    any_of(
        rf"{NOT_H}(?:안|못)(?!{H})", rf"{NOT_H}않", rf"{NOT_H}(?:아니|아녀|아냐|아뇨|아닌|아닙|아이다|아입)",
        rf"{NOT_H}(?:별로|그다지|그닥|썩|전혀|영)(?!{H})",
    )
    + r"|\b(not|never|no)\b|n't",
    re.I,
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class Reading:
    """An answer with what sounds like risk but is not rewritten, and what it signals."""

    text: str
    negated_well: bool  # "괜찮지가 않아": never OK, UNWELL
    unwell: bool  # an ailment, a low mood, or a form worse than it looks
    blocks_ok: bool  # a negation, a hedge or a doubt: reassurance needs more than this
    hedged: bool = False  # "괜찮은 것 같기도 하고": ask again, whatever the model makes of it


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
    hedged = bool(HEDGE.search(text))
    blocks_ok = (
        negated_well or unwell or hedged or bool(DOUBT.search(text) or BLOCKS_OK.search(text))
    )
    return Reading(text, negated_well, unwell, blocks_ok, hedged)
