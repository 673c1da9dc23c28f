"""Benchmarks that print figures: `python -m bench.NAME` from the repository root, in a lane."""
