"""The real Twilio REST client, optionally pointed at another base URL (the local phone network)."""

from __future__ import annotations

import os

import requests
from requests.adapters import HTTPAdapter
from twilio.base.exceptions import TwilioException, TwilioRestException
from twilio.http.http_client import TwilioHttpClient
from twilio.rest import Client
from urllib3.exceptions import ConnectTimeoutError

from core.config import Settings

HTTP_TIMEOUT_S = 10.0


# Everything a Twilio REST request can raise: a refusal, a transport error, a socket error.
TWILIO_ERRORS = (TwilioException, requests.RequestException, OSError)


def make_twilio_client(settings: Settings, timeout_s: float = HTTP_TIMEOUT_S) -> Client:
    """A twilio Client for the account; REST calls go to settings.twilio_api_base_url when set."""
    http = TwilioHttpClient(timeout=timeout_s)
    if http.session is not None:
        # at least as many kept connections as dial workers, plus room for the web's voicemail
        # updates (twilio keeps min(32, cores + 4) for https, requests 10 for http: with 16
        # dial workers every busy second closed and reopened connections); retries stay
        # requests' default, none, as twilio's own adapter has them
        pool = max(settings.call_dial_workers + 4, min(32, (os.cpu_count() or 1) + 4))
        for scheme in ("https://", "http://"):
            http.session.mount(scheme, HTTPAdapter(pool_connections=pool, pool_maxsize=pool))
    client = Client(settings.twilio_account_sid, settings.twilio_auth_token, http_client=http)
    if settings.twilio_api_base_url:
        # Calls and Messages live on the `api` domain (twilio/rest/api/ApiBase.py); its
        # base_url is what Domain.absolute_url joins every request path to. Edge and region
        # (TWILIO_EDGE / TWILIO_REGION) would rewrite the host again, so they are cleared.
        client.api.base_url = settings.twilio_api_base_url.rstrip("/")
        client.edge = None
        client.region = None
    return client


def _never_sent(exc: BaseException) -> bool:
    """The request never left: no connection (refused, unresolved, connect timeout, TLS)."""
    if isinstance(exc, (requests.ConnectTimeout, requests.exceptions.SSLError)):
        return True
    if isinstance(exc, (ConnectionRefusedError, ConnectTimeoutError)):
        return True
    seen: set[int] = set()
    todo: list[object] = [exc]
    while todo:  # requests wraps urllib3's MaxRetryError, whose .reason says what happened
        item = todo.pop()
        if id(item) in seen or not isinstance(item, BaseException):
            continue
        seen.add(id(item))
        if isinstance(item, (ConnectionRefusedError, ConnectTimeoutError)):
            return True
        todo.extend([*item.args, item.__cause__, item.__context__, getattr(item, "reason", None)])
    return False


def may_have_reached(exc: BaseException) -> bool:
    """Whether Twilio may have acted on a request that raised `exc`.

    A refusal (HTTP 4xx) or a connection never made (refused, unresolved, timed out while
    connecting) did nothing. A read timeout or a reset after the request was sent, a 5xx, or a
    reply that could not be read leave it unknown: Twilio may have placed the call or sent the
    message.
    """
    if isinstance(exc, TwilioRestException):
        return bool(exc.status >= 500)
    return not _never_sent(exc)
