"""The `anbu` command line (typer). Heavy imports happen inside commands, not at import."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(
    help="anbu (안부): sensors, check-in calls and care-manager alerts for people who live alone.",
    no_args_is_help=True,
    add_completion=False,
)


def _logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )


@app.command()
def migrate(verbose: bool = False) -> None:
    """Apply the database migrations to ANBU_DATABASE_URL."""
    from anbu.config import Settings
    from anbu.db import migrate as run

    _logging(verbose)
    settings = Settings()
    if not settings.database_url:
        raise typer.BadParameter("ANBU_DATABASE_URL is not set")
    applied = run(settings.database_url)
    typer.echo(f"applied: {applied or 'nothing (up to date)'}")


@app.command()
def detect(
    events: Annotated[Path, typer.Option("--events", help="anbu events CSV (any number of homes)")],
    out: Annotated[
        Path, typer.Option("--out", help="where to write home,kind,severity,raised_at,reason")
    ],
    until: Annotated[
        str | None, typer.Option("--until", help="keep the clock running to this time (ISO 8601)")
    ] = None,
) -> None:
    """Run the detectors over a recorded events CSV on a virtual clock (strictly causal)."""
    from detectors.offline import run_detect

    run_detect(events, out, until)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
