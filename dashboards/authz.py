"""Who may do what, and over which dongs: the one authorization rule of the web app and the API.

The rule is data: `RULES` names, for each action, the roles that may take it; `visible_dongs`
says which dongs an actor's objects may come from (a care manager: their own dong; every other
role: every dong of their district). Routes ask for an action through the dependencies
`page_actor(action)` / `api_actor(action)`; a role without the action is answered 403, and
queries scope by `visible_dongs(actor)`, so an object outside it answers 404 (its existence is
not revealed).
"""

from __future__ import annotations

from collections.abc import Callable
from enum import StrEnum

from starlette.requests import Request

from dashboards.auth import CareManager
from dashboards.deps import api_manager, page_manager


class Role(StrEnum):
    # what a person reads for each role: dashboards.i18n.ROLE_LABELS
    MANAGER = "manager"  # 담당자(생활지원사·전담사회복지사): their own dong
    SUPERVISOR = "supervisor"  # 구 통합돌봄 담당자: every dong of the district
    ADMIN = "admin"  # 구 시스템 관리자: enrolment, accounts, devices; sees what a supervisor sees
    TECHNICIAN = "technician"  # 설치·점검 기사: gateways, sensors, how to get in; no care data
    SERVICE = "service"  # a city system's service account: what its scopes grant, its dongs


class Action(StrEnum):
    ME = "me"  # who am I
    ALERTS_READ = "alerts.read"  # alert lists and details: reasons, timeline, call transcripts
    ALERTS_ACT = "alerts.act"  # acknowledge, resolve
    ALERTS_REASSIGN = "alerts.reassign"  # hand an alert to another care manager
    RESIDENTS_READ = "residents.read"  # lists, activity, care settings
    RESIDENTS_CARD = "residents.card"  # the card with health notes
    RESIDENTS_CHANGE = "residents.change"  # status, quiet hours, level caps
    RESIDENTS_REASSIGN = "residents.reassign"  # hand a resident to another care manager
    RESIDENTS_SITE = "residents.site"  # install address, access notes, gateways and sensors
    CARE_NOTES = "residents.notes"  # care notes on the card: read, write, correct
    REVIEW_READ = "review.read"  # the weekly review (reports)
    REQUESTS = "requests"  # service requests residents stated on calls: read, accept, link, close
    DEVICES_READ = "devices.read"  # gateways' heard devices, device and site findings
    DEVICES_WRITE = "devices.write"  # register a heard device as a sensor
    ENROL = "enrol"  # enrol, import and edit residents; their gateways and sensors
    COURSE = "residents.course"  # transfer a resident, pause or end their service
    ACCOUNTS = "accounts"  # the district's care manager accounts and settings
    REPORTS_READ = "reports.read"  # the district's monthly report
    ACCESS_LOG_READ = "access_log.read"  # who read whom (access_audit checks the same itself)
    WEBHOOKS = "webhooks"  # the district's webhook subscriptions and their delivery log
    EVENTS_READ = "events.read"  # the event feed (GET /api/v1/events)


M, S, A, T = Role.MANAGER, Role.SUPERVISOR, Role.ADMIN, Role.TECHNICIAN
CARE = frozenset({M, S, A})
# Where each role's objects may come from: its own dong, or every dong of its district.
DISTRICT_WIDE: frozenset[Role] = frozenset({S, A, T})

RULES: dict[Action, frozenset[Role]] = {
    Action.ME: frozenset(Role),
    Action.ALERTS_READ: CARE,
    Action.ALERTS_ACT: CARE,
    Action.ALERTS_REASSIGN: frozenset({S, A}),
    Action.RESIDENTS_READ: CARE,
    Action.RESIDENTS_CARD: CARE,
    Action.RESIDENTS_CHANGE: CARE,
    Action.RESIDENTS_REASSIGN: frozenset({S, A}),
    Action.RESIDENTS_SITE: frozenset(Role),
    # the care roles of the resident's own dong, as for what a resident said word for word
    Action.CARE_NOTES: CARE - DISTRICT_WIDE,
    Action.REVIEW_READ: CARE,
    Action.REQUESTS: CARE,
    Action.DEVICES_READ: frozenset({M, A, T}),
    Action.DEVICES_WRITE: frozenset({M, A, T}),
    Action.ENROL: frozenset({A}),
    Action.COURSE: frozenset({S, A}),
    Action.ACCOUNTS: frozenset({A}),
    Action.REPORTS_READ: frozenset({S, A}),
    Action.ACCESS_LOG_READ: frozenset({S, A}),
    Action.WEBHOOKS: frozenset({A}),
    Action.EVENTS_READ: CARE,
}

# What each scope of a service account grants (dashboards.service_accounts); nothing else is
# granted to one, whatever the role rules above say.
SCOPE_ACTIONS: dict[str, frozenset[Action]] = {
    "alerts:read": frozenset({Action.ALERTS_READ}),
    "alerts:write": frozenset({Action.ALERTS_ACT}),
    "residents:read": frozenset({Action.RESIDENTS_READ}),
    "residents:write": frozenset({Action.RESIDENTS_CHANGE}),
    "events:read": frozenset({Action.EVENTS_READ}),
}


class Forbidden(Exception):
    """The actor's role may not take this action (403); says which, for the log."""

    def __init__(self, action: Action) -> None:
        super().__init__(f"role may not {action.value}")
        self.action = action


def may(actor: CareManager, action: Action) -> bool:
    """Whether the actor's role may take `action` (an unknown role may take none); a service
    account, what its scopes grant (and who it is)."""
    if actor.role == Role.SERVICE:
        return action is Action.ME or any(
            action in SCOPE_ACTIONS.get(scope, frozenset()) for scope in actor.scopes
        )
    return actor.role in RULES[action]


def require(actor: CareManager, action: Action) -> CareManager:
    """The actor, or Forbidden."""
    if not may(actor, action):
        raise Forbidden(action)
    return actor


def visible_dongs(actor: CareManager) -> tuple[str, ...]:
    """The dongs whose residents, alerts and devices the actor may see."""
    if actor.role == Role.SERVICE:
        return actor.district_dongs  # the dongs it was given
    if actor.role in DISTRICT_WIDE:
        return actor.district_dongs or (actor.dong_code,)
    return (actor.dong_code,)


def district_wide(actor: CareManager) -> bool:
    """Whether the actor's objects come from every dong of their district (not their own)."""
    return actor.role in DISTRICT_WIDE


def sees_dong(actor: CareManager, dong_code: str | None) -> bool:
    return dong_code is not None and dong_code in visible_dongs(actor)


def page_actor(action: Action) -> Callable[[Request], CareManager]:
    """A page dependency: the session's care manager when their role may take `action`."""

    def dependency(request: Request) -> CareManager:
        return require(page_manager(request), action)

    dependency.__name__ = f"page_actor_{action.name.lower()}"
    return dependency


def api_actor(action: Action) -> Callable[[Request], CareManager]:
    """An API dependency: the token's (or session's) care manager when their role may take
    `action`."""

    def dependency(request: Request) -> CareManager:
        return require(api_manager(request), action)

    dependency.__name__ = f"api_actor_{action.name.lower()}"
    return dependency
