"""The words a role reads: one name per role, every refusal of a resident's course in Korean
and English, the system's own outcomes, the reassignment's timeline entry, phones on the form."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from alerts import course
from alerts.models import RESOLUTION_OUTCOMES
from alerts.service import reassign_reason
from dashboards.authz import Action, Role
from dashboards.i18n import (
    ROLE_LABELS,
    TEXTS,
    change_error,
    forbidden_text,
    outcome_label,
    role_label,
)
from dashboards.routes import safe_next
from registry import InvalidChange
from registry.residents_edit import Enrolled

ROOT = Path(__file__).parent.parent.parent


def _codes_raised(module: Path) -> set[str]:
    """The codes of every `InvalidChange("code", ...)` a module raises."""
    found = set()
    for node in ast.walk(ast.parse(module.read_text(encoding="utf-8"))):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id in ("InvalidChange", "ResidentEnded")
            and node.args
            and isinstance(node.args[0], ast.Constant)
        ):
            found.add(str(node.args[0].value))
    return found


def test_every_refusal_of_a_course_has_its_own_words() -> None:
    codes = _codes_raised(ROOT / "alerts" / "course.py")
    assert {"unknown_dong", "same_dong", "bad_end_reason", "assignee_other_dong"} <= codes
    for code in codes:
        assert f"invalid_{code}" in TEXTS, code
    said = {code: change_error("ko", InvalidChange(code, "x")) for code in codes}
    assert said["unknown_dong"] == "관할 구에 없는 행정동입니다."
    assert said["same_dong"] == "이미 해당 행정동의 대상자입니다."
    assert said["bad_end_reason"] == (
        "종료 사유는 전출, 요양시설 입소, 사망, 기타 중에서 골라 주세요."
    )
    assert said["assignee_other_dong"] == "선택한 담당자는 옮겨 갈 행정동의 담당자가 아닙니다."
    assert len(set(said.values())) == len(said)  # no two refusals read alike
    english = change_error("en", InvalidChange("assignee_other_dong", "x"))
    assert english.startswith("The care manager chosen is not")


def test_one_name_per_role_and_who_may_run_a_course() -> None:
    assert set(ROLE_LABELS) == {r.value for r in Role}
    assert role_label("ko", "supervisor") == "구 통합돌봄 담당자"
    assert role_label("ko", "admin") == "구 시스템 관리자"
    assert role_label("ko", "technician") == "설치·점검 기사"
    assert role_label("en", "manager") == "care manager"
    assert len({role_label("ko", r) for r in Role}) == len(Role)
    assert forbidden_text("ko", Action.COURSE) == course.COURSE_NOT_ALLOWED[0]
    assert role_label("ko", "supervisor") in course.COURSE_NOT_ALLOWED[0]
    assert role_label("ko", "admin") in course.COURSE_NOT_ALLOWED[0]
    assert forbidden_text("en", Action.ALERTS_READ) == (
        "Your account does not have permission to use this page."
    )
    assert (
        forbidden_text("ko", Action.ALERTS_READ) == "이 계정에는 이 화면을 사용할 권한이 없습니다."
    )


@pytest.mark.parametrize(
    ("lang", "expected"), [("ko", "서비스 종료로 종결"), ("en", "closed: service ended")]
)
def test_an_alert_closed_by_the_end_of_service_says_so(lang: str, expected: str) -> None:
    assert outcome_label(lang, course.ENDED_OUTCOME) == expected
    assert course.ENDED_OUTCOME not in RESOLUTION_OUTCOMES  # never offered in the form


def test_a_reassignment_reads_in_korean_then_english() -> None:
    assert reassign_reason(None, 12) == (
        "담당자 변경: 행정동 공동 담당 → 담당자 #12 / "
        "reassigned: the dong's care managers → care manager #12"
    )
    assert reassign_reason(7, 12, "휴가") == (
        "담당자 변경: 담당자 #7 → 담당자 #12 / reassigned: care manager #7 → care manager #12"
        " — 휴가"
    )


def test_without_a_target_login_lands_on_each_roles_start() -> None:
    assert safe_next("") == "/" and safe_next(None) == "/" and safe_next("//x") == "/"
    assert safe_next("/sites") == "/sites"


def test_the_form_shows_phones_as_koreans_write_them() -> None:
    values = {"mobile_phone": "+821023456789", "landline_phone": "+8227341234",
              "contact1_phone": "+821098765432", "contact2_phone": "",
              "address": "+82 is not a phone here"}  # fmt: skip
    shown = Enrolled(1, "h", values, None).form_values
    assert shown["mobile_phone"] == "010-2345-6789"
    assert shown["landline_phone"] == "02-734-1234"
    assert shown["contact1_phone"] == "010-9876-5432"
    assert shown["contact2_phone"] == "" and shown["address"] == values["address"]
