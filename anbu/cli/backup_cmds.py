"""Commands of operations: backup, restore, bench backup."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from anbu.cli import app, bench_app


def _database_url(given: str | None) -> str:
    from core.config import Settings

    url = given or Settings().database_url
    if not url:
        raise typer.BadParameter("ANBU_DATABASE_URL is not set (or pass --database-url)")
    return url


@app.command()
def backup(
    out: Annotated[Path, typer.Option("--out", help="the backup file to write (pg_dump custom)")],
    database_url: Annotated[
        str | None,
        typer.Option(
            envvar="ANBU_DATABASE_URL",
            show_envvar=True,
            help="the database to back up; from the environment, its password stays off the "
            "command line",
        ),
    ] = None,
    snapshot: Annotated[
        str | None,
        typer.Option(help="an exported snapshot (pg_export_snapshot()) to dump exactly"),
    ] = None,
) -> None:
    """Back up the database while anbu runs (one consistent snapshot; nothing stops)."""
    from anbu.backup import BackupError
    from anbu.backup import backup as run

    try:
        done = run(_database_url(database_url), out, snapshot)
    except BackupError as exc:
        typer.echo(f"anbu backup: {exc}", err=True)
        raise typer.Exit(1) from None
    kind = "TimescaleDB" if done.timescaledb else "PostgreSQL"
    typer.echo(f"backup: {done.path} ({done.bytes / 1e6:.1f} MB, {kind}) in {done.seconds:.1f} s")


@app.command()
def restore(
    path: Annotated[Path, typer.Argument(help="a file written by `anbu backup`")],
    database_url: Annotated[
        str | None,
        typer.Option(
            envvar="ANBU_DATABASE_URL",
            show_envvar=True,
            help="the database to restore into (must exist); from the environment, its password "
            "stays off the command line",
        ),
    ] = None,
    force: Annotated[
        bool, typer.Option(help="drop the tables the target database already holds first")
    ] = False,
) -> None:
    """Restore a backup into an empty database (TimescaleDB's pre/post restore steps included)."""
    from anbu.backup import BackupError
    from anbu.backup import restore as run

    try:
        done = run(_database_url(database_url), path, force)
    except BackupError as exc:
        typer.echo(f"anbu restore: {exc}", err=True)
        raise typer.Exit(1) from None
    typer.echo(f"restored: {done.path} ({done.bytes / 1e6:.1f} MB) in {done.seconds:.1f} s")


@bench_app.command("backup")
def bench_backup(
    homes: Annotated[int, typer.Option(help="homes in the district")] = 200,
    days: Annotated[int, typer.Option(help="days of readings per home")] = 30,
    per_day: Annotated[int, typer.Option(help="readings per home per day")] = 400,
) -> None:
    """Back up and restore a district (homes × days of readings) on throwaway servers."""
    from anbu.bench.backup import run_bench

    for line in run_bench(homes, days, per_day):
        typer.echo(line)
