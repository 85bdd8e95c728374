"""The `anbu` command line (typer). Heavy imports happen inside commands, not at import."""

from __future__ import annotations

import logging
import signal
from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(
    help="anbu (안부): sensors, check-in calls and care-manager alerts for people who live alone.",
    no_args_is_help=True,
    add_completion=False,
)


def open_database() -> object:
    """A small pool on ANBU_DATABASE_URL for the commands that read or write the registry."""
    from core.config import Settings
    from core.db import Database

    settings = Settings()
    if not settings.database_url:
        raise typer.BadParameter("ANBU_DATABASE_URL is not set")
    db = Database(settings.database_url, 1, 2)
    db.open()
    return db


def _logging(verbose: bool) -> None:
    from core import logs

    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, format=logs.FORMAT)
    logs.install()  # each line names the web request it was written for (X-Request-ID)
    # twilio's client logs request URLs and headers at INFO; keep it to warnings
    logging.getLogger("twilio.http_client").setLevel(logging.WARNING)


@app.command()
def migrate(verbose: bool = False) -> None:
    """Apply the database migrations to ANBU_DATABASE_URL."""
    from core.config import Settings
    from core.db import migrate as run

    _logging(verbose)
    settings = Settings()
    if not settings.database_url:
        raise typer.BadParameter("ANBU_DATABASE_URL is not set")
    applied = run(settings.database_url)
    typer.echo(f"applied: {applied or 'nothing (up to date)'}")
    import psycopg

    from core.db import storage_mode

    with psycopg.connect(settings.database_url) as conn:
        typer.echo(f"storage: {storage_mode(conn)}")


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


@app.command()
def serve(
    role: Annotated[str, typer.Argument(help="ingest | worker | web | all")],
    verbose: bool = False,
) -> None:
    """Run one role of anbu against ANBU_DATABASE_URL and the broker (production entry point)."""
    import signal
    import threading

    from anbu.service import build
    from core.config import Settings

    if role not in ("ingest", "worker", "web", "all"):
        raise typer.BadParameter("role must be ingest, worker, web or all")
    _logging(verbose)
    settings = Settings()
    roles = ("web", "ingest") if role == "all" else (role,)
    unsafe = settings.unsafe_secrets(roles)
    if "web" in roles:  # /metrics tells per dong how many homes are silent or away
        unsafe += settings.metrics_exposure()
    if unsafe:
        typer.echo(f"anbu serve {role}: refusing to start with unsafe secrets:", err=True)
        for why in unsafe:
            typer.echo(f"  {why}", err=True)
        typer.echo(
            "Set each to a new random value, e.g. "
            "python3 -c 'import secrets; print(secrets.token_hex(32))' "
            "(ANBU_TWILIO_AUTH_TOKEN is your Twilio account's auth token; ANBU_MQTT_PASSWORD "
            "the broker's password for the ingest user).",
            err=True,
        )
        raise typer.Exit(2)
    # SIGTERM (systemd, docker, kubernetes) and SIGINT (Ctrl-C) only set a flag: nothing is
    # cut short mid-transaction, and a second one cannot interrupt the stop below. Ingest then
    # finishes the batch in hand and acknowledges only what committed (the rest stays with the
    # broker); the worker lets running jobs end (calls keep their rows); the web server closes.
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    runtime = build(settings)
    try:
        for name, start in (
            ("ingest", runtime.start_ingest),
            ("worker", runtime.start_worker),
            ("web", runtime.start_web),
        ):
            if role in (name, "all") and not stop.is_set():
                start()
        while not stop.wait(0.5):
            pass
    finally:
        runtime.stop()


@app.command()
def demo(
    duration: Annotated[
        float | None, typer.Option(help="stop after this many real seconds and check the scenario")
    ] = None,
    speed: Annotated[float, typer.Option(help="virtual seconds per real second")] = 720.0,
    homes: Annotated[int, typer.Option(help="simulated homes in the town")] = 6,
    port: Annotated[int, typer.Option(help="dashboard port (0 = any free port)")] = 8000,
    seed: int = 7,
    stop_when_done: Annotated[
        bool, typer.Option(help="exit as soon as the scenario reached the care manager")
    ] = False,
    broker: Annotated[
        str, typer.Option(help="auto (Mosquitto when installed) | mosquitto | inproc")
    ] = "auto",
    verbose: bool = False,
) -> None:
    """A simulated town end to end on embedded defaults; prints what happens as it happens."""
    from anbu.demo import run_demo

    _logging(verbose)
    if not verbose:
        logging.getLogger().setLevel(logging.WARNING)
    ok = run_demo(
        duration=duration,
        speed=speed,
        homes=homes,
        port=port,
        seed=seed,
        stop_when_done=stop_when_done,
        broker_kind=broker,
    )
    raise typer.Exit(0 if ok else 1)


@app.command("settings")
def settings_cmd() -> None:
    """Print every ANBU_* setting with its default, as a Markdown table."""
    from anbu.settings_doc import settings_table

    typer.echo(settings_table())


bench_app = typer.Typer(
    help="Benchmarks: each prints its figures beside a baseline measured in the same run.",
    no_args_is_help=True,
)
app.add_typer(bench_app, name="bench")


@bench_app.callback()
def _benches() -> None:
    """A bench stopped with SIGTERM (a timeout, CI, a tester's kill) leaves through its finally
    blocks: the throwaway PostgreSQL and Mosquitto it started are stopped, not left running."""
    signal.signal(signal.SIGTERM, _leave)


def _leave(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


def main() -> None:
    # each capability registers its own commands on `app` / `bench_app`
    from anbu.cli import (  # noqa: F401
        backup_cmds,
        calls_cmds,
        course_cmds,
        detectors_cmds,
        devices_cmds,
        gateways_cmds,
        health_cmds,
        ingest_cmds,
        keys_cmds,
        registry_cmds,
        urgent_cmds,
    )

    app()


if __name__ == "__main__":
    main()
