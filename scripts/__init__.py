"""Repository scripts; the Python ones under dev/ run as `python -m scripts.dev.NAME`."""
