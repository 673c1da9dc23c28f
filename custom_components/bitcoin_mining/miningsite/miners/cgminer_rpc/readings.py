"""What the CGMiner-style report sections say: hashrate, pools, temperatures, fans, MAC."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
import re
from typing import Any

from ..base import PoolStatus, is_mac, normalize_mac
from ..values import flag, integer, number, text

# Hashrate fields, most useful first: a short window follows sleep and wake quickly;
# "av" (since the mining process started) is the last resort.
_WINDOWS = ("1m", "5m", "5s", "15m", "30m", "av")
_UNITS = (("THS", 1.0), ("GHS", 1e-3), ("MHS", 1e-6), ("KHS", 1e-9))
_HASHRATE_KEYS = tuple((f"{unit} {window}", scale) for window in _WINDOWS for unit, scale in _UNITS)
# `rate_unit` of bmminer's stats: plain ("GH") or per second ("GH/s", the new API).
RATE_UNITS = {"TH": 1.0, "GH": 1e-3, "MH": 1e-6, "TH/S": 1.0, "GH/S": 1e-3, "MH/S": 1e-6}
_MAC_KEYS = ("MAC", "MACAddr", "mac", "macaddr", "MAC Address")
_BARE_MAC = re.compile(r"^[0-9a-fA-F]{12}$")


def hashrate_ths(entry: dict[str, Any]) -> float | None:
    """Hashrate of a SUMMARY or DEVS entry in TH/s, whatever unit the firmware used."""
    for key, scale in _HASHRATE_KEYS:
        if key in entry:
            value = number(entry[key])
            if value is not None:
                return value * scale
    return None


def _usable(entry: dict[str, Any]) -> bool:
    """A pool cgminer can hash on: alive (a disabled or dead pool says so in Status)."""
    return str(entry.get("Status", "")).strip().lower() == "alive"


def current_pool(entries: Sequence[dict[str, Any]]) -> int | None:
    """The index of the pool the miner hashes on: alive, connected, highest in priority.

    cgminer's POOLS has no "current" field, and `Stratum Active` is per
    connection: several pools show it at once (a pool just added, a higher one
    back from a failure), so the first flagged one is not the answer.
    """
    best: tuple[int, int] | None = None
    for index, entry in enumerate(entries):
        if _usable(entry) and flag(entry.get("Stratum Active")):
            priority = integer(entry.get("Priority"))
            rank = (priority if priority is not None else index, index)
            if best is None or rank < best:
                best = rank
    return best[1] if best is not None else None


def parse_pools(entries: Sequence[dict[str, Any]]) -> tuple[PoolStatus, ...]:
    """POOLS entries as PoolStatus, in the miner's order; only the current one is active."""
    current = current_pool(entries)
    pools = []
    for index, entry in enumerate(entries):
        priority = integer(entry.get("Priority"))
        pools.append(
            PoolStatus(
                url=text(entry.get("URL")) or "",
                user=text(entry.get("User")) or "",
                alive=_usable(entry),
                active=index == current,
                priority=priority if priority is not None else index,
                accepted=integer(entry.get("Accepted")),
                rejected=integer(entry.get("Rejected")),
            )
        )
    return tuple(pools)


def device_temperatures(devs: Sequence[dict[str, Any]]) -> tuple[float, ...]:
    """The board temperature of each device that has a real reading."""
    readings = (number(dev.get("Temperature")) for dev in devs)
    return tuple(value for value in readings if value is not None and value > 0)


def mac_in(entries: Iterable[dict[str, Any]]) -> str | None:
    """A MAC address found in any of these entries, normalized."""
    for entry in entries:
        for key in _MAC_KEYS:
            value = text(entry.get(key))
            if value is not None and is_mac(normalize_mac(value)):
                return normalize_mac(value)
    return None


def _numbered_suffix(key: str, prefix: str) -> int | None:
    """N of a key `<prefix>N` (fan3 -> 3 for "fan"); None for any other key."""
    if key.startswith(prefix):
        suffix = key[len(prefix) :]
        if suffix.isdecimal():
            return int(suffix)
    return None


def _sorted_readings(found: list[tuple[int, float]]) -> list[float]:
    """Readings in key-number order."""
    return [reading for _, reading in sorted(found)]


def dash_maximum(value: Any) -> float | None:
    """The highest of bmminer's "78-50-69-70" sensor strings."""
    if not isinstance(value, str):
        return None
    readings = [number(part) for part in value.split("-")]
    real = [reading for reading in readings if reading is not None]
    return max(real) if real else None


class StatsReadings:
    """What bmminer-style `stats` carries: fans, board and chip temperatures, ideal rate."""

    def __init__(self, stats: Sequence[dict[str, Any]]) -> None:
        """Collect readings from every STATS entry (the first only names the miner)."""
        self.fans: list[int] = []
        self.boards: list[float] = []
        self.chips: list[float] = []
        self.nominal_ths: float | None = None
        self.mac: str | None = None
        for entry in stats:
            self._read_sensors(entry)
            ideal = number(entry.get("total_rateideal"))
            scale = RATE_UNITS.get(str(entry.get("rate_unit", "GH")).upper())
            if ideal is not None and ideal > 0 and scale is not None:
                self.nominal_ths = ideal * scale
            # LuxOS and some cgminer forks use the MAC as miner_id.
            miner_id = text(entry.get("miner_id"))
            if miner_id is not None and _BARE_MAC.match(miner_id):
                self.mac = normalize_mac(miner_id)

    def _read_sensors(self, entry: dict[str, Any]) -> None:
        """fanN, tempN, temp2_N (real readings only, in N order) and temp_chipN of one entry."""
        fans: list[tuple[int, float]] = []
        boards: list[tuple[int, float]] = []
        chips: list[tuple[int, float]] = []
        chip_maxima: list[float] = []
        # One pass over the keys (a big miner's entry has a hundred or more).
        for key, value in entry.items():
            if key.startswith("fan"):
                index, found = _numbered_suffix(key, "fan"), fans
            elif key.startswith("temp2_"):
                index, found = _numbered_suffix(key, "temp2_"), chips
            elif key.startswith("temp_chip"):
                chip = dash_maximum(value)
                if chip is not None:
                    chip_maxima.append(chip)
                continue
            elif key.startswith("temp"):
                index, found = _numbered_suffix(key, "temp"), boards
            else:
                continue
            reading = number(value) if index is not None else None
            if index is not None and reading is not None and reading > 0:
                found.append((index, reading))
        self.fans += [int(rpm) for rpm in _sorted_readings(fans)]
        self.boards += _sorted_readings(boards)
        self.chips += _sorted_readings(chips) + chip_maxima
