"""Helpers shared by bench/ and scripts/dev/ (run those with `python -m` from the repo root)."""
