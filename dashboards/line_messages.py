"""Messages residents left on the 돌봄콜 line, on their alert's page: what was said (or that
nothing could be written down) and the recording to listen to, fetched from the telephony
provider with the account's credentials and passed through, only for care roles of the
resident's dong. The recording's address comes from Twilio's signed callback; it is fetched
only when it lies under the configured provider's API, never from anywhere else.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import httpx
import psycopg

from alerts.queries import Dongs, dong_list
from core.config import Settings

TWILIO_API = "https://api.twilio.com"
BEFORE_ALERT = timedelta(days=1)  # messages this long before the alert opened are shown too
SHOWN = 5
FETCH_TIMEOUT_S = 10.0
MAX_BYTES = 5 * 1024 * 1024  # a minute of speech is well under 1 MB as MP3


class RecordingNotFound(LookupError):
    """No such message with a recording among the residents in view."""


@dataclass(frozen=True, slots=True)
class LineMessage:
    id: int
    received_at: datetime
    transcript: str | None
    recorded: bool


def messages_near(
    conn: psycopg.Connection[Any], resident_id: int, opened_at: datetime
) -> list[LineMessage]:
    """The resident's line messages from a day before the alert opened, newest first."""
    rows = conn.execute(
        """SELECT id, received_at, transcript, recording_url IS NOT NULL
           FROM anbu.incoming_calls
           WHERE resident_id = %s AND choice = 'message' AND received_at >= %s
             AND (transcript IS NOT NULL OR recording_url IS NOT NULL)
           ORDER BY received_at DESC LIMIT %s""",
        (resident_id, opened_at - BEFORE_ALERT, SHOWN),
    ).fetchall()
    return [LineMessage(int(i), at, t, bool(r)) for i, at, t, r in rows]


def recording_url(conn: psycopg.Connection[Any], message_id: int, dongs: Dongs) -> tuple[str, int]:
    """(the recording's address, the resident) of a message of the dongs in view;
    RecordingNotFound else."""
    row = conn.execute(
        """SELECT i.recording_url, i.resident_id FROM anbu.incoming_calls i
           JOIN anbu.resident r ON r.id = i.resident_id
           WHERE i.id = %s AND r.dong_code = ANY(%s) AND i.recording_url IS NOT NULL""",
        (message_id, dong_list(dongs)),
    ).fetchone()
    if row is None:
        raise RecordingNotFound(message_id)
    return str(row[0]), int(row[1])


def provider_base(settings: Settings) -> str:
    return (settings.twilio_api_base_url or TWILIO_API).rstrip("/")


def fetch_recording(settings: Settings, url: str) -> bytes:
    """The MP3 of a recording under the provider's API, with the account's credentials (the
    provider may redirect to a short-lived media address); RecordingNotFound for any other
    address or when the provider has none."""
    base = provider_base(settings) + "/"
    if not url.startswith(base) or "/Recordings/" not in url or ".." in url or "?" in url:
        raise RecordingNotFound(url)
    auth = (settings.twilio_account_sid, settings.twilio_auth_token)
    with httpx.Client(timeout=FETCH_TIMEOUT_S, follow_redirects=True, max_redirects=2) as client:
        try:
            reply = client.get(url.removesuffix(".mp3") + ".mp3", auth=auth)
        except httpx.HTTPError:
            raise RecordingNotFound(url) from None
    if reply.status_code != 200 or len(reply.content) > MAX_BYTES:
        raise RecordingNotFound(url)
    return reply.content
