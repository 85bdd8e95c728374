"""Pure parts of the dashboard: words, times shown in Seoul, safe redirects, signed tokens."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from alerts.models import STATE_LABELS
from core.db import Database
from core.domain import AlertState
from dashboards.auth import Authenticator, CareManager
from dashboards.i18n import (
    TEXTS,
    actor_label,
    call_outcome_label,
    local_time_formatter,
    severity_label,
    state_label,
)
from dashboards.routes import safe_next
from dashboards.schemas import care_manager_actions

MANAGER = CareManager(7, "kim", "김복지", "1111051500", "청운효자동", "manager")


def test_every_text_has_korean_and_english() -> None:
    for key, (ko, en) in TEXTS.items():
        assert ko and en and ko != en, key


def test_times_are_shown_in_seoul() -> None:
    local = local_time_formatter("Asia/Seoul")
    assert local(datetime(2026, 11, 22, 15, 5, tzinfo=UTC)) == "2026-11-23 00:05"
    assert local(None) == ""


@pytest.mark.parametrize(
    ("lang", "severity", "expected"),
    [("ko", "watch", "관심"), ("ko", "warning", "주의"), ("ko", "critical", "심각"),
     ("en", "critical", "critical")],
)  # fmt: skip
def test_severity_badges(lang: str, severity: str, expected: str) -> None:
    assert severity_label(lang, severity) == expected


def test_labels_come_from_the_alert_tables_and_never_name_people() -> None:
    assert state_label("ko", AlertState.ESCALATED) == STATE_LABELS[AlertState.ESCALATED][0]
    assert state_label("en", "resolved") == "resolved"
    assert actor_label("ko", "care_manager:12") == "담당자 #12"
    assert actor_label("en", "system") == "system"
    assert call_outcome_label("ko", "no_answer") == "받지 않음"
    assert call_outcome_label("en", None) == "—"


@pytest.mark.parametrize(
    ("lang", "status", "outcome", "expected"),
    [("ko", "canceled", None, "취소됨"), ("en", "canceled", None, "cancelled"),
     ("ko", "lost", "failed", "연결 안 됨(유실)"), ("en", "lost", "failed", "lost before dialling"),
     ("ko", "completed", "failed", "연결 실패"), ("ko", "ringing", None, "—")],
)  # fmt: skip
def test_a_call_that_rang_nobody_says_why_by_its_status(
    lang: str, status: str, outcome: str | None, expected: str
) -> None:
    """A cancelled call has no outcome and a lost one is stored as failed: neither is 'still
    going' nor an ordinary failed call."""
    assert call_outcome_label(lang, outcome, status) == expected


def test_actions_follow_the_state_machine() -> None:
    assert care_manager_actions(AlertState.OPEN) == ["acknowledge"]
    assert care_manager_actions(AlertState.ESCALATED) == ["acknowledge", "resolve"]
    assert care_manager_actions(AlertState.ACKNOWLEDGED) == ["resolve"]
    assert care_manager_actions(AlertState.RESOLVED) == []


@given(st.text())
def test_after_login_we_only_go_to_local_paths(target: str) -> None:
    result = safe_next(target)
    assert result.startswith("/") and not result.startswith("//") and "\\" not in result


def test_tokens_round_trip_and_resist_tampering_and_expire() -> None:
    auth = Authenticator(Database("postgresql://unused"), "secret-one")
    token = auth.issue_token(MANAGER)
    assert auth.read_token(token) == MANAGER.id
    assert auth.read_token(token[:-2] + ("AA" if not token.endswith("AA") else "BB")) is None
    assert Authenticator(Database("postgresql://unused"), "secret-two").read_token(token) is None
    expired = Authenticator(Database("postgresql://unused"), "secret-one", timedelta(seconds=-1))
    assert expired.read_token(token) is None
