"""Tools for the develop session (`scripts/develop`): `python -m scripts.dev.NAME`."""
