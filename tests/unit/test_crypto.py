"""core.crypto: key parsing, ids, sealing and opening (pure; the database tests are beside)."""

from __future__ import annotations

import base64
import secrets

import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.crypto import (
    DataKeyInvalid,
    DataKeyMissing,
    Keyring,
    SealBroken,
    UnknownDataKey,
    key_id,
    key_problem,
    new_key,
    parse_key,
)

RING = Keyring.of(new_key())


def test_a_key_is_read_as_hex_or_either_base64_and_named_by_a_stable_id() -> None:
    raw = secrets.token_bytes(32)
    forms = (raw.hex(), base64.b64encode(raw).decode(), base64.urlsafe_b64encode(raw).decode(),
             base64.urlsafe_b64encode(raw).decode().rstrip("="))  # fmt: skip
    assert {parse_key(f) for f in forms} == {raw}
    assert len({Keyring.of(f).current_id for f in forms}) == 1
    assert key_id(raw) != key_id(secrets.token_bytes(32)) and raw.hex() not in key_id(raw)


@pytest.mark.parametrize("text", ["short", "ab" * 31, "x" * 44, "가" * 64, "zz" * 32])
def test_a_key_that_is_not_32_bytes_is_refused_with_why(text: str) -> None:
    with pytest.raises(DataKeyInvalid, match="32-byte"):
        parse_key(text)
    assert key_problem(text) is not None


def test_a_missing_key_and_a_constant_key_are_problems() -> None:
    with pytest.raises(DataKeyMissing):
        Keyring.of("  ")
    assert key_problem("") == "ANBU_DATA_KEY is not set"
    assert "too few" in str(key_problem("00" * 32))
    assert key_problem(new_key()) is None


@given(st.text())
def test_any_text_opens_as_it_was_sealed_and_never_seals_the_same_twice(text: str) -> None:
    one, two = RING.seal(text, "health_notes"), RING.seal(text, "health_notes")
    assert one.blob != two.blob and one.key_id == RING.current_id
    assert RING.open(one.blob, one.key_id, "health_notes") == text
    if len(text.encode()) >= 8:  # shorter runs of bytes turn up in random bytes by chance
        assert text.encode() not in one.blob


def test_old_keys_open_and_the_current_one_seals() -> None:
    old, new = new_key(), new_key()
    sealed = Keyring.of(old).seal("현관 1234", "access_notes")
    ring = Keyring.of(new, ["", old])
    assert ring.open(sealed.blob, sealed.key_id, "access_notes") == "현관 1234"
    assert ring.seal("x", "access_notes").key_id == Keyring.of(new).current_id
    with pytest.raises(UnknownDataKey, match=sealed.key_id):
        Keyring.of(new).open(sealed.blob, sealed.key_id, "access_notes")
    with pytest.raises(SealBroken):
        ring.open(sealed.blob[:5], sealed.key_id, "access_notes")
    with pytest.raises(DataKeyInvalid, match="ANBU_DATA_KEYS_OLD"):
        Keyring.of(new, ["nope"])
