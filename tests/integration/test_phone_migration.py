"""0054 converts every resident phone written in a format registry.phones accepts to the same
E.164 number (+82 10-1234-5678, 82-10-..., +82 (0)10 ..., 0082 ..., a dropped leading 0), and
leaves what it refuses as it was: the migration's own SQL, on the real database."""

from __future__ import annotations

import re
from pathlib import Path

import psycopg
import pytest

import registry
from registry.phones import InvalidPhone, parse_phone

MIGRATION = next((Path(__file__).resolve().parents[2] / "core" / "migrations").glob("0054_*.sql"))
ACCEPTED = [
    "010-1234-5678", "010 1234 5678", "01012345678", "(02) 123-4567", "02.123.4567",
    "+82 10-1234-5678", "+82 (0)10 1234 5678", "82-10-1234-5678", "+821012345678",
    "0082 10 1234 5678", "1012345678", "031-123-4567", "070-1234-5678", "011-123-4567",
    "+82 2 1234 5678", "82 (0)2 1234 5678", " 010-1234-5678 ", "010/1234/5678",
]  # fmt: skip
REFUSED = ["+1 212 555 0100", "999-1234-5678", "010-0123-4567", "010-123", "전화없음", "", "x"]


def _sql_e164(conn: psycopg.Connection[object], raw: str) -> str | None:
    row = conn.execute("SELECT anbu.korean_phone_e164(%s)", (raw,)).fetchone()
    assert row is not None
    return None if row[0] is None else str(row[0])


def _python_e164(raw: str) -> str | None:
    try:
        return parse_phone(raw).e164
    except InvalidPhone:
        return None


@pytest.mark.parametrize("raw", ACCEPTED + REFUSED)
def test_the_migrations_conversion_agrees_with_registry_phones(db_url: str, raw: str) -> None:
    with psycopg.connect(db_url) as conn:
        assert _sql_e164(conn, raw) == _python_e164(raw)


def test_the_migrations_update_converts_every_accepted_format(db_url: str) -> None:
    [update] = re.findall(r"^UPDATE anbu\.resident\b.*?;", MIGRATION.read_text(), re.M | re.S)
    with psycopg.connect(db_url) as conn:
        registry.add_dong(conn, "1111051500", "청운효자동", "종로구")
        conn.execute("SET session_replication_role = replica")  # as written before 0054's trigger
        for n, raw in enumerate([*ACCEPTED, "999-1234-5678"]):
            conn.execute(
                """INSERT INTO anbu.resident (home, dong_code, display_name, phone)
                   VALUES (%s, '1111051500', '주민', %s)""",
                (f"home-{n}", raw),
            )
        conn.execute("SET session_replication_role = DEFAULT")
        conn.execute(update.encode())
        phones = [r[0] for r in conn.execute("SELECT phone FROM anbu.resident ORDER BY id")]
    assert phones == [parse_phone(raw).e164 for raw in ACCEPTED] + ["999-1234-5678"]
