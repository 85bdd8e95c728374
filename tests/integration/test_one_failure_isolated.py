"""One failing unit never blocks the others (issue 13), on the real PostgreSQL: a poisoned alert
in the due-work pass, one routine check-in round, one home in the sweep, one home in nightly
learning. Each poison is a trigger that raises for one row only, so the failure happens inside
the database, where a real one would."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, time, timedelta
from typing import Any

import psycopg
import pytest

import registry
from alerts.policy import EscalationPolicy
from alerts.service import AlertService, step_backoff
from calls.checkins import CheckinService, add_plan
from core.clock import VirtualClock
from core.db import Database
from detectors.inactivity import InactivityPolicy
from detectors.nightly import learn_all
from detectors.sweep import sweep
from tests.calls_support import ACCOUNT_SID, CallsRig, calls_rig
from tests.integration.dashboard_support import seed_alert

DONG = "1111051500"
NOON = datetime(2026, 11, 23, 3, 0, tzinfo=UTC)  # Monday 12:00 in Seoul
MONDAY_10 = datetime(2026, 3, 2, 1, 0, tzinfo=UTC)  # Monday 10:00 in Seoul
PHONES = ["+821055501001", "+821055501002", "+821055501003"]


def _poison(conn: psycopg.Connection[Any], table: str, when: str) -> None:
    """A trigger on anbu.<table> that raises whenever `when` (over NEW/OLD) holds."""
    op = "UPDATE" if "OLD." in when else "INSERT"
    conn.execute(
        f"""CREATE FUNCTION anbu.poison_{table}() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
              IF {when} THEN RAISE EXCEPTION 'poisoned row in {table}'; END IF;
              RETURN NEW;
            END $$"""
    )
    conn.execute(
        f"""CREATE TRIGGER poison BEFORE {op} ON anbu.{table}
            FOR EACH ROW EXECUTE FUNCTION anbu.poison_{table}()"""
    )


def _cure(conn: psycopg.Connection[Any], table: str) -> None:
    conn.execute(f"DROP TRIGGER poison ON anbu.{table}")


def _residents(conn: psycopg.Connection[Any], tag: str) -> list[int]:
    registry.add_dong(conn, DONG, "청운효자동", "종로구")
    return [
        registry.add_resident(conn, f"home-{tag}-{n}", DONG, "박영자", phone)
        for n, phone in enumerate(PHONES)
    ]


# -- alerts ----------------------------------------------------------------------------------


@pytest.fixture
def alert_rig(db_url: str, unique: str) -> Iterator[tuple[CallsRig, AlertService, VirtualClock]]:
    """Three residents; the calls-per-second budget is spent, so check-in calls only queue."""
    clock = VirtualClock(NOON)
    with calls_rig(db_url, clock=clock, call_cps=0.001, call_inline_wait_s=0.0) as calls:
        with calls.database.connection() as conn:
            conn.execute(
                """INSERT INTO anbu.call_rate (account, tokens, refilled_at)
                   VALUES (%s, 0, clock_timestamp())""",
                (ACCOUNT_SID,),
            )
        alerts = AlertService(calls.database, calls.service, EscalationPolicy(), clock, "http://d")
        yield calls, alerts, clock


def _three_due_alerts(rig: CallsRig, clock: VirtualClock, unique: str) -> list[int]:
    """Three inactivity alerts due now; the first sorts first (its timer is the oldest)."""
    with rig.database.connection() as conn:
        residents = _residents(conn, unique)
    ids = [seed_alert(rig.database, clock, rid, "inactivity") for rid in residents]
    for n, alert_id in enumerate(ids):
        rig.query(
            "UPDATE anbu.alerts SET next_action_at = %s WHERE id = %s RETURNING id",
            clock.now() - timedelta(minutes=10 - n),
            alert_id,
        )
    return ids


def _alert(rig: CallsRig, alert_id: int) -> tuple[Any, ...]:
    [row] = rig.query(
        """SELECT state, call_attempts, step_failures, step_retry_at, next_action_at
           FROM anbu.alerts WHERE id = %s""",
        alert_id,
    )
    return row


def _last_reason(rig: CallsRig, alert_id: int) -> str:
    [(reason,)] = rig.query(
        "SELECT reason FROM anbu.alert_events WHERE alert_id = %s ORDER BY id DESC LIMIT 1",
        alert_id,
    )
    return str(reason)


def test_a_poisoned_alert_is_backed_off_and_the_others_go_on(
    alert_rig: tuple[CallsRig, AlertService, VirtualClock], unique: str
) -> None:
    rig, alerts, clock = alert_rig
    bad, *good = _three_due_alerts(rig, clock, unique)
    with rig.database.connection() as conn:  # its step's update raises; its back-off does not
        _poison(conn, "alerts", f"NEW.id = {bad} AND NEW.call_attempts <> OLD.call_attempts")

    assert alerts.process_due() == 2
    for alert_id in good:
        assert _alert(rig, alert_id)[:3] == ("calling", 1, 0)
    start = clock.now()
    assert _alert(rig, bad) == ("open", 0, 1, start + timedelta(minutes=1),
                                start + timedelta(minutes=1))  # fmt: skip
    assert _last_reason(rig, bad).startswith(
        "처리 중 오류로 1분 뒤 다시 시도 (1회째) / step failed"
    )
    assert rig.query("SELECT count(*) FROM anbu.calls WHERE alert_id = ANY(%s)", good) == [(2,)]

    assert alerts.process_due() == 0  # backing off: not tried again at once
    clock.advance(timedelta(minutes=1))
    assert alerts.process_due() == 0  # failed again: the wait grows
    assert _alert(rig, bad)[2:4] == (2, clock.now() + step_backoff(2))
    assert step_backoff(2) == timedelta(minutes=2)
    assert _last_reason(rig, bad).startswith("처리 중 오류로 2분 뒤 다시 시도 (2회째)")

    with rig.database.connection() as conn:
        _cure(conn, "alerts")
    clock.advance(step_backoff(2))
    assert alerts.process_due() == 3  # it, and the others' watchdogs (their calls still queue)
    assert _alert(rig, bad)[:4] == ("calling", 1, 0, None)  # a success clears the count
    assert _last_reason(rig, bad) == "안부전화 1회차 발신"


def test_an_alert_whose_back_off_cannot_be_written_does_not_stop_the_pass(
    alert_rig: tuple[CallsRig, AlertService, VirtualClock], unique: str
) -> None:
    rig, alerts, clock = alert_rig
    bad, *good = _three_due_alerts(rig, clock, unique)
    with rig.database.connection() as conn:  # every update of it raises, the back-off's too
        _poison(conn, "alerts", f"NEW.id = {bad} AND OLD.id IS NOT NULL")

    assert alerts.process_due() == 2
    assert [_alert(rig, a)[:2] for a in good] == [("calling", 1), ("calling", 1)]
    assert _alert(rig, bad)[:3] == ("open", 0, 0)
    assert alerts.process_due() == 0  # the next pass tries it again: it fails again, alone
    assert _alert(rig, bad)[:3] == ("open", 0, 0)
    assert [_alert(rig, a)[:2] for a in good] == [("calling", 1), ("calling", 1)]


def test_step_backoff_grows_and_is_capped() -> None:
    waits = [step_backoff(n) for n in (1, 2, 3, 6, 40)]
    assert waits == [timedelta(minutes=m) for m in (1, 2, 4, 30, 30)]


# -- routine check-in rounds -----------------------------------------------------------------


def test_one_failing_round_does_not_block_the_other_rounds(db_url: str, unique: str) -> None:
    with psycopg.connect(db_url) as conn:
        residents = _residents(conn, unique)
        for rid in residents:
            add_plan(conn, rid, [1], time(10, 0))
    clock = VirtualClock(MONDAY_10 + timedelta(seconds=5))
    with calls_rig(db_url, clock=clock) as rig:
        checkins = CheckinService(rig.database, rig.settings, clock)
        assert checkins.schedule() == 3
        rounds = [r[0] for r in rig.query("SELECT id FROM anbu.checkin_rounds ORDER BY id")]
        bad = rounds[0]
        with rig.database.connection() as conn:
            _poison(conn, "checkin_rounds",
                    f"NEW.id = {bad} AND NEW.attempts <> OLD.attempts")  # fmt: skip

        assert checkins.advance() == 3
        queued = rig.query("SELECT round_id FROM anbu.calls ORDER BY round_id")
        assert queued == [(r,) for r in rounds[1:]]
        [(attempts, failures, retry_at)] = rig.query(
            "SELECT attempts, step_failures, step_retry_at FROM anbu.checkin_rounds WHERE id = %s",
            bad,
        )
        assert (attempts, failures, retry_at) == (0, 1, clock.now() + timedelta(minutes=1))
        assert checkins.advance() == 0  # backing off; the others wait for their calls

        with rig.database.connection() as conn:
            _cure(conn, "checkin_rounds")
        clock.advance(timedelta(minutes=1))
        assert checkins.advance() == 1
        assert rig.query(
            """SELECT k.attempts, k.step_failures, k.step_retry_at, c.round_id
               FROM anbu.checkin_rounds k JOIN anbu.calls c ON c.id = k.last_call_id
               WHERE k.id = %s""",
            bad,
        ) == [(1, 0, None, bad)]


# -- the sweep and nightly learning ------------------------------------------------------------


def test_one_home_failing_in_the_sweep_does_not_block_the_others(
    database: Database, unique: str
) -> None:
    last = datetime(2026, 11, 24, 0, 0, tzinfo=UTC)
    with database.connection() as conn:
        bad, *good = _residents(conn, unique)
        for rid in (bad, *good):
            conn.execute(
                """INSERT INTO anbu.home_activity (resident_id, last_activity_at, last_motion_at)
                   VALUES (%s, %s, %s)""",
                (rid, last, last),
            )
        _poison(conn, "findings", f"NEW.resident_id = {bad}")
    now = last + timedelta(hours=13)
    with database.connection() as conn:
        found = sweep(conn, now, InactivityPolicy())
    assert sorted(f.resident_id for f in found) == good
    assert {f.finding.kind for f in found} == {"inactivity"}
    with database.connection() as conn:
        stored = conn.execute("SELECT resident_id FROM anbu.findings ORDER BY resident_id")
        assert [r[0] for r in stored] == good
        _cure(conn, "findings")
    with database.connection() as conn:  # cured: the next sweep raises the home it missed
        again = sweep(conn, now + timedelta(minutes=1), InactivityPolicy())
    assert [f.resident_id for f in again] == [bad]


def test_one_home_failing_in_nightly_learning_does_not_stop_the_others(
    database: Database, unique: str
) -> None:
    """The home that fails sorts first; it keeps last night's baseline, the others are learned."""
    last_night, tonight = (datetime(2026, 11, d, 18, 0, tzinfo=UTC) for d in (23, 24))
    with database.connection() as conn:
        bad, *good = _residents(conn, unique)
    assert learn_all(database, last_night) == 3
    with database.connection() as conn:
        _poison(conn, "baselines", f"NEW.resident_id = {bad}")
    assert learn_all(database, tonight) == 2
    with database.connection() as conn:
        learned = conn.execute(
            "SELECT resident_id, learned_at FROM anbu.baselines ORDER BY resident_id"
        ).fetchall()
    assert learned == [(bad, last_night), *[(rid, tonight) for rid in good]]
