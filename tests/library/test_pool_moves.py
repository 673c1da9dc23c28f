"""Pool moves for internet failover: the backup pool on every miner, switching pools.

The planning rules are pure; the fleet's moves run over real loopback sockets
against the simulator's miners of all six families, which are real Stratum clients
of their active pool (the site's upstream pool, a LocalPool, or nothing at all).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Sequence
import contextlib
from dataclasses import replace
from typing import Any

import aiohttp
import pytest

from custom_components.bitcoin_mining.miningsite.exceptions import (
    CommandNotConfirmedError,
    DeviceAuthError,
    MiningSiteError,
    NoOperatorPoolError,
    PoolListFullError,
    PoolNotListedError,
)
from custom_components.bitcoin_mining.miningsite.miners.base import (
    Credentials,
    MinerDriver,
    MinerEndpoint,
    MinerIdentity,
    MinerStatus,
    PoolConfig,
    PoolStatus,
)
from custom_components.bitcoin_mining.miningsite.miners.fleet import (
    CommandResult,
    Fleet,
    driver_for,
)
from custom_components.bitcoin_mining.miningsite.miners.pool_moves import (
    PoolMoveOutcome,
    hashes_on,
    lists_pools,
    pool_index,
    same_pool_url,
    why_not_on,
    with_backup_pool,
    with_proxy_first,
)
from custom_components.bitcoin_mining.miningsite.stratum import (
    LocalPool,
    PoolConfig as LocalPoolConfig,
    VardiffConfig,
)
from devtools.steps import poll_until
from simulator import Site
from simulator.miners import SimMiner
from simulator.miners.model import PUBLIC_POOLS
from tests.simulator.test_miners_helpers import running_site
from tests.support.modbus_meter import free_port

A = "stratum+tcp://btc.example-pool.com:3333"
B = "stratum+tcp://btc-backup.example-pool.com:3333"
C = "stratum+tcp://third.example-pool.com:3333"
LOCAL = "stratum+tcp://192.168.1.10:3333"
BACKUP = PoolConfig(LOCAL, "site.backup", "local-pw")


def listed(*pools: tuple[str, str], active: int | None = None) -> tuple[PoolStatus, ...]:
    """Pools as a miner reports them, in priority order."""
    return tuple(
        PoolStatus(url, user, alive=True, active=i == active, priority=i)
        for i, (url, user) in enumerate(pools)
    )


# -- same_pool_url ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("stratum+tcp://pool.example:3333", "stratum+tcp://pool.example:3333"),
        ("STRATUM+TCP://pool.example:3333", "stratum+tcp://pool.example:3333"),
        ("pool.example:3333", "stratum+tcp://pool.example:3333"),
        ("stratum+tcp://pool.example:3333/", "stratum+tcp://pool.example:3333"),
        ("stratum+tcp://POOL.Example:3333", "pool.example:3333/"),
        ("  stratum+tcp://pool.example:3333 ", "stratum+tcp://pool.example:3333"),
        ("stratum+tcp://192.168.1.10:3333", "192.168.1.10:3333"),
    ],
)
def test_the_same_pool_in_other_shapes(a: str, b: str) -> None:
    assert same_pool_url(a, b)
    assert same_pool_url(b, a)


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("stratum+tcp://pool.example:3333", "stratum+tcp://pool.example:3334"),
        ("stratum+tcp://pool.example:3333", "stratum+tcp://other.example:3333"),
        ("stratum+ssl://pool.example:3333", "stratum+tcp://pool.example:3333"),
        ("stratum+tcp://pool.example", "stratum+tcp://pool.example:3333"),
        ("stratum+tcp://pool.example:3333/a", "stratum+tcp://pool.example:3333/b"),
        # An empty slot names no pool, not even another empty slot.
        ("", ""),
        ("   ", "stratum+tcp://pool.example:3333"),
        ("stratum+tcp://", "stratum+tcp://"),
    ],
)
def test_different_pools(a: str, b: str) -> None:
    assert not same_pool_url(a, b)


def test_same_pool_url_takes_strings_only() -> None:
    with pytest.raises(TypeError, match="must be strings"):
        same_pool_url(None, A)  # type: ignore[arg-type]


# -- with_backup_pool -------------------------------------------------------------------------


def test_the_backup_is_added_last_after_the_operator_pools() -> None:
    wanted = with_backup_pool(listed((A, "w.1"), (B, "w.2")), BACKUP)
    assert wanted == [PoolConfig(A, "w.1"), PoolConfig(B, "w.2"), BACKUP]
    # Operator pools carry the default password: firmware never reports theirs (see
    # the module: each family's write keeps it where the firmware allows).
    assert wanted is not None
    assert [pool.password for pool in wanted] == ["x", "x", "local-pw"]
    assert with_backup_pool((), BACKUP) == [BACKUP]


def test_the_operator_order_is_the_miners_priority_order() -> None:
    pools = (
        PoolStatus(B, "w.2", alive=True, active=False, priority=1),
        PoolStatus(A, "w.1", alive=True, active=True, priority=0),
        PoolStatus("", "", alive=False, active=False, priority=2),  # an empty slot
    )
    assert with_backup_pool(pools, BACKUP) == [PoolConfig(A, "w.1"), PoolConfig(B, "w.2"), BACKUP]


def test_a_list_that_is_right_already_needs_nothing() -> None:
    assert with_backup_pool(listed((A, "w.1"), (B, "w.2"), (LOCAL, "site.backup")), BACKUP) is None
    # Echoed by the firmware in another shape: still the backup.
    echoed = listed((A, "w.1"), ("192.168.1.10:3333/", "site.backup"))
    assert with_backup_pool(echoed, BACKUP) is None
    assert with_backup_pool(listed((LOCAL, "site.backup")), BACKUP) is None


def test_a_backup_first_or_twice_becomes_one_entry_last() -> None:
    first = listed((LOCAL, "site.backup"), (A, "w.1"), (B, "w.2"))
    assert with_backup_pool(first, BACKUP) == [PoolConfig(A, "w.1"), PoolConfig(B, "w.2"), BACKUP]
    twice = listed((LOCAL, "site.backup"), (A, "w.1"), ("192.168.1.10:3333", "site.backup"))
    assert with_backup_pool(twice, BACKUP) == [PoolConfig(A, "w.1"), BACKUP]
    # Listed with another worker name: written again as the backup.
    other_user = listed((A, "w.1"), (LOCAL, "someone"))
    assert with_backup_pool(other_user, BACKUP) == [PoolConfig(A, "w.1"), BACKUP]


def test_an_operator_pool_listed_twice_is_kept_once() -> None:
    grown = listed((A, "w.1"), (B, "w.2"), (A, "w.1"), (LOCAL, "site.backup"))
    assert with_backup_pool(grown, BACKUP) == [PoolConfig(A, "w.1"), PoolConfig(B, "w.2"), BACKUP]
    # The same URL with another worker is another pool of the operator's.
    assert with_backup_pool(listed((A, "w.1"), (A, "w.9")), BACKUP) == [
        PoolConfig(A, "w.1"),
        PoolConfig(A, "w.9"),
        BACKUP,
    ]


def test_three_operator_pools_leave_no_slot() -> None:
    for pools in (
        listed((A, "w.1"), (B, "w.2"), (C, "w.3")),
        listed((A, "w.1"), (LOCAL, "site.backup"), (B, "w.2"), (C, "w.3")),
    ):
        with pytest.raises(PoolListFullError) as err:
            with_backup_pool(pools, BACKUP)
        assert isinstance(err.value, MiningSiteError)
        assert err.value.operator_urls == [A, B, C]
        assert err.value.backup_url == LOCAL
        assert "no slot is left for the backup pool" in str(err.value)
        assert A in str(err.value)


# -- with_proxy_first (proxy mode) ------------------------------------------------------------


def test_the_proxy_goes_first_as_the_miners_own_worker() -> None:
    # The upstream pool sees the worker it always saw; the operator's pools follow.
    assert with_proxy_first(listed((A, "w.1"), (B, "w.2")), LOCAL) == [
        PoolConfig(LOCAL, "w.1"),
        PoolConfig(A, "w.1"),
        PoolConfig(B, "w.2"),
    ]
    assert with_proxy_first(listed((LOCAL, "w.1"), (A, "w.1"), (B, "w.2")), LOCAL) is None
    # Echoed in another shape: still the proxy.
    assert with_proxy_first(listed(("192.168.1.10:3333/", "w.1"), (A, "w.1")), LOCAL) is None


def test_a_backup_of_backup_pool_mode_becomes_the_proxy_entry() -> None:
    # Last as the site's backup (another worker name): moved first, as the miner's worker.
    backup_mode = listed((A, "w.1"), (B, "w.2"), (LOCAL, "site.backup"))
    assert with_proxy_first(backup_mode, LOCAL) == [
        PoolConfig(LOCAL, "w.1"),
        PoolConfig(A, "w.1"),
        PoolConfig(B, "w.2"),
    ]
    # And back: backup-pool mode plans the operator's pools first again.
    proxy_mode = listed((LOCAL, "w.1"), (A, "w.1"), (B, "w.2"))
    assert with_backup_pool(proxy_mode, BACKUP) == [
        PoolConfig(A, "w.1"),
        PoolConfig(B, "w.2"),
        BACKUP,
    ]
    # Listed twice, or with another worker: one first entry.
    twice = listed((A, "w.1"), (LOCAL, "w.1"), ("192.168.1.10:3333", "other"))
    assert with_proxy_first(twice, LOCAL) == [PoolConfig(LOCAL, "w.1"), PoolConfig(A, "w.1")]


def test_a_miner_without_an_operator_pool_or_a_full_list_is_refused() -> None:
    for pools in ((), listed((LOCAL, "w.1"))):
        with pytest.raises(NoOperatorPoolError) as missing:
            with_proxy_first(pools, LOCAL)
        assert missing.value.proxy_url == LOCAL
        assert "lists no pool of the operator's" in str(missing.value)
    with pytest.raises(PoolListFullError) as full:
        with_proxy_first(listed((A, "w.1"), (B, "w.2"), (C, "w.3")), LOCAL)
    assert "no slot is left for the proxy" in str(full.value)
    assert full.value.operator_urls == [A, B, C]
    with pytest.raises(ValueError, match="needs a host and a port"):
        with_proxy_first(listed((A, "w.1")), "stratum+tcp://192.168.1.10")


@pytest.mark.parametrize(
    ("backup", "message"),
    [
        (PoolConfig("", "w"), "needs a URL"),
        (PoolConfig("   ", "w"), "needs a URL"),
        (PoolConfig("stratum+tcp://host :3333", "w"), "without spaces"),
        (PoolConfig("stratum+tcp://192.168.1.10", "w"), "needs a host and a port"),
        (PoolConfig("stratum+tcp://:3333", "w"), "needs a host and a port"),
        (PoolConfig("stratum+tcp://host:port", "w"), "does not parse"),
        (PoolConfig("stratum+tcp://host:99999", "w"), "does not parse"),
        (PoolConfig(LOCAL, ""), "needs a worker name"),
        (PoolConfig(LOCAL, "  "), "needs a worker name"),
    ],
)
def test_a_bad_backup_pool_is_refused(backup: PoolConfig, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        with_backup_pool(listed((A, "w.1")), backup)


def test_bad_arguments_are_type_errors() -> None:
    with pytest.raises(TypeError, match="must be a PoolConfig"):
        with_backup_pool((), LOCAL)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="must be PoolStatus"):
        with_backup_pool([{"url": A}], BACKUP)  # type: ignore[list-item]


def test_lists_pools_compares_url_user_and_order() -> None:
    wanted = [PoolConfig(A, "w.1"), BACKUP]
    assert lists_pools(listed((A.upper(), "w.1"), (LOCAL + "/", "site.backup")), wanted)
    assert not lists_pools(listed((LOCAL, "site.backup"), (A, "w.1")), wanted)
    assert not lists_pools(listed((A, "w.2"), (LOCAL, "site.backup")), wanted)
    assert not lists_pools(listed((A, "w.1")), wanted)


# -- what a reading says about a pool ---------------------------------------------------------


def test_hashing_on_a_pool_means_active_alive_and_hashrate() -> None:
    pools = listed((LOCAL, "site.backup"), (A, "w.1"), active=0)
    status = MinerStatus(mining=True, hashrate_ths=100.0, pools=pools)
    assert hashes_on(status, "192.168.1.10:3333")
    assert not hashes_on(status, A)
    assert not hashes_on(replace(status, hashrate_ths=0.0), LOCAL)
    assert "no hashrate" in why_not_on(replace(status, hashrate_ths=0.0), LOCAL)
    dead = (replace(pools[0], alive=False), pools[1])
    assert not hashes_on(replace(status, pools=dead), LOCAL)
    assert "not alive" in why_not_on(replace(status, pools=dead), LOCAL)
    # Flagged but elsewhere: cgminer keeps a connection to a pool it does not use.
    elsewhere = listed((LOCAL, "site.backup"), (A, "w.1"), active=1)
    assert "still works on " + A in why_not_on(replace(status, pools=elsewhere), LOCAL)
    assert "no longer listed" in why_not_on(status, B)
    assert "top priority" in why_not_on(status, A)


def test_a_sleeping_miner_is_on_the_pool_first_in_line() -> None:
    asleep = MinerStatus(mining=False, pools=listed((LOCAL, "site.backup"), (A, "w.1")))
    assert hashes_on(asleep, LOCAL)
    assert not hashes_on(asleep, A)
    assert not hashes_on(MinerStatus(mining=False), LOCAL)


def test_pool_index_is_the_position_in_the_miners_list() -> None:
    pools = (
        PoolStatus(A, "w.1", alive=True, active=True, priority=1),
        PoolStatus(LOCAL, "site.backup", alive=True, active=False, priority=2),
        PoolStatus(LOCAL, "other", alive=True, active=False, priority=0),
    )
    assert pool_index(pools, A) == 0
    assert pool_index(pools, "192.168.1.10:3333") == 2  # the higher priority of the two
    assert pool_index(pools, B) is None


def test_an_outcome_is_confirmed_only_when_confirmed() -> None:
    assert PoolMoveOutcome("m", CommandResult.CONFIRMED, None, 0.1, None).confirmed
    failed = PoolMoveOutcome("m", CommandResult.FAILED, PoolNotListedError("m", A), 0.1, None)
    assert not failed.confirmed
    assert str(failed.error) == f"m does not list pool {A}"


# -- the fleet's moves: argument checks --------------------------------------------------------


async def test_fleet_moves_check_their_arguments() -> None:
    fleet = Fleet({"m": driver_for("cgminer", MinerEndpoint("127.0.0.1", 1))})
    status = MinerStatus(mining=True)
    with pytest.raises(KeyError, match="not fleet members: x"):
        await fleet.ensure_backup_pool(BACKUP, {"x": status})
    with pytest.raises(ValueError, match="needs a URL"):
        await fleet.ensure_backup_pool(PoolConfig("", "w"), {"m": status})
    with pytest.raises(TypeError, match="m: a MinerStatus is needed"):
        await fleet.ensure_backup_pool(BACKUP, {"m": DeviceAuthError("no")})  # type: ignore[dict-item]
    with pytest.raises(KeyError, match="not fleet members: x"):
        await fleet.switch_to_pool({"x": LOCAL})
    with pytest.raises(ValueError, match="m: a pool URL is needed"):
        await fleet.switch_to_pool({"m": " "})
    assert await fleet.ensure_backup_pool(BACKUP, {}) == {}
    assert await fleet.switch_to_pool({}) == {}


# -- over the simulator: all six families -------------------------------------------------------

MIX = "whatsminer=1,whatsminer_v3=1,antminer=1,luxos=1,braiins=1,cgminer=1"
# Quick shares and jobs, so that sessions show work within a second.
QUICK = {"share_interval_s": 0.1, "job_interval_s": 0.2}
# Families whose pool writes keep an operator pool's password (see pool_moves).
KEEP_PASSWORDS = {"cgminer", "luxos", "antminer", "braiins"}
TINY = 2.0**-24


class Counted(MinerDriver):
    """A real driver, with its pool writes counted (to see who was contacted)."""

    family = "cgminer"  # unused by the fleet's pool moves

    def __init__(self, inner: MinerDriver) -> None:
        super().__init__(inner.endpoint, session=inner.session, timeout=inner.timeout)
        self.inner = inner
        self.reads = 0
        self.set_pools_calls: list[list[PoolConfig]] = []
        self.switches: list[int] = []

    async def identify(self) -> MinerIdentity:
        return await self.inner.identify()

    async def read_status(self) -> MinerStatus:
        self.reads += 1
        return await self.inner.read_status()

    async def stop_mining(self) -> None:
        await self.inner.stop_mining()

    async def start_mining(self) -> None:
        await self.inner.start_mining()

    async def set_pools(self, pools: Sequence[PoolConfig]) -> None:
        self.set_pools_calls.append(list(pools))
        await self.inner.set_pools(pools)

    async def switch_pool(self, index: int) -> None:
        self.switches.append(index)
        await self.inner.switch_pool(index)

    async def close(self) -> None:
        await self.inner.close()


async def until(predicate: Callable[[], object], timeout: float, what: str) -> None:
    """Poll the simulator's own state until predicate() holds."""

    async def check() -> object:
        return predicate()

    await poll_until(check, timeout, what, interval=0.02)


def url_of(port: int) -> str:
    return f"stratum+tcp://127.0.0.1:{port}"


def sim_pools(miner: SimMiner) -> list[tuple[str, str, str]]:
    """The simulated miner's own pool list, by priority: (url, user, password)."""
    ordered = sorted(miner.pools, key=lambda pool: pool.priority)
    return [(pool.url, pool.user, pool.password) for pool in ordered]


def on_pool(miner: SimMiner, url: str) -> bool:
    """The miner's Stratum session is up on that pool (subscribed, authorized, given work)."""
    link = miner.link
    return link is not None and link.ready and link.url == url and miner.hashing


@pytest.fixture
async def session(loopback_network: None) -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client:
        yield client


@pytest.fixture
async def local_pool(loopback_network: None) -> AsyncIterator[LocalPool]:
    # A difficulty the simulated miners can meet with a few hashes.
    vardiff = VardiffConfig(start_difficulty=TINY, min_difficulty=TINY)
    pool = LocalPool(LocalPoolConfig(vardiff=vardiff, job_interval=1.0))
    await pool.start("127.0.0.1", 0)
    try:
        yield pool
    finally:
        await pool.stop()


@contextlib.asynccontextmanager
async def six_families(session: aiohttp.ClientSession) -> AsyncIterator[tuple[Site, Fleet]]:
    """A simulated site, one miner per family, and a fleet of counted drivers for it."""
    async with running_site(MIX, miners=6, **QUICK) as site:
        drivers = {
            m.family: Counted(
                driver_for(m.family, MinerEndpoint(m.host, m.api_port), session=session, timeout=5)
            )
            for m in site.miners
        }
        fleet = Fleet(drivers, timeout=5, confirm_timeout=10, confirm_interval=0.05)
        try:
            yield site, fleet
        finally:
            await fleet.close()


def counted(fleet: Fleet) -> dict[str, Counted]:
    drivers = {key: fleet.driver(key) for key in fleet.keys}
    assert all(isinstance(driver, Counted) for driver in drivers.values())
    return {key: driver for key, driver in drivers.items() if isinstance(driver, Counted)}


async def poll(fleet: Fleet) -> dict[str, MinerStatus]:
    results = await fleet.poll()
    statuses = {key: r for key, r in results.items() if isinstance(r, MinerStatus)}
    assert statuses.keys() == results.keys(), results
    return statuses


def writes(fleet: Fleet) -> int:
    return sum(len(d.set_pools_calls) + len(d.switches) for d in counted(fleet).values())


def failures(outcomes: dict[str, Any]) -> dict[str, str]:
    return {key: f"{o.result}: {o.error}" for key, o in outcomes.items() if not o.confirmed}


async def test_fleet_moves_across_all_six_families(
    session: aiohttp.ClientSession, local_pool: LocalPool
) -> None:
    async with six_families(session) as (site, fleet):
        assert site.pool is not None
        upstream, local = url_of(site.pool.port), url_of(local_pool.port)
        miners = {m.family: m for m in site.miners}
        # The operator's pools, with passwords a rewrite must not lose.
        for family, miner in miners.items():
            miner.set_pools(
                [(upstream, f"op.{family}", "d=65536"), (PUBLIC_POOLS[1], f"op.{family}", "pw-b")]
            )
        await until(
            lambda: all(on_pool(m, upstream) for m in site.miners), 20, "miners on upstream"
        )

        # 1. The backup goes last on every miner; the operator's pools keep their order.
        backup = PoolConfig(local, "site.backup", "local-pw")
        outcomes = await fleet.ensure_backup_pool(backup, await poll(fleet))
        assert outcomes.keys() == miners.keys()
        assert failures(outcomes) == {}
        for family, miner in miners.items():
            status = outcomes[family].status
            assert status is not None
            assert [(p.url, p.user) for p in status.pools] == [
                (upstream, f"op.{family}"),
                (PUBLIC_POOLS[1], f"op.{family}"),
                (local, "site.backup"),
            ]
            kept = family in KEEP_PASSWORDS
            assert sim_pools(miner) == [
                (upstream, f"op.{family}", "d=65536" if kept else "x"),
                (PUBLIC_POOLS[1], f"op.{family}", "pw-b" if kept else "x"),
                (local, "site.backup", "local-pw"),
            ], family
        written = writes(fleet)
        assert written == 6

        # 2. Idempotent: a second call with fresh readings contacts nobody.
        statuses = await poll(fleet)
        reads = {key: d.reads for key, d in counted(fleet).items()}
        assert await fleet.ensure_backup_pool(backup, statuses) == {}
        assert writes(fleet) == written
        assert {key: d.reads for key, d in counted(fleet).items()} == reads

        # 3. Every miner moves to the local pool at once, and really hashes there.
        outcomes = await fleet.switch_to_pool(dict.fromkeys(miners, local))
        assert failures(outcomes) == {}
        await until(
            lambda: all(on_pool(m, local) for m in site.miners), 20, "sessions on the local pool"
        )
        shares = local_pool.stats().shares_accepted
        await until(
            lambda: local_pool.stats().shares_accepted >= shares + 6, 20, "shares on the local pool"
        )
        assert local_pool.stats().miners == 6
        # Already there: confirmed without a write.
        written = writes(fleet)
        outcomes = await fleet.switch_to_pool(dict.fromkeys(miners, local))
        assert failures(outcomes) == {}
        assert writes(fleet) == written

        # 4. And back to the operator's first pool; the backup is put last again after.
        outcomes = await fleet.switch_to_pool(dict.fromkeys(miners, upstream))
        assert failures(outcomes) == {}
        await until(lambda: all(on_pool(m, upstream) for m in site.miners), 20, "back upstream")
        outcomes = await fleet.ensure_backup_pool(backup, await poll(fleet))
        assert failures(outcomes) == {}
        assert all(sim_pools(m)[-1][0] == local for m in site.miners)
        assert all(sim_pools(m)[0][0] == upstream for m in site.miners)

        # 5. A pool a miner does not list: failed, nothing written.
        written = writes(fleet)
        nowhere = url_of(free_port())
        outcomes = await fleet.switch_to_pool(dict.fromkeys(miners, nowhere))
        for key, outcome in outcomes.items():
            assert outcome.result is CommandResult.FAILED
            assert isinstance(outcome.error, PoolNotListedError)
            assert str(outcome.error) == f"{key} does not list pool {nowhere}"
        assert writes(fleet) == written

        # 6. A full list (the previous backup counts as the operator's now): nothing written.
        before = {family: sim_pools(m) for family, m in miners.items()}
        outcomes = await fleet.ensure_backup_pool(
            PoolConfig(nowhere, "site.backup"), await poll(fleet)
        )
        assert outcomes.keys() == miners.keys()
        for outcome in outcomes.values():
            assert outcome.result is CommandResult.FAILED
            assert isinstance(outcome.error, PoolListFullError)
        assert writes(fleet) == written
        assert {family: sim_pools(m) for family, m in miners.items()} == before


async def test_the_proxy_goes_first_on_all_six_families(
    session: aiohttp.ClientSession, local_pool: LocalPool
) -> None:
    async with six_families(session) as (site, fleet):
        assert site.pool is not None
        upstream, local = url_of(site.pool.port), url_of(local_pool.port)
        miners = {m.family: m for m in site.miners}
        for family, miner in miners.items():
            miner.set_pools(
                [(upstream, f"op.{family}", "x"), (PUBLIC_POOLS[1], f"op.{family}", "x")]
            )
        await until(
            lambda: all(on_pool(m, upstream) for m in site.miners), 20, "miners on upstream"
        )

        # Proxy mode: the site's pool first, as the miner's own worker; then the operator's.
        outcomes = await fleet.ensure_proxy_first(local, await poll(fleet))
        assert outcomes.keys() == miners.keys()
        assert failures(outcomes) == {}
        for family, miner in miners.items():
            assert [(url, user) for url, user, _ in sim_pools(miner)] == [
                (local, f"op.{family}"),
                (upstream, f"op.{family}"),
                (PUBLIC_POOLS[1], f"op.{family}"),
            ], family
        # A new first pool is not always taken at once (cgminer keeps a working pool
        # until the new one has been tested): the switch makes sure, read back.
        outcomes = await fleet.switch_to_pool(dict.fromkeys(miners, local))
        assert failures(outcomes) == {}
        await until(lambda: all(on_pool(m, local) for m in site.miners), 20, "on the proxy")
        written = writes(fleet)
        assert await fleet.ensure_proxy_first(local, await poll(fleet)) == {}
        assert writes(fleet) == written

        # Back to backup-pool mode: the operator's pools first again, the site's last.
        backup = PoolConfig(local, "site.backup")
        outcomes = await fleet.ensure_backup_pool(backup, await poll(fleet))
        assert failures(outcomes) == {}
        assert all(sim_pools(m)[-1][:2] == (local, "site.backup") for m in site.miners)

        # A miner that lists nothing of the operator's: refused, nothing written.
        lone = miners["cgminer"]
        lone.set_pools([(local, "site.backup", "x")])
        written = writes(fleet)
        statuses = await poll(fleet)
        outcomes = await fleet.ensure_proxy_first(local, {"cgminer": statuses["cgminer"]})
        assert outcomes["cgminer"].result is CommandResult.FAILED
        assert isinstance(outcomes["cgminer"].error, NoOperatorPoolError)
        assert writes(fleet) == written


async def test_a_dead_pool_is_never_confirmed(session: aiohttp.ClientSession) -> None:
    async with six_families(session) as (site, fleet):
        assert site.pool is not None
        upstream, dead = url_of(site.pool.port), url_of(free_port())  # nothing listens there
        for family, miner in site_miners(site).items():
            miner.set_pools([(upstream, f"op.{family}", "x"), (dead, "site.backup", "x")])
        # The simulator has probed the dead pool (a miner reports it dead) before the switch.
        await until(
            lambda: all(on_pool(m, upstream) and not m.pool_alive(1) for m in site.miners),
            20,
            "miners upstream, the dead pool probed",
        )
        fleet.confirm_timeout = 1.0
        outcomes = await fleet.switch_to_pool(dict.fromkeys(site_miners(site), dead))
        for key, outcome in outcomes.items():
            assert outcome.result is CommandResult.NOT_CONFIRMED, (key, outcome)
            assert isinstance(outcome.error, CommandNotConfirmedError)
            assert "not alive" in str(outcome.error), (key, outcome.error)
            assert outcome.elapsed_s < fleet.confirm_timeout + fleet.timeout
            # Sent once, never a third time (a second only if the write did not take).
            assert 1 <= len(counted(fleet)[key].switches) <= 2
        # No miner hashes on the dead pool; cgminer never even left its pool.
        assert not any(on_pool(m, dead) for m in site.miners)
        assert site_miners(site)["cgminer"].pool == upstream


async def test_a_sleeping_miner_is_moved_to_wake_onto_the_pool(
    session: aiohttp.ClientSession, local_pool: LocalPool
) -> None:
    # Curtailed miners cannot hash: the pool is put first in line, and they wake onto it.
    async with running_site("antminer=1,cgminer=1,whatsminer=1", miners=3, **QUICK) as site:
        drivers = {
            m.family: driver_for(
                m.family, MinerEndpoint(m.host, m.api_port), session=session, timeout=5
            )
            for m in site.miners
        }
        fleet = Fleet(drivers, timeout=5, confirm_timeout=10, confirm_interval=0.05)
        local = url_of(local_pool.port)
        backup = PoolConfig(local, "site.backup")
        assert failures(await fleet.ensure_backup_pool(backup, await poll(fleet))) == {}
        stopped = await fleet.command(drivers, "stop")
        assert all(outcome.confirmed for outcome in stopped.values())
        outcomes = await fleet.switch_to_pool(dict.fromkeys(drivers, local))
        assert failures(outcomes) == {}
        for family, outcome in outcomes.items():
            assert outcome.status is not None
            assert not outcome.status.mining, family
        assert all(sim_pools(m)[0][0] == local for m in site.miners)
        started = await fleet.command(drivers, "start")
        assert all(outcome.confirmed for outcome in started.values())
        await until(lambda: all(on_pool(m, local) for m in site.miners), 20, "woken on the pool")
        await fleet.close()


async def test_a_refused_pool_write_fails_and_is_not_retried(
    session: aiohttp.ClientSession,
) -> None:
    async with running_site("whatsminer", miners=1, **QUICK) as site:
        miner = site.miners[0]
        wrong = Credentials(password="not-the-admin-password")
        driver = Counted(
            driver_for("whatsminer", MinerEndpoint(miner.host, miner.api_port), wrong, timeout=5)
        )
        fleet = Fleet({"wm": driver}, timeout=5, confirm_timeout=5, confirm_interval=0.05)
        before = sim_pools(miner)
        second = before[1][0]
        outcome = (await fleet.switch_to_pool({"wm": second}))["wm"]
        assert outcome.result is CommandResult.FAILED
        assert isinstance(outcome.error, DeviceAuthError)
        assert driver.switches == [1]
        assert sim_pools(miner) == before
        outcome = (await fleet.ensure_backup_pool(BACKUP, await poll(fleet)))["wm"]
        assert outcome.result is CommandResult.FAILED
        assert isinstance(outcome.error, DeviceAuthError)
        assert len(driver.set_pools_calls) == 1
        assert sim_pools(miner) == before
        await fleet.close()


async def test_moves_run_side_by_side(session: aiohttp.ClientSession) -> None:
    # Every miner's write is in flight before any is answered: no waves.
    async with running_site("luxos=4", miners=4, **QUICK) as site:
        drivers = {
            f"lux{i}": Slowed(driver_for("luxos", MinerEndpoint(m.host, m.api_port), timeout=5))
            for i, m in enumerate(site.miners)
        }
        gate = asyncio.Barrier(len(drivers))
        for driver in drivers.values():
            driver.gate = gate
        fleet = Fleet(drivers, timeout=5, confirm_timeout=10, confirm_interval=0.05)
        statuses = await poll(fleet)
        backup = PoolConfig(url_of(free_port()), "site.backup")
        outcomes = await fleet.ensure_backup_pool(backup, statuses)
        assert outcomes.keys() == drivers.keys()
        assert failures(outcomes) == {}
        await fleet.close()


class Slowed(Counted):
    """A driver whose pool writes wait until every miner's write is in flight."""

    gate: asyncio.Barrier | None = None

    async def set_pools(self, pools: Sequence[PoolConfig]) -> None:
        assert self.gate is not None
        async with asyncio.timeout(3):  # a fan-out in waves would never get past this
            await self.gate.wait()
        await super().set_pools(pools)


def site_miners(site: Site) -> dict[str, SimMiner]:
    return {m.family: m for m in site.miners}


class Forgetful(Counted):
    """Firmware that answers a pool write and keeps its old list (a write lost on reboot)."""

    async def set_pools(self, pools: Sequence[PoolConfig]) -> None:
        self.set_pools_calls.append(list(pools))


async def test_a_pool_write_that_does_not_show_is_not_confirmed(
    session: aiohttp.ClientSession,
) -> None:
    async with running_site("cgminer", miners=1, **QUICK) as site:
        miner = site.miners[0]
        driver = Forgetful(
            driver_for("cgminer", MinerEndpoint(miner.host, miner.api_port), timeout=5)
        )
        fleet = Fleet({"cg": driver}, timeout=5, confirm_timeout=0.5, confirm_interval=0.05)
        before = sim_pools(miner)
        outcome = (await fleet.ensure_backup_pool(BACKUP, await poll(fleet)))["cg"]
        assert outcome.result is CommandResult.NOT_CONFIRMED
        assert isinstance(outcome.error, CommandNotConfirmedError)
        assert "not the pools written" in str(outcome.error)
        assert before[0][0] in str(outcome.error)
        assert len(driver.set_pools_calls) == 1
        assert sim_pools(miner) == before
        await fleet.close()
