"""The proxy aggregating: every miner on one upstream connection, the extranonce2 space split."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
import contextlib
from functools import partial
import json
import time
from typing import Any

import pytest

from custom_components.bitcoin_mining.miningsite.stratum import (
    Fallback,
    PoolConfig,
    ProxyConfig,
    StratumProxy,
)
from custom_components.bitcoin_mining.miningsite.stratum.aggregate import prefix_size
from devtools.stratum import StratumClient
from simulator.pool import StratumPool
from simulator.stratum import encode
from tests.library.conftest import STILL, TINY, Connect, MakeProxy
from tests.library.test_stratum_proxy import (
    has_clean_job,
    miner,
    newest_clean,
    on_local_job,
    share,
    until,
)


def notified_after(client: StratumClient, count: int) -> bool:
    """Whether a notification came after the first `count`."""
    return len(client.notifications) > count


async def aggregating(make_proxy: MakeProxy, **overrides: Any) -> StratumProxy:
    """A proxy with aggregation on (256 connections: one prefix byte)."""
    overrides.setdefault("max_connections", 256)
    return await make_proxy(aggregate=True, **overrides)


def test_the_prefix_takes_as_few_bytes_as_the_connection_cap_allows() -> None:
    assert [prefix_size(n) for n in (1, 256, 257, 65_536, 65_537)] == [1, 1, 2, 2, 3]


async def test_every_miner_shares_one_upstream_connection_with_a_slot_of_its_own(
    make_proxy: MakeProxy, connect: Connect, upstream: StratumPool
) -> None:
    proxy = await aggregating(make_proxy)
    clients = [await miner(connect, proxy, f"farm.rig{i}") for i in range(3)]
    assert upstream.connections == 1
    (session,) = upstream._sessions
    # Each miner's extranonce1 is the upstream's followed by its own prefix byte, and its
    # extranonce2 that much shorter: no two coinbases can be the same.
    slots = {client.extranonce1 for client in clients}
    assert len(slots) == 3
    for client in clients:
        assert client.extranonce1 is not None
        assert client.extranonce1[:-2] == session.extranonce1
        assert client.extranonce2_size == 8 - 1
        assert client.jobs[-1].job_id == upstream.current_job.job_id
        assert client.difficulty == TINY
        assert client.version_mask == 0x1FFFE000
    # Shares go upstream under each miner's own worker, and are valid there.
    for client in clients:
        assert (await share(client, client.jobs[-1]))["result"] is True
    assert {w: s.accepted for w, s in upstream.workers.items()} == {
        "farm.rig0": 1,
        "farm.rig1": 1,
        "farm.rig2": 1,
    }
    bad = clients[0].solve(clients[0].jobs[-1], missing=TINY)
    reply = await clients[0].call("mining.submit", bad, "x")
    assert (reply["id"], reply["result"], reply["error"][0]) == ("x", False, 23)
    stats = proxy.stats()
    assert (stats.connections, stats.on_upstream, stats.upstream_connections) == (3, 3, 1)
    assert (stats.totals.upstream_accepted, stats.totals.upstream_rejected) == (3, 1)
    # A job the upstream sends reaches every miner.
    job = upstream._new_job()
    upstream.inject(encode(job.notify(clean=False)))
    for client in clients:
        relayed = await client.wait_jobs(2)
        assert relayed.job_id == job.job_id
    assert (await share(clients[2], clients[2].jobs[-1]))["result"] is True


async def test_a_worker_is_authorized_once_and_a_refused_one_is_refused(
    make_proxy: MakeProxy, connect: Connect, upstream: StratumPool
) -> None:
    proxy = await aggregating(make_proxy)
    first = await miner(connect, proxy, "farm.rig1")
    second = await miner(connect, proxy, "farm.rig1")
    assert first.extranonce1 != second.extranonce1
    assert list(upstream.workers) == ["farm.rig1"]
    client = await connect(proxy)
    await client.call("mining.subscribe", ["cgminer"])
    reply = await client.call("mining.authorize", ["", "x"])
    assert (reply["result"], reply["error"][0]) == (False, 24)
    # A miner's suggested difficulty is answered, but the connection's difficulty is shared.
    reply = await client.call("mining.suggest_difficulty", [1024])
    assert reply["result"] is True
    assert proxy.stats().upstream_connections == 1


async def test_a_share_with_the_wrong_extranonce2_size_is_answered_by_the_proxy(
    make_proxy: MakeProxy, connect: Connect, upstream: StratumPool
) -> None:
    proxy = await aggregating(make_proxy)
    client = await miner(connect, proxy, "farm.rig1")
    params = client.solve(client.jobs[-1])
    params[2] = params[2] + "00"
    reply = await client.call("mining.submit", params, 9)
    assert (reply["id"], reply["result"], reply["error"][0]) == (9, None, 20)
    assert "7 bytes" in reply["error"][1]
    assert upstream.accepted_shares == upstream.rejected_shares == 0


async def test_an_outage_puts_every_miner_on_local_jobs_and_back_on_one_connection(
    make_proxy: MakeProxy, connect: Connect, upstream: StratumPool
) -> None:
    proxy = await aggregating(make_proxy, batch_size=2, batch_interval=0.1)
    clients = [await miner(connect, proxy, f"site.m{i}", xnsub=True) for i in range(4)]
    before = [len(c.jobs) for c in clients]
    started = time.monotonic()
    proxy.upstream_down("handshake probe failed")
    for client, count in zip(clients, before, strict=True):
        await client.wait_for(partial(has_clean_job, client, count), 1.0)
    assert time.monotonic() - started < 1.0
    # The last miner off the shared connection closes it.
    await until(lambda: upstream.connections == 0, "the shared connection closed")
    stats = proxy.stats()
    assert (stats.on_local, stats.upstream_connections) == (4, 0)
    for client, count in zip(clients, before, strict=True):
        job = newest_clean(client, count)
        assert job is not None
        assert (await share(client, job))["result"] is True
    assert proxy.stats().totals.local_accepted == 4

    connections = upstream.connections_total
    proxy.upstream_up()
    await until(
        lambda: all(c.jobs[-1].job_id == upstream.current_job.job_id for c in clients),
        "every miner back on the upstream",
    )
    assert upstream.connections_total == connections + 1
    assert upstream.connections == 1
    for client in clients:
        # The new connection's extranonce came as a set_extranonce before the job.
        moved = [n for n in client.notifications if n["method"] == "mining.set_extranonce"]
        first, size = moved[-1]["params"]
        client.extranonce1, client.extranonce2_size = first, size
        assert (await share(client, client.jobs[-1]))["result"] is True
    stats = proxy.stats()
    assert (stats.on_upstream, stats.totals.moves_back, stats.upstream_connections) == (4, 4, 1)


async def test_the_shared_connection_lost_moves_every_miner_to_local_jobs(
    make_proxy: MakeProxy, connect: Connect, upstream: StratumPool
) -> None:
    proxy = await aggregating(make_proxy, retry_delay=30)
    clients = [await miner(connect, proxy, f"site.m{i}") for i in range(3)]
    await upstream.set_reachability("refuse")
    for client in clients:
        await client.wait_for(partial(on_local_job, client), 2)
    stats = proxy.stats()
    assert stats.fallbacks == {Fallback.CONNECTION_LOST: 3}
    assert not any(client.closed for client in clients)
    await upstream.set_reachability("up")


BAD_SHARED_INPUT = [
    (b"this is not json\n", Fallback.GARBAGE),
    (b'{"id":null,"method":"mining.whatever","params":[]}\n', Fallback.UNKNOWN_METHOD),
    (
        b'{"id":null,"method":"client.reconnect","params":["evil.example",3333]}\n',
        Fallback.FOREIGN_RECONNECT,
    ),
    (b'{"id":null,"method":"mining.set_difficulty","params":[0]}\n', Fallback.BAD_DIFFICULTY),
    (b'{"id":null,"method":"mining.notify","params":["j1"]}\n', Fallback.GARBAGE),
    (b'{"id":null,"method":"mining.set_extranonce","params":["00",1]}\n', Fallback.BAD_EXTRANONCE),
    (b'{"x":"' + b"a" * 70_000 + b'"}\n', Fallback.OVERSIZE_LINE),
]


@pytest.mark.parametrize(
    ("line", "reason"), BAD_SHARED_INPUT, ids=[str(r) for _, r in BAD_SHARED_INPUT]
)
async def test_bad_input_on_the_shared_connection_falls_back_and_drops_it(
    make_proxy: MakeProxy,
    connect: Connect,
    upstream: StratumPool,
    line: bytes,
    reason: Fallback,
) -> None:
    proxy = await aggregating(make_proxy, retry_delay=30)
    clients = [await miner(connect, proxy, f"site.m{i}") for i in range(2)]
    difficulty = clients[0].difficulty
    jobs = [len(c.jobs) for c in clients]
    assert upstream.inject(line) == 1
    for client, count in zip(clients, jobs, strict=True):
        await client.wait_for(partial(has_clean_job, client, count), 2)
        assert client.difficulty == difficulty
        assert not client.closed
    stats = proxy.stats()
    assert stats.fallbacks == {reason: 2}
    assert all(m.last_fallback and m.last_fallback.startswith(str(reason)) for m in stats.miners)
    await until(lambda: upstream.connections == 0, "the shared connection dropped")


async def test_what_the_shared_connection_handles_itself_moves_nobody(
    make_proxy: MakeProxy, connect: Connect, upstream: StratumPool
) -> None:
    proxy = await aggregating(make_proxy, retry_delay=30)
    client = await miner(connect, proxy, "site.m1")
    # Answers to nothing asked, a version request (the proxy answers it), a message shown.
    for line in (
        b'{"id":"abc","result":true,"error":null}\n',
        b'{"id":424242,"result":true,"error":null}\n',
        b'{"id":7,"method":"client.get_version","params":[]}\n',
        b'{"id":null,"method":"client.show_message","params":["hello"]}\n',
    ):
        assert upstream.inject(line) == 1
    reply = await client.call("mining.configure", [["minimum-difficulty"], {}])
    assert reply["result"] == {}
    assert (await share(client, client.jobs[-1]))["result"] is True
    stats = proxy.stats()
    assert (stats.fallbacks, stats.on_upstream, stats.upstream_connections) == ({}, 1, 1)


async def test_an_extranonce_change_gives_each_miner_its_slot_in_the_new_one(
    make_proxy: MakeProxy, connect: Connect, upstream: StratumPool
) -> None:
    proxy = await aggregating(make_proxy, retry_delay=30)
    clients = [await miner(connect, proxy, f"site.m{i}", xnsub=True) for i in range(2)]
    counts = [len(c.notifications) for c in clients]
    assert upstream.inject(
        b'{"id":null,"method":"mining.set_extranonce","params":["0a0b0c0d",6]}\n'
    )
    slots = set()
    for client, count in zip(clients, counts, strict=True):
        await client.wait_for(partial(notified_after, client, count), 2)
        note = client.notifications[count]
        assert note["method"] == "mining.set_extranonce"
        first, size = note["params"]
        assert (first[:8], len(first), size) == ("0a0b0c0d", 10, 5)
        slots.add(first)
    assert len(slots) == 2
    assert proxy.stats().fallbacks == {}


async def test_a_miner_that_cannot_take_an_extranonce_change_falls_back(
    make_proxy: MakeProxy, connect: Connect, upstream: StratumPool
) -> None:
    proxy = await aggregating(make_proxy, retry_delay=30)
    client = await miner(connect, proxy, "site.m1")
    jobs = len(client.jobs)
    assert upstream.inject(
        b'{"id":null,"method":"mining.set_extranonce","params":["0a0b0c0d",6]}\n'
    )
    await client.wait_for(partial(has_clean_job, client, jobs), 2)
    assert proxy.stats().fallbacks == {Fallback.BAD_EXTRANONCE: 1}


class NarrowPool:
    """An upstream that answers the subscribe with `size` ("silent": never; "close": hangs up)."""

    def __init__(self, size: object) -> None:
        """Answer the subscribe with this extranonce2 size; refuse version rolling oddly."""
        self.size = size
        self.lines: list[dict[str, Any]] = []
        self.server: asyncio.Server | None = None
        self.port = 0

    async def start(self) -> None:
        """Listen on a free loopback port."""
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        """Stop listening and drop connections."""
        assert self.server is not None
        self.server.close()
        self.server.close_clients()
        await self.server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while line := await reader.readline():
            message = json.loads(line)
            self.lines.append(message)
            if message["method"] == "mining.subscribe" and self.size == "close":
                break
            if message["method"] == "mining.subscribe" and self.size != "silent":
                result = [[["mining.notify", "1"]], "00000001", self.size]
                reply = {"id": message["id"], "result": result, "error": None}
                writer.write(json.dumps(reply).encode() + b"\n")
            elif message["method"] == "mining.configure":
                granted = {"version-rolling": True, "version-rolling.mask": "zz"}
                reply = {"id": message["id"], "result": granted, "error": None}
                writer.write(json.dumps(reply).encode() + b"\n")
        writer.close()


@contextlib.asynccontextmanager
async def aggregating_in_front_of(
    pool: NarrowPool, **overrides: Any
) -> AsyncIterator[tuple[StratumProxy, StratumClient, dict[str, Any]]]:
    """An aggregating proxy in front of `pool`, a miner on it, the miner's configure reply."""
    config = ProxyConfig(
        "127.0.0.1", pool.port, aggregate=True, local=PoolConfig(vardiff=STILL), **overrides
    )
    proxy = StratumProxy(config)
    await proxy.start("127.0.0.1", 0)
    assert proxy.port is not None
    client = await StratumClient.connect("127.0.0.1", proxy.port)
    try:
        mask = {"version-rolling.mask": "1fffe000"}
        reply = await client.call("mining.configure", [["version-rolling"], mask])
        yield proxy, client, reply
    finally:
        await client.close()
        await proxy.stop()


@pytest.fixture
async def narrow(
    request: pytest.FixtureRequest, loopback_network: None
) -> AsyncIterator[NarrowPool]:
    pool = NarrowPool(request.param)
    await pool.start()
    yield pool
    await pool.stop()


@pytest.mark.parametrize(
    ("narrow", "reason"),
    [
        (2, Fallback.BAD_EXTRANONCE),
        ("eight", Fallback.BAD_EXTRANONCE),
        ("silent", Fallback.CONNECT_FAILED),
        ("close", Fallback.CONNECT_FAILED),
    ],
    indirect=["narrow"],
    ids=["extranonce2-too-small", "no-extranonce", "subscribe-unanswered", "closed"],
)
async def test_an_upstream_that_cannot_be_shared_leaves_miners_on_local_jobs(
    narrow: NarrowPool, reason: Fallback, loopback_network: None
) -> None:
    async with aggregating_in_front_of(
        narrow, max_connections=256, reply_timeout=0.3, retry_delay=30
    ) as (proxy, client, reply):
        await client.handshake("site.m1", "pw")
        assert on_local_job(client)
        assert (await share(client, client.jobs[-1]))["result"] is True
        stats = proxy.stats()
        assert stats.fallbacks == {reason: 1}
        assert stats.upstream_connections == 0
        assert reply["result"]["version-rolling"] is True  # the local pool's own answer


@pytest.mark.parametrize("narrow", [8], indirect=True)
async def test_a_mask_the_upstream_grants_badly_means_no_version_rolling(
    narrow: NarrowPool, loopback_network: None
) -> None:
    async with aggregating_in_front_of(narrow) as (proxy, client, configured):
        assert configured["result"] == {"version-rolling": False}
        subscribed = await client.call("mining.subscribe", ["cgminer"])
        # Two prefix bytes (2048 connections) after the upstream's extranonce1.
        first, size = subscribed["result"][1:]
        assert (first[:8], len(first), size) == ("00000001", 12, 6)
        assert proxy.stats().upstream_connections == 1
