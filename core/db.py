"""PostgreSQL access: a connection pool and numbered SQL migrations applied under a lock."""

from __future__ import annotations

import logging
import select
import time
import weakref
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from importlib import resources
from typing import Any, Protocol, TypeVar

import psycopg
from psycopg import errors as pg
from psycopg_pool import ConnectionPool, PoolTimeout

T = TypeVar("T")

log = logging.getLogger(__name__)

MIGRATION_LOCK = 7_470_301  # advisory lock key: one migrator at a time
STORAGE_MODES = ("auto", "partitions", "timescaledb")


@dataclass(frozen=True, slots=True)
class Migration:
    """One numbered SQL file."""

    version: int
    name: str
    sql: str


def load_migrations() -> list[Migration]:
    """The migrations shipped in core/migrations, in version order."""
    found = []
    for entry in resources.files("core.migrations").iterdir():
        if not entry.name.endswith(".sql"):
            continue
        number, _, rest = entry.name.partition("_")
        found.append(Migration(int(number), rest.removesuffix(".sql"), entry.read_text("utf-8")))
    found.sort(key=lambda m: m.version)
    versions = [m.version for m in found]
    if len(set(versions)) != len(versions):
        raise RuntimeError(f"duplicate migration numbers: {versions}")
    return found


def timescale_unusable(conn: psycopg.Connection[Any]) -> str | None:
    """None when this server can run TimescaleDB (the extension is available and the library
    is preloaded), else why not. Asks the server; loads nothing (migration 0002 asks the same)."""
    row = conn.execute(
        """SELECT EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb'),
                  current_setting('shared_preload_libraries')
                      ~ '(^|[\\s,"/])timescaledb([\\s,"]|$)'"""
    ).fetchone()
    assert row is not None
    available, preloaded = bool(row[0]), bool(row[1])
    if not available:
        return "the timescaledb extension is not installed on this server"
    if not preloaded:
        return "the timescaledb extension is installed but not in shared_preload_libraries"
    return None


def _log_notice(diag: psycopg.errors.Diagnostic) -> None:
    message = diag.message_primary or ""
    if message.startswith("anbu storage:"):
        # the storage choice, made once when the schema is created (migration 0002)
        level = logging.WARNING if "not preloaded" in message else logging.INFO
        log.log(level, message)
    elif diag.severity_nonlocalized not in ("NOTICE", "DEBUG", "LOG", "INFO"):
        log.warning("migration: %s", message)


def migrate(conninfo: str, storage: str = "auto") -> list[int]:
    """Apply every migration not yet recorded; returns the versions applied now.

    `storage` picks the readings' storage for a database being created: 'auto' (TimescaleDB
    when the server can run it, else native partitions), 'partitions', or 'timescaledb' (fails
    when the server cannot). A database that already has its schema keeps the mode it has.
    """
    if storage not in STORAGE_MODES:
        raise ValueError(f"storage must be one of {STORAGE_MODES}, not {storage!r}")
    applied_now: list[int] = []
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.add_notice_handler(_log_notice)
        conn.execute("SELECT pg_advisory_lock(%s)", (MIGRATION_LOCK,))
        try:
            if storage != "auto":
                conn.execute("SELECT set_config('anbu.storage', %s, false)", (storage,))
            conn.execute("CREATE SCHEMA IF NOT EXISTS anbu")
            conn.execute(
                """CREATE TABLE IF NOT EXISTS anbu.schema_migrations (
                       version integer PRIMARY KEY,
                       name text NOT NULL,
                       applied_at timestamptz NOT NULL DEFAULT now())"""
            )
            done = {row[0] for row in conn.execute("SELECT version FROM anbu.schema_migrations")}
            for migration in load_migrations():
                if migration.version in done:
                    continue
                with conn.transaction():
                    conn.execute(migration.sql.encode())
                    conn.execute(
                        "INSERT INTO anbu.schema_migrations (version, name) VALUES (%s, %s)",
                        (migration.version, migration.name),
                    )
                log.info("migration applied", extra={"version": migration.version})
                applied_now.append(migration.version)
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (MIGRATION_LOCK,))
    return applied_now


def storage_mode(conn: psycopg.Connection[Any]) -> str:
    """'timescaledb' or 'partitions', as chosen when the schema was created."""
    row = conn.execute("SELECT mode FROM anbu.storage_mode").fetchone()
    assert row is not None
    return str(row[0])


# what a retry shortly can cure: no connection, the server going away or refusing more, a
# serialization failure or deadlock (the transaction runs again)
_PASSING = (
    PoolTimeout,
    pg.ConnectionException,
    pg.CannotConnectNow,
    pg.AdminShutdown,
    pg.CrashShutdown,
    pg.TooManyConnections,
    pg.SerializationFailure,
    pg.DeadlockDetected,
)


def retryable(exc: BaseException) -> bool:
    """Whether a database failure may pass if the transaction is run again shortly."""
    if isinstance(exc, _PASSING):
        return True
    # libpq lost the connection: no SQLSTATE at all
    return isinstance(exc, psycopg.OperationalError) and exc.sqlstate is None


# A connection back in the pool less than this long ago is handed out without the check's round
# trip: under load (a round of calls: hundreds of checkouts a second) every checkout paid one,
# 1 in 8 of a web worker's samples. Still checked before they are given out: a connection idle
# longer (the one an idle timeout has most likely cut), one the server sent something (a
# restart's or a termination's FATAL), and every connection returned before the last failure
# that a retry may cure (a server gone silently, as in a failover, cuts them all at once: one
# request finds out, not one per pooled connection).
CHECK_IDLE_S = 2.0
CONNECT_TIMEOUT_S = 10  # a new connection that takes longer is an error, not a 130 s wait


class Watch(Protocol):
    """Told of each Database.connection() block opened in its context (see `watched`)."""

    def opened(self, conn: psycopg.Connection[Any]) -> None:
        """The block begins, before the caller's first statement."""

    def committing(self, conn: psycopg.Connection[Any]) -> None:
        """The block ended without an exception: its transaction is about to commit. Raising
        here rolls the whole block back."""


_WATCH: ContextVar[Watch | None] = ContextVar("anbu_db_watch", default=None)


@contextmanager
def watched(watch: Watch) -> Iterator[None]:
    """Every Database.connection() block in this context (and in threads started from it with
    the context copied, as the web framework's are) tells `watch`."""
    token = _WATCH.set(watch)
    try:
        yield
    finally:
        _WATCH.reset(token)


class _Freshness:
    """When each connection was last given back through Database.connection(), and since when
    nothing given back earlier is trusted; the pool's check for the rest."""

    def __init__(self) -> None:
        self._back: weakref.WeakKeyDictionary[psycopg.Connection[Any], float] = (
            weakref.WeakKeyDictionary()
        )
        self._distrusted_at = 0.0

    def back(self, conn: psycopg.Connection[Any]) -> None:
        self._back[conn] = time.monotonic()

    def distrust(self) -> None:
        self._distrusted_at = time.monotonic()

    def check(self, conn: psycopg.Connection[Any]) -> None:
        back = self._back.get(conn)
        if (
            back is None
            or back <= self._distrusted_at
            or conn.broken
            or time.monotonic() - back >= CHECK_IDLE_S
            or _heard_from(conn)
        ):
            ConnectionPool.check_connection(conn)


def _heard_from(conn: psycopg.Connection[Any]) -> bool:
    """Whether the server sent an idle connection anything (a restart's or a termination's
    FATAL, or the connection closed): one poll of its socket, no round trip."""
    try:
        readable, _, _ = select.select([conn.pgconn.socket], [], [], 0)
    except (OSError, ValueError, psycopg.OperationalError):
        return True
    return bool(readable)


class Database:
    """Owns the connection pool; open() and close() do the work, the constructor does none."""

    def __init__(self, conninfo: str, min_size: int = 1, max_size: int = 8) -> None:
        self.conninfo = conninfo
        self._min = min_size
        self._max = max_size
        self._pool: ConnectionPool | None = None
        self._fresh = _Freshness()

    def open(self) -> None:
        self._pool = ConnectionPool(
            self.conninfo,
            min_size=self._min,
            max_size=self._max,
            open=False,
            kwargs={"autocommit": False, "connect_timeout": CONNECT_TIMEOUT_S},
            # no `reset` callback: with one the pool returns every connection through its
            # worker threads, behind any slow connect they are busy with
            check=self._fresh.check,
        )
        self._pool.open(wait=True, timeout=30)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.close()
            self._pool = None

    @property
    def pool(self) -> ConnectionPool:
        if self._pool is None:
            raise RuntimeError("Database.open() has not been called")
        return self._pool

    @contextmanager
    def connection(self) -> Iterator[psycopg.Connection[Any]]:
        """A pooled connection as a context manager; the block is one transaction."""
        watch = _WATCH.get()
        try:
            with self.pool.connection() as conn:
                if watch is not None:
                    watch.opened(conn)
                yield conn
                if watch is not None:
                    watch.committing(conn)
                self._fresh.back(conn)
        except BaseException as exc:
            if retryable(exc):  # the server went (or the pool ran short): check them all
                self._fresh.distrust()
            raise


def keyset_page(
    items: Sequence[T], limit: int, place: Callable[[T], tuple[Any, ...]]
) -> tuple[list[T], tuple[Any, ...] | None]:
    """A page of rows read with LIMIT limit + 1 (the one more tells whether more follow): its
    first `limit`, and the place of the last of them in the list's order when more follow (the
    keyset the next page starts after), else None."""
    page = list(items[:limit])
    if len(items) <= limit or not page:
        return page, None
    return page, place(page[-1])


def keyset_params(after: Sequence[Any] | None) -> dict[str, Any]:
    """A keyset's parts as the named parameters k0, k1... its seek condition uses."""
    return {f"k{i}": value for i, value in enumerate(after or ())}
