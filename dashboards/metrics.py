"""Prometheus metrics: the database's aggregates at scrape time, and ingest's own counters.

Aggregates only: no metric carries a resident's name, phone, notes, id or home; the finest
label is the dong (행정동 code). Each scrape of the web app runs one short read-only set of
queries under a statement timeout; when the database cannot answer, the scrape still
succeeds and says so in `anbu_metrics_database_up 0` instead of failing with a 500.
"""

from __future__ import annotations

import hmac
import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, fields
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import psycopg
from prometheus_client import CollectorRegistry, make_wsgi_app, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import ThreadingWSGIServer
from prometheus_client.registry import Collector
from psycopg_pool import PoolTimeout

from core.clock import Clock
from core.db import Database
from ingest.consumer import IngestStats

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class DbMetric:
    """One metric family read from the database: each row is its label values, then the value."""

    name: str
    help: str
    labels: tuple[str, ...]
    sql: str
    counter: bool = False


# Every query takes %(now)s (the app's clock: virtual in the demo and tests) and stays on
# indexed or small tables: readings are bounded by ts (partition pruning, BRIN) as well as
# received_at, dead letters by their received_at index.
DB_METRICS: tuple[DbMetric, ...] = (
    DbMetric(
        "anbu_alerts_open",
        "Alerts not yet resolved, by dong, kind, severity and state.",
        ("dong", "kind", "severity", "state"),
        """SELECT r.dong_code, a.kind, a.severity, a.state, count(*)
           FROM anbu.alerts a JOIN anbu.resident r ON r.id = a.resident_id
           WHERE a.state <> 'resolved'
           GROUP BY 1, 2, 3, 4""",
    ),
    DbMetric(
        "anbu_findings_raised_24h",
        "Findings raised in the last 24 hours, by kind and severity.",
        ("kind", "severity"),
        """SELECT kind, severity, count(*) FROM anbu.findings
           WHERE raised_at > %(now)s - interval '24 hours' AND raised_at <= %(now)s
           GROUP BY 1, 2""",
    ),
    DbMetric(
        "anbu_homes",
        "Homes (residents) by dong and status: active, away, hospital, ended.",
        ("dong", "status"),
        "SELECT dong_code, status, count(*) FROM anbu.resident GROUP BY 1, 2",
    ),
    DbMetric(
        "anbu_homes_silent",
        "Active residents' homes with no sign of a person for longer than `over` "
        "(6h, 12h, 24h; cumulative: a home silent 30 h counts in all three), by dong.",
        ("dong", "over"),
        """SELECT r.dong_code, t.over, count(*)
           FROM anbu.home_activity h
           JOIN anbu.resident r ON r.id = h.resident_id AND r.status = 'active'
           JOIN (VALUES ('6h', interval '6 hours'), ('12h', interval '12 hours'),
                        ('24h', interval '24 hours')) AS t(over, span)
             ON h.last_activity_at < %(now)s - t.span
           GROUP BY 1, 2""",
    ),
    DbMetric(
        "anbu_homes_without_activity",
        "Active residents' homes that never reported a sign of a person, by dong.",
        ("dong",),
        """SELECT r.dong_code, count(*) FROM anbu.resident r
           WHERE r.status = 'active'
             AND NOT EXISTS (SELECT 1 FROM anbu.home_activity h WHERE h.resident_id = r.id)
           GROUP BY 1""",
    ),
    DbMetric(
        "anbu_gateways",
        "Gateways by dong and state: online, offline, unknown (never reported a status).",
        ("dong", "state"),
        """SELECT r.dong_code,
                  CASE g.online WHEN true THEN 'online' WHEN false THEN 'offline'
                                ELSE 'unknown' END,
                  count(*)
           FROM anbu.gateway g JOIN anbu.resident r ON r.id = g.resident_id
           GROUP BY 1, 2""",
    ),
    DbMetric(
        "anbu_dead_letters",
        "Messages refused by ingest and kept in anbu.dead_letters (not JSON, unknown sensor, "
        "value out of range, timestamp far in the future).",
        (),
        "SELECT count(*) FROM anbu.dead_letters",
        counter=True,
    ),
    DbMetric(
        "anbu_dead_letters_last_hour",
        "Messages dead-lettered in the last hour.",
        (),
        """SELECT count(*) FROM anbu.dead_letters
           WHERE received_at > %(now)s - interval '1 hour' AND received_at <= %(now)s""",
    ),
    DbMetric(
        "anbu_readings_stored_5m",
        "Readings stored in the last 5 minutes (those stamped within the last 2 days).",
        (),
        """SELECT count(*) FROM anbu.readings
           WHERE ts > %(now)s - interval '2 days'
             AND received_at > %(now)s - interval '5 minutes' AND received_at <= %(now)s""",
    ),
    DbMetric(
        "anbu_calls_24h",
        "Calls created in the last 24 hours, by purpose and (Twilio) status.",
        ("purpose", "status"),
        """SELECT purpose, status, count(*) FROM anbu.calls
           WHERE created_at > %(now)s - interval '24 hours' AND created_at <= %(now)s
           GROUP BY 1, 2""",
    ),
    DbMetric(
        "anbu_site_incidents_open",
        "Site incidents (many gateways offline at once) not yet ended.",
        (),
        "SELECT count(*) FROM anbu.incidents WHERE ended_at IS NULL",
    ),
    DbMetric(
        "anbu_dong_info",
        "Each dong's name and district, for labelling the dong codes of other metrics.",
        ("dong", "name", "district"),
        "SELECT code, name, district, 1 FROM anbu.dong",
    ),
)


class DatabaseCollector(Collector):
    """Reads DB_METRICS at each scrape; `timeout_s` bounds the wait for a connection and each query."""

    def __init__(self, db: Database, clock: Clock, timeout_s: float) -> None:
        self._db = db
        self._clock = clock
        self._timeout_s = timeout_s

    def _read(self) -> list[list[tuple[Any, ...]]]:
        params = {"now": self._clock.now()}
        with self._db.pool.connection(timeout=self._timeout_s) as conn:
            conn.execute("SET TRANSACTION READ ONLY")
            conn.execute(
                "SELECT set_config('statement_timeout', %s, true)",
                (str(max(int(self._timeout_s * 1000), 1)),),
            )
            return [conn.execute(m.sql, params).fetchall() for m in DB_METRICS]

    def collect(self) -> Iterator[Metric]:
        started = time.perf_counter()
        try:
            results = self._read()
        except (psycopg.Error, PoolTimeout, RuntimeError) as exc:
            log.warning("metrics: database unreachable", extra={"error": type(exc).__name__})
            results = None
        for metric, rows in zip(DB_METRICS, results or (), strict=False):
            yield _family(metric, rows)
        yield GaugeMetricFamily(
            "anbu_metrics_database_up",
            "1 when this scrape read the database, 0 when it could not (the gauges above are "
            "then absent, not zero).",
            value=0 if results is None else 1,
        )
        yield GaugeMetricFamily(
            "anbu_metrics_collect_seconds",
            "Seconds this scrape spent reading the database.",
            value=time.perf_counter() - started,
        )


def _family(metric: DbMetric, rows: Iterable[tuple[Any, ...]]) -> Metric:
    family_type = CounterMetricFamily if metric.counter else GaugeMetricFamily
    family = family_type(metric.name, metric.help, labels=metric.labels)
    for row in rows:
        family.add_metric([str(v) for v in row[:-1]], float(row[-1]))
    return family


INGEST_HELP: dict[str, str] = {
    "messages": "MQTT messages received since the worker started.",
    "stored": "Readings stored.",
    "duplicates": "Readings already stored (a redelivery), kept once.",
    "dead_lettered": "Messages refused into anbu.dead_letters, with their reason.",
    "batches": "Batches committed.",
    "db_errors": "Database errors while storing (each batch is retried until it commits).",
    "connects": "Connections to the MQTT broker.",
    "acked": "PUBACKs sent, each after the commit that stored its message.",
    "restarts": "Storing processes started again after one died.",
}


class IngestCollector(Collector):
    """One ingest worker's IngestStats as counters `anbu_ingest_<field>_total`."""

    def __init__(self, stats: Callable[[], IngestStats]) -> None:
        self._stats = stats

    def collect(self) -> Iterator[Metric]:
        stats = self._stats()
        for f in fields(IngestStats):
            help_text = INGEST_HELP.get(f.name, f.name.replace("_", " ").capitalize() + ".")
            yield CounterMetricFamily(f"anbu_ingest_{f.name}", help_text, getattr(stats, f.name))


def database_registry(db: Database, clock: Clock, timeout_s: float) -> CollectorRegistry:
    """The web app's registry (its own, not the process-wide default): the database gauges."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(DatabaseCollector(db, clock, timeout_s))
    return registry


def serve_ingest_metrics(stats: Callable[[], IngestStats], host: str, port: int) -> WSGIServer:
    """Serve the ingest counters at http://host:port/metrics in a daemon thread.

    Stop with `server.shutdown(); server.server_close()`.
    """
    registry = CollectorRegistry(auto_describe=False)
    registry.register(IngestCollector(stats))
    server, _thread = start_http_server(port, addr=host, registry=registry)
    return server


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """No access log: scrapes are not news."""


def serve_metrics(
    registry: CollectorRegistry, host: str, port: int, token: str | None = None
) -> WSGIServer:
    """Serve `registry` at http://host:port/metrics in a daemon thread (the web app's internal
    metrics port); with `token`, only to `Authorization: Bearer <token>`.

    Stop with `server.shutdown(); server.server_close()`.
    """
    exposition = make_wsgi_app(registry)

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if token is not None:
            scheme, _, given = str(environ.get("HTTP_AUTHORIZATION", "")).partition(" ")
            if scheme.lower() != "bearer" or not hmac.compare_digest(
                given.strip().encode(), token.encode()
            ):
                start_response(
                    "401 Unauthorized",
                    [("Content-Type", "text/plain; charset=utf-8"), ("WWW-Authenticate", "Bearer")],
                )
                return ["인증이 필요합니다. Authentication required.\n".encode()]
        result: Iterable[bytes] = exposition(environ, start_response)
        return result

    server = make_server(host, port, app, ThreadingWSGIServer, handler_class=_QuietHandler)
    threading.Thread(target=server.serve_forever, name="web-metrics", daemon=True).start()
    return server
