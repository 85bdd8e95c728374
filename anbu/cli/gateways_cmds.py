"""`anbu gateways add|rotate|remove`: a home's gateway and its MQTT account, as the enrolment API
does them (registry.gateway_accounts): the password is printed once and kept nowhere."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from anbu.cli import app

if TYPE_CHECKING:
    from core.config import Settings
    from core.db import Database
    from registry.gateway_accounts import Credentials

gateways_app = typer.Typer(
    help="A home's gateways and their MQTT credentials: add, new password, remove.",
    no_args_is_help=True,
)
app.add_typer(gateways_app, name="gateways")

ACTOR = "cli:gateways"


def _open() -> tuple[Settings, Database]:
    from core.config import Settings
    from core.db import Database

    settings = Settings()
    if not settings.database_url:
        raise typer.BadParameter("ANBU_DATABASE_URL is not set")
    db = Database(settings.database_url, 1, 2)
    db.open()
    return settings, db


def _show(settings: Settings, made: Credentials) -> None:
    from registry.gateway_accounts import SHOWN_ONCE, broker_address

    host, port, tls = broker_address(settings)
    typer.echo(f"브로커 주소 / broker: {host}:{port}{' (TLS)' if tls else ''}")
    typer.echo(f"사용자 이름 / username: {made.username}")
    typer.echo(f"비밀번호 / password: {made.password}")
    typer.echo(f"허용된 토픽 / topics: gw/{made.gateway_id}/#")
    typer.echo(f"{SHOWN_ONCE[0]} / {SHOWN_ONCE[1]}")


def _refused(exc: Exception) -> typer.Exit:
    from registry.gateway_accounts import BrokerUnavailable, GatewayStateRefused
    from registry.residents_edit import Refused, problem_message

    if isinstance(exc, GatewayStateRefused):
        typer.echo(f"거부됨 / refused: {exc.message('ko')} / {exc.message('en')}", err=True)
        return typer.Exit(3 if isinstance(exc, BrokerUnavailable) else 1)
    if isinstance(exc, Refused):
        for p in exc.problems:
            typer.echo(f"거부됨 / refused: {problem_message(p, 'ko')} / "
                       f"{problem_message(p, 'en')}", err=True)  # fmt: skip
        return typer.Exit(1)
    typer.echo(f"찾을 수 없음 / not found: {exc}", err=True)
    return typer.Exit(1)


@gateways_app.command("add")
def add_cmd(
    gateway_id: str,
    resident: Annotated[str, typer.Option("--resident", help="the resident's external id")],
) -> None:
    """Enrol a gateway in the resident's home and print its MQTT credentials once."""
    from alerts.course import broker_admin_of
    from core.clock import SystemClock
    from registry.gateway_accounts import GatewayStateRefused, issue_gateway
    from registry.residents_edit import Refused

    settings, db = _open()
    try:
        with db.connection() as conn:
            row = conn.execute(
                "SELECT id FROM anbu.resident WHERE external_id = %s", (resident,)
            ).fetchone()
        if row is None:
            raise _refused(LookupError(f"resident {resident}"))
        made = issue_gateway(db, broker_admin_of(settings), int(row[0]), gateway_id,
                             SystemClock().now(), settings=settings, actor=ACTOR)  # fmt: skip
    except (GatewayStateRefused, Refused, LookupError) as exc:
        raise _refused(exc) from None
    finally:
        db.close()
    typer.echo(f"게이트웨이 등록 / gateway enrolled: {made.gateway_id}")
    _show(settings, made)


@gateways_app.command("rotate")
def rotate_cmd(gateway_id: str) -> None:
    """Issue a new password (the old one stops working at once) and print it once."""
    from alerts.course import broker_admin_of
    from core.clock import SystemClock
    from registry.gateway_accounts import GatewayStateRefused, replace_password
    from registry.residents_edit import Refused

    settings, db = _open()
    try:
        made = replace_password(db, broker_admin_of(settings), gateway_id, SystemClock().now(),
                                actor=ACTOR)  # fmt: skip
    except (GatewayStateRefused, Refused, LookupError) as exc:
        raise _refused(exc) from None
    finally:
        db.close()
    typer.echo(f"비밀번호 재발급 / new password: {made.gateway_id}")
    _show(settings, made)


@gateways_app.command("remove")
def remove_cmd(gateway_id: str) -> None:
    """Take a gateway out of its home and revoke its account (pending when the broker cannot
    be told: the nightly purge, or `anbu residents purge`, retries)."""
    from alerts.course import broker_admin_of
    from core.clock import SystemClock
    from registry.gateway_accounts import remove_gateway

    settings, db = _open()
    try:
        done = remove_gateway(db, broker_admin_of(settings), gateway_id, SystemClock().now(),
                              actor=ACTOR)  # fmt: skip
    except LookupError as exc:
        raise _refused(exc) from None
    finally:
        db.close()
    if done.pending:  # the reason's code (an exception's name) only in the English half
        why = "브로커 관리자 계정 미설정으로" if done.error == "no_broker_admin" else (
            "브로커 연결 실패로")  # fmt: skip
        typer.echo(f"삭제함, {why} 접속 계정 차단 대기(오늘 밤 다시 시도) / removed, "
                   f"revocation pending ({done.error}): {gateway_id}")  # fmt: skip
    else:
        typer.echo(f"삭제하고 접속 계정 차단함 / removed and revoked: {gateway_id}")
