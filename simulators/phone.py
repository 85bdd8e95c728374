"""A local Twilio-compatible phone network: the real twilio client talks to it, it rings personas.

It implements the slice of Twilio's REST API anbu uses (create and fetch calls, send
messages) with Twilio's JSON shapes and basic auth, and behaves like the carrier: for each
call a background thread posts signed status callbacks in order, fetches the TwiML, lets the
called number's persona press keys or speak at each <Gather>, follows the returned TwiML and
ends the call. It is the outside world: it imports nothing of anbu but the kernel.
"""

from __future__ import annotations

import base64
import hmac
import logging
import math
import threading
import time
import uuid
import xml.etree.ElementTree as ET
from dataclasses import replace
from datetime import UTC, datetime
from email.utils import format_datetime
from http.server import ThreadingHTTPServer
from typing import Any
from urllib.parse import urljoin

import httpx
from twilio.request_validator import RequestValidator

from simulators.personas import PRESS_1, Behaviour, Persona
from simulators.phone_api import (
    SimulatedCall,
    SimulatedMessage,
    call_json,
    error,
    handler_for,
    message_json,
    one,
)

log = logging.getLogger(__name__)

__all__ = ["PhoneNetwork", "SimulatedCall", "SimulatedMessage"]

MAX_DOCUMENTS = 20  # TwiML documents per call before the network hangs up (redirect loops)


class _TwimlError(Exception):
    """The application's webhook failed: Twilio would say "an application error" and hang up."""


class PhoneNetwork:
    """The fake carrier; start() binds the HTTP server, stop() ends it and waits for calls."""

    def __init__(
        self,
        account_sid: str,
        auth_token: str,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        default_persona: Persona = PRESS_1,
        step_delay_s: float = 0.0,
        webhook_timeout_s: float = 10.0,
    ) -> None:
        self.account_sid = account_sid
        self.auth_token = auth_token
        self.host = host
        self.port = port
        self.default_persona = default_persona
        self.step_delay_s = step_delay_s
        self.webhook_timeout_s = webhook_timeout_s
        self._lock = threading.Lock()
        self._personas: dict[str, Persona] = {}
        self._calls: dict[str, SimulatedCall] = {}
        self._messages: list[SimulatedMessage] = []
        self._threads: list[threading.Thread] = []
        self._server: ThreadingHTTPServer | None = None
        self._serve_thread: threading.Thread | None = None
        self._validator = RequestValidator(auth_token)

    # -- lifecycle -----------------------------------------------------------------------

    def start(self) -> None:
        self._server = ThreadingHTTPServer((self.host, self.port), handler_for(self))
        self._server.daemon_threads = True
        self.port = int(self._server.server_address[1])
        self._serve_thread = threading.Thread(target=self._serve, name="phone-network", daemon=True)
        self._serve_thread.start()

    def _serve(self) -> None:
        assert self._server is not None
        self._server.serve_forever(poll_interval=0.05)

    def stop(self, timeout: float = 10.0) -> None:
        self.wait_idle(timeout)
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._serve_thread is not None:
            self._serve_thread.join(timeout)
            self._serve_thread = None

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    # -- scripting and inspection ----------------------------------------------------------

    def set_persona(self, number: str, persona: Persona) -> None:
        """How the line `number` responds from now on."""
        with self._lock:
            self._personas[number] = persona

    @property
    def calls(self) -> list[SimulatedCall]:
        with self._lock:
            return sorted(self._calls.values(), key=lambda c: c.created_at)

    @property
    def messages(self) -> list[SimulatedMessage]:
        with self._lock:
            return list(self._messages)

    def call(self, sid: str) -> SimulatedCall | None:
        with self._lock:
            return self._calls.get(sid)

    def wait_idle(self, timeout: float = 10.0) -> bool:
        """Wait until every call placed so far has ended; False on timeout."""
        deadline = time.monotonic() + timeout
        with self._lock:
            threads = list(self._threads)
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        return not any(t.is_alive() for t in threads)

    # -- REST API (called by the handler) ----------------------------------------------------

    def create_call(self, form: dict[str, list[str]]) -> tuple[int, dict[str, Any]]:
        to, from_, url = one(form, "To"), one(form, "From"), one(form, "Url")
        if not to or not from_:
            return error(400, 21201, "No 'To' or 'From' number is specified")
        if not url:
            return error(400, 21205, "Url parameter is required")
        with self._lock:
            persona = self._personas.get(to, self.default_persona)
        if persona.behaviour is Behaviour.INVALID_NUMBER:
            return error(400, 21211, "Invalid 'To' Phone Number")
        call = SimulatedCall(
            sid="CA" + uuid.uuid4().hex,
            to=to,
            from_=from_,
            url=url,
            status_callback=one(form, "StatusCallback"),
            status_callback_events=tuple(form.get("StatusCallbackEvent", [])),
            machine_detection=one(form, "MachineDetection"),
            persona=persona,
        )
        thread = threading.Thread(target=self._run, args=(call.sid,), daemon=True)
        with self._lock:
            self._calls[call.sid] = call
            self._threads.append(thread)
        thread.start()
        return 201, call_json(call, self.account_sid)

    def fetch_call(self, sid: str) -> tuple[int, dict[str, Any]]:
        call = self.call(sid)
        if call is None:
            return error(404, 20404, f"The requested resource {sid} was not found")
        return 200, call_json(call, self.account_sid)

    def create_message(self, form: dict[str, list[str]]) -> tuple[int, dict[str, Any]]:
        to, from_, body = one(form, "To"), one(form, "From"), one(form, "Body")
        if not to or not from_:
            return error(400, 21604, "A 'To' and 'From' phone number is required")
        if not body:
            return error(400, 21602, "Message body is required")
        now = datetime.now(UTC)
        message = SimulatedMessage("SM" + uuid.uuid4().hex, to, from_, body, now)
        with self._lock:
            self._messages.append(message)
        return 201, message_json(message, self.account_sid)

    def authorized(self, header: str | None) -> bool:
        expected = base64.b64encode(f"{self.account_sid}:{self.auth_token}".encode()).decode()
        return header is not None and hmac.compare_digest(header, f"Basic {expected}")

    # -- the carrier -----------------------------------------------------------------------

    def _update(self, sid: str, **changes: Any) -> SimulatedCall:
        with self._lock:
            call = replace(self._calls[sid], **changes)
            self._calls[sid] = call
            return call

    def _append(self, sid: str, name: str, item: str) -> None:
        with self._lock:
            call = self._calls[sid]
            changes: dict[str, Any] = {name: (*getattr(call, name), item)}
            self._calls[sid] = replace(call, **changes)

    def _run(self, sid: str) -> None:
        """One call from dialling to hang-up, as a carrier would report it."""
        with httpx.Client(timeout=self.webhook_timeout_s) as http:
            call = self._update(sid, status="initiated")
            self._status(http, call, "initiated")
            behaviour = call.persona.behaviour
            if behaviour in (Behaviour.FAILED, Behaviour.BUSY):
                self._finish(http, sid, "failed" if behaviour is Behaviour.FAILED else "busy")
                return
            self._pause()
            call = self._update(sid, status="ringing")
            self._status(http, call, "ringing")
            self._pause()
            if behaviour is Behaviour.NO_ANSWER:
                self._finish(http, sid, "no-answer")
                return
            answered_by = None
            if call.machine_detection:
                answered_by = "machine_end_beep" if behaviour is Behaviour.VOICEMAIL else "human"
            answered_at = time.monotonic()
            call = self._update(sid, status="in-progress", answered_by=answered_by)
            self._status(http, call, "answered")
            try:
                self._converse(http, sid)
            except _TwimlError as exc:
                self._append(sid, "errors", str(exc))
            duration = max(1, math.ceil(time.monotonic() - answered_at))
            self._finish(http, sid, "completed", duration)

    def _converse(self, http: httpx.Client, sid: str) -> None:
        """Fetch the call's TwiML and play it, following gathers and redirects."""
        url: str | None = self.call(sid).url  # type: ignore[union-attr]
        extra: dict[str, str] = {}
        for _ in range(MAX_DOCUMENTS):
            if url is None:
                return
            document = self._webhook(http, url, self._params(sid, **extra))
            url, extra = self._play(sid, document, url)
        self._append(sid, "errors", "too many TwiML documents")

    def _play(self, sid: str, document: str, doc_url: str) -> tuple[str | None, dict[str, str]]:
        """Play one TwiML document; returns the next URL to fetch (and what to post), if any."""
        try:
            root = ET.fromstring(document)
        except ET.ParseError as exc:
            raise _TwimlError(f"invalid TwiML: {exc}") from exc
        if root.tag != "Response":
            raise _TwimlError(f"TwiML root is <{root.tag}>")
        persona = self.call(sid).persona  # type: ignore[union-attr]
        for verb in root:
            if verb.tag == "Say":
                self._append(sid, "heard", (verb.text or "").strip())
            elif verb.tag == "Pause":
                self._pause()
            elif verb.tag == "Gather":
                for say in verb.iter("Say"):
                    self._append(sid, "heard", (say.text or "").strip())
                answer = _answer(persona, verb.get("input", "dtmf"))
                if answer:
                    self._append(sid, "answers", next(iter(answer.values())))
                    return urljoin(doc_url, verb.get("action") or doc_url), answer
            elif verb.tag == "Redirect":
                return urljoin(doc_url, (verb.text or "").strip()), {}
            elif verb.tag in ("Hangup", "Reject"):
                return None, {}
            else:
                self._append(sid, "errors", f"unsupported verb <{verb.tag}>")
        return None, {}

    def _finish(self, http: httpx.Client, sid: str, status: str, duration: int = 0) -> None:
        call = self._update(sid, status=status, duration=duration)
        self._status(http, call, "completed", CallDuration=str(duration))

    def _status(self, http: httpx.Client, call: SimulatedCall, event: str, **extra: str) -> None:
        """Post a status callback when the app subscribed to `event` (completed always is)."""
        if not call.status_callback:
            return
        if event != "completed" and event not in call.status_callback_events:
            return
        params = self._params(call.sid, CallbackSource="call-progress-events", **extra)
        params["SequenceNumber"] = str(len(call.callbacks))
        params["Timestamp"] = format_datetime(datetime.now(UTC))
        self._append(call.sid, "callbacks", call.status)
        try:
            self._webhook(http, call.status_callback, params)
        except _TwimlError as exc:
            self._append(call.sid, "errors", str(exc))

    def _params(self, sid: str, **extra: str) -> dict[str, str]:
        call = self.call(sid)
        assert call is not None
        params = {
            "CallSid": call.sid,
            "AccountSid": self.account_sid,
            "From": call.from_,
            "To": call.to,
            "CallStatus": call.status,
            "Direction": "outbound-api",
            "ApiVersion": "2010-04-01",
        }
        if call.answered_by:
            params["AnsweredBy"] = call.answered_by
        params.update(extra)
        return params

    def _webhook(self, http: httpx.Client, url: str, params: dict[str, str]) -> str:
        """POST signed form params to the application, as Twilio does."""
        headers = {
            "X-Twilio-Signature": self._validator.compute_signature(url, params),
            "User-Agent": "TwilioProxy/1.1",
        }
        try:
            response = http.post(url, data=params, headers=headers)
        except httpx.HTTPError as exc:
            raise _TwimlError(f"webhook unreachable: {type(exc).__name__}") from exc
        if response.status_code >= 400:
            raise _TwimlError(f"webhook answered HTTP {response.status_code}")
        return response.text

    def _pause(self) -> None:
        if self.step_delay_s > 0:
            time.sleep(self.step_delay_s)


def _answer(persona: Persona, inputs: str) -> dict[str, str]:
    """What the persona answers at a <Gather> accepting `inputs`; {} for no input."""
    accepted = inputs.split()
    if persona.behaviour is Behaviour.PRESS and persona.digits and "dtmf" in accepted:
        return {"Digits": persona.digits}
    if persona.behaviour is Behaviour.SAY and persona.speech and "speech" in accepted:
        return {"SpeechResult": persona.speech, "Confidence": "0.92"}
    return {}
