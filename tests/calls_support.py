"""A calls rig for integration tests: the real twilio client, the local phone network, anbu's
signed webhooks in a real uvicorn server on a free port, and the test's PostgreSQL."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import psycopg
import uvicorn
from starlette.types import ASGIApp

from calls.client import HTTP_TIMEOUT_S, make_twilio_client
from calls.service import CallService
from calls.webhooks import build_router
from core.clock import Clock, SystemClock
from core.config import Settings
from core.db import Database
from dashboards.app import edged_webhooks
from simulators.phone import PhoneNetwork
from simulators.servers import free_port

ACCOUNT_SID = "AC" + "2" * 32
AUTH_TOKEN = "calls-support-token"


class WebServer:
    """An ASGI app in a real uvicorn server, in a thread."""

    def __init__(self, app: ASGIApp, port: int) -> None:
        config = uvicorn.Config(
            app, host="127.0.0.1", port=port, log_level="warning", timeout_graceful_shutdown=2
        )  # open streams end at stop()
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def start(self) -> None:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.01)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)


@dataclass
class CallsRig:
    settings: Settings
    network: PhoneNetwork
    service: CallService
    database: Database

    def query(self, sql: str, *args: Any) -> list[tuple[Any, ...]]:
        with psycopg.connect(self.database.conninfo) as conn:
            return conn.execute(sql, args).fetchall()

    def wait_until(self, what: str, check: Any, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while not check():
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}")
            time.sleep(0.05)


@contextmanager
def calls_rig(
    db_url: str,
    clock: Clock | None = None,
    twilio_timeout_s: float = HTTP_TIMEOUT_S,
    **overrides: Any,
) -> Iterator[CallsRig]:
    """The rig; `twilio_timeout_s` is the REST client's read timeout (short, to lose replies)."""
    network = PhoneNetwork(ACCOUNT_SID, AUTH_TOKEN)
    network.start()
    port = free_port()
    values: dict[str, Any] = {
        "database_url": db_url,
        "twilio_account_sid": ACCOUNT_SID,
        "twilio_auth_token": AUTH_TOKEN,
        "twilio_api_base_url": network.base_url,
        "public_base_url": f"http://127.0.0.1:{port}",
        "call_cps": 100.0,
        **overrides,
    }
    settings = Settings(**values)
    database = Database(db_url, min_size=1, max_size=8)
    database.open()
    client = make_twilio_client(settings, twilio_timeout_s)
    service = CallService(database, client, settings, clock or SystemClock())
    web = WebServer(edged_webhooks(build_router(service, settings), settings), port)
    web.start()
    try:
        yield CallsRig(settings, network, service, database)
    finally:
        network.stop()
        web.stop()
        database.close()
