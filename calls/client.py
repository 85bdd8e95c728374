"""The real Twilio REST client, optionally pointed at another base URL (the local phone network)."""

from __future__ import annotations

from twilio.http.http_client import TwilioHttpClient
from twilio.rest import Client

from core.config import Settings

HTTP_TIMEOUT_S = 10.0


def make_twilio_client(settings: Settings) -> Client:
    """A twilio Client for the account; REST calls go to settings.twilio_api_base_url when set."""
    client = Client(
        settings.twilio_account_sid,
        settings.twilio_auth_token,
        http_client=TwilioHttpClient(timeout=HTTP_TIMEOUT_S),
    )
    if settings.twilio_api_base_url:
        # Calls and Messages live on the `api` domain (twilio/rest/api/ApiBase.py); its
        # base_url is what Domain.absolute_url joins every request path to. Edge and region
        # (TWILIO_EDGE / TWILIO_REGION) would rewrite the host again, so they are cleared.
        client.api.base_url = settings.twilio_api_base_url.rstrip("/")
        client.edge = None
        client.region = None
    return client
