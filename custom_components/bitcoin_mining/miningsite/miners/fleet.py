"""The fleet fan-out: every miner identified, polled and commanded concurrently.

One miner's failure (slow, dead, garbage) never reaches another: every call
runs in its own task under its own timeout and comes back as a value, the
status or the library error. Identities are cached per member key (a stable
name for a configured address) and re-read only when asked or when a reading
names another MAC: a swapped miner is reported, never silently adopted.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, replace
import time
from typing import Literal, Protocol, TypeVar, runtime_checkable

import aiohttp

from ..exceptions import (
    CommandRejectedError,
    DeviceProtocolError,
    DeviceTimeoutError,
    MiningSiteError,
    UnsupportedError,
)
from .antminer import AntminerDriver
from .base import (
    DEFAULT_TIMEOUT_S,
    Credentials,
    MinerDriver,
    MinerEndpoint,
    MinerIdentity,
    MinerStatus,
    PoolConfig,
    normalize_mac,
)
from .braiins import BraiinsDriver
from .cgminer import CgminerDriver
from .luxos import LuxosDriver
from .models import SLEEP_POWER_W, estimate_power
from .outcomes import CommandResult as CommandResult  # noqa: PLC0414 - re-exported (mypy strict)
from .pool_moves import (
    Confirming,
    FleetCall,
    PoolListPlan,
    PoolMoveOutcome as PoolMoveOutcome,  # noqa: PLC0414 - re-exported
    check_backup_pool,
    ensure_pool_list,
    switch_to,
    with_backup_pool,
    with_proxy_first,
)
from .whatsminer import WhatsminerDriver
from .whatsminer_v3 import WhatsminerV3Driver

_T = TypeVar("_T")

Action = Literal["stop", "start"]
# A poll is one round trip per miner (RPC requests go at once): 128 in flight polls a
# thousand miners in ~1.1 s on loopback at 100 ms latency (64: ~1.9 s, and more CPU).
DEFAULT_CONCURRENCY = 128
# Load shedding must reach every miner at once, not in waves.
DEFAULT_COMMAND_CONCURRENCY = 512
DEFAULT_CONFIRM_TIMEOUT_S = 5.0
DEFAULT_CONFIRM_INTERVAL_S = 0.1

# Imported up front: a lazy import would block Home Assistant's event loop.
_DRIVERS: dict[str, type[MinerDriver]] = {
    driver.family: driver
    for driver in (
        WhatsminerDriver,
        WhatsminerV3Driver,
        AntminerDriver,
        LuxosDriver,
        BraiinsDriver,
        CgminerDriver,
    )
}


def driver_class(family: str) -> type[MinerDriver]:
    """The driver class of a firmware family."""
    try:
        return _DRIVERS[family]
    except KeyError:
        raise UnsupportedError(f"unknown miner family {family!r}") from None


def driver_for(
    family: str,
    endpoint: MinerEndpoint,
    credentials: Credentials | None = None,
    session: aiohttp.ClientSession | None = None,
    timeout: float = DEFAULT_TIMEOUT_S,
) -> MinerDriver:
    """A driver for one miner of a family."""
    return driver_class(family)(endpoint, credentials, session=session, timeout=timeout)


@dataclass(frozen=True, slots=True)
class IdentityChange:
    """A member answered with another MAC than the one cached: probably another miner."""

    key: str
    previous: MinerIdentity
    current: MinerIdentity | None
    # The MAC that gave it away (from an identity or from a status reading).
    seen_mac: str


@dataclass(frozen=True, slots=True)
class IdentifyReport:
    """What identify_all learned: new identities, failures and MAC changes."""

    identified: dict[str, MinerIdentity]
    errors: dict[str, MiningSiteError]
    changed: dict[str, IdentityChange]


@dataclass(frozen=True, slots=True)
class CommandOutcome:
    """One miner's command: result, the error if any, and the read-back that decided.

    `mining` is the state read back last; `status` the whole reading (None after a
    quick read-back, or when no read-back succeeded).
    """

    key: str
    result: CommandResult
    error: MiningSiteError | None = None
    attempts: int = 1
    elapsed_s: float = 0.0
    status: MinerStatus | None = None
    mining: bool | None = None

    @property
    def confirmed(self) -> bool:
        """Whether the read-back showed the requested state."""
        return self.result is CommandResult.CONFIRMED


@runtime_checkable
class QuickReadback(Protocol):
    """A driver that can read its mining state alone, cheaper than a whole status.

    Optional (not in the MinerDriver contract): Fleet.command(quick_readback=True)
    confirms with it, so shedding 160 miners costs one small read each.
    """

    async def read_mining(self) -> bool:
        """Whether the firmware says it is mining (as MinerStatus.mining)."""


@runtime_checkable
class PreparesWrites(Protocol):
    """A driver whose first write costs more round trips than the next (a session, a token).

    Optional (not in the MinerDriver contract): Fleet.prepare_writes() gets them ready
    ahead of time, so the first shed after a start is as quick as any other. A driver
    that is not ready still writes: it prepares on its own then, as it always did.
    """

    async def prepare_writes(self) -> None:
        """Open or renew what the next write needs (nothing when it is ready)."""


def fill_power(status: MinerStatus, model: str | None) -> MinerStatus:
    """The status with an estimated power when the firmware reports none."""
    if status.power_w is not None:
        return status
    if not status.mining:
        return replace(status, power_w=SLEEP_POWER_W, power_estimated=True)
    power = estimate_power(model, status.hashrate_ths, status.nominal_hashrate_ths)
    if power is None:
        return status
    return replace(status, power_w=power, power_estimated=True)


def _other_mac(known: str, seen: str) -> bool:
    """Whether two MACs name different miners (an empty MAC names none)."""
    return bool(known and seen) and normalize_mac(known) != normalize_mac(seen)


def _driver_failure(key: str, err: Exception) -> MiningSiteError:
    """A driver bug or an unforeseen reply, as a library error of that one miner."""
    failure = DeviceProtocolError(f"{key}: the driver failed: {type(err).__name__}: {err}")
    failure.__cause__ = err
    return failure


class Fleet:
    """Miners by key, each with its driver and cached identity."""

    def __init__(
        self,
        drivers: Mapping[str, MinerDriver] | None = None,
        *,
        concurrency: int = DEFAULT_CONCURRENCY,
        command_concurrency: int = DEFAULT_COMMAND_CONCURRENCY,
        timeout: float = DEFAULT_TIMEOUT_S,
        confirm_timeout: float = DEFAULT_CONFIRM_TIMEOUT_S,
        confirm_interval: float = DEFAULT_CONFIRM_INTERVAL_S,
    ) -> None:
        """Members from key → driver; limits apply per fan-out."""
        if concurrency < 1 or command_concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        if timeout <= 0 or confirm_timeout <= 0 or confirm_interval < 0:
            raise ValueError("timeouts must be positive")
        self._drivers: dict[str, MinerDriver] = dict(drivers or {})
        self._identities: dict[str, MinerIdentity] = {}
        # Keys whose readings named another MAC: re-identified by the next identify_all.
        self._suspect: dict[str, str] = {}
        self.concurrency = concurrency
        self.command_concurrency = command_concurrency
        self.timeout = timeout
        self.confirm_timeout = confirm_timeout
        self.confirm_interval = confirm_interval

    # -- membership ----------------------------------------------------------

    @property
    def keys(self) -> tuple[str, ...]:
        """Member keys in the order they were added."""
        return tuple(self._drivers)

    @property
    def identities(self) -> Mapping[str, MinerIdentity]:
        """Cached identities by key."""
        return dict(self._identities)

    @property
    def suspect_keys(self) -> frozenset[str]:
        """Members whose last reading named another MAC than their cached identity."""
        return frozenset(self._suspect)

    def driver(self, key: str) -> MinerDriver:
        """The driver of a member."""
        return self._drivers[key]

    def add(self, key: str, driver: MinerDriver) -> None:
        """Add a member, or replace its driver (its cached identity is dropped then)."""
        if key in self._drivers:
            self._identities.pop(key, None)
            self._suspect.pop(key, None)
        self._drivers[key] = driver

    async def remove(self, key: str) -> None:
        """Drop a member and close its driver."""
        driver = self._drivers.pop(key)
        self._identities.pop(key, None)
        self._suspect.pop(key, None)
        await driver.close()

    async def close(self) -> None:
        """Close every driver."""
        await asyncio.gather(*(d.close() for d in self._drivers.values()), return_exceptions=True)

    # -- fan-out -------------------------------------------------------------

    async def _bounded(
        self,
        keys: Iterable[str],
        call: Callable[[str], Awaitable[_T]],
        limit: int,
    ) -> dict[str, _T | MiningSiteError]:
        """Run `call(key)` for every key, at most `limit` at a time, errors as values."""
        semaphore = asyncio.Semaphore(limit)
        timeout = self.timeout

        async def one(key: str) -> _T | MiningSiteError:
            async with semaphore:
                try:
                    async with asyncio.timeout(timeout):
                        return await call(key)
                except TimeoutError:
                    return DeviceTimeoutError(f"{key} did not answer within {timeout} s")
                except MiningSiteError as err:
                    return err
                except Exception as err:  # noqa: BLE001 - one driver's bug must not stop the fleet
                    return _driver_failure(key, err)

        ordered = list(keys)
        results = await asyncio.gather(*(one(key) for key in ordered))
        return dict(zip(ordered, results, strict=True))

    async def identify_all(self, *, refresh: bool = False) -> IdentifyReport:
        """Identify members not yet known (all with refresh), reporting MAC changes."""
        # A snapshot: members added or removed meanwhile wait for the next call.
        drivers = dict(self._drivers)
        pending = [
            key for key in drivers if refresh or key not in self._identities or key in self._suspect
        ]
        results = await self._bounded(
            pending, lambda key: drivers[key].identify(), self.concurrency
        )
        identified: dict[str, MinerIdentity] = {}
        errors: dict[str, MiningSiteError] = {}
        changed: dict[str, IdentityChange] = {}
        for key, result in results.items():
            if isinstance(result, MiningSiteError):
                errors[key] = result
                continue
            if self._drivers.get(key) is not drivers[key]:
                continue  # removed or replaced while it was being identified
            previous = self._identities.get(key)
            if previous is not None and _other_mac(previous.mac, result.mac):
                changed[key] = IdentityChange(key, previous, result, result.mac)
            identified[key] = result
            self._identities[key] = result
            self._suspect.pop(key, None)
        return IdentifyReport(identified, errors, changed)

    async def poll(self) -> dict[str, MinerStatus | MiningSiteError]:
        """Read every member's status; power filled in (estimated) where the firmware has none."""
        drivers = dict(self._drivers)
        results = await self._bounded(
            drivers, lambda key: drivers[key].read_status(), self.concurrency
        )
        identities = self._identities
        for key, result in results.items():
            if isinstance(result, MiningSiteError):
                continue
            identity = identities.get(key)
            if result.power_w is None:
                results[key] = fill_power(result, identity.model if identity else None)
            if (
                identity is not None
                and result.mac is not None
                and result.mac != identity.mac
                and _other_mac(identity.mac, result.mac)
                and self._drivers.get(key) is drivers[key]
            ):
                self._suspect[key] = result.mac
        return results

    async def prepare_writes(self, keys: Iterable[str] | None = None) -> dict[str, MiningSiteError]:
        """Get the drivers' write paths ready (PreparesWrites); the members that failed.

        Every member's, or only these keys' (the ones that answered: a dead miner would
        only hold the caller up until its timeout). A failure only means that member's
        next write prepares itself, as a cold one does.
        """
        chosen = (
            self._drivers
            if keys is None
            else {k: self._drivers[k] for k in keys if k in self._drivers}
        )
        drivers = {key: d for key, d in chosen.items() if isinstance(d, PreparesWrites)}
        results = await self._bounded(
            drivers, lambda key: drivers[key].prepare_writes(), self.concurrency
        )
        return {key: err for key, err in results.items() if isinstance(err, MiningSiteError)}

    def identity_changes_seen(self) -> dict[str, IdentityChange]:
        """Members whose readings named another MAC since their identity was cached."""
        return {
            key: IdentityChange(key, self._identities[key], None, mac)
            for key, mac in self._suspect.items()
            if key in self._identities
        }

    async def command(
        self, keys: Iterable[str], action: Action, *, quick_readback: bool = False
    ) -> dict[str, CommandOutcome]:
        """Stop or start these members, each confirmed by reading its state back.

        The read-back is a whole status (in the outcome), or with `quick_readback`
        only the mining state where the driver can read it alone (QuickReadback):
        one small request per miner, for shedding load in a hurry.
        """
        if action not in ("stop", "start"):
            raise ValueError(f"action must be 'stop' or 'start', not {action!r}")
        wanted = action == "start"
        chosen = list(dict.fromkeys(keys))
        unknown = [key for key in chosen if key not in self._drivers]
        if unknown:
            raise KeyError(f"not fleet members: {', '.join(unknown)}")
        semaphore = asyncio.Semaphore(self.command_concurrency)
        outcomes = await asyncio.gather(
            *(self._command_one(key, wanted, semaphore, quick_readback) for key in chosen)
        )
        return {outcome.key: outcome for outcome in outcomes}

    async def _call(
        self,
        semaphore: asyncio.Semaphore,
        call: Awaitable[_T],
        key: str,
        timeout: float | None = None,
    ) -> _T:
        """One bounded call under the fleet timeout (or a longer one); a timeout is an error."""
        limit = max(self.timeout, timeout or 0.0)
        async with semaphore:
            try:
                async with asyncio.timeout(limit):
                    return await call
            except TimeoutError as err:
                raise DeviceTimeoutError(f"{key} did not answer within {limit:g} s") from err
            except MiningSiteError:
                raise
            except Exception as err:
                # One driver's bug must not stop the fleet.
                raise _driver_failure(key, err) from err

    async def _read_back(
        self, key: str, driver: MinerDriver, semaphore: asyncio.Semaphore, quick: bool
    ) -> tuple[bool, MinerStatus | None]:
        """The miner's mining state now, and its status unless read the quick way."""
        if quick and isinstance(driver, QuickReadback):
            return await self._call(semaphore, driver.read_mining(), key), None
        status = await self._call(semaphore, driver.read_status(), key)
        identity = self._identities.get(key)
        return status.mining, fill_power(status, identity.model if identity else None)

    async def _command_one(
        self, key: str, wanted: bool, semaphore: asyncio.Semaphore, quick: bool
    ) -> CommandOutcome:
        driver = self._drivers[key]
        started = time.monotonic()
        deadline = started + self.confirm_timeout
        send = driver.start_mining if wanted else driver.stop_mining
        attempts = 1
        rejected: MiningSiteError | None = None
        try:
            await self._call(semaphore, send(), key)
        except CommandRejectedError as err:
            # Some firmware refuses a command that changes nothing (pausing a paused
            # miner): the read-back decides.
            rejected = err
        except MiningSiteError as err:
            return CommandOutcome(
                key, CommandResult.FAILED, err, attempts, time.monotonic() - started
            )
        mining: bool | None = None
        status: MinerStatus | None = None
        last_error: MiningSiteError | None = rejected
        while True:
            try:
                mining, status = await self._read_back(key, driver, semaphore, quick)
            except MiningSiteError as err:
                last_error = err
            else:
                if mining is wanted:
                    return CommandOutcome(
                        key,
                        CommandResult.CONFIRMED,
                        None,
                        attempts,
                        time.monotonic() - started,
                        status,
                        mining,
                    )
                if rejected is not None:
                    # Refused, and not already where we wanted it: a plain failure.
                    return CommandOutcome(
                        key,
                        CommandResult.FAILED,
                        rejected,
                        attempts,
                        time.monotonic() - started,
                        status,
                        mining,
                    )
                if attempts == 1:
                    # Drift: the miner is not where we put it. Send once more, at once.
                    attempts += 1
                    try:
                        await self._call(semaphore, send(), key)
                    except MiningSiteError as err:
                        last_error = err
                    continue
            if time.monotonic() + self.confirm_interval >= deadline:
                break
            await asyncio.sleep(self.confirm_interval)
        elapsed = time.monotonic() - started
        if mining is None and last_error is not None:
            return CommandOutcome(key, CommandResult.FAILED, last_error, attempts, elapsed)
        return CommandOutcome(
            key, CommandResult.NOT_CONFIRMED, last_error, attempts, elapsed, status, mining
        )

    # -- pool moves (internet failover) --------------------------------------------

    async def ensure_backup_pool(
        self, backup: PoolConfig, statuses: Mapping[str, MinerStatus]
    ) -> dict[str, PoolMoveOutcome]:
        """Give every miner the backup pool last, after the operator's pools (see pool_moves).

        `statuses` are the latest readings: a miner whose list is already right is
        not contacted and not in the result; the others are written and read back.
        """
        check_backup_pool(backup)
        return await self._ensure_pool_lists(
            lambda pools: with_backup_pool(pools, backup), statuses
        )

    async def ensure_proxy_first(
        self, proxy_url: str, statuses: Mapping[str, MinerStatus]
    ) -> dict[str, PoolMoveOutcome]:
        """Give every miner the site's proxy first, then the operator's pools (proxy mode).

        Like ensure_backup_pool: a miner whose list is already right is not contacted
        and not in the result; the others are written and read back.
        """
        check_backup_pool(PoolConfig(proxy_url, "proxy"))
        return await self._ensure_pool_lists(
            lambda pools: with_proxy_first(pools, proxy_url), statuses
        )

    async def _ensure_pool_lists(
        self, plan: PoolListPlan, statuses: Mapping[str, MinerStatus]
    ) -> dict[str, PoolMoveOutcome]:
        chosen = self._members(statuses)
        for key, status in chosen.items():
            if not isinstance(status, MinerStatus):
                raise TypeError(f"{key}: a MinerStatus is needed, not {type(status).__name__}")
        semaphore = asyncio.Semaphore(self.command_concurrency)
        confirming = Confirming(self.confirm_timeout, self.confirm_interval)
        outcomes = await asyncio.gather(
            *(
                ensure_pool_list(
                    key,
                    self._drivers[key],
                    status,
                    plan,
                    self._bounded_call(semaphore, key),
                    confirming,
                )
                for key, status in chosen.items()
            )
        )
        return {outcome.key: outcome for outcome in outcomes if outcome is not None}

    async def switch_to_pool(self, targets: Mapping[str, str]) -> dict[str, PoolMoveOutcome]:
        """Move each miner (key → pool URL it lists) onto that pool, all at once, read back."""
        chosen = self._members(targets)
        for key, url in chosen.items():
            if not isinstance(url, str) or not url.strip():
                raise ValueError(f"{key}: a pool URL is needed, not {url!r}")
        semaphore = asyncio.Semaphore(self.command_concurrency)
        confirming = Confirming(self.confirm_timeout, self.confirm_interval)
        outcomes = await asyncio.gather(
            *(
                switch_to(
                    key, self._drivers[key], url, self._bounded_call(semaphore, key), confirming
                )
                for key, url in chosen.items()
            )
        )
        return {outcome.key: outcome for outcome in outcomes}

    def _members(self, by_key: Mapping[str, _T]) -> dict[str, _T]:
        """The mapping as a dict, after checking every key is a member."""
        chosen = dict(by_key)
        unknown = [key for key in chosen if key not in self._drivers]
        if unknown:
            raise KeyError(f"not fleet members: {', '.join(unknown)}")
        return chosen

    def _bounded_call(self, semaphore: asyncio.Semaphore, key: str) -> FleetCall:
        """Calls to one member under the fan-out's semaphore and timeout."""

        def bounded(call: Awaitable[_T], timeout: float | None = None) -> Awaitable[_T]:
            return self._call(semaphore, call, key, timeout)

        return bounded
