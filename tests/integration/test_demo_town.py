"""The demo town is enrolled as a district enrols: from the file kept in the repository, through
`import_residents`. The file passes a dry run with no problem at all (also from the command
line, and with generated rows beyond it), its numbers cannot ring anyone, and after `anbu demo`
has enrolled its town every resident in the database carries a case number of that file, was
created by the import (its audit says so) and has the home's gateway and sensors."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
import pytest
from typer.testing import CliRunner

import registry
from registry.residents_csv import Dongs, ResidentRow, parse_file
from registry.residents_import import import_residents
from simulators.town import DONGS
from simulators.town_enrolment import ACTOR, TOWN_FILE, homes_of_file, town_file

NOW = datetime.now(UTC)
FILE_ROWS = 12
DEMO_HOMES = FILE_ROWS + 3  # beyond the file: generated rows go through the same import


@pytest.fixture
def conn(db_url: str) -> Iterator[psycopg.Connection[Any]]:
    with psycopg.connect(db_url) as c:
        for code, (name, district) in DONGS.items():
            registry.add_dong(c, code, name, district)
        c.commit()
        yield c


def _rows(data: bytes) -> tuple[ResidentRow, ...]:
    dongs = Dongs.of((code, name) for code, (name, _) in DONGS.items())
    parsed = parse_file(data, dongs, NOW.date())
    assert not parsed.errors
    return parsed.rows


def _unreachable(e164: str) -> bool:
    """010 with middle digits 0000-1999: a block never given to a carrier."""
    return e164.startswith("+8210") and len(e164) == 13 and e164[5] in "01"


def test_the_town_file_passes_a_dry_run_with_no_problem(conn: psycopg.Connection[Any]) -> None:
    data = TOWN_FILE.read_bytes()
    report = import_residents(conn, data, actor="test", dry_run=True, now=NOW)
    assert report.errors == () and report.warnings == ()
    assert (report.rows, report.created, report.updated) == (FILE_ROWS, FILE_ROWS, 0)
    assert not report.written
    assert conn.execute("SELECT count(*) FROM anbu.resident").fetchone() == (0,)
    rows = _rows(data)
    assert {r.dong_code for r in rows} == set(list(DONGS)[:2])  # the demo's two dongs
    assert all(r.consent_date and r.consent_sensors and r.emergency_contacts for r in rows)
    phones = [r.mobile_phone for r in rows] + [c.phone for r in rows for c in r.emergency_contacts]
    assert all(p is not None and _unreachable(p) for p in phones), phones


def test_rows_beyond_the_file_are_generated_in_its_format(conn: psycopg.Connection[Any]) -> None:
    data = town_file(40)
    assert data == town_file(40)  # deterministic
    assert data.startswith(town_file(FILE_ROWS)) and town_file(3) != town_file(4)
    report = import_residents(conn, data, actor="test", dry_run=True, now=NOW)
    assert report.errors == () and report.warnings == ()
    assert (report.rows, report.created) == (40, 40)
    rows = _rows(data)
    assert len({r.external_id for r in rows}) == len({r.home for r in rows}) == 40
    assert all(_unreachable(r.mobile_phone or "") for r in rows)
    dongs = [r.dong_code for r in rows]
    assert dongs[FILE_ROWS:] == dongs[: 40 - FILE_ROWS]  # the same alternation as the file
    with pytest.raises(ValueError, match="집 수"):
        town_file(0)


def test_anbu_import_dry_run_reads_the_town_file(
    conn: psycopg.Connection[Any], db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from anbu.cli import app, registry_cmds  # noqa: F401  # registers `import residents`

    monkeypatch.setenv("ANBU_DATABASE_URL", db_url)
    result = CliRunner().invoke(app, ["import", "residents", str(TOWN_FILE), "--dry-run"])
    assert result.exit_code == 0, result.output
    assert "생성 12 · 수정 0 · 변경 없음 0" in result.output
    assert "잘못된" not in result.output and "시험 실행" in result.output


def test_the_demo_enrols_its_town_only_through_the_import(db_url: str, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANBU_")}
    env |= {"ANBU_DATABASE_URL": db_url, "TMPDIR": str(tmp_path)}
    done = subprocess.run(
        [sys.executable, "-m", "anbu.cli", "demo", "--duration", "2", "--speed", "2000",
         "--homes", str(DEMO_HOMES), "--port", "0", "--broker", "inproc"],
        capture_output=True, text=True, env=env, timeout=240, check=False,
    )  # fmt: skip
    out = done.stdout + done.stderr
    assert "History:" in out and "Traceback" not in out, out[-4000:]
    data = town_file(DEMO_HOMES)
    rows = {r.external_id: r for r in _rows(data)}
    specs = {h.home: h for h in homes_of_file(data, 7, DONGS, NOW.date())}
    with psycopg.connect(db_url) as conn:
        residents = conn.execute(
            """SELECT r.external_id, r.home, r.display_name, r.phone, r.address,
                      (SELECT count(*) FROM anbu.emergency_contact c WHERE c.resident_id = r.id),
                      (SELECT array_agg(DISTINCT ch.actor) FROM anbu.resident_changes ch
                        WHERE ch.resident_id = r.id AND ch.field = 'enrolled')
                 FROM anbu.resident r"""
        ).fetchall()
        devices: dict[str, list[str]] = dict(
            conn.execute(
                """SELECT g.id, array_agg(s.vendor_id ORDER BY s.vendor_id) FROM anbu.gateway g
                     JOIN anbu.sensor s ON s.gateway_id = g.id GROUP BY g.id"""
            ).fetchall()
        )
    assert len(residents) == DEMO_HOMES
    for external_id, home, name, phone, address, contacts, enrolled_by in residents:
        row = rows.get(external_id)
        assert row is not None, f"resident of home {home} has no case number of the file"
        assert (home, name, phone, address) == (
            row.home, row.display_name, row.mobile_phone, row.address
        )  # fmt: skip
        assert contacts == len(row.emergency_contacts) > 0
        assert enrolled_by == [ACTOR]  # created by the import, which audits every creation
    assert devices == {h.gateway_id: sorted(s.vendor_id for s in h.sensors) for h in specs.values()}
