"""A real Prometheus (Debian's `prometheus` package) scrapes the web app and an ingest worker:
both targets are up, the ingest counters say what the test published through the real broker,
and every PromQL expression of the shipped Grafana dashboards returns data from it.

Grafana is not installable here, so this is what stands in for opening the operations
dashboard: each panel's expression, with Grafana's interval variables substituted, is asked of
Prometheus, and so is each metric selector inside it alone (an `or vector(0)` would otherwise
hide a metric that does not exist). The SQL panels are run as the read-only role by
tests/unit/test_grafana_dashboards.py.

A machine without Prometheus fails this test, never skips it: `make test` (make system-deps)
installs it and keeps the package's own service from starting; the test starts a throwaway
instance on a free port with its own config and data directory.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
import yaml

import registry
from anbu.service import Runtime, build
from core.config import Settings
from core.db import Database
from core.domain import SensorKind
from simulators.servers import EmbeddedMosquitto, free_port
from tests.calls_support import WebServer
from tests.integration.test_ingest_consumer import PASSWORD, Gateway, clear_session

GRAFANA = Path(__file__).resolve().parents[2] / "dashboards" / "grafana"
SCRAPE_S = 1
# Grafana's $__rate_interval: max($__interval + scrape interval, 4 x scrape interval).
GRAFANA_VARIABLES = {"__rate_interval": f"{4 * SCRAPE_S}s", "__interval": f"{SCRAPE_S}s"}
TOKEN = "prometheus-scrape-token-0123456789abcdef"
DONG = "1111051500"
MESSAGES, READINGS_EACH = 6, 2  # six messages of two readings each through the broker
DEADLINE_S = 30.0
T = TypeVar("T")


def prometheus_binary() -> str:
    """Prometheus on PATH, or where Debian's package puts it; a test without it fails."""
    found = shutil.which("prometheus") or shutil.which("prometheus", path="/usr/bin")
    if found is None:
        pytest.fail(
            "Prometheus is not installed: run `make system-deps` (or `make test`), which "
            "installs Debian's package (apt-get install --no-install-recommends prometheus)"
        )
    return found


class Prometheus:
    """A throwaway Prometheus: its own config, data directory and free port."""

    def __init__(self, workdir: Path, scrape_configs: list[dict[str, Any]]) -> None:
        self.workdir = workdir
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.config = {
            "global": {
                "scrape_interval": f"{SCRAPE_S}s",
                "scrape_timeout": f"{SCRAPE_S}s",
                "evaluation_interval": f"{SCRAPE_S}s",
            },
            "scrape_configs": scrape_configs,
        }
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def log(self) -> Path:
        return self.workdir / "prometheus.log"

    def start(self) -> None:
        conf = self.workdir / "prometheus.yml"
        conf.write_text(yaml.safe_dump(self.config))
        cmd = [
            prometheus_binary(),
            f"--config.file={conf}",
            f"--storage.tsdb.path={self.workdir / 'data'}",
            f"--web.listen-address=127.0.0.1:{self.port}",
            "--storage.tsdb.retention.time=1h",
        ]
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + DEADLINE_S
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"prometheus exited at start:\n{self.tail()}")
            try:
                if httpx.get(f"{self.url}/-/ready", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"prometheus was not ready in {DEADLINE_S:.0f} s:\n{self.tail()}"
                )
            time.sleep(0.1)

    def stop(self) -> None:
        if self.process is None:
            return
        self.process.terminate()
        try:
            self.process.wait(15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(5)
        self.process = None

    def tail(self, lines: int = 30) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])

    def query(self, promql: str) -> list[dict[str, Any]]:
        """An instant query's result vector; a query Prometheus refuses fails the test."""
        response = httpx.get(f"{self.url}/api/v1/query", params={"query": promql}, timeout=10)
        body = response.json()
        assert body.get("status") == "success", f"{promql!r}: {body}"
        result = body["data"]["result"]
        if body["data"]["resultType"] == "scalar":
            return [{"metric": {}, "value": result}]
        assert isinstance(result, list)
        return result

    def value(self, promql: str) -> float | None:
        """The single value of a query, or None while it has none."""
        result = self.query(promql)
        return float(result[0]["value"][1]) if len(result) == 1 else None


def until(read: Callable[[], T], done: Callable[[T], bool], what: str, prometheus: Prometheus) -> T:
    """Poll `read` until `done` says yes; fail with what it read last and Prometheus's log."""
    deadline = time.monotonic() + DEADLINE_S
    while True:
        found = read()
        if done(found):
            return found
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}; last read: {found!r}\n{prometheus.tail()}")
        time.sleep(0.2)


@dataclass(frozen=True)
class Expression:
    where: str
    promql: str


def substitute(promql: str, where: str) -> str:
    """Grafana's interval variables in an expression, as the panel would send it."""

    def variable(m: re.Match[str]) -> str:
        name = m.group(1) or m.group(2)
        assert name in GRAFANA_VARIABLES, f"{where}: ${name} is not substituted by this test"
        return GRAFANA_VARIABLES[name]

    return re.sub(r"\$\{(\w+)\}|\$(\w+)", variable, promql)


def dashboard_expressions() -> list[Expression]:
    """Every PromQL expression of the shipped dashboards, Grafana's variables substituted."""
    out = []
    for path in sorted(GRAFANA.glob("*.json")):
        board = json.loads(path.read_text())
        panels = [p for top in board["panels"] for p in (top, *top.get("panels", []))]
        for panel in panels:
            for target in panel.get("targets", []):
                if "expr" in target:
                    where = f"{path.stem}: {panel['title']} [{target['refId']}]"
                    out.append(Expression(where, substitute(target["expr"], where)))
    return out


def selectors(promql: str) -> list[str]:
    """The metric selectors in an expression, each as an instant query of its own."""
    return re.findall(r"\banbu_\w+(?:\{[^}]*\})?", promql)


def _seed(database: Database, gateway_id: str, unique: str) -> None:
    """What the care gauges count, so that every panel has something to show: an open alert, a
    finding and a call today, a home silent for 13 h behind an offline gateway, a site incident."""
    now = datetime.now(UTC)
    with database.connection() as conn:
        registry.add_dong(conn, DONG, "청운효자동", "종로구")
        seen = registry.add_resident(conn, f"{unique}-h1", DONG, "김순자", "+821011110001")
        silent = registry.add_resident(conn, f"{unique}-h2", DONG, "박영희", "+821011110002")
        registry.add_gateway(conn, gateway_id, seen)
        registry.add_sensor(conn, gateway_id, "door1", SensorKind.DOOR, "entrance")
        registry.add_sensor(conn, gateway_id, "pir1", SensorKind.MOTION, "living")
        registry.add_gateway(conn, f"{unique}-gw2", silent)
        conn.execute("UPDATE anbu.gateway SET online = false WHERE id = %s", (f"{unique}-gw2",))
        conn.execute(
            "INSERT INTO anbu.home_activity (resident_id, last_activity_at) VALUES (%s, %s)",
            (silent, now - timedelta(hours=13)),
        )
        conn.execute(
            """INSERT INTO anbu.alerts (resident_id, kind, severity, state, opened_at, updated_at)
               VALUES (%s, 'inactivity', 'warning', 'open', %s, %s)""",
            (silent, now - timedelta(hours=1), now),
        )
        conn.execute(
            """INSERT INTO anbu.findings (resident_id, kind, severity, raised_at, reason_ko,
                                          reason_en)
               VALUES (%s, 'inactivity', 'warning', %s, '사유', 'reason')""",
            (silent, now - timedelta(hours=1)),
        )
        conn.execute(
            """INSERT INTO anbu.calls (idempotency_key, resident_id, status, created_at, updated_at)
               VALUES (%s, %s, 'no-answer', %s, %s)""",
            (f"{unique}-c1", silent, now - timedelta(minutes=50), now),
        )
        conn.execute(
            """INSERT INTO anbu.incidents (kind, started_at, gateways, dong_codes, reason_ko,
                                           reason_en, updated_at)
               VALUES ('site_outage', %s, 12, %s, '정전', 'power cut', %s)""",
            (now - timedelta(minutes=20), [DONG], now),
        )


@dataclass
class Scraped:
    """A Prometheus scraping the web app and an ingest worker (as `anbu serve web` and `anbu
    serve ingest` run them), and a gateway publishing to that worker through the broker."""

    prometheus: Prometheus
    gateway: Gateway


@pytest.fixture
def scraped(
    settings: Settings,
    database: Database,
    broker: EmbeddedMosquitto,
    unique: str,
    tmp_path: Path,
) -> Iterator[Scraped]:
    prometheus_binary()  # fail at once, before anything starts, when it is missing
    gateway_id = f"{unique}-gw"
    _seed(database, gateway_id, unique)
    broker.add_user(gateway_id, PASSWORD)
    ingest_port = free_port()
    runtime: Runtime = build(
        settings.model_copy(update={"ingest_metrics_port": ingest_port, "metrics_token": TOKEN}),
        run_migrations=False,
    )
    web_port = free_port()
    web = WebServer(runtime.web_app(), web_port)  # the app `anbu serve web` serves
    token_file = tmp_path / "anbu-metrics-token"
    token_file.write_text(TOKEN)
    prometheus = Prometheus(
        tmp_path / "prometheus",
        [
            {  # as the README says: the web port's /metrics with the bearer token from a file
                "job_name": "anbu-web",
                "authorization": {"credentials_file": str(token_file)},
                "static_configs": [{"targets": [f"127.0.0.1:{web_port}"]}],
            },
            {
                "job_name": "anbu-ingest",
                "static_configs": [{"targets": [f"127.0.0.1:{ingest_port}"]}],
            },
        ],
    )
    prometheus.workdir.mkdir()
    gateway: Gateway | None = None
    try:
        web.start()
        runtime.start_ingest()
        assert runtime.ingest is not None
        until(runtime.ingest.subscribed.is_set, bool, "ingest's subscription", prometheus)
        prometheus.start()
        gateway = Gateway(broker, gateway_id)
        yield Scraped(prometheus, gateway)
    finally:
        prometheus.stop()
        if gateway is not None:
            gateway.close()
        runtime.stop()
        web.stop()
        clear_session(settings)


def test_prometheus_scrapes_anbu_and_every_dashboard_expression_has_data(
    scraped: Scraped,
) -> None:
    prometheus, gateway = scraped.prometheus, scraped.gateway
    now = datetime.now(UTC)
    for i in range(MESSAGES):
        reason = gateway.readings(
            ("door1", "door", now - timedelta(seconds=60 - i), i % 2),
            ("pir1", "motion", now - timedelta(seconds=60 - i), 1),
        )
        assert reason == 0, f"the broker refused message {i}: {reason:#x}"
    assert gateway.publish(f"gw/{gateway.id}/anbu/readings", b"{not json") == 0

    def up() -> dict[str, float]:
        return {r["metric"]["job"]: float(r["value"][1]) for r in prometheus.query("up")}

    both_up = {"anbu-web": 1.0, "anbu-ingest": 1.0}
    until(up, both_up.__eq__, f"both targets up: {both_up}", prometheus)

    stored = MESSAGES * READINGS_EACH
    expected = {  # what this test produced, as Prometheus has it from the two targets
        'anbu_ingest_stored_total{job="anbu-ingest"}': stored,
        'anbu_ingest_messages_total{job="anbu-ingest"}': MESSAGES + 1,
        'anbu_ingest_dead_lettered_total{job="anbu-ingest"}': 1,
        'anbu_readings_stored_5m{job="anbu-web"}': stored,
        'anbu_dead_letters_total{job="anbu-web"}': 1,
    }

    def counted() -> dict[str, float | None]:
        return {q: prometheus.value(q) for q in expected}

    until(counted, expected.__eq__, f"Prometheus to have the counters {expected}", prometheus)

    expressions = dashboard_expressions()
    assert len(expressions) >= 20, "the operations dashboard's expressions were found"
    queries = {e.promql: e.where for e in expressions}
    for e in expressions:
        for selector in selectors(e.promql):
            queries.setdefault(selector, f"{e.where}: the selector alone")

    def empty() -> list[str]:
        return [f"{where}: {q}" for q, where in queries.items() if not prometheus.query(q)]

    deadline = time.monotonic() + DEADLINE_S
    while (missing := empty()) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not missing, "dashboard expressions with no data in Prometheus:\n" + "\n".join(missing)

    # The values the seeded database and the published readings fix, through Prometheus.
    assert prometheus.value('sum(anbu_gateways{state="offline"})') == 1
    assert prometheus.value('sum(anbu_alerts_open{state="open"})') == 1
    assert prometheus.value('sum(anbu_homes_silent{over="12h"})') == 1
    assert prometheus.value("max(anbu_site_incidents_open)") == 1
    assert prometheus.value("min(anbu_metrics_database_up)") == 1
