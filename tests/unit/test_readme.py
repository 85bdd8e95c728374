"""The README promises what the code does: two commands first, and the real settings table."""

from __future__ import annotations

from pathlib import Path

from anbu.settings_doc import settings_table

README = Path(__file__).resolve().parents[2] / "README.md"


def test_readme_opens_with_the_two_commands() -> None:
    text = README.read_text()
    first_block = text.split("```", 2)[1]
    assert [line.split("#")[0].strip() for line in first_block.strip().splitlines()] == [
        "make demo",
        "make test",
    ]


def test_readme_configuration_table_matches_the_settings() -> None:
    assert settings_table() in README.read_text(), "regenerate it with `anbu settings`"
