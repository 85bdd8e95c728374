"""A local Twilio-compatible phone network: the real twilio client talks to it, it rings personas.

It implements the slice of Twilio's REST API anbu uses (create and fetch calls, send
messages) with Twilio's JSON shapes and basic auth, and behaves like the carrier: for each
call a background thread posts signed status callbacks in order, fetches the TwiML, lets the
called number's persona press keys or speak at each <Gather>, follows the returned TwiML and
ends the call. It is the outside world: it imports nothing but the kernel (core).
"""

from __future__ import annotations

import base64
import hmac
import logging
import math
import re
import ssl
import threading
import time
import uuid
import xml.etree.ElementTree as ET
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import UTC, datetime
from email.utils import format_datetime
from http.server import ThreadingHTTPServer
from typing import Any
from urllib.parse import urljoin

from twilio.request_validator import RequestValidator

from simulators.personas import PRESS_1, Behaviour, Persona
from simulators.phone_api import (
    REPLY_RESET,
    REPLY_TIMEOUT,
    SimulatedCall,
    SimulatedMessage,
    call_json,
    error,
    handler_for,
    message_json,
    one,
)
from simulators.webhook_client import WebhookClient, WebhookError

log = logging.getLogger(__name__)

__all__ = ["REPLY_RESET", "REPLY_TIMEOUT", "MessageGate", "PhoneNetwork", "SimulatedCall",
           "SimulatedMessage"]  # fmt: skip

MAX_DOCUMENTS = 20  # TwiML documents per call before the network hangs up (redirect loops)


class _TwimlError(Exception):
    """The application's webhook failed: Twilio would say "an application error" and hang up."""


class MessageGate:
    """Holds every SMS request until opened, counting those waiting: a slow carrier a test can
    watch (a send in progress) and end when it chooses, with no sleeps."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._open = False
        self.waiting = 0

    def hold(self) -> None:
        with self._cond:
            self.waiting += 1
            self._cond.notify_all()
            self._cond.wait_for(lambda: self._open)
            self.waiting -= 1

    def wait_for_waiting(self, n: int, timeout: float = 20.0) -> bool:
        """Wait until at least `n` requests are held at once; False on timeout."""
        with self._cond:
            return self._cond.wait_for(lambda: self.waiting >= n, timeout)

    def open(self) -> None:
        with self._cond:
            self._open = True
            self._cond.notify_all()


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
        time_scale: float = 0.0,
        max_lines: int = 256,
    ) -> None:
        self.account_sid = account_sid
        self.auth_token = auth_token
        self.host = host
        self.port = port
        self.default_persona = default_persona
        self.step_delay_s = step_delay_s
        self.webhook_timeout_s = webhook_timeout_s
        self.time_scale = time_scale  # real seconds per simulated second of ringing
        self.dial_status = "completed"  # how a <Dial> ends: completed, no-answer, busy, failed
        self._lock = threading.Lock()
        self._personas: dict[str, Persona] = {}
        self._calls: dict[str, SimulatedCall] = {}
        self._messages: list[SimulatedMessage] = []
        self.max_lines = max_lines
        self._lines: ThreadPoolExecutor | None = None
        self._outstanding = 0
        self._idle = threading.Condition(self._lock)
        self._server: ThreadingHTTPServer | None = None
        self._serve_thread: threading.Thread | None = None
        self._tls: ssl.SSLContext | None = None
        self._clients: list[WebhookClient] = []  # one per line thread (self._local.http)
        self._local = threading.local()
        self._validator = RequestValidator(auth_token)
        # faults a test sets: replies lost after the request was acted on, refused numbers,
        # held SMS requests, lines that wait before they ring
        self._reply_faults: list[tuple[str, str]] = []  # (path suffix, REPLY_*), first match
        self._released = threading.Event()
        self._refused_sms: dict[str, tuple[int, int, str]] = {}
        self._sms_failures: list[tuple[int, int, str]] = []
        self._gate: MessageGate | None = None
        self._lines_open = threading.Event()
        self._lines_open.set()

    # -- lifecycle -----------------------------------------------------------------------

    def start(self) -> None:
        # one client per line thread, all on one TLS context (a new context costs ~17 ms of CPU,
        # a client on a shared one 0.3 ms): 256 lines sharing one client's connection pool
        # queued on its lock and closed and reopened connections, and the carrier, not the
        # application, set the pace of `anbu bench calls`
        self._tls = ssl.create_default_context()
        # calls beyond max_lines wait as "queued", as a carrier queues over its capacity
        self._lines = ThreadPoolExecutor(max_workers=self.max_lines, thread_name_prefix="line")
        self._server = ThreadingHTTPServer((self.host, self.port), handler_for(self))
        self._server.daemon_threads = True
        self.port = int(self._server.server_address[1])
        self._serve_thread = threading.Thread(target=self._serve, name="phone-network", daemon=True)
        self._serve_thread.start()

    def _serve(self) -> None:
        assert self._server is not None
        self._server.serve_forever(poll_interval=0.05)

    def stop(self, timeout: float = 10.0) -> None:
        self._released.set()
        self._lines_open.set()
        if self._gate is not None:
            self._gate.open()
        idle = self.wait_idle(timeout)
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._lines is not None:
            self._lines.shutdown(wait=False, cancel_futures=True)
            self._lines = None
        if idle:  # calls still running keep their clients
            with self._lock:
                clients, self._clients = self._clients, []
            for client in clients:
                client.close()
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

    # -- faults ----------------------------------------------------------------------------

    def lose_next_reply(self, mode: str, resource: str = "Calls.json") -> None:
        """The next successful POST to `resource` is acted on (the call rings, the message goes)
        but its reply is lost: REPLY_TIMEOUT never answers (until stop() or release_replies()),
        REPLY_RESET resets the connection."""
        if mode not in (REPLY_TIMEOUT, REPLY_RESET):
            raise ValueError(f"unknown reply fault {mode!r}")
        self._released.clear()
        with self._lock:
            self._reply_faults.append((resource, mode))

    def reply_fault(self, method: str, rest: str) -> str | None:
        if method != "POST":
            return None
        with self._lock:
            for i, (resource, mode) in enumerate(self._reply_faults):
                if rest == resource:
                    del self._reply_faults[i]
                    return mode
        return None

    def wait_released(self) -> None:
        self._released.wait(60.0)

    def release_replies(self) -> None:
        """Let held replies go (their clients gave up long ago: the connections just close)."""
        self._released.set()

    def refuse_sms(self, number: str, code: int = 21610, message: str = "") -> None:
        """The carrier refuses every SMS to `number` (21610: the recipient unsubscribed)."""
        with self._lock:
            self._refused_sms[number] = (
                400,
                code,
                message or "Attempt to send to unsubscribed recipient",
            )

    def fail_next_sms(self, status: int = 503, code: int = 20503, message: str = "") -> None:
        """The next SMS request fails with an HTTP error and is not sent (a carrier hiccup)."""
        with self._lock:
            self._sms_failures.append((status, code, message or "Service Unavailable"))

    def hold_sms(self) -> MessageGate:
        """Hold every SMS request from now on until the returned gate is opened."""
        gate = MessageGate()
        with self._lock:
            self._gate = gate
        return gate

    def pause_lines(self) -> None:
        """Calls are accepted but do not ring (no callbacks) until resume_lines()."""
        self._lines_open.clear()

    def resume_lines(self) -> None:
        self._lines_open.set()

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
        with self._idle:
            return self._idle.wait_for(
                lambda: self._outstanding == 0, max(0.0, deadline - time.monotonic())
            )

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
            timeout_s=float(one(form, "Timeout") or 60),
            async_amd_callback=(
                one(form, "AsyncAmdStatusCallback")
                if (one(form, "AsyncAmd") or "").lower() == "true"
                else None
            ),
        )
        self._launch(call)
        return 201, call_json(call, self.account_sid)

    def _launch(self, call: SimulatedCall) -> None:
        assert self._lines is not None, "PhoneNetwork.start() first"
        with self._lock:
            self._calls[call.sid] = call
            self._outstanding += 1
        self._lines.submit(self._line, call.sid)

    def _line(self, sid: str) -> None:
        try:
            self._run(sid)
        except Exception as exc:  # a broken call must not wedge wait_idle
            self._append(sid, "errors", f"network error: {type(exc).__name__}")
        finally:
            with self._idle:
                self._outstanding -= 1
                self._idle.notify_all()

    def _line_client(self) -> WebhookClient:
        """This line thread's own webhook client (kept connections, none shared across lines)."""
        http: WebhookClient | None = getattr(self._local, "http", None)
        if http is None or http.closed:
            assert self._tls is not None, "PhoneNetwork.start() first"
            http = WebhookClient(self.webhook_timeout_s, self._tls)
            self._local.http = http
            with self._lock:
                self._clients.append(http)
        return http

    def dial_in(self, from_: str, to: str, url: str, persona: Persona) -> str:
        """A person calls `to` from `from_`: the network posts to the number's voice `url`."""
        call = SimulatedCall(
            sid="CA" + uuid.uuid4().hex, to=to, from_=from_, url=url, status_callback=None,
            status_callback_events=(), machine_detection=None, persona=persona,
            direction="inbound",
        )  # fmt: skip
        self._launch(call)
        return call.sid

    def update_call(self, sid: str, form: dict[str, list[str]]) -> tuple[int, dict[str, Any]]:
        """Redirect a live call to new TwiML (Twiml=...) or end it (Status=completed)."""
        call = self.call(sid)
        if call is None:
            return error(404, 20404, f"The requested resource {sid} was not found")
        if call.done:
            return error(400, 21220, "Call is not in-progress. Cannot redirect.")
        twiml = one(form, "Twiml")
        if one(form, "Status") in ("completed", "canceled"):
            twiml = "<Response><Hangup/></Response>"
        if twiml:
            call = self._update(sid, pending_twiml=twiml)
        return 200, call_json(call, self.account_sid)

    def fetch_call(self, sid: str) -> tuple[int, dict[str, Any]]:
        call = self.call(sid)
        if call is None:
            return error(404, 20404, f"The requested resource {sid} was not found")
        return 200, call_json(call, self.account_sid)

    def recording(self, recording_sid: str) -> bytes | None:
        """A recording's media (a few bytes standing in for MP3); None for what is not a
        recording's sid."""
        if not re.fullmatch(r"RE\w{1,64}", recording_sid):
            return None
        return RECORDING_MEDIA + recording_sid.encode()

    def create_message(self, form: dict[str, list[str]]) -> tuple[int, dict[str, Any]]:
        to, from_, body = one(form, "To"), one(form, "From"), one(form, "Body")
        if not to or not from_:
            return error(400, 21604, "A 'To' and 'From' phone number is required")
        if not body:
            return error(400, 21602, "Message body is required")
        with self._lock:
            gate = self._gate
            refused = self._refused_sms.get(to)
            failure = self._sms_failures.pop(0) if self._sms_failures else None
        if gate is not None:
            gate.hold()
        if refused is not None:
            return error(*refused)
        if failure is not None:
            return error(*failure)
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
        http = self._line_client()
        self._lines_open.wait()
        call = self._update(sid, status="initiated" if call_outbound(self, sid) else "ringing")
        if call.direction == "inbound":
            self._answered(http, sid)
            return
        self._status(http, call, "initiated")
        behaviour = call.persona.behaviour
        if behaviour in (Behaviour.FAILED, Behaviour.BUSY):
            self._finish(http, sid, "failed" if behaviour is Behaviour.FAILED else "busy")
            return
        self._pause()
        call = self._update(sid, status="ringing")
        self._status(http, call, "ringing")
        self._pause()
        ring = min(call.persona.answer_after_s, call.timeout_s)
        self._ring(ring)
        if behaviour is Behaviour.NO_ANSWER or call.persona.answer_after_s > call.timeout_s:
            self._finish(http, sid, "no-answer")
            return
        answered_by = None
        if call.machine_detection:
            machine = behaviour is Behaviour.VOICEMAIL
            answered_by = call.persona.amd or ("machine_end_beep" if machine else "human")
        # async detection reports AnsweredBy on its own callback, not on the voice request
        shown = None if call.async_amd_callback else answered_by
        call = self._update(sid, status="in-progress", answered_by=shown)
        self._status(http, call, "answered")
        self._answered(http, sid, answered_by if call.async_amd_callback else None)

    def _answered(self, http: WebhookClient, sid: str, async_amd: str | None = None) -> None:
        answered_at = time.monotonic()
        try:
            self._converse(http, sid, async_amd)
        except _TwimlError as exc:
            self._append(sid, "errors", str(exc))
        duration = max(1, math.ceil(time.monotonic() - answered_at))
        self._finish(http, sid, "completed", duration)
        self._transcribe(http, sid)

    def _converse(self, http: WebhookClient, sid: str, async_amd: str | None) -> None:
        """Fetch the call's TwiML and play it, following gathers, records and redirects."""
        url: str | None = self.call(sid).url  # type: ignore[union-attr]
        extra: dict[str, str] = {}
        for _ in range(MAX_DOCUMENTS):
            if url is None:
                return
            document = self._webhook(http, url, self._params(sid, **extra))
            if async_amd is not None:
                self._amd(http, sid, async_amd)  # detection finishes while the greeting plays
                async_amd = None
            pending = self._take_pending(sid)
            url, extra = self._play(sid, pending or document, url)
            pending = self._take_pending(sid)
            while pending is not None:  # redirected while the last document played
                url, extra = self._play(sid, pending, url or "")
                pending = self._take_pending(sid)
        self._append(sid, "errors", "too many TwiML documents")

    def _take_pending(self, sid: str) -> str | None:
        with self._lock:
            call = self._calls[sid]
            if call.pending_twiml is None:
                return None
            self._calls[sid] = replace(call, pending_twiml=None)
            return call.pending_twiml

    def _amd(self, http: WebhookClient, sid: str, answered_by: str) -> None:
        call = self._update(sid, answered_by=answered_by)
        if not call.async_amd_callback:
            return
        params = self._params(sid, MachineDetectionDuration="2800")
        try:
            self._webhook(http, call.async_amd_callback, params)
        except _TwimlError as exc:
            self._append(sid, "errors", str(exc))

    def _transcribe(self, http: WebhookClient, sid: str) -> None:
        """Post a recorded message's transcript after the call, as Twilio's transcription does."""
        call = self.call(sid)
        if call is None or not call.transcribe_callback or not call.persona.speech:
            return
        params = self._params(
            sid, TranscriptionText=call.persona.speech, TranscriptionStatus="completed",
            RecordingUrl=_recording_url(self.base_url, self.account_sid, call),
        )  # fmt: skip
        try:
            self._webhook(http, call.transcribe_callback, params)
        except _TwimlError as exc:
            self._append(sid, "errors", str(exc))

    def _play(self, sid: str, document: str, doc_url: str) -> tuple[str | None, dict[str, str]]:
        """Play one TwiML document; returns the next URL to fetch (and what to post), if any."""
        try:
            root = ET.fromstring(document)  # nosec B314  # TwiML from anbu's own app under test; expat (>= 2.4.1) refuses entity expansion attacks
        except ET.ParseError as exc:
            raise _TwimlError(f"invalid TwiML: {exc}") from exc
        if root.tag != "Response":
            raise _TwimlError(f"TwiML root is <{root.tag}>")
        persona = self.call(sid).persona  # type: ignore[union-attr]
        for verb in root:
            if verb.tag == "Say":
                self._append(sid, "heard", _said(verb))
            elif verb.tag == "Pause":
                self._pause()
            elif verb.tag == "Gather":
                for say in verb.iter("Say"):
                    self._append(sid, "heard", _said(say))
                if persona.script:
                    played = self.call(sid).gathers  # type: ignore[union-attr]
                    self._update(sid, gathers=played + 1)
                    step = persona.script[played] if played < len(persona.script) else ""
                    if step == "hangup":
                        return None, {}
                    answer = _scripted(step, verb.get("input", "dtmf"))
                else:
                    answer = _answer(persona, verb.get("input", "dtmf"))
                if answer:
                    self._append(sid, "answers", next(iter(answer.values())))
                    return urljoin(doc_url, verb.get("action") or doc_url), answer
            elif verb.tag == "Record":
                if persona.speech:
                    self._append(sid, "answers", persona.speech)
                    self._update(sid, transcribe_callback=verb.get("transcribeCallback"))
                    call = self.call(sid)
                    assert call is not None
                    params = {
                        "RecordingUrl": _recording_url(self.base_url, self.account_sid, call),
                        "RecordingDuration": str(max(1, len(persona.speech) // 4)),
                        "Digits": "hangup",
                    }
                    return urljoin(doc_url, verb.get("action") or doc_url), params
            elif verb.tag == "Dial":  # put through: the other side answers (dial_status)
                self._append(sid, "dialled", (verb.text or "").strip())
                params = {"DialCallStatus": self.dial_status, "DialCallDuration": "30"}
                if verb.get("action"):
                    return urljoin(doc_url, verb.get("action") or ""), params
            elif verb.tag == "Redirect":
                return urljoin(doc_url, (verb.text or "").strip()), {}
            elif verb.tag in ("Hangup", "Reject"):
                return None, {}
            else:
                self._append(sid, "errors", f"unsupported verb <{verb.tag}>")
        return None, {}

    def _finish(self, http: WebhookClient, sid: str, status: str, duration: int = 0) -> None:
        call = self._update(sid, status=status, duration=duration)
        self._status(http, call, "completed", CallDuration=str(duration))

    def _status(self, http: WebhookClient, call: SimulatedCall, event: str, **extra: str) -> None:
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
            "Direction": call.direction,
            "ApiVersion": "2010-04-01",
        }
        if call.answered_by:
            params["AnsweredBy"] = call.answered_by
        params.update(extra)
        return params

    def _webhook(self, http: WebhookClient, url: str, params: dict[str, str]) -> str:
        """POST signed form params to the application, as Twilio does."""
        headers = {
            "X-Twilio-Signature": self._validator.compute_signature(url, params),
            "User-Agent": "TwilioProxy/1.1",
        }
        try:
            status, text = http.post_form(url, params, headers)
        except WebhookError as exc:
            raise _TwimlError(f"webhook unreachable: {exc}") from exc
        if status >= 400:
            raise _TwimlError(f"webhook answered HTTP {status}")
        return text

    def _pause(self) -> None:
        if self.step_delay_s > 0:
            time.sleep(self.step_delay_s)

    def _ring(self, simulated_s: float) -> None:
        if self.time_scale > 0 and simulated_s > 0:
            time.sleep(simulated_s * self.time_scale)


RECORDING_MEDIA = b"ID3\x04\x00\x00\x00\x00\x00\x00"  # an MP3 header, then the recording's sid


def call_outbound(network: PhoneNetwork, sid: str) -> bool:
    call = network.call(sid)
    return call is not None and call.direction != "inbound"


def _recording_url(base_url: str, account_sid: str, call: SimulatedCall) -> str:
    """Where Twilio says a call's recording is (its media: the same with .mp3)."""
    return f"{base_url}/2010-04-01/Accounts/{account_sid}/Recordings/RE{call.sid[2:]}"


def _said(say: ET.Element) -> str:
    """The words of a <Say>, through its SSML (prosody, breaks): sentences joined by a space."""
    return " ".join(" ".join(part.split()) for part in say.itertext() if part.strip())


def _scripted(step: str, inputs: str) -> dict[str, str]:
    """A scripted persona's answer at a <Gather> accepting `inputs` ({} for silence)."""
    kind, _, value = step.partition(":")
    accepted = inputs.split()
    if kind == "key" and value and "dtmf" in accepted:
        return {"Digits": value}
    if kind == "say" and value and "speech" in accepted:
        return {"SpeechResult": value, "Confidence": "0.9"}
    return {}


def _answer(persona: Persona, inputs: str) -> dict[str, str]:
    """What the persona answers at a <Gather> accepting `inputs`; {} for no input."""
    accepted = inputs.split()
    if persona.behaviour is Behaviour.PRESS and persona.digits and "dtmf" in accepted:
        return {"Digits": persona.digits}
    speaks = persona.behaviour is Behaviour.SAY or "dtmf" not in accepted  # asked to speak
    if speaks and persona.speech and persona.recognised and "speech" in accepted:
        return {"SpeechResult": persona.speech, "Confidence": "0.92"}
    return {}
