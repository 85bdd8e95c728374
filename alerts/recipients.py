"""Who an escalation step tells: the step's roles in the resident's dong, and when the dong has
none of them active, its own supervisors and admins, then its district's.

A dong whose care manager left (or whose managers are all inactive) must not leave an alert
with nobody told; each fallback, and the case where nobody at all can be told, is recorded in
the alert's audit with the reason, and logged by ids only.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg

from alerts.audit import record_event
from core.domain import AlertState

log = logging.getLogger(__name__)

SENIOR = ("supervisor", "admin")  # who stands in for a dong's missing care managers

_IN_DONG = """
SELECT id FROM anbu.care_manager
 WHERE dong_code = %s AND active AND role = ANY(%s) ORDER BY id
"""
_IN_DISTRICT = """
SELECT m.id FROM anbu.care_manager m
  JOIN anbu.dong d ON d.code = m.dong_code
 WHERE d.district = (SELECT district FROM anbu.dong WHERE code = %s)
   AND m.active AND m.role = ANY(%s) ORDER BY m.id
"""


@dataclass(frozen=True, slots=True)
class Fallback:
    """One place to look for whom to tell, and what the audit says when it is used."""

    sql: str
    roles: tuple[str, ...] | None  # None: the step's own roles
    reason_ko: str


FALLBACKS: tuple[Fallback, ...] = (
    Fallback(_IN_DONG, None, ""),
    Fallback(
        _IN_DONG, SENIOR, "이 동에 지정된 담당자가 없어 구 통합돌봄 담당·관리자에게 대신 알렸습니다"
    ),
    Fallback(
        _IN_DISTRICT,
        SENIOR,
        "이 동에 지정된 담당자가 없어 같은 구의 구 통합돌봄 담당·관리자에게 대신 알렸습니다",
    ),
)


def recipients(
    conn: psycopg.Connection[Any],
    alert_id: int,
    dong_code: str,
    roles: tuple[str, ...],
    state: AlertState,
    now: datetime,
) -> list[int]:
    """The care managers to tell at this step (ids); a fallback or nobody is audited."""
    for place in FALLBACKS:
        ids = [int(r[0]) for r in conn.execute(place.sql, (dong_code, list(place.roles or roles)))]
        if ids:
            if place.reason_ko:
                record_event(conn, alert_id, now, "system", state, state, place.reason_ko)
                log.warning("no active care manager in the dong; fallback told",
                            extra={"alert_id": alert_id, "dong": dong_code,
                                   "care_managers": ids})  # fmt: skip
            return ids
    record_event(conn, alert_id, now, "system", state, state,
                 "동과 구 모두 지정된 담당자가 없어 아무에게도 알리지 못했습니다. 담당자를 "
                 "등록해 주세요(알림은 '담당자 확인 필요'로 남아 있음).")  # fmt: skip
    log.error("nobody to tell about an alert: no active care manager in its dong or district",
              extra={"alert_id": alert_id, "dong": dong_code})  # fmt: skip
    return []
