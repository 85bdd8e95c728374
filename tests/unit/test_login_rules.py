"""Pure parts of logging in: TOTP codes (RFC 6238 vectors), the lockout policy, password rules."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dashboards import totp
from dashboards.throttle import KeyState, ThrottlePolicy, after_failure
from registry import PASSWORD_MIN_LENGTH, WeakPassword, check_password

RFC_SECRET = base64.b32encode(b"12345678901234567890").decode()
T0 = datetime(2026, 12, 5, tzinfo=UTC)


@pytest.mark.parametrize(
    ("unix", "code"),
    [(59, "287082"), (1111111109, "081804"), (1234567890, "005924"), (2000000000, "279037")],
)
def test_totp_matches_rfc_6238(unix: int, code: str) -> None:
    # RFC 6238 appendix B (SHA-1), last six of the eight digits
    assert totp.code_at(RFC_SECRET, unix // 30) == code
    assert totp.matching_step(RFC_SECRET, code, datetime.fromtimestamp(unix, UTC)) == unix // 30


def test_totp_accepts_one_step_of_drift_and_no_more() -> None:
    secret = totp.new_secret()
    step = totp.step_of(T0)
    for offset in (-1, 0, 1):
        assert totp.matching_step(secret, totp.code_at(secret, step + offset), T0) == step + offset
    for offset in (-3, -2, 2, 3):
        code = totp.code_at(secret, step + offset)
        if all(code != totp.code_at(secret, step + d) for d in (-1, 0, 1)):
            assert totp.matching_step(secret, code, T0) is None
    assert totp.matching_step(secret, "12345", T0) is None
    assert totp.matching_step(secret, "١٢٣٤٥٦", T0) is None  # digits, but not ASCII


def test_lockouts_start_at_the_limit_and_double() -> None:
    policy = ThrottlePolicy(pair_failures=3, lockout=timedelta(minutes=5))
    state = None
    for _ in range(2):
        state = after_failure(state, T0, policy.pair)
        assert state.locked_until is None
    state = after_failure(state, T0, policy.pair)
    assert state.locked_until == T0 + timedelta(minutes=5)
    later = T0 + timedelta(minutes=5)
    for _ in range(3):
        state = after_failure(state, later, policy.pair)
    assert state.locked_until == later + timedelta(minutes=10)
    # a quiet day forgives: the next lockout is short again
    much_later = later + timedelta(days=2)
    for _ in range(3):
        state = after_failure(state, much_later, policy.pair)
    assert state.locked_until == much_later + timedelta(minutes=5)


def test_failures_outside_the_window_do_not_add_up() -> None:
    policy = ThrottlePolicy(pair_failures=3, window=timedelta(minutes=15))
    state: KeyState | None = None
    for minute in range(0, 90, 10):  # one failure every 10 minutes
        state = after_failure(state, T0 + timedelta(minutes=minute), policy.pair)
        assert state.locked_until is None


@given(st.integers(min_value=1, max_value=60))
def test_lockouts_are_capped_at_a_day(lockouts: int) -> None:
    policy = ThrottlePolicy(pair_failures=1)
    state = KeyState(0, T0, lockouts, T0)
    locked = after_failure(state, T0 + timedelta(minutes=1), policy.pair)
    assert locked.locked_until is not None
    assert locked.locked_until - (T0 + timedelta(minutes=1)) <= timedelta(days=1)


@pytest.mark.parametrize(
    "weak",
    ["password", "Password2026!", "P@ssw0rd-1234", "qwertyuiop12", "1q2w3e4r5t6y!",
     "abcabcabcabc", "dkssudgktpdy1!", "anbu-demo-2026", "비밀번호12345678",
     "사랑해사랑해사랑해사랑해", "111111111111", "kimbokji-2026-x", "   x   x   x   "],
)  # fmt: skip
def test_weak_passwords_are_refused(weak: str) -> None:
    with pytest.raises(WeakPassword):
        check_password(weak, "kimbokji")


@pytest.mark.parametrize(
    "good", ["청운동-돌봄-2026-봄", "correct horse battery", "Tr0ub4dor&3xyz", "9f8a7b6c5d4e"]
)
def test_varied_passwords_pass(good: str) -> None:
    assert len(good) >= PASSWORD_MIN_LENGTH
    check_password(good, "kimbokji")
