"""Cells of the CSV files anbu writes, safe to open in a spreadsheet (CSV/formula injection).

A cell that begins with `=`, `+`, `-`, `@`, a tab or a carriage return is run by Excel or
LibreOffice as a formula; written with a leading `'` it is shown as the text it is. Reading such
a file back, `unquote` drops that one quote again, so an export re-imported changes nothing.
"""

from __future__ import annotations

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def neutralise(text: str) -> str:
    """`text` as a spreadsheet shows it and never runs it."""
    return "'" + text if text.startswith(FORMULA_STARTS) else text


def unquote(text: str) -> str:
    """A cell written by `neutralise`, as it was (Excel, too, keeps a leading `'` out of the
    value)."""
    return text[1:] if text.startswith("'") and text[1:].startswith(FORMULA_STARTS) else text
