"""A small ingest worker process: `python -m ingest.runner [--expect N] [--bare]`.

Runs IngestService with ANBU_* settings until SIGTERM (the fault tests kill -9 it). With
--expect it prints one JSON line once N messages are stored (or dead-lettered): the seconds
from the first message to the last and the CPU seconds of this process (`cpu`) and of its
storing process (`store_cpu`), for the benchmark.
--bare runs the baseline instead: a plain paho subscriber (same session settings, QoS 1,
automatic acks) that only parses each payload as JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

from core.clock import SystemClock
from core.config import Settings
from core.db import Database
from ingest.consumer import IngestService, configure_tls
from ingest.identity import client_id, username
from ingest.store import BatchSummary


class _Progress:
    """Counts stored messages; prints rate figures once `expect` are in.

    The clock starts at the first count (the first batch), so the figures are scaled from the
    messages counted after it: seconds = elapsed * count / (count - first).
    """

    def __init__(self, expect: int, store_pid: Callable[[], int | None] | None = None) -> None:
        self.expect = expect
        self.count = 0
        self.first: tuple[float, float, float, int] | None = None
        self.done = threading.Event()
        self._store_pid = store_pid

    def add(self, n: int) -> None:
        if self.first is None:
            self.first = (time.perf_counter(), _cpu(), self._store_cpu(), n)
        self.count += n
        if self.expect and self.count >= self.expect and not self.done.is_set():
            t0, cpu0, store0, n0 = self.first
            scale = self.count / max(self.count - n0, 1)
            line = {
                "messages": self.count,
                "seconds": (time.perf_counter() - t0) * scale,
                "cpu": (_cpu() - cpu0) * scale,
            }
            if self._store_pid is not None:
                line["store_cpu"] = (self._store_cpu() - store0) * scale
            print(json.dumps(line), flush=True)
            self.done.set()

    def _store_cpu(self) -> float:
        pid = None if self._store_pid is None else self._store_pid()
        return 0.0 if pid is None else proc_cpu(pid)


def _cpu() -> float:
    t = os.times()
    return t.user + t.system


def proc_cpu(pid: int) -> float:
    """CPU seconds (user + system) another process has used so far; 0 where unknown."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_ingest(settings: Settings, expect: int, batch_size: int) -> None:
    db = Database(settings.database_url or "", 1, 4)  # its conninfo: the storing process connects
    service = IngestService(settings, db, SystemClock(), batch_size=batch_size)
    progress = _Progress(expect, lambda: service.store_pid)

    def on_batch(s: BatchSummary) -> None:
        progress.add(s.messages)

    service.on_batch = on_batch
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    service.start()
    service.subscribed.wait(60)
    print(json.dumps({"ready": True, "client_id": service.client_id}), flush=True)
    threading.Thread(target=_report_subscriptions, args=(service, stop), daemon=True).start()
    try:
        stop.wait()
    finally:
        service.stop()
        print(json.dumps({"stats": asdict(service.stats)}), flush=True)


def _report_subscriptions(service: IngestService, stop: threading.Event) -> None:
    """Print {"subscribed": n} each time the service subscribes again (after a reconnect)."""
    count = 1
    while not stop.is_set():
        while service.subscribed.is_set() and not stop.wait(0.05):
            pass
        while not service.subscribed.wait(0.05):
            if stop.is_set():
                return
        count += 1
        print(json.dumps({"subscribed": count}), flush=True)


def run_bare(settings: Settings, expect: int) -> None:
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties
    from paho.mqtt.subscribeoptions import SubscribeOptions

    progress = _Progress(expect)
    client = mqtt.Client(
        callback_api_version=CallbackAPIVersion.VERSION2,
        client_id=client_id(settings),
        protocol=mqtt.MQTTv5,
    )
    client.username_pw_set(username(settings), settings.mqtt_password)
    configure_tls(client, settings)

    def on_connect(c: mqtt.Client, *_: Any) -> None:
        group = settings.mqtt_shared_group
        c.subscribe(f"$share/{group}/gw/#" if group else "gw/#", options=SubscribeOptions(qos=1))

    def on_subscribe(c: mqtt.Client, *_: Any) -> None:
        print(json.dumps({"ready": True}), flush=True)

    def on_message(c: mqtt.Client, u: Any, msg: mqtt.MQTTMessage) -> None:
        json.loads(msg.payload)
        progress.add(1)

    client.on_connect = on_connect
    client.on_message = on_message
    client.on_subscribe = on_subscribe
    props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
    props.SessionExpiryInterval = settings.mqtt_session_expiry_s
    props.ReceiveMaximum = 1000
    client.connect(settings.mqtt_host, settings.mqtt_port, clean_start=False, properties=props)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    client.loop_start()
    stop.wait()
    client.disconnect()
    client.loop_stop()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m ingest.runner")
    parser.add_argument("--expect", type=int, default=0)
    parser.add_argument("--batch-size", type=int, default=500)
    parser.add_argument("--bare", action="store_true")
    args = parser.parse_args(argv)
    settings = Settings()
    if args.bare:
        run_bare(settings, args.expect)
    else:
        run_ingest(settings, args.expect, args.batch_size)


if __name__ == "__main__":
    main(sys.argv[1:])
