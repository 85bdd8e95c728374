"""Commands of calls: check-in plans, bench calls."""

from __future__ import annotations

from anbu.cli import app, bench_app  # noqa: F401
