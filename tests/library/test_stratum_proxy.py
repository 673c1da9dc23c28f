"""The Stratum proxy over real sockets: the simulator's pool upstream, test clients as miners."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from functools import partial
import time
from typing import Any

import pytest

from custom_components.bitcoin_mining.miningsite.stratum import (
    Fallback,
    PoolConfig,
    ProxyConfig,
    StratumProxy,
)
from custom_components.bitcoin_mining.miningsite.stratum.proxy import OVERLOAD_TICKS
from devtools.steps import poll_until
from devtools.stratum import StratumClient, StratumJob
from simulator.pool import StratumPool
from simulator.stratum import encode
from tests.library.conftest import STILL, TINY, Connect, MakeProxy
from tests.simulator.test_miners_fleet import control
from tests.simulator.test_miners_helpers import running_site


async def until(condition: Callable[[], bool], what: str, timeout: float = 15) -> None:
    """Until condition() holds, polled (the proxy's own state has no event to wait on)."""

    async def check() -> bool:
        return condition()

    await poll_until(check, timeout, what, interval=0.01)


async def miner(
    connect: Connect, proxy: StratumProxy, worker: str, *, xnsub: bool = False
) -> StratumClient:
    """A relayed miner: handshake done, its first job in."""
    client = await connect(proxy)
    if xnsub:
        reply = await client.call("mining.extranonce.subscribe", [])
        assert reply["result"] is True
    await client.handshake(worker, "pw")
    return client


def newest_clean(client: StratumClient, after: int) -> StratumJob | None:
    """The newest clean job that came after the first `after` jobs."""
    clean = [job for job in client.jobs[after:] if job.clean]
    return clean[-1] if clean else None


def on_local_job(client: StratumClient) -> bool:
    """Whether the newest job is a local one (the proxy's ids start with L)."""
    return bool(client.jobs) and client.jobs[-1].job_id.startswith("L")


def has_clean_job(client: StratumClient, after: int) -> bool:
    """Whether a clean job came after the first `after` jobs."""
    return newest_clean(client, after) is not None


async def share(client: StratumClient, job: StratumJob, request_id: Any = None) -> dict[str, Any]:
    """Solve a share for `job` at its difficulty and submit it; the reply."""
    return await client.call("mining.submit", client.solve(job), request_id)


async def test_a_miner_is_relayed_with_its_own_worker_difficulty_and_extranonce(
    make_proxy: MakeProxy, connect: Connect, upstream: StratumPool
) -> None:
    proxy = await make_proxy()
    client = await miner(connect, proxy, "farm.rig7")
    # The upstream's own session: its worker name, extranonce1 and difficulty.
    assert set(upstream.workers) == {"farm.rig7"}
    assert client.extranonce1 in {s.extranonce1 for s in upstream._sessions}
    assert client.difficulty == TINY
    assert client.jobs[0].job_id == upstream.current_job.job_id
    assert client.version_mask == 0x1FFFE000

    reply = await share(client, client.jobs[-1], request_id="miner-42")
    assert reply == {"id": "miner-42", "result": True, "error": None}
    bad = client.solve(client.jobs[-1], missing=TINY)
    reply = await client.call("mining.submit", bad, 77)
    assert (reply["id"], reply["result"], reply["error"][0]) == (77, False, 23)
    assert (upstream.workers["farm.rig7"].accepted, upstream.workers["farm.rig7"].rejected) == (
        1,
        1,
    )
    stats = proxy.stats()
    assert (stats.on_upstream, stats.on_local, stats.upstream_healthy) == (1, 0, True)
    assert (stats.totals.upstream_accepted, stats.totals.upstream_rejected) == (1, 1)
    assert stats.miners[0].workers == ("farm.rig7",)
    assert stats.miners[0].side == "upstream"
    assert stats.latency_p50_ms is not None
    assert stats.latency_p99_ms is not None
    assert stats.latency_p50_ms <= stats.latency_p99_ms < 50

    # Upstream jobs are relayed as they come, and shares for them go upstream.
    job = upstream._new_job()
    upstream.inject(encode(job.notify(clean=False)))
    relayed = await client.wait_jobs(2)
    assert (relayed.job_id, relayed.clean) == (job.job_id, False)
    assert (await share(client, relayed))["result"] is True
    assert upstream.workers["farm.rig7"].accepted == 2


async def test_upstream_down_gives_every_miner_a_local_clean_job_within_a_second(
    make_proxy: MakeProxy, connect: Connect, upstream: StratumPool
) -> None:
    proxy = await make_proxy()
    clients = [await miner(connect, proxy, f"site.m{i}") for i in range(5)]
    before = [len(c.jobs) for c in clients]
    old_jobs = [c.jobs[-1] for c in clients]
    await upstream.set_reachability("blackhole")
    started = time.monotonic()
    proxy.upstream_down("handshake probe failed")
    for client, count in zip(clients, before, strict=True):
        await client.wait_for(partial(has_clean_job, client, count), 1.0)
    assert time.monotonic() - started < 1.0
    assert not any(c.closed for c in clients)
    stats = proxy.stats()
    assert (stats.on_upstream, stats.on_local, stats.upstream_healthy) == (0, 5, False)
    assert stats.fallbacks == {Fallback.UPSTREAM_DOWN: 5}
    assert stats.miners[0].last_fallback == "upstream_down: handshake probe failed"

    # Local shares are verified with the miner's own extranonce and counted as local work.
    accepted = upstream.accepted_shares
    for client, count in zip(clients, before, strict=True):
        job = newest_clean(client, count)
        assert job is not None
        assert (await share(client, job))["result"] is True
    bad = clients[0].solve(newest_clean(clients[0], before[0]), missing=TINY)  # type: ignore[arg-type]
    assert (await clients[0].call("mining.submit", bad))["error"][0] == 23
    # A share for the upstream job it hashed before: stale, not a crash.
    reply = await share(clients[1], old_jobs[1])
    assert (reply["result"], reply["error"][0]) == (False, 21)
    stats = proxy.stats()
    assert (stats.totals.local_accepted, stats.totals.local_rejected) == (5, 1)
    assert stats.totals.cross_side_stale == 1
    assert stats.totals.local_seconds > 0
    assert 0 < stats.work_lost_fraction < 1
    await upstream.set_reachability("up")
    assert upstream.accepted_shares == accepted


async def test_an_unanswered_share_moves_the_miner_to_local_jobs(
    make_proxy: MakeProxy, connect: Connect, upstream: StratumPool
) -> None:
    proxy = await make_proxy(reply_timeout=0.3, retry_delay=30)
    client = await miner(connect, proxy, "site.m1")
    jobs = len(client.jobs)
    await upstream.set_reachability("blackhole")
    reply = await share(client, client.jobs[-1], request_id=5)
    # The share was lost with the upstream: answered stale, then a local job at once.
    assert (reply["id"], reply["result"], reply["error"][0]) == (5, False, 21)
    await client.wait_for(lambda: newest_clean(client, jobs) is not None, 2)
    stats = proxy.stats()
    assert stats.fallbacks == {Fallback.REPLY_TIMEOUT: 1}
    assert stats.totals.upstream_lost == 1
    assert stats.upstream_healthy  # only the caller declares the whole upstream down
    assert not client.closed


async def test_a_silent_upstream_connection_moves_the_miner_to_local_jobs(
    make_proxy: MakeProxy, connect: Connect, upstream: StratumPool
) -> None:
    proxy = await make_proxy(silence_timeout=0.3, retry_delay=30)
    client = await miner(connect, proxy, "site.m1")
    jobs = len(client.jobs)
    await upstream.set_reachability("blackhole")
    # Nothing asked, nothing heard: the deadline alone gives the upstream up.
    await client.wait_for(lambda: newest_clean(client, jobs) is not None, 2)
    assert proxy.stats().fallbacks == {Fallback.SILENT: 1}
    assert not client.closed


async def test_back_up_moves_miners_in_batches_onto_fresh_upstream_connections(
    make_proxy: MakeProxy, connect: Connect, upstream: StratumPool
) -> None:
    proxy = await make_proxy(batch_size=2, batch_interval=0.3)
    clients = [await miner(connect, proxy, f"site.m{i}", xnsub=True) for i in range(5)]
    proxy.upstream_down("probe")
    for client in clients:
        await client.wait_for(partial(on_local_job, client))
    local = [c.jobs[-1] for c in clients]
    connections = upstream.connections_total
    before = [len(c.notifications) for c in clients]
    proxy.upstream_up()
    moved: dict[int, float] = {}

    def back() -> bool:
        for index, client in enumerate(clients):
            if index not in moved and client.jobs[-1].job_id == upstream.current_job.job_id:
                moved[index] = time.monotonic()
        return len(moved) == 5

    await until(back, "every miner back on the upstream")
    assert upstream.connections_total == connections + 5  # a fresh connection each
    times = sorted(moved.values())
    # Five miners in batches of two: three batches, 0.3 s apart.
    assert times[-1] - times[0] >= 0.5
    for client, count in zip(clients, before, strict=True):
        methods = [n["method"] for n in client.notifications[count:]]
        assert methods[:3] == ["mining.set_extranonce", "mining.set_difficulty", "mining.notify"]
        first, size = client.notifications[count]["params"]
        client.extranonce1, client.extranonce2_size = first, size
        assert client.jobs[-1].clean
    stats = proxy.stats()
    assert (stats.on_upstream, stats.totals.moves_back) == (5, 5)
    # Upstream shares resume with the new extranonce; a local job's share is stale.
    for client in clients:
        assert (await share(client, client.jobs[-1]))["result"] is True
    reply = await share(clients[0], local[0])
    assert (reply["result"], reply["error"][0]) == (False, 21)
    assert upstream.accepted_shares == 5
    assert proxy.stats().totals.cross_side_stale == 1


async def test_a_miner_without_extranonce_subscription_is_asked_to_reconnect(
    make_proxy: MakeProxy, connect: Connect, upstream: StratumPool
) -> None:
    proxy = await make_proxy()
    client = await miner(connect, proxy, "site.m1")
    proxy.upstream_down("probe")
    await client.wait_for(partial(on_local_job, client))
    count = len(client.notifications)
    proxy.upstream_up()
    await client.wait_closed(5)
    assert [n["method"] for n in client.notifications[count:]] == ["client.reconnect"]
    # It comes back to the proxy and is relayed from its first line.
    again = await miner(connect, proxy, "site.m1")
    assert again.jobs[-1].job_id == upstream.current_job.job_id
    assert (await share(again, again.jobs[-1]))["result"] is True


async def test_a_miner_connecting_during_an_outage_is_served_locally(
    make_proxy: MakeProxy, connect: Connect, upstream: StratumPool
) -> None:
    await upstream.set_reachability("refuse")
    proxy = await make_proxy(retry_delay=30)
    client = await miner(connect, proxy, "site.m1", xnsub=True)
    assert (await share(client, client.jobs[-1]))["result"] is True
    stats = proxy.stats()
    assert stats.fallbacks == {Fallback.CONNECT_FAILED: 1}
    assert stats.totals.local_accepted == 1
    await upstream.set_reachability("up")
    count = len(client.notifications)
    proxy.upstream_up()
    await client.wait_for(lambda: proxy.stats().on_upstream == 1)
    methods = [n["method"] for n in client.notifications[count:]]
    assert methods[0] == "mining.set_extranonce"
    client.extranonce1 = client.notifications[count]["params"][0]
    await client.wait_for(lambda: client.jobs[-1].job_id == upstream.current_job.job_id)
    assert (await share(client, client.jobs[-1]))["result"] is True
    assert upstream.workers["site.m1"].accepted == 1


BAD_INPUT = [
    (b"this is not json\n", Fallback.GARBAGE),
    (b'{"id":null,"method":"mining.mine_for_me","params":[]}\n', Fallback.UNKNOWN_METHOD),
    (
        b'{"id":null,"method":"client.reconnect","params":["evil.example.com",3333,0]}\n',
        Fallback.FOREIGN_RECONNECT,
    ),
    (b'{"id":null,"method":"x","params":["' + b"a" * 70_000 + b'"]}\n', Fallback.OVERSIZE_LINE),
    (b'{"id":null,"method":"mining.set_difficulty","params":[0]}\n', Fallback.BAD_DIFFICULTY),
    (b"[1, 2, 3]\n", Fallback.GARBAGE),
    (b'{"id":null,"method":5,"params":[]}\n', Fallback.GARBAGE),
    (b'{"id":null,"method":"mining.notify","params":["j1"]}\n', Fallback.GARBAGE),
    (b'{"id":null,"method":"mining.set_extranonce","params":["zz",-1]}\n', Fallback.BAD_EXTRANONCE),
    # A miner that did not subscribe to extranonce changes cannot take one.
    (
        b'{"id":null,"method":"mining.set_extranonce","params":["0a0b0c0d",4]}\n',
        Fallback.BAD_EXTRANONCE,
    ),
]


@pytest.mark.parametrize(("line", "reason"), BAD_INPUT, ids=[r for _, r in BAD_INPUT])
async def test_bad_upstream_input_falls_back_to_local_jobs_and_says_why(
    make_proxy: MakeProxy,
    connect: Connect,
    upstream: StratumPool,
    line: bytes,
    reason: Fallback,
) -> None:
    proxy = await make_proxy(retry_delay=30)
    client = await miner(connect, proxy, "site.m1")
    jobs, difficulty = len(client.jobs), client.difficulty
    assert upstream.inject(line) == 1
    await client.wait_for(lambda: newest_clean(client, jobs) is not None, 2)
    assert not client.closed
    assert client.difficulty == difficulty  # never the upstream's 0
    stats = proxy.stats()
    assert stats.fallbacks == {reason: 1}
    assert stats.miners[0].last_fallback is not None
    assert stats.miners[0].last_fallback.startswith(str(reason))
    assert stats.miners[0].side == "local"
    job = newest_clean(client, jobs)
    assert job is not None
    assert (await share(client, job))["result"] is True


async def test_an_upstream_reply_the_miner_could_not_parse_falls_back(
    make_proxy: MakeProxy, connect: Connect, upstream: StratumPool
) -> None:
    proxy = await make_proxy(retry_delay=30)
    client = await miner(connect, proxy, "site.m1")
    jobs = len(client.jobs)
    await upstream.set_reachability("blackhole")  # the share is held, never answered
    sent = client.send("mining.submit", client.solve(client.jobs[-1]))
    await until(
        lambda: any(s.held_in for s in upstream._sessions),
        "the share held upstream",
    )
    # The proxy's ids: configure 1, subscribe 2, authorize 3, the share 4.
    upstream.inject(b'{"id":4,"result":1e999,"error":null}\n')
    await client.wait_for(lambda: sent in client.replies and has_clean_job(client, jobs), 2)
    assert client.replies[sent]["error"][0] == 21  # stale: lost with the upstream
    assert proxy.stats().fallbacks == {Fallback.GARBAGE: 1}
    assert proxy.stats().totals.upstream_lost == 1


async def test_a_reconnect_to_the_same_pool_moves_the_miner_back_at_once(
    make_proxy: MakeProxy, connect: Connect, upstream: StratumPool
) -> None:
    proxy = await make_proxy(retry_delay=30)
    client = await miner(connect, proxy, "site.m1", xnsub=True)
    connections = upstream.connections_total
    upstream.inject(b'{"id":null,"method":"client.reconnect","params":[]}\n')
    await until(lambda: upstream.connections_total == connections + 1, "a fresh connection")
    await until(lambda: proxy.stats().on_upstream == 1, "the miner relayed again")
    assert proxy.stats().fallbacks == {Fallback.RECONNECT: 1}
    assert not client.closed


async def test_stopping_the_proxy_closes_every_miner_connection(
    make_proxy: MakeProxy, connect: Connect, upstream: StratumPool
) -> None:
    proxy = await make_proxy()
    clients = [await miner(connect, proxy, f"site.m{i}") for i in range(3)]
    proxy.upstream_down("probe")
    await proxy.stop()
    for client in clients:
        await client.wait_closed(5)
    assert not proxy.running
    await until(lambda: upstream.connections == 0, "upstream connections closed")


async def test_connections_over_the_cap_are_refused(
    make_proxy: MakeProxy, connect: Connect
) -> None:
    proxy = await make_proxy(max_connections=1)
    await miner(connect, proxy, "site.m1")
    extra = await connect(proxy)
    await extra.wait_closed(5)
    assert proxy.stats().connections_refused == 1


async def test_an_overloaded_proxy_hands_the_miners_to_their_own_pools(
    make_proxy: MakeProxy, connect: Connect, caplog: pytest.LogCaptureFixture
) -> None:
    proxy = await make_proxy(overload_lag=0.2, overload_cooldown=30)
    clients = [await miner(connect, proxy, f"site.m{i}") for i in range(2)]
    # An event loop blocked again and again (what an overloaded Home Assistant does): each
    # block makes one of the proxy's checks late.
    for _ in range(OVERLOAD_TICKS):
        time.sleep(0.5)  # noqa: ASYNC251 - blocking the loop is the point
        await asyncio.sleep(0.01)
    for client in clients:
        await client.wait_closed(5)
    stats = proxy.stats()
    assert (stats.overloads, stats.connections) == (1, 0)
    assert "Stratum proxy overloaded" in caplog.text
    # During the cool-down a miner that comes back is refused (its firmware stays on its
    # own pool), instead of loading the proxy again.
    again = await connect(proxy)
    await again.wait_closed(5)
    assert proxy.stats().connections_refused == 1


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"upstream_port": 0}, "host and a port"),
        ({"reply_timeout": 0}, "reply_timeout"),
        ({"batch_size": 0}, "batch_size"),
        ({"overload_lag": -1}, "overload_lag"),
    ],
)
def test_bad_proxy_settings_are_refused(kwargs: dict[str, Any], message: str) -> None:
    settings: dict[str, Any] = {"upstream_host": "pool.example", "upstream_port": 3333} | kwargs
    with pytest.raises(ValueError, match=message):
        ProxyConfig(**settings)


async def test_simulated_miners_hash_on_through_an_upstream_blackhole(
    loopback_network: None,
) -> None:
    # cgminer takes no extranonce change: it is asked to reconnect when moved back.
    async with running_site(
        "whatsminer=1,antminer=1,braiins=1,cgminer=1",
        miners=4,
        failover_delay_s=5.0,
        share_interval_s=0.1,
        job_interval_s=0.5,
    ) as site:
        pool = site.pool
        assert pool is not None
        config = ProxyConfig(
            "127.0.0.1",
            pool.port,
            batch_size=2,
            batch_interval=0.1,
            local=PoolConfig(vardiff=STILL),
        )
        proxy = StratumProxy(config)
        await proxy.start("127.0.0.1", 0)
        try:
            # The proxy first, the upstream itself second (as the HA side sets them).
            url = f"stratum+tcp://127.0.0.1:{proxy.port}"
            upstream_url = f"stratum+tcp://127.0.0.1:{pool.port}"
            users = {m.index: m.pools[0].user for m in site.miners}
            for m in site.miners:
                m.set_pools([(url, users[m.index], "x"), (upstream_url, users[m.index], "x")])
            await until(
                lambda: all(
                    m.pool == url
                    and pool.workers.get(users[m.index], None) is not None
                    and pool.workers[users[m.index]].accepted >= 2
                    for m in site.miners
                ),
                "every miner relayed, shares upstream",
                20,
            )
            code, _ = await control(site, "POST", "/api/internet", {"mode": "blackhole"})
            assert code == 200
            proxy.upstream_down("handshake probe failed")
            await until(lambda: proxy.stats().totals.local_accepted >= 20, "local shares", 20)
            assert all(m.pool == url and m.hashing for m in site.miners)  # none failed over
            accepted = {u: pool.workers[u].accepted for u in users.values()}

            await control(site, "POST", "/api/internet", {"mode": "up"})
            proxy.upstream_up()
            await until(
                lambda: proxy.stats().on_upstream == 4
                and all(pool.workers[u].accepted > n + 2 for u, n in accepted.items()),
                "every miner back upstream, shares resumed",
                20,
            )
            code, state = await control(site, "GET", "/api/state")
            assert code == 200
            gaps = [m["stratum"]["longest_gap_s"] for m in state["miners"]]
            # Only the cgminer's reconnect leaves it without a job, for a moment.
            assert max(gaps) == state["site"]["max_job_gap_s"]
            assert state["site"]["max_job_gap_s"] < 1.0, gaps
            # Measured afresh on request (a check that wants an outage's gaps alone): the
            # cgminer's reconnect above is forgotten, nobody is without a job now.
            assert state["site"]["max_job_gap_s"] > 0
            code, reset = await control(site, "POST", "/api/job_gaps/reset", {})
            assert (code, reset) == (200, {"max_job_gap_s": 0.0})
            assert all(m.pool == url for m in site.miners)
            stats = proxy.stats()
            assert stats.totals.moves_back == 4
            assert stats.fallbacks == {Fallback.UPSTREAM_DOWN: 4}
        finally:
            await proxy.stop()


async def test_an_extranonce_change_reaches_a_miner_that_subscribed_to_it(
    make_proxy: MakeProxy, connect: Connect, upstream: StratumPool
) -> None:
    proxy = await make_proxy(retry_delay=30)
    client = await miner(connect, proxy, "site.m1", xnsub=True)
    count = len(client.notifications)
    assert upstream.inject(
        b'{"id":null,"method":"mining.set_extranonce","params":["0a0b0c0d",4]}\n'
    )
    await client.wait_for(lambda: len(client.notifications) > count, 2)
    assert client.notifications[count]["method"] == "mining.set_extranonce"
    assert client.notifications[count]["params"] == ["0a0b0c0d", 4]
    assert proxy.stats().fallbacks == {}
    assert proxy.stats().miners[0].side == "upstream"


async def test_malformed_miner_lines_are_answered_then_the_miner_is_closed(
    make_proxy: MakeProxy, connect: Connect
) -> None:
    proxy = await make_proxy(local=PoolConfig(vardiff=STILL, max_malformed=2))
    client = await miner(connect, proxy, "site.m1")
    for count in (1, 2):
        client.send_raw(b"{not json\n")
        await client.wait_for(lambda n=count: len(client.unmatched) >= n, 2)
        assert "Malformed request" in str(client.unmatched[-1]["error"])
    assert not client.closed
    client.send_raw(b"{still not json\n")
    await client.wait_closed(5)
    await until(lambda: proxy.stats().connections == 0, "the connection gone")


async def test_a_move_back_the_upstream_refuses_stays_on_local_jobs(
    make_proxy: MakeProxy, connect: Connect, upstream: StratumPool
) -> None:
    proxy = await make_proxy(retry_delay=30)
    client = await miner(connect, proxy, "site.m1")
    proxy.upstream_down("handshake probe failed")
    await until(lambda: proxy.stats().on_local == 1, "on local jobs")
    await upstream.set_reachability("refuse")
    proxy.upstream_up()
    await until(
        lambda: proxy.stats().fallbacks.get(Fallback.CONNECT_FAILED, 0) >= 1,
        "the refused connection counted",
    )
    assert not client.closed
    assert proxy.stats().miners[0].side == "local"
    job = client.jobs[-1]
    assert job.job_id.startswith("L")
    assert (await share(client, job))["result"] is True


async def test_bad_requests_during_an_outage_are_answered_locally(
    make_proxy: MakeProxy, connect: Connect
) -> None:
    proxy = await make_proxy()
    proxy.upstream_down("handshake probe failed")
    client = await connect(proxy)
    # Each answered with a reason, none closes the connection.
    reply = await client.call("mining.authorize", ["", "x"])
    assert reply["error"][1] == "Invalid worker name"
    reply = await client.call("mining.configure", ["version-rolling", {}])
    assert reply["error"][1] == "Invalid configure params"
    reply = await client.call("mining.configure", [["minimum-difficulty"], {}])
    assert reply["result"] == {"minimum-difficulty": False}
    reply = await client.call("mining.mine_for_me", [])
    assert reply["error"][1] == "Method not found"
    assert (await client.call("mining.suggest_difficulty", [TINY * 4]))["result"] is True
    assert (await client.call("mining.extranonce.subscribe", []))["result"] is True
    await client.handshake("site.m1", "pw")
    # Served locally at the difficulty it suggested, within the local bounds.
    await client.wait_for(lambda: bool(client.jobs) and client.jobs[-1].job_id.startswith("L"))
    assert client.difficulty == TINY * 4
    assert not client.closed


async def test_a_version_mask_is_passed_on_and_a_message_ignored(
    make_proxy: MakeProxy, connect: Connect, upstream: StratumPool
) -> None:
    proxy = await make_proxy(retry_delay=30)
    client = await miner(connect, proxy, "site.m1")
    count = len(client.notifications)
    assert upstream.inject(b'{"id":null,"method":"client.show_message","params":["hello"]}\n')
    assert upstream.inject(
        b'{"id":null,"method":"mining.set_version_mask","params":["1fffe000"]}\n'
    )
    await client.wait_for(lambda: len(client.notifications) > count, 2)
    # The message is the pool's to the operator, not the miner's; the mask is the miner's.
    assert [n["method"] for n in client.notifications[count:]] == ["mining.set_version_mask"]
    assert proxy.stats().fallbacks == {}


async def test_local_work_is_refreshed_and_a_silent_connection_is_closed(
    make_proxy: MakeProxy, connect: Connect
) -> None:
    local = PoolConfig(vardiff=STILL, job_interval=0.2, handshake_timeout=0.3)
    proxy = await make_proxy(local=local)
    proxy.upstream_down("handshake probe failed")
    client = await miner(connect, proxy, "site.m1")
    # A fresh local job every interval, not clean: the miner keeps its work going.
    count = len(client.jobs)
    await client.wait_for(lambda: len(client.jobs) >= count + 2, 3)
    assert all(job.job_id.startswith("L") and not job.clean for job in client.jobs[count:])
    # A connection that never subscribes and authorizes is closed after the timeout.
    silent = await connect(proxy)
    await silent.wait_closed(3)
    assert not client.closed
