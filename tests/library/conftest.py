"""Library test fixtures: a container peer; the Stratum proxy's upstream, proxies, clients."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from custom_components.bitcoin_mining.miningsite.stratum import (
    PoolConfig,
    ProxyConfig,
    StratumProxy,
    VardiffConfig,
)
from devtools.stratum import StratumClient
from simulator.pool import StratumPool
from tests.support.container_peer import ContainerPeer

# One hash in 256 meets it: a share costs the test client about a millisecond.
TINY = 2.0**-24
STILL = VardiffConfig(
    start_difficulty=TINY,
    min_difficulty=TINY,
    max_difficulty=2.0**-16,
    retarget_shares=100_000,
    retarget_seconds=3600,
)


@pytest.fixture
async def peer(loopback_network: None) -> AsyncIterator[ContainerPeer]:
    """A well-behaved Kehua container on loopback (the container client's tests)."""
    running = ContainerPeer("kehua")
    await running.start()
    try:
        yield running
    finally:
        await running.stop()


type MakeProxy = Callable[..., Awaitable[StratumProxy]]
type Connect = Callable[..., Awaitable[StratumClient]]


@pytest.fixture
async def upstream(loopback_network: None) -> AsyncIterator[StratumPool]:
    pool = StratumPool("127.0.0.1", 0, difficulty=TINY, job_interval_s=25)
    await pool.start()
    yield pool
    await pool.stop()


@pytest.fixture
async def make_proxy(upstream: StratumPool) -> AsyncIterator[MakeProxy]:
    proxies: list[StratumProxy] = []

    async def make(**overrides: Any) -> StratumProxy:
        overrides.setdefault("local", PoolConfig(vardiff=STILL))
        overrides.setdefault("batch_interval", 0.05)
        proxy = StratumProxy(ProxyConfig("127.0.0.1", upstream.port, **overrides))
        await proxy.start("127.0.0.1", 0)
        proxies.append(proxy)
        return proxy

    yield make
    for proxy in proxies:
        await proxy.stop()


@pytest.fixture
async def connect(make_proxy: MakeProxy) -> AsyncIterator[Connect]:
    clients: list[StratumClient] = []

    async def open_client(proxy: StratumProxy) -> StratumClient:
        assert proxy.port is not None
        client = await StratumClient.connect("127.0.0.1", proxy.port)
        clients.append(client)
        return client

    yield open_client
    for client in clients:
        await client.close()
