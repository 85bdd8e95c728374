"""`anbu residents transfer|pause|end|purge`: a resident's course, as a district's supervisor or
admin (--by, their username) runs it; the purge is also the worker's nightly job."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated

import typer

from anbu.cli import app

if TYPE_CHECKING:
    from alerts.course import ResidentCourse
    from core.db import Database

residents_app = typer.Typer(
    help="A resident's course: transfer, pause, end of service, retention purge.",
    no_args_is_help=True,
)
app.add_typer(residents_app, name="residents")

By = Annotated[str, typer.Option("--by", help="username of the supervisor or admin acting")]


def _course() -> tuple[ResidentCourse, Database]:
    from alerts.course import ResidentCourse, broker_admin_of
    from core.clock import SystemClock
    from core.config import Settings
    from core.db import Database

    settings = Settings()
    if not settings.database_url:
        raise typer.BadParameter("ANBU_DATABASE_URL is not set")
    db = Database(settings.database_url, 1, 2)
    db.open()
    return ResidentCourse(db, settings, SystemClock(), broker_admin_of(settings)), db


def _actor_id(db: Database, username: str) -> int:
    from alerts.course import COURSE_NOT_ALLOWED, NotAllowed, actor_named

    try:
        with db.connection() as conn:
            return actor_named(conn, username).care_manager_id
    except NotAllowed:
        typer.echo(" / ".join(COURSE_NOT_ALLOWED), err=True)
        raise typer.Exit(2) from None


def _refused(exc: Exception) -> typer.Exit:
    code = getattr(exc, "code", "not_found")
    typer.echo(f"거부됨 / refused: {code}: {exc}", err=True)
    return typer.Exit(1)


@residents_app.command("transfer")
def transfer_cmd(
    resident_id: int,
    dong: Annotated[str, typer.Option("--to", help="the new dong's code")],
    by: By,
    manager: Annotated[
        int | None, typer.Option("--manager", help="id of the new dong's care manager to assign")
    ] = None,
) -> None:
    """Move a resident to another dong of the district (its care managers take them over)."""
    from registry import InvalidChange, ResidentNotFound

    course, db = _course()
    try:
        old = course.transfer(_actor_id(db, by), resident_id, dong, manager)
    except (InvalidChange, ResidentNotFound) as exc:
        raise _refused(exc) from None
    finally:
        db.close()
    typer.echo(f"이전 완료 / transferred: resident {resident_id} {old} -> {dong}")


@residents_app.command("pause")
def pause_cmd(
    resident_id: int,
    until: Annotated[str, typer.Option("--until", help="end date, ISO 8601 (e.g. 2027-01-31)")],
    by: By,
    away: Annotated[bool, typer.Option(help="away instead of in hospital")] = False,
) -> None:
    """Pause the service (a hospital stay, or away) until a date; it resumes by itself."""
    from zoneinfo import ZoneInfo

    from registry import InvalidChange, ResidentNotFound

    course, db = _course()
    end = datetime.fromisoformat(until)
    if end.tzinfo is None:
        end = end.replace(tzinfo=ZoneInfo(course.settings.timezone))
    try:
        change = course.pause(_actor_id(db, by), resident_id, end.astimezone(UTC),
                              "away" if away else "hospital")  # fmt: skip
    except (InvalidChange, ResidentNotFound) as exc:
        raise _refused(exc) from None
    finally:
        db.close()
    typer.echo(f"일시중지 / paused: resident {resident_id} until {until}; "
               f"alerts closed {len(change.alerts.closed)}")  # fmt: skip


@residents_app.command("end")
def end_cmd(
    resident_id: int,
    reason: Annotated[str, typer.Option("--reason", help="moved | care_home | died | other")],
    by: By,
) -> None:
    """End a resident's service: open alerts closed, calls and plans cancelled, gateway revoked."""
    from registry import InvalidChange, ResidentNotFound

    course, db = _course()
    try:
        ending, revocation = course.end(_actor_id(db, by), resident_id, reason)
    except (InvalidChange, ResidentNotFound) as exc:
        raise _refused(exc) from None
    finally:
        db.close()
    typer.echo(f"서비스 종료 / ended: resident {resident_id}; alerts closed "
               f"{len(ending.closed_alerts)}, calls cancelled {len(ending.cancelled_calls)}, "
               f"plans stopped {len(ending.cancelled_plans)}")  # fmt: skip
    if revocation.revoked:
        typer.echo(f"게이트웨이 접속 해지 / gateways revoked: {', '.join(revocation.revoked)}")
    if revocation.pending:
        typer.echo(f"게이트웨이 해지 대기 / revocation pending ({revocation.error}): "
                   f"{', '.join(revocation.pending)} — 브로커 관리자 설정 후 `anbu residents "
                   "purge`가 다시 시도합니다", err=True)  # fmt: skip


@residents_app.command("purge")
def purge_cmd() -> None:
    """Pseudonymise residents ended longer ago than ANBU_RETENTION_DAYS_AFTER_END, and retry
    pending gateway revocations (idempotent; the worker runs it nightly)."""
    course, db = _course()
    try:
        purged, revocation = course.purge()
    finally:
        db.close()
    typer.echo(f"가명처리 / pseudonymised: {purged}; gateways revoked {len(revocation.revoked)}, "
               f"pending {len(revocation.pending)}")  # fmt: skip
