"""Commands of calls: check-in plans, bench calls."""

from __future__ import annotations

from typing import Annotated

import typer

from anbu.cli import app, bench_app


@app.command("checkin-plan")
def checkin_plan(
    resident_id: Annotated[int, typer.Argument(help="anbu.resident id")],
    days: Annotated[str, typer.Option(help="ISO weekdays, 1 = Monday, e.g. 1,4")] = "1,4",
    at: Annotated[str, typer.Option(help="local time (Asia/Seoul), HH:MM")] = "10:00",
) -> None:
    """Add a routine check-in plan for a resident (e.g. Mon and Thu 10:00)."""
    from datetime import time

    import psycopg

    from calls.checkins import add_plan
    from core.config import Settings

    settings = Settings()
    if not settings.database_url:
        raise typer.BadParameter("ANBU_DATABASE_URL is not set")
    weekdays = [int(d) for d in days.split(",") if d.strip()]
    with psycopg.connect(settings.database_url) as conn:
        plan_id = add_plan(conn, resident_id, weekdays, time.fromisoformat(at))
    typer.echo(f"plan {plan_id}: resident {resident_id} on {weekdays} at {at}")


@app.command("speech-eval")
def speech_eval() -> None:
    """Held-out accuracy of the check-in speech classifier on the shipped utterances, and of
    each conversation question's answers (a held-out quarter of calls/data/answers_ko.tsv)."""
    from calls.conversation import evaluate_answers, load_answers, load_programme
    from calls.understanding import evaluate, load_utterances
    from core.config import Settings

    pairs = load_utterances()
    e = evaluate(pairs)
    typer.echo(
        f"utterances={len(pairs)} train={e.train} test={e.test} "
        f"model_accuracy={e.model_accuracy:.3f} rules+model_accuracy={e.accuracy:.3f}"
    )
    # each question of the routine conversation, on a held-out quarter of calls/data/answers_ko
    programme = load_programme(Settings().conversation_script)
    for q in evaluate_answers(load_answers(), programme):
        typer.echo(
            f"question={q.question} train={q.train} test={q.test} accuracy={q.accuracy:.3f} "
            f"unclear={q.unclear}"
        )


@bench_app.command("calls")
def bench_calls(
    checkins: Annotated[int, typer.Option(help="routine check-ins for one morning")] = 10_000,
    cps: Annotated[float, typer.Option(help="calls-per-second limit for the run")] = 500.0,
    persona: Annotated[str, typer.Option(help="how every line answers (simulators.personas)")] = (
        "press_1"
    ),
    web_workers: Annotated[int, typer.Option(help="web processes answering the webhooks")] = 2,
) -> None:
    """10,000 routine check-ins through the queue and the local phone network."""
    import logging

    from anbu.bench.calls import run_bench
    from core.config import Settings

    logging.getLogger().setLevel(logging.WARNING)
    run_bench(checkins, cps, Settings().database_url or None, persona, web_workers=web_workers)
