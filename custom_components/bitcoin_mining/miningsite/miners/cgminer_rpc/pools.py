"""Pool writes as cgminer-based firmware takes them: planned, idempotent, never on the active pool.

cgminer tests a pool added by `addpool` in the background and hashes on it
only once it is alive; `switchpool` changes priorities but never moves to a
dead pool (nor to an idle one before `--fallback-time`); `removepool` of the
pool it hashes on is refused (67). So a pool list is replaced step by step,
each step planned from a fresh `pools` read: add the missing pools, enable and
order the wanted ones, remove the others, except the one the miner hashes on,
which is disabled (cgminer leaves it when it can) and removed by a later call.
A retry plans from what is there: nothing is added twice, the list converges.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
import time
from typing import Any

from ...exceptions import CommandNotConfirmedError, DeviceProtocolError
from ..base import PoolConfig, PoolStatus
from ..values import integer, text
from .client import INVALID_COMMAND, CgminerRpc, RefusedError, require_section
from .readings import current_pool

MAX_POOLS = 3
# 51: cannot disable the last active pool; 67: cannot remove the active pool.
CANNOT_DISABLE_LAST = 51
CANNOT_REMOVE_ACTIVE = 67
# Enough for three adds, three enables, one reordering and a list grown by old retries.
MAX_STEPS = 24
# How often switch_pool reads back while the new pool's connection comes up.
SWITCH_POLL_S = 0.2


def check_pools(pools: Sequence[PoolConfig]) -> None:
    """A pool list a miner can take: one to three distinct pools with a URL each."""
    if not 1 <= len(pools) <= MAX_POOLS:
        raise ValueError(f"a miner takes 1 to {MAX_POOLS} pools, not {len(pools)}")
    for pool in pools:
        if not pool.url.strip():
            raise ValueError("a pool needs a URL")
    if len({(pool.url, pool.user) for pool in pools}) != len(pools):
        raise ValueError("the same pool and user is listed twice")


def front_first(
    pools: Sequence[PoolStatus], index: int, passwords: Mapping[tuple[str, str], str]
) -> list[PoolConfig]:
    """The list with pool `index` first, the others after it by priority, for whole-list writers.

    Firmware never reports passwords: a pool gets the one `passwords` remembers
    for its URL and user (what the driver wrote), else PoolConfig's default.
    """
    if not 0 <= index < len(pools) or not pools[index].url.strip():
        configured = sum(1 for pool in pools if pool.url.strip())
        raise ValueError(f"pool {index} is not configured ({configured} pools on the miner)")
    ranked = sorted(enumerate(pools), key=lambda item: (item[1].priority, item[0]))
    others = [pool for i, pool in ranked if i != index and pool.url.strip()]
    default = PoolConfig("", "").password
    return [
        PoolConfig(pool.url, pool.user, passwords.get((pool.url, pool.user), default))
        for pool in [pools[index], *others]
    ]


def escape_parameter(value: str) -> str:
    r"""Escape a parameter: cgminer splits on commas; `\,` is a comma, `\\` a backslash."""
    return value.replace("\\", "\\\\").replace(",", "\\,")


@dataclass(frozen=True, slots=True)
class ListedPool:
    """One pool of a `pools` reply, as the planner needs it."""

    number: int
    url: str
    user: str
    priority: int
    disabled: bool
    alive: bool
    current: bool

    @property
    def key(self) -> tuple[str, str]:
        """What identifies a pool across renumbering: URL and user."""
        return (self.url, self.user)


def listed_pools(reply: dict[str, Any], where: str) -> list[ListedPool]:
    """The pools of a `pools` reply."""
    entries = require_section(reply, "POOLS", where, "pools")
    current = current_pool(entries)
    listed = []
    for index, entry in enumerate(entries):
        number = integer(entry.get("POOL"))
        if number is None:
            raise DeviceProtocolError(f"{where} listed a pool without a POOL number")
        priority = integer(entry.get("Priority"))
        state = str(entry.get("Status", "")).strip().lower()
        listed.append(
            ListedPool(
                number=number,
                url=text(entry.get("URL")) or "",
                user=text(entry.get("User")) or "",
                priority=priority if priority is not None else index,
                disabled=state == "disabled",
                alive=state == "alive",
                current=index == current,
            )
        )
    return listed


@dataclass(frozen=True, slots=True)
class Step:
    """One write of a pool plan."""

    action: str  # add, enable, order, disable, remove
    numbers: tuple[int, ...] = ()
    pool: PoolConfig | None = None
    key: tuple[str, str] = ("", "")


def match_pools(
    listed: Sequence[ListedPool], wanted: Sequence[PoolConfig]
) -> list[ListedPool | None]:
    """For each wanted pool, the listed one that is it (enabled and highest first), or None."""
    taken: set[int] = set()
    matched: list[ListedPool | None] = []
    for pool in wanted:
        candidates = sorted(
            (p for p in listed if p.key == (pool.url, pool.user) and p.number not in taken),
            key=lambda p: (p.disabled, p.priority, p.number),
        )
        found = candidates[0] if candidates else None
        if found is not None:
            taken.add(found.number)
        matched.append(found)
    return matched


def next_step(
    listed: Sequence[ListedPool], wanted: Sequence[PoolConfig], held: set[tuple[str, str]]
) -> Step | None:
    """What to write next to turn `listed` into `wanted`; None once it is done.

    `held`: unwanted pools left for a later call (the miner hashes on them).
    """
    matched = match_pools(listed, wanted)
    for config, found in zip(wanted, matched, strict=True):
        if found is None:
            return Step("add", pool=config, key=(config.url, config.user))
    present = [found for found in matched if found is not None]
    for found in present:
        if found.disabled:
            return Step("enable", (found.number,), key=found.key)
    top = sorted(listed, key=lambda p: (p.priority, p.number))[: len(present)]
    if [p.number for p in top] != [p.number for p in present]:
        return Step("order", tuple(p.number for p in present))
    keep = {p.number for p in present}
    for pool in sorted(listed, key=lambda p: p.number, reverse=True):
        if pool.number in keep or pool.key in held:
            continue
        if pool.current:
            return Step("disable", (pool.number,), key=pool.key)
        return Step("remove", (pool.number,), key=pool.key)
    return None


async def replace_pools(rpc: CgminerRpc, pools: Sequence[PoolConfig]) -> None:
    """Make the miner's pool list `pools`, in that order, step by step (see the module).

    Returns when the list is the wanted one, apart from a pool the miner still
    hashes on: that one is disabled now and removed by the next call.
    """
    check_pools(pools)
    held: set[tuple[str, str]] = set()
    added: set[tuple[str, str]] = set()
    ordered = False
    for _ in range(MAX_STEPS):
        step = next_step(listed_pools(await rpc.call("pools"), rpc.where), pools, held)
        if step is None:
            return
        if step.action == "add":
            assert step.pool is not None
            if step.key in added:
                raise DeviceProtocolError(
                    f"{rpc.where} accepted addpool but does not list the pool"
                )
            added.add(step.key)
            parts = (step.pool.url, step.pool.user, step.pool.password)
            await rpc.call("addpool", ",".join(escape_parameter(part) for part in parts))
        elif step.action == "enable":
            await rpc.call("enablepool", str(step.numbers[0]))
        elif step.action == "order":
            if ordered:
                raise DeviceProtocolError(f"{rpc.where} did not take the pool order")
            ordered = True
            await _order(rpc, step.numbers)
        elif step.action == "disable":
            held.add(step.key)
            await _disable(rpc, step.numbers[0])
        else:
            try:
                await rpc.call("removepool", str(step.numbers[0]))
            except RefusedError as err:
                # The miner hashes on it after all (our read was a moment old).
                if err.code != CANNOT_REMOVE_ACTIVE:
                    raise
                held.add(step.key)
                await _disable(rpc, step.numbers[0])
    raise DeviceProtocolError(f"{rpc.where}: the pool list did not settle in {MAX_STEPS} steps")


async def _order(rpc: CgminerRpc, numbers: Sequence[int]) -> None:
    """Give these pools the top priorities in this order (`poolpriority`, else `switchpool`s)."""
    try:
        await rpc.call("poolpriority", ",".join(str(number) for number in numbers))
    except RefusedError as err:
        if err.code != INVALID_COMMAND:
            raise
        # A firmware without poolpriority: each switchpool puts one pool on top.
        for number in reversed(numbers):
            await rpc.call("switchpool", str(number))


async def _disable(rpc: CgminerRpc, number: int) -> None:
    """Disable a pool the miner hashes on; it stays when it is the last one enabled."""
    try:
        await rpc.call("disablepool", str(number))
    except RefusedError as err:
        if err.code != CANNOT_DISABLE_LAST:
            raise


async def switch_pool(rpc: CgminerRpc, index: int) -> None:
    """`switchpool|N`, confirmed by reading pool N back as the one hashed on.

    cgminer answers success and still stays where it is when pool N is dead, or
    idle before `--fallback-time`: that is CommandNotConfirmedError, saying why.
    """
    if index < 0:
        raise ValueError(f"pool index must be >= 0, not {index}")
    await rpc.call("switchpool", str(index))
    deadline = time.monotonic() + rpc.timeout
    while True:
        listed = listed_pools(await rpc.call("pools"), rpc.where)
        target = next((pool for pool in listed if pool.number == index), None)
        if target is not None and target.current:
            return
        if time.monotonic() >= deadline or target is None or not target.alive:
            break
        await asyncio.sleep(SWITCH_POLL_S)
    current = next((pool for pool in listed if pool.current), None)
    on = f"pool {current.number}" if current is not None else "no pool"
    if target is None:
        why = "it no longer lists that pool"
    elif not target.alive:
        why = "the pool is not alive (cgminer never switches to a dead pool; it has priority now)"
    else:
        why = "cgminer moves to a new pool once it has been stable for --fallback-time"
    raise CommandNotConfirmedError(f"{rpc.where} still hashes on {on}, not pool {index}: {why}")
