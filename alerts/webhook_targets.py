"""Where a webhook may be sent, and how it is signed.

A subscription's URL comes from a person and is fetched by the worker, inside the district's
network: a URL naming an internal service (the database, a metadata endpoint, a router's admin
page) must never be reached. So a target is https, without credentials in it, and every address
its host resolves to must be a public one: private, loopback, link-local, shared, reserved and
multicast addresses are refused, when the subscription is made and again at every delivery (a
name can be pointed elsewhere after it was checked). The delivery then connects to the very
address it checked (the name kept for TLS and the Host header), so a second lookup cannot swap
it. Loopback, over http or https, is allowed only when ANBU_EVENT_WEBHOOKS_ALLOW_LOOPBACK is set
(tests, the demo).

A delivery is signed as Stripe and GitHub sign theirs: `Anbu-Signature: v1=<hex>`, the
HMAC-SHA256 under the subscription's secret of `<Anbu-Timestamp>.<body>`.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

URL_MAX = 2048
DEFAULT_PORTS = {"https": 443, "http": 80}

Resolver = Callable[[str, int], Sequence[str]]


class TargetRefused(ValueError):
    """A URL the worker must not send to; `code` says why (dashboards.i18n words it)."""

    def __init__(self, code: str) -> None:
        super().__init__(code)
        self.code = code


@dataclass(frozen=True, slots=True)
class Target:
    """A URL read and checked, before its host is resolved."""

    url: str
    scheme: str
    host: str  # without brackets
    port: int
    path: str  # path and query, '/' at least

    @property
    def host_header(self) -> str:
        shown = f"[{self.host}]" if ":" in self.host else self.host
        return shown if DEFAULT_PORTS[self.scheme] == self.port else f"{shown}:{self.port}"

    def at(self, address: str) -> str:
        """The URL with its host replaced by `address` (the one that was checked)."""
        shown = f"[{address}]" if ":" in address else address
        return f"{self.scheme}://{shown}:{self.port}{self.path}"


def read_url(url: str) -> Target:
    """The parts of `url`; TargetRefused('url_invalid') for anything but a plain http(s) URL
    with a host, and no user name, password or fragment."""
    if not url or len(url) > URL_MAX or any(c.isspace() or ord(c) < 32 for c in url):
        raise TargetRefused("url_invalid")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise TargetRefused("url_invalid") from None
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").rstrip(".")
    if scheme not in DEFAULT_PORTS or not host or parts.username is not None or parts.fragment:
        raise TargetRefused("url_invalid")
    if parts.password is not None or "@" in parts.netloc:
        raise TargetRefused("url_invalid")
    try:  # an internationalised name as DNS and the Host header carry it (punycode)
        host = host.encode("idna").decode("ascii").lower()
    except UnicodeError:
        raise TargetRefused("url_invalid") from None
    if port == 0:
        raise TargetRefused("url_invalid")
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return Target(url, scheme, host, port or DEFAULT_PORTS[scheme], path)


def address_allowed(address: str, allow_loopback: bool) -> bool:
    """Whether the worker may connect to `address`: a public one, or loopback when allowed."""
    try:
        ip: Any = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.is_site_local:
            return False
        embedded = _embedded_ipv4(ip)
        if embedded is not None:  # mapped, compatible, SIIT, NAT64, 6to4: the IPv4 inside counts
            if not address_allowed(str(embedded), allow_loopback):
                return False
            if ip.ipv4_mapped is not None:
                ip = ip.ipv4_mapped
    if ip.is_loopback:
        return allow_loopback
    return bool(ip.is_global) and not ip.is_multicast


_EMBEDDING = tuple(
    ipaddress.ip_network(n)
    for n in ("::/96", "::ffff:0:0/96", "::ffff:0:0:0/96", "64:ff9b::/96", "64:ff9b:1::/48")
)


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 one carries (mapped, compatible, SIIT, NAT64: its low 32 bits;
    6to4: bits 16-48), or None."""
    if ip.sixtofour is not None:
        return ip.sixtofour
    if any(ip in net for net in _EMBEDDING) and int(ip) & 0xFFFFFFFF:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


def system_resolver(host: str, port: int) -> list[str]:
    """Every address `host` resolves to (an IP literal is itself)."""
    found = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in found))


def check(
    url: str, allow_loopback: bool, resolver: Resolver = system_resolver
) -> tuple[Target, str]:
    """The target and the address to connect to, every address of its host checked;
    TargetRefused: 'url_invalid', 'https_required', 'address_unresolved' or
    'address_refused'."""
    target = read_url(url)
    try:
        addresses = list(resolver(target.host, target.port))
    except (OSError, UnicodeError):
        raise TargetRefused("address_unresolved") from None
    if not addresses:
        raise TargetRefused("address_unresolved")
    if not all(address_allowed(a, allow_loopback) for a in addresses):
        raise TargetRefused("address_refused")
    loopback = all(ipaddress.ip_address(a.split("%", 1)[0]).is_loopback for a in addresses)
    if target.scheme != "https" and not (allow_loopback and loopback):
        raise TargetRefused("https_required")
    return target, addresses[0]


def signature(secret: str, timestamp: str, body: bytes) -> str:
    """The Anbu-Signature header's value for `body` sent at `timestamp`."""
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return f"v1={mac.hexdigest()}"
