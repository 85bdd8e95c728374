"""The routine check-in call as a short conversation: the programme's script, and what an answer
to each of its questions means.

The script is data (calls/data/conversation_ko.toml, or a district's own file in its shape):
questions about meals, sleep, pain, mood and needs, each with the answers it takes by keypad and
by speech. A routine call first asks "괜찮으세요?" (calls.understanding reads that answer); when
the resident is all right it goes on to the questions of the day (`every = "day"`), and on the
programme's weekly day to all of them. An alert's call asks only "괜찮으세요?".

An answer is read in this order, the same for every question:

1. risk words anywhere (calls.understanding's rules: an emergency, a fall, a help request) end
   the conversation at once and raise the call: the questions never hide them;
2. the resident may end the call ("괜찮아요, 끊을게요") or ask for a person ("상담사 바꿔
   줘"): recorded, never a failure;
3. a key answers the question (1 and 2, or 1 to 3 on a scale);
4. the question's own cue words, negation first ("못 먹었어" is no, "안 아파" is no pain): a
   single reading with no contrary cue is certain;
5. the model (character n-grams, trained from calls/data/answers_ko.tsv when first used), when
   confident;
6. otherwise unclear: asked once more in simpler words, then recorded as unclear and passed over.
   Silence is unclear, never an answer.
"""

from __future__ import annotations

import functools
import re
import threading
import tomllib
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date
from importlib import resources
from pathlib import Path
from typing import Any

from sklearn.pipeline import Pipeline

from calls.reading import CANT_GET_UP, FALL, NOT_H, H, any_of, normalize, read
from calls.understanding import char_ngram_pipeline, rule_outcome, stratified_split
from core.domain import CallOutcome

SCRIPT_FILE = "conversation_ko.toml"
ANSWERS_FILE = "answers_ko.tsv"
MAX_SPEECH = 500  # characters of an answer read (a minute of speech is far less)
QUESTION_ID = re.compile(r"[a-z][a-z0-9_]{0,31}")  # it goes into the answer's URL as it is
MODEL_CONFIDENCE = 0.4  # the model must be this sure before its word is an answer (chosen by
# 4-fold cross-validation inside the training share: fewest wrong answers, unclear ones asked again)

KINDS = {
    "yes_no": ("yes", "no"),
    "scale": ("good", "so_so", "bad"),
    "need": ("none", "meals", "escort", "cleaning", "visit", "other"),
}
KEYS = {
    "yes_no": {"1": "yes", "2": "no"},
    "scale": {"1": "good", "2": "so_so", "3": "bad"},
    "need": {"1": "none", "2": "some"},  # 2: a need, then said in words (Ask.then)
}
NEEDS = ("meals", "escort", "cleaning", "visit", "other")  # service request categories
# Symptoms the care manager should hear of at once (the call is raised to unwell; the talk goes
# on), whatever the question: fever, vomiting, dizziness, breath, blood pressure or sugar.
SYMPTOMS = re.compile(
    any_of(
        r"열이\s*(?:좀\s*|많이\s*)?(?:나|있|났|올)", r"열나", r"토하|토했|토할|토해|구역질|메스껍|메스꺼",
        r"설사", r"어지러|어지럽|어질", r"숨이\s*(?:차|가빠|가쁘)", r"기침|가래|몸살|감기|체했|체한",
        r"혈압이|당이\s*(?:좀\s*|많이\s*)?(?:높|올)", r"약이?\s*(?:다\s*)?떨어",
    )
)  # fmt: skip
FALLEN = re.compile(f"{FALL}|{CANT_GET_UP}|다쳤|다쳐|다친")  # never a service request
UNCLEAR = "unclear"
END = "end"  # the resident ended the conversation
PERSON = "person"  # the resident asked for a person
PERSON_KEY = "0"  # at any question of the talk: put through to a person (상담사 연결)
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
SPREAD = "spread"  # weekly_day: each resident's own day of the week


class ScriptError(ValueError):
    """A conversation script that cannot be used, with what is wrong in it."""


@dataclass(frozen=True, slots=True)
class Ask:
    """One question of the script."""

    id: str
    kind: str  # a key of KINDS
    every: str  # "day" or "week"
    ask: str
    simpler: str
    concern: str | None = None  # the answer a run of calls should show at the weekly review
    then: str | None = None  # need: asked after "yes, there is something", for the words

    keys: tuple[tuple[str, str], ...] = ()  # key -> label where the question differs

    @property
    def labels(self) -> tuple[str, ...]:
        return KINDS[self.kind]

    @property
    def key_labels(self) -> dict[str, str]:
        return dict(self.keys) if self.keys else KEYS[self.kind]

    def reassuring(self, label: str) -> bool:
        """An answer that settles the question as all well (never taken from words that undo
        it): the one that is not the concern of a yes/no question, a good, no need."""
        if self.kind == "yes_no":
            return self.concern is not None and label != self.concern
        return label in ("good", "none")


@dataclass(frozen=True, slots=True)
class Programme:
    """The conversation a programme runs on its routine calls."""

    name: str
    weekly_day: str
    closing_ok: str
    ended_early: str
    questions: tuple[Ask, ...] = field(default_factory=tuple)
    closing_concern: str = ""  # after a concern answer or a stated need (else closing_ok)

    def weekly(self, local_date: date, resident_id: int) -> bool:
        """The resident's weekly conversation falls on `local_date` (local, Asia/Seoul): the
        programme's weekly day, or with "spread" a day of each resident's own (id mod 7), which
        spreads the longer calls and the review's answers over the week."""
        if self.weekly_day == SPREAD:
            return resident_id % 7 == local_date.weekday()
        return WEEKDAYS[local_date.weekday()] == self.weekly_day

    def asked(self, weekly: bool) -> tuple[Ask, ...]:
        """The questions of a weekly conversation, or of a daily one."""
        return tuple(q for q in self.questions if weekly or q.every == "day")

    def question(self, question_id: str) -> Ask | None:
        return next((q for q in self.questions if q.id == question_id), None)

    def after(self, question_id: str, weekly: bool) -> Ask | None:
        """The question asked after `question_id`, None at the end."""
        asked = self.asked(weekly)
        ids = [q.id for q in asked]
        if question_id not in ids:
            return None
        i = ids.index(question_id)
        return asked[i + 1] if i + 1 < len(asked) else None


def load_programme(path: str | Path | None = None) -> Programme:
    """The district's own file at `path` (ANBU_CONVERSATION_SCRIPT), or the shipped script when
    `path` is empty; ScriptError says what is wrong."""
    if path:
        text = Path(path).read_text(encoding="utf-8")
    else:
        text = resources.files("calls").joinpath("data", SCRIPT_FILE).read_text(encoding="utf-8")
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ScriptError(f"not TOML: {exc}") from None
    try:
        questions = tuple(_ask(q) for q in data.get("question", []))
        programme = Programme(
            name=str(data["name"]),
            weekly_day=str(data.get("weekly_day", "mon")),
            closing_ok=str(data["closing_ok"]),
            ended_early=str(data["ended_early"]),
            questions=questions,
            closing_concern=str(data.get("closing_concern") or data["closing_ok"]),
        )
    except KeyError as exc:
        raise ScriptError(f"missing {exc.args[0]!r}") from None
    if programme.weekly_day not in (*WEEKDAYS, SPREAD):
        raise ScriptError(f"weekly_day must be one of {', '.join(WEEKDAYS)} or {SPREAD}")
    ids = [q.id for q in questions]
    if len(set(ids)) != len(ids):
        raise ScriptError("two questions have the same id")
    return programme


@functools.cache
def programme(path: str | None = None) -> Programme:
    """load_programme, read once per path (readers such as the weekly review)."""
    return load_programme(path)


def _ask(q: dict[str, Any]) -> Ask:
    ask = Ask(
        id=str(q["id"]), kind=str(q["kind"]), every=str(q.get("every", "week")),
        ask=str(q["ask"]), simpler=str(q.get("simpler") or q["ask"]),
        concern=q.get("concern"), then=q.get("then"),
        keys=tuple(sorted((str(k), str(v)) for k, v in (q.get("keys") or {}).items())),
    )  # fmt: skip
    if not QUESTION_ID.fullmatch(ask.id):
        raise ScriptError(f"question id {ask.id!r}: lower-case letters, digits and _ only")
    if ask.kind not in KINDS:
        raise ScriptError(f"question {ask.id}: kind must be one of {', '.join(KINDS)}")
    if ask.every not in ("day", "week"):
        raise ScriptError(f"question {ask.id}: every must be day or week")
    if ask.concern is not None and ask.concern not in ask.labels:
        raise ScriptError(f"question {ask.id}: concern must be one of {', '.join(ask.labels)}")
    if ask.keys and not set(dict(ask.keys).values()) <= set(ask.labels):
        raise ScriptError(f"question {ask.id}: keys must lead to one of {', '.join(ask.labels)}")
    if ask.kind == "need" and not ask.then:
        raise ScriptError(f"question {ask.id}: a need question says `then` (what to ask next)")
    return ask


# -- understanding an answer -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Heard:
    """What an answer to one question meant, and how sure that is."""

    label: str  # one of the question's labels, "some" (a need, words to follow), UNCLEAR, END,
    # PERSON, or "risk" (see `risk`)
    confidence: float
    risk: CallOutcome | None = None  # a risk rule's outcome: the call is raised, the talk ends
    ends: bool = False  # the resident asked to end the call (after this answer, if any)
    unwell: bool = False  # a symptom was said: the call is raised to unwell, the talk goes on


# The resident ends the call kindly, or asks for a person; either anywhere in the answer.
ENDS = re.compile(
    any_of(
        r"끊(?:을게|을께|는다|어야|자|읍시다|어요|어(?!질|지)|으께|을라|을랑께|을란다|겠|으이소|으소)",
        r"(?<!그만)(?<!그만\s)(?<!고만)(?<!고만\s)(?:그만|고만)(?!\s*(?:그만|고만))"
        r"\s*(?:물어|묻|해(?!도)|혀|끊|됐|할래|하자|합시다|하께|할께|할게)",
        r"이만\s*(?:끊|하|혀|해)", r"다음에\s*(?:해|하|혀|얘기)",
        r"나가야\s*(?:돼|되|해|혀)\S*\s*(?:끊|이만)",
    )
)  # fmt: skip
PERSON_WORDS = re.compile(
    any_of(
        r"상담(?:사|원|하는|해|하고|\s*받)", r"사람(?:이랑|하고|허고|과|한테|을|를)?\s*(?:좀\s*)?"
        r"(?:바꿔|얘기|이야기|통화|말하|말허|연결|직접|나와|나오)",
        r"(?:선생님|직원|담당|복지사|케어매니저|매니저)\S*\s*(?:좀\s*)?"
        r"(?:바꿔|연결|통화|대줘|대 줘|얘기|이야기)",
        r"연결해\s*(?:줘|주|달)", r"(?:기계|녹음)\S*\s*(?:소리\s*)?말고",
    )
)  # fmt: skip

_NEG = r"(?:안|못|않|없|아니|아녀|아냐|안\s*했|못\s*했)"
# Cue words per question and label. A reading is certain when exactly one label's cues match.
CUES: dict[str, dict[str, re.Pattern[str]]] = {
    "meal": {
        "no": re.compile(any_of(
            r"(?:안|못)\s*(?:먹|묵|드|챙겨|했)", r"굶", r"거르|걸렀|걸러|건너뛰|건너 뛰",
            r"입맛이?\s*(?:통\s*|하나도\s*|영\s*)?없", r"밥맛이?\s*없", r"생각이\s*없",
            r"먹(?:지|들|덜)\s*(?:를\s*)?(?:않|못|안)", r"아직(?!\s*(?:잘|다))", r"아니|아녀|아냐|아뇨",
        )),
        "yes": re.compile(any_of(
            r"(?<!안\s)(?<!못\s)(?<!안)(?<!못)"
            r"(?:먹었|먹엇|묵었|묵엇|드셨|먹고|묵고|먹었제|먹었지|먹긴|먹어부|묵어부|먹었당께)",
            r"(?<!안\s)(?<!못\s)했(?:어|제|지|지요|습니다|어요|어라우|당께|소)",
            r"챙겨\s*먹|차려\s*먹|든든|배불|배 불|잘\s*먹|맛있게", r"^(?:예|네|응|어|엉|그럼|그래)",
        )),
    },
    "sleep": {
        "bad": re.compile(any_of(
            r"(?:잘\s*)?못\s*(?:자|잤|잔|주무)", r"잠이\s*(?:통\s*|영\s*|잘\s*)?안\s*(?:와|오|옴)",
            r"한숨도|뒤척|설쳤|설치|깨(?:요|어|서|고|구)|깼|자다\s*깨|잠을?\s*(?:통\s*)?못",
            r"불면|밤새|날\s*새|새벽에\s*깨", r"잠이\s*없",
        )),
        "so_so": re.compile(any_of(
            r"그저\s*그|그럭저럭|그냥\s*(?:저냥|그래|그려|그렇|그라|저렇)|보통|그냥저냥|그렁저렁",
            r"그만그만|그런대로|그럭",
        )),
        "good": re.compile(any_of(
            r"(?<!못\s)잘\s*(?:자|잤|잔|주무)", r"푹", r"꿀잠", r"잘\s*잡니다", r"개운",
            r"^(?:예|네|응|어|엉|그럼|그래)(?!\s*(?:못|안))",
        )),
    },
    "pain": {
        "no": re.compile(any_of(
            rf"(?<!안\s){NOT_H}(?:아픈|쑤시는|결리는|불편한)\s*(?:데|곳|디)(?:는|가|도)?\s*"
            rf"(?:하나도\s*|별로\s*|딱히\s*|특별히\s*)?(?:없|읎|업)",
            r"(?:안|않)\s*(?:아파|아프|아퍼)|아프지\s*(?:는\s*)?않|멀쩡|괜찮|개안|갠찮",
            r"^(?:아니|아녀|아냐|아뇨|아니요|없어|없습니다|없지|없제|없어요|없당께|읎어)",
            r"^(?:예|네|응|어)\s*(?:없|읎)", r"^(?:없다|없심더|없어라우)", r"튼튼|건강",
        )),
        "yes": re.compile(any_of(
            r"(?<!안\s)(?:아파|아프|아퍼|아픈|아팠|쑤시|쑤셔|결리|결려|저리|저려|시려|시리|"
            r"욱신|지끈|뻐근|땡겨|당겨|불편|편찮|삭신|골골|아픕|시큰|쓰려|쓰리)",
            r"안\s*아픈\s*데가\s*없", r"(?:있어|있지|있제|있당께|있어요|있습니다|있다)",
        )),
    },
    "mood": {
        "bad": re.compile(any_of(
            r"울적|우울|외로|외롭|쓸쓸|심심|적적|답답|서글|서러|슬프|슬퍼|눈물|허전|처량",
            r"(?:안|못)\s*(?:좋|괜찮)|좋지\s*(?:는\s*)?않|나쁘|나빠|꿀꿀|속상|기운이?\s*없|"
            r"사는\s*재미|재미가?\s*없|낙이\s*없",
        )),
        "so_so": re.compile(any_of(
            r"그저\s*그|그럭저럭|그냥\s*(?:저냥|그래|그려|그렇|그라|저렇)|보통|그냥저냥|그렁저렁",
            r"그만그만|그런대로|나쁘지\s*(?:는\s*)?않|나쁘진\s*않|그냥요|그냥",
        )),
        "good": re.compile(any_of(
            r"(?<!안\s)(?<!못\s)(?:좋아|좋지|좋제|좋습니다|좋아요|좋당께|좋구먼|좋소|좋네)",
            r"즐거|기쁘|기뻐|행복|신나|재밌|재미있|괜찮|개안|갠찮|편안|상쾌",
        )),
    },
    "need": {
        "meals": re.compile(any_of(r"반찬|도시락|밥|식사|먹을\s*거|끼니|국|김치|쌀")),
        "escort": re.compile(any_of(r"병원|진료|동행|같이\s*가|데려다|데려가|의원|보건소|약국")),
        "cleaning": re.compile(
            any_of(r"청소|빨래|집안\s*일|집안일|가사|설거지|정리|치워|치우|쓰레기")
        ),
        "visit": re.compile(any_of(
            r"찾아|와서|놀러|방문|얘기|이야기|말벗|말동무|말\s*상대|들러|얼굴\s*보",
            r"그리워|그립|보고\s*싶|외로|외롭|쓸쓸|적적|전화\s*(?:좀\s*)?(?:자주|해)",
            r"(?<!도)와\s*(?:줘|주|달)|들여다",
        )),
        "other": re.compile(any_of(
            r"돈이|생활비|요금|세금|전기세|가스비|수도세|추워|추버|보일러|난방|목욕|씻|이불|안경|틀니",
            r"약\s*(?:좀\s*)?(?:타|사|갖다)|고장|수리|고쳐",
        )),
        "none": re.compile(any_of(
            r"(?:필요\S*|도움\S*|부탁\S*|(?:해|도와)\s*줄\s*(?:거|것|일)|할\s*(?:거|것|일))"
            r"\s*(?:는\s*|도\s*|이\s*|가\s*)?"
            r"(?:하나도\s*|별로\s*|딱히\s*|특별히\s*)?(?:없|읎|업)",
            r"^(?:아니|아녀|아냐|아뇨|아니요|없어|없습니다|없지|없제|없어요|없당께|읎어|괜찮|됐어|"
            r"됐습니다|되았어)",
            r"(?:도움|도와)\S*\s*(?:은|는|도)?\s*(?:괜찮|됐|필요\s*없|안\s*필요)",
        )),
    },
}  # fmt: skip
# Said in so many words: the first of these that matches decides, before the cue words (which
# these would confuse: "아픈 데 없어" has 아픈, "좋긴 뭐가 좋아" has 좋아).
_BODY = r"(?:허리|무릎|다리|어깨|머리|배|속|팔|손|발|등|목|가슴|관절|이|잇몸|눈|귀)"
DECISIVE: dict[str, tuple[tuple[str, re.Pattern[str]], ...]] = {
    "meal": (
        ("no", re.compile(any_of(r"먹는\s*둥\s*마는", r"(?:한|두)\s*숟가락", r"먹은\s*게\s*없"))),
    ),
    "pain": (
        ("yes", re.compile(any_of(r"안\s*아픈\s*(?:데|곳|디)가?\s*(?:없|읎)",
                                  r"안\s*아프다(?:고|면)\s*(?:하면\s*)?거짓",
                                  rf"{_BODY}\S*\s*(?:만\s*)?(?:좀\s*|쪼까\s*)?(?:그래|그려|안\s*좋|"
                                  r"말썽|시원찮)"))),
        ("no", re.compile(any_of(
            rf"{NOT_H}(?:아픈|아플|쑤시는|결리는|불편한)\s*(?:데|곳|디)(?:는|가|도)?\s*"
            r"(?:하나도\s*|별로\s*|딱히\s*|특별히\s*)?(?:없|읎|업)",
            r"아프(?:진|지는|지)\s*않|아프긴\s*(?:어디가|뭐가|머가|뭣이)|다\s*나았|아무렇지",
        ))),
    ),
    "sleep": (
        ("bad", re.compile(any_of(
            r"잘\s*자는\s*날이\s*(?:없|읎)", r"자는\s*둥\s*마는", r"잠이?\s*안\s*(?:와|오|온|들)",
            r"설쳐|설쳤|안\s*자져|눈만\s*감고|밤이\s*길",
        ))),
        ("so_so", re.compile(any_of(
            r"자다\s*깨다", r"잘\s*자지도\s*못\s*자지도", r"좋지도\s*나쁘지도", r"들쭉날쭉",
            r"어떤\s*날은", r"깨긴\s*하", r"중간", r"얕", r"나쁘(?:지는|진|지)\s*않", r"대충",
            r"평소", r"그\s*모양", r"그냥\s*그런", r"그만그만", r"자긴\s*자", r"한두\s*번\s*깨",
        ))),
        ("good", re.compile(any_of(
            r"안\s*깨", r"깨는\s*일\s*(?:이\s*)?(?:없|읎)", r"바로\s*(?:잠들|자)",
            r"잠(?:은|이)?\s*(?:잘\s*오|문제\s*없|좋)",
        ))),
    ),
    "mood": (
        ("bad", re.compile(any_of(
            r"좋긴\s*(?:뭐가|뭣이|머가|무슨)", r"좋(?:지는|진|지)\s*않", r"울고\s*싶",
            r"(?<!안\s)울(?:어|었|기만|고|제|지)", r"좋을\s*(?:게|것이|일이?)", r"좋은\s*날이\s*(?:없|읎)",
            r"(?<!안\s)(?:외로|외롭|쓸쓸|적적|심심|우울|울적|서글|허전)(?!지\s*(?:는\s*)?않)",
            r"웃을\s*일이\s*(?:통\s*)?(?:없|읎)", r"무거워|무겁", r"짜증", r"가라앉", r"서운",
            r"말\s*한마디",
        ))),
        ("so_so", re.compile(any_of(
            r"좋지도\s*나쁘지도", r"좋다\s*나쁘다\s*할", r"좋은\s*것도\s*없고", r"왔다\s*갔다",
            r"특별할\s*거\s*없", r"평소", r"똑같", r"그\s*모양", r"무덤덤", r"그날이\s*그날",
            r"중간", r"나쁘(?:지는|진|지)\s*않", r"뭐\s*그렇", r"그럭저럭", r"그만그만",
        ))),
        ("good", re.compile(any_of(
            r"최고", r"좋은\s*편", r"좋고말고", r"좋다", r"웃을\s*일이\s*많", r"가벼워", r"좋심더",
            r"든든", r"좋게",
        ))),
    ),
}  # fmt: skip
_SAYS_SOME = re.compile(rf"{NOT_H}(?:있어|있지|있제|있어요|있습니다|있당께|예|네|응)(?!{H})")


def cue_label(question_id: str, text: str) -> str | None:
    """The one label whose cue words the answer has, or None (no cue, or contrary cues)."""
    for label, said in DECISIVE.get(question_id, ()):
        if said.search(text):
            return label
    matched = [label for label, cue in CUES.get(question_id, {}).items() if cue.search(text)]
    if question_id == "need":
        wanted = [m for m in matched if m != "none"]
        if len(wanted) == 1:
            return wanted[0]  # "다른 건 없고 반찬만 좀": the need named wins over "없"
        return "none" if matched == ["none"] else None
    return matched[0] if len(matched) == 1 else None


def hear(
    ask: Ask,
    digits: str | None,
    speech: str | None,
    model: AnswerModel | None = None,
    then: bool = False,
) -> Heard:
    """What the resident's keypress or words answer to `ask` (`then`: the need's words)."""
    text = normalize((speech or "")[:MAX_SPEECH])
    if text:
        risk = rule_outcome(read(text).text)  # as calls.understanding: "안 넘어졌어" is no fall
        # a need is asked for in words of help ("청소 좀 도와줘", "병원 데려다 줘"): there the
        # generic help words are no risk, but an emergency and a fall still are
        if risk is CallOutcome.EMERGENCY or (
            risk is CallOutcome.HELP
            and (ask.kind != "need" or FALLEN.search(text) or cue_label("need", text) is None)
        ):
            return Heard("risk", 1.0, risk)
        if PERSON_WORDS.search(text):
            return Heard(PERSON, 1.0)
    key = (digits or "").strip()
    if key == PERSON_KEY and not text:
        return Heard(PERSON, 1.0)  # 0 at any question: a person, now
    if key and not text:
        label = ask.key_labels.get(key)
        if then and label is not None:
            return Heard(UNCLEAR, 0.0)  # a key where words were asked for
        return Heard(label, 1.0) if label is not None else Heard(UNCLEAR, 0.0)
    if not text:
        return Heard(UNCLEAR, 0.0)  # silence is never an answer
    ends = ENDS.search(text) is not None
    heard = _content(ask, text, model, then and not ends)
    unwell = SYMPTOMS.search(text) is not None
    if ends:  # "그만 물어봐, 허리 아파 죽겄어": the pain is kept, and the call ends
        kept = heard.label in ask.labels and not ask.reassuring(heard.label)
        return Heard(heard.label if kept else END, heard.confidence, ends=True, unwell=unwell)
    return Heard(heard.label, heard.confidence, unwell=unwell) if unwell else heard


def _content(ask: Ask, text: str, model: AnswerModel | None, then: bool) -> Heard:
    """The answer's content: cue words (never reassurance the answer's own words undo), then
    the model (never its word alone to end the call or ask for a person)."""
    cued = cue_label(ask.id if ask.id in CUES else _cue_set(ask), text)
    if cued is None and ask.kind == "need" and not then and _SAYS_SOME.search(text):
        return Heard("some", 1.0)  # "있어요": what it is comes next
    label, confidence = cued, 1.0
    if label is None and model is not None and model.fitted:
        label, confidence = model.predict(ask.id, text)
        if confidence < MODEL_CONFIDENCE or label in (END, PERSON):
            label = None  # ending the call or asking for a person is the rules' word only
        elif label == UNCLEAR:
            return Heard(UNCLEAR, confidence)  # off-topic or not heard: asked again
    if label is not None and ask.reassuring(label):
        reading = read(text)
        if reading.unwell or reading.negated_well:  # "괜찮은 척", "허리 빼고는 괜찮아"
            label = ask.concern  # (None where the question has no concern: asked again)
        elif reading.hedged:
            label = None
    if label is not None:
        return Heard(label, confidence)
    if ask.kind == "need" and then:
        return Heard("other", 0.5)  # words of a need no category has: the care manager reads them
    return Heard(UNCLEAR, 0.0)


def _cue_set(ask: Ask) -> str:
    """The cue words a district's own question uses: its kind's usual question."""
    return {"yes_no": "meal", "scale": "mood", "need": "need"}[ask.kind]


# -- the model and its evaluation ------------------------------------------------------------


def load_answers() -> list[tuple[str, str, str]]:
    """The shipped (question, label, text) answers; '#' lines are comments."""
    text = resources.files("calls").joinpath("data", ANSWERS_FILE).read_text(encoding="utf-8")
    rows: list[tuple[str, str, str]] = []
    for line in text.splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        question, label, answer = (part.strip() for part in line.split("\t", 2))
        rows.append((question, label, answer))
    return rows


class AnswerModel:
    """One character n-gram classifier per question, trained on that question's answers (and
    the ones any question may get: END, PERSON)."""

    def __init__(self) -> None:
        self._models: dict[str, Pipeline] = {}

    @property
    def fitted(self) -> bool:
        return bool(self._models)

    def fit(self, rows: Iterable[tuple[str, str, str]]) -> AnswerModel:
        rows = list(rows)
        for question in sorted({q for q, _, _ in rows if q != "any"}):
            mine = [(t, label) for q, label, t in rows if q in (question, "any")]
            if len({label for _, label in mine}) < 2:
                continue
            pipeline = char_ngram_pipeline()
            pipeline.fit([normalize(t) for t, _ in mine], [label for _, label in mine])
            self._models[question] = pipeline
        return self

    def predict(self, question: str, text: str) -> tuple[str | None, float]:
        pipeline = self._models.get(question)
        if pipeline is None:
            return None, 0.0
        probs: Any = pipeline.predict_proba([normalize(text)])[0]
        best = int(probs.argmax())
        return str(pipeline.classes_[best]), float(probs[best])


_SHIPPED_LOCK = threading.Lock()
_SHIPPED: list[AnswerModel] = []


def shipped_model() -> AnswerModel:
    """The model trained on the shipped answers, once per process (a second or so)."""
    with _SHIPPED_LOCK:
        if not _SHIPPED:
            _SHIPPED.append(AnswerModel().fit(load_answers()))
        return _SHIPPED[0]


@dataclass(frozen=True, slots=True)
class QuestionScore:
    """Held-out accuracy of hear() on one question's answers."""

    question: str
    train: int
    test: int
    accuracy: float
    unclear: int  # held-out answers heard as unclear (asked again, never a wrong answer)


def evaluate_answers(
    rows: list[tuple[str, str, str]], programme: Programme, test_share: float = 0.25, seed: int = 13
) -> list[QuestionScore]:
    """Stratified held-out split per (question, label): the model learns from the rest; each
    held-out answer is heard as an answer to its question (the "any" lines to every question)."""
    train, test = stratified_split(rows, lambda row: row[:2], test_share, seed)
    model = AnswerModel().fit(train)
    scores: list[QuestionScore] = []
    for ask in programme.questions:
        mine = [(label, t) for q, label, t in test if q in (ask.id, "any")]
        if not mine:
            continue
        heard = [hear(ask, None, t, model, then=ask.kind == "need") for _, t in mine]
        hits = sum(_same(h.label, label) for h, (label, _) in zip(heard, mine, strict=True))
        unclear = sum(h.label == UNCLEAR for h in heard)
        trained = sum(q in (ask.id, "any") for q, _, _ in train)
        scores.append(QuestionScore(ask.id, trained, len(mine), hits / len(mine), unclear))
    return scores


def _same(heard: str, label: str) -> bool:
    return heard == label or (heard == "some" and label in NEEDS)
