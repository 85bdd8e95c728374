"""Twilio's webhooks: call scripts, answers, status and AMD callbacks, the 돌봄콜 line; all signed.

Every request must carry a valid X-Twilio-Signature for settings.public_base_url + path;
anything else gets 403 and nothing is stored. The body (capped by the web app before it is
read) is only split into its form fields to check that signature; nothing else looks at it, and
it is never logged. A signed request received again by the same web instance within the
replay window (same URL, same fields in any order: a replay, or Twilio retrying) gets the first
answer again and changes nothing; one that reaches another instance, or comes later, runs
again, and the handlers are written for that: a status never reopens a finished call, an answer
only ever raises a call's outcome, each adds an event row. Twilio's signature
covers the URL and the fields sorted by name, so that is what identifies a request; a field
named twice is refused (400), since it would make one signature fit several readings.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlencode
from zoneinfo import ZoneInfo

import psycopg
from starlette.concurrency import run_in_threadpool
from starlette.convertors import Convertor, register_url_convertor
from starlette.datastructures import FormData, UploadFile
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route, Router
from twilio.request_validator import RequestValidator

from calls import twiml
from calls.incoming import IncomingLine
from calls.outcomes import ANSWERED_BY_OUTCOMES, TERMINAL_STATUSES
from calls.service import CallService, Script
from calls.talk import Talk
from calls.understanding import despairs
from core.config import Settings
from core.domain import CallOutcome

log = logging.getLogger(__name__)

TWIML = "application/xml"
FORM = "application/x-www-form-urlencoded"
MAX_FIELDS = 100  # Twilio sends a few dozen at most
REPLAYS_KEPT = 20000  # the most recent signed requests remembered (hash and answer)


def _xml(body: str) -> Response:
    return Response(body, media_type=TWIML)


@dataclass(frozen=True, slots=True)
class _Answer:
    status: int
    body: bytes
    media_type: str | None


class Replays:
    """Signed requests seen in the last `window_s` seconds, by hash of URL and body, with the
    answer each got. Bounded; one process's memory (each web instance keeps its own)."""

    IN_FLIGHT = _Answer(409, b"", None)

    def __init__(self, window_s: float, kept: int = REPLAYS_KEPT) -> None:
        self._window_s = window_s
        self._kept = kept
        self._seen: OrderedDict[bytes, tuple[float, _Answer]] = OrderedDict()
        self._lock = threading.Lock()

    def claim(self, key: bytes) -> _Answer | None:
        """None for a new request (now claimed); else the earlier answer, or IN_FLIGHT."""
        now = time.monotonic()
        with self._lock:
            while self._seen:
                oldest, (at, _) = next(iter(self._seen.items()))
                if now - at <= self._window_s and len(self._seen) <= self._kept:
                    break
                del self._seen[oldest]
            if key in self._seen:
                return self._seen[key][1]
            self._seen[key] = (now, self.IN_FLIGHT)
            return None

    def answered(self, key: bytes, response: Response) -> None:
        with self._lock:
            if key in self._seen:
                self._seen[key] = (
                    self._seen[key][0],
                    _Answer(response.status_code, bytes(response.body), response.media_type),
                )

    def release(self, key: bytes) -> None:
        """The request failed before it was answered: a retry may run it."""
        with self._lock:
            self._seen.pop(key, None)


def _form_fields(request: Request, body: bytes) -> FormData:
    """The urlencoded form fields of `body`; 415 for another content type, 400 when unreadable."""
    content_type = request.headers.get("content-type", "").partition(";")[0].strip().lower()
    if content_type != FORM:
        raise HTTPException(status_code=415, detail=f"{FORM} expected")
    try:
        pairs: list[tuple[str, str | UploadFile]] = parse_qsl(  # type: ignore[assignment]
            body.decode("utf-8"), keep_blank_values=True, strict_parsing=False,
            max_num_fields=MAX_FIELDS,
        )  # fmt: skip
    except (UnicodeDecodeError, ValueError):
        raise HTTPException(status_code=400, detail="unreadable form") from None
    if len({name for name, _ in pairs}) != len(pairs):
        raise HTTPException(status_code=400, detail="a form field given twice")
    return FormData(pairs)


Endpoint = Callable[[Request], Awaitable[Response]]


class IdConvertor(Convertor[int]):
    """A database id in a path: 1 to 18 digits (Starlette's int takes any number of them, and
    Python refuses past 4,300 while the route is matched: a 500 before any signature check)."""

    regex = "[0-9]{1,18}"

    def convert(self, value: str) -> int:
        return int(value)

    def to_string(self, value: int) -> str:
        return str(value)


register_url_convertor("id", IdConvertor())


def _count(request: Request, name: str) -> int:
    """A small count from the query of a URL anbu wrote (tries, then, week): 0 when absent,
    422 when it is not one."""
    given = request.query_params.get(name, "0")
    if not (given.isascii() and given.isdigit() and len(given) <= 3):
        raise HTTPException(status_code=422, detail=f"{name}: a small count expected")
    return int(given)


def _replay_key(url: str, form: FormData) -> bytes:
    """What Twilio signed (the URL and the fields sorted by name), however the body was
    ordered or encoded."""
    digest = hashlib.sha256(url.encode())
    for name, value in sorted((k, v) for k, v in form.items() if isinstance(v, str)):
        for part in (name, value):
            data = part.encode()
            digest.update(len(data).to_bytes(4, "big") + data)
    return digest.digest()


def build_router(service: CallService, settings: Settings) -> Router:
    """The /twilio/... routes bound to one CallService, as plain Starlette routes: the web app
    (dashboards.app) serves them ahead of the dashboard's session, pages and API machinery,
    behind the edge every answer has (request id, security headers, body limit, last-stop
    500). A round of calls posts tens of thousands of them, and the dashboard's layers and
    FastAPI's dependency solving were a quarter of a web worker's CPU per webhook."""
    validator = RequestValidator(settings.twilio_auth_token)
    base = settings.public_base_url.rstrip("/")
    line = IncomingLine(service.db, service.clock)
    talk = Talk(service.db, service.clock, ZoneInfo(settings.timezone), service.raise_answer,
                settings.conversation_script)  # fmt: skip
    replays = Replays(settings.webhook_replay_window_s)
    routes: list[Route] = []

    def post(path: str) -> Callable[[Endpoint], Endpoint]:
        def add(endpoint: Endpoint) -> Endpoint:
            routes.append(Route("/twilio" + path, endpoint, methods=["POST"]))
            return endpoint

        return add

    async def signed_params(request: Request) -> tuple[bytes, dict[str, str]]:
        """The replay key and form parameters of a request Twilio signed; 403 otherwise."""
        signature = request.headers.get("X-Twilio-Signature", "")
        if any(c < " " or c == "\x7f" for c in request.scope["path"]):
            # the URL signed would not be the path routed (urlsplit drops tabs and newlines)
            raise HTTPException(status_code=400, detail="control character in the path")
        if not signature:
            raise HTTPException(status_code=403, detail="invalid Twilio signature")
        body = await request.body()
        form = _form_fields(request, body)
        url = base + request.url.path
        if request.url.query:
            url += "?" + request.url.query
        # the URL as anbu wrote it first (one HMAC); the library's whole check (the URL with
        # and without its port, a body hash) only when that one does not match
        computed = validator.compute_signature(url, form).encode()
        exact = hmac.compare_digest(computed, signature.encode("latin-1", "replace"))
        if not exact and not validator.validate(url, form, signature):
            raise HTTPException(status_code=403, detail="invalid Twilio signature")
        return _replay_key(url, form), {k: v for k, v in form.items() if isinstance(v, str)}

    async def once(
        request: Request, handle: Callable[[dict[str, str]], Awaitable[Response]]
    ) -> Response:
        """Run `handle` on a signed request's parameters, unless it was seen before: then the
        first answer again (409 while the first is still being handled), nothing changed."""
        key, params = await signed_params(request)
        earlier = replays.claim(key)
        if earlier is replays.IN_FLIGHT:
            raise HTTPException(status_code=409, detail="the same request is being handled")
        if earlier is not None:
            return Response(earlier.body, status_code=earlier.status, media_type=earlier.media_type)
        try:
            response = await handle(params)
        except BaseException:
            replays.release(key)
            raise
        replays.answered(key, response)
        return response

    @post("/voice/{call_id:id}")
    async def voice(request: Request) -> Response:
        """The call was answered: greet and ask (or leave a message on a machine)."""
        call_id: int = request.path_params["call_id"]

        async def handle(params: dict[str, str]) -> Response:
            script = await run_in_threadpool(service.answered, call_id, params)
            if script is None:
                return _xml(twiml.hang_up())
            language, purpose, message_ko, about = script
            gather_url = f"{base}/twilio/gather/{call_id}"
            caller = settings.caller_name_ko if language != "en" else settings.caller_name_en
            if purpose == "manager_alert":
                return _xml(twiml.manager_alert(message_ko or "", gather_url))
            if ANSWERED_BY_OUTCOMES.get(params.get("AnsweredBy", "")) is not None:
                return _xml(twiml.voicemail(language, about, caller))  # synchronous AMD knew
            return _xml(twiml.check_in(gather_url, language, about, caller))

        return await once(request, handle)

    @post("/gather/{call_id:id}")
    async def gather(request: Request) -> Response:
        """The resident pressed a key or spoke: store it and say what happens next."""
        call_id: int = request.path_params["call_id"]

        def stored(params: dict[str, str]) -> tuple[CallOutcome | None, Script | None, Any]:
            """The answer stored and, for a routine call's "all right", the conversation's
            first question: one trip to a worker thread, not two."""
            outcome, script = service.gathered(call_id, params)
            talks = outcome is CallOutcome.OK and script is not None and script[1] == "routine"
            try:
                return outcome, script, talk.first(call_id) if talks else None
            except psycopg.Error as exc:  # PoolTimeout is one; the answer is stored: close kindly
                log.warning("the conversation's first question not read; the call closes",
                            extra={"call_id": call_id, "error": type(exc).__name__})  # fmt: skip
                return outcome, script, None

        async def handle(params: dict[str, str]) -> Response:
            outcome, script, first = await run_in_threadpool(stored, params)
            if script is not None and script[1] == "manager_alert":
                return _xml(twiml.manager_closing(params.get("Digits") == "1"))
            if script is None:
                return _xml(twiml.closing(outcome, None))
            if outcome is CallOutcome.EMERGENCY and despairs(params.get("SpeechResult")):
                return _xml(twiml.words(twiml.DESPAIR_CLOSING, script[0]))
            if first is not None:  # all right: the conversation of the day
                ask, weekly = first
                url = _answer_url(call_id, ask.id, weekly)
                return _xml(twiml.question(url, f"{twiml.TALK_OPENING} {ask.ask}"))
            return _xml(twiml.closing(outcome, script[0], script[3]))

        return await once(request, handle)

    def _answer_url(
        call_id: int, question: str, weekly: bool, tries: int = 1, then: bool = False
    ) -> str:
        query = urlencode({"week": int(weekly), "tries": tries, "then": int(then)})
        return f"{base}/twilio/answer/{call_id}/{question}?{query}"

    @post("/answer/{call_id:id}/{question}")
    async def answer(request: Request) -> Response:
        """The resident answered one question of the routine conversation (or said nothing:
        Twilio's redirect after the question)."""
        call_id: int = request.path_params["call_id"]
        question: str = request.path_params["question"]
        tries, then, week = (_count(request, name) for name in ("tries", "then", "week"))

        async def handle(params: dict[str, str]) -> Response:
            step = await run_in_threadpool(
                talk.answer, call_id, question, params.get("Digits") or None,
                params.get("SpeechResult") or None, min(max(tries, 1), 2), bool(then), bool(week),
            )  # fmt: skip
            if step.ask is not None:
                text = step.ask.then if step.then else None  # a need's words: keys are no use
                text = text or (step.ask.simpler if step.tries > 1 else step.ask.ask)
                url = _answer_url(call_id, step.ask.id, bool(week), step.tries, step.then)
                return _xml(twiml.question(url, text, words_only=step.then))
            if step.words is not None:
                return _xml(twiml.words(step.words))
            if step.connect:
                action = f"{base}/twilio/connected/{call_id}"
                return _xml(twiml.connect(step.connect, settings.twilio_from_number, action))
            return _xml(twiml.closing(step.closing))

        return await once(request, handle)

    @post("/connected/{call_id:id}")
    async def connected(request: Request) -> Response:
        """The transfer to the care manager ended: answered and over, or nobody took it."""

        async def handle(params: dict[str, str]) -> Response:
            return _xml(twiml.connected(params.get("DialCallStatus", "")))

        return await once(request, handle)

    @post("/status/{call_id:id}")
    async def status(request: Request) -> Response:
        """A status callback: initiated, then completed/busy/no-answer/failed (calls.dialer's
        STATUS_EVENTS; the answer itself arrives as the voice request)."""
        call_id: int = request.path_params["call_id"]

        async def handle(params: dict[str, str]) -> Response:
            found = await run_in_threadpool(service.record_status, call_id, params)
            return Response(status_code=204 if found else 404)

        return await once(request, handle)

    @post("/amd/{call_id:id}")
    async def amd(request: Request) -> Response:
        """Async answering-machine detection: a machine gets the voicemail line instead."""
        call_id: int = request.path_params["call_id"]

        async def handle(params: dict[str, str]) -> Response:
            implied = await run_in_threadpool(service.record_amd, call_id, params)
            sid = params.get("CallSid", "")
            live = params.get("CallStatus", "in-progress") not in TERMINAL_STATUSES
            if implied is not None and sid and live:
                await run_in_threadpool(service.leave_voicemail, call_id, sid)
            return Response(status_code=204)

        return await once(request, handle)

    # -- the 돌봄콜 line -----------------------------------------------------------------

    @post("/line")
    async def line_call(request: Request) -> Response:
        """Someone called the programme's number."""

        async def handle(params: dict[str, str]) -> Response:
            resident_id = await run_in_threadpool(
                line.answer, params.get("CallSid", ""), params.get("From", "")
            )
            if resident_id is None:
                return _xml(twiml.line_unknown(settings.city_contact_ko))
            return _xml(twiml.line_menu(f"{base}/twilio/line/menu"))

        return await once(request, handle)

    @post("/line/menu")
    async def line_menu(request: Request) -> Response:
        async def handle(params: dict[str, str]) -> Response:
            choice = await run_in_threadpool(
                line.choose, params.get("CallSid", ""), params.get("Digits", "")
            )
            if choice == "help":
                return _xml(twiml.line_help_taken())
            if choice == "message":
                return _xml(
                    twiml.line_message(f"{base}/twilio/line/spoken", f"{base}/twilio/line/recorded")
                )
            return _xml(twiml.line_menu(f"{base}/twilio/line/menu"))

        return await once(request, handle)

    @post("/line/recorded")
    async def line_recorded(request: Request) -> Response:
        async def handle(params: dict[str, str]) -> Response:
            await run_in_threadpool(
                line.recorded, params.get("CallSid", ""), params.get("RecordingUrl")
            )
            return _xml(twiml.line_message_taken())

        return await once(request, handle)

    @post("/line/spoken")
    async def line_spoken(request: Request) -> Response:
        """The message as Korean speech recognition heard it; nothing heard asks for a recording
        (the rest of line_message's TwiML), so only a recognised message is stored here."""

        async def handle(params: dict[str, str]) -> Response:
            text = params.get("SpeechResult", "").strip()
            if not text:
                return _xml(twiml.line_record_again(f"{base}/twilio/line/recorded"))
            model = await run_in_threadpool(service.speech_model)
            await run_in_threadpool(line.transcribed, params.get("CallSid", ""), text, model)
            return _xml(twiml.line_message_taken())

        return await once(request, handle)

    @post("/line/transcript")
    async def line_transcript(request: Request) -> Response:
        """A transcript of a recorded message, posted later by a recogniser the district runs
        (in the form of Twilio's transcription callback)."""

        async def handle(params: dict[str, str]) -> Response:
            model = await run_in_threadpool(service.speech_model)
            await run_in_threadpool(
                line.transcribed,
                params.get("CallSid", ""),
                params.get("TranscriptionText", ""),
                model,
            )
            return Response(status_code=204)

        return await once(request, handle)

    return Router(routes=routes, redirect_slashes=False)
