"""`anbu health ingest|worker|web`: exit 0 when the role on this machine is up and working, 1
when not, with one line per check (Korean first). For systemd's ExecStartPost (`--wait`: a
start or a rolling restart returns only once the role is healthy) and for monitoring.

What each role shows from outside:
- web: its /healthz answers 200 (it also asks the database) on ANBU_WEB_HOST:ANBU_WEB_PORT.
- worker: the database answers, a session of the worker is connected to it (its pool keeps one
  open; the units name each role's sessions with PGAPPNAME), and, unless `--ready`, no alert
  timer has waited past `--backlog-minutes` unclaimed (a worker that is up but not working).
- ingest: the database answers, a session of ingest is connected, and its counters on
  ANBU_INGEST_METRICS_PORT show it connected to the broker (without that port: the broker's
  port accepts a connection).
"""

from __future__ import annotations

import os
import re
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from anbu.cli import app

if TYPE_CHECKING:
    from core.config import Settings

ROLES = ("ingest", "worker", "web")
TIMEOUT_S = 5.0
_CONNECTS = re.compile(r"^anbu_ingest_connects_total\s+([0-9.e+]+)\s*$", re.MULTILINE)


@dataclass(frozen=True, slots=True)
class Check:
    """One check's verdict and what a person reads about it (no secrets, no residents)."""

    ok: bool
    ko: str
    en: str


def _local(host: str) -> str:
    """Where to reach a server bound to `host` from this machine."""
    wildcard = ("", "0.0.0.0")  # nosec B104  # read, not bound: such a server answers on loopback
    return "127.0.0.1" if host in wildcard else ("::1" if host == "::" else host)


def _url(host: str, port: int, path: str) -> str:
    host = _local(host)
    return f"http://[{host}]:{port}{path}" if ":" in host else f"http://{host}:{port}{path}"


def check_web(settings: Settings) -> list[Check]:
    import httpx

    url = _url(settings.web_host, settings.web_port, "/healthz")
    try:
        answer = httpx.get(url, timeout=TIMEOUT_S)
    except httpx.HTTPError as exc:
        return [
            Check(
                False, f"웹 응답 없음: {url}", f"web not answering at {url}: {type(exc).__name__}"
            )
        ]
    if answer.status_code != 200:
        return [Check(False, f"웹 {url}: {answer.status_code}", f"web {url}: {answer.status_code}")]
    return [Check(True, f"웹 정상: {url}", f"web healthy at {url}")]


def _app_pattern(role: str, app_name: str | None) -> str:
    """The application_name of the role's database sessions: as given, else this process's
    PGAPPNAME (the unit sets it for the role and for this check alike), else any of the role."""
    return app_name or os.environ.get("PGAPPNAME", "") or f"anbu-{role}%"


def _database_checks(
    settings: Settings, role: str, app_name: str | None
) -> tuple[list[Check], bool]:
    """The database answers; a session of the role is connected. Also returns whether the
    database could be read at all."""
    import psycopg

    if not settings.database_url:
        return [Check(False, "ANBU_DATABASE_URL 미설정", "ANBU_DATABASE_URL is not set")], False
    pattern = _app_pattern(role, app_name)
    try:
        with psycopg.connect(
            settings.database_url, application_name="anbu-health", connect_timeout=int(TIMEOUT_S)
        ) as conn:
            row = conn.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                " AND pid <> pg_backend_pid() AND application_name LIKE %s",
                (pattern,),
            ).fetchone()
    except psycopg.Error as exc:
        why = type(exc).__name__
        return [
            Check(False, f"데이터베이스 연결 실패 ({why})", f"database unreachable ({why})")
        ], False
    sessions = int(row[0]) if row else 0
    db = Check(True, "데이터베이스 정상", "database answers")
    if sessions == 0:
        return [db, Check(False, f"{role} 세션 없음 ({pattern})",
                          f"no database session of {role} ({pattern}): not running")], True  # fmt: skip
    return [db, Check(True, f"{role} 세션 {sessions}개", f"{sessions} session(s) of {role}")], True


def check_worker(
    settings: Settings, app_name: str | None, backlog_minutes: float | None
) -> list[Check]:
    import psycopg

    checks, readable = _database_checks(settings, "worker", app_name)
    if not readable or backlog_minutes is None or settings.database_url is None:
        return checks
    with psycopg.connect(settings.database_url, application_name="anbu-health") as conn:
        row = conn.execute(
            "SELECT count(*) FROM anbu.alerts WHERE next_action_at < now() - make_interval("
            "secs => %s)",
            (backlog_minutes * 60,),
        ).fetchone()
    late = int(row[0]) if row else 0
    if late:
        checks.append(Check(False, f"처리되지 않은 경보 타이머 {late}건 ({backlog_minutes:g}분 초과)",
                            f"{late} alert timer(s) unclaimed past {backlog_minutes:g} min"))  # fmt: skip
    else:
        checks.append(Check(True, "밀린 경보 타이머 없음", "no alert timer overdue"))
    return checks


def check_ingest(settings: Settings, app_name: str | None) -> list[Check]:
    import httpx

    checks, _ = _database_checks(settings, "ingest", app_name)
    port = settings.ingest_metrics_port
    if port is None:
        host = _local(settings.mqtt_host)
        try:
            socket.create_connection((host, settings.mqtt_port), TIMEOUT_S).close()
        except OSError:
            return [*checks, Check(False, f"브로커 응답 없음: {host}:{settings.mqtt_port}",
                                   f"broker not answering at {host}:{settings.mqtt_port}")]  # fmt: skip
        return [*checks, Check(True, "브로커 포트 응답", "broker port answers")]
    url = _url(settings.ingest_metrics_host, port, "/metrics")
    try:
        text = httpx.get(url, timeout=TIMEOUT_S).text
    except httpx.HTTPError:
        return [
            *checks,
            Check(
                False, f"ingest 지표 응답 없음: {url}", f"ingest counters not answering at {url}"
            ),
        ]
    found = _CONNECTS.search(text)
    if not found or float(found.group(1)) < 1:
        return [
            *checks,
            Check(False, "브로커에 아직 연결되지 않음", "not connected to the broker yet"),
        ]
    return [*checks, Check(True, "브로커 연결됨", "connected to the broker")]


def main_process_gone() -> bool:
    """Under systemd's ExecStartPost, $MAINPID is the role's own process: once it has exited
    (or is a zombie) there is nothing left to wait for."""
    pid = os.environ.get("MAINPID", "")
    if not pid.isdigit():
        return False
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] in ("Z", "X")


def run_checks(role: str, app_name: str | None, backlog_minutes: float | None) -> list[Check]:
    """Every check of `role` once, against the settings of this process's environment."""
    from core.config import Settings

    settings = Settings()
    if role == "web":
        return check_web(settings)
    if role == "worker":
        return check_worker(settings, app_name, backlog_minutes)
    return check_ingest(settings, app_name)


@app.command()
def health(
    role: Annotated[str, typer.Argument(help="ingest | worker | web")],
    wait: Annotated[
        float, typer.Option(help="keep checking for up to this many seconds until healthy")
    ] = 0.0,
    app_name: Annotated[
        str | None,
        typer.Option(help="application_name of the role's database sessions (default PGAPPNAME)"),
    ] = None,
    ready: Annotated[
        bool, typer.Option(help="worker: only that it is up (for ExecStartPost), not its backlog")
    ] = False,
    backlog_minutes: Annotated[
        float, typer.Option(help="worker: an alert timer unclaimed this long is unhealthy")
    ] = 10.0,
) -> None:
    """Is this role up and working? Exit 0 (healthy) or 1, one line per check."""
    if role not in ROLES:
        raise typer.BadParameter("role must be ingest, worker or web")
    deadline = time.monotonic() + wait
    while True:
        checks = run_checks(role, app_name, None if ready else backlog_minutes)
        healthy = all(c.ok for c in checks)
        if healthy or time.monotonic() >= deadline or main_process_gone():
            break
        time.sleep(1.0)
    for c in checks:
        typer.echo(f"{'ok  ' if c.ok else 'FAIL'} {c.ko} / {c.en}", err=not c.ok)
    raise typer.Exit(0 if healthy else 1)
