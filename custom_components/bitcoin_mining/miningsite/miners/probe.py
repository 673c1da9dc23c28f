"""Whether a site's miners answer: each listed miner is reached once before the list is used."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

import aiohttp

from ..addresses import MinerAddress
from ..exceptions import DeviceAuthError, MiningSiteError
from .base import DEFAULT_TIMEOUT_S, Credentials, MinerEndpoint
from .detect import detect_family
from .fleet import driver_for

# Bounded so that probing 1000 addresses never opens 3000 sockets at once.
PROBE_CONCURRENCY = 128


class ProbeOutcome(StrEnum):
    """The verdict on a miner list."""

    # At least one miner answered and none refused the login (the others may be off).
    ANSWERED = "answered"
    # A miner refused the login: whatever the others did, the login is wrong.
    REFUSED_LOGIN = "refused_login"
    # Nothing answered (or the list was empty).
    NONE_ANSWERED = "none_answered"


@dataclass(frozen=True, slots=True)
class ProbeReport:
    """Every probed address, by what it did."""

    # Address -> family: as listed (the driver identified the miner) or as detected.
    answered: dict[str, str]
    refused_login: tuple[str, ...]
    # Address -> why it gave no usable answer.
    silent: dict[str, str]

    @property
    def outcome(self) -> ProbeOutcome:
        """One verdict for the whole list."""
        if self.refused_login:
            return ProbeOutcome.REFUSED_LOGIN
        if self.answered:
            return ProbeOutcome.ANSWERED
        return ProbeOutcome.NONE_ANSWERED


async def probe_miners(
    miners: Sequence[tuple[MinerAddress, str | None]],
    credentials: Credentials,
    session: aiohttp.ClientSession,
    *,
    timeout: float = DEFAULT_TIMEOUT_S,
    concurrency: int = PROBE_CONCURRENCY,
) -> ProbeReport:
    """Reach every miner once: identify it with its family's driver, or detect its family."""
    semaphore = asyncio.Semaphore(concurrency)

    async def probe(address: MinerAddress, family: str | None) -> str:
        endpoint = MinerEndpoint(address.host, address.port)
        async with semaphore:
            if family is None:
                return await detect_family(endpoint, session, timeout)
            driver = driver_for(family, endpoint, credentials, session, timeout)
            try:
                await driver.identify()
            finally:
                await driver.close()
            return family

    results = await asyncio.gather(
        *(probe(address, family) for address, family in miners), return_exceptions=True
    )
    answered: dict[str, str] = {}
    refused: list[str] = []
    silent: dict[str, str] = {}
    for (address, _), result in zip(miners, results, strict=True):
        if isinstance(result, DeviceAuthError):
            refused.append(str(address))
        elif isinstance(result, MiningSiteError):
            silent[str(address)] = str(result)
        elif isinstance(result, BaseException):
            # Not ours to judge (a bug, or a cancellation): let the caller see it.
            raise result
        else:
            answered[str(address)] = result
    return ProbeReport(answered, tuple(refused), silent)
