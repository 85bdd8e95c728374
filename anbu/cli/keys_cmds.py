"""Commands of the data keys that seal residents' notes and care notes at rest: new, status,
rotate."""

from __future__ import annotations

from typing import TYPE_CHECKING

import typer

from anbu.cli import app

if TYPE_CHECKING:
    from core.config import Settings
    from core.crypto import Keyring

keys_app = typer.Typer(
    help="Data keys sealing residents' health and access notes and care notes (ANBU_DATA_KEY).",
    no_args_is_help=True,
)
app.add_typer(keys_app, name="keys")


def keyring_of(settings: Settings, *, required: bool) -> Keyring | None:
    """The keyring of ANBU_DATA_KEY / ANBU_DATA_KEYS_OLD; None when unset and not required. A
    key that cannot be read stops the command with why (never the key)."""
    from core.crypto import DataKeyError, Keyring

    if not settings.data_key.strip() and not required:
        return None
    try:
        return Keyring.from_settings(settings)
    except DataKeyError as exc:
        typer.echo(f"데이터 암호화 키 오류 / data key: {exc}", err=True)
        raise typer.Exit(2) from None


def optional_keyring() -> Keyring | None:
    """The keyring when ANBU_DATA_KEY is set: commands that may meet notes pass it on."""
    from core.config import Settings

    return keyring_of(Settings(), required=False)


@keys_app.command("new")
def new() -> None:
    """Print a fresh random data key (for ANBU_DATA_KEY); nothing is stored."""
    from core.crypto import new_key

    typer.echo(new_key())


def _database(settings: Settings) -> str:
    if not settings.database_url:
        raise typer.BadParameter("ANBU_DATABASE_URL is not set")
    return settings.database_url


@keys_app.command("status")
def status() -> None:
    """How many sealed values (a resident's notes, a care note) each key id seals, and how many
    residents' notes are still in plaintext."""
    import psycopg

    from core.config import Settings
    from registry.key_rotation import key_census

    settings = Settings()
    ring = keyring_of(settings, required=False)
    with psycopg.connect(_database(settings)) as conn:
        census = key_census(conn)
    current = ring.current_id if ring else None
    for kid, count in census.by_key.items():
        state = "현재 키 / current" if kid == current else (
            "이전 키 / old" if ring and kid in ring.keys else "설정에 없음 / NOT CONFIGURED"
        )  # fmt: skip
        typer.echo(f"{kid}  {count}  {state}")
    typer.echo(f"평문 / plaintext  {census.plaintext}")


@keys_app.command("rotate")
def rotate(
    batch: int = typer.Option(
        500, min=1, help="residents (or care notes) re-sealed per transaction"
    ),
) -> None:
    """Re-seal every resident's notes and every care note under ANBU_DATA_KEY: those under an
    old key (listed in ANBU_DATA_KEYS_OLD) and those still in plaintext. Safe to rerun;
    afterwards the old keys can be removed."""
    import psycopg

    from core.config import Settings
    from core.crypto import DataKeyError
    from registry.key_rotation import key_census, rotate_keys

    settings = Settings()
    ring = keyring_of(settings, required=True)
    assert ring is not None
    with psycopg.connect(_database(settings), autocommit=True) as conn:
        try:
            done = rotate_keys(conn, ring, batch)
        except DataKeyError as exc:
            typer.echo(f"데이터 암호화 키 오류 / data key: {exc}", err=True)
            raise typer.Exit(1) from None
        census = key_census(conn)
    typer.echo(f"재암호화 / re-sealed: {done} (key {ring.current_id})")
    left = sum(n for kid, n in census.by_key.items() if kid != ring.current_id)
    if left or census.plaintext:
        typer.echo(f"남음 / left: {left} under other keys, {census.plaintext} plaintext", err=True)
        raise typer.Exit(1)
