"""Pool moves for internet failover: the site's pool on every miner, and switching pools.

In backup-pool mode every miner should list the operator's pools first, in the
operator's order, and the site's local pool last, as a backup: then firmware failover
lands on it even with Home Assistant down (`with_backup_pool`). In proxy mode the
site's proxy comes first, under the miner's own worker name, and the operator's pools
after it: the proxy relays to the upstream pool, and a proxy that is gone costs one
firmware failover onto the miner's own pool (`with_proxy_first`). Neither plan ever
drops or reorders an operator pool (a list the operator has filled is
PoolListFullError). Firmware echoes URLs in different shapes, so pools are compared
with `same_pool_url`.

Passwords: no firmware reports them, so a planned list carries the PoolConfig
default ("x") for the operator's pools. What a write does with them per family:
- generic CGMiner and LuxOS add and remove single pools (`addpool`, `removepool`,
  `poolpriority`) and never rewrite a pool they list: an operator pool keeps its
  password, only the backup is added with its own;
- Antminer stock writes its whole conf, which carries each pool's `pass`: the
  driver keeps the password it read for the same URL and user;
- Braiins OS writes whole pool groups: the driver sends a pool it already lists
  by its `uid`, without a password, so the firmware keeps the stored one;
- Whatsminer API v2 (`update_pools`) and v3 (`set.miner.pools`) only write whole
  lists with a password per slot and never report one: a rewrite gives each
  operator pool the password the driver wrote for it earlier, else "x" (what pools
  that identify miners by worker name expect). An operator who puts settings in a
  Whatsminer pool password (`d=...`) must set them again after the backup is added.

A switch is confirmed only by reading back: the pool is the active one, alive, and
the miner hashes (cgminer answers `switchpool` at once and moves only to a live,
tested pool; so when it answered without moving, the switch is sent once more as
soon as the pool reads alive). A sleeping miner cannot hash: it is confirmed once the
pool has the top priority, so that it wakes onto it (a cgminer that did not move
also needs the pool alive and the switch sent again). Never more than two sends.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
import time
from typing import Protocol, TypeVar
from urllib.parse import urlsplit

from ..exceptions import (
    CommandNotConfirmedError,
    MiningSiteError,
    NoOperatorPoolError,
    PoolListFullError,
    PoolNotListedError,
)
from .base import MinerDriver, MinerStatus, PoolConfig, PoolStatus
from .outcomes import CommandResult

_T = TypeVar("_T")

# Every family takes at most three pools.
MAX_POOLS = 3
DEFAULT_SCHEME = "stratum+tcp"


def _url_key(url: str) -> tuple[str, str, str] | None:
    """Scheme, host[:port] and path of a pool URL, normalized; None for an empty one."""
    text = url.strip()
    scheme, separator, rest = text.partition("://")
    if not separator:
        scheme, rest = DEFAULT_SCHEME, text
    host, _, path = rest.rstrip("/").partition("/")
    if not host:
        return None
    return scheme.lower(), host.lower(), path


def same_pool_url(a: str, b: str) -> bool:
    """Whether two pool URLs name the same pool (scheme and host case, prefix, slash aside)."""
    if not isinstance(a, str) or not isinstance(b, str):
        raise TypeError(f"pool URLs must be strings, not {type(a).__name__}, {type(b).__name__}")
    key = _url_key(a)
    return key is not None and key == _url_key(b)


def check_backup_pool(backup: PoolConfig) -> None:
    """A backup pool a miner can take: a URL with host and port, and a worker name."""
    if not isinstance(backup, PoolConfig):
        raise TypeError(f"the backup pool must be a PoolConfig, not {type(backup).__name__}")
    url = backup.url.strip()
    if not url or any(char.isspace() for char in url):
        raise ValueError(f"the backup pool needs a URL without spaces, not {backup.url!r}")
    try:
        parts = urlsplit(url if "://" in url else f"{DEFAULT_SCHEME}://{url}")
        port = parts.port
    except ValueError as err:
        raise ValueError(f"the backup pool URL {backup.url!r} does not parse: {err}") from err
    if not parts.hostname or port is None:
        raise ValueError(f"the backup pool URL {backup.url!r} needs a host and a port")
    if not backup.user.strip():
        raise ValueError("the backup pool needs a worker name")


def _by_priority(pools: Sequence[PoolStatus]) -> list[PoolStatus]:
    """The configured pools (an empty slot is none), highest priority first."""
    for pool in pools:
        if not isinstance(pool, PoolStatus):
            raise TypeError(f"pools must be PoolStatus, not {type(pool).__name__}")
    ordered = sorted(enumerate(pools), key=lambda item: (item[1].priority, item[0]))
    return [pool for _, pool in ordered if pool.url.strip()]


def _same(listed: PoolStatus | PoolConfig, wanted: PoolStatus | PoolConfig) -> bool:
    return listed.user == wanted.user and same_pool_url(listed.url, wanted.url)


def lists_pools(pools: Sequence[PoolStatus], wanted: Sequence[PoolConfig]) -> bool:
    """Whether a miner lists exactly these pools (URL and user), in this priority order."""
    listed = _by_priority(pools)
    return len(listed) == len(wanted) and all(
        _same(pool, config) for pool, config in zip(listed, wanted, strict=True)
    )


def with_backup_pool(pools: Sequence[PoolStatus], backup: PoolConfig) -> list[PoolConfig] | None:
    """The list a miner should have: its operator pools in its order, then the backup.

    None when the miner lists exactly that already. A backup listed twice or
    before an operator pool becomes one entry, last; an operator pool listed twice
    (a list grown by failed writes) is kept once. PoolListFullError when the
    operator's pools leave no slot for the backup.
    """
    check_backup_pool(backup)
    operators: list[PoolStatus] = []
    for pool in _by_priority(pools):
        if same_pool_url(pool.url, backup.url):
            continue
        if not any(_same(pool, kept) for kept in operators):
            operators.append(pool)
    if len(operators) >= MAX_POOLS:
        raise PoolListFullError([pool.url for pool in operators], backup.url, MAX_POOLS)
    wanted = [PoolConfig(pool.url, pool.user) for pool in operators] + [backup]
    return None if lists_pools(pools, wanted) else wanted


def with_proxy_first(pools: Sequence[PoolStatus], proxy_url: str) -> list[PoolConfig] | None:
    """The list a miner should have in proxy mode: the site's proxy first, then its pools.

    The proxy relays each miner upstream under the worker name the miner gives it, so
    its entry carries the worker name of the miner's first operator pool: the upstream
    pool sees the same workers as without a proxy, and a miner whose firmware gives the
    proxy up (Home Assistant down) hashes on its own pool next. None when the miner
    lists exactly that already. The proxy listed anywhere else (or twice, or as a backup
    with another worker name) becomes the one first entry; operator pools keep their
    order and are never dropped: PoolListFullError when they leave no slot,
    NoOperatorPoolError when there is none.
    """
    check_backup_pool(PoolConfig(proxy_url, "proxy"))
    operators: list[PoolStatus] = []
    for pool in _by_priority(pools):
        if same_pool_url(pool.url, proxy_url):
            continue
        if not any(_same(pool, kept) for kept in operators):
            operators.append(pool)
    if not operators:
        raise NoOperatorPoolError(proxy_url)
    if len(operators) >= MAX_POOLS:
        raise PoolListFullError(
            [pool.url for pool in operators], proxy_url, MAX_POOLS, role="proxy"
        )
    proxy = PoolConfig(proxy_url, operators[0].user)
    wanted = [proxy, *(PoolConfig(pool.url, pool.user) for pool in operators)]
    return None if lists_pools(pools, wanted) else wanted


def pool_index(pools: Sequence[PoolStatus], url: str) -> int | None:
    """Where the pool with this URL is in the miner's list (the highest priority one), or None.

    The index is what each driver's switch_pool takes: the position in the list
    read_status reports (cgminer's POOL number, Antminer's slot, Braiins across
    groups, Whatsminer's slot counted from 0).
    """
    found = [(pool.priority, i) for i, pool in enumerate(pools) if same_pool_url(pool.url, url)]
    return min(found)[1] if found else None


def _top(pools: Sequence[PoolStatus]) -> PoolStatus | None:
    listed = _by_priority(pools)
    return listed[0] if listed else None


def hashes_on(status: MinerStatus, url: str) -> bool:
    """Whether a miner works on this pool: active, alive and hashing; asleep, first in line."""
    if not status.mining:
        top = _top(status.pools)
        return top is not None and same_pool_url(top.url, url)
    active = status.active_pool
    return (
        active is not None
        and active.alive
        and same_pool_url(active.url, url)
        and (status.hashrate_ths or 0) > 0
    )


def why_not_on(status: MinerStatus, url: str) -> str:
    """Why a reading does not show the miner working on this pool."""
    index = pool_index(status.pools, url)
    if index is None:
        return "the pool is no longer listed"
    top = _top(status.pools)
    if top is None or not same_pool_url(top.url, url):
        return "the pool did not get the top priority"
    if not status.mining:
        return "the miner is not mining"
    if not status.pools[index].alive:
        return "the pool is not alive (firmware never moves to a dead pool)"
    active = status.active_pool
    if active is None or not same_pool_url(active.url, url):
        where = active.url if active is not None else "no pool"
        return f"the miner still works on {where}"
    return "the miner reports no hashrate"


@dataclass(frozen=True, slots=True)
class PoolMoveOutcome:
    """One miner's pool move: result, the error if any, and the last reading."""

    key: str
    result: CommandResult
    error: MiningSiteError | None
    elapsed_s: float
    status: MinerStatus | None

    @property
    def confirmed(self) -> bool:
        """Whether the read-back showed the move done."""
        return self.result is CommandResult.CONFIRMED


class FleetCall(Protocol):
    """One call to a miner, bounded like every fleet call (a timeout longer than the fleet's)."""

    def __call__(self, call: Awaitable[_T], timeout: float | None = None) -> Awaitable[_T]:
        """The call's result; its failure as a library error."""


@dataclass(frozen=True, slots=True)
class Confirming:
    """How long a move may take to show, and how often it is read back meanwhile."""

    timeout_s: float
    interval_s: float


# A miner's planned pool list from the pools it reports (None: it has it already); a
# plan that cannot be made raises (PoolListFullError, NoOperatorPoolError).
PoolListPlan = Callable[[Sequence[PoolStatus]], list[PoolConfig] | None]


async def ensure_pool_list(
    key: str,
    driver: MinerDriver,
    status: MinerStatus,
    plan: PoolListPlan,
    call: FleetCall,
    confirming: Confirming,
) -> PoolMoveOutcome | None:
    """Give one miner its planned pool list, confirmed by reading back; None if it had it."""
    try:
        wanted = plan(status.pools)
    except (PoolListFullError, NoOperatorPoolError) as err:
        return PoolMoveOutcome(key, CommandResult.FAILED, err, 0.0, status)
    if wanted is None:
        return None
    return await write_pool_list(key, driver, status, wanted, call, confirming)


async def write_pool_list(
    key: str,
    driver: MinerDriver,
    status: MinerStatus,
    wanted: list[PoolConfig],
    call: FleetCall,
    confirming: Confirming,
) -> PoolMoveOutcome:
    """Write one miner's planned pool list, confirmed when it reads back listing it."""
    started = time.monotonic()
    deadline = started + confirming.timeout_s

    def outcome(
        result: CommandResult, error: MiningSiteError | None, reading: MinerStatus | None
    ) -> PoolMoveOutcome:
        return PoolMoveOutcome(key, result, error, time.monotonic() - started, reading)

    try:
        # A planned write (cgminer's) takes several round trips: the whole budget, at least.
        await call(driver.set_pools(wanted), deadline - time.monotonic())
    except MiningSiteError as err:
        return outcome(CommandResult.FAILED, err, status)
    last_error: MiningSiteError | None = None
    while True:
        try:
            status = await call(driver.read_status())
        except MiningSiteError as err:
            last_error = err
        else:
            last_error = None
            if lists_pools(status.pools, wanted):
                return outcome(CommandResult.CONFIRMED, None, status)
        if time.monotonic() + confirming.interval_s >= deadline:
            break
        await asyncio.sleep(confirming.interval_s)
    if last_error is None:
        listed = ", ".join(f"{p.url} ({p.user})" for p in _by_priority(status.pools)) or "none"
        last_error = CommandNotConfirmedError(
            f"{key} lists {listed} after {confirming.timeout_s} s, not the pools written"
        )
    return outcome(CommandResult.NOT_CONFIRMED, last_error, status)


async def switch_to(
    key: str, driver: MinerDriver, url: str, call: FleetCall, confirming: Confirming
) -> PoolMoveOutcome:
    """Move one miner to a pool it lists, confirmed by reading it back working there."""
    started = time.monotonic()
    deadline = started + confirming.timeout_s

    def outcome(
        result: CommandResult, error: MiningSiteError | None, reading: MinerStatus | None
    ) -> PoolMoveOutcome:
        return PoolMoveOutcome(key, result, error, time.monotonic() - started, reading)

    try:
        status = await call(driver.read_status())
    except MiningSiteError as err:
        return outcome(CommandResult.FAILED, err, None)
    if hashes_on(status, url):
        return outcome(CommandResult.CONFIRMED, None, status)
    sends = 0
    # Send now: the first time, or once more when a read-back shows the first did not
    # take (the pool not even first in line), or that cgminer did not move while the
    # pool was still under test and it is alive now (it would wait --fallback-time).
    resend = True
    # The firmware answered the switch without moving (cgminer's switch_pool says so).
    unmoved = False
    last_error: MiningSiteError | None = None
    while True:
        index = pool_index(status.pools, url)
        if index is None:
            return outcome(CommandResult.FAILED, PoolNotListedError(key, url), status)
        if resend and sends < 2:
            sends += 1
            unmoved = False
            try:
                # cgminer families confirm inside switch_pool: the whole budget, at least.
                await call(driver.switch_pool(index), deadline - time.monotonic())
            except CommandNotConfirmedError as err:
                last_error, unmoved = err, True  # sent; the firmware has not moved yet
            except MiningSiteError as err:
                return outcome(CommandResult.FAILED, err, status)
        resend = False
        try:
            status = await call(driver.read_status())
        except MiningSiteError as err:
            last_error = err
        else:
            top = _top(status.pools)
            first = top is not None and same_pool_url(top.url, url)
            found = pool_index(status.pools, url)
            if unmoved and sends < 2 and found is not None and status.pools[found].alive:
                # Alive now, and cgminer keeps a connection to a better pool it does not
                # use, so the reading may name it: send again rather than believe it.
                resend = True
                continue
            # Asleep, first in line is enough, unless cgminer said it did not move.
            if hashes_on(status, url) and not (unmoved and not status.mining):
                return outcome(CommandResult.CONFIRMED, None, status)
            resend = not first
            last_error = CommandNotConfirmedError(
                f"{key} does not work on {url}: {why_not_on(status, url)}"
            )
        if time.monotonic() + confirming.interval_s >= deadline:
            break
        await asyncio.sleep(confirming.interval_s)
    return outcome(CommandResult.NOT_CONFIRMED, last_error, status)
