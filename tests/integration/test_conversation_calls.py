"""The routine call as a short conversation, played on the local phone network by scripted
residents who answer by keypad and speech, hesitate, go off-topic, hang up mid-call, ask for
help half-way, end the call or ask for a person; what they say becomes structured answers and
service requests (연계 요청) in the dong's queue."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import psycopg
import pytest

import registry
from alerts import requests
from calls import twiml
from calls.conversation import load_programme
from calls.talk import Talk
from core.clock import VirtualClock
from core.db import Database
from core.domain import CallOutcome
from simulators import personas
from simulators.personas import Persona
from tests.calls_support import CallsRig, calls_rig

SEOUL = ZoneInfo("Asia/Seoul")
MONDAY = datetime(2026, 12, 7, 10, 0, tzinfo=SEOUL)


def weekly_day_of(resident_id: int) -> datetime:
    """A morning of the resident's own weekly conversation (the shipped script spreads them:
    resident id mod 7 is the weekday)."""
    return MONDAY + timedelta(days=resident_id % 7)


PHONE = "+821055507070"
MANAGER_PHONE = "+821099997070"
OTHER_PHONE = "+821055507071"
DONG = "2920054000"
PROGRAMME = load_programme()


def _seed(db_url: str) -> int:
    with psycopg.connect(db_url) as conn:
        registry.add_dong(conn, DONG, "우산동", "광산구")
        return registry.add_resident(conn, "h-talk", DONG, "박말순", PHONE)


@pytest.fixture
def monday(db_url: str) -> Iterator[tuple[CallsRig, int]]:
    rid = _seed(db_url)
    with calls_rig(db_url, clock=VirtualClock(weekly_day_of(rid), speed=1.0)) as rig:
        yield rig, rid


def _call(rig: CallsRig, rid: int, persona: Persona, attempt: int = 1, phone: str = PHONE):  # type: ignore[no-untyped-def]
    rig.network.set_persona(phone, persona)
    call_id = rig.service.place_check_in(rid, None, attempt)
    assert rig.network.wait_idle(30), "the simulated call did not end"
    [simulated] = [c for c in rig.network.calls if c.sid == _sid(rig, call_id)]
    assert simulated.errors == ()
    return call_id, simulated


def _sid(rig: CallsRig, call_id: int) -> str:
    [(sid,)] = rig.query("SELECT twilio_sid FROM anbu.calls WHERE id = %s", call_id)
    return str(sid)


def _answers(rig: CallsRig, call_id: int) -> dict[str, tuple[str, int]]:
    rows = rig.query(
        "SELECT question, label, tries FROM anbu.call_answers WHERE call_id = %s", call_id
    )
    return {q: (label, tries) for q, label, tries in rows}


def _outcome(rig: CallsRig, call_id: int) -> str:
    [(outcome,)] = rig.query("SELECT outcome FROM anbu.calls WHERE id = %s", call_id)
    return str(outcome)


def test_a_weekly_conversation_by_keypad_and_speech_becomes_answers_and_a_request(
    monday: tuple[CallsRig, int],
) -> None:
    rig, rid = monday
    resident = personas.converse(
        "key:1", "say:밥 묵었어라우", "key:3", "say:무릎이 쑤셔부러", "say:적적하지 뭐",
        "say:반찬 좀 갖다 주면 좋겄어",
    )  # fmt: skip
    call_id, call = _call(rig, rid, resident)
    assert _answers(rig, call_id) == {
        "meal": ("yes", 1), "sleep": ("bad", 1), "pain": ("yes", 1), "mood": ("bad", 1),
        "need": ("meals", 1),
    }  # fmt: skip
    # one question at a time, in order, and the programme's own closing
    heard = list(call.heard)
    order = [next(i for i, h in enumerate(heard) if h.endswith(q.ask)) for q in PROGRAMME.questions]
    assert order == sorted(order)
    assert heard[order[0]].startswith(twiml.TALK_OPENING)
    # pain, low mood, a need: the closing says it will be passed on
    assert heard[-1] == twiml.spoken(PROGRAMME.closing_concern)
    assert _outcome(rig, call_id) == "ok"  # answers about the week are no alarm
    with rig.database.connection() as conn:
        assert requests.take_needs(conn, MONDAY) == 1
        assert requests.take_needs(conn, MONDAY) == 0  # a need is taken once
        [request], _ = requests.page_requests(conn, DONG)
    assert (request.category, request.words, request.state) == (
        "meals",
        "반찬 좀 갖다 주면 좋겄어",
        "open",
    )


def test_a_need_said_yes_to_is_asked_for_in_words(monday: tuple[CallsRig, int]) -> None:
    rig, rid = monday
    resident = personas.converse(
        "key:1", "key:1", "key:1", "key:2", "key:1", "key:2", "say:병원 갈 때 같이 가 줄 사람"
    )
    call_id, call = _call(rig, rid, resident)
    need = PROGRAMME.question("need")
    assert need is not None and need.then in call.heard
    assert _answers(rig, call_id)["need"] == ("escort", 1)


def test_hesitation_is_asked_again_in_simpler_words_then_passed_over(
    monday: tuple[CallsRig, int],
) -> None:
    """Silence is asked once more, simpler; an off-topic answer twice is recorded as unclear
    and the talk moves on; hanging up mid-call keeps what was said and is no failure."""
    rig, rid = monday
    resident = personas.converse(
        "key:1", "", "say:응 먹었제", "say:오늘 날씨가 춥네", "say:글쎄 뭐라 해야 쓸까", "hangup"
    )
    call_id, call = _call(rig, rid, resident)
    meal, sleep = PROGRAMME.question("meal"), PROGRAMME.question("sleep")
    assert meal is not None and sleep is not None
    assert meal.simpler in call.heard and sleep.simpler in call.heard
    assert _answers(rig, call_id) == {"meal": ("yes", 2), "sleep": ("unclear", 2)}
    assert _outcome(rig, call_id) == "ok"
    [(status,)] = rig.query("SELECT status FROM anbu.calls WHERE id = %s", call_id)
    assert status == "completed"


def test_help_asked_half_way_ends_the_talk_and_escalates_at_once(
    monday: tuple[CallsRig, int],
) -> None:
    rig, rid = monday
    resident = personas.converse("key:1", "key:1", "say:어제 넘어져서 혼자 못 일어나겠어")
    call_id, call = _call(rig, rid, resident)
    assert _answers(rig, call_id) == {"meal": ("yes", 1), "sleep": ("risk", 1)}
    assert _outcome(rig, call_id) == CallOutcome.EMERGENCY.value
    assert "일일구" in call.heard[-1]  # the emergency closing, 119 as people say it
    pain = PROGRAMME.question("pain")
    assert pain is not None and pain.ask not in call.heard  # nothing more is asked


def test_the_resident_may_end_the_call_and_that_is_no_failure(
    monday: tuple[CallsRig, int],
) -> None:
    rig, rid = monday
    call_id, call = _call(rig, rid, personas.converse("key:1", "say:괜찮아요, 끊을게요"))
    assert _answers(rig, call_id) == {"meal": ("end", 1)}
    assert call.heard[-1] == PROGRAMME.ended_early
    assert _outcome(rig, call_id) == "ok"


def test_asking_for_a_person_puts_the_resident_through_to_their_care_manager(
    monday: tuple[CallsRig, int],
) -> None:
    """상담사 연결, said or by 0 at any question: the resident's own care manager rings; the
    care manager is told at once as well, and a talk request waits in the queue."""
    rig, rid = monday
    with psycopg.connect(rig.settings.database_url) as conn:
        registry.add_care_manager(conn, "cm-talk", DONG, "정담당", MANAGER_PHONE, "pw")
    call_id, call = _call(rig, rid, personas.converse("key:1", "say:상담사 좀 바꿔 줘요"))
    assert _outcome(rig, call_id) == "help"
    assert call.dialled == (MANAGER_PHONE,)
    assert call.heard[-1] == "동 케어매니저 선생님께 연결해 드리겠습니다. 잠시만 기다려 주세요."
    with rig.database.connection() as conn:
        assert requests.take_needs(conn, MONDAY) == 1
        [request], _ = requests.page_requests(conn, DONG)
    assert request.category == "talk"
    # by the keypad, at a later question; the care manager does not pick up
    rig.network.dial_status = "no-answer"
    with psycopg.connect(rig.settings.database_url) as conn:
        other = registry.add_resident(conn, "h-talk-2", DONG, "김순이", OTHER_PHONE)
    keypad = personas.converse("key:1", "key:0")  # at the meal question of a daily talk
    second, call = _call(rig, other, keypad, phone=OTHER_PHONE)
    assert call.dialled == (MANAGER_PHONE,) and "곧 전화드릴 거예요" in call.heard[-1]
    assert _answers(rig, second)["meal"] == ("person", 1)


def test_one_conversation_a_day_and_only_the_daily_question_on_other_days(
    db_url: str,
) -> None:
    rid = _seed(db_url)
    daily = weekly_day_of(rid) + timedelta(days=1)  # not the resident's weekly day
    with calls_rig(db_url, clock=VirtualClock(daily, speed=1.0)) as rig:
        first, call = _call(rig, rid, personas.converse("key:1", "say:먹었어"))
        assert _answers(rig, first) == {"meal": ("yes", 1)}  # a daily one: the meal only
        assert call.heard[-1] == PROGRAMME.closing_ok
        again, call = _call(rig, rid, personas.converse("key:1", "key:2"), attempt=2)
        assert _answers(rig, again) == {}  # talked today already: the plain closing
        assert call.heard[-1] == "네, 알겠습니다. 오늘도 건강하게 지내세요. 감사합니다."


def test_a_keypad_resident_s_need_reaches_a_person_even_unsaid(
    monday: tuple[CallsRig, int],
) -> None:
    """2 (there is something), then silence where words were asked for, twice: a request of
    its own kind with no words, for the care manager to call about."""
    rig, rid = monday
    call_id, call = _call(rig, rid, personas.converse(
        "key:1", "key:1", "key:1", "key:1", "key:1", "key:2", "", ""))  # fmt: skip
    need = PROGRAMME.question("need")
    assert need is not None and call.heard.count(need.then) == 2  # asked twice for the words
    assert _answers(rig, call_id)["need"] == ("other", 2)
    with rig.database.connection() as conn:
        assert requests.take_needs(conn, MONDAY) == 1


def test_a_fall_said_at_the_need_question_is_no_service_request(
    monday: tuple[CallsRig, int],
) -> None:
    rig, rid = monday
    resident = personas.converse(
        "key:1", "key:1", "key:1", "key:1", "key:1", "say:화장실에서 넘어졌는데 도와줘"
    )
    call_id, _ = _call(rig, rid, resident)
    assert _outcome(rig, call_id) == "help"
    assert _answers(rig, call_id)["need"] == ("risk", 1)
    with rig.database.connection() as conn:
        assert requests.take_needs(conn, MONDAY) == 0


def test_a_wish_to_die_gets_its_own_closing(monday: tuple[CallsRig, int]) -> None:
    rig, rid = monday
    call_id, call = _call(rig, rid, personas.converse("key:1", "key:1", "say:다 그만하고 싶어"))
    assert _outcome(rig, call_id) == "emergency"
    assert call.heard[-1] == twiml.spoken(twiml.DESPAIR_CLOSING)
    assert "일공구" in call.heard[-1] and "전화를 끊고" not in call.heard[-1]


def test_a_symptom_raises_the_call_and_the_talk_goes_on(monday: tuple[CallsRig, int]) -> None:
    rig, rid = monday
    call_id, _ = _call(rig, rid, personas.converse(
        "key:1", "say:감기 걸려서 열이 나서 못 먹었어", "key:1", "key:1", "key:1", "key:1"))  # fmt: skip
    assert _outcome(rig, call_id) == "unwell"  # the care manager hears of it today
    assert _answers(rig, call_id)["meal"] == ("no", 1)
    assert len(_answers(rig, call_id)) == 5


def test_an_answer_replayed_or_changed_later_keeps_what_was_stored(
    monday: tuple[CallsRig, int],
) -> None:
    rig, rid = monday
    call_id, _ = _call(rig, rid, personas.converse("key:1", "say:밥 묵었어", "hangup"))
    talk = Talk(rig.database, rig.service.clock, SEOUL, rig.service.raise_answer)
    step = talk.answer(call_id, "meal", None, "못 먹었어", 1, False, weekly=True)
    assert step.ask is not None and step.ask.id == "sleep"  # the same next words as before
    assert rig.query("SELECT label, speech FROM anbu.call_answers WHERE call_id = %s", call_id) == [
        ("yes", "밥 묵었어")
    ]  # the first answer stands


def test_risk_words_are_heard_when_nothing_can_be_stored(
    monday: tuple[CallsRig, int], db_url: str
) -> None:
    """The database away, or a question this web instance's script does not have: the words
    are still read for risk, and the resident hears what to do."""
    rig, rid = monday
    call_id, _ = _call(rig, rid, personas.converse("key:1", "hangup"))
    talk = Talk(rig.database, rig.service.clock, SEOUL, rig.service.raise_answer)
    unknown = talk.answer(call_id, "no_such_question", None, "살려 줘 숨이 안 쉬어져", 1, False)
    assert unknown.closing is CallOutcome.EMERGENCY
    assert _outcome(rig, call_id) == "emergency"  # raised all the same
    # the call's row held by another transaction past the lock timeout, every try: the answer
    # cannot be stored, and the risk words are still heard
    impatient = Database(db_url + "?options=-c%20lock_timeout%3D200", min_size=1, max_size=1)
    impatient.open()
    try:
        cut_off = Talk(impatient, rig.service.clock, SEOUL, rig.service.raise_answer)
        with psycopg.connect(db_url) as holder:
            holder.execute("SELECT 1 FROM anbu.calls WHERE id = %s FOR UPDATE", (call_id,))
            step = cut_off.answer(call_id, "sleep", None, "어제 넘어져서 못 일어나", 1, False)
            assert step.closing is CallOutcome.EMERGENCY
            with pytest.raises(psycopg.errors.LockNotAvailable):  # nothing at risk: fails as before
                cut_off.answer(call_id, "sleep", "1", None, 1, False)
    finally:
        impatient.close()


def test_a_read_that_fails_after_the_answer_is_stored_still_closes_the_call_kindly(
    monday: tuple[CallsRig, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The answer is committed, then reading what comes next fails (the database went): the
    resident hears the closing for what they said, never the carrier's error, and nothing
    stored is undone. "All right" with the first question unread: the all-right closing; a
    person asked for with no number read: that nobody can be put through now and the care
    manager will call, and the help stands."""
    rig, rid = monday

    def away(*args: object) -> None:
        raise psycopg.OperationalError("the server went away (test)")

    monkeypatch.setattr(Talk, "first", away)
    call_id, call = _call(rig, rid, personas.converse("key:1"))
    assert _outcome(rig, call_id) == "ok"
    assert call.heard[-1] == twiml.spoken(twiml.closing_text(CallOutcome.OK))
    monkeypatch.undo()
    monkeypatch.setattr(Talk, "_person_for", away)
    with psycopg.connect(rig.settings.database_url) as conn:
        other = registry.add_resident(conn, "h-talk-3", DONG, "최순덕", OTHER_PHONE)
    second, call = _call(rig, other, personas.converse("key:1", "key:0"), phone=OTHER_PHONE)
    assert _outcome(rig, second) == "help" and call.dialled == ()
    assert call.heard[-1] == twiml.spoken(twiml.NOT_CONNECTED)  # not put through, and why
    assert _answers(rig, second)["meal"] == ("person", 1)
