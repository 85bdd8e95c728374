"""Test harness: one throwaway PostgreSQL and one Mosquitto per session, a fresh database per test.

Set ANBU_TEST_DATABASE_URL to use an existing server instead of starting one (the
harness creates and drops databases on it).
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
from core.db import Database, migrate
from simulators.servers import EmbeddedMosquitto, EmbeddedPostgres, mosquitto_binary

INGEST_PASSWORD = "ingest-test-password"
_counter = itertools.count()


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


@pytest.fixture(scope="session")
def template_db(pg_server: PgServer) -> Iterator[str]:
    """A database with every migration applied, copied for each test."""
    name = f"anbu_tpl_{uuid.uuid4().hex[:8]}"
    dsn = pg_server.create(name)
    migrate(dsn)
    yield name
    pg_server.drop(name)


@pytest.fixture
def db_url(pg_server: PgServer, template_db: str) -> Iterator[str]:
    """A fresh, fully migrated database for one test."""
    name = f"anbu_t{os.getpid()}_{next(_counter)}"
    dsn = pg_server.create(name, template=template_db)
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
    """Mosquitto running the repo's mosquitto.conf on a free port."""
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
