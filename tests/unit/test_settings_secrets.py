"""`anbu serve web` refuses the secrets published with anbu, missing or short ones: with them
anyone could mint a care manager's bearer token or sign a Twilio webhook."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from core.config import Settings

GOOD = {
    "session_secret": "0123456789abcdefghij" * 3,
    "twilio_auth_token": "0123456789abcdef" * 2,
    "mqtt_password": "a-long-broker-secret-9",
    "data_key": "00112233445566778899aabbccddeeff" * 2,
}
ROLES = ("web", "ingest")


def test_good_secrets_pass() -> None:
    assert Settings(**GOOD).unsafe_secrets(ROLES) == []


@pytest.mark.parametrize(
    ("field", "value", "why"),
    [
        ("session_secret", "change-me-in-production", "published default"),
        ("twilio_auth_token", "anbu-dev-auth-token", "published default"),
        ("session_secret", "", "0 characters"),
        ("session_secret", "short-but-not-empty", "19 characters"),
        ("twilio_auth_token", "abc123", "6 characters"),
        ("session_secret", "a" * 40, "different characters"),
        ("mqtt_password", "ingest-dev-password", "published default"),
        ("mqtt_password", "short", "5 characters"),
    ],
)
def test_unsafe_secrets_are_named_without_their_value(field: str, value: str, why: str) -> None:
    [reason] = Settings(**{**GOOD, field: value}).unsafe_secrets(ROLES)
    assert reason.startswith(f"ANBU_{field.upper()}:") and why in reason
    assert not value or value not in reason


def test_the_defaults_are_unsafe(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [k for k in os.environ if k.startswith("ANBU_")]:
        monkeypatch.delenv(name)
    assert len(Settings().unsafe_secrets(ROLES)) == 4
    assert len(Settings().unsafe_secrets()) == 3  # the web's


@pytest.mark.parametrize(
    ("role", "named"),
    [
        ("web", ["ANBU_SESSION_SECRET", "ANBU_TWILIO_AUTH_TOKEN", "ANBU_DATA_KEY"]),
        ("worker", ["ANBU_DATA_KEY"]),
        ("all", ["ANBU_SESSION_SECRET", "ANBU_TWILIO_AUTH_TOKEN", "ANBU_MQTT_PASSWORD"]),
        ("ingest", ["ANBU_MQTT_PASSWORD"]),
    ],
)
def test_serve_refuses_to_start_with_the_published_defaults(role: str, named: list[str]) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANBU_")}
    env["ANBU_DATABASE_URL"] = "postgresql://nobody@127.0.0.1:1/none"  # never reached
    done = subprocess.run(
        [sys.executable, "-m", "anbu.cli", "serve", role],
        capture_output=True, text=True, env=env, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr[-2000:]
    assert all(name in done.stderr for name in named)
    for value in ("change-me-in-production", "anbu-dev-auth-token", "ingest-dev-password"):
        assert value not in done.stderr + done.stdout
