"""Benchmarks (programs, not timed tests): each prints figures beside a same-run baseline."""
