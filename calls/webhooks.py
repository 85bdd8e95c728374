"""Twilio's webhooks: call scripts, answers, status and AMD callbacks, the 돌봄콜 line; all signed.

Every request must carry a valid X-Twilio-Signature for settings.public_base_url + path;
anything else gets 403 and nothing is stored.
"""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, Request, Response
from starlette.concurrency import run_in_threadpool
from twilio.request_validator import RequestValidator

from calls import twiml
from calls.incoming import IncomingLine
from calls.outcomes import ANSWERED_BY_OUTCOMES, TERMINAL_STATUSES
from calls.service import CallService
from core.config import Settings

TWIML = "application/xml"


def _xml(body: str) -> Response:
    return Response(body, media_type=TWIML)


def build_router(service: CallService, settings: Settings) -> APIRouter:
    """The /twilio/... routes bound to one CallService."""
    validator = RequestValidator(settings.twilio_auth_token)
    base = settings.public_base_url.rstrip("/")
    line = IncomingLine(service.db, service.clock)
    router = APIRouter(prefix="/twilio", tags=["twilio"])

    async def signed_params(request: Request) -> dict[str, str]:
        """The form parameters of a request Twilio signed, or 403."""
        form = await request.form()
        url = base + request.url.path
        if request.url.query:
            url += "?" + request.url.query
        signature = request.headers.get("X-Twilio-Signature", "")
        if not signature or not validator.validate(url, form, signature):
            raise HTTPException(status_code=403, detail="invalid Twilio signature")
        return {key: value for key, value in form.items() if isinstance(value, str)}

    @router.post("/voice/{call_id}")
    async def voice(call_id: int, request: Request) -> Response:
        """The call was answered: greet and ask (or leave a message on a machine)."""
        params = await signed_params(request)
        if not await run_in_threadpool(service.record_status, call_id, params):
            return _xml(twiml.hang_up())
        script = await run_in_threadpool(service.script_of, call_id)
        if script is None:
            return _xml(twiml.hang_up())
        language, purpose, message_ko = script
        gather_url = f"{base}/twilio/gather/{call_id}"
        if purpose == "manager_alert":
            return _xml(twiml.manager_alert(message_ko or "", gather_url))
        if ANSWERED_BY_OUTCOMES.get(params.get("AnsweredBy", "")) is not None:
            return _xml(twiml.voicemail(language))  # synchronous AMD already knew
        return _xml(twiml.check_in(gather_url, language))

    @router.post("/gather/{call_id}")
    async def gather(call_id: int, request: Request) -> Response:
        """The resident pressed a key or spoke: store it and say what happens next."""
        params = await signed_params(request)
        outcome = await run_in_threadpool(service.record_gather, call_id, params)
        script = await run_in_threadpool(service.script_of, call_id)
        if script is not None and script[1] == "manager_alert":
            return _xml(twiml.manager_closing(params.get("Digits") == "1"))
        return _xml(twiml.closing(outcome, script[0] if script else None))

    @router.post("/status/{call_id}")
    async def status(call_id: int, request: Request) -> Response:
        """A status callback: initiated, ringing, answered, completed/busy/no-answer/failed."""
        params = await signed_params(request)
        found = await run_in_threadpool(service.record_status, call_id, params)
        return Response(status_code=204 if found else 404)

    @router.post("/amd/{call_id}")
    async def amd(call_id: int, request: Request) -> Response:
        """Async answering-machine detection: a machine gets the voicemail line instead."""
        params = await signed_params(request)
        implied = await run_in_threadpool(service.record_amd, call_id, params)
        sid = params.get("CallSid", "")
        live = params.get("CallStatus", "in-progress") not in TERMINAL_STATUSES
        if implied is not None and sid and live:
            await run_in_threadpool(service.leave_voicemail, call_id, sid)
        return Response(status_code=204)

    # -- the 돌봄콜 line -----------------------------------------------------------------

    @router.post("/line")
    async def line_call(request: Request) -> Response:
        """Someone called the programme's number."""
        params = await signed_params(request)
        resident_id = await run_in_threadpool(
            line.answer, params.get("CallSid", ""), params.get("From", "")
        )
        if resident_id is None:
            return _xml(twiml.line_unknown(settings.city_contact_ko))
        return _xml(twiml.line_menu(f"{base}/twilio/line/menu"))

    @router.post("/line/menu")
    async def line_menu(request: Request) -> Response:
        params = await signed_params(request)
        choice = await run_in_threadpool(
            line.choose, params.get("CallSid", ""), params.get("Digits", "")
        )
        if choice == "help":
            return _xml(twiml.line_help_taken())
        if choice == "message":
            return _xml(
                twiml.line_record(f"{base}/twilio/line/recorded", f"{base}/twilio/line/transcript")
            )
        return _xml(twiml.line_menu(f"{base}/twilio/line/menu"))

    @router.post("/line/recorded")
    async def line_recorded(request: Request) -> Response:
        params = await signed_params(request)
        await run_in_threadpool(
            line.recorded, params.get("CallSid", ""), params.get("RecordingUrl")
        )
        return _xml(twiml.line_message_taken())

    @router.post("/line/transcript")
    async def line_transcript(request: Request) -> Response:
        params = await signed_params(request)
        model = await run_in_threadpool(service.speech_model)
        await run_in_threadpool(
            line.transcribed,
            params.get("CallSid", ""),
            params.get("TranscriptionText", ""),
            model,
        )
        return Response(status_code=204)

    return router
