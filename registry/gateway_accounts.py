"""A gateway's broker account, issued, replaced and revoked by anbu: the registry's row and the
account in Mosquitto's dynamic security plugin (registry.broker_accounts) never disagree.

The order, and why:
- One gateway id, one change at a time: adding, replacing, removing and revoking take the
  transaction-level advisory lock `gateway:<id>` (never a row lock held over the network, which
  would stall ingest's liveness updates for the whole batch).
- A gateway id is never a name the broker's own accounts use (the admin, ingest, their client
  ids and roles: `reserved_names`), and anbu deletes or replaces only accounts that are a
  gateway's (registry.broker_accounts.NotAGatewayAccount): a district admin cannot take ingest
  or the broker admin down by choosing an id.
- Issue: the row is inserted in an open transaction, then the account is created on the broker,
  then the resident is checked again (locked only now, after the network) and the row commits.
  The broker down or refusing: the transaction rolls back, nothing is written
  (BrokerUnavailable). The commit failing after the account was made: unless the row turns out
  to be there after all, the account is revoked again, best effort; one left over has a
  password nobody was shown, and the next enrolment of that id replaces it.
- Replace: the old account is deleted and a new one made with a new password (its open session
  closed), then the audit commits. Failing half-way says so (`password_revoked`): the gateway
  may be without an account (never with the old password); replacing again finishes it.
- Remove: the row loses its sensors and becomes a pending revocation (`removed_at`,
  `revocation_pending`) in one transaction; then the account is revoked and the row deleted.
  The broker unreachable: the revocation stays pending and the nightly purge (`revoke_pending`,
  the same record and retry as an ended service's gateways) finishes it.
A password is returned once, to be shown once; anbu neither logs nor stores it (the broker keeps
only its PBKDF2 hash).
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

import psycopg

from core.config import Settings
from core.db import Database
from registry import home_devices as home
from registry.broker_accounts import (
    ADMIN_CLIENT_ID,
    CHUNK,
    GATEWAY_ID,
    GATEWAY_ROLE,
    INGEST_ROLE,
    BrokerAccounts,
    BrokerAdmin,
    BrokerCommandFailed,
    NotAGatewayAccount,
    new_password,
)
from registry.changes import record_changes
from registry.residents_csv import LineError
from registry.residents_edit import Refused

log = logging.getLogger(__name__)

# a refusal that is about the gateway's state, not the input: code -> (Korean, English)
STATE_MESSAGES: dict[str, tuple[str, str]] = {
    "no_broker_admin": (  # the variables' names are for the operator: the log and detail_en
        "MQTT 브로커 관리자 계정이 설정되지 않아 게이트웨이 접속 계정을 발급할 수 없습니다. "
        "아무것도 저장하지 않았습니다. 시스템 운영 담당자에게 문의해 주세요.",
        "No broker admin is configured, so no gateway account can be issued. Nothing was "
        "written (ANBU_BROKER_ADMIN_USERNAME/PASSWORD); please contact the system operator.",
    ),
    "broker_unavailable": (  # adding a gateway
        "MQTT 브로커에 연결할 수 없어 게이트웨이를 등록하지 못했습니다(등록 내용은 저장되지 "
        "않았습니다). 잠시 후 다시 시도해 주세요.",
        "The MQTT broker could not be reached, so the gateway was not enrolled (nothing was "
        "saved). Please try again shortly.",
    ),
    "reissue_unavailable": (  # a new password, failing before anything changed
        "MQTT 브로커에 연결할 수 없어 새 비밀번호를 발급하지 못했습니다. 기존 비밀번호는 "
        "그대로 쓸 수 있습니다. 잠시 후 다시 시도해 주세요.",
        "The MQTT broker could not be reached, so no new password was issued. The current "
        "password still works. Please try again shortly.",
    ),
    "password_revoked": (
        "MQTT 브로커가 새 비밀번호를 만들지 못했습니다. 이전 비밀번호는 이미 해지되었을 수 "
        "있습니다. 비밀번호를 다시 발급해 주세요.",
        "The MQTT broker could not make the new password. The old password may already have "
        "been revoked. Please issue a new password again.",
    ),
    "resident_ended": (
        "서비스가 종료된 대상자의 게이트웨이에는 계정을 발급하지 않습니다.",
        "No gateway account for a resident whose service has ended.",
    ),
    "revocation_pending": (
        "이 게이트웨이는 삭제되어 접속 계정 차단을 기다리는 중입니다. 차단이 끝난 뒤(다음 날) "
        "같은 ID로 다시 등록할 수 있습니다.",
        "This gateway was removed; its broker account is waiting to be blocked. Once that is "
        "done (the next day), the same id can be enrolled again.",
    ),
    "gateway_revoked": (
        "서비스 종료로 이 게이트웨이의 접속 계정은 차단되었습니다.",
        "The service ended, so this gateway's broker account has been blocked.",
    ),
}


SHOWN_ONCE = (
    "이 비밀번호는 지금 한 번만 표시됩니다. 바로 게이트웨이 설정 화면에 입력하세요(대소문자 "
    "구분, 복사해 붙여 넣기 권장). 종이에 적거나 사진으로 남기지 마세요. 이 화면을 "
    "새로고침하거나 다시 보내면 새 비밀번호가 발급되어 방금 입력한 비밀번호는 쓸 수 없게 "
    "됩니다. 비밀번호를 잃어버렸다면 '비밀번호 재발급'을 누르세요.",
    "This password is shown only this once. Enter it in the gateway's settings now (it is "
    "case-sensitive; copy and paste it). Do not write it on paper or take a photo of it. "
    "Reloading or resending this page issues a new password, and the one just entered stops "
    "working. If the password is lost, press 'New password'.",
)


class GatewayStateRefused(Exception):
    """The gateway or its resident is in no state for this (409): `code` in STATE_MESSAGES."""

    def __init__(self, code: str) -> None:
        super().__init__(code)
        self.code = code

    def message(self, lang: str = "ko") -> str:
        ko, en = STATE_MESSAGES[self.code]
        return en if lang == "en" else ko


class BrokerUnavailable(GatewayStateRefused):
    """No broker admin, or the broker unreachable or refusing (503): nothing was written."""


@dataclass(frozen=True, slots=True)
class Credentials:
    """What a gateway connects with: shown once, never stored by anbu."""

    gateway_id: str
    password: str = field(repr=False)

    @property
    def username(self) -> str:
        return self.gateway_id  # the broker's rule: a gateway's username is its id


@dataclass(frozen=True, slots=True)
class Revocation:
    """Gateways whose accounts were revoked now, and those still pending (with why)."""

    revoked: list[str]
    pending: list[str]
    error: str | None = None


# Names the broker's own accounts and roles use: `mosquitto_ctrl dynsec init` (its "admin"
# role), registry.broker_accounts (the admin's client id, the roles of `POLICY`), the harness
# and the demo (simulators.servers' admin and "ingest", anbu.demo's ingest client id), ingest's
# defaults (core.config). Compared case-insensitively; `reserved_names` adds the configured ones.
BROKER_NAMES = frozenset(
    n.casefold()
    for n in (
        "admin", ADMIN_CLIENT_ID, GATEWAY_ROLE, INGEST_ROLE, "anbu-dynsec-admin",
        "ingest", "anbu-ingest-1", "anbu-demo-ingest",
    )
)  # fmt: skip
REPLICA = "{replica}"  # ingest.identity's placeholder for a replica's name


@dataclass(frozen=True, slots=True)
class ReservedNames:
    """Names no gateway may take, exact (case-folded) or as patterns (replicas' names)."""

    exact: frozenset[str]
    patterns: tuple[re.Pattern[str], ...] = ()

    def __contains__(self, name: object) -> bool:
        if not isinstance(name, str):
            return False
        folded = name.casefold()
        return folded in self.exact or any(p.fullmatch(name) for p in self.patterns)


def _pattern(template: str) -> re.Pattern[str]:
    """`ingest-{replica}` as a pattern matching every replica's name."""
    parts = [re.escape(p) for p in template.split(REPLICA)]
    return re.compile(".+".join(parts), re.IGNORECASE)


def reserved_names(settings: Settings | None, admin: BrokerAdmin | None) -> ReservedNames:
    """What a gateway id may not be: `BROKER_NAMES`, the broker admin's username and client id,
    ingest's username (each replica's, for `{replica}`) and client id (with `-<replica>`)."""
    exact = set(BROKER_NAMES)
    patterns: list[re.Pattern[str]] = [_pattern("anbu-ingest-1-{replica}")]
    if admin is not None:
        exact |= {admin.username.casefold(), admin.client_id.casefold()}
    if settings is not None:
        for name in (settings.broker_admin_username, settings.mqtt_username):
            if name and REPLICA in name:
                patterns.append(_pattern(name))
            elif name:
                exact.add(name.casefold())
        exact.add(settings.mqtt_client_id.casefold())
        patterns.append(_pattern(settings.mqtt_client_id + "-" + REPLICA))
    return ReservedNames(frozenset(exact), tuple(patterns))


def broker_address(settings: Settings) -> tuple[str, int, bool]:
    """(host, port, tls) that gateways connect to: ANBU_GATEWAY_BROKER_URL (mqtts://host:8883),
    else ANBU_MQTT_HOST/PORT (TLS when ANBU_MQTT_TLS_CA is set)."""
    if settings.gateway_broker_url:
        url = urlsplit(settings.gateway_broker_url)
        tls = url.scheme in ("mqtts", "ssl")
        return url.hostname or settings.mqtt_host, url.port or (8883 if tls else 1883), tls
    return settings.mqtt_host, settings.mqtt_port, bool(settings.mqtt_tls_ca)


def _lock_id(conn: psycopg.Connection[Any], gateway_id: str, *, wait: bool = True) -> bool:
    """The advisory lock `gateway:<id>` until the transaction ends (add, replace, remove and
    revoke take it); without `wait`, False when another holds it."""
    key = f"gateway:{gateway_id}"
    if wait:
        conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (key,))
        return True
    row = conn.execute("SELECT pg_try_advisory_xact_lock(hashtext(%s))", (key,)).fetchone()
    return row is not None and bool(row[0])


def _reserved() -> Refused:
    return Refused([LineError(0, "gateway_id", "gateway_reserved")])


def _account(admin: BrokerAdmin | None, gateway_id: str, *, replacing: bool = False) -> str:
    """Create (or replace) the gateway's account with a new password. BrokerUnavailable: not
    made (replacing: `reissue_unavailable` before the broker was reached, the old password
    intact; `password_revoked` after, so the old account may be gone); Refused
    (gateway_reserved) when the name is not a gateway's account."""
    if admin is None:
        raise BrokerUnavailable("no_broker_admin")
    password = new_password()
    reached = False
    try:
        with BrokerAccounts(admin) as accounts:
            reached = True
            accounts.revoke_gateways([gateway_id])
            accounts.create_gateways({gateway_id: password})
    except NotAGatewayAccount as exc:
        log.warning("gateway account refused: the name is another kind of broker account",
                    extra={"gateway": gateway_id})  # fmt: skip
        raise _reserved() from exc
    except (BrokerCommandFailed, OSError) as exc:
        log.warning("gateway account not issued: broker refused or unreachable",
                    extra={"gateway": gateway_id, "error": type(exc).__name__,
                           "reached": reached})  # fmt: skip
        if not replacing:
            code = "broker_unavailable"
        else:  # half-way, the old account may be gone; before the broker, nothing changed
            code = "password_revoked" if reached else "reissue_unavailable"
        raise BrokerUnavailable(code) from exc
    return password


def _revoke_quietly(admin: BrokerAdmin, gateway_id: str) -> None:
    try:
        with BrokerAccounts(admin) as accounts:
            accounts.revoke_gateway(gateway_id)
    except (BrokerCommandFailed, OSError, NotAGatewayAccount):
        log.error("gateway account left on the broker without a registry row",
                  extra={"gateway": gateway_id})  # fmt: skip


def _registered(db: Database, gateway_id: str) -> bool | None:
    """Whether the gateway's row is there (a commit that failed may have happened after all);
    None when the database cannot say."""
    try:
        with db.connection() as conn:
            _lock_id(conn, gateway_id)  # a later enrolment of the same id waits for the answer
            row = conn.execute(
                "SELECT 1 FROM anbu.gateway WHERE id = %s AND removed_at IS NULL", (gateway_id,)
            ).fetchone()
    except psycopg.Error:
        return None
    return row is not None


def _resident_status(conn: psycopg.Connection[Any], resident_id: int, *, lock: bool = False) -> str:
    query = (
        "SELECT status FROM anbu.resident WHERE id = %s FOR SHARE"
        if lock
        else "SELECT status FROM anbu.resident WHERE id = %s"
    )
    row = conn.execute(query, (resident_id,)).fetchone()
    if row is None:
        raise LookupError(resident_id)
    return str(row[0])


def issue_gateway(
    db: Database,
    admin: BrokerAdmin | None,
    resident_id: int,
    gateway_id: str,
    now: datetime,
    *,
    settings: Settings | None = None,
    care_manager_id: int | None = None,
    actor: str | None = None,
) -> Credentials:
    """Enrol a new gateway in the resident's home with its broker account: both or neither.
    Refused for an id malformed, in use, or one of the broker's own names (`reserved_names`)."""
    gateway_id = gateway_id.strip()
    if not GATEWAY_ID.fullmatch(gateway_id):
        raise Refused([LineError(0, "gateway_id", "gateway_id_format")])
    if gateway_id in reserved_names(settings, admin):
        raise _reserved()
    if admin is None:
        raise BrokerUnavailable("no_broker_admin")
    made = False
    try:
        with db.connection() as conn, conn.transaction():
            _lock_id(conn, gateway_id)
            if _resident_status(conn, resident_id) == "ended":
                raise GatewayStateRefused("resident_ended")
            removed = conn.execute(  # of this home: another's answers gateway_taken, as all
                """SELECT 1 FROM anbu.gateway
                    WHERE id = %s AND resident_id = %s AND removed_at IS NOT NULL""",
                (gateway_id, resident_id),
            ).fetchone()
            if removed:
                raise GatewayStateRefused("revocation_pending")
            home.add_home_gateway(conn, resident_id, gateway_id)
            password = _account(admin, gateway_id)
            made = True
            # the service may have ended meanwhile: the resident is locked only now, after
            # the broker, so that its end waits for this commit and then revokes the gateway
            if _resident_status(conn, resident_id, lock=True) == "ended":
                raise GatewayStateRefused("resident_ended")
            record_changes(conn, resident_id, now, [("broker_access", None, "active", False)],
                           care_manager_id=care_manager_id, actor=actor)  # fmt: skip
    except GatewayStateRefused:
        if made:
            _revoke_quietly(admin, gateway_id)
        raise
    except Exception:  # the database, or a commit refused on the way (an API key's lease lost)
        if made and _registered(db, gateway_id) is False:
            _revoke_quietly(admin, gateway_id)
        raise
    log.info("gateway enrolled with a broker account",
             extra={"gateway": gateway_id, "resident_id": resident_id})  # fmt: skip
    return Credentials(gateway_id, password)


def _gateway_state(conn: psycopg.Connection[Any], gateway_id: str) -> tuple[int, str, str] | None:
    """(resident id, resident status, state) of the gateway; state: active, removed, pending or
    revoked. None: no such gateway. The caller holds its advisory lock (`_lock_id`)."""
    row = conn.execute(
        """SELECT g.resident_id, r.status, g.removed_at IS NOT NULL,
                  g.revocation_pending IS NOT NULL, g.revoked_at IS NOT NULL
             FROM anbu.gateway g JOIN anbu.resident r ON r.id = g.resident_id
            WHERE g.id = %s""",
        (gateway_id,),
    ).fetchone()
    if row is None:
        return None
    removed, pending, revoked = bool(row[2]), bool(row[3]), bool(row[4])
    state = "removed" if removed else "pending" if pending else "revoked" if revoked else "active"
    return int(row[0]), str(row[1]), state


def replace_password(
    db: Database,
    admin: BrokerAdmin | None,
    gateway_id: str,
    now: datetime,
    *,
    care_manager_id: int | None = None,
    actor: str | None = None,
) -> Credentials:
    """A new password for an enrolled gateway; the old one (and its session) ends at once.
    LookupError for no such gateway."""
    if admin is None:
        raise BrokerUnavailable("no_broker_admin")
    with db.connection() as conn, conn.transaction():
        _lock_id(conn, gateway_id)
        found = _gateway_state(conn, gateway_id)
        if found is None:
            raise LookupError(gateway_id)
        resident_id, status, state = found
        if state in ("removed", "pending"):
            raise GatewayStateRefused("revocation_pending")
        if state == "revoked":
            raise GatewayStateRefused("gateway_revoked")
        if status == "ended":
            raise GatewayStateRefused("resident_ended")
        password = _account(admin, gateway_id, replacing=True)
        record_changes(conn, resident_id, now, [("broker_access", "active", "password_replaced", False)],
                       care_manager_id=care_manager_id, actor=actor)  # fmt: skip
    log.info("gateway password replaced", extra={"gateway": gateway_id})
    return Credentials(gateway_id, password)


def remove_gateway(
    db: Database,
    admin: BrokerAdmin | None,
    gateway_id: str,
    now: datetime,
    *,
    care_manager_id: int | None = None,
    actor: str | None = None,
) -> Revocation:
    """Take a gateway out of its home: sensors unregistered (readings stay) and the revocation
    pending in one transaction, then the account revoked and the row deleted. Removing one
    already removed retries its revocation. LookupError for no such gateway."""
    with db.connection() as conn, conn.transaction():
        _lock_id(conn, gateway_id)
        found = _gateway_state(conn, gateway_id)
        if found is None:
            raise LookupError(gateway_id)
        resident_id, _, state = found
        sensors = [int(r[0]) for r in conn.execute(
            "SELECT id FROM anbu.sensor WHERE gateway_id = %s", (gateway_id,))]  # fmt: skip
        for sensor_id in sensors:
            home.remove_sensor(conn, sensor_id)
        if state == "revoked":  # its account is gone already (the service ended)
            conn.execute("DELETE FROM anbu.gateway WHERE id = %s", (gateway_id,))
            return Revocation([], [])
        if state != "removed":
            conn.execute(
                """UPDATE anbu.gateway SET removed_at = %s,
                       revocation_pending = coalesce(revocation_pending, %s),
                       online = NULL, status_changed_at = NULL, last_seen_at = NULL
                    WHERE id = %s""",
                (now, now, gateway_id),
            )
            conn.execute("DELETE FROM anbu.heard_devices WHERE gateway_id = %s", (gateway_id,))
            record_changes(conn, resident_id, now,
                           [("broker_access", "active", "revocation_pending", False)],
                           care_manager_id=care_manager_id, actor=actor)  # fmt: skip
    return revoke_pending(db, admin, now, gateway_id=gateway_id,
                          care_manager_id=care_manager_id, actor=actor)  # fmt: skip


def revoke_pending(
    db: Database,
    admin: BrokerAdmin | None,
    now: datetime,
    *,
    resident_id: int | None = None,
    gateway_id: str | None = None,
    care_manager_id: int | None = None,
    actor: str | None = None,
) -> Revocation:
    """Revoke the broker accounts whose revocation is pending (an ended service's gateways, a
    removed gateway), of one resident, one gateway or all; then a removed gateway's row is
    deleted, an ended one's marked revoked. Each gateway under its advisory lock, re-read as
    still pending (one being changed right now is left for the next run); an account under its
    name that is not a gateway's is never deleted. Without `admin` or when the broker refuses
    they stay pending (said in the result and the log, never raised)."""
    with db.connection() as conn:
        ids = [str(r[0]) for r in conn.execute(
            """SELECT id FROM anbu.gateway WHERE revocation_pending IS NOT NULL
                  AND (%(r)s::bigint IS NULL OR resident_id = %(r)s)
                  AND (%(g)s::text IS NULL OR id = %(g)s) ORDER BY id""",
            {"r": resident_id, "g": gateway_id},
        )]  # fmt: skip
    if not ids:
        return Revocation([], [])
    if admin is None:
        log.warning("gateway revocation pending: no broker admin credentials",
                    extra={"gateways": len(ids)})  # fmt: skip
        return Revocation([], ids, "no_broker_admin")
    revoked: list[str] = []
    try:
        with BrokerAccounts(admin) as accounts:
            for start in range(0, len(ids), CHUNK):
                revoked += _revoke_chunk(db, accounts, ids[start : start + CHUNK], now,
                                         care_manager_id, actor)  # fmt: skip
    except (BrokerCommandFailed, OSError) as exc:
        log.warning("gateway revocation pending: broker refused or unreachable",
                    extra={"gateways": len(ids) - len(revoked),
                           "error": type(exc).__name__})  # fmt: skip
        return Revocation(revoked, [i for i in ids if i not in revoked], type(exc).__name__)
    return Revocation(revoked, [i for i in ids if i not in revoked])


def _revoke_chunk(
    db: Database,
    accounts: BrokerAccounts,
    ids: list[str],
    now: datetime,
    care_manager_id: int | None,
    actor: str | None,
) -> list[str]:
    """Revoke those of `ids` still pending and not being changed; the ones revoked."""
    with db.connection() as conn, conn.transaction():
        mine = [g for g in ids if _lock_id(conn, g, wait=False)]
        rows = conn.execute(
            """SELECT id, resident_id FROM anbu.gateway
                WHERE id = ANY(%s) AND revocation_pending IS NOT NULL ORDER BY id""",
            (mine,),
        ).fetchall()
        pending = [str(r[0]) for r in rows]
        if not pending:
            return []
        foreign = set(accounts.foreign_accounts(pending))
        if foreign:  # the gateway has no account of its own there: nothing of its to revoke
            log.error("gateway revocation: an account under its name is not a gateway's, "
                      "left alone", extra={"gateways": sorted(foreign)})  # fmt: skip
        accounts.revoke_gateways([g for g in pending if g not in foreign])
        removed = [str(r[0]) for r in conn.execute(
            """SELECT id FROM anbu.gateway WHERE id = ANY(%s) AND removed_at IS NOT NULL
                  AND revocation_pending IS NOT NULL""",
            (pending,))]  # fmt: skip
        for sensor in conn.execute(  # a sensor added to it after its removal
            "SELECT id FROM anbu.sensor WHERE gateway_id = ANY(%s)", (removed,)
        ).fetchall():
            home.remove_sensor(conn, int(sensor[0]))
        conn.execute(
            """DELETE FROM anbu.gateway WHERE id = ANY(%s) AND removed_at IS NOT NULL
                  AND revocation_pending IS NOT NULL""",
            (removed,),
        )
        conn.execute(
            """UPDATE anbu.gateway SET revoked_at = %s, revocation_pending = NULL
                WHERE id = ANY(%s) AND revocation_pending IS NOT NULL""",
            (now, pending),
        )
        for rid in sorted({int(r[1]) for r in rows}):
            record_changes(conn, rid, now,
                           [("broker_access", "revocation_pending", "revoked", False)],
                           care_manager_id=care_manager_id,
                           actor=actor or (None if care_manager_id else "system:broker"))  # fmt: skip
    return pending
