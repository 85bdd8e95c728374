"""The routine call's conversation: the script as data, and what each answer means."""

from __future__ import annotations

import re
from datetime import date, timedelta
from pathlib import Path

import pytest

from calls import twiml
from calls.conversation import (
    END,
    MAX_SPEECH,
    PERSON,
    UNCLEAR,
    AnswerModel,
    ScriptError,
    evaluate_answers,
    hear,
    load_answers,
    load_programme,
)
from calls.understanding import despairs
from core.domain import CallOutcome

MONDAY, TUESDAY = date(2026, 12, 7), date(2026, 12, 8)
PROGRAMME = load_programme()


@pytest.fixture(scope="module")
def model() -> AnswerModel:
    return AnswerModel().fit(load_answers())


def _ask(question: str):  # type: ignore[no-untyped-def]
    found = PROGRAMME.question(question)
    assert found is not None
    return found


def test_each_resident_has_a_weekly_day_of_their_own_and_other_days_ask_the_daily_ones() -> None:
    assert [q.id for q in PROGRAMME.asked(weekly=True)] == ["meal", "sleep", "pain", "mood", "need"]
    assert [q.id for q in PROGRAMME.asked(weekly=False)] == ["meal"]
    week = [MONDAY + timedelta(days=d) for d in range(7)]
    for rid in range(1, 30):
        assert sum(PROGRAMME.weekly(day, rid) for day in week) == 1  # once a week each
    # seven residents in a row: one weekly conversation on each day of the week
    assert {d.weekday() for rid in range(7) for d in week if PROGRAMME.weekly(d, rid)} == set(
        range(7)
    )
    assert PROGRAMME.after("meal", weekly=True).id == "sleep"  # type: ignore[union-attr]
    assert PROGRAMME.after("meal", weekly=False) is None
    assert PROGRAMME.after("need", weekly=True) is None


def test_the_weekly_conversation_fits_in_under_two_minutes() -> None:
    """Spoken at 90 % (about 4.5 syllables a second), a 0.7 s pause after every sentence and
    3 s for each answer: the greeting, every question and the closing."""
    texts = [twiml.greeting("ko", None, "광산구 통합돌봄센터")]
    texts += [q.ask for q in PROGRAMME.asked(weekly=True)] + [PROGRAMME.closing_ok]
    syllables = sum(len(re.findall("[가-힣0-9]", t)) for t in texts)
    sentences = sum(len(twiml.sentences(t)) for t in texts)
    seconds = syllables / 4.5 + 0.7 * sentences + 3 * (len(texts) - 1)
    assert seconds < 120, seconds


def test_one_choice_per_sentence_in_every_question() -> None:
    for q in PROGRAMME.questions:
        for text in (q.ask, q.simpler):
            for sentence in twiml.sentences(text):
                assert len(re.findall(r"\d번", sentence)) <= 1, sentence


@pytest.mark.parametrize(
    ("script", "why"),
    [
        ('[[question]]\nid = "meal"\nkind = "yes_no_maybe"\nask = "?"\n', "kind must be one of"),
        ('[[question]]\nid = "식사/ ?x#"\nkind = "yes_no"\nask = "?"\n', "lower-case letters"),
        ('[[question]]\nid = "pain"\nkind = "yes_no"\nask = "?"\nkeys = { "1" = "maybe" }\n',
         "keys must lead to one of"),
    ],
)  # fmt: skip
def test_a_district_script_with_a_mistake_is_refused_with_what_is_wrong(
    tmp_path: Path, script: str, why: str
) -> None:
    """A question id goes into the answer's URL as it is: letters, digits and _ only."""
    bad = tmp_path / "script.toml"
    bad.write_text('name = "x"\nclosing_ok = "a"\nended_early = "b"\n' + script, "utf-8")
    with pytest.raises(ScriptError, match=why):
        load_programme(bad)
    bad.write_text('name = "x"\nclosing_ok = "a"\n', encoding="utf-8")
    with pytest.raises(ScriptError, match="missing 'ended_early'"):
        load_programme(bad)


def test_keys_answer_each_kind_of_question() -> None:
    assert hear(_ask("meal"), "1", None).label == "yes"
    assert hear(_ask("meal"), "2", None).label == "no"
    assert [hear(_ask("mood"), k, None).label for k in "123"] == ["good", "so_so", "bad"]
    assert hear(_ask("need"), "1", None).label == "none"
    assert hear(_ask("need"), "2", None).label == "some"  # then said in words
    assert hear(_ask("need"), "2", None, then=True).label == UNCLEAR
    assert hear(_ask("meal"), "9", None).label == UNCLEAR
    assert hear(_ask("mood"), "0", None).label == PERSON  # 0 at any question: a person


def test_silence_is_never_an_answer() -> None:
    for q in PROGRAMME.questions:
        assert hear(q, None, None).label == UNCLEAR
        assert hear(q, None, "   ").label == UNCLEAR


@pytest.mark.parametrize(
    ("question", "said", "label"),
    [
        ("meal", "못 먹었어", "no"),
        ("meal", "입맛이 없어서 걸렀제", "no"),
        ("meal", "밥 묵었어라우", "yes"),
        ("pain", "안 아파", "no"),
        ("pain", "아픈 데 없어", "no"),
        ("pain", "안 아픈 데가 없어", "yes"),
        ("pain", "무릎이 쑤셔부러", "yes"),
        ("sleep", "한숨도 못 잤어", "bad"),
        ("sleep", "그만그만해", "so_so"),
        ("mood", "좋긴 뭐가 좋아", "bad"),
        ("mood", "적적하지 뭐", "bad"),
        ("need", "반찬 좀 갖다 주면 좋겄어", "meals"),
        ("need", "청소 좀 도와줘", "cleaning"),  # a need said in words of help is not a risk
        ("need", "병원 데려다 줄 사람", "escort"),
        ("need", "필요한 거 없어", "none"),
    ],
)
def test_negation_and_dialect_read_as_meant(
    model: AnswerModel, question: str, said: str, label: str
) -> None:
    assert hear(_ask(question), None, said, model, then=question == "need").label == label


def test_risk_words_in_any_answer_end_the_talk_and_raise_the_call(model: AnswerModel) -> None:
    fallen = hear(_ask("sleep"), None, "어제 넘어져서 못 일어나고 있어", model)
    assert (fallen.label, fallen.risk) == ("risk", CallOutcome.EMERGENCY)
    helped = hear(_ask("meal"), None, "밥은 먹었는데 좀 도와줘", model)
    assert (helped.label, helped.risk) == ("risk", CallOutcome.HELP)
    died = hear(_ask("need"), None, "살려줘 숨이 안 쉬어져", model, then=True)
    assert died.risk is CallOutcome.EMERGENCY


def test_the_resident_can_end_the_call_or_ask_for_a_person(model: AnswerModel) -> None:
    assert hear(_ask("mood"), None, "괜찮아요, 끊을게요", model).label == END
    assert hear(_ask("pain"), None, "허리가 끊어질 것 같어", model).label == "yes"  # not an end
    assert hear(_ask("meal"), None, "상담사 좀 바꿔 줘", model).label == PERSON
    assert hear(_ask("need"), None, "사람하고 직접 얘기하고 싶어", model).label == PERSON


def test_every_question_is_understood_on_held_out_answers() -> None:
    """≥ 0.85 per question on a held-out quarter (the model never saw them; the rules were
    written before the answers were, and tuned on the training share only)."""
    scores = evaluate_answers(load_answers(), PROGRAMME)
    assert {s.question for s in scores} == {q.id for q in PROGRAMME.questions}
    for s in scores:
        assert s.test >= 40 and s.accuracy >= 0.85, s


@pytest.mark.parametrize(
    "said",
    ["이제 그만 살았으면 좋겠어", "다 그만하고 싶어", "사는 게 그만하고 싶다",
     "내가 없어져야 자식들이 편하지"],
)  # fmt: skip
def test_giving_up_on_life_is_risk_never_a_wish_to_hang_up(model: AnswerModel, said: str) -> None:
    heard = hear(_ask("mood"), None, said, model)
    assert (heard.label, heard.risk) == ("risk", CallOutcome.EMERGENCY)
    assert despairs(said)


def test_only_the_rules_end_a_call_and_what_was_said_with_the_end_is_kept(
    model: AnswerModel,
) -> None:
    assert hear(_ask("mood"), None, "고만고만해", model).label != END  # Jeolla "so-so"
    so_so = hear(_ask("sleep"), None, "그만하면 잘 자", model)
    assert (so_so.label, so_so.ends) == ("good", False)
    skipped = hear(_ask("meal"), None, "그만 물어봐 안 먹었어", model)
    assert (skipped.label, skipped.ends) == ("no", True)  # the missed meal is kept
    # a reassurance said on the way out is no answer: "괜찮아요" here means "never mind"
    assert hear(_ask("mood"), None, "괜찮아요, 끊을게요", model).label == END


@pytest.mark.parametrize(
    ("said", "risk"),
    [("도와주세요", CallOutcome.HELP), ("어제 화장실에서 넘어졌어", CallOutcome.HELP),
     ("다쳤어요 와 주세요", CallOutcome.HELP), ("혼자 못 일어나", CallOutcome.HELP)],
)  # fmt: skip
def test_at_the_need_question_help_without_a_service_and_a_fall_are_risk(
    model: AnswerModel, said: str, risk: CallOutcome
) -> None:
    for then in (False, True):
        heard = hear(_ask("need"), None, said, model, then=then)
        assert (heard.label, heard.risk) == ("risk", risk), (said, then)


def test_the_pain_question_keeps_1_for_all_well() -> None:
    assert hear(_ask("pain"), "1", None).label == "no"
    assert hear(_ask("pain"), "2", None).label == "yes"


@pytest.mark.parametrize(
    ("question", "said", "label"),
    [("mood", "괜찮은 척 하는 거지", "bad"), ("pain", "괜찮아 허리만 좀 그래", "yes"),
     ("mood", "좋을 게 뭐 있어", "bad"), ("mood", "그냥 맨날 울어", "bad"),
     ("meal", "먹는 둥 마는 둥 했어", "no"), ("need", "필요한 거 없어 그냥 사람이 그리워", "visit"),
     ("need", "돈이 없어", "other")],
)  # fmt: skip
def test_reassurance_the_words_undo_is_never_taken(
    model: AnswerModel, question: str, said: str, label: str
) -> None:
    assert hear(_ask(question), None, said, model, then=question == "need").label == label


def test_a_symptom_said_at_any_question_raises_the_call() -> None:
    heard = hear(_ask("pain"), None, "열이 나고 토했어요")
    assert heard.unwell and heard.risk is None
    assert not hear(_ask("pain"), None, "무릎이 아파").unwell  # ordinary pain: the answer only


def test_only_the_first_characters_of_long_speech_are_read() -> None:
    """Speech is cut to MAX_SPEECH before any pattern reads it (adversarial repeats took
    seconds at 20,000 characters): what comes after the cut changes nothing."""
    for filler in ("필요", "기계", "녹음", "선생님", "그만 "):
        long = filler * 20_000
        for q in PROGRAMME.questions:
            assert hear(q, None, long + " 살려 줘") == hear(q, None, long[:MAX_SPEECH])
