"""The composition root: builds the pool, broker client, telephony and scheduler, and wires them.

Nothing here runs at import. `build()` constructs; the start_* functions start one role
each (ingest, worker, web) so that `anbu serve <role>` scales each horizontally.
"""

from __future__ import annotations

import gc
import logging
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from types import FrameType
from typing import Any
from wsgiref.simple_server import WSGIServer
from zoneinfo import ZoneInfo

import psycopg
import uvicorn
from apscheduler.schedulers.background import BackgroundScheduler

from alerts.course import nightly_purge
from alerts.intake import Intake
from alerts.policy import EscalationPolicy
from alerts.service import AlertService, IncomingFinding
from alerts.webhook_delivery import from_settings as webhook_delivery
from calls.client import make_twilio_client
from calls.conversation import shipped_model
from calls.jobs import register_jobs as register_call_jobs
from calls.service import CallService
from calls.webhooks import build_router
from core.clock import Clock, SystemClock
from core.config import Settings
from core.db import Database, migrate
from core.ticker import Ticker
from dashboards import review
from dashboards.app import create_app
from dashboards.metrics import serve_ingest_metrics, serve_metrics
from dashboards.queue_feed import close_streams
from detectors.health import HealthPolicy
from detectors.health_sweep import health_sweep, learn_cadences, learn_clocks
from detectors.inactivity import InactivityPolicy
from detectors.night import NightPolicy
from detectors.nightly import learn_all
from detectors.review_nightly import night_review, routine_change_review
from detectors.routine_change import RoutinePolicy
from detectors.summaries import SUMMARY_EVERY_S, keep_daily, summarize
from detectors.sweep import NewFinding
from detectors.sweep_due import DueSweep
from ingest.consumer import IngestService
from ingest.dead_letter_limits import dead_letter_limits, expire_dead_letters
from ingest.urgent import URGENT_CHANNEL, waiting_urgent

log = logging.getLogger(__name__)

# uvicorn closes an idle kept connection after this long; nginx's upstream keepalive_timeout
# (deploy/nginx/anbu.conf, 60 s) must be shorter, so that the proxy, never uvicorn, closes
# first: else a webhook sent on a connection uvicorn is closing fails, and a lost 'completed'
# callback leaves a call without its outcome (uvicorn's own default is 5 s)
WEB_KEEP_ALIVE_S = 75
WEB_GRACEFUL_S = 10  # requests in flight when the web server stops get this long to finish

URGENT_BACKOFF_S = (0.5, 30.0)  # the listener's reconnect wait: first, then doubling up to max
URGENT_PING_S = 15.0  # a quiet listener checks its connection this often
URGENT_PASSES = 20  # hand-over passes per notification at most (each: a few per resident)


class UrgentListener:
    """LISTENs on ingest's URGENT_CHANNEL with a connection of its own. On each notification it
    runs `hand_over` (quick: the waiting findings to their alerts; a pass returns how many it
    took, and passes repeat while one takes any, URGENT_PASSES at most), waking after each pass
    its second thread to run `then` (the due steps of the alerts handed over, which may wait
    for a call token): notifications that
    arrive meanwhile make one more run of each, never two at once. Both run once on every
    (re)connect too, for what was notified while it was away; a lost connection is opened again
    with a growing wait. Nothing starts before start(); stop() ends both threads."""

    def __init__(
        self,
        dsn: str,
        hand_over: Callable[[], Any],
        then: Callable[[], Any],
        channel: str = URGENT_CHANNEL,
    ) -> None:
        self._dsn = dsn
        self._hand_over = hand_over
        self._then = then
        self._channel = channel
        self._stop = threading.Event()
        self._due = threading.Event()
        self._threads: list[threading.Thread] = []
        self.listening = threading.Event()
        self.connects = 0  # connections opened and listening, since construction
        self.runs = 0  # runs of `then` finished

    def start(self) -> None:
        if self._threads:
            raise RuntimeError("the urgent listener is running already")
        self._stop = threading.Event()
        for name, target in (("urgent-listener", self._loop), ("urgent-steps", self._steps)):
            thread = threading.Thread(target=target, name=name, daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self, timeout: float = 30.0) -> None:
        self._stop.set()
        self._due.set()
        end = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, end - time.monotonic()))
        self._threads = []
        self.listening.clear()

    def _loop(self) -> None:
        first, most = URGENT_BACKOFF_S
        wait = first
        while not self._stop.is_set():
            try:
                with psycopg.connect(self._dsn, autocommit=True, connect_timeout=10,
                                     keepalives_idle=10, keepalives_interval=5,
                                     keepalives_count=3,
                                     application_name="anbu-urgent-listener") as conn:  # fmt: skip
                    conn.execute(f"LISTEN {self._channel}")
                    self.connects += 1
                    self.listening.set()
                    wait = first
                    self._notified()  # catch-up: anything notified before or while away
                    self._listen(conn)
            except psycopg.Error as exc:
                self.listening.clear()
                log.warning("urgent listener lost its connection; reconnecting",
                            extra={"error": type(exc).__name__, "wait_s": wait})  # fmt: skip
                if self._stop.wait(wait):
                    return
                wait = min(wait * 2, most)

    def _listen(self, conn: psycopg.Connection[Any]) -> None:
        quiet_since = time.monotonic()
        while not self._stop.is_set():
            if not any(True for _ in conn.notifies(timeout=0.5, stop_after=1)):
                if time.monotonic() - quiet_since > URGENT_PING_S:
                    conn.execute("SELECT 1")  # a dead connection raises here
                    quiet_since = time.monotonic()
                continue
            for _ in conn.notifies(timeout=0.0):  # coalesce what came with it
                pass
            quiet_since = time.monotonic()
            self._notified()

    def _notified(self) -> None:
        for _ in range(URGENT_PASSES):
            try:
                took = self._hand_over()
            except Exception:  # the rows are the truth: the ticker's polls catch what this missed
                log.exception("urgent hand-over failed")
                took = 0
            self._due.set()  # the steps of what this pass opened start now
            if not took or self._stop.is_set():
                return

    def _steps(self) -> None:
        while True:
            self._due.wait()
            if self._stop.is_set():
                return
            self._due.clear()
            try:
                self._then()
            except Exception:  # as above: the due poll runs what this did not
                log.exception("urgent steps failed")
            self.runs += 1


@dataclass
class Runtime:
    """Everything one anbu process runs, wired together; start()/stop() per role."""

    settings: Settings
    clock: Clock
    db: Database
    calls: CallService
    alerts: AlertService
    inactivity: InactivityPolicy
    sweeper: DueSweep
    ingest: IngestService | None = None
    ingest_metrics: WSGIServer | None = None
    web_metrics: WSGIServer | None = None
    ticker: Ticker | None = None
    urgent: UrgentListener | None = None
    scheduler: BackgroundScheduler | None = None
    web: uvicorn.Server | None = None
    _threads: list[threading.Thread] = field(default_factory=list)
    _model: threading.Thread | None = None  # the answer classifier learning (web)
    _urgent_alerts: set[int] = field(default_factory=set)  # opened by the hand-over, to step
    _urgent_lock: threading.Lock = field(default_factory=threading.Lock)

    # -- worker: the detector sweep, alert timers, partition upkeep ------------------------

    def _open(self, new: list[NewFinding]) -> int:
        if new:
            self.alerts.on_findings(
                [IncomingFinding(n.finding_id, n.resident_id, n.finding) for n in new]
            )
        return len(new)

    def sweep_once(self) -> int:
        """One detector sweep over the homes due (the first one of the process: every home);
        the new findings open or raise alerts. Returns how many."""
        with self.db.connection() as conn:
            new = self.sweeper.tick(conn, self.clock.now)  # read once the sweep is held
        return self._open(new)

    def hand_over_urgent(self) -> int:
        """One pass: hand the waiting safety findings (an emergency button, a fire or gas alarm)
        to their alerts, due at once, critical first and a few per resident (waiting_urgent);
        the alerts opened or raised wait for `step_urgent`. Returns the findings handed over
        by this pass (not those another pass holds, nor those whose step failed)."""
        with self.db.connection() as conn:
            waiting = waiting_urgent(conn)
        if not waiting:
            return 0
        handed, touched = self.alerts.hand_over_findings([IncomingFinding(*w) for w in waiting])
        with self._urgent_lock:
            self._urgent_alerts.update(touched)
        return handed

    def step_urgent(self) -> int:
        """The due steps of just the alerts the hand-over opened or raised (the care manager's
        call and SMS are sent right after each step commits), never the timers' backlog (that
        is the due poll's): a press waits behind no other alert. Returns the steps run."""
        with self._urgent_lock:
            ids, self._urgent_alerts = sorted(self._urgent_alerts), set()
        return self.alerts.process_due(only=ids) if ids else 0

    def urgent_once(self) -> int:
        """What the urgent listener does on a notification: hand the safety findings over, then
        step their alerts. Returns the findings taken plus the steps run."""
        return self.hand_over_urgent() + self.step_urgent()

    def health_once(self) -> int:
        """Device health, gateway liveness and site incidents; findings for the technician."""
        with self.db.connection() as conn:
            new = health_sweep(conn, self.clock.now(), HealthPolicy())
        return self._open(new)

    def learn_nightly(self) -> None:
        """Each home's routine, each sensor's cadence and each gateway's clock, from history
        before now."""
        now = self.clock.now()
        learn_all(self.db, now)
        with self.db.connection() as conn:
            learn_cadences(conn, now, HealthPolicy())
        with self.db.connection() as conn:
            off = learn_clocks(conn, now, HealthPolicy())
        if off:
            log.warning("gateway clocks off", extra={"gateways": off})

    def routine_review_once(self) -> int:
        tz = ZoneInfo(self.settings.timezone)
        with self.db.connection() as conn:
            new = routine_change_review(conn, self.clock.now(), RoutinePolicy(), tz)
        return self._open(new)

    def night_review_once(self) -> int:
        tz = ZoneInfo(self.settings.timezone)
        with self.db.connection() as conn:
            new = night_review(conn, self.clock.now(), NightPolicy(), tz)
        return self._open(new)

    def fill_review_sums(self) -> int:
        """Every dong's weekly-review sums for the local day (dashboards.review.fill_sums)."""
        with self.db.connection() as conn:
            return review.fill_sums(conn, self.clock.now(), ZoneInfo(self.settings.timezone))

    def summarize_once(self) -> int:
        """Hourly activity per home (anbu.activity_hourly) for what was received lately, and
        daily in the programme's time zone."""
        try:  # never in the way of the hours: a failure here is logged, and tried next pass
            with self.db.connection() as conn:
                keep_daily(conn, ZoneInfo(self.settings.timezone))
        except psycopg.Error:
            log.warning("daily activity: the zone's days not listed yet", exc_info=True)
        with self.db.connection() as conn:
            return summarize(conn, self.clock.now())

    def expire_dead_letters(self) -> None:
        """Refused messages older than the retention (ingest's table, ingest's function)."""
        expire_dead_letters(self.db, self.clock.now(), dead_letter_limits(self.settings))

    def maintain_partitions(self) -> None:
        with self.db.connection() as conn:
            day = self.clock.now().date()
            conn.execute("SELECT anbu.ensure_reading_partitions(%s::date, 7)", (day,))

    def _guarded(self, name: str, job: Any) -> Any:
        def run() -> None:
            try:
                job()
            except Exception:  # a failed tick is retried at the next one; the rows are the truth
                log.exception("worker job failed", extra={"job": name})

        return run

    def start_worker(self) -> None:
        """The polls run on a Ticker (monotonic deadlines: a wall-clock step back never stalls
        them); APScheduler keeps only the nightly jobs, which mean wall-clock time."""
        s = self.settings
        ticker = Ticker()
        # routine check-in plans, the calls-per-second send queue and the lost-call reaper
        register_call_jobs(ticker, self.db, self.calls, s, self.clock)
        intake = Intake(self.db, self.alerts, self.clock, streak=s.checkin_unreached_streak)
        for job_id, job, seconds in (
            ("sweep", self.sweep_once, s.sweep_interval_s),
            ("health", self.health_once, s.sweep_interval_s),
            ("due", self.alerts.process_due, s.due_poll_s),
            ("intake", intake.run_once, s.due_poll_s),
            # findings stored but never handed to an alert (a crash or an error in between)
            ("reconcile", self.alerts.reconcile_findings, s.due_poll_s),
            # SMS and care managers' voice calls written by escalation steps, sent after their
            # commit; retries and interrupted sends
            ("outbox", self.alerts.outbox.send_due, s.due_poll_s),
            # the event feed pushed to webhook subscriptions, in order (alerts.webhook_delivery)
            ("webhooks", webhook_delivery(self.db, self.clock, s).run_once, s.due_poll_s),
            ("partitions", self.maintain_partitions, 6 * 3600.0),
            ("summaries", self.summarize_once, SUMMARY_EVERY_S),
        ):
            ticker.add(job_id, job, seconds)
        sched = BackgroundScheduler(timezone="UTC")
        # nightly jobs run on wall-clock time in the care programme's zone
        for job_id, job, hour, minute in (
            ("learn", self.learn_nightly, 3, 0),
            ("routine_review", self.routine_review_once, 3, 30),
            ("night_review", self.night_review_once, 7, 0),
            # the weekly review's sums of the day, before the care managers' first reviews
            ("review_sums", self.fill_review_sums, 5, 30),
            ("dead_letters", self.expire_dead_letters, 4, 15),
            ("retention", nightly_purge(self.db, s, self.clock), 4, 45),
        ):
            # each runs once a day and may run late: a clock stepped past its minute, or a
            # scheduler held up, still runs it within the hour (APScheduler's grace is 1 s)
            sched.add_job(self._guarded(job_id, job), "cron", hour=hour, minute=minute,
                          timezone=s.timezone, id=job_id, max_instances=1, coalesce=True,
                          misfire_grace_time=3600)  # fmt: skip
        self.maintain_partitions()
        ticker.start()
        self.ticker = ticker
        # an emergency button or a fire alarm: alerted as soon as its ingest batch commits
        assert s.database_url is not None
        self.urgent = UrgentListener(s.database_url, self.hand_over_urgent, self.step_urgent)
        self.urgent.start()
        sched.start()
        self.scheduler = sched

    # -- ingest ----------------------------------------------------------------------------

    def start_ingest(self) -> None:
        self.ingest = IngestService(self.settings, self.db, self.clock)
        self.ingest.start()
        port = self.settings.ingest_metrics_port
        if port is not None:
            ingest = self.ingest
            self.ingest_metrics = serve_ingest_metrics(
                lambda: ingest.stats, self.settings.ingest_metrics_host, port
            )

    # -- web -------------------------------------------------------------------------------

    def web_app(self) -> Any:
        return create_app(
            self.db, self.settings, self.alerts, build_router(self.calls, self.settings)
        )

    def start_web(self, background: bool = True) -> None:
        # the conversation's answer classifier learns as the web server starts (a few seconds),
        # never during a resident's first answer
        model = threading.Thread(target=shipped_model, name="answer-model", daemon=True)
        model.start()
        self._model = model
        app = self.web_app()
        config = uvicorn.Config(
            app, host=self.settings.web_host, port=self.settings.web_port,
            log_level="warning", access_log=False, timeout_keep_alive=WEB_KEEP_ALIVE_S,
            # open care-queue streams (/alerts/events) never end by themselves: past this,
            # a stopping web server cancels them (the browsers open them again elsewhere)
            timeout_graceful_shutdown=WEB_GRACEFUL_S,
        )  # fmt: skip
        if self.settings.web_metrics_port is not None:  # /metrics for Prometheus, internally
            self.web_metrics = serve_metrics(
                app.state.metrics_registry, self.settings.web_metrics_host,
                self.settings.web_metrics_port, self.settings.metrics_token,
            )  # fmt: skip
        self.web = StreamsFirstServer(config, lambda: close_streams(app.state))
        if not background:  # `anbu serve web`: this process is the web server, and no more
            model.join()
            settle_heap()
            self.web.run()
            return
        thread = threading.Thread(target=self.web.run, name="web", daemon=True)
        thread.start()
        self._threads.append(thread)
        deadline = time.monotonic() + 20
        while not self.web.started:
            if time.monotonic() > deadline or not thread.is_alive():
                raise RuntimeError("the web server did not start")
            time.sleep(0.05)

    def stop(self) -> None:
        if self.urgent is not None:
            self.urgent.stop()
            self.urgent = None
        if self.ticker is not None:
            self.ticker.stop()
            self.ticker = None
        if self.scheduler is not None:
            self.scheduler.shutdown(wait=True)
            self.scheduler = None
        if self.ingest is not None:
            self.ingest.stop()
            self.ingest = None
        if self.ingest_metrics is not None:
            self.ingest_metrics.shutdown()
            self.ingest_metrics.server_close()
            self.ingest_metrics = None
        if self.web_metrics is not None:
            self.web_metrics.shutdown()
            self.web_metrics.server_close()
            self.web_metrics = None
        if self.web is not None:
            self.web.handle_exit(signal.SIGTERM, None)  # the care queue's streams end first
            for t in self._threads:
                t.join(WEB_GRACEFUL_S + 10)
            self.web = None
        if self._model is not None:
            # a stop during the classifier's training: let it end first, or the interpreter
            # exits under native code still running in it and the C++ runtime aborts (-6)
            self._model.join(60)
            self._model = None
        self.db.close()


def settle_heap() -> None:
    """Before a web server serves its first request: what start-up left as garbage collected,
    and everything alive (the app, the answer classifier, the libraries: they live as long as
    the process) moved out of the garbage collector's sight. Full collections walking them all
    paused requests by ≈ 100 ms (the weekly review's p95 went from ≈ 75 to ≈ 190 ms, `anbu
    bench dashboard`). Only where the process serves the web alone (`anbu serve web`): in
    `serve all` or the demo, other roles' live state would be frozen with it."""
    gc.collect()
    gc.freeze()


class StreamsFirstServer(uvicorn.Server):
    """uvicorn, ending the care queue's open streams as it begins to stop (SIGTERM or
    stop()): they never end by themselves, and uvicorn waits for open answers."""

    def __init__(self, config: uvicorn.Config, before_exit: Callable[[], None]) -> None:
        super().__init__(config)
        self._before_exit = before_exit

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        self._before_exit()
        super().handle_exit(sig, frame)


def build(settings: Settings, clock: Clock | None = None, run_migrations: bool = True) -> Runtime:
    """Construct and wire every part; opens the pool (and migrates) but starts no role."""
    if not settings.database_url:
        raise RuntimeError("ANBU_DATABASE_URL is not set")
    if run_migrations:
        migrate(settings.database_url)
    clock = clock or SystemClock()
    db = Database(settings.database_url, settings.db_pool_min, settings.db_pool_max)
    db.open()
    calls = CallService(db, make_twilio_client(settings), settings, clock)
    alerts = AlertService(
        db,
        calls,
        EscalationPolicy.from_settings(settings),
        clock,
        settings.public_base_url,
        settings.timezone,
    )
    inactivity = InactivityPolicy.from_settings(settings)
    return Runtime(settings, clock, db, calls, alerts, inactivity, DueSweep(inactivity))
