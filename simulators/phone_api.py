"""The phone network's REST surface: Twilio's JSON shapes, errors and basic auth over http.server."""

from __future__ import annotations

import json
import socket
import struct
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler
from typing import Any, Protocol
from urllib.parse import parse_qs

from simulators.personas import Persona

API = "/2010-04-01/Accounts/"


@dataclass(frozen=True, slots=True)
class SimulatedCall:
    """One call as the network saw it."""

    sid: str
    to: str
    from_: str
    url: str
    status_callback: str | None
    status_callback_events: tuple[str, ...]
    machine_detection: str | None
    persona: Persona
    timeout_s: float = 60.0
    async_amd_callback: str | None = None
    direction: str = "outbound-api"
    pending_twiml: str | None = None  # set by a REST update while the call is live
    transcribe_callback: str | None = None  # where a <Record>'s transcript goes
    status: str = "queued"
    answered_by: str | None = None
    callbacks: tuple[str, ...] = ()  # CallStatus of every status callback posted, in order
    heard: tuple[str, ...] = ()  # every <Say> the callee heard
    answers: tuple[str, ...] = ()  # what the callee pressed or said at each <Gather>
    gathers: int = 0  # <Gather>s played so far (a scripted persona's place in its script)
    dialled: tuple[str, ...] = ()  # numbers a <Dial> put the callee through to
    errors: tuple[str, ...] = ()
    duration: int | None = None
    created_at: datetime = field(default_factory=lambda: datetime.now(UTC))

    @property
    def done(self) -> bool:
        return self.status in ("completed", "busy", "no-answer", "failed", "canceled")


@dataclass(frozen=True, slots=True)
class SimulatedMessage:
    """One SMS the network delivered (this is the carrier: it keeps To and Body; never log them)."""

    sid: str
    to: str
    from_: str
    body: str
    created_at: datetime


class CarrierApi(Protocol):
    """What the HTTP handler asks of the network."""

    account_sid: str

    def authorized(self, header: str | None) -> bool: ...
    def create_call(self, form: dict[str, list[str]]) -> tuple[int, dict[str, Any]]: ...
    def fetch_call(self, sid: str) -> tuple[int, dict[str, Any]]: ...
    def update_call(self, sid: str, form: dict[str, list[str]]) -> tuple[int, dict[str, Any]]: ...
    def create_message(self, form: dict[str, list[str]]) -> tuple[int, dict[str, Any]]: ...
    def recording(self, recording_sid: str) -> bytes | None: ...
    def reply_fault(self, method: str, rest: str) -> str | None: ...
    def wait_released(self) -> None: ...


# How a request the network acted on can fail to get its reply (calls.client must then treat
# the call or message as possibly placed): the reply never comes (the client's read times
# out), or the connection is reset instead of answered.
REPLY_TIMEOUT = "timeout"
REPLY_RESET = "reset"


def call_json(call: SimulatedCall, account_sid: str) -> dict[str, Any]:
    """A Call resource as Twilio's API returns it."""
    stamp = format_datetime(call.created_at)
    return {
        "sid": call.sid,
        "account_sid": account_sid,
        "to": call.to,
        "to_formatted": call.to,
        "from": call.from_,
        "from_formatted": call.from_,
        "status": call.status,
        "direction": call.direction,
        "api_version": "2010-04-01",
        "answered_by": call.answered_by,
        "duration": str(call.duration) if call.duration is not None else None,
        "date_created": stamp,
        "date_updated": format_datetime(datetime.now(UTC)),
        "start_time": None,
        "end_time": None,
        "price": None,
        "price_unit": "USD",
        "parent_call_sid": None,
        "phone_number_sid": None,
        "caller_name": None,
        "forwarded_from": None,
        "group_sid": None,
        "queue_time": "0",
        "trunk_sid": None,
        "uri": f"{API}{account_sid}/Calls/{call.sid}.json",
        "subresource_uris": {},
    }


def message_json(message: SimulatedMessage, account_sid: str) -> dict[str, Any]:
    """A Message resource as Twilio's API returns it."""
    stamp = format_datetime(message.created_at)
    return {
        "sid": message.sid,
        "account_sid": account_sid,
        "to": message.to,
        "from": message.from_,
        "body": message.body,
        "status": "queued",
        "direction": "outbound-api",
        "num_segments": "1",
        "num_media": "0",
        "api_version": "2010-04-01",
        "date_created": stamp,
        "date_updated": stamp,
        "date_sent": None,
        "price": None,
        "price_unit": "USD",
        "error_code": None,
        "error_message": None,
        "messaging_service_sid": None,
        "uri": f"{API}{account_sid}/Messages/{message.sid}.json",
        "subresource_uris": {},
    }


def one(form: dict[str, list[str]], name: str) -> str | None:
    values = form.get(name)
    return values[0] if values else None


def error(status: int, code: int, message: str) -> tuple[int, dict[str, Any]]:
    return status, {
        "code": code,
        "message": message,
        "more_info": f"https://www.twilio.com/docs/errors/{code}",
        "status": status,
    }


def handler_for(network: CarrierApi) -> type[BaseHTTPRequestHandler]:
    """An http.server handler serving Twilio's 2010-04-01 Calls and Messages for `network`."""
    prefix = f"{API}{network.account_sid}/"

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True  # headers and body are two writes: no 40 ms delayed ACK

        def log_message(self, format: str, *args: Any) -> None:
            pass  # request lines are not logged: keep the fake carrier quiet

        def do_GET(self) -> None:
            self._route("GET")

        def do_POST(self) -> None:
            self._route("POST")

        def _route(self, method: str) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length).decode() if length else ""
            media = self._media(method)
            if media is not None:
                self.send_response(200)
                self.send_header("Content-Type", "audio/mpeg")
                self.send_header("Content-Length", str(len(media)))
                self.end_headers()
                self.wfile.write(media)
                return
            status, payload = self._dispatch(method, body)
            path = self.path.split("?", 1)[0]
            fault = network.reply_fault(method, path[len(prefix) :]) if status < 300 else None
            if fault == REPLY_TIMEOUT:  # acted on, never answered: hold until released
                network.wait_released()
                self.close_connection = True
                return
            if fault == REPLY_RESET:  # acted on, then the connection is reset (RST, no FIN)
                self.connection.setsockopt(
                    socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
                )
                self.close_connection = True
                return
            self._reply(status, payload)

        def _media(self, method: str) -> bytes | None:
            """A recording's MP3, for the account's credentials only."""
            path = self.path.split("?", 1)[0]
            rest = path[len(prefix) :] if path.startswith(prefix) else ""
            if method != "GET" or not rest.startswith("Recordings/") or not rest.endswith(".mp3"):
                return None
            if not network.authorized(self.headers.get("Authorization")):
                return None
            return network.recording(rest[len("Recordings/") : -len(".mp3")])

        def _dispatch(self, method: str, body: str) -> tuple[int, dict[str, Any]]:
            if not network.authorized(self.headers.get("Authorization")):
                return error(401, 20003, "Authenticate")
            path = self.path.split("?", 1)[0]
            rest = path[len(prefix) :] if path.startswith(prefix) else ""
            form = parse_qs(body, keep_blank_values=True)
            if method == "POST" and rest == "Calls.json":
                return network.create_call(form)
            if method == "GET" and rest.startswith("Calls/") and rest.endswith(".json"):
                return network.fetch_call(rest[len("Calls/") : -len(".json")])
            if method == "POST" and rest.startswith("Calls/") and rest.endswith(".json"):
                return network.update_call(rest[len("Calls/") : -len(".json")], form)
            if method == "POST" and rest == "Messages.json":
                return network.create_message(form)
            return error(404, 20404, "The requested resource was not found")

        def _reply(self, status: int, payload: dict[str, Any]) -> None:
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    return Handler
