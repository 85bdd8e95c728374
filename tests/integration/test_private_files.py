"""Files anbu writes that hold residents' data are its owner's alone: the backup (`anbu backup`)
and a residents export (`anbu export residents --out`), whatever the umask, never through a
link someone planted in a shared folder."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from typer.testing import CliRunner

import registry
from anbu.backup import backup


@pytest.fixture
def umask_022() -> Iterator[None]:
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


def test_a_backup_is_the_owners_alone_and_follows_no_planted_link(
    db_url: str, tmp_path: Path, umask_022: None
) -> None:
    out = tmp_path / "shared" / "anbu.dump"
    out.parent.mkdir()
    victim = tmp_path / "victim.txt"
    victim.write_text("not yours")
    planted = out.with_name(out.name + ".partial")  # the side file's old, predictable name
    planted.symlink_to(victim)
    done = backup(db_url, out)
    assert done.bytes > 0 and out.read_bytes()[:5] == b"PGDMP"
    assert mode(out) == 0o600
    assert victim.read_text() == "not yours" and planted.is_symlink()
    assert sorted(p.name for p in out.parent.iterdir()) == [out.name, planted.name]


def test_a_failed_backup_leaves_no_file(db_url: str, tmp_path: Path) -> None:
    out = tmp_path / "anbu.dump"
    with pytest.raises(Exception, match="pg_dump failed"):
        backup(db_url, out, snapshot="00000000-00000000-1")  # no such snapshot
    assert list(tmp_path.iterdir()) == []


def test_the_command_line_takes_the_database_from_the_environment(
    db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, umask_022: None
) -> None:
    from anbu.cli import app, backup_cmds  # noqa: F401

    monkeypatch.setenv("ANBU_DATABASE_URL", db_url)
    out = tmp_path / "cli.dump"
    result = CliRunner().invoke(app, ["backup", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert mode(out) == 0o600
    assert "ANBU_DATABASE_URL" in CliRunner().invoke(app, ["backup", "--help"]).output


def test_a_residents_export_is_the_owners_alone(
    db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, umask_022: None
) -> None:
    from anbu.cli import app, registry_cmds  # noqa: F401

    with psycopg.connect(db_url) as conn:
        registry.add_dong(conn, "1111051500", "청운효자동", "종로구")
    monkeypatch.setenv("ANBU_DATABASE_URL", db_url)
    out = tmp_path / "residents.csv"
    result = CliRunner().invoke(app, ["export", "residents", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert mode(out) == 0o600
    out.chmod(0o644)  # an existing file is narrowed too
    result = CliRunner().invoke(app, ["export", "residents", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert mode(out) == 0o600
