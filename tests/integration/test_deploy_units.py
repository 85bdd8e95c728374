"""deploy/: the systemd units pass `systemd-analyze verify`, and each role started with the exact
command line and environment its unit names (the env file swapped for one made from
deploy/anbu.env.example, pointing at the throwaway servers) passes its health check, then
stops on SIGTERM with exit 0 within the unit's TimeoutStopSec. The backup and migrate units
run as written; the env template lists every setting without a safe default, secrets first,
and its own "generate" commands make secrets that `anbu serve` accepts; the nginx site is
valid, keeps /metrics from the internet and passes the forwarded headers.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import shlex
import shutil
import signal
import socket
import ssl
import subprocess  # nosec B404
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.client import HTTPConnection
from pathlib import Path

import httpx
import pytest

from anbu.service import WEB_KEEP_ALIVE_S
from core.config import SECRET_MIN_LENGTH, SECRETS_OF_ROLE, Settings
from simulators.servers import EmbeddedMosquitto, free_port
from tests.conftest import INGEST_PASSWORD

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
UNITS = DEPLOY / "systemd"
ENV_EXAMPLE = DEPLOY / "anbu.env.example"
NGINX_SITE = DEPLOY / "nginx" / "anbu.conf"
ANBU_IN_UNITS = "/opt/anbu/venv/bin/anbu"
LOCAL_ANBU = str(Path(sys.executable).with_name("anbu"))
ENV_FILE = "/etc/anbu/anbu.env"
ROLE_UNITS = {"ingest": "anbu-ingest@.service", "worker": "anbu-worker.service",
              "web": "anbu-web@.service"}  # fmt: skip
SECRETS = {*SECRET_MIN_LENGTH, *(n for names in SECRETS_OF_ROLE.values() for n in names),
           "metrics_token"}  # fmt: skip
# Settings whose default serves the demo, not a district: each must be in the env template.
NO_SAFE_DEFAULT = {
    "database_url",  # the demo's embedded server
    "twilio_account_sid",  # a placeholder account
    "twilio_from_number",
    "public_base_url",  # http://127.0.0.1: Twilio could not reach it, cookies not Secure
    "mqtt_host",
    "mqtt_port",  # 1883: the production broker has no plain listener
    "mqtt_tls_ca",
    "mqtt_tls_cert",
    "mqtt_tls_key",
    "mqtt_client_id",  # ingest@<n> adds its replica id to it
    "ingest_replicas",
    "web_max_body_bytes",  # kept equal to nginx's client_max_body_size
}


# -- reading units and env files as systemd does ------------------------------------------------


@dataclass
class Unit:
    """A unit file's settings in order, repeated keys kept (Environment=, ExecStartPost=...)."""

    path: Path
    sections: dict[str, list[tuple[str, str]]] = field(default_factory=dict)

    def all(self, section: str, key: str) -> list[str]:
        return [v for k, v in self.sections.get(section, []) if k == key]

    def one(self, key: str, section: str = "Service") -> str:
        values = self.all(section, key)
        assert len(values) == 1, f"{self.path.name}: {key}= {values}"
        return values[0]


def parse_unit(path: Path) -> Unit:
    unit = Unit(path)
    section = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        if line.startswith("["):
            section = line.strip("[]")
            unit.sections.setdefault(section, [])
            continue
        key, _, value = line.partition("=")
        unit.sections[section].append((key.strip(), value.strip()))
    return unit


def specifiers(value: str, instance: str, host: str) -> str:
    """systemd's %i, %I, %H and %% in `value`."""
    table = {"i": instance, "I": instance, "H": host, "%": "%"}
    return re.sub(r"%(.)", lambda m: table[m.group(1)], value)


def read_env_file(path: Path) -> dict[str, str]:
    out = {}
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        key, sep, value = line.partition("=")
        assert sep and key == key.strip() and " " not in key, f"{path.name}: {raw!r}"
        out[key] = value
    return out


def timespan(text: str) -> float:
    """A systemd time span such as 30s, 3min, 1h."""
    units = {"": 1, "s": 1, "sec": 1, "min": 60, "m": 60, "h": 3600}
    total = 0.0
    for number, unit in re.findall(r"(\d+(?:\.\d+)?)\s*([a-z]*)", text):
        total += float(number) * units[unit]
    return total


def unit_environment(unit: Unit, instance: str, files: dict[str, Path]) -> dict[str, str]:
    """The environment systemd gives the unit's commands: a minimal base, Environment=, then
    EnvironmentFile= (which overrides it), each file mapped through `files`."""
    host = socket.gethostname()
    env = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
           "LANG": "C.UTF-8"}  # fmt: skip
    for value in unit.all("Service", "Environment"):
        key, _, val = specifiers(value, instance, host).partition("=")
        env[key] = val
    for value in unit.all("Service", "EnvironmentFile"):
        name = specifiers(value, instance, host)
        optional = name.startswith("-")
        path = files.get(name.lstrip("-"))
        assert path is not None or optional, f"{unit.path.name}: no stand-in for {name}"
        if path is not None and path.exists():
            env.update(read_env_file(path))
    return env


def command(unit: Unit, key: str, instance: str, swap: dict[str, str]) -> list[str]:
    """The unit's `key` command line, split as systemd splits it, paths swapped per `swap`."""
    (line,) = unit.all("Service", key)
    line = specifiers(line.lstrip("-"), instance, socket.gethostname())
    for old, new in swap.items():
        line = line.replace(old, new)
    return shlex.split(line)


def local(unit_text: str) -> str:
    return unit_text.replace(ANBU_IN_UNITS, LOCAL_ANBU)


# -- systemd-analyze verify -----------------------------------------------------------------------


def test_units_pass_systemd_analyze_verify(tmp_path: Path) -> None:
    tool = shutil.which("systemd-analyze")
    if tool is None:
        pytest.fail("systemd-analyze is missing: scripts/system-deps.sh installs systemd")
    names = sorted(p.name for p in UNITS.iterdir())
    assert {"anbu-backup.service", "anbu-backup.timer", *ROLE_UNITS.values()} <= set(names)
    for name in names:  # verify needs the executables to exist: the venv stands for /opt/anbu
        (tmp_path / name).write_text(local((UNITS / name).read_text()))
    instances = [n.replace("@.", "@1.") for n in names]
    done = subprocess.run(  # nosec B603
        [tool, "verify", *instances], cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    said = (done.stdout + done.stderr).strip()
    assert done.returncode == 0 and not said, said
    # and it does catch a mistake: a misspelt key in a copy is reported
    bad = tmp_path / "bad.service"
    bad.write_text(
        (tmp_path / ROLE_UNITS["worker"]).read_text().replace("ProtectHome", "ProtctHome")
    )
    done = subprocess.run(  # nosec B603
        [tool, "verify", "bad.service"], cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert "ProtctHome" in done.stdout + done.stderr


@pytest.mark.parametrize("role", sorted(ROLE_UNITS))
def test_role_unit_limits_and_hardening(role: str) -> None:
    unit = parse_unit(UNITS / ROLE_UNITS[role])
    assert unit.one("User") == "anbu" and unit.one("Group") == "anbu"
    assert unit.all("Service", "EnvironmentFile")[0] == ENV_FILE
    assert unit.one("ExecStart") == f"{ANBU_IN_UNITS} serve {role}"
    assert unit.one("ExecStartPost").startswith(f"{ANBU_IN_UNITS} health {role} ")
    assert unit.one("Restart") == "on-failure"
    for key in ("MemoryMax", "TasksMax", "LimitNOFILE"):
        assert unit.one(key)
    for key, want in (("NoNewPrivileges", "true"), ("ProtectSystem", "strict"),
                      ("ProtectHome", "true"), ("PrivateTmp", "true"), ("KillMode", "mixed")):  # fmt: skip
        assert unit.one(key) == want, key
    assert not unit.all("Service", "ReadWritePaths"), "the roles write no file"
    # the roles stop within seconds (README "Stopping"): a short TimeoutStopSec, not 90 s
    assert 10 <= timespan(unit.one("TimeoutStopSec")) <= 60
    assert any(v.startswith("PGAPPNAME=") for v in unit.all("Service", "Environment"))


def test_ingest_replicas_have_their_own_client_ids() -> None:
    """The template's instance name becomes ANBU_INGEST_REPLICA: two replicas, two stable ids."""
    from ingest.identity import client_id

    unit = parse_unit(UNITS / ROLE_UNITS["ingest"])
    ids = []
    for instance in ("1", "2"):
        env = unit_environment(unit, instance, {ENV_FILE: ENV_EXAMPLE})
        assert env["ANBU_INGEST_REPLICA"] == instance
        fields = {k.removeprefix("ANBU_").lower(): v for k, v in env.items()
                  if k.startswith("ANBU_") and v}  # fmt: skip
        ids.append(client_id(Settings(**fields)))
    assert ids == ["anbu-ingest-1", "anbu-ingest-2"]


# -- the env template ------------------------------------------------------------------------------


def example_lines() -> list[tuple[str, str, list[str]]]:
    """(name, value, the comment lines above it) for each variable of the template."""
    out, comments = [], []
    for raw in ENV_EXAMPLE.read_text().splitlines():
        line = raw.strip()
        if line.startswith("#"):
            comments.append(line)
        elif line:
            name, _, value = line.partition("=")
            out.append((name, value, comments))
            comments = []
        else:
            comments = []
    return out


def test_env_example_lists_every_setting_without_a_safe_default() -> None:
    lines = example_lines()
    names = [n for n, _, _ in lines]
    known = {f"ANBU_{f.upper()}" for f in Settings.model_fields}
    assert not set(names) - known, f"not settings: {set(names) - known}"
    assert len(names) == len(set(names)), "a variable twice"
    published = {f for f, info in Settings.model_fields.items()
                 if info.default in ("change-me-in-production", "anbu-dev-auth-token",
                                     "ingest-dev-password")}  # fmt: skip
    wanted = {f"ANBU_{f.upper()}" for f in SECRETS | NO_SAFE_DEFAULT | published}
    assert not wanted - set(names), f"missing: {sorted(wanted - set(names))}"
    # secrets first: every secret comes before the first setting that is not one
    secret_names = {f"ANBU_{f.upper()}" for f in SECRETS} | {"ANBU_DATA_KEYS_OLD"}
    positions = [i for i, n in enumerate(names) if n in secret_names]
    assert positions == list(range(len(positions))), names
    # the values it gives must agree with the broker's and nginx's files
    values = dict((n, v) for n, v, _ in lines)
    services = re.search(r"^listener (\d+) .*# port services", (DEPLOY / "mosquitto.production.conf").read_text(), re.M)  # fmt: skip
    assert services and values["ANBU_MQTT_PORT"] == services.group(1)
    body = re.search(r"client_max_body_size (\d+)k;", NGINX_SITE.read_text())
    idle = re.search(r"upstream anbu_web \{[^}]*keepalive_timeout (\d+)s;", NGINX_SITE.read_text())
    assert idle and int(idle.group(1)) < WEB_KEEP_ALIVE_S, "nginx must close idle ones first"
    assert body and int(values["ANBU_WEB_MAX_BODY_BYTES"]) == int(body.group(1)) * 1024
    assert values["ANBU_PUBLIC_BASE_URL"].startswith("https://")


def filled_example(tmp_path: Path, overrides: dict[str, str]) -> dict[str, str]:
    """The template's values, each secret made by the template's own `generate:` command (the
    Twilio token, which comes from Twilio, made random), then `overrides`."""
    values = {}
    for name, value, comments in example_lines():
        said = " ".join(comments)
        found = re.search(r"generate: (.+)$", said)
        if found and not value:
            done = subprocess.run(  # nosec B602  # the template's own command, as written
                found.group(1), shell=True, capture_output=True, text=True, check=True,
                env={**os.environ, "PATH": f"{Path(LOCAL_ANBU).parent}:{os.environ['PATH']}"},
            )  # fmt: skip
            value = done.stdout.strip()
        values[name] = value
    values["ANBU_TWILIO_AUTH_TOKEN"] = secrets.token_hex(16)
    values.update(overrides)
    return values


def test_generated_secrets_are_accepted(tmp_path: Path) -> None:
    values = filled_example(tmp_path, {})
    fields = {k.removeprefix("ANBU_").lower(): v for k, v in values.items() if v}
    settings = Settings(**fields)
    assert settings.unsafe_secrets(("web", "ingest", "worker")) == []
    assert settings.metrics_exposure() == []
    # and the template as shipped is refused: nothing serves on an empty secret
    blank = Settings(**{k.removeprefix("ANBU_").lower(): v for k, v, _ in example_lines()})
    assert len(blank.unsafe_secrets(("web", "ingest", "worker"))) >= 4


# -- each role, started as its unit starts it --------------------------------------------------------


def write_env(path: Path, values: dict[str, str]) -> Path:
    path.write_text("".join(f"{k}={v}\n" for k, v in values.items()))
    path.chmod(0o600)
    return path


@pytest.fixture
def deploy_env(
    tmp_path: Path, db_url: str, broker: EmbeddedMosquitto, unique: str
) -> Iterator[dict[str, Path]]:
    """Stand-ins for /etc/anbu/*.env pointing at this test's database and the session broker."""
    web_port = free_port()
    values = filled_example(tmp_path, {
        "ANBU_DATABASE_URL": db_url,
        "ANBU_MQTT_HOST": "127.0.0.1", "ANBU_MQTT_PORT": str(broker.port),
        "ANBU_MQTT_PASSWORD": INGEST_PASSWORD,
        "ANBU_MQTT_USERNAME": "ingest",  # the session broker has one ingest account, not one per replica
        "ANBU_MQTT_TLS_CA": "", "ANBU_MQTT_TLS_CERT": "", "ANBU_MQTT_TLS_KEY": "",
        "ANBU_MQTT_CLIENT_ID": f"deploy{unique}", "ANBU_MQTT_SHARED_GROUP": f"deploy{unique}",
        "ANBU_PUBLIC_BASE_URL": f"http://127.0.0.1:{web_port}",
        "ANBU_TWILIO_ACCOUNT_SID": "AC" + "7" * 32, "ANBU_TWILIO_FROM_NUMBER": "+8227001234",
    })  # fmt: skip
    yield {
        ENV_FILE: write_env(tmp_path / "anbu.env", values),
        "/etc/anbu/ingest-1.env": write_env(
            tmp_path / "ingest-1.env", {"ANBU_INGEST_METRICS_PORT": str(free_port())}
        ),
        "web_port": Path(str(web_port)),
    }


def run(
    args: list[str], env: dict[str, str], timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, env=env, capture_output=True, text=True, timeout=timeout)  # nosec B603


@pytest.mark.parametrize("role", sorted(ROLE_UNITS))
def test_role_starts_as_its_unit_says_is_healthy_and_stops_on_sigterm(
    role: str, deploy_env: dict[str, Path], tmp_path: Path
) -> None:
    unit = parse_unit(UNITS / ROLE_UNITS[role])
    instance = {"ingest": "1", "web": str(deploy_env["web_port"]), "worker": ""}[role]
    env = unit_environment(unit, instance, deploy_env)
    swap = {ANBU_IN_UNITS: LOCAL_ANBU}
    start = command(unit, "ExecStart", instance, swap)
    check = command(unit, "ExecStartPost", instance, swap)
    at_once = [a if a != check[check.index("--wait") + 1] else "0" for a in check]
    before = run(at_once, env)
    assert before.returncode == 1, f"healthy before it started:\n{before.stdout}{before.stderr}"

    log = tmp_path / f"{role}.log"
    with log.open("w") as out:
        proc = subprocess.Popen(start, env=env, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)  # nosec B603  # fmt: skip
    try:
        started = time.monotonic()
        env["MAINPID"] = str(proc.pid)  # as systemd gives ExecStartPost
        healthy = run(check, env, timeout=timespan(unit.one("TimeoutStartSec")))
        assert healthy.returncode == 0, f"{healthy.stdout}{healthy.stderr}\n{log.read_text()}"
        assert proc.poll() is None, log.read_text()
        print(f"{role}: healthy {time.monotonic() - started:.1f} s after start")
        if role == "worker":  # the monitoring's full check, backlog included
            full = run([LOCAL_ANBU, "health", "worker"], env)
            assert full.returncode == 0, full.stdout + full.stderr
        t0 = time.monotonic()
        proc.send_signal(signal.SIGTERM)  # KillMode=mixed: SIGTERM to the main process only
        proc.wait(timespan(unit.one("TimeoutStopSec")))
        took = time.monotonic() - t0
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == 0, log.read_text()
    print(f"{role}: stopped by SIGTERM in {took:.1f} s")
    after = run(at_once, env)
    assert after.returncode == 1, f"healthy after it stopped:\n{after.stdout}"


def test_backup_and_migrate_units_run_as_written(
    deploy_env: dict[str, Path], tmp_path: Path
) -> None:
    backups = tmp_path / "backups"
    backups.mkdir()
    unit = parse_unit(UNITS / "anbu-backup.service")
    assert unit.one("ReadWritePaths") == "/var/backups/anbu"
    env = unit_environment(unit, "", deploy_env)
    swap = {ANBU_IN_UNITS: LOCAL_ANBU, "/var/backups/anbu": str(backups)}
    old = backups / "anbu-20250101T021500Z.dump"
    old.write_bytes(b"an old dump")
    os.utime(old, (time.time() - 20 * 86400,) * 2)
    done = run(command(unit, "ExecStart", "", swap), env, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    swept = run(command(unit, "ExecStartPost", "", swap), env)
    assert swept.returncode == 0, swept.stderr
    dumps = sorted(p.name for p in backups.iterdir())
    assert len(dumps) == 1 and re.fullmatch(r"anbu-\d{8}T\d{6}Z\.dump", dumps[0]), dumps
    assert (backups / dumps[0]).read_bytes()[:5] == b"PGDMP"
    timer = parse_unit(UNITS / "anbu-backup.timer")
    assert timer.one("OnCalendar", "Timer").endswith("Asia/Seoul")

    migrate = parse_unit(UNITS / "anbu-migrate.service")
    done = run(command(migrate, "ExecStart", "", swap), unit_environment(migrate, "", deploy_env))
    assert done.returncode == 0 and "up to date" in done.stdout, done.stdout + done.stderr


# -- nginx ---------------------------------------------------------------------------------------------


class _HangUp:
    """An upstream that reads each request and closes the connection without an answer, as a
    web instance does with a request it got on a kept connection just as it stopped."""

    def __init__(self) -> None:
        self._server = socket.create_server(("127.0.0.1", 0))
        self.port = int(self._server.getsockname()[1])
        self.taken = 0
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self._server.accept()
            except OSError:
                return
            with conn:
                conn.settimeout(5)
                data = b""
                with contextlib.suppress(OSError):
                    while b"\r\n\r\n" not in data:
                        chunk = conn.recv(65536)
                        if not chunk:
                            break
                        data += chunk
                if data.startswith(b"POST"):
                    self.taken += 1

    def close(self) -> None:
        self._server.close()


def test_nginx_site_proxies_the_web_role_and_not_its_metrics(
    deploy_env: dict[str, Path], tmp_path: Path
) -> None:
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    if not Path(nginx).exists():
        pytest.fail("nginx is missing: scripts/system-deps.sh installs it")
    unit = parse_unit(UNITS / ROLE_UNITS["web"])
    port = str(deploy_env["web_port"])
    env = unit_environment(unit, port, deploy_env)
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key),
                    "-out", str(cert), "-days", "1", "-subj", "/CN=anbu.example.go.kr",
                    "-addext", "subjectAltName=DNS:anbu.example.go.kr,IP:127.0.0.1"],
                   check=True, capture_output=True)  # nosec B603 B607  # fmt: skip
    https, http = free_port(), free_port()
    site = NGINX_SITE.read_text()
    site = re.sub(r"server 127\.0\.0\.1:8000 ", f"server 127.0.0.1:{port} ", site)
    hangup = _HangUp()  # the second instance: stopping, it closes a request without answer
    site = re.sub(r"server 127\.0\.0\.1:8001 ", f"server 127.0.0.1:{hangup.port} ", site)
    site = site.replace("listen 443", f"listen {https}").replace(
        "listen [::]:443", f"listen [::]:{https}"
    )
    site = site.replace("listen 80", f"listen {http}").replace(
        "listen [::]:80", f"listen [::]:{http}"
    )
    site = site.replace("/etc/letsencrypt/live/anbu.example.go.kr/fullchain.pem", str(cert))
    site = site.replace("/etc/letsencrypt/live/anbu.example.go.kr/privkey.pem", str(key))
    site = site.replace("/var/log/nginx/", f"{tmp_path}/")
    (tmp_path / "site.conf").write_text(site)
    temps = " ".join(f"{k}_temp_path {tmp_path}/{k};" for k in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))  # fmt: skip
    (tmp_path / "nginx.conf").write_text(
        f"pid {tmp_path}/nginx.pid; error_log {tmp_path}/error.log; daemon off;\n"
        f"events {{}}\nhttp {{ access_log off; {temps} include {tmp_path}/site.conf; }}\n"
    )
    checked = subprocess.run([nginx, "-t", "-p", str(tmp_path), "-c", str(tmp_path / "nginx.conf")],
                             capture_output=True, text=True)  # nosec B603  # fmt: skip
    assert checked.returncode == 0, checked.stderr
    with (tmp_path / "web.log").open("w") as out:
        web = subprocess.Popen(command(unit, "ExecStart", port, {ANBU_IN_UNITS: LOCAL_ANBU}),
                               env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)  # nosec B603  # fmt: skip
    proxy = subprocess.Popen([nginx, "-p", str(tmp_path), "-c", str(tmp_path / "nginx.conf")],
                             stderr=subprocess.PIPE)  # nosec B603  # fmt: skip
    try:
        env["MAINPID"] = str(web.pid)
        ready = run(command(unit, "ExecStartPost", port, {ANBU_IN_UNITS: LOCAL_ANBU}), env)
        assert ready.returncode == 0, ready.stdout + (tmp_path / "web.log").read_text()
        tls = ssl.create_default_context(cafile=str(cert))
        with httpx.Client(base_url=f"https://127.0.0.1:{https}", verify=tls,
                          headers={"Host": "anbu.example.go.kr"}) as client:  # fmt: skip
            deadline = time.monotonic() + 30
            while True:  # nginx is listening once its port accepts a connection
                try:
                    socket.create_connection(("127.0.0.1", https), 1).close()
                    break
                except OSError:
                    assert proxy.poll() is None and time.monotonic() < deadline, "nginx not up"
                    time.sleep(0.1)
            health = client.get("/healthz")
            assert health.status_code == 200 and health.json()["database"] is True
            assert "max-age" in health.headers["strict-transport-security"]
            assert len(health.headers.get_list("strict-transport-security")) == 1
            token = read_env_file(deploy_env[ENV_FILE])["ANBU_METRICS_TOKEN"]
            auth = {"Authorization": f"Bearer {token}"}
            assert client.get("/metrics", headers=auth).status_code == 404  # not the app's 200
            direct = httpx.get(f"http://127.0.0.1:{port}/metrics", headers=auth)
            assert direct.status_code == 200  # Prometheus on the host still has them
            # an instance keeps an idle connection longer than nginx does (uvicorn's default 5 s
            # closed it under nginx's kept upstream connection: a webhook sent there was lost)
            kept = HTTPConnection("127.0.0.1", int(port), timeout=10)
            try:
                for pause in (0.0, 6.0):
                    time.sleep(pause)
                    kept.request("GET", "/healthz")
                    answer = kept.getresponse()
                    answer.read()
                    assert answer.status == 200
                    assert kept.sock is not None  # the same connection, never reopened
            finally:
                kept.close()
            # Host and X-Forwarded-Proto reach the app: the URLs it builds are the public ones
            moved = client.get("/alerts/")
            assert moved.status_code in (301, 307, 308), moved.status_code
            assert moved.headers["location"] == "https://anbu.example.go.kr/alerts"
            big = client.post("/twilio/status/1", content=b"x" * (70 * 1024))
            assert big.status_code == 413
            for _ in range(4):  # round robin: half of them are sent to the closing instance
                webhook = client.post("/twilio/status/1", data={"CallStatus": "completed"})
                assert webhook.status_code == 403  # reached anbu, which checks the signature
            assert hangup.taken >= 1, "nginx sent no webhook to the closing instance"
            plain = httpx.get(
                f"http://127.0.0.1:{http}/alerts", headers={"Host": "anbu.example.go.kr"}
            )
            assert plain.status_code == 301
            assert plain.headers["location"] == "https://anbu.example.go.kr/alerts"
    finally:
        hangup.close()
        for p in (proxy, web):
            if p.poll() is None:
                p.send_signal(signal.SIGTERM if p is web else signal.SIGQUIT)
                try:
                    p.wait(30)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()
