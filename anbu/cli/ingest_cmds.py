"""Commands of ingest: dead letters, replay, loadgen, bench ingest, bench storage."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Annotated

import typer

from anbu.cli import app, bench_app, open_database

deadletters_app = typer.Typer(help="Refused messages: list them, replay them after a fix.")
app.add_typer(deadletters_app, name="deadletters")


@deadletters_app.callback(invoke_without_command=True)
def deadletters(
    ctx: typer.Context,
    since: Annotated[str | None, typer.Option(help="ISO 8601; only letters received since")] = None,
    all_: Annotated[bool, typer.Option("--all", help="include replayed letters")] = False,
    limit: int = 50,
) -> None:
    """List dead letters, newest first."""
    if ctx.invoked_subcommand is not None:
        return
    from ingest.deadletters import list_dead_letters

    db = open_database()
    when = datetime.fromisoformat(since) if since else None
    for d in list_dead_letters(db, since=when, include_replayed=all_, limit=limit):  # type: ignore[arg-type]
        mark = f" replayed {d.replayed_at:%Y-%m-%d %H:%M}" if d.replayed_at else ""
        typer.echo(f"{d.id:>8} {d.received_at:%Y-%m-%d %H:%M:%S} {d.topic}  {d.reason}{mark}")
    db.close()  # type: ignore[attr-defined]


@deadletters_app.command("replay")
def deadletters_replay(
    id_: Annotated[list[int] | None, typer.Option("--id", help="replay these letters")] = None,
    since: Annotated[str | None, typer.Option(help="ISO 8601; letters received since")] = None,
) -> None:
    """Replay dead letters not yet replayed through today's registry (all, --id or --since)."""
    from core.clock import SystemClock
    from core.config import Settings
    from ingest.deadletters import replay_dead_letters
    from ingest.store import Store

    db = open_database()
    store = Store(db, future_tolerance_s=Settings().future_tolerance_s)  # type: ignore[arg-type]
    when = datetime.fromisoformat(since) if since else None
    result = replay_dead_letters(db, store, SystemClock().now(), ids=id_, since=when)  # type: ignore[arg-type]
    typer.echo(f"replayed {result.replayed}; still refused {result.still_dead}")
    db.close()  # type: ignore[attr-defined]


@deadletters_app.command("expire")
def deadletters_expire() -> None:
    """Delete dead letters and their hourly counts older than ANBU_DEAD_LETTER_RETENTION_DAYS."""
    from core.clock import SystemClock
    from core.config import Settings
    from ingest.dead_letter_limits import dead_letter_limits, expire_dead_letters

    db = open_database()
    done = expire_dead_letters(db, SystemClock().now(), dead_letter_limits(Settings()))  # type: ignore[arg-type]
    typer.echo(f"expired {done.letters} dead letters and {done.budgets} hourly counts")
    db.close()  # type: ignore[attr-defined]


@bench_app.command("ingest")
def bench_ingest(
    messages: Annotated[int, typer.Option(help="single-reading messages")] = 100_000,
    batched: Annotated[int, typer.Option(help="batched messages (100 readings each)")] = 8_000,
    kill: Annotated[int, typer.Option(help="messages in the kill -9 run (0 = skip)")] = 50_000,
    fsync: Annotated[bool, typer.Option(help="durable PostgreSQL")] = True,
) -> None:
    """Bare subscriber vs real ingest (ack after commit) on embedded Mosquitto and PostgreSQL."""
    from anbu.bench.ingest import run_bench

    typer.echo(run_bench(n=messages, batched=batched, kill_n=kill, durable=fsync, echo=typer.echo))


@bench_app.command("ingest-scale")
def bench_ingest_scale(
    batched: Annotated[
        int, typer.Option(help="batched messages (100 readings each) a run")
    ] = 8_000,
    homes: Annotated[int, typer.Option(help="gateways publishing")] = 100,
) -> None:
    """The batched stream stored by one ingest worker, then by two (each its own share)."""
    from anbu.bench.ingest_scale import run_scale

    typer.echo(run_scale(batched=batched, homes=homes, echo=typer.echo))


@bench_app.command("province")
def bench_province(
    gateways: Annotated[int, typer.Option(help="gateways, each its own connection")] = 30_000,
    steady: Annotated[float, typer.Option(help="seconds at the morning peak")] = 300,
    surge: Annotated[float, typer.Option(help="seconds at ten times the peak")] = 60,
    restart: Annotated[
        float, typer.Option(help="seconds at the peak with the broker restarted in them")
    ] = 120,
    rate: Annotated[float, typer.Option(help="the peak, messages a second")] = 480,
    brokers: Annotated[
        int, typer.Option(help="brokers (0: as few as the open-file limit allows)")
    ] = 0,
) -> None:
    """A province's gateways, their brokers and ingest workers, for a bounded run: what held."""
    from anbu.bench.province import run as run_province

    typer.echo(run_province(gateways, steady, surge, restart, rate, brokers, echo=typer.echo))


@bench_app.command("storage")
def bench_storage(
    homes: Annotated[
        int, typer.Option(help="simulated homes (about 300 readings a day each)")
    ] = 500,
    days: Annotated[int, typer.Option(help="days of their routines")] = 14,
) -> None:
    """Bytes per reading on disk: TimescaleDB compressed and not, beside plain partitions."""
    from anbu.bench.storage import run

    run(homes, days, echo=typer.echo)


def _target(password: str | None, prefix: str) -> object:
    from core.config import Settings
    from simulators.replay import ReplayTarget

    settings = Settings()
    if not password:
        raise typer.BadParameter(
            "give the gateways' MQTT password (--password or ANBU_GATEWAY_PASSWORD)"
        )
    return ReplayTarget(settings.mqtt_host, settings.mqtt_port, password, prefix)


def _registered(register: object) -> None:
    import psycopg

    from core.config import Settings

    url = Settings().database_url
    if not url:
        raise typer.BadParameter("ANBU_DATABASE_URL is not set (homes are registered first)")
    with psycopg.connect(url) as conn:
        register(conn)  # type: ignore[operator]


@app.command()
def replay(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="an anbu events.csv")],
    speed: Annotated[float, typer.Option(help="x real time")] = 1.0,
    fast: Annotated[
        bool, typer.Option("--fast", help="as fast as the broker acknowledges")
    ] = False,
    dialect: Annotated[
        list[str] | None,
        typer.Option(
            help="native|zigbee2mqtt|tasmota|shelly|esphome, or HOME=DIALECT (repeatable)"
        ),
    ] = None,
    home: Annotated[list[str] | None, typer.Option(help="only these homes")] = None,
    limit: Annotated[int | None, typer.Option(help="only the first N events")] = None,
    password: Annotated[str | None, typer.Option(envvar="ANBU_GATEWAY_PASSWORD")] = None,
    prefix: Annotated[str, typer.Option(help="gateway id = PREFIX + home")] = "replay-",
) -> None:
    """Publish a recorded events CSV onto MQTT as the homes' gateways would (QoS 1).

    Homes, gateways and sensors are registered first, each sensor under the
    id its home's dialect publishes (ESPHome: <sensor-hyphenated>/<kind>).
    Every dialect carries the recorded time except ESPHome, which has none
    in its payload: ingest stamps an ESPHome home's readings on receipt, so
    they keep the recorded order and values at the replay's own times.
    """
    from rich.progress import Progress

    from simulators.dialects import DIALECTS
    from simulators.replay import load, register_homes
    from simulators.replay import replay as run_replay

    default, per_home = "native", {}
    for d in dialect or []:
        name, _, value = d.rpartition("=")
        if value not in DIALECTS:
            raise typer.BadParameter(f"unknown dialect {value!r}; one of {', '.join(DIALECTS)}")
        if name:
            per_home[name] = value
        else:
            default = value
    target = _target(password, prefix)
    events = load(file, set(home) if home else None, limit)
    if not events:
        raise typer.BadParameter("no events to replay")
    _registered(lambda conn: register_homes(conn, events, prefix, per_home, default))
    with Progress() as bar:
        task = bar.add_task(f"replaying {file.name}", total=len(events))
        result = run_replay(
            events, target, per_home, speed=None if fast else speed,  # type: ignore[arg-type]
            default_dialect=default, progress=lambda n: bar.update(task, completed=n),
        )  # fmt: skip
    typer.echo(f"replayed {result.events} events of {result.homes} homes in {result.seconds:.1f} s")


@app.command()
def loadgen(
    homes: Annotated[int, typer.Option(help="gateways to simulate")] = 100,
    rate: Annotated[float, typer.Option(help="messages per second, all gateways together")] = 1000,
    duration: Annotated[float, typer.Option(help="seconds")] = 60,
    batch: Annotated[int, typer.Option(help="readings per message")] = 1,
    password: Annotated[str | None, typer.Option(envvar="ANBU_GATEWAY_PASSWORD")] = None,
    prefix: Annotated[str, typer.Option(help="gateway id = PREFIX + number")] = "load-",
) -> None:
    """Publish synthetic native readings for benchmarks (gateways registered first)."""
    from rich.progress import Progress

    from simulators.loadgen import fd_room, gateways, register_load_homes, run_load

    if fd_room(homes + 1024) < homes + 1024:
        raise typer.BadParameter(f"{homes} gateways need more open files: raise `ulimit -n`")
    target = _target(password, prefix)
    names = gateways(target, homes)  # type: ignore[arg-type]
    _registered(lambda conn: register_load_homes(conn, names))
    with Progress() as bar:
        task = bar.add_task("loadgen", total=int(rate * duration))
        result = run_load(
            target, names, rate, duration, batch,  # type: ignore[arg-type]
            progress=lambda n: bar.update(task, completed=n),
        )  # fmt: skip
    typer.echo(
        f"{homes} gateways connected in {result.connect_seconds:.1f} s; published "
        f"{result.messages} messages ({result.readings} readings) in {result.seconds:.1f} s: "
        f"{result.messages / result.seconds:,.0f} msg/s, {result.acknowledged} acknowledged, "
        f"{result.reconnects} reconnects"
    )
