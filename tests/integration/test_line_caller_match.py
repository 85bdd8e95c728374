"""The 돌봄콜 line knows a caller only by a checked number: a withheld number matches nobody."""

from __future__ import annotations

import psycopg
import pytest

import registry
from calls.incoming import IncomingLine, caller_number
from core.clock import SystemClock
from core.db import Database

DONG = "1111051500"


@pytest.fixture
def seeded(database: Database) -> dict[str, int]:
    with database.connection() as conn:
        registry.add_dong(conn, DONG, "청운효자동", "종로구")
        mobile = registry.add_resident(conn, "h-mobile", DONG, "가", "010-5550-1111")
        ended = registry.add_resident(conn, "h-old", DONG, "나", "+821055502222")
        conn.execute(
            "UPDATE anbu.resident SET status = 'ended', ended_at = now() WHERE id = %s", (ended,)
        )
        again = registry.add_resident(conn, "h-new", DONG, "다", "+821077770000")
        conn.execute(
            "UPDATE anbu.resident SET landline_phone = '+821055502222' WHERE id = %s", (again,)
        )
    return {"mobile": mobile, "ended": ended, "again": again}


def _answer(db: Database, sid: str, caller: str) -> int | None:
    return IncomingLine(db, SystemClock()).answer(sid, caller)


def test_a_number_written_the_korean_way_is_stored_in_e164(
    database: Database, seeded: dict[str, int]
) -> None:
    with database.connection() as conn:
        row = conn.execute(
            "SELECT phone FROM anbu.resident WHERE id = %s", (seeded["mobile"],)
        ).fetchone()
    assert row == ("+821055501111",)
    with database.connection() as conn, pytest.raises(registry.InvalidPhone, match="characters"):
        registry.add_resident(conn, "h-bad", DONG, "라", "전화 없음")


@pytest.mark.parametrize("caller", ["+821055501111", "010-5550-1111", "01055501111"])
def test_the_residents_own_number_in_any_format_is_recognised(
    database: Database, seeded: dict[str, int], caller: str
) -> None:
    assert _answer(database, f"CA-{caller}", caller) == seeded["mobile"]


def test_a_shared_number_prefers_the_resident_still_in_the_programme(
    database: Database, seeded: dict[str, int]
) -> None:
    assert _answer(database, "CA-shared", "+821055502222") == seeded["again"]


@pytest.mark.parametrize("caller", ["anonymous", "", "Restricted", "+12025550123", "010١٢٣٤٥٦٧٨"])
def test_a_withheld_or_foreign_number_matches_nobody(
    database: Database, seeded: dict[str, int], caller: str
) -> None:
    # a resident enrolled before numbers were checked, whose phone holds no digits at all:
    # the old matching compared digits only and gave this resident every withheld call
    with database.connection() as conn:
        conn.execute("ALTER TABLE anbu.resident DISABLE TRIGGER resident_phone_e164")
        conn.execute(
            """INSERT INTO anbu.resident (home, dong_code, display_name, phone)
               VALUES ('h-legacy', %s, '마', '없음')""",
            (DONG,),
        )
        conn.execute("ALTER TABLE anbu.resident ENABLE TRIGGER resident_phone_e164")
    assert caller_number(caller) is None
    assert _answer(database, "CA-anon", caller) is None
    with database.connection() as conn:
        rows = conn.execute("SELECT resident_id FROM anbu.incoming_calls").fetchall()
    assert rows == [(None,)]  # the call is kept, as an unknown caller's


def test_the_database_refuses_a_phone_that_is_not_e164(db_url: str, seeded: object) -> None:
    with psycopg.connect(db_url) as conn, pytest.raises(psycopg.errors.CheckViolation):
        conn.execute(
            """INSERT INTO anbu.resident (home, dong_code, display_name, phone)
               VALUES ('h-raw', %s, '바', '010-1234-5678')""",
            (DONG,),
        )


def test_a_legacy_unreadable_number_does_not_block_other_changes(
    database: Database, seeded: dict[str, int]
) -> None:
    """A resident enrolled before numbers were checked can still be paused, edited, sealed."""
    with database.connection() as conn:
        conn.execute("ALTER TABLE anbu.resident DISABLE TRIGGER resident_phone_e164")
        rid = conn.execute(
            """INSERT INTO anbu.resident (home, dong_code, display_name, phone)
               VALUES ('h-legacy', %s, '마', '') RETURNING id""",
            (DONG,),
        ).fetchone()[0]
        conn.execute("ALTER TABLE anbu.resident ENABLE TRIGGER resident_phone_e164")
    with database.connection() as conn:
        conn.execute(
            "UPDATE anbu.resident SET status = 'hospital', status_until = now() + interval '3 days'"
            " WHERE id = %s",
            (rid,),
        )
    with (
        database.connection() as conn,
        pytest.raises(psycopg.errors.CheckViolation, match=r"E\.164"),
    ):
        conn.execute("UPDATE anbu.resident SET phone = '010-1' WHERE id = %s", (rid,))
