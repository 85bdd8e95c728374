"""`anbu loadgen`'s Fleet: many gateways' connections from one thread, through a real broker
and the real IngestService; and the broker's open-file limit, which caps how many gateways
one Mosquitto holds (deploy/mosquitto.service.d/anbu.conf raises Debian's 1024).

Each test runs its own Mosquitto (one is restarted, one is started under a low limit).
"""

from __future__ import annotations

import contextlib
import threading
import time
from pathlib import Path

import psycopg
import pytest

import registry
from core.clock import SystemClock
from core.config import Settings
from core.db import Database
from ingest.consumer import IngestService
from simulators.loadgen import SENSORS, Fleet, register_load_homes, run_load
from simulators.replay import ReplayTarget
from simulators.servers import EmbeddedMosquitto
from tests.conftest import INGEST_PASSWORD
from tests.integration.test_deploy_units import parse_unit
from tests.integration.test_ingest_store_process import eventually

DROP_IN = Path(__file__).resolve().parents[2] / "deploy" / "mosquitto.service.d" / "anbu.conf"
PASSWORD = "load-pw"


def _stored(db_url: str, prefix: str) -> list[tuple[str, float]]:
    """(vendor id, publish-to-ingest delay in seconds) of every stored reading of the load."""
    with psycopg.connect(db_url) as conn:
        rows = conn.execute(
            """SELECT s.vendor_id, extract(epoch FROM r.received_at - r.ts)::float8
               FROM anbu.readings r JOIN anbu.sensor s ON s.id = r.sensor_id
               WHERE s.gateway_id LIKE %s""",
            (prefix + "%",),
        ).fetchall()
    return [(str(v), float(d)) for v, d in rows]


def test_one_thread_drives_every_gateway_and_loses_nothing_across_a_broker_restart(
    settings: Settings, database: Database, db_url: str, tmp_path: Path, unique: str
) -> None:
    prefix = f"lg{unique}-"
    names = [f"{prefix}{n:04d}" for n in range(300)]
    with psycopg.connect(db_url) as conn:
        register_load_homes(conn, names)
    mq = EmbeddedMosquitto(tmp_path / "mq", users={"ingest": INGEST_PASSWORD,
                                                   **dict.fromkeys(names, PASSWORD)},
                           hash_once=True)  # fmt: skip
    # plain subscriptions, which the broker keeps for ingest's session across its restart
    ours = settings.model_copy(update={"mqtt_port": mq.port, "mqtt_shared_group": ""})
    service = IngestService(ours, database, SystemClock())
    fleet = Fleet(ReplayTarget("127.0.0.1", mq.port, PASSWORD, prefix), names, opening=64)
    with contextlib.ExitStack() as stack:
        mq.start()
        stack.callback(mq.stop)
        service.start()
        stack.callback(service.stop)
        stack.callback(fleet.close)
        assert service.subscribed.wait(15)
        threads = threading.active_count()
        fleet.connect_all(timeout=60)
        assert len(fleet.connected) == len(names)
        assert threading.active_count() == threads, "the fleet started threads of its own"
        first = run_load(fleet.target, names, 300, 1.5, fleet=fleet)
        assert first.acknowledged == first.messages >= len(names)  # every gateway published
        assert first.unrouted == first.rejected == 0
        restarted: list[float] = []

        def restart() -> None:
            time.sleep(0.5)
            mq.stop()
            mq.start()
            restarted.append(time.monotonic())

        down = threading.Thread(target=restart)
        down.start()
        second = run_load(fleet.target, names, 300, 3.0, fleet=fleet)
        down.join()
        assert restarted and fleet.all_connected_at is not None
        assert fleet.all_connected_at > restarted[0], "not every gateway connected again"
        assert second.acknowledged == second.messages  # after the restart too, each once
        total = first.messages + second.messages
        eventually(lambda: len(_stored(db_url, prefix)) >= total, timeout=60,
                   what="every acknowledged message stored")  # fmt: skip
        rows = _stored(db_url, prefix)
        assert len(rows) == total  # one reading a message, each its own (sensor, ts)
        assert {v for v, _ in rows} == {v for v, _, _ in SENSORS}
        assert min(d for _, d in rows) >= 0  # stamped at publish, received after


def test_made_up_homes_never_take_a_real_residents_id(db_url: str, unique: str) -> None:
    real = f"real{unique}"
    with psycopg.connect(db_url) as conn:
        registry.add_dong(conn, "1111051500", "청운효자동", "종로구")
        rid = registry.add_resident(conn, real, "1111051500", "김순자", "010-1234-5678")
        registry.add_gateway(conn, real, rid)
        with pytest.raises(ValueError, match="enrolled outside"):
            register_load_homes(conn, [f"load{unique}", real])
        row = conn.execute(
            "SELECT dong_code, display_name FROM anbu.resident WHERE home = %s", (real,)
        ).fetchone()
        assert row == ("1111051500", "김순자")
        made = conn.execute(
            "SELECT count(*) FROM anbu.resident WHERE home = %s", (f"load{unique}",)
        ).fetchone()
        assert made == (0,)  # nothing written


def _connected_under(limit: int, names: list[str], tmp_path: Path) -> int:
    mq = EmbeddedMosquitto(tmp_path, users=dict.fromkeys(names, PASSWORD), hash_once=True,
                           open_files=limit)  # fmt: skip
    mq.start()
    fleet = Fleet(ReplayTarget("127.0.0.1", mq.port, PASSWORD, "nofile-"), names, opening=64)
    try:
        with contextlib.suppress(TimeoutError):  # the count says how many the broker took
            fleet.connect_all(timeout=8)
        return len(fleet.connected)  # before close(), which disconnects them
    finally:
        fleet.close()
        mq.stop()


def test_the_brokers_open_file_limit_caps_its_gateways_and_the_drop_in_lifts_it(
    tmp_path: Path,
) -> None:
    import resource

    limit = int(parse_unit(DROP_IN).one("LimitNOFILE"))
    names = [f"nofile-{n:04d}" for n in range(1100)]
    if resource.getrlimit(resource.RLIMIT_NOFILE)[1] < len(names) + 100:
        pytest.fail("this machine's hard limit on open files is below 1,200")
    # systemd's default soft limit for a unit that sets none, as Debian's mosquitto.service:
    # its listeners, log and persistence take a few; the rest are gateways, and no more
    assert 1000 <= _connected_under(1024, names, tmp_path / "default") < 1024
    assert limit >= 65536
    assert _connected_under(limit, names, tmp_path / "drop-in") == len(names)
