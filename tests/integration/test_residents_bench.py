"""`anbu bench import` on the session's PostgreSQL: its three runs do what they say."""

from __future__ import annotations

from anbu.bench.residents_import import measure, synthetic_file


def test_the_bench_creates_then_finds_unchanged_then_updates_one_in_ten(db_url: str) -> None:
    said: list[str] = []
    figures = measure(db_url, 200, echo=said.append)
    assert figures.counts == ((200, 0, 0), (0, 0, 200), (0, 20, 180))
    assert figures.copy_s > 0 and figures.first_s > 0
    assert said[-1].startswith("import: rows=200 first_s=") and "bare_copy_s=" in said[-1]
    assert synthetic_file(3).decode("cp949").count("\r\n") == 4
