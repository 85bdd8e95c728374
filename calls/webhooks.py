"""Twilio's webhooks: the call script, the resident's answer and status callbacks, all signed.

Every request must carry a valid X-Twilio-Signature for settings.public_base_url + path;
anything else gets 403 and nothing is stored.
"""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, Request, Response
from starlette.concurrency import run_in_threadpool
from twilio.request_validator import RequestValidator

from anbu.config import Settings
from calls import twiml
from calls.outcomes import ANSWERED_BY_OUTCOMES
from calls.service import CallService

TWIML = "application/xml"


def build_router(service: CallService, settings: Settings) -> APIRouter:
    """The /twilio/... routes bound to one CallService."""
    validator = RequestValidator(settings.twilio_auth_token)
    base = settings.public_base_url.rstrip("/")
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
            return Response(twiml.hang_up(), media_type=TWIML)
        language = await run_in_threadpool(service.language_of, call_id)
        if ANSWERED_BY_OUTCOMES.get(params.get("AnsweredBy", "")) is not None:
            return Response(twiml.voicemail(language), media_type=TWIML)
        body = twiml.check_in(f"{base}/twilio/gather/{call_id}", language)
        return Response(body, media_type=TWIML)

    @router.post("/gather/{call_id}")
    async def gather(call_id: int, request: Request) -> Response:
        """The resident pressed a key or spoke: store it and say what happens next."""
        params = await signed_params(request)
        outcome = await run_in_threadpool(service.record_gather, call_id, params)
        language = await run_in_threadpool(service.language_of, call_id)
        return Response(twiml.closing(outcome, language), media_type=TWIML)

    @router.post("/status/{call_id}")
    async def status(call_id: int, request: Request) -> Response:
        """A status callback: initiated, ringing, answered, completed/busy/no-answer/failed."""
        params = await signed_params(request)
        found = await run_in_threadpool(service.record_status, call_id, params)
        return Response(status_code=204 if found else 404)

    return router
