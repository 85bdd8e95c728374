"""`anbu demo`: a simulated town end to end on embedded defaults.

Starts (when not configured) a throwaway PostgreSQL, Mosquitto with the repo's config
(or an in-process broker), the local phone network, ingest, worker and web, and a town
whose scenario resident stops moving and does not answer. Prints what happens as it
happens; with --duration it exits non-zero unless the alert reached a care manager.
Like anbu.service, this module wires everything; nothing else may.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import psycopg
from rich.console import Console

from anbu import registry
from anbu.clock import VirtualClock
from anbu.config import Settings
from anbu.embedded import EmbeddedMosquitto, EmbeddedPostgres, free_port, mosquitto_binary
from anbu.service import Runtime, build
from simulators.personas import NO_ANSWER, PRESS_1
from simulators.phone import PhoneNetwork
from simulators.routines import gateway_offline, stops_moving
from simulators.town import DONGS, Town, make_homes

PERSONAS = {str(p): p for p in (PRESS_1, NO_ANSWER)}

DEMO_MANAGERS = (
    # username, password, phone (the phone network's, not real); one per demo dong
    ("cheongun", "anbu-demo", "+821090000001"),
    ("sajik", "anbu-demo", "+821090000002"),
)
DEMO_SUPERVISOR = ("jongno-gu", "anbu-demo", "+821090000009")
INGEST_PASSWORD = "ingest-demo-password"


@dataclass
class Narrator:
    """Polls the database and tells the story: readings, alerts, calls, notifications."""

    console: Console
    tz: ZoneInfo
    clock: VirtualClock
    last_event: int = 0
    last_notification: int = 0
    readings: int = 0
    shown_readings_at: float = 0.0
    call_outcomes: dict[int, str | None] | None = None

    def _t(self) -> str:
        return self.clock.now().astimezone(self.tz).strftime("%m-%d %H:%M")

    def poll(self, conn: psycopg.Connection[Any]) -> None:
        calls = self.call_outcomes if self.call_outcomes is not None else {}
        self.call_outcomes = calls
        now = time.monotonic()
        if now - self.shown_readings_at > 5:
            (count,) = conn.execute("SELECT count(*) FROM anbu.readings").fetchone() or (0,)
            if count != self.readings:
                self.console.print(
                    f"[dim]{self._t()}[/] 센서 수신 저장 readings stored: {count} "
                    f"(+{count - self.readings})"
                )
                self.readings = count
            self.shown_readings_at = now
        for eid, alert_id, home, to_state, reason in conn.execute(
            """SELECT e.id, e.alert_id, r.home, e.to_state, e.reason FROM anbu.alert_events e
               JOIN anbu.alerts a ON a.id = e.alert_id JOIN anbu.resident r ON r.id = a.resident_id
               WHERE e.id > %s ORDER BY e.id""",
            (self.last_event,),
        ):
            self.console.print(
                f"[dim]{self._t()}[/] [bold yellow]알림 #{alert_id}[/] {home} → {to_state}: {reason}"
            )
            self.last_event = eid
        for cid, alert_id, status, outcome in conn.execute(
            "SELECT id, alert_id, status, outcome FROM anbu.calls ORDER BY id"
        ):
            if cid not in calls:
                self.console.print(
                    f"[dim]{self._t()}[/] [cyan]안부전화 #{cid}[/] 발신 call placed (alert #{alert_id})"
                )
                calls[cid] = None
            if outcome and calls[cid] != outcome:
                self.console.print(
                    f"[dim]{self._t()}[/] [cyan]안부전화 #{cid}[/] 결과 outcome: {outcome} ({status})"
                )
                calls[cid] = outcome
        for nid, alert_id, cm_id, channel in conn.execute(
            """SELECT id, alert_id, care_manager_id, channel FROM anbu.notifications
               WHERE id > %s ORDER BY id""",
            (self.last_notification,),
        ):
            self.console.print(
                f"[dim]{self._t()}[/] [bold red]담당자 알림[/] care manager #{cm_id} "
                f"notified by {channel} (alert #{alert_id})"
            )
            self.last_notification = nid


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
    """Run the demo; returns True when the scenario's alert reached its care manager."""
    console = Console()
    settings = Settings()
    tz = ZoneInfo(settings.timezone)
    with ExitStack() as stack:
        tmp = Path(tempfile.mkdtemp(prefix="anbu-demo-"))
        stack.callback(shutil.rmtree, tmp, True)

        dsn = settings.database_url
        if not dsn:
            console.print("PostgreSQL: starting a throwaway server (embedded) ...")
            pg = EmbeddedPostgres(tmp / "pg")
            pg.init()
            pg.start()
            stack.callback(pg.stop, "immediate")
            dsn = pg.create_database("anbu")

        local_start = datetime.now(tz).replace(hour=6, minute=0, second=0, microsecond=0)
        clock = VirtualClock(local_start.astimezone(UTC), speed=speed)
        dongs = list(DONGS)[:2]
        specs = make_homes(homes, seed, dong_codes=dongs)
        scenario_home = specs[0].home
        fall_at = (local_start + timedelta(hours=4, minutes=30)).astimezone(UTC)  # mid-morning
        outage_at = (local_start + timedelta(hours=3)).astimezone(UTC)
        users = {"ingest": INGEST_PASSWORD, **{h.gateway_id: h.gateway_password for h in specs}}

        if broker_kind == "mosquitto" or (broker_kind == "auto" and mosquitto_binary()):
            broker: Any = EmbeddedMosquitto(tmp / "mosquitto", users=dict(users))
            console.print("MQTT: Mosquitto with the repo's mosquitto.conf")
        else:
            from simulators.inproc_broker import InProcessBroker

            broker = InProcessBroker(port=free_port(), users=dict(users))
            console.print("MQTT: in-process broker (amqtt, MQTT 3.1.1; Mosquitto not used)")
        broker.start()
        stack.callback(broker.stop)

        town = Town(
            specs, "127.0.0.1", broker.port, clock, seed,
            scenarios=[
                stops_moving(scenario_home, fall_at),
                # a gateway unplugged for two hours: a device alert, and a call since unknown
                gateway_offline(specs[1].home, outage_at, outage_at + timedelta(hours=2)),
            ],
            mqtt_protocol=5 if isinstance(broker, EmbeddedMosquitto) else 4,
        )  # fmt: skip
        phone = PhoneNetwork(settings.twilio_account_sid, settings.twilio_auth_token)
        for number, persona in town.phone_personas().items():
            phone.set_persona(number, PERSONAS[persona])
        phone.start()
        stack.callback(phone.stop)

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
        stack.callback(runtime.stop)
        with runtime.db.connection() as conn:
            town.register(conn)
            for (username, password, phone_no), dong in zip(DEMO_MANAGERS, dongs, strict=True):
                registry.add_care_manager(
                    conn, username, dong, f"{username} 담당", phone_no, password
                )
                sup, sup_pw, sup_phone = DEMO_SUPERVISOR
                registry.add_care_manager(
                    conn, f"{sup}-{dong}", dong, "구 통합돌봄 담당", sup_phone, sup_pw, "supervisor"
                )
        runtime.start_web()
        runtime.start_ingest()
        runtime.start_worker()
        town.start()
        stack.callback(town.stop)

        console.rule("anbu 안부 demo")
        console.print(f"대시보드 Dashboard: [bold]http://127.0.0.1:{web_port}/[/]")
        console.print(
            f"로그인 Login: [bold]{DEMO_MANAGERS[0][0]}[/] / {DEMO_MANAGERS[0][1]} "
            f"({DONGS[dongs[0]][1]} {DONGS[dongs[0]][0]}); other dong: {DEMO_MANAGERS[1][0]} / {DEMO_MANAGERS[1][1]}"
        )
        console.print(
            f"가상 시계 Virtual clock: ×{speed:g} from {local_start:%Y-%m-%d %H:%M} KST; "
            f"scenario: {scenario_home} stops moving at {fall_at.astimezone(tz):%H:%M} "
            f"and does not answer; {specs[1].home}'s gateway goes offline at "
            f"{outage_at.astimezone(tz):%H:%M} for two hours"
        )
        console.print("Ctrl-C to stop." if duration is None else f"Running {duration:g} s.")
        narrator = Narrator(console, tz, clock)
        deadline = None if duration is None else time.monotonic() + duration
        ok = False
        try:
            while deadline is None or time.monotonic() < deadline:
                with runtime.db.connection() as conn:
                    narrator.poll(conn)
                    ok = ok or _scenario_done(conn, scenario_home)
                if ok and stop_when_done:
                    break
                time.sleep(0.5)
        except KeyboardInterrupt:
            pass
        with runtime.db.connection() as conn:
            narrator.poll(conn)
            ok = _scenario_done(conn, scenario_home)
        console.rule()
        if ok:
            console.print(f"[green]OK[/]: {scenario_home}'s alert reached the dong care manager.")
        else:
            console.print(f"[red]FAILED[/]: no care-manager notification for {scenario_home}.")
        return ok


def _port_free(port: int) -> bool:
    import socket

    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True
