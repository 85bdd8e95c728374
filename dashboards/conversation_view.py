"""What residents answered on their routine conversations, as care managers read it: a resident's
weeks on the card (meals, sleep, pain, mood, needs), and the runs the weekly review raises (no
meals again and again, mood or sleep going down, pain week after week). Read only; never a call
at night: these wait for the review.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import psycopg

from alerts.queries import Dongs, dong_list
from calls.conversation import Programme

QUESTIONS: dict[str, tuple[str, str]] = {
    "meal": ("식사", "Meals"),
    "sleep": ("수면", "Sleep"),
    "pain": ("아픈 곳", "Pain"),
    "mood": ("기분", "Mood"),
    "need": ("필요한 도움", "Needs"),
}
# (question or "*", label) -> (Korean, English)
ANSWERS: dict[tuple[str, str], tuple[str, str]] = {
    ("meal", "yes"): ("드심", "ate"),
    ("meal", "no"): ("못 드심", "did not eat"),
    ("pain", "yes"): ("아픈 곳 있음", "in pain"),
    ("pain", "no"): ("없음", "none"),
    ("*", "good"): ("좋음", "good"),
    ("*", "so_so"): ("보통", "so-so"),
    ("*", "bad"): ("안 좋음", "bad"),
    ("need", "none"): ("없음", "none"),
    ("need", "meals"): ("식사·반찬", "meals"),
    ("need", "escort"): ("병원 동행", "hospital escort"),
    ("need", "cleaning"): ("청소·집안일", "cleaning"),
    ("need", "visit"): ("방문·말벗", "home visit"),
    ("need", "other"): ("기타 요청", "other"),
    ("*", "unclear"): ("알아듣지 못함", "not understood"),
    ("*", "end"): ("통화 마침 요청", "ended the call"),
    ("*", "person"): ("상담 통화 요청", "asked for a person"),
    ("*", "risk"): ("위험 신호 (알림으로 넘김)", "risk words (sent as an alert)"),
}
RANK = {"good": 0, "so_so": 1, "bad": 2}
RUN = 2  # concern answers in a row that the review raises
WEEKS = 8  # weeks on the resident's card


def answer_words(lang: str, question: str, label: str) -> str:
    pair = ANSWERS.get((question, label)) or ANSWERS.get(("*", label)) or (label, label)
    return pair[0] if lang == "ko" else pair[1]


def question_words(lang: str, question: str) -> str:
    pair = QUESTIONS.get(question, (question, question))
    return pair[0] if lang == "ko" else pair[1]


@dataclass(frozen=True, slots=True)
class Answer:
    question: str
    label: str
    answered_at: datetime


@dataclass(frozen=True, slots=True)
class TalkWeek:
    """One local week (from Monday) of a resident's answers: question -> the labels, in order."""

    start: date
    answers: dict[str, list[str]]


def answers_since(
    conn: psycopg.Connection[Any],
    dongs: Dongs,
    since: datetime,
    resident_id: int | None = None,
    until: datetime | None = None,
) -> dict[int, list[Answer]]:
    """Each resident's answers since `since` (and up to `until`, when given), oldest first,
    within the dongs in view."""
    rows = conn.execute(
        """SELECT a.resident_id, a.question, a.label, a.answered_at
           FROM anbu.call_answers a JOIN anbu.resident r ON r.id = a.resident_id
           WHERE r.dong_code = ANY(%s) AND a.answered_at >= %s
             AND (%s::timestamptz IS NULL OR a.answered_at <= %s)
             AND (%s::bigint IS NULL OR a.resident_id = %s)
           ORDER BY a.answered_at, a.question""",
        (dong_list(dongs), since, until, until, resident_id, resident_id),
    ).fetchall()
    found: dict[int, list[Answer]] = {}
    for rid, question, label, at in rows:
        found.setdefault(int(rid), []).append(Answer(str(question), str(label), at))
    return found


def weeks(answers: Iterable[Answer], now: datetime, tz: ZoneInfo, n: int = WEEKS) -> list[TalkWeek]:
    """The last `n` local weeks, newest first, each with its answers by question."""
    monday = now.astimezone(tz).date() - timedelta(days=now.astimezone(tz).weekday())
    starts = [monday - timedelta(weeks=i) for i in range(n)]
    by_week: dict[date, dict[str, list[str]]] = {s: {} for s in starts}
    for a in answers:
        local = a.answered_at.astimezone(tz).date()
        start = local - timedelta(days=local.weekday())
        if start in by_week:
            by_week[start].setdefault(a.question, []).append(a.label)
    return [TalkWeek(s, by_week[s]) for s in starts]


def concerns(answers: Sequence[Answer], programme: Programme, since: datetime) -> dict[str, str]:
    """What the weekly review should see: question -> why, for each question with a concern
    answer (the script's `concern`) that came RUN times in a row, or (scales) a worsening
    over the last three answers ending this week."""
    found: dict[str, str] = {}
    for ask in programme.questions:
        if ask.concern is None:
            continue
        mine = [a for a in answers if a.question == ask.id and a.label in ask.labels]
        if not mine or mine[-1].answered_at < since:
            continue
        last = [a.label for a in mine[-RUN:]]
        if len(last) == RUN and all(label == ask.concern for label in last):
            found[ask.id] = "run"
            continue
        ranks = [RANK[a.label] for a in mine[-3:] if a.label in RANK]
        if ask.kind == "scale" and len(ranks) == 3 and ranks[0] < ranks[1] < ranks[2]:
            found[ask.id] = "worse"
    return found


def concern_words(lang: str, question: str, why: str, concern: str | None = None) -> str:
    """'식사 못 드심 2회 연속', '기분 나빠지는 중': what the review raised, in words."""
    name = question_words(lang, question)
    said = answer_words(lang, question, concern) if concern else ""
    if lang == "ko":
        return f"{name} {said} {RUN}회 연속" if why == "run" else f"{name} 나빠지는 중"
    return f"{name} {said}, {RUN} in a row" if why == "run" else f"{name} getting worse"
