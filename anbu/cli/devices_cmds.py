"""Commands for a gateway's devices heard but not registered: list them, register one."""

from __future__ import annotations

from typing import Annotated

import typer

from anbu.cli import app, open_database

devices_app = typer.Typer(
    help="기기 목록: 게이트웨이에서 들렸지만 등록되지 않은 기기 / a gateway's unregistered devices."
)
app.add_typer(devices_app, name="devices")


@devices_app.callback(invoke_without_command=True)
def devices(
    ctx: typer.Context,
    gateway: Annotated[str | None, typer.Option(help="the gateway's id")] = None,
    present: Annotated[bool, typer.Option("--present", help="leave out removed devices")] = False,
) -> None:
    """List the gateway's devices heard but not registered, present ones first."""
    if ctx.invoked_subcommand is not None:
        return
    if gateway is None:
        raise typer.BadParameter("--gateway is required", param_hint="--gateway")
    from zoneinfo import ZoneInfo

    from core.config import Settings
    from dashboards.enrolment_text import kind_label
    from ingest.devices import gateway_dong, list_heard_devices

    tz = ZoneInfo(Settings().timezone)

    db = open_database()
    try:
        if gateway_dong(db, gateway) is None:  # type: ignore[arg-type]
            typer.echo(f"게이트웨이 {gateway!r} 없음 / no such gateway", err=True)
            raise typer.Exit(1)
        heard = list_heard_devices(db, gateway)  # type: ignore[arg-type]
    finally:
        db.close()  # type: ignore[attr-defined]
    if not heard:
        typer.echo("등록되지 않은 기기 없음 / no unregistered devices")
        return
    typer.echo("기기 device | 추천 종류 suggested kind | 모델 model | 처음/마지막 first/last heard"
               " (local) | 거부된 메시지 refused | 상태 state")  # fmt: skip
    for d in heard:
        k = d.suggested_kind
        kind = "-" if k is None else f"{kind_label('ko', k.value)} {k.value}"
        state = "제거됨 removed" if d.removed_at else "있음 present"
        typer.echo(
            f"{d.device} | {kind} | {d.model or d.vendor_class or '-'} ({d.source}) | "
            f"{d.first_heard.astimezone(tz):%Y-%m-%d %H:%M} / {d.last_heard.astimezone(tz):%m-%d %H:%M} | "
            f"{d.dead_letters} | {state}"
        )


@devices_app.command("register")
def register(
    gateway: Annotated[str, typer.Option(help="the gateway's id")],
    device: Annotated[str, typer.Option(help="the device, as listed")],
    kind: Annotated[
        str,
        typer.Option(
            help="door (현관문), motion (움직임 감지), contact (열림 감지), appliance (가전), "
            "power (전력), button (응급호출기), smoke (화재 감지기), gas (가스 감지기), "
            "co (일산화탄소 감지기), water_leak (누수 감지기) or tamper (분리 감지 센서)"
        ),
    ],
    room: Annotated[str, typer.Option(help="entrance, living, kitchen, bedroom, bathroom, other")],
) -> None:
    """Register a heard device as a sensor and replay what it sent before registration."""
    from core.clock import SystemClock
    from core.config import Settings
    from core.domain import SensorKind
    from ingest.devices import register_device
    from registry import ROOMS
    from registry.heard import DeviceNotHeard

    try:
        sensor_kind = SensorKind(kind)
    except ValueError:
        raise typer.BadParameter(
            f"one of {', '.join(k.value for k in SensorKind)}", param_hint="--kind"
        ) from None
    if room not in ROOMS:
        raise typer.BadParameter(f"one of {', '.join(ROOMS)}", param_hint="--room")
    db = open_database()
    try:
        done = register_device(
            db,  # type: ignore[arg-type]
            gateway,
            device,
            sensor_kind,
            room,
            SystemClock().now(),
            future_tolerance_s=Settings().future_tolerance_s,
        )
    except DeviceNotHeard:
        typer.echo(f"들린 적 없는 기기 / device never heard on {gateway!r}: {device!r}", err=True)
        raise typer.Exit(1) from None
    finally:
        db.close()  # type: ignore[attr-defined]
    typer.echo(
        f"등록됨 registered: sensor {done.sensor_id}; 재처리 replayed {done.replay.replayed}, "
        f"여전히 거부 still refused {done.replay.still_dead}"
    )
