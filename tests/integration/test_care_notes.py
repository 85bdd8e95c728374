"""Care notes on the resident's card (issue 21): written, listed newest first and corrected by a
new note, by the resident's own dong's care roles only; refused when empty or too long, in
Korean; append-only in the database itself (but for a key rotation's re-seal and the retention
purge); sealed, re-sealed by a key rotation, audited, every read recorded, never logged. On
the real app and PostgreSQL."""

from __future__ import annotations

import logging
import re
from datetime import timedelta

import psycopg
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from typer.testing import CliRunner

import registry
from alerts import retention
from core.crypto import Keyring, new_key
from core.db import Database
from registry import care_notes
from registry.key_rotation import key_census, rotate_keys
from tests.integration.dashboard_support import (
    DONG_A,
    OPENED_AT,
    PASSWORD_A,
    PASSWORD_B,
    Town,
    app_with_key,
    bearer,
    csrf_of,
    login_page,
    town,  # noqa: F401 - the fixture
)

KEY = new_key()
FIRST = "오전 방문: 식사 잘 하심.\n무릎 통증 호소 — 다음 주 병원 동행 필요"
SECOND = "딸(박첫째)과 통화: 주말에 방문 예정"
FIXED = "오전 방문: 식사 잘 하심.\n무릎 통증 호소 — 이번 주 금요일 병원 동행"


@pytest.fixture
def app(town: Town, database: Database, db_url: str, unique: str) -> FastAPI:  # noqa: F811
    """The town's app with a data key (notes are sealed with it)."""
    return app_with_key(database, db_url, unique, KEY)


def _client(app: FastAPI, username: str, password: str) -> TestClient:
    client = TestClient(app, base_url="http://dashboard.test")
    login_page(client, username, password)
    return client


def _post_note(
    client: TestClient, resident_id: int, body: str, kind: str = "other", corrects: int = 0
) -> tuple[int, str]:
    """The card's note form, sent as a browser does (CRLF line ends); (status, location or page)."""
    token = csrf_of(client.get("/residents").text)
    data = {"csrf_token": token, "body": body.replace("\n", "\r\n"), "kind": kind}
    if corrects:
        data["corrects"] = str(corrects)
    sent = client.post(f"/residents/{resident_id}/notes", data=data, follow_redirects=False)
    return sent.status_code, sent.headers.get("location", sent.text)


def _note_id(location: str) -> int:
    found = re.search(r"#note-(\d+)$", location)
    assert found, location
    return int(found.group(1))


def _last_card_fields(database: Database, resident_id: int) -> list[str]:
    with database.connection() as conn:
        row = conn.execute(
            """SELECT fields FROM anbu.access_log WHERE resident_id = %s AND view = 'card'
               ORDER BY id DESC LIMIT 1""",
            (resident_id,),
        ).fetchone()
    assert row is not None
    return list(row[0])


def test_notes_are_written_listed_newest_first_and_corrected_by_a_new_note(
    app: FastAPI,
    town: Town,  # noqa: F811
    database: Database,
) -> None:
    rid = town.resident_id
    client = _client(app, town.username_a, PASSWORD_A)
    empty = client.get(f"/residents/{rid}").text
    assert "아직 남긴 메모가 없습니다." in empty
    assert "care_notes" not in _last_card_fields(database, rid)  # nothing of them was shown

    status, where = _post_note(client, rid, f"  {FIRST}  ", "visit")
    assert status == 303 and where.startswith(f"/residents/{rid}#note-")
    first = _note_id(where)
    second = _note_id(_post_note(client, rid, SECOND, "call")[1])
    html = client.get(f"/residents/{rid}").text
    assert html.index(f'id="note-{second}"') < html.index(f'id="note-{first}"')  # newest first
    assert FIRST in html and SECOND in html  # trimmed, line ends as written
    assert "김복지" in html and "2026-11-22 09:30" in html  # the writer; Seoul time (00:30 UTC)
    assert ">방문<" in html and ">전화<" in html
    assert "care_notes" in _last_card_fields(database, rid)

    status, where = _post_note(client, rid, FIXED, "visit", corrects=first)
    assert status == 303
    fixed = _note_id(where)
    html = client.get(f"/residents/{rid}").text
    assert f'id="note-{first}" data-note="{first}" class="corrected"' in html
    assert f"<del>{FIRST}</del>" in html and "정정됨" in html  # kept, struck through
    assert f"#{first} 메모를 정정" in html and f'href="#note-{fixed}"' in html
    assert html.index(f'id="note-{fixed}"') < html.index(f'id="note-{first}"')

    again, page = _post_note(client, rid, "다시 고침", corrects=first)  # only the newest is fixed
    assert again == 422 and "이미 정정되었습니다" in page
    # the text kept, in the form that corrects the latest version (open), not a new note's
    latest = page[page.index(f'id="note-{fixed}"') :]
    assert "<details open>" in latest and f'name="corrects" value="{fixed}"' in latest
    assert ">다시 고침</textarea>" in latest

    english = client.get(f"/residents/{rid}?lang=en").text
    assert "Care notes" in english and "corrected" in english and f"corrects #{first}" in english

    with database.connection() as conn:
        audited = conn.execute(
            """SELECT care_manager_id, old_value, new_value, masked FROM anbu.resident_changes
                WHERE resident_id = %s AND field = 'care_note' ORDER BY id""",
            (rid,),
        ).fetchall()
        raw = conn.execute(
            "SELECT string_agg(encode(body_sealed, 'escape'), '') FROM anbu.care_note"
        ).fetchone()
    assert audited == [
        (town.manager_a, None, str(first), False),
        (town.manager_a, None, str(second), False),
        (town.manager_a, str(first), str(fixed), False),
    ]
    assert raw is not None and "무릎" not in raw[0]  # sealed at rest


def test_an_empty_or_oversized_note_is_refused_in_korean_and_the_text_kept(
    app: FastAPI,
    town: Town,  # noqa: F811
    database: Database,
) -> None:
    rid = town.resident_id
    client = _client(app, town.username_a, PASSWORD_A)
    status, page = _post_note(client, rid, "  \n\t ")
    assert status == 422 and "메모 내용을 입력해 주세요" in page
    too_long = "가" * (care_notes.NOTE_MAX_CHARS + 1)
    status, page = _post_note(client, rid, too_long)
    assert status == 422 and "2,000자까지" in page
    assert too_long in page  # the writer's text is not lost
    english = client.post(
        f"/residents/{rid}/notes?lang=en",
        data={"csrf_token": csrf_of(client.get("/residents").text), "body": " "},
    )
    assert english.status_code == 422 and "Write the note first" in english.text
    with database.connection() as conn:
        assert conn.execute("SELECT count(*) FROM anbu.care_note").fetchone() == (0,)
    longest = "\n".join(["가" * 99] * 20)  # 2,000 characters with its line ends (CRLF sent)
    assert _post_note(client, rid, longest)[0] == 303

    headers = bearer(client, town.username_a, PASSWORD_A)
    refused = client.post(f"/api/v1/residents/{rid}/notes", json={"body": ""}, headers=headers)
    assert refused.status_code == 422
    assert refused.json()["code"] == "note_empty"
    assert refused.json()["detail"].startswith("메모 내용을 입력해 주세요")
    oversized = client.post(
        f"/api/v1/residents/{rid}/notes", json={"body": too_long}, headers=headers
    )
    assert (oversized.status_code, oversized.json()["code"]) == (422, "note_too_long")
    odd = client.post(
        f"/api/v1/residents/{rid}/notes", json={"body": "메모", "kind": "gossip"}, headers=headers
    )
    assert odd.status_code == 422


def test_only_the_residents_own_dongs_care_roles_read_and_write_notes(
    app: FastAPI,
    town: Town,  # noqa: F811
    database: Database,
) -> None:
    rid = town.resident_id
    with database.connection() as conn:
        care_notes.add_note(
            conn, rid, [DONG_A], town.manager_a, FIRST, "visit", Keyring.of(KEY), OPENED_AT
        )
        registry.add_care_manager(
            conn, "sup-notes", DONG_A, "최감독", "+821000000009", PASSWORD_A, role="supervisor"
        )
        reads = conn.execute("SELECT count(*) FROM anbu.access_log").fetchone()
    other = _client(app, town.username_b, PASSWORD_B)
    page = other.get(f"/residents/{rid}")
    assert page.status_code == 404 and "무릎" not in page.text
    status, _ = _post_note(other, rid, "다른 동의 메모")
    assert status == 404
    api = bearer(other, town.username_b, PASSWORD_B)
    listed = other.get(f"/api/v1/residents/{rid}/notes", headers=api)
    assert listed.status_code == 404 and "무릎" not in listed.text
    written = other.post(f"/api/v1/residents/{rid}/notes", json={"body": "메모"}, headers=api)
    assert written.status_code == 404

    supervisor = _client(app, "sup-notes", PASSWORD_A)
    card = supervisor.get(f"/residents/{rid}")
    assert card.status_code == 200 and "김순자" in card.text  # the card itself
    assert "무릎" not in card.text and 'id="notes"' not in card.text
    assert "행정동의 담당자만 볼 수 있습니다" in card.text  # said, not silently absent
    assert "care_notes" not in _last_card_fields(database, rid)
    status, page = _post_note(supervisor, rid, "감독 메모")
    assert status == 403 and "행정동의 담당자(생활지원사·전담사회복지사)만" in page
    api = bearer(supervisor, "sup-notes", PASSWORD_A)
    assert supervisor.get(f"/api/v1/residents/{rid}/notes", headers=api).status_code == 403
    with database.connection() as conn:
        assert conn.execute("SELECT count(*) FROM anbu.care_note").fetchone() == (1,)
        # the supervisor's card read only: no read by the other dong, no read of the notes
        assert conn.execute("SELECT count(*) FROM anbu.access_log").fetchone() == (
            reads[0] + 1 if reads else 1,
        )


def test_the_api_pages_notes_writes_corrections_and_records_each_read(
    app: FastAPI,
    town: Town,  # noqa: F811
    database: Database,
) -> None:
    rid = town.resident_id
    client = TestClient(app, base_url="http://dashboard.test")
    headers = bearer(client, town.username_a, PASSWORD_A)
    ids = []
    for body, kind in ((FIRST, "visit"), (SECOND, "call"), ("전화 안 받으심", "call")):
        made = client.post(
            f"/api/v1/residents/{rid}/notes", json={"body": body, "kind": kind}, headers=headers
        )
        assert made.status_code == 201, made.text
        assert (made.json()["body"], made.json()["writer_name"]) == (body, "김복지")
        assert made.json()["written_local"] == "2026-11-22 09:30"
        ids.append(made.json()["id"])
    page = client.get(f"/api/v1/residents/{rid}/notes?limit=2", headers=headers).json()
    assert [n["id"] for n in page["data"]] == [ids[2], ids[1]] and page["has_more"]
    rest = client.get(
        f"/api/v1/residents/{rid}/notes?limit=2&cursor={page['next_cursor']}", headers=headers
    ).json()
    assert [n["id"] for n in rest["data"]] == [ids[0]] and not rest["has_more"]
    assert rest["next_cursor"] is None

    fix = client.post(
        f"/api/v1/residents/{rid}/notes", json={"body": FIXED, "corrects": ids[0]}, headers=headers
    )
    assert fix.status_code == 201 and fix.json()["corrects"] == ids[0]
    twice = client.post(
        f"/api/v1/residents/{rid}/notes", json={"body": FIXED, "corrects": ids[0]}, headers=headers
    )
    assert (twice.status_code, twice.json()["code"]) == (409, "note_corrected")
    with database.connection() as conn:
        other = registry.add_resident(conn, "home-other-a", DONG_A, "이웃", "+821099990001")
    stranger = client.post(
        f"/api/v1/residents/{other}/notes", json={"body": "x", "corrects": ids[1]}, headers=headers
    )
    assert stranger.status_code == 404  # a note of another resident is never corrected
    listed = client.get(f"/api/v1/residents/{rid}/notes", headers=headers).json()["data"]
    corrected = next(n for n in listed if n["id"] == ids[0])
    assert corrected["corrected_by"] == fix.json()["id"] and corrected["body"] == FIRST
    with database.connection() as conn:
        rows = conn.execute(
            """SELECT care_manager_id, view, fields FROM anbu.access_log
                WHERE resident_id = %s ORDER BY id""",
            (rid,),
        ).fetchall()
    assert rows == [(town.manager_a, "notes", ["care_notes"])] * 3


def test_a_note_sent_twice_is_written_once(
    app: FastAPI,
    town: Town,  # noqa: F811
    database: Database,
) -> None:
    """A double click on the card's form, an API client's retry with the same Idempotency-Key:
    one note, one audit row; the key is its writer's, for one resident."""
    rid = town.resident_id
    client = _client(app, town.username_a, PASSWORD_A)
    card = client.get(f"/residents/{rid}").text
    token = re.search(r'name="note_token" value="([^"]+)"', card)
    assert token
    data = {"csrf_token": csrf_of(card), "body": FIRST, "kind": "visit",
            "note_token": token.group(1)}  # fmt: skip
    sent = [
        client.post(f"/residents/{rid}/notes", data=data, follow_redirects=False) for _ in range(2)
    ]
    assert [r.status_code for r in sent] == [303, 303]
    assert sent[0].headers["location"] == sent[1].headers["location"]
    assert token.group(1) not in client.get(f"/residents/{rid}").text  # each form its own

    headers = {**bearer(client, town.username_a, PASSWORD_A), "Idempotency-Key": "retry-1"}
    url = f"/api/v1/residents/{rid}/notes"
    first, again = (client.post(url, json={"body": SECOND}, headers=headers) for _ in range(2))
    assert (first.status_code, again.status_code) == (201, 201)
    assert first.json() == again.json()
    with database.connection() as conn:
        other = registry.add_resident(conn, "home-other-b", DONG_A, "이웃", "+821099990002")
        counted = conn.execute(
            """SELECT (SELECT count(*) FROM anbu.care_note WHERE resident_id = %(r)s),
                      (SELECT count(*) FROM anbu.resident_changes
                        WHERE resident_id = %(r)s AND field = 'care_note')""",
            {"r": rid},
        ).fetchone()
    assert counted == (2, 2)
    elsewhere = client.post(
        f"/api/v1/residents/{other}/notes", json={"body": SECOND}, headers=headers
    )
    assert (elsewhere.status_code, elsewhere.json()["code"]) == (422, "idempotency_key_reused")


def test_the_database_refuses_changing_or_removing_a_note_but_for_rotation_and_purge(
    town: Town,  # noqa: F811
    database: Database,
    db_url: str,
) -> None:
    rid = town.resident_id
    ring = Keyring.of(KEY)
    with database.connection() as conn:
        note = care_notes.add_note(conn, rid, [DONG_A], town.manager_a, FIRST, "visit", ring,
                                   OPENED_AT)  # fmt: skip
    refused = (
        "UPDATE anbu.care_note SET kind = 'call' WHERE id = %s",
        "UPDATE anbu.care_note SET body_sealed = body_sealed || 'x'::bytea WHERE id = %s",
        "UPDATE anbu.care_note SET body_sealed = NULL, sealed_key_id = NULL WHERE id = %s",
        "UPDATE anbu.care_note SET written_at = written_at - interval '1 day' WHERE id = %s",
        "DELETE FROM anbu.care_note WHERE id = %s",
    )
    with psycopg.connect(db_url, autocommit=True) as conn:
        for statement in refused:
            with pytest.raises(psycopg.errors.InsufficientPrivilege, match="append-only"):
                conn.execute(statement, (note,))
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("TRUNCATE anbu.care_note CASCADE")
        # a served resident marked pseudonymised by hand: the bodies still cannot be emptied
        conn.execute("UPDATE anbu.resident SET pseudonymised_at = now() WHERE id = %s", (rid,))
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="append-only"):
            conn.execute(refused[2], (note,))
        conn.execute("UPDATE anbu.resident SET pseudonymised_at = NULL WHERE id = %s", (rid,))
    with database.connection() as conn:
        assert care_notes.get_note(conn, rid, note, ring).body == FIRST
        other = care_notes.add_note(conn, rid, [DONG_A], town.manager_a, "다른 메모", "call",
                                    ring, OPENED_AT)  # fmt: skip
    with psycopg.connect(db_url, autocommit=True) as conn:
        # a body copied onto another note of the same resident, in the two steps the
        # re-seal's exception lets through, does not open there
        conn.execute(
            """UPDATE anbu.care_note SET sealed_key_id = 'swap',
                      body_sealed = (SELECT body_sealed FROM anbu.care_note WHERE id = %s)
                WHERE id = %s""",
            (note, other),
        )
        conn.execute(
            "UPDATE anbu.care_note SET sealed_key_id = %s WHERE id = %s", (ring.current_id, other)
        )
    with database.connection() as conn:
        copied = care_notes.get_note(conn, rid, other, ring)
        assert (copied.body, copied.unopened) == (None, True)

    with database.connection() as conn:  # the retention purge empties the body, keeps the row
        conn.execute("UPDATE anbu.resident SET status = 'ended' WHERE id = %s", (rid,))
        retention.pseudonymise(conn, [rid], OPENED_AT + timedelta(days=1825))
    with database.connection() as conn:
        kept = care_notes.get_note(conn, rid, note, ring)
        assert (kept.body, kept.unopened, kept.kind, kept.written_by) == (
            None, False, "visit", town.manager_a
        )  # fmt: skip


def test_a_key_rotation_reseals_every_note_and_the_census_counts_them(
    town: Town,  # noqa: F811
    database: Database,
    db_url: str,
) -> None:
    rid = town.resident_id
    old = Keyring.of(KEY)
    with database.connection() as conn:
        ids = [
            care_notes.add_note(conn, rid, [DONG_A], town.manager_a, body, "other", old, OPENED_AT)
            for body in (FIRST, SECOND, FIXED)
        ]
        assert key_census(conn).by_key == {old.current_id: 3}
    second = new_key()
    ring = Keyring.of(second, [KEY])
    with psycopg.connect(db_url, autocommit=True) as conn:
        assert rotate_keys(conn, ring, batch=2) == 3
        assert rotate_keys(conn, ring) == 0  # a rerun changes nothing
    only_new = Keyring.of(second)  # the old key can go now
    with database.connection() as conn:
        assert key_census(conn).by_key == {only_new.current_id: 3}
        bodies = [care_notes.get_note(conn, rid, i, only_new).body for i in ids]
    assert bodies == [FIRST, SECOND, FIXED]
    # the command line counts and re-seals them too
    third = new_key()
    env = {"ANBU_DATABASE_URL": db_url, "ANBU_DATA_KEY": third, "ANBU_DATA_KEYS_OLD": second}
    from anbu.cli import app, keys_cmds  # noqa: F401

    before = CliRunner().invoke(app, ["keys", "status"], env=env)
    assert f"{only_new.current_id}  3  이전 키 / old" in before.output
    result = CliRunner().invoke(app, ["keys", "rotate"], env=env)
    assert result.exit_code == 0, result.output
    assert "re-sealed: 3" in result.output
    with database.connection() as conn:
        assert key_census(conn).by_key == {Keyring.of(third).current_id: 3}


def test_no_note_body_reaches_the_logs(
    app: FastAPI,
    town: Town,  # noqa: F811
    database: Database,
    db_url: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    rid = town.resident_id
    caplog.set_level(logging.DEBUG)
    client = _client(app, town.username_a, PASSWORD_A)
    first = _note_id(_post_note(client, rid, FIRST, "visit")[1])
    _post_note(client, rid, FIXED, corrects=first)
    _post_note(client, rid, "가" * (care_notes.NOTE_MAX_CHARS + 1))  # refused
    client.get(f"/residents/{rid}")
    headers = bearer(client, town.username_a, PASSWORD_A)
    client.post(f"/api/v1/residents/{rid}/notes", json={"body": SECOND}, headers=headers)
    client.get(f"/api/v1/residents/{rid}/notes", headers=headers)
    with psycopg.connect(db_url, autocommit=True) as conn:
        rotate_keys(conn, Keyring.of(new_key(), [KEY]))
    assert any(r.getMessage() == "care note written" for r in caplog.records)
    for record in caplog.records:
        logged = record.getMessage() + " " + " ".join(map(str, record.__dict__.values()))
        for secret in ("무릎", "식사 잘 하심", "주말에 방문", "가" * 50):
            assert secret not in logged, f"a note body in the logs: {record.name}"
