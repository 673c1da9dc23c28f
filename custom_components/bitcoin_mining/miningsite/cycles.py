"""Start/stop cycle accounting per ASIC, keyed by MAC (never by IP).

A cycle is one confirmed on→off transition: counted from read-back state,
never from commands sent and never twice for the same transition.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any


@dataclass(frozen=True, slots=True)
class CycleRecord:
    """What is known of one ASIC's wear: cycles, last on, last off (epoch seconds)."""

    cycles: int = 0
    last_on: float | None = None
    last_off: float | None = None
    # The last confirmed state; None until the first reading of a new ASIC.
    mining: bool | None = None

    def as_dict(self) -> dict[str, Any]:
        """Plain JSON for storage."""
        return {
            "cycles": self.cycles,
            "last_on": self.last_on,
            "last_off": self.last_off,
            "mining": self.mining,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CycleRecord:
        """Read a stored record; missing fields take their defaults."""
        cycles = data.get("cycles", 0)
        if not isinstance(cycles, int) or isinstance(cycles, bool) or cycles < 0:
            raise ValueError(f"cycles must be a non-negative integer, not {cycles!r}")
        return cls(
            cycles=cycles,
            last_on=_optional_float(data.get("last_on")),
            last_off=_optional_float(data.get("last_off")),
            mining=data.get("mining") if isinstance(data.get("mining"), bool) else None,
        )


def _optional_float(value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"expected a timestamp, not {value!r}")
    return float(value)


class CycleBook:
    """Cycle records of a fleet, updated from confirmed states."""

    def __init__(self, records: Mapping[str, CycleRecord] | None = None) -> None:
        """Start from stored records (MAC → record)."""
        self._records: dict[str, CycleRecord] = dict(records or {})

    def get(self, mac: str) -> CycleRecord:
        """The record of one ASIC (empty for one never seen)."""
        return self._records.get(mac, CycleRecord())

    def observe(self, mac: str, mining: bool, now: float) -> bool:
        """Record a confirmed state; return True when the record changed.

        The first observation of an ASIC only sets its state: a miner found
        sleeping was not stopped by us, so it is not a cycle.
        """
        record = self._records.get(mac, CycleRecord())
        if record.mining is mining:
            return False
        if record.mining is None:
            updated = replace(record, mining=mining)
        elif mining:
            updated = replace(record, mining=True, last_on=now)
        else:
            updated = replace(record, mining=False, last_off=now, cycles=record.cycles + 1)
        self._records[mac] = updated
        return True

    def as_dict(self) -> dict[str, dict[str, Any]]:
        """Every record as plain JSON."""
        return {mac: record.as_dict() for mac, record in sorted(self._records.items())}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CycleBook:
        """Load stored records; a malformed record raises ValueError naming its MAC."""
        records: dict[str, CycleRecord] = {}
        for mac, raw in data.items():
            if not isinstance(raw, Mapping):
                raise ValueError(f"cycle record of {mac} is not a mapping")
            try:
                records[mac] = CycleRecord.from_dict(raw)
            except ValueError as err:
                raise ValueError(f"cycle record of {mac}: {err}") from err
        return cls(records)
