"""A gateway's MQTT credentials as the enrolment API and pages hand them out: issued with the
gateway, replaced on request, shown once (never stored: registry.gateway_accounts), with the
broker address the gateway connects to."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field

from alerts.course import broker_admin_of
from core.config import Settings
from dashboards.deps import Deps
from dashboards.enrolment_access import Admin, EnrolmentDenied
from dashboards.enrolment_schemas import GatewayOut
from registry import gateway_accounts as accounts

NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}
# the page's words: Korean, English
WORDS: dict[str, tuple[str, str]] = {
    "title": ("게이트웨이 접속 정보", "Gateway credentials"),
    "issued": (
        "게이트웨이를 등록하고 접속 계정을 발급했습니다. 아래 정보를 게이트웨이 설정에 입력하세요.",
        "The gateway was enrolled and its account issued. Enter the details below in the "
        "gateway's settings.",
    ),
    "replaced": (
        "새 비밀번호를 발급했습니다. 아래 정보를 게이트웨이 설정에 입력하세요.",
        "A new password was issued. Enter the details below in the gateway's settings.",
    ),
    "once": accounts.SHOWN_ONCE,
    "host": ("서버 주소 (MQTT 브로커)", "Server address (MQTT broker)"),
    "port": ("포트", "Port"),
    "tls": ("TLS 사용", "TLS"),
    "username": ("사용자 이름", "Username"),
    "password": ("비밀번호", "Password"),
    "topics": ("허용된 토픽", "Allowed topics"),
    "back": ("대상자 정보로 돌아가기", "Back to the resident"),
    "rotate": ("비밀번호 재발급", "New password"),
    "rotate_title": (
        "이 게이트웨이의 새 비밀번호를 발급합니다(확인 단계가 있습니다).",
        "Issue a new password for this gateway (asks for confirmation first).",
    ),
    "rotate_confirm": (
        "재발급하면 새 비밀번호를 입력할 때까지 이 게이트웨이의 연결이 끊깁니다.",
        "Issuing a new password disconnects this gateway until the new password is entered.",
    ),
    "rotate_go": ("재발급", "Issue a new password"),
    "revocation_pending": (
        "게이트웨이를 삭제했습니다. MQTT 브로커에 연결할 수 없어 이 게이트웨이의 접속 계정은 "
        "아직 차단되지 않았습니다. 오늘 밤 자동으로 다시 차단을 시도합니다.",
        "The gateway was removed. The MQTT broker could not be reached, so its account is not "
        "blocked yet; it will be tried again automatically tonight.",
    ),
}


def credential_word(lang: str, key: str) -> str:
    ko, en = WORDS[key]
    return en if lang == "en" else ko


class GatewayCredentialsOut(BaseModel):
    """What the gateway connects with. The password is shown this once: anbu keeps no copy."""

    gateway_id: str
    username: str = Field(description="The MQTT username: the gateway's id.")
    password: str = Field(description="Shown once; anbu stores no copy (the broker a hash).")
    host: str = Field(description="The broker host the gateway connects to.")
    port: int
    tls: bool = Field(description="Whether that port is the broker's TLS listener.")
    topics: str = Field(description="The only topics it may publish and subscribe to.")
    warning: str = Field(description="다시 표시되지 않는다는 안내 (Korean).")
    warning_en: str


class GatewayIssuedOut(GatewayOut):
    """A gateway just enrolled, with its credentials (shown this once)."""

    credentials: GatewayCredentialsOut


class RemovedOut(BaseModel):
    """A removal whose broker revocation is still pending (the nightly job retries it)."""

    gateway_id: str
    revocation_pending: bool
    detail: str
    detail_en: str


def credentials_out(settings: Settings, made: accounts.Credentials) -> GatewayCredentialsOut:
    host, port, tls = accounts.broker_address(settings)
    return GatewayCredentialsOut(
        gateway_id=made.gateway_id, username=made.username, password=made.password,
        host=host, port=port, tls=tls, topics=f"gw/{made.gateway_id}/#",
        warning=credential_word("ko", "once"), warning_en=credential_word("en", "once"),
    )  # fmt: skip


def issue(deps: Deps, admin: Admin, resident_id: int, gateway_id: str) -> accounts.Credentials:
    """Enrol the gateway with its broker account (the caller checked the district)."""
    return accounts.issue_gateway(
        deps.db, broker_admin_of(deps.settings), resident_id, gateway_id, _now(deps),
        settings=deps.settings, care_manager_id=admin.manager.id,
    )  # fmt: skip


def replace(deps: Deps, admin: Admin, gateway_id: str) -> accounts.Credentials:
    """A new password (the caller checked the district); gone meanwhile: 404."""
    try:
        return accounts.replace_password(
            deps.db, broker_admin_of(deps.settings), gateway_id, _now(deps),
            care_manager_id=admin.manager.id,
        )  # fmt: skip
    except LookupError:
        raise EnrolmentDenied(404, "not_in_district") from None


def remove(deps: Deps, admin: Admin, gateway_id: str) -> accounts.Revocation:
    """Remove the gateway (the caller checked the district); gone meanwhile: 404."""
    try:
        return accounts.remove_gateway(
            deps.db, broker_admin_of(deps.settings), gateway_id, _now(deps),
            care_manager_id=admin.manager.id,
        )  # fmt: skip
    except LookupError:
        raise EnrolmentDenied(404, "not_in_district") from None


def _now(deps: Deps) -> datetime:
    return deps.clock.now()
