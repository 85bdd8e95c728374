"""`anbu demo`: a simulated town end to end on embedded defaults.

Starts (when not configured) a throwaway PostgreSQL, Mosquitto with the repo's config
(or an in-process broker), the local phone network, ingest, worker and web, and a town
enrolled from its district's file through the import (simulators.town_enrolment), with two
weeks of history already stored (through ingest's store, not the broker) and each
home's routine learned, so the learned findings can happen: a resident who stops moving and
does not answer, one who does not get up, one who went out and is not back, a gateway
offline, a power cut taking a dong's gateways down, a resident pressing their pendant, a
kitchen smoke detector's test button (a test, never a fire: the demo fails if a fire_alarm is
raised). Every home has a pendant and a kitchen smoke detector. Prints what happens as it
happens; with --duration it exits non-zero unless the alert reached a care manager and every
scenario's finding was raised. Like anbu.service, this module wires everything; nothing else may.
"""

from __future__ import annotations

import logging
import secrets
import shutil
import signal
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import psycopg
from rich.console import Console

import registry
from anbu.demo_cast import Cast, Narrator, missing_findings, raised_findings
from anbu.service import Runtime, build
from core.clock import VirtualClock
from core.config import Settings
from core.crypto import Keyring
from core.db import Database
from detectors.health import HealthPolicy
from detectors.health_sweep import learn_cadences
from detectors.nightly import learn_all
from detectors.summaries import mark_summarised, rebuild
from ingest.store import Message, Store
from simulators.personas import NO_ANSWER, PRESS_1
from simulators.phone import PhoneNetwork
from simulators.servers import EmbeddedMosquitto, EmbeddedPostgres, free_port, mosquitto_binary
from simulators.town import DONGS, Town, local_midnight
from simulators.town_enrolment import (
    TOWN_FILE,
    TownRefused,
    enrol_town,
    homes_of_file,
    town_file,
)

PERSONAS = {str(p): p for p in (PRESS_1, NO_ANSWER)}

DEMO_MANAGERS = (
    # username, password, phone (the phone network's, not real); one per demo dong
    ("cheongun", "anbu-demo", "+821090000001"),
    ("sajik", "anbu-demo", "+821090000002"),
)
DEMO_SUPERVISOR = ("jongno-gu", "anbu-demo", "+821090000009")
INGEST_PASSWORD = "ingest-demo-password"
HISTORY_DAYS = 14  # stored before the clock starts: every home's routine is learned
LEARN_HOUR = 3  # the nightly learning, as the worker runs it

log = logging.getLogger(__name__)


class DemoInterrupted(KeyboardInterrupt):
    """SIGTERM or SIGINT while the demo starts: unwind what has started (a KeyboardInterrupt,
    so psycopg cancels a query in flight and no `except Exception` swallows it)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


class _Signals:
    """SIGTERM and SIGINT for the demo's lifetime: while starting, the first one raises
    DemoInterrupted; once the town runs, and while cleaning up, they only set `received`, so
    the cleanup (servers, folder) is never cut short by a second Ctrl-C."""

    def __init__(self) -> None:
        self.received: int | None = None
        self.raising = True

    def _on(self, signum: int, frame: object) -> None:
        first = self.received is None
        self.received = self.received or signum
        if first and self.raising:
            self.raising = False
            raise DemoInterrupted(signum)

    @contextmanager
    def installed(self) -> Iterator[_Signals]:
        old = {s: signal.signal(s, self._on) for s in (signal.SIGTERM, signal.SIGINT)}
        try:
            yield self
        finally:
            for s, handler in old.items():
                signal.signal(s, handler)


def _quietly(what: str, stop: Callable[[], object]) -> Callable[[], None]:
    """A cleanup step whose failure is logged, so the steps after it still run."""

    def run() -> None:
        try:
            stop()
        except Exception:  # the next server must still be stopped and the folder removed
            log.exception("demo cleanup failed", extra={"step": what})

    return run


def _store_history(db: Database, town: Town, since: datetime, until: datetime) -> int:
    """The town's past, as its gateways would have sent it, stored the way ingest stores it."""
    store = Store(db)
    stored = 0
    for day_end, messages in town.past_messages(since, until):
        if messages:
            summary = store.store_batch([Message(t, p) for t, p in messages], day_end)
            stored += summary.stored
    return stored


def _learn_history(db: Database, town: Town, cast: Cast, start: datetime) -> int:
    """Two weeks of every home's life before `start`, then the night's learning (03:00).

    The sleeper is chosen once the routines are learned (someone whose wake time is known),
    so the night of the demo's first day is stored after that choice.
    """
    midnight = local_midnight(start)
    learn_at = midnight + timedelta(hours=LEARN_HOUR)
    first = midnight - timedelta(days=HISTORY_DAYS)
    with db.connection() as conn:
        day = first.astimezone(UTC).date() - timedelta(days=1)
        conn.execute("SELECT anbu.ensure_reading_partitions(%s::date, %s)", (day, HISTORY_DAYS + 3))
    stored = _store_history(db, town, first, midnight)
    learn_all(db, learn_at)
    cast.sleep_in(db, town, start)
    stored += _store_history(db, town, midnight, start)
    learn_all(db, learn_at)
    with db.connection() as conn:
        learn_cadences(conn, learn_at, HealthPolicy())
        rebuild(conn, first, start)  # the hourly activity Grafana and the timeline read
        # the worker's first pass goes on from here: without the mark it would look back only
        # FIRST_PASS from its own start, hours of virtual time later, and the demo day's first
        # hours would never be summarised
        mark_summarised(conn, start)
    return stored


def _scenario_done(conn: psycopg.Connection[Any], home: str) -> bool:
    row = conn.execute(
        """SELECT count(*) FROM anbu.alerts a JOIN anbu.resident r ON r.id = a.resident_id
           JOIN anbu.notifications n ON n.alert_id = a.id
           WHERE r.home = %s AND n.channel = 'sms'""",
        (home,),
    ).fetchone()
    return bool(row and row[0] > 0)


def run_demo(
    duration: float | None,
    speed: float,
    homes: int,
    port: int,
    seed: int,
    stop_when_done: bool = False,
    broker_kind: str = "auto",
) -> bool:
    """Run the demo; True when the scenario's alert reached its care manager and every
    scenario's finding was raised."""
    console = Console()
    settings = Settings()
    if settings.unsafe_secrets():  # the demo's own, never the published defaults
        settings = settings.model_copy(
            update={
                "session_secret": secrets.token_hex(32),
                "twilio_auth_token": secrets.token_hex(16),
                "data_key": settings.data_key or secrets.token_hex(32),  # seals notes
            }
        )
    signals = _Signals()
    try:
        with signals.installed():
            return _run(console, settings, signals, duration, speed, homes, port, seed,
                        stop_when_done, broker_kind)  # fmt: skip
    except DemoInterrupted as stopped:
        console.print(f"Stopped by {stopped.args[0]} while starting; servers and folder removed.")
        return False
    except TownRefused as refused:
        console.print(f"[red]데모 마을 명단 오류[/] (town file refused): {refused.message()}")
        return False


def _run(
    console: Console,
    settings: Settings,
    signals: _Signals,
    duration: float | None,
    speed: float,
    homes: int,
    port: int,
    seed: int,
    stop_when_done: bool,
    broker_kind: str,
) -> bool:
    tz = ZoneInfo(settings.timezone)
    with ExitStack() as stack:
        tmp = Path(tempfile.mkdtemp(prefix="anbu-demo-"))
        stack.callback(shutil.rmtree, tmp, True)

        dsn = settings.database_url
        if not dsn:
            console.print("PostgreSQL: starting a throwaway server (embedded) ...")
            pg = EmbeddedPostgres(tmp / "pg")
            # registered before start: a signal during start still stops what came up
            stack.callback(_quietly("postgres", lambda: pg.stop("immediate")))
            pg.init()
            pg.start()
            dsn = pg.create_database("anbu")

        local_start = datetime.now(tz).replace(hour=6, minute=0, second=0, microsecond=0)
        clock = VirtualClock(local_start.astimezone(UTC), speed=speed)
        dongs = list(DONGS)[:2]
        town_csv = town_file(homes)  # the district's enrolment file, as `anbu import` reads it
        specs = homes_of_file(town_csv, seed, DONGS, local_start.date())
        scenario_home = specs[0].home
        users = {"ingest": INGEST_PASSWORD, **{h.gateway_id: h.gateway_password for h in specs}}

        if broker_kind == "mosquitto" or (broker_kind == "auto" and mosquitto_binary()):
            broker: Any = EmbeddedMosquitto(tmp / "mosquitto", users=dict(users))
            console.print("MQTT: Mosquitto with the production mosquitto.conf")
        else:
            from simulators.inproc_broker import InProcessBroker

            broker = InProcessBroker(port=free_port(), users=dict(users))
            console.print("MQTT: in-process broker (amqtt, MQTT 3.1.1; Mosquitto not used)")
        stack.callback(_quietly("broker", broker.stop))
        broker.start()

        town = Town(
            specs, "127.0.0.1", broker.port, clock, seed,
            mqtt_protocol=5 if isinstance(broker, EmbeddedMosquitto) else 4,
        )  # fmt: skip
        cast = Cast.of(town, specs, dongs, local_start)
        for scenario in cast.scenarios:
            town.add_scenario(scenario)
        phone = PhoneNetwork(settings.twilio_account_sid, settings.twilio_auth_token)
        for number, persona in town.phone_personas().items():
            phone.set_persona(number, PERSONAS[persona])
        phone.start()
        stack.callback(_quietly("phone", phone.stop))

        web_port = port if port and _port_free(port) else free_port()
        settings = settings.model_copy(
            update={
                "database_url": dsn,
                "mqtt_port": broker.port,
                "mqtt_password": INGEST_PASSWORD,
                "mqtt_client_id": "anbu-demo-ingest",
                "mqtt_protocol": 5 if isinstance(broker, EmbeddedMosquitto) else 4,
                "twilio_api_base_url": phone.base_url,
                "public_base_url": f"http://127.0.0.1:{web_port}",
                "web_port": web_port,
                "sweep_interval_s": 1.0,
                "due_poll_s": 0.5,
                # real seconds of telephony are `speed` times longer on the virtual clock
                "call_watchdog_s": 30.0 * speed,
            }
        )
        runtime: Runtime = build(settings, clock)
        stack.callback(_quietly("services", runtime.stop))
        with runtime.db.connection() as conn:
            enrolled = enrol_town(
                conn, town_csv, specs, DONGS, keyring=Keyring.from_settings(settings)
            )
            for (username, password, phone_no), dong in zip(DEMO_MANAGERS, dongs, strict=True):
                registry.add_care_manager(
                    conn, username, dong, f"{username} 담당", phone_no, password
                )
                sup, sup_pw, sup_phone = DEMO_SUPERVISOR
                registry.add_care_manager(
                    conn, f"{sup}-{dong}", dong, "구 통합돌봄 담당", sup_phone, sup_pw, "supervisor"
                )
        console.print(
            f"주민 등록 Enrolment: {len(enrolled)} residents from {TOWN_FILE.name} through the "
            "import, each home's gateway and sensors added"
        )
        console.print(f"지난 {HISTORY_DAYS}일 History: storing two weeks of the town's life ...")
        stored = _learn_history(runtime.db, town, cast, local_start)
        console.print(
            f"지난 {HISTORY_DAYS}일 History: {stored} readings stored, each home's routine learned"
        )
        clock.advance(local_start - clock.now())  # the town's day starts where its past ends
        runtime.start_web()
        runtime.start_ingest()
        runtime.start_worker()
        stack.callback(_quietly("town", town.stop))
        town.start(since=local_start)

        console.rule("anbu 안부 demo")
        console.print(f"대시보드 Dashboard: [bold]http://127.0.0.1:{web_port}/[/]")
        console.print(
            f"로그인 Login: [bold]{DEMO_MANAGERS[0][0]}[/] / {DEMO_MANAGERS[0][1]} "
            f"({DONGS[dongs[0]][1]} {DONGS[dongs[0]][0]}); other dong: {DEMO_MANAGERS[1][0]} / {DEMO_MANAGERS[1][1]}"
        )
        console.print(f"가상 시계 Virtual clock: ×{speed:g} from {local_start:%Y-%m-%d %H:%M} KST")
        for e in cast.expected:
            console.print(f"  시나리오 scenario: {e.home or 'site'} {e.story} → {e.kind}")
        for e in cast.absent:
            console.print(f"  시나리오 scenario: {e.home} {e.story} → no {e.kind}")
        console.print("Ctrl-C to stop." if duration is None else f"Running {duration:g} s.")
        narrator = Narrator(console, tz, clock, readings=stored)
        deadline = None if duration is None else time.monotonic() + duration
        ok = False
        signals.raising = False  # from here a signal ends the loop below, then the summary
        while signals.received is None and (deadline is None or time.monotonic() < deadline):
            with runtime.db.connection() as conn:
                narrator.poll(conn)
                ok = ok or (
                    _scenario_done(conn, scenario_home)
                    and not missing_findings(conn, cast.expected)
                )
            if ok and stop_when_done:
                break
            time.sleep(0.25)
        if signals.received is not None:
            console.print(f"Stopping ({signal.Signals(signals.received).name}) ...")
        with runtime.db.connection() as conn:
            narrator.poll(conn)
            reached = _scenario_done(conn, scenario_home)
            missing = missing_findings(conn, cast.expected)
            wrong = raised_findings(conn, cast.absent)
        console.rule()
        for e in cast.expected:
            mark = "[red]✗[/]" if e in missing else "[green]✓[/]"
            console.print(f"{mark} {e.kind} {e.home or 'site'}: {e.story}")
        for e in cast.absent:
            mark = "[red]✗[/]" if e in wrong else "[green]✓[/]"
            console.print(f"{mark} no {e.kind} {e.home}: {e.story}")
        if wrong:
            kinds = ", ".join(f"{e.kind} ({e.home})" for e in wrong)
            console.print(f"[red]FAILED[/]: raised, and must not be: {kinds}.")
            return False
        if reached and not missing:
            console.print(
                f"[green]OK[/]: {scenario_home}'s alert reached the dong care manager; "
                "every scenario's finding was raised."
            )
        elif not reached:
            console.print(f"[red]FAILED[/]: no care-manager notification for {scenario_home}.")
        else:
            kinds = ", ".join(e.kind for e in missing)
            console.print(f"[red]FAILED[/]: not raised (yet): {kinds}.")
        return reached and not missing


def _port_free(port: int) -> bool:
    import socket

    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True
