"""The one value coercer of every driver: what firmware sends, as the library's types.

Firmware sends numbers as numbers, as numeric strings ("110566.89", "'3'"), and
sometimes as NaN, infinities, booleans or junk. Every driver reads values
through these functions so one rule holds everywhere: numbers and numeric
strings are accepted; NaN, infinities, booleans and anything else are None.
"""

from __future__ import annotations

from collections.abc import Iterable
import math
from typing import Any


def number(value: Any) -> float | None:
    """A finite float from an int, float or numeric string; anything else is None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        result = float(value)
    elif isinstance(value, str):
        try:
            result = float(value.strip().strip("'"))
        except ValueError:
            return None
    else:
        return None
    return result if math.isfinite(result) else None


def integer(value: Any) -> int | None:
    """An int from a number or numeric string (fractions truncated); anything else is None."""
    result = number(value)
    return int(result) if result is not None else None


def flag(value: Any) -> bool:
    """Firmware booleans: true, "true", "Y", "yes", 1."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float):
        return value != 0
    return isinstance(value, str) and value.strip().lower() in ("true", "y", "yes", "1")


def text(value: Any) -> str | None:
    """A non-empty string, stripped of the quotes some firmware wraps versions in."""
    if isinstance(value, str):
        cleaned = value.strip().strip("'").strip()
        return cleaned or None
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    return None


def hottest(*groups: Iterable[float | None]) -> float | None:
    """The highest real temperature among several readings (0 means "no sensor")."""
    values = [value for group in groups for value in group if value is not None and value > 0]
    return max(values) if values else None
