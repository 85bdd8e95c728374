"""Cells of the CSV files anbu writes never run as a spreadsheet formula, and read back as
they were (core.spreadsheet)."""

from __future__ import annotations

import csv
from datetime import UTC, datetime
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from core.spreadsheet import FORMULA_STARTS, neutralise, unquote
from detectors.offline import OfflineFinding, write_findings


def test_a_formula_is_written_as_text_and_plain_text_as_it_is() -> None:
    assert neutralise('=HYPERLINK("http://x")') == '\'=HYPERLINK("http://x")'
    for text in ("+82 10", "-1", "@SUM(A1)", "\tx", "\rx"):
        assert neutralise(text) == "'" + text
    for text in ("010-2345-6789", "김순자", "", "'quoted", "a=b"):
        assert neutralise(text) == text


@given(st.text(max_size=30))
def test_what_is_written_reads_back_and_never_starts_a_formula(text: str) -> None:
    written = neutralise(text)
    assert not written.startswith(FORMULA_STARTS)
    assert unquote(written) == text or text.startswith("'")  # a typed '= stays Excel's own


def test_the_detect_commands_csv_runs_no_formula(tmp_path: Path) -> None:
    out = tmp_path / "alerts.csv"
    at = datetime(2026, 11, 22, 9, 0, tzinfo=UTC)
    write_findings(out, [OfflineFinding("=cmd|' /C calc'!A0", "inactivity", "주의", at, "-")])
    rows = list(csv.reader(out.open(encoding="utf-8")))
    assert rows[1][0] == "'=cmd|' /C calc'!A0" and rows[1][4] == "'-"
    assert rows[1][1:4] == ["inactivity", "주의", at.isoformat()]
