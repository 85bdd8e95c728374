"""How the simulated carrier posts its webhooks: one line's kept connections, on http.client.

httpx took three quarters of the carrier's CPU in `anbu bench calls` (request building, its
connection pool and stream layers); a round of 10,000 calls posts 50,000 webhooks, and the
carrier shares the machine with the application it measures. http.client does the same POST
for a fraction. As httpx does, a kept connection is checked before it is reused: one the
application has closed while idle is dropped and a new one opened; nothing is ever sent twice
(a POST that fails is the caller's error, as Twilio retries no callback that reached the app).
"""

from __future__ import annotations

import http.client
import select
import ssl
from urllib.parse import urlencode, urlsplit


class WebhookError(Exception):
    """The application could not be reached, or answered nothing readable."""


class WebhookClient:
    """Kept connections by scheme and host, for one thread (not thread-safe)."""

    def __init__(self, timeout_s: float, tls: ssl.SSLContext) -> None:
        self._timeout_s = timeout_s
        self._tls = tls
        self._connections: dict[tuple[str, str], http.client.HTTPConnection] = {}
        self.closed = False

    def post_form(
        self, url: str, params: dict[str, str], headers: dict[str, str]
    ) -> tuple[int, str]:
        """POST `params` form-encoded; (status, body). Raises WebhookError."""
        parts = urlsplit(url)
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        body = urlencode(params).encode()
        sent = {**headers, "Content-Type": "application/x-www-form-urlencoded"}
        connection = self._connection(parts.scheme, parts.netloc)
        try:
            connection.request("POST", path, body=body, headers=sent)
            response = connection.getresponse()
            text = response.read().decode("utf-8", "replace")
        except (OSError, http.client.HTTPException) as exc:
            self._drop(parts.scheme, parts.netloc)
            raise WebhookError(type(exc).__name__) from exc
        if response.will_close:
            self._drop(parts.scheme, parts.netloc)
        return response.status, text

    def close(self) -> None:
        for key in list(self._connections):
            self._drop(*key)
        self.closed = True

    def _connection(self, scheme: str, netloc: str) -> http.client.HTTPConnection:
        key = (scheme, netloc)
        found = self._connections.get(key)
        if found is not None and not _closed_by_peer(found):
            return found
        self._drop(scheme, netloc)
        if scheme == "https":
            made: http.client.HTTPConnection = http.client.HTTPSConnection(
                netloc, timeout=self._timeout_s, context=self._tls
            )
        elif scheme == "http":
            made = http.client.HTTPConnection(netloc, timeout=self._timeout_s)
        else:
            raise WebhookError(f"unsupported scheme {scheme!r}")
        self._connections[key] = made
        return made

    def _drop(self, scheme: str, netloc: str) -> None:
        connection = self._connections.pop((scheme, netloc), None)
        if connection is not None:
            connection.close()


def _closed_by_peer(connection: http.client.HTTPConnection) -> bool:
    """An idle kept connection with something to read has been closed (or spoiled) by the peer."""
    sock = connection.sock
    if sock is None:
        return True
    poller = select.poll()
    poller.register(sock, select.POLLIN | select.POLLERR | select.POLLHUP)
    return bool(poller.poll(0))
