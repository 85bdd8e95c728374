"""A resident's whole course, as a district's supervisor or admin runs it: transfer to another
dong, pause (away or in hospital until a date), end of service, and the retention purge.

Ending the service closes the resident's open alerts (event `service_ended`, the reason in
alert_events), cancels their calls waiting in the send queue and their routine check-in plans
and rounds (calls/ does), and revokes their gateways' broker accounts (registry.broker_accounts,
after the commit; without broker admin credentials the revocation is recorded as pending and
retried by the nightly purge). After the district's retention the personal data is
pseudonymised (alerts.retention); ids, alerts, calls and readings stay for the statistics. Every change is in
anbu.resident_changes (who, when, before -> after; personal values never, see
registry.residents_audit).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import psycopg

from alerts import absence, retention, webhooks
from alerts.audit import record_event
from alerts.machine import Event, next_state
from alerts.retention import purge_due
from calls.checkins import cancel_resident_checkins
from calls.dialer import cancel_waiting
from core.clock import Clock
from core.config import Settings
from core.db import Database
from core.domain import AlertState
from registry import gateway_accounts
from registry.assignment import assignable
from registry.broker_accounts import BrokerAdmin
from registry.changes import (
    InvalidChange,
    ResidentEnded,
    ResidentNotFound,
    record_changes,
)
from registry.gateway_accounts import Revocation

log = logging.getLogger(__name__)

COURSE_ROLES = ("admin", "supervisor")
# why a service ends -> (Korean, English)
END_REASONS: dict[str, tuple[str, str]] = {
    "moved": ("전출", "moved away"),
    "care_home": ("요양시설 입소", "entered a care home"),
    "died": ("사망", "died"),
    "other": ("기타 사유", "other reason"),
}
ENDED_OUTCOME = "service_ended"  # alerts.outcome of an alert closed by the end of service
# who may run a course, in the words of the web app's 403 and the command line's refusal
COURSE_NOT_ALLOWED = (
    "구 통합돌봄 담당자와 구 시스템 관리자만 할 수 있습니다.",
    "Only the district's supervisors and admins may do this.",
)


class NotAllowed(PermissionError):
    """The care manager's role does not run residents' courses (admin and supervisor do)."""


@dataclass(frozen=True, slots=True)
class Actor:
    """Who runs a course change: an active supervisor or admin, and their district."""

    care_manager_id: int
    role: str
    district: str

    @property
    def who(self) -> str:
        return f"care_manager:{self.care_manager_id}"


def actor_of(conn: psycopg.Connection[Any], care_manager_id: int) -> Actor:
    """The active supervisor or admin with this id; NotAllowed for anyone else."""
    return _actor(conn, care_manager_id, None)


def actor_named(conn: psycopg.Connection[Any], username: str) -> Actor:
    """The active supervisor or admin with this username (the command line's --by)."""
    return _actor(conn, None, username)


def _actor(conn: psycopg.Connection[Any], manager_id: int | None, username: str | None) -> Actor:
    """By id or, when the id is None, by username."""
    row = conn.execute(
        """SELECT m.id, m.role, d.district FROM anbu.care_manager m
             JOIN anbu.dong d ON d.code = m.dong_code
            WHERE m.active AND (m.id = %(id)s::bigint
                   OR (%(id)s::bigint IS NULL AND m.username = %(name)s::text))""",
        {"id": manager_id, "name": username},
    ).fetchone()
    if row is None or row[1] not in COURSE_ROLES:
        raise NotAllowed(COURSE_NOT_ALLOWED[1])
    return Actor(int(row[0]), str(row[1]), str(row[2]))


def _lock_in_district(
    conn: psycopg.Connection[Any], resident_id: int, district: str
) -> tuple[str, str, datetime | None, int | None]:
    """(dong, status, status_until, own care manager) of the resident, locked; ResidentNotFound
    outside the district."""
    row = conn.execute(
        """SELECT r.dong_code, r.status, r.status_until, r.care_manager_id FROM anbu.resident r
             JOIN anbu.dong d ON d.code = r.dong_code
            WHERE r.id = %s AND d.district = %s FOR NO KEY UPDATE OF r""",
        (resident_id, district),
    ).fetchone()
    if row is None:
        raise ResidentNotFound(resident_id)
    return str(row[0]), str(row[1]), row[2], None if row[3] is None else int(row[3])


# -- transfer and pause ----------------------------------------------------------------------


def transfer(
    conn: psycopg.Connection[Any],
    actor: Actor,
    resident_id: int,
    to_dong: str,
    now: datetime,
    to_manager_id: int | None = None,
) -> str:
    """Move the resident to another dong of the actor's district, in the caller's transaction:
    its care managers see them (`to_manager_id`, one of them, becomes their own care manager;
    None leaves them to the dong's), the old dong's and the old assigned manager no longer do.
    Returns the old dong."""
    old_dong, status, _, old_manager = _lock_in_district(conn, resident_id, actor.district)
    if status == "ended":
        raise ResidentEnded("resident_ended", "this resident's service has ended")
    found = conn.execute(
        "SELECT 1 FROM anbu.dong WHERE code = %s AND district = %s", (to_dong, actor.district)
    ).fetchone()
    if found is None:
        raise InvalidChange(
            "unknown_dong", "관할 구에 없는 행정동입니다 / no such dong in the district"
        )
    if to_dong == old_dong:
        raise InvalidChange("same_dong", "이미 해당 행정동의 대상자입니다 / already in that dong")
    assignees = {m[0] for m in assignable(conn, [to_dong])}
    if to_manager_id is not None and to_manager_id not in assignees:
        raise InvalidChange(
            "assignee_other_dong",
            "선택한 담당자는 옮겨 갈 행정동의 담당자가 아닙니다 / not a care manager of that dong",
        )
    conn.execute(
        """UPDATE anbu.resident SET dong_code = %s, care_manager_id = %s, updated_at = %s
            WHERE id = %s""",
        (to_dong, to_manager_id, now, resident_id),
    )
    _hand_alerts_over(conn, actor, resident_id, old_dong, to_dong, assignees, now)
    audit: list[tuple[str, str | None, str | None, bool]] = [
        ("dong_code", old_dong, to_dong, False)
    ]
    if old_manager != to_manager_id:
        audit.append(("care_manager_id", _text(old_manager), _text(to_manager_id), False))
    record_changes(conn, resident_id, now, audit, care_manager_id=actor.care_manager_id)
    log.info("resident transferred", extra={"resident_id": resident_id,
             "care_manager_id": actor.care_manager_id, "from": old_dong, "to": to_dong})  # fmt: skip
    return old_dong


def _hand_alerts_over(
    conn: psycopg.Connection[Any],
    actor: Actor,
    resident_id: int,
    old_dong: str,
    to_dong: str,
    assignees: set[int],
    now: datetime,
) -> None:
    """The resident's open alerts go with them: one handed to a care manager who is not of the
    new dong goes back to the new dong's, and an escalated one has its next step due now (the
    new dong's care managers were never told), each with an event saying why."""
    alerts = conn.execute(
        """SELECT id, state, assigned_to FROM anbu.alerts
            WHERE resident_id = %s AND state <> 'resolved' ORDER BY id FOR NO KEY UPDATE""",
        (resident_id,),
    ).fetchall()
    for alert_id, state_text, assigned_to in alerts:
        state = AlertState(state_text)
        keeps = assigned_to is not None and int(assigned_to) in assignees
        escalated = state is AlertState.ESCALATED
        conn.execute(
            """UPDATE anbu.alerts SET assigned_to = %s, updated_at = %s,
                   next_action_at = CASE WHEN %s THEN %s ELSE next_action_at END
                WHERE id = %s""",
            (assigned_to if keeps else None, now, escalated, now, alert_id),
        )
        why = f"행정동 이관({old_dong} → {to_dong})으로 새 행정동 담당자에게 넘김"
        why += (" — 다음 단계 알림을 지금 보냄" if escalated else "") + (
            f" / transferred ({old_dong} -> {to_dong}) to the new dong's care managers"
            + ("; the next step is told now" if escalated else "")
        )
        record_event(conn, alert_id, now, actor.who, state, state, why)


def _text(value: int | None) -> str | None:
    return None if value is None else str(value)


def pause(
    conn: psycopg.Connection[Any],
    actor: Actor,
    resident_id: int,
    until: datetime | None,
    now: datetime,
    *,
    status: str = "hospital",
    timezone: str = "Asia/Seoul",
) -> absence.StatusChange:
    """Pause the service (a long hospital stay, or away) until a date, or resume it with
    status 'active': the care manager's status change, with the alerts the absence explains
    closed (alerts.absence), by a supervisor or admin of the resident's district."""
    _lock_in_district(conn, resident_id, actor.district)
    return absence.set_status(conn, resident_id, status, until, actor.care_manager_id, now=now,
                              timezone=timezone)  # fmt: skip


# -- end of service --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Ending:
    """What ending a resident's service did."""

    resident_id: int
    reason: str
    closed_alerts: list[int] = field(default_factory=list)
    cancelled_calls: list[int] = field(default_factory=list)
    cancelled_plans: list[int] = field(default_factory=list)
    cancelled_rounds: list[int] = field(default_factory=list)
    gateways: list[str] = field(default_factory=list)


def end_reason_text(reason: str) -> str:
    ko, en = END_REASONS[reason]
    return f"서비스 종료({ko})로 종결 / closed: service ended ({en})"


def end_service(
    conn: psycopg.Connection[Any], actor: Actor, resident_id: int, reason: str, now: datetime
) -> Ending:
    """End the service in the caller's transaction: status 'ended', open alerts closed with the
    reason, waiting calls, plans and rounds cancelled, the gateways marked for revocation
    (`revoke_pending` does it after the commit). ResidentEnded when already ended."""
    if reason not in END_REASONS:
        raise InvalidChange(
            "bad_end_reason",
            "종료 사유는 전출, 요양시설 입소, 사망, 기타 중에서 골라 주세요 / end reason: "
            + ", ".join(END_REASONS),
        )
    _, status, until, _ = _lock_in_district(conn, resident_id, actor.district)
    if status == "ended":
        raise ResidentEnded("resident_ended", "this resident's service has ended")
    conn.execute(
        """UPDATE anbu.resident SET status = 'ended', status_until = NULL, ended_at = %s,
               end_reason = %s, updated_at = %s WHERE id = %s""",
        (now, reason, now, resident_id),
    )
    text = end_reason_text(reason)
    closed: list[int] = []
    calls: list[int] = []
    open_alerts = conn.execute(
        """SELECT id, state FROM anbu.alerts WHERE resident_id = %s AND state <> 'resolved'
            ORDER BY id FOR NO KEY UPDATE""",
        (resident_id,),
    ).fetchall()
    for alert_id, state_text in open_alerts:
        state = AlertState(state_text)
        to = next_state(state, Event.SERVICE_ENDED)
        calls += cancel_waiting(conn, alert_id, now, f"service_ended:{reason}")
        conn.execute(
            """UPDATE anbu.alerts SET state = %s, resolved_by = %s, resolved_at = %s,
                   outcome = %s, awaiting_call = false, next_action_at = NULL, updated_at = %s
                WHERE id = %s""",
            (to.value, actor.care_manager_id, now, ENDED_OUTCOME, now, alert_id),
        )
        record_event(conn, alert_id, now, actor.who, state, to, text)
        closed.append(int(alert_id))
    # findings stored but not yet handed to an alert would open one (and call the resident)
    # after the end: handed over now, without an alert, saying why. One a hand-over holds is
    # skipped: that hand-over waits for this row's lock and then sees the service ended.
    conn.execute(
        """UPDATE anbu.findings f SET alerted_at = %s, alert_retry_at = NULL,
                   not_alerted = 'service_ended'
              FROM (SELECT id FROM anbu.findings WHERE resident_id = %s AND alerted_at IS NULL
                    FOR NO KEY UPDATE SKIP LOCKED) pending
             WHERE f.id = pending.id""",
        (now, resident_id),
    )
    ko, en = END_REASONS[reason]
    plans, rounds, round_calls = cancel_resident_checkins(
        conn, resident_id, now, f"서비스 종료({ko})로 정기 안부전화 취소",
        f"routine check-in cancelled: service ended ({en})",
    )  # fmt: skip
    gateways = [str(r[0]) for r in conn.execute(
        """UPDATE anbu.gateway SET revocation_pending = %s
            WHERE resident_id = %s AND revoked_at IS NULL RETURNING id""",
        (now, resident_id))]  # fmt: skip
    audit: list[tuple[str, str | None, str | None, bool]] = [
        ("status", status, "ended", False),
        ("end_reason", None, reason, False),
    ]
    if until is not None:
        audit.append(("status_until", until.isoformat(), None, False))
    if gateways:
        audit.append(("broker_access", "active", "revocation_pending", False))
    record_changes(conn, resident_id, now, audit, care_manager_id=actor.care_manager_id)
    ending = Ending(resident_id, reason, closed, sorted(calls + round_calls), plans, rounds,
                    sorted(gateways))  # fmt: skip
    log.info("resident service ended", extra={"resident_id": resident_id,
             "care_manager_id": actor.care_manager_id, "reason": reason, "alerts": closed,
             "calls": ending.cancelled_calls, "rounds": rounds, "gateways": len(gateways)})  # fmt: skip
    return ending


def revoke_pending(
    db: Database,
    admin: BrokerAdmin | None,
    now: datetime,
    *,
    resident_id: int | None = None,
    actor: Actor | None = None,
) -> Revocation:
    """Revoke the broker accounts of gateways whose resident's service ended (of one resident,
    or all pending; removed gateways' too): registry.gateway_accounts.revoke_pending, the one
    record and retry of every pending revocation. Without `admin` or when the broker refuses,
    they stay pending (said in the result and the log, never raised)."""
    return gateway_accounts.revoke_pending(
        db, admin, now, resident_id=resident_id,
        care_manager_id=actor.care_manager_id if actor else None,
    )  # fmt: skip


# -- the whole course, for the command line and the API ---------------------------------------


def broker_admin_of(settings: Settings) -> BrokerAdmin | None:
    """The broker's dynsec admin from the settings; None when they carry no credentials."""
    if not settings.broker_admin_username or not settings.broker_admin_password:
        return None
    return BrokerAdmin(settings.mqtt_host, settings.mqtt_port, settings.broker_admin_username,
                       settings.broker_admin_password, settings.mqtt_tls_ca,
                       settings.mqtt_tls_cert, settings.mqtt_tls_key)  # fmt: skip


class ResidentCourse:
    """Transfers, pauses, ends and the retention purge, each in its own transaction."""

    def __init__(
        self,
        db: Database,
        settings: Settings,
        clock: Clock,
        broker_admin: BrokerAdmin | None = None,
    ) -> None:
        self.db = db
        self.settings = settings
        self.clock = clock
        self.broker_admin = broker_admin

    def transfer(
        self, actor_id: int, resident_id: int, to_dong: str, to_manager_id: int | None = None
    ) -> str:
        with self.db.connection() as conn:
            return transfer(conn, actor_of(conn, actor_id), resident_id, to_dong,
                            self.clock.now(), to_manager_id)  # fmt: skip

    def pause(
        self, actor_id: int, resident_id: int, until: datetime | None, status: str = "hospital"
    ) -> absence.StatusChange:
        with self.db.connection() as conn:
            return pause(conn, actor_of(conn, actor_id), resident_id, until, self.clock.now(),
                         status=status, timezone=self.settings.timezone)  # fmt: skip

    def end(self, actor_id: int, resident_id: int, reason: str) -> tuple[Ending, Revocation]:
        """End the service, then revoke the gateways (pending when the broker cannot be told)."""
        now = self.clock.now()
        with self.db.connection() as conn:
            actor = actor_of(conn, actor_id)
            ending = end_service(conn, actor, resident_id, reason, now)
        revocation = revoke_pending(self.db, self.broker_admin, now, resident_id=resident_id,
                                    actor=actor)  # fmt: skip
        return ending, revocation

    def purge(self) -> tuple[int, Revocation]:
        """The nightly job: revocations still pending, then the retention purge."""
        now = self.clock.now()
        revocation = revoke_pending(self.db, self.broker_admin, now)
        retention = timedelta(days=self.settings.retention_days_after_end)
        return purge_due(self.db, now, retention), revocation


def nightly_purge(db: Database, settings: Settings, clock: Clock) -> Callable[[], None]:
    """The worker's nightly job: pending revocations, then the retention purge (logged)."""
    course = ResidentCourse(db, settings, clock, broker_admin_of(settings))

    def run() -> None:
        try:
            course.purge()
        finally:  # each step whatever the other does; a failure is raised (and logged) after
            before = clock.now() - timedelta(days=settings.event_webhooks_log_days)
            try:
                deliveries, attempts = webhooks.prune_log(db, before)
                if deliveries:
                    log.info("webhook delivery log pruned",
                             extra={"deliveries": deliveries, "attempts": attempts})  # fmt: skip
            finally:
                keys = retention.forget_all_api_keys(db)
                if keys:
                    log.info("API idempotency keys forgotten", extra={"keys": keys})

    return run
