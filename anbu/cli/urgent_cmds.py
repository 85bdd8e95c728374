"""Commands of safety devices (issue 20): bench urgent."""

from __future__ import annotations

from typing import Annotated

import typer

from anbu.cli import bench_app


@bench_app.command("urgent")
def bench_urgent(
    presses: Annotated[int, typer.Option(help="pendant presses, one resident each")] = 30,
    homes: Annotated[int, typer.Option(help="town homes streaming motion meanwhile")] = 500,
    rate: Annotated[float, typer.Option(help="the town's messages per second")] = 500.0,
    silent: Annotated[int, typer.Option(help="homes falling silent during the presses")] = 10,
    spacing: Annotated[float, typer.Option(help="seconds between presses")] = 2.0,
    cps: Annotated[
        float | None, typer.Option(help="calls per second allowed (default: ANBU_CALL_CPS)")
    ] = None,
) -> None:
    """Button press -> the care manager's call, beside inactivity finding -> its first call."""
    import logging

    from anbu.bench.urgent import run_bench

    logging.getLogger().setLevel(logging.WARNING)
    run_bench(presses, homes, rate, silent, spacing, cps=cps, echo=typer.echo)
