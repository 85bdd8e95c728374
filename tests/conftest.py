"""Test harness: one throwaway PostgreSQL and one Mosquitto per session, a fresh database per test.

Set ANBU_TEST_DATABASE_URL to use an existing server instead of starting one (the
harness creates and drops databases on it).

Storage modes: the throwaway server preloads TimescaleDB where it is installed (`make test`
builds it), so the default database is what production runs, a hypertable. Tests marked
`storage_modes` (the ones that depend on how readings are stored) run once per mode the server
can give: `timescaledb` and `partitions` (the plain-PostgreSQL mode, forced for its template
database with core.db.migrate(storage="partitions"): no extension is created there). The
summary says which modes ran.
"""

from __future__ import annotations

import itertools
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from core.config import Settings
from core.db import Database, migrate, storage_mode, timescale_unusable
from simulators.servers import (
    EmbeddedMosquitto,
    EmbeddedPostgres,
    ServerUnavailable,
    mosquitto_binary,
    postgres_bindir,
    timescale_missing,
)

INGEST_PASSWORD = "ingest-test-password"
_counter = itertools.count()
STATUS_FILE = Path(__file__).resolve().parent.parent / ".timescaledb-status"


def _timescale_missing() -> str | None:
    """None when the session's server will run TimescaleDB, else why not (asked once)."""
    external = os.environ.get("ANBU_TEST_DATABASE_URL")
    if external:
        with psycopg.connect(external) as conn:
            return timescale_unusable(conn)
    try:
        why = timescale_missing(postgres_bindir())
    except ServerUnavailable as exc:
        return str(exc)
    if why and STATUS_FILE.exists():
        status = STATUS_FILE.read_text().strip()
        if status.startswith("not built:"):  # what scripts/timescaledb.sh said
            why = status
    return why


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "storage_modes: run once per storage mode (timescaledb, partitions)"
    )
    why = _timescale_missing()
    config.stash[_MODES] = ["partitions"] if why else ["timescaledb", "partitions"]
    config.stash[_WHY] = why or ""


_MODES = pytest.StashKey[list[str]]()
_WHY = pytest.StashKey[str]()


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if metafunc.definition.get_closest_marker("storage_modes") and (
        "db_url" in metafunc.fixturenames
    ):
        modes = metafunc.config.stash[_MODES]
        metafunc.parametrize("storage", modes, ids=modes, indirect=True)


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.when == "call" or (report.when == "setup" and not report.passed):
        mode = report.nodeid.rpartition("[")[2].rstrip("]")
        for known in ("timescaledb", "partitions"):
            if mode == known or mode.startswith(known + "-") or mode.endswith("-" + known):
                _ran_by_mode.setdefault(known, []).append(report.outcome)


_ran_by_mode: dict[str, list[str]] = {}


def pytest_terminal_summary(terminalreporter: object, config: pytest.Config) -> None:
    modes = config.stash.get(_MODES, [])
    if not modes:
        return
    parts = []
    for mode in modes:
        outcomes = _ran_by_mode.get(mode, [])
        counts = ", ".join(f"{outcomes.count(o)} {o}" for o in sorted(set(outcomes)))
        parts.append(f"{mode} ({counts or 'none ran'})")
    line = "storage modes: " + ", ".join(parts)
    why = config.stash.get(_WHY, "")
    if why:
        line += f" (timescaledb: {why})"
    line += f"; the other tests ran on the default mode, {modes[0]}"
    terminalreporter.write_line(line)  # type: ignore[attr-defined]


class PgServer:
    """A PostgreSQL server the tests may create databases on."""

    def __init__(self, admin_dsn: str, embedded: EmbeddedPostgres | None) -> None:
        self.admin_dsn = admin_dsn
        self.embedded = embedded

    def dsn_for(self, name: str) -> str:
        base, _, _ = self.admin_dsn.rpartition("/")
        return f"{base}/{name}"

    def create(self, name: str, template: str | None = None) -> str:
        with psycopg.connect(self.admin_dsn, autocommit=True) as conn:
            tpl = f' TEMPLATE "{template}"' if template else ""
            conn.execute(f'CREATE DATABASE "{name}"{tpl}')
        return self.dsn_for(name)

    def drop(self, name: str) -> None:
        with psycopg.connect(self.admin_dsn, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def pg_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PgServer]:
    external = os.environ.get("ANBU_TEST_DATABASE_URL")
    if external:
        yield PgServer(external, None)
        return
    pg = EmbeddedPostgres(tmp_path_factory.mktemp("postgres"))
    pg.init()
    pg.start()
    try:
        yield PgServer(pg.dsn, pg)
    finally:
        pg.stop("immediate")


class Templates:
    """One fully migrated template database per storage mode, made when first asked for.

    A copy (CREATE DATABASE ... TEMPLATE) fails while anything else is connected to the
    template, and TimescaleDB's launcher starts a job scheduler connected to every database that
    has the extension. So a template, once migrated, is closed to connections and its remaining
    sessions are ended: the launcher starts no scheduler for a database that allows no
    connections, a scheduler that is started anyway exits at once (it checks), and one that
    was running is not restarted once it ends; CREATE DATABASE waits up to 5 s for a
    terminated session to go. This keeps the test servers as production runs them (background
    jobs on), rather than turning TimescaleDB's workers off, which would leave the template
    copy at the mercy of whatever else connects.
    """

    def __init__(self, server: PgServer, default_mode: str) -> None:
        self.server = server
        self.default_mode = default_mode
        self.names: dict[str, str] = {}

    def get(self, mode: str) -> str:
        if mode == "default":
            mode = self.default_mode
        if mode not in self.names:
            name = f"anbu_tpl_{mode[:4]}_{uuid.uuid4().hex[:8]}"
            dsn = self.server.create(name)
            # the default mode's template is made as production makes it: the server decides
            migrate(dsn, storage="auto" if mode == self.default_mode else mode)
            with psycopg.connect(dsn) as conn:
                made = storage_mode(conn)
            assert made == mode, f"template for {mode} came out as {made}"
            with psycopg.connect(self.server.admin_dsn, autocommit=True) as conn:
                conn.execute(f'ALTER DATABASE "{name}" WITH ALLOW_CONNECTIONS false')
                conn.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                    " WHERE datname = %s AND pid <> pg_backend_pid()",
                    (name,),
                )
            self.names[mode] = name
        return self.names[mode]


@pytest.fixture(scope="session")
def templates(pg_server: PgServer, request: pytest.FixtureRequest) -> Iterator[Templates]:
    made = Templates(pg_server, request.config.stash[_MODES][0])
    yield made
    for name in made.names.values():
        pg_server.drop(name)


@pytest.fixture(scope="session")
def template_db(templates: Templates) -> str:
    """The default mode's template database, copied for each test."""
    return templates.get("default")


@pytest.fixture
def storage(request: pytest.FixtureRequest) -> str:
    """This test's storage mode: a parameter for tests marked storage_modes, else the default."""
    mode = getattr(request, "param", "default")
    return request.config.stash[_MODES][0] if mode == "default" else str(mode)


@pytest.fixture
def db_url(pg_server: PgServer, templates: Templates, storage: str) -> Iterator[str]:
    """A fresh, fully migrated database for one test, in this test's storage mode."""
    name = f"anbu_t{os.getpid()}_{next(_counter)}"
    dsn = pg_server.create(name, template=templates.get(storage))
    yield dsn
    pg_server.drop(name)


@pytest.fixture
def database(db_url: str) -> Iterator[Database]:
    db = Database(db_url, min_size=1, max_size=8)
    db.open()
    yield db
    db.close()


@pytest.fixture(scope="session")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedMosquitto]:
    """Mosquitto running the production mosquitto.conf on a free port."""
    if mosquitto_binary() is None:
        pytest.fail(
            "mosquitto is not installed: `make test` installs it (apt-get install mosquitto)"
        )
    mq = EmbeddedMosquitto(tmp_path_factory.mktemp("mosquitto"), users={"ingest": INGEST_PASSWORD})
    mq.start()
    yield mq
    mq.stop()


@pytest.fixture
def unique() -> str:
    """A short id unique to this test: prefix gateway ids, client ids and share groups with it."""
    return uuid.uuid4().hex[:8]


@pytest.fixture
def settings(db_url: str, broker: EmbeddedMosquitto, unique: str, tmp_path: Path) -> Settings:
    """Settings pointing at this test's database and the session's broker."""
    return Settings(
        database_url=db_url,
        mqtt_host="127.0.0.1",
        mqtt_port=broker.port,
        mqtt_username="ingest",
        mqtt_password=INGEST_PASSWORD,
        mqtt_client_id=f"ingest-{unique}",
        mqtt_shared_group=f"ingest{unique}",
    )
