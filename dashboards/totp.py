"""Time-based one-time passwords (RFC 6238: HMAC-SHA1, 30-second steps, 6 digits), the codes
authenticator apps show. Pure: the caller passes `now`; replay is refused by the registry."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import struct
from datetime import datetime
from urllib.parse import quote, urlencode

STEP_S = 30
DIGITS = 6
DRIFT_STEPS = 1  # a phone's clock a step off either way still works
ISSUER = "anbu"


def new_secret() -> str:
    """A fresh 160-bit secret, base32 as authenticator apps take it."""
    return base64.b32encode(secrets.token_bytes(20)).decode("ascii")


def step_of(now: datetime) -> int:
    """The 30-second step `now` falls in."""
    return int(now.timestamp()) // STEP_S


def code_at(secret: str, step: int) -> str:
    """The code of `step` (RFC 4226 HOTP with the step as counter)."""
    key = base64.b32decode(secret.upper() + "=" * (-len(secret) % 8))
    digest = hmac.new(key, struct.pack(">Q", step), hashlib.sha1).digest()
    offset = digest[-1] & 0x0F
    value = struct.unpack(">I", digest[offset : offset + 4])[0] & 0x7FFFFFFF
    return str(value % 10**DIGITS).zfill(DIGITS)


def matching_step(secret: str, code: str, now: datetime) -> int | None:
    """The step whose code `code` is, within the allowed drift of `now`; None when none is."""
    code = code.strip().replace(" ", "")
    if len(code) != DIGITS or not code.isascii() or not code.isdigit():
        return None
    current = step_of(now)
    found = None
    for step in range(current - DRIFT_STEPS, current + DRIFT_STEPS + 1):
        # compare with every candidate: the time taken does not tell which step matched
        if hmac.compare_digest(code_at(secret, step), code):
            found = step
    return found


def provisioning_uri(secret: str, username: str) -> str:
    """The otpauth:// URI an authenticator app reads (typed in or as a QR code)."""
    label = quote(f"{ISSUER}:{username}")
    query = urlencode({"secret": secret, "issuer": ISSUER, "digits": DIGITS, "period": STEP_S})
    return f"otpauth://totp/{label}?{query}"


def grouped(secret: str) -> str:
    """The secret in groups of four, easier to type from the screen."""
    return " ".join(secret[i : i + 4] for i in range(0, len(secret), 4))
