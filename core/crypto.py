"""Sealing personal fields at rest: AES-256-GCM under a keyring of data keys.

A sealed value is `nonce (12 bytes) || ciphertext || tag`, stored as bytea with the id of its
key beside it, so keys can be rotated: the current key seals, every configured key opens. The
field's name is the associated data, so a sealed health note cannot be passed off as an access
note. A key id is a truncated SHA-256 of the key (no setting to keep in step with it). Errors
name key ids and settings, never a key or a value.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

KEY_BYTES = 32
NONCE_BYTES = 12
_ID_SALT = b"anbu.data-key-id.v1\x00"


class DataKeyError(Exception):
    """A data key is missing, unreadable, or does not open what it should."""


class DataKeyMissing(DataKeyError):
    """No ANBU_DATA_KEY where personal fields are sealed or opened."""


class DataKeyInvalid(DataKeyError):
    """A configured key is not 32 bytes in hex or base64."""


class UnknownDataKey(DataKeyError):
    """A value sealed under a key that is not configured (neither current nor old)."""


class SealBroken(DataKeyError):
    """A sealed value that its key does not open: altered, truncated, or a different field."""


class KeySettings(Protocol):
    data_key: str
    data_keys_old: str


def parse_key(text: str, name: str = "ANBU_DATA_KEY") -> bytes:
    """The 32 key bytes of `text`: 64 hex digits, or base64 (standard or URL-safe)."""
    value = text.strip()
    if not value:
        raise DataKeyMissing(f"{name} is not set")
    if len(value) == 2 * KEY_BYTES:
        try:
            return bytes.fromhex(value)
        except ValueError:
            pass
    try:
        bare = value.rstrip("=").replace("-", "+").replace("_", "/")
        raw = base64.b64decode(bare + "=" * (-len(bare) % 4), validate=True)
    except (binascii.Error, ValueError):
        raw = b""
    if len(raw) != KEY_BYTES:
        raise DataKeyInvalid(
            f"{name}: not a 32-byte key (64 hex digits or base64); make one with `anbu keys new`"
        )
    return raw


def key_problem(text: str, name: str = "ANBU_DATA_KEY") -> str | None:
    """Why `text` cannot serve as a data key, or None when it can."""
    try:
        raw = parse_key(text, name)
    except DataKeyError as exc:
        return str(exc)
    if len(set(raw)) < 8:
        return f"{name}: too few different bytes to be secret"
    return None


def key_id(key: bytes) -> str:
    """A short public name of a key, stored beside what it sealed."""
    return hashlib.sha256(_ID_SALT + key).hexdigest()[:16]


def new_key() -> str:
    """A fresh random data key, URL-safe base64."""
    return base64.urlsafe_b64encode(secrets.token_bytes(KEY_BYTES)).decode()


@dataclass(frozen=True, slots=True)
class Sealed:
    """A sealed value and the id of the key that sealed it."""

    blob: bytes
    key_id: str


@dataclass(frozen=True)
class Keyring:
    """The current data key (seals) and every key that still opens (current and old)."""

    current_id: str
    keys: Mapping[str, bytes]

    @classmethod
    def of(cls, current: str, old: Iterable[str] = ()) -> Keyring:
        """From key texts (the current one first); DataKeyError when one is unreadable."""
        key = parse_key(current)
        keys = {key_id(key): key}
        for n, text in enumerate(old, start=1):
            if text.strip():
                other = parse_key(text, f"ANBU_DATA_KEYS_OLD (key {n})")
                keys.setdefault(key_id(other), other)
        return cls(key_id(key), keys)

    @classmethod
    def from_settings(cls, settings: KeySettings) -> Keyring:
        """ANBU_DATA_KEY and the comma-separated ANBU_DATA_KEYS_OLD."""
        return cls.of(settings.data_key, settings.data_keys_old.split(","))

    def seal(self, plaintext: str, field: str) -> Sealed:
        """`plaintext` sealed under the current key, bound to `field`."""
        nonce = os.urandom(NONCE_BYTES)
        blob = AESGCM(self.keys[self.current_id]).encrypt(
            nonce, plaintext.encode("utf-8"), field.encode()
        )
        return Sealed(nonce + blob, self.current_id)

    def open(self, blob: bytes, sealed_key_id: str, field: str) -> str:
        """The plaintext of a value sealed by `seal` for `field`."""
        key = self.keys.get(sealed_key_id)
        if key is None:
            raise UnknownDataKey(
                f"sealed under data key {sealed_key_id}, which is configured neither as "
                "ANBU_DATA_KEY nor in ANBU_DATA_KEYS_OLD"
            )
        data = bytes(blob)
        try:
            plain = AESGCM(key).decrypt(data[:NONCE_BYTES], data[NONCE_BYTES:], field.encode())
        except (InvalidTag, ValueError):
            raise SealBroken(
                f"a sealed {field} does not open under data key {sealed_key_id}: altered or damaged"
            ) from None
        return plain.decode("utf-8")
