"""Commands of detectors: nightly learning on demand, hourly summaries, bench sweep."""

from __future__ import annotations

from typing import Annotated

import typer

from anbu.cli import app, bench_app


@app.command("learn")
def learn_cmd() -> None:
    """Learn every home's routine now from ANBU_DATABASE_URL (what the nightly job does)."""
    from datetime import UTC, datetime

    from core.config import Settings
    from core.db import Database
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


@app.command("summarize")
def summarize_cmd(
    since: Annotated[
        str, typer.Option(help="rebuild hours with readings timed from this ISO time (with offset)")
    ],
    until: Annotated[
        str | None, typer.Option(help="... up to this ISO time (default: now)")
    ] = None,
) -> None:
    """Rebuild anbu.activity_hourly for a span of reading time (the worker keeps it current)."""
    from datetime import UTC, datetime

    from core.config import Settings
    from core.db import Database
    from detectors.summaries import rebuild

    settings = Settings()
    if not settings.database_url:
        raise typer.BadParameter("ANBU_DATABASE_URL is not set")
    lo = datetime.fromisoformat(since)
    hi = datetime.fromisoformat(until) if until else datetime.now(UTC)
    if lo.tzinfo is None or hi.tzinfo is None:
        raise typer.BadParameter("give times with an offset, e.g. 2026-11-24T00:00+09:00")
    db = Database(settings.database_url)
    db.open()
    try:
        with db.connection() as conn:
            typer.echo(f"summarised: {rebuild(conn, lo, hi)} home-hours")
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


@bench_app.command("summaries")
def bench_summaries(
    homes: Annotated[int, typer.Option(help="homes reporting for two hours")] = 10_000,
) -> None:
    """The worker's hourly activity pass beside a bare GROUP BY of the same readings."""
    from anbu.bench.summaries import run

    run(homes)
