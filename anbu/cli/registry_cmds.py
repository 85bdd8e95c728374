"""Commands of the registry: import and export residents, bench import."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from anbu.cli import app, bench_app

import_app = typer.Typer(help="Enrol from the files districts keep (CSV).", no_args_is_help=True)
export_app = typer.Typer(
    help="Write the registry out for the city's systems.", no_args_is_help=True
)
app.add_typer(import_app, name="import")
app.add_typer(export_app, name="export")

_WORDS = {
    "ko": {"ok": "생성 {c} · 수정 {u} · 변경 없음 {n}", "bad": "잘못된 행 {b}개",
           "dry": "시험 실행: 아무것도 쓰지 않았습니다", "refused": "잘못된 행이 있어 아무것도 쓰지 않았습니다"
           " (--skip-bad로 나머지만 가져올 수 있습니다)", "skipped": "잘못된 행은 건너뛰었습니다",
           "line": "{line}행", "file": "파일 {encoding}, {rows}행", "written": "{n}명을 내보냈습니다"},
    "en": {"ok": "created {c} · updated {u} · unchanged {n}", "bad": "{b} bad rows",
           "dry": "dry run: nothing written", "refused": "bad rows: nothing written"
           " (--skip-bad imports the rest)", "skipped": "bad rows skipped",
           "line": "row {line}", "file": "file {encoding}, {rows} rows", "written": "exported {n}"},
}  # fmt: skip
_ENCODINGS = {"utf-8": "utf-8-sig", "utf-8-sig": "utf-8-sig", "cp949": "cp949", "euc-kr": "cp949"}


def _database_url() -> str:
    from core.config import Settings

    url = Settings().database_url
    if not url:
        raise typer.BadParameter("ANBU_DATABASE_URL is not set")
    return url


def _actor(by: str | None) -> str:
    import getpass

    return by if by else f"cli:{getpass.getuser()}"


@import_app.command("residents")
def import_residents_cmd(
    file: Annotated[
        Path,
        typer.Argument(
            help="CSV: UTF-8 (with or without BOM) or CP949", exists=True, dir_okay=False
        ),
    ],
    dry_run: Annotated[bool, typer.Option("--dry-run", help="check every row, write nothing")] = (
        False
    ),
    skip_bad: Annotated[
        bool, typer.Option("--skip-bad", help="import the good rows even if some are bad")
    ] = False,
    by: Annotated[str | None, typer.Option(help="who, for the audit (default cli:<user>)")] = None,
    lang: Annotated[str, typer.Option(help="ko | en: the language of the report")] = "ko",
) -> None:
    """Enrol or update residents from a district's file; idempotent on the external id."""
    import psycopg

    from anbu.cli.keys_cmds import optional_keyring
    from core.crypto import DataKeyError
    from registry.residents_csv import FileRefused
    from registry.residents_import import import_residents

    if lang not in _WORDS:
        raise typer.BadParameter("--lang must be ko or en")
    words = _WORDS[lang]
    data = file.read_bytes()
    with psycopg.connect(_database_url()) as conn:
        try:
            report = import_residents(
                conn, data, actor=_actor(by), dry_run=dry_run, skip_bad=skip_bad,
                keyring=optional_keyring(),
            )  # fmt: skip
        except DataKeyError as exc:
            typer.echo(f"데이터 키 / data key: {exc}", err=True)
            raise typer.Exit(2) from None
        except FileRefused as refused:
            typer.echo(refused.error.message(lang), err=True)
            raise typer.Exit(2) from None
    for warning in report.warnings:
        typer.echo(f"{words['line'].format(line=warning.line)} · {warning.message(lang)}", err=True)
    for error in report.errors:
        typer.echo(f"{words['line'].format(line=error.line)} · {error.message(lang)}")
    typer.echo(words["file"].format(encoding=report.encoding, rows=report.rows))
    summary = words["ok"].format(c=report.created, u=report.updated, n=report.unchanged)
    if report.errors:
        summary += " · " + words["bad"].format(b=report.bad_lines)
    typer.echo(summary)
    if dry_run:
        typer.echo(words["dry"])
    elif report.errors:
        typer.echo(words["skipped"] if skip_bad else words["refused"])
    if report.errors and not skip_bad:
        raise typer.Exit(1)


@export_app.command("residents")
def export_residents_cmd(
    dong: Annotated[str | None, typer.Option(help="only this dong (행정동 코드)")] = None,
    out: Annotated[Path | None, typer.Option(help="write here instead of stdout")] = None,
    encoding: Annotated[str, typer.Option(help="utf-8 (with BOM, for Excel) | cp949")] = "utf-8",
    lang: Annotated[str, typer.Option(help="ko | en: the column headers")] = "ko",
    include_notes: Annotated[
        bool, typer.Option("--include-notes", help="add the health and access notes columns")
    ] = False,
) -> None:
    """Every resident with an external id (or one dong's), in the import's own CSV format."""
    import psycopg

    from anbu.cli.keys_cmds import optional_keyring
    from core.crypto import DataKeyError
    from registry.access_log import Reader
    from registry.residents_export import export_residents

    if encoding.lower() not in _ENCODINGS:
        raise typer.BadParameter("encoding must be utf-8 or cp949")
    if lang not in _WORDS:
        raise typer.BadParameter("--lang must be ko or en")
    with psycopg.connect(_database_url()) as conn:
        try:
            data, count = export_residents(
                conn,
                dong=dong,
                lang=lang,
                encoding=_ENCODINGS[encoding.lower()],
                include_notes=include_notes,
                keyring=optional_keyring() if include_notes else None,
                reader=Reader(actor=_actor(None)),
            )
        except DataKeyError as exc:
            typer.echo(f"데이터 키 / data key: {exc}", err=True)
            raise typer.Exit(2) from None
        except UnicodeEncodeError:
            typer.echo(
                "CP949로 쓸 수 없는 글자가 있습니다: --encoding utf-8로 내보내 주세요"
                if lang != "en"
                else "some characters have no CP949 form: use --encoding utf-8",
                err=True,
            )
            raise typer.Exit(2) from None
    if out is None:
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
    else:  # residents' data, notes perhaps: the owner's alone, never through a link
        fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
    typer.echo(_WORDS["en" if lang == "en" else "ko"]["written"].format(n=count), err=True)


@bench_app.command("import")
def bench_import(
    rows: Annotated[int, typer.Option(help="residents in the generated file")] = 10_000,
) -> None:
    """Import N residents (CP949 CSV) into a throwaway PostgreSQL beside a bare COPY baseline."""
    import logging

    from anbu.bench.residents_import import run

    logging.getLogger().setLevel(logging.WARNING)
    run(rows, echo=typer.echo)


@bench_app.command("dashboard")
def bench_dashboard(
    residents: Annotated[int, typer.Option(help="residents over 20 dongs")] = 100_000,
    open_alerts: Annotated[int, typer.Option(help="open alerts among them")] = 10_000,
    requests: Annotated[int, typer.Option(help="timed requests a page")] = 200,
) -> None:
    """The care queue, a resident's card and the weekly review with a district's data (p95)."""
    from anbu.bench.dashboard import run

    typer.echo(run(residents, open_alerts, requests, echo=typer.echo))
