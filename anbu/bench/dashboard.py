"""`anbu bench dashboard`: the care manager's pages with a real district's data.

A throwaway PostgreSQL holds `residents` residents over 20 dongs of one district, `open_alerts`
open alerts among them (and five times as many ended), two calls a resident in the last weeks,
one care manager a dong, and for the measured dong five weeks of hourly activity and a gateway
with four sensors a home. Logged in as one dong's care manager, the app (in this process,
through its whole ASGI stack) answers the care queue (`/alerts`), residents' cards
(`/residents/{id}`, a resident of the dong at random each time) and the weekly review
(`/review`), each `requests` times after a warm-up; their p95, beside the same rows read bare
(the card's queries; the review's own aggregate queries, no rows built), timed the same
way on the same connection pool. As `anbu serve web`, the heap is settled before the timing. The result line:
`dashboard: residents=N open_alerts=N queue_p95_ms=X card_p95_ms=X review_p95_ms=X`.
"""

from __future__ import annotations

import random
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import psycopg

import registry
from alerts.policy import EscalationPolicy
from alerts.service import AlertService
from anbu.service import settle_heap
from core.clock import SystemClock
from core.config import Settings
from core.db import Database, migrate
from dashboards import review
from simulators.loadgen import SENSORS
from simulators.servers import EmbeddedPostgres

DONGS = [(f"29{n:08d}", f"벤치{n}동") for n in range(1, 21)]
PASSWORD = "bench-dashboard-pass-1"
WARM_UP = 5


_CARD_SQL = (
    "SELECT * FROM anbu.resident WHERE id = %s",
    """SELECT id, created_at, status, outcome FROM anbu.calls WHERE resident_id = %s
       ORDER BY created_at DESC, id DESC LIMIT 10""",
    """SELECT a.id, a.severity, a.state, f.reason_ko FROM anbu.alerts a
       LEFT JOIN anbu.findings f ON f.id = a.finding_id WHERE a.resident_id = %s
       ORDER BY (a.state = 'resolved'), a.opened_at DESC LIMIT 10""",
    """SELECT s.id, st.last_reading_at, st.battery FROM anbu.sensor s
       JOIN anbu.gateway g ON g.id = s.gateway_id
       LEFT JOIN anbu.sensor_state st ON st.sensor_id = s.id WHERE g.resident_id = %s""",
    """SELECT hour, activity FROM anbu.activity_hourly WHERE resident_id = %s
       AND hour >= now() - interval '7 days'""",
)


class _Quiet:
    """The alerts service's telephony: the bench places no call."""

    def __getattr__(self, _name: str) -> Callable[..., Any]:
        return lambda *_a, **_k: None


def seed(dsn: str, residents: int, open_alerts: int) -> None:
    """The district's rows, in a few statements (generate_series)."""
    with psycopg.connect(dsn) as conn:
        for code, name in DONGS:
            registry.add_dong(conn, code, name, "벤치구")
        conn.execute(
            """INSERT INTO anbu.resident (home, dong_code, display_name, phone, birth_year,
                   mobile_phone)
               SELECT 'h' || n, (%(dongs)s::text[])[1 + n %% 20], '대상자' || n,
                      '+821000000000', 1930 + n %% 30, '+8210' || lpad((n %% 100000000)::text, 8, '1')
               FROM generate_series(1, %(n)s) n""",
            {"dongs": [c for c, _ in DONGS], "n": residents},
        )
        conn.execute(
            """INSERT INTO anbu.findings (resident_id, kind, severity, raised_at, reason_ko,
                   reason_en)
               SELECT r.id, 'inactivity', (ARRAY['watch','warning','critical'])[1 + k %% 3],
                      now() - (k || ' minutes')::interval, '움직임이 없습니다', 'No movement'
               FROM generate_series(1, %(all)s) k
               JOIN anbu.resident r ON r.id = 1 + (k * 7919) %% %(n)s""",
            {"all": open_alerts * 6, "n": residents},
        )
        # the first `open_alerts` findings' alerts are open, the rest ended (one open per
        # resident and kind: residents are spread so no two open ones share a resident)
        conn.execute(
            """INSERT INTO anbu.alerts (resident_id, kind, severity, state, opened_at,
                   updated_at, finding_id, call_attempts)
               SELECT f.resident_id, f.kind, f.severity,
                      CASE WHEN f.id <= %(open)s
                           THEN (ARRAY['open','calling','escalated','acknowledged'])[1 + f.id %% 4]
                           ELSE 'resolved' END,
                      f.raised_at, f.raised_at, f.id, f.id %% 3
               FROM anbu.findings f""",
            {"open": open_alerts},
        )
        conn.execute(
            """INSERT INTO anbu.calls (idempotency_key, resident_id, purpose, status, outcome,
                   created_at, updated_at, dial_state)
               SELECT 'b' || k, 1 + k %% %(n)s, 'routine', 'completed', 'ok',
                      now() - (k %% 20000 || ' minutes')::interval, now(), 'dialled'
               FROM generate_series(1, %(calls)s) k""",
            {"n": residents, "calls": residents * 2},
        )
        # the measured dong's five weeks of hourly activity (what the review reads; its daily
        # rows follow by the same triggers as the worker's writes), and a gateway with four
        # sensors for each of its residents (what the card reads)
        conn.execute(
            """INSERT INTO anbu.activity_hourly (resident_id, hour, activity, motion, door,
                   power_steps, readings, rooms)
               SELECT r.id, h, (r.id + extract(hour FROM h)::int) %% 7, 1, 0, 0, 3,
                      ARRAY['living']
               FROM anbu.resident r,
                    generate_series(date_trunc('hour', now()) - interval '35 days',
                                    date_trunc('hour', now()) - interval '1 hour',
                                    interval '1 hour') h
               WHERE r.dong_code = %s""",
            (DONGS[0][0],),
        )
        homes = [str(h) for (h,) in conn.execute(
            "SELECT home FROM anbu.resident WHERE dong_code = %s", (DONGS[0][0],))]  # fmt: skip
        registry.add_synthetic_homes(conn, DONGS[0][0], homes, SENSORS)
        registry.add_care_manager(conn, "bench-manager", DONGS[0][0], "김벤치",
                                  "+821000000001", PASSWORD)  # fmt: skip
    # As autovacuum leaves a database in service (and as PostgreSQL's docs advise after a bulk
    # load): the findings' BRIN ranges summarised and the residents' old row versions gone.
    # Without it every review read all of the findings (each range unsummarised) and twice the
    # residents' rows.
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE")


def _p95(samples: list[float]) -> float:
    ordered = sorted(samples)
    return ordered[int(0.95 * (len(ordered) - 1))] * 1000


def _timed(call: Callable[[], Any], n: int) -> float:
    for _ in range(WARM_UP):
        call()
    samples = []
    for _ in range(n):
        began = time.perf_counter()
        call()
        samples.append(time.perf_counter() - began)
    return _p95(samples)


def run(residents: int = 100_000, open_alerts: int = 10_000, requests: int = 200,
        echo: Callable[[str], Any] = print) -> str:  # fmt: skip
    """Seed, time the pages and their bare SELECTs; returns the result line."""
    from fastapi.testclient import TestClient

    with tempfile.TemporaryDirectory(prefix="anbu-bench-", ignore_cleanup_errors=True) as tmp:
        pg = EmbeddedPostgres(Path(tmp) / "pg", durable=False)
        pg.init()
        pg.start()
        try:
            dsn = pg.create_database("bench")
            migrate(dsn)
            t0 = time.monotonic()
            seed(dsn, residents, open_alerts)
            echo(f"seeded {residents:,} residents, {open_alerts:,} open alerts "
                 f"({open_alerts * 5:,} ended), {residents * 2:,} calls in "
                 f"{time.monotonic() - t0:.1f} s")  # fmt: skip
            db = Database(dsn, 1, 8)
            db.open()
            try:
                figures = _measure(db, dsn, requests, TestClient)
            finally:
                db.close()
        finally:
            pg.stop()
    for page, (app_ms, bare_ms) in figures.items():
        echo(f"{page:7s} p95 {app_ms:7.1f} ms   bare SELECT of its rows p95 {bare_ms:6.1f} ms")
    return (f"dashboard: residents={residents} open_alerts={open_alerts} "
            f"queue_p95_ms={figures['queue'][0]:.1f} card_p95_ms={figures['card'][0]:.1f} "
            f"review_p95_ms={figures['review'][0]:.1f}")  # fmt: skip


def _log_in(client: Any, username: str, password: str) -> None:
    """Through the login form, as a browser would."""
    page = client.get("/login").text
    token = page.split('name="csrf_token" value="', 1)[1].split('"', 1)[0]
    answer = client.post("/login", data={"username": username, "password": password,
                                         "csrf_token": token}, follow_redirects=False)  # fmt: skip
    if answer.status_code != 303:
        raise RuntimeError(f"logging in answered {answer.status_code}")


def _measure(db: Database, dsn: str, n: int,
             client_type: Any) -> dict[str, tuple[float, float]]:  # fmt: skip
    from dashboards.app import create_app

    settings = Settings(database_url=dsn, session_secret="bench-dashboard-session-secret-0123")
    clock = SystemClock()
    app = create_app(db, settings, AlertService(db, _Quiet(), EscalationPolicy(), clock, ""))
    client = client_type(app, base_url="http://dashboard.bench")
    _log_in(client, "bench-manager", PASSWORD)
    settle_heap()  # as `anbu serve web` does before it serves (anbu.service.start_web)
    dong = DONGS[0][0]
    with db.connection() as conn:
        ids = [int(r[0]) for r in conn.execute(
            "SELECT id FROM anbu.resident WHERE dong_code = %s", (dong,)).fetchall()]  # fmt: skip
    rnd = random.Random(7)

    def page(path: str | Callable[[], str]) -> Callable[[], None]:
        def get() -> None:
            url = path() if callable(path) else path
            response = client.get(url)
            if response.status_code != 200:
                raise RuntimeError(f"{url} answered {response.status_code}")

        return get

    def bare(sql: str, args: Callable[[], tuple[Any, ...]]) -> Callable[[], None]:
        def select() -> None:
            with db.connection() as conn:
                conn.execute(sql, args()).fetchall()

        return select

    def card_id() -> int:
        return rnd.choice(ids)

    def card_sql(rid: int) -> None:  # the rows the card shows, each query bare
        with db.connection() as conn:
            for sql in _CARD_SQL:
                conn.execute(sql, (rid,)).fetchall()

    tz = ZoneInfo(settings.timezone)

    def review_sql() -> None:  # the review's own queries, bare (no rows built)
        with db.connection() as conn:
            p = review.activity_params(conn, [dong], datetime.now(UTC), tz)
            if p["based"]:  # as weekly_review runs them
                conn.execute("SET LOCAL jit = off")
                queries: tuple[str, ...] = (review._WEEK_BASED, review._FINDINGS)
            else:
                queries = (review._ACTIVITY, review._RESIDENTS, review._FINDINGS)
            for sql in queries:
                conn.execute(sql, p, prepare=False).fetchall()

    return {
        "queue": (
            _timed(page("/alerts"), n),
            _timed(
                bare(
                    """SELECT a.*, f.reason_ko FROM anbu.alerts a
                           JOIN anbu.resident r ON r.id = a.resident_id
                           LEFT JOIN anbu.findings f ON f.id = a.finding_id
                           WHERE r.dong_code = %s AND a.state <> 'resolved'
                           ORDER BY a.opened_at DESC LIMIT 101""",
                    lambda: (dong,),
                ),
                n,
            ),
        ),
        "card": (
            _timed(page(lambda: f"/residents/{card_id()}"), n),
            _timed(lambda: card_sql(card_id()), n),
        ),
        "review": (_timed(page("/review"), n), _timed(review_sql, n)),
    }
