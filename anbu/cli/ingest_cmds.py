"""Commands of ingest: replay, loadgen, dead letters, bench ingest."""

from __future__ import annotations

from anbu.cli import app, bench_app  # noqa: F401
