"""An in-process MQTT broker (amqtt) for `anbu demo` on machines without Mosquitto.

Limits, measured against amqtt 0.12: MQTT 3.1.1 only (an MQTT 5 CONNECT is refused with
"unacceptable protocol version"), no shared subscriptions (`$share/...` is taken as a
literal topic), no persistence across restarts. QoS 1, retained messages, wills and
persistent sessions (clean session off) work. Access mirrors mosquitto.acl: each user
reads and writes only `gw/<its name>/#`; `readers` (the ingest user) also read `gw/#`.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from amqtt.broker import Broker
from amqtt.contexts import Action
from amqtt.plugins.base import BaseAuthPlugin, BaseTopicPlugin
from amqtt.session import Session

log = logging.getLogger(__name__)


class GatewayAuthPlugin(BaseAuthPlugin):  # type: ignore[misc]
    """Username/password check against an in-memory table (the broker's own copy)."""

    @dataclass
    class Config:
        users: dict[str, str] = field(default_factory=dict)

    async def authenticate(self, *, session: Session) -> bool | None:
        users: dict[str, str] = self.config.users
        expected = users.get(session.username or "")
        if expected is None or session.password is None:
            return False
        password = session.password
        given = password.encode() if isinstance(password, str) else bytes(password)
        return hmac.compare_digest(given, expected.encode())


def _under(topic: str, prefix: str) -> bool:
    return topic == prefix or topic.startswith(prefix + "/")


class GatewayAclPlugin(BaseTopicPlugin):  # type: ignore[misc]
    """`pattern readwrite gw/%u/#` plus read access to `gw/#` for the readers."""

    @dataclass
    class Config:
        readers: list[str] = field(default_factory=list)

    async def topic_filtering(
        self,
        *,
        session: Session | None = None,
        topic: str | None = None,
        action: Action | None = None,
    ) -> bool | None:
        if session is None or not session.username or not topic:
            return False
        if _under(topic, f"gw/{session.username}"):
            return True
        if action in (Action.SUBSCRIBE, Action.RECEIVE) and session.username in self.config.readers:
            return _under(topic, "gw") or topic == "gw/#"
        return False


class InProcessBroker:
    """amqtt on 127.0.0.1:`port` in a thread of its own, with the anbu users and ACL."""

    def __init__(
        self, port: int, users: dict[str, str], readers: Iterable[str] = ("ingest",)
    ) -> None:
        self.port = port
        self.users = dict(users)
        self.readers = list(readers)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._broker: Broker | None = None
        self._thread: threading.Thread | None = None

    def _config(self) -> dict[str, Any]:
        return {
            "listeners": {"default": {"type": "tcp", "bind": f"127.0.0.1:{self.port}"}},
            "plugins": {
                f"{__name__}.GatewayAuthPlugin": {"users": self.users},
                f"{__name__}.GatewayAclPlugin": {"readers": self.readers},
            },
        }

    def start(self, timeout: float = 10.0) -> None:
        """Start listening; returns once the port accepts connections."""
        ready = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            asyncio.set_event_loop(loop)
            try:
                self._broker = Broker(self._config(), loop=loop)
                loop.run_until_complete(self._broker.start())
            except BaseException as exc:
                failure.append(exc)
                ready.set()
                loop.close()
                return
            ready.set()
            loop.run_forever()
            loop.close()

        self._thread = threading.Thread(target=run, name="inproc-mqtt-broker", daemon=True)
        self._thread.start()
        if not ready.wait(timeout):
            raise RuntimeError("in-process MQTT broker did not start")
        if failure:
            raise RuntimeError(f"in-process MQTT broker failed: {failure[0]}") from failure[0]
        log.info("in-process MQTT broker listening on 127.0.0.1:%d", self.port)

    def add_user(self, user: str, password: str) -> None:
        """Add (or change) a user; takes effect for the next connection."""
        self.users[user] = password
        broker = self._broker
        if broker is not None:
            plugin = broker.plugins_manager.get_plugin(GatewayAuthPlugin.__name__)
            if plugin is not None:
                plugin.config.users[user] = password

    def stop(self) -> None:
        loop, broker = self._loop, self._broker
        if loop is None or broker is None or self._thread is None:
            return
        try:
            asyncio.run_coroutine_threadsafe(broker.shutdown(), loop).result(10)
        finally:
            loop.call_soon_threadsafe(loop.stop)
            self._thread.join(10)
            self._thread = None
            self._broker = None
            self._loop = None


__all__ = ["GatewayAclPlugin", "GatewayAuthPlugin", "InProcessBroker"]
