"""What every firmware driver offers: identity, status, sleep/wake and pools.

A driver speaks one firmware family's API to one miner. Drivers raise only the
library's errors (miningsite.exceptions); they never retry and never wait for a
state change: the fleet fan-out confirms commands by reading back.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
import re
from typing import ClassVar, Literal

import aiohttp

Family = Literal["whatsminer", "whatsminer_v3", "antminer", "luxos", "braiins", "cgminer"]
FAMILIES: tuple[Family, ...] = (
    "whatsminer",
    "whatsminer_v3",
    "antminer",
    "luxos",
    "braiins",
    "cgminer",
)

DEFAULT_TIMEOUT_S = 3.0
_MAC = re.compile(r"^[0-9A-F]{2}(:[0-9A-F]{2}){5}$")


def normalize_mac(mac: str) -> str:
    """Upper-case colon form (AA:BB:CC:DD:EE:FF); other shapes are kept as given, upper-cased."""
    cleaned = mac.strip().upper().replace("-", ":")
    if len(cleaned) == 12 and ":" not in cleaned:
        cleaned = ":".join(cleaned[i : i + 2] for i in range(0, 12, 2))
    return cleaned


def is_mac(text: str) -> bool:
    """Whether text is a MAC address in normalized form."""
    return bool(_MAC.match(text))


@dataclass(frozen=True, slots=True)
class MinerEndpoint:
    """Where a miner answers.

    `port` None means the family's standard ports (4028, 4433, 80). A port given
    explicitly (NAT, or the simulator's per-miner ports on 127.0.0.1) is the
    miner's API port; a family that also needs a web interface (Antminer stock)
    finds it on the next port up.
    """

    host: str
    port: int | None = None

    def api_port(self, standard: int) -> int:
        """The API port: the explicit one, or the family's standard port."""
        return self.port if self.port is not None else standard

    def web_port(self, standard: int = 80) -> int:
        """The web port of a family with an API and a web interface."""
        return self.port + 1 if self.port is not None else standard

    def __str__(self) -> str:
        """Host or host:port."""
        return self.host if self.port is None else f"{self.host}:{self.port}"


@dataclass(frozen=True, slots=True)
class Credentials:
    """Login for writes; None means the family's factory default."""

    username: str | None = None
    password: str | None = None


@dataclass(frozen=True, slots=True)
class MinerIdentity:
    """Who a miner is: stable across IP changes (keyed by MAC).

    `mac` is empty for firmware that reports none (plain CGMiner): such a miner
    can only be keyed by its address.
    """

    family: Family
    model: str
    firmware: str
    mac: str
    serial: str | None = None
    hostname: str | None = None


@dataclass(frozen=True, slots=True)
class PoolConfig:
    """One pool to configure on a miner."""

    url: str
    user: str
    password: str = "x"  # noqa: S105 - what pools expect when they need no password


@dataclass(frozen=True, slots=True)
class PoolStatus:
    """One pool as the miner reports it."""

    url: str
    user: str
    alive: bool
    active: bool
    priority: int
    accepted: int | None = None
    rejected: int | None = None


@dataclass(frozen=True, slots=True)
class MinerStatus:
    """One reading of a miner.

    `mining` is what the firmware says it is doing (hashing, or asked to hash and
    ramping up), not what we last asked. Power is measured where the firmware
    reports it, else estimated from the model (`power_estimated`).
    """

    mining: bool
    hashrate_ths: float | None = None
    power_w: float | None = None
    power_estimated: bool = False
    temperature_c: float | None = None
    board_temperatures_c: tuple[float, ...] = ()
    fan_rpm: tuple[int, ...] = ()
    uptime_s: int | None = None
    pools: tuple[PoolStatus, ...] = ()
    accepted_shares: int | None = None
    rejected_shares: int | None = None
    errors: tuple[str, ...] = ()
    # What the miner hashes at full speed (nameplate or factory), for efficiency.
    nominal_hashrate_ths: float | None = None
    # Reported by some families in every reply: lets the fleet notice a swapped miner.
    mac: str | None = None

    @property
    def active_pool(self) -> PoolStatus | None:
        """The pool the miner hashes on: of those flagged active, alive and highest in priority.

        Firmware flags a pool per open connection, so several may be flagged at once;
        the first flagged is not the answer.
        """
        flagged = [pool for pool in self.pools if pool.active]
        if not flagged:
            return None
        return min(flagged, key=lambda pool: (not pool.alive, pool.priority))


class MinerDriver(ABC):
    """One miner, one firmware family."""

    family: ClassVar[Family]

    def __init__(
        self,
        endpoint: MinerEndpoint,
        credentials: Credentials | None = None,
        *,
        session: aiohttp.ClientSession | None = None,
        timeout: float = DEFAULT_TIMEOUT_S,
    ) -> None:
        """Remember where and how to reach the miner; nothing is sent yet."""
        self.endpoint = endpoint
        self.credentials = credentials or Credentials()
        self.session = session
        self.timeout = timeout

    @abstractmethod
    async def identify(self) -> MinerIdentity:
        """Model, firmware, MAC and serial."""

    @abstractmethod
    async def read_status(self) -> MinerStatus:
        """Hashrate, power, temperatures, fans, pools, uptime, errors."""

    @abstractmethod
    async def stop_mining(self) -> None:
        """Put the miner to sleep (hashboards off, control board on)."""

    @abstractmethod
    async def start_mining(self) -> None:
        """Wake the miner."""

    @abstractmethod
    async def set_pools(self, pools: Sequence[PoolConfig]) -> None:
        """Replace the pool list (at most three; the first has priority)."""

    @abstractmethod
    async def switch_pool(self, index: int) -> None:
        """Make pool `index` (0-based, in the miner's list) the active one."""

    async def close(self) -> None:  # noqa: B027 - an optional hook, not abstract
        """Release sessions or tokens held on the miner (default: nothing)."""

    def _require_session(self) -> aiohttp.ClientSession:
        """The HTTP session of a web-based family (injected: Home Assistant's shared one)."""
        if self.session is None:
            raise TypeError(f"the {self.family} driver needs an aiohttp session")
        return self.session
