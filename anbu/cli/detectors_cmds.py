"""Commands of detectors: learning, bench sweep."""

from __future__ import annotations

from anbu.cli import app, bench_app  # noqa: F401
