"""Text messages through Twilio: one send, and what its failure means for a retry.

A refusal (HTTP 4xx: an invalid or unsubscribed number, a blocked destination) is final and
keeps Twilio's code and message as the reason. Anything else (the connection, a 5xx, a reply
that never came) may pass: the sender may try again, knowing from `maybe_sent` whether the
message may already have reached the care manager.
"""

from __future__ import annotations

import re

from twilio.base.exceptions import TwilioRestException
from twilio.rest import Client

from calls.client import TWILIO_ERRORS, may_have_reached


class SmsRefused(Exception):
    """The carrier refused the message: sending it again gets the same answer."""

    def __init__(self, code: str, reason: str) -> None:
        super().__init__(f"{code}: {reason}")
        self.code = code
        self.reason = reason


class SmsNotSent(Exception):
    """The message may not have been sent; a later try may succeed."""

    def __init__(self, code: str, reason: str, maybe_sent: bool) -> None:
        super().__init__(f"{code}: {reason}")
        self.code = code
        self.reason = reason
        self.maybe_sent = maybe_sent


# Twilio's error text can quote the number ("The 'To' number +8210... is not valid").
_NUMBER = re.compile(r"\+?\d[\d\s()-]{5,}\d")


def _reason(exc: BaseException) -> tuple[str, str]:
    """(code, reason) of a failed request; any phone number in Twilio's text is masked."""
    if isinstance(exc, TwilioRestException):
        text = _NUMBER.sub("[번호]", str(exc.msg))
        return str(exc.code or exc.status), f"HTTP {exc.status}: {text}"[:300]
    return type(exc).__name__, type(exc).__name__


def send(client: Client, from_: str, to: str, body: str) -> str:
    """Send one SMS; returns its message sid. Raises SmsRefused or SmsNotSent."""
    try:
        message = client.messages.create(to=to, from_=from_, body=body)
    except TWILIO_ERRORS as exc:
        code, reason = _reason(exc)
        if isinstance(exc, TwilioRestException) and 400 <= exc.status < 500:
            raise SmsRefused(code, reason) from exc
        raise SmsNotSent(code, reason, maybe_sent=may_have_reached(exc)) from exc
    if not message.sid:  # accepted with no id: it may have gone
        raise SmsNotSent("no_sid", "no message sid in the reply", maybe_sent=True)
    return str(message.sid)
