"""Commands of detectors: nightly learning on demand, bench sweep."""

from __future__ import annotations

from typing import Annotated

import typer

from anbu.cli import app, bench_app


@app.command("learn")
def learn_cmd() -> None:
    """Learn every home's routine now from ANBU_DATABASE_URL (what the nightly job does)."""
    from datetime import UTC, datetime

    from anbu.config import Settings
    from anbu.db import Database
    from detectors.nightly import learn_all

    settings = Settings()
    if not settings.database_url:
        raise typer.BadParameter("ANBU_DATABASE_URL is not set")
    db = Database(settings.database_url)
    db.open()
    try:
        typer.echo(f"learned: {learn_all(db, datetime.now(UTC))} homes")
    finally:
        db.close()


@bench_app.command("sweep")
def bench_sweep(
    homes: Annotated[int, typer.Option(help="homes scored by the numpy sweep")] = 1_000_000,
    loop_homes: Annotated[int, typer.Option(help="homes scored by the Python loop")] = 100_000,
    db_homes: Annotated[
        int, typer.Option(help="homes read from a throwaway PostgreSQL (0: skip)")
    ] = 100_000,
) -> None:
    """The live sweep's scoring over N homes, numpy beside a per-home Python loop."""
    from anbu.bench.sweep import main

    main(homes, loop_homes, db_homes)
