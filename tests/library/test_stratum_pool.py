"""The local Stratum pool over real sockets, with a miner that solves real shares."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
import json
import logging
import socket
import time
from typing import Any

import pytest

from custom_components.bitcoin_mining.miningsite.exceptions import (
    LocalPoolError,
    MiningSiteError,
    PoolPortInUseError,
)
from custom_components.bitcoin_mining.miningsite.stratum import (
    DEFAULT_PORT,
    LocalPool,
    PoolConfig,
    VardiffConfig,
)
from devtools.steps import poll_until
from devtools.stratum import StratumClient
from tests.library.conftest import STILL, TINY, Connect

type MakePool = Callable[..., Awaitable[LocalPool]]


@pytest.fixture
async def make_pool(loopback_network: None) -> AsyncIterator[MakePool]:
    pools: list[LocalPool] = []

    async def make(**overrides: Any) -> LocalPool:
        overrides.setdefault("vardiff", STILL)
        pool = LocalPool(PoolConfig(**overrides))
        await pool.start("127.0.0.1", 0)
        pools.append(pool)
        return pool

    yield make
    for pool in pools:
        await pool.stop()


@pytest.fixture
async def connect(make_pool: MakePool) -> AsyncIterator[Connect]:
    clients: list[StratumClient] = []

    async def open_client(pool: LocalPool, **kwargs: Any) -> StratumClient:
        assert pool.port is not None
        client = await StratumClient.connect("127.0.0.1", pool.port, **kwargs)
        clients.append(client)
        return client

    yield open_client
    for client in clients:
        await client.close()


async def until(condition: Callable[[], bool], what: str) -> None:
    """Until condition() holds, polled (the pool's own state has no event to wait on)."""

    async def check() -> bool:
        return condition()

    await poll_until(check, 15, what)


def kinds(messages: list[dict[str, Any]]) -> list[str]:
    """Each message as its method, or its reply id."""
    return [m.get("method") or f"reply {m['id']}" for m in messages]


async def test_a_bitaxe_pipelines_its_handshake(make_pool: MakePool, connect: Connect) -> None:
    pool = await make_pool()
    client = await connect(pool)
    # The ESP-Miner log of the fact sheet: four requests in one go, before any reply.
    client.send_raw(
        b'{"id":1,"method":"mining.configure","params":[["version-rolling"],'
        b'{"version-rolling.mask":"ffffffff"}]}\n'
        b'{"id":2,"method":"mining.subscribe","params":["bitaxe/BM1368/v2.4.0-6-g04d027b"]}\n'
        b'{"id":3,"method":"mining.authorize","params":["user.worker","123"]}\n'
        b'{"id":4,"method":"mining.suggest_difficulty","params":[1000]}\n'
    )
    await client.wait_for(lambda: len(client.jobs) == 2)
    assert kinds(client.messages) == [
        "reply 1",
        "reply 2",
        "reply 3",
        "mining.set_difficulty",
        "mining.notify",
        "reply 4",
        "mining.set_difficulty",
        "mining.notify",
    ]
    configure, subscribe, authorize = client.messages[:3]
    assert configure == {
        "id": 1,
        "error": None,
        "result": {"version-rolling": True, "version-rolling.mask": "1fffe000"},
    }
    subscriptions, extranonce1, extranonce2_size = subscribe["result"]
    assert [s[0] for s in subscriptions] == ["mining.set_difficulty", "mining.notify"]
    assert len(extranonce1) == 8
    int(extranonce1, 16)
    assert extranonce2_size == 8
    assert authorize == {"id": 3, "result": True, "error": None}
    assert client.messages[5] == {"id": 4, "result": True, "error": None}
    # The suggestion is adopted within the bounds: the maximum here.
    assert client.difficulties == [TINY, 2.0**-16]
    first, again = client.jobs
    assert first.job_id == again.job_id
    assert first.clean
    assert again.clean
    assert (first.version, first.nbits, first.merkle_branch) == ("20000000", "1d00ffff", ())
    assert abs(int(first.ntime, 16) - time.time()) < 60
    assert len(first.prevhash) == 64
    notify = client.messages[4]
    assert notify["id"] is None
    assert len(notify["params"]) == 9
    stats = pool.stats()
    assert (stats.connections, stats.miners, stats.workers) == (1, 1, ("user.worker",))


async def test_ids_are_echoed_exactly(make_pool: MakePool, connect: Connect) -> None:
    pool = await make_pool()
    client = await connect(pool)
    for request_id in ("s", "mining.subscribe", 2**62, 0, -5, 1.5):
        reply = await client.call("mining.subscribe", [], request_id=request_id)
        assert reply["id"] == request_id
        assert type(reply["id"]) is type(request_id)
    # A request with a null id is still answered (some clients wait for it).
    client.send_raw(b'{"id":null,"method":"mining.extranonce.subscribe","params":[]}\n')
    await client.wait_for(lambda: bool(client.unmatched))
    assert client.unmatched == [{"id": None, "result": True, "error": None}]


async def test_configure_answers_every_extension(make_pool: MakePool, connect: Connect) -> None:
    pool = await make_pool()
    client = await connect(pool)
    reply = await client.call(
        "mining.configure",
        [
            ["version-rolling", "minimum-difficulty", "subscribe-extranonce"],
            {
                "version-rolling.mask": "00ffe000",
                "version-rolling.min-bit-count": 2,
                "minimum-difficulty.value": 2048,
            },
        ],
    )
    assert reply["result"] == {
        "version-rolling": True,
        "version-rolling.mask": "00ffe000",
        "minimum-difficulty": False,
        "subscribe-extranonce": False,
    }
    for params in (
        [["version-rolling"], {"version-rolling.mask": "zz"}],
        [["version-rolling"], {"version-rolling.mask": 7}],
        [["version-rolling"], {"version-rolling.mask": "123456789"}],
        ["version-rolling"],
        [[1], {}],
        [["version-rolling"], []],
        [],
    ):
        reply = await client.call("mining.configure", params)
        assert reply["error"][0] == 20, params
    # The connection stays usable, and without a mask in the options ffffffff is assumed.
    reply = await client.call("mining.configure", [["version-rolling"]])
    assert reply["result"] == {"version-rolling": True, "version-rolling.mask": "1fffe000"}
    assert not client.closed


async def test_every_connection_gets_its_own_extranonce1(
    make_pool: MakePool, connect: Connect
) -> None:
    pool = await make_pool()
    clients = [await connect(pool) for _ in range(30)]
    replies = await asyncio.gather(
        *(c.call("mining.subscribe", ["cgminer/4.11.1"]) for c in clients)
    )
    extranonces = [reply["result"][1] for reply in replies]
    assert len(set(extranonces)) == 30
    assert all(len(e) == 8 and int(e, 16) >= 0 for e in extranonces)
    assert {reply["result"][2] for reply in replies} == {8}
    # Subscribing again keeps the extranonce (a share in flight stays valid).
    again = await clients[0].call("mining.subscribe", [])
    assert again["result"][1] == extranonces[0]
    stats = pool.stats()
    assert (stats.connections, stats.miners, stats.connections_total) == (30, 0, 30)


async def test_authorize_logs_worker_names_never_passwords(
    make_pool: MakePool, connect: Connect, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, "custom_components.bitcoin_mining.miningsite.stratum")
    pool = await make_pool()
    client = await connect(pool)
    await client.handshake("acme.rack4-m17", "pw-s3cret-9F2")
    for worker in (7, "", None, "w" * 300):
        reply = await client.call("mining.authorize", [worker, "x"])
        assert (reply["result"], reply["error"][0]) == (False, 20)
    reply = await client.call("mining.authorize", [])
    assert reply["error"][0] == 20
    other = await connect(pool)
    await other.handshake("acme.rack4-m18", "pw-other-77")
    assert pool.stats().workers == ("acme.rack4-m17", "acme.rack4-m18")
    text = caplog.text
    assert "acme.rack4-m17" in text
    assert "acme.rack4-m18" in text
    assert "pw-s3cret-9F2" not in text
    assert "pw-other-77" not in text


async def test_too_many_workers_on_one_connection_are_refused(
    make_pool: MakePool, connect: Connect
) -> None:
    pool = await make_pool()
    client = await connect(pool)
    results = [(await client.call("mining.authorize", [f"w{n}", ""]))["result"] for n in range(17)]
    assert results == [True] * 16 + [False]
    # A name already authorized is still fine.
    assert (await client.call("mining.authorize", ["w3", ""]))["result"] is True


async def test_unknown_methods_are_answered_and_the_connection_kept(
    make_pool: MakePool, connect: Connect
) -> None:
    pool = await make_pool()
    client = await connect(pool)
    assert (await client.call("mining.extranonce.subscribe", []))["result"] is True
    for method in ("mining.ping", "mining.get_transactions", "mining.suggest_difficulty(1000"):
        reply = await client.call(method, [])
        assert reply == {"id": reply["id"], "result": None, "error": [-3, "Method not found", None]}
    # A reply from the client (to nothing we asked) is ignored, not answered.
    client.send_raw(b'{"id":99,"result":"cgminer/4.11.1","error":null}\n')
    await client.handshake()
    assert not client.closed
    assert 99 not in client.replies


async def test_real_shares_are_accepted_with_5_or_6_params(
    make_pool: MakePool, connect: Connect
) -> None:
    pool = await make_pool(merkle_branches=2)
    client = await connect(pool)
    job = await client.handshake()
    assert len(job.merkle_branch) == 2
    assert client.version_mask == 0x1FFFE000
    started = time.monotonic()
    replies = [
        await client.call("mining.submit", client.solve(job)),
        await client.call("mining.submit", client.solve(job, version_bits=0x00002000)),
        await client.call("mining.submit", client.solve(job, version_bits=0x1FFFE000)),
    ]
    elapsed = time.monotonic() - started
    assert [r["result"] for r in replies] == [True, True, True]
    assert [r["error"] for r in replies] == [None, None, None]
    # An S21 behind a rental proxy sends 6 params without configure: accepted too.
    bare = await connect(pool)
    bare_job = await bare.handshake("site.m2", configure=False)
    reply = await bare.call("mining.submit", bare.solve(bare_job, version_bits=0x00004000))
    assert reply["result"] is True
    stats = pool.stats()
    assert (stats.shares_accepted, stats.shares_rejected) == (4, 0)
    assert stats.accepted_per_minute == 4
    # Four shares of difficulty 2**-24 (about 256 hashes each), over at most the test's age.
    assert 0 < stats.hashrate <= 4 * 256.01 / elapsed


async def test_rejected_shares_carry_the_standard_codes(
    make_pool: MakePool, connect: Connect
) -> None:
    pool = await make_pool()
    client = await connect(pool)
    job = await client.handshake()

    async def submit(params: list[Any]) -> tuple[Any, Any]:
        reply = await client.call("mining.submit", params)
        return reply["result"], reply["error"] and reply["error"][:2]

    good = client.solve(job)
    assert await submit(good) == (True, None)
    assert await submit(good) == (False, [22, "Duplicate share"])
    low = client.solve(job, missing=TINY)
    assert await submit(low) == (False, [23, "Low difficulty share"])
    assert await submit([*good[:1], "zz", *good[2:]]) == (False, [21, "Job not found"])
    assert (await submit(good[:4]))[1][0] == 20
    assert (await submit([*good, "ffffffff"]))[1][0] == 20  # bits outside the mask
    assert (await submit([*good[:2], good[2][:-2], *good[3:]]))[1][0] == 20  # 7-byte extranonce2
    assert (await submit([*good[:4], "xyz"]))[1][0] == 20
    # A new block: every older job is stale, the new one takes shares.
    pool.new_job(clean=True)
    new = await client.wait_jobs(2)
    assert new.clean
    assert new.prevhash != job.prevhash
    assert await submit(client.solve(job)) == (False, [21, "Stale job"])
    assert await submit(client.solve(new)) == (True, None)
    # Before subscribe, and subscribed but not authorized.
    stranger = await connect(pool)
    reply = await stranger.call("mining.submit", good)
    assert reply["error"][:2] == [25, "Not subscribed"]
    await stranger.call("mining.subscribe", [])
    reply = await stranger.call("mining.submit", good)
    assert reply["error"][:2] == [24, "Unauthorized worker"]
    stats = pool.stats()
    assert stats.shares_accepted == 2
    assert stats.rejected == {
        "duplicate": 1,
        "low_difficulty": 1,
        "unknown_job": 1,
        "malformed": 4,
        "stale": 1,
        "not_subscribed": 1,
        "unauthorized": 1,
    }
    assert stats.shares_rejected == 10
    assert not client.closed


async def test_a_fresh_job_comes_regularly_and_keeps_older_jobs_valid(
    make_pool: MakePool, connect: Connect
) -> None:
    with pytest.raises(ValueError, match="job_interval"):
        PoolConfig(job_interval=31)
    assert PoolConfig().job_interval <= 30
    pool = await make_pool(job_interval=0.2, keep_jobs=2)
    client = await connect(pool)
    first = await client.handshake()
    refresh = await client.wait_jobs(2)
    assert not refresh.clean
    assert refresh.job_id != first.job_id
    assert (refresh.prevhash, refresh.coinb1, refresh.coinb2) == (
        first.prevhash,
        first.coinb1,
        first.coinb2,
    )
    assert int(refresh.ntime, 16) >= int(first.ntime, 16)
    # Refreshes are sent at the connection's difficulty; no new difficulty was needed.
    assert client.difficulties == [TINY]
    # A share for the previous job, found while the refresh was in flight, still counts.
    assert (await client.call("mining.submit", client.solve(first)))["result"] is True
    # Two refreshes later the first job has been pushed out.
    await client.wait_jobs(4)
    reply = await client.call("mining.submit", client.solve(first))
    assert reply["error"][:2] == [21, "Stale job"]


async def test_a_suggested_difficulty_is_adopted(make_pool: MakePool, connect: Connect) -> None:
    pool = await make_pool()
    client = await connect(pool)
    for value in ("abc", 0, -1, True, None, [1]):
        reply = await client.call("mining.suggest_difficulty", [value])
        assert reply["error"][:2] == [20, "Invalid difficulty"], value
    assert (await client.call("mining.suggest_difficulty", [2.0**-20]))["result"] is True
    job = await client.handshake()
    assert client.difficulties == [9.537e-07]
    assert job.difficulty == 9.537e-07
    # Below the minimum: the minimum, sent with a clean job at once.
    assert (await client.call("mining.suggest_difficulty", [1e-12]))["result"] is True
    again = await client.wait_jobs(2)
    assert client.difficulties == [9.537e-07, TINY]
    assert again.clean
    assert again.difficulty == TINY
    assert (await client.call("mining.submit", client.solve(again)))["result"] is True


async def test_vardiff_raises_the_difficulty_of_a_fast_miner(
    make_pool: MakePool, connect: Connect
) -> None:
    vardiff = VardiffConfig(
        shares_per_minute=6,
        start_difficulty=TINY,
        min_difficulty=TINY,
        max_difficulty=2.0**-20,
        retarget_shares=6,
        retarget_seconds=3600,
    )
    pool = await make_pool(vardiff=vardiff)
    client = await connect(pool)
    job = await client.handshake()
    for _ in range(6):
        assert (await client.call("mining.submit", client.solve(job)))["result"] is True
    # Six shares in well under a minute is far above 6 a minute: up to the maximum,
    # announced, then the job again (clean) so the miner uses it at once.
    resent = await client.wait_jobs(2)
    assert client.difficulties == [TINY, 2.0**-20]
    assert client.messages[-2]["method"] == "mining.set_difficulty"
    assert (resent.job_id, resent.clean) == (job.job_id, True)
    # Work on that job may come back at either difficulty.
    assert (await client.call("mining.submit", client.solve(job)))["result"] is True
    # A new job is at the new difficulty only.
    pool.new_job(clean=False)
    new = await client.wait_jobs(3)
    assert new.difficulty == 2.0**-20
    easy = client.solve(new, meeting=TINY, missing=2.0**-20)
    assert (await client.call("mining.submit", easy))["error"][0] == 23
    hard = client.solve(new)
    assert (await client.call("mining.submit", hard))["result"] is True


async def test_vardiff_lowers_the_difficulty_of_a_quiet_miner(
    make_pool: MakePool, connect: Connect
) -> None:
    vardiff = VardiffConfig(
        start_difficulty=2.0**-20, min_difficulty=TINY, max_difficulty=1, retarget_seconds=0.2
    )
    pool = await make_pool(vardiff=vardiff, job_interval=0.2)
    client = await connect(pool)
    await client.handshake()
    await client.wait_for(lambda: len(client.difficulties) >= 3)
    # No shares: a quarter per retarget (after rounding to four digits), down to the minimum.
    assert client.difficulties[:3] == [2.0**-20, 2.384e-07, TINY]


async def test_connections_that_never_handshake_are_closed(
    make_pool: MakePool, connect: Connect
) -> None:
    pool = await make_pool(handshake_timeout=0.3)
    miner = await connect(pool)
    await miner.handshake()
    started = time.monotonic()
    silent = await connect(pool)
    subscribed_only = await connect(pool)
    await subscribed_only.call("mining.subscribe", [])
    await silent.wait_closed()
    await subscribed_only.wait_closed()
    assert time.monotonic() - started >= 0.25
    # The miner that finished its handshake stays, and its timer is long gone.
    assert (await miner.call("mining.extranonce.subscribe", []))["result"] is True
    assert not miner.closed
    stats = pool.stats()
    assert (stats.connections, stats.connections_dropped) == (1, 2)


@pytest.mark.skipif(not hasattr(socket, "TCP_USER_TIMEOUT"), reason="Linux only")
async def test_a_miner_that_vanished_is_given_up_after_two_minutes(
    make_pool: MakePool, connect: Connect
) -> None:
    pool = await make_pool()
    client = await connect(pool)
    await client.handshake()
    (connection,) = pool._connections.values()
    sock = connection.writer.get_extra_info("socket")
    assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT) == 120_000


async def test_the_connection_cap_refuses_extra_connections(
    make_pool: MakePool, connect: Connect
) -> None:
    pool = await make_pool(max_connections=3)
    clients = [await connect(pool) for _ in range(3)]
    for n, client in enumerate(clients):
        await client.handshake(f"m{n}")
    extra = await connect(pool)
    await extra.wait_closed()
    assert pool.stats().connections_refused == 1
    await clients[0].close()
    await until(lambda: pool.stats().connections == 2, "the pool to see a client go")
    late = await connect(pool)
    await late.handshake("late")
    assert pool.stats().connections == 3


async def test_a_line_over_16_kib_drops_only_that_connection(
    make_pool: MakePool, connect: Connect
) -> None:
    pool = await make_pool()
    bystander = await connect(pool)
    await bystander.handshake()
    client = await connect(pool)
    # Exactly 16 KiB before the newline is still a line.
    request = b'{"id":1,"method":"mining.subscribe","params":[]}'
    client.send_raw(request + b" " * (16 * 1024 - len(request)) + b"\n")
    await client.wait_for(lambda: 1 in client.replies)
    client.send_raw(b'{"id":2,"method":"' + b"a" * (16 * 1024) + b'"}\n')
    await client.wait_closed()
    assert 2 not in client.replies
    # One without a newline at all is cut off too.
    endless = await connect(pool)
    endless.send_raw(b"[" * (64 * 1024))
    await endless.wait_closed()
    pool.new_job(clean=False)
    await bystander.wait_jobs(2)
    assert not bystander.closed
    assert pool.stats().connections_dropped == 2


async def test_half_lines_are_joined_and_an_unfinished_one_is_dropped(
    make_pool: MakePool, connect: Connect
) -> None:
    pool = await make_pool()
    client = await connect(pool)
    client.send_raw(b'{"id":1,"method":"mining.sub')
    await asyncio.sleep(0.05)  # so the halves really arrive as two segments
    client.send_raw(b'scribe","params":[]}\n{"id":2,"method":"mining.extranonce.subscribe"')
    client.send_raw(b',"params":[]}\n')
    await client.wait_for(lambda: {1, 2} <= client.replies.keys())
    client.send_raw(b'{"id":3,"method":"mining.authorize","params":["w","')
    await client.close()
    await until(lambda: pool.stats().connections == 0, "the pool to see the client go")
    assert pool.stats().workers == ()
    other = await connect(pool)
    await other.handshake()


async def test_malformed_lines_are_answered_until_the_budget_is_spent(
    make_pool: MakePool, connect: Connect
) -> None:
    pool = await make_pool(max_malformed=4)
    client = await connect(pool)
    # Blank lines are not counted.
    client.send_raw(b"garbage\n\xff\xfe\n[1,2]\n\n\r\n")
    await client.wait_for(lambda: len(client.unmatched) == 3)
    assert [m["error"][0] for m in client.unmatched] == [20, 20, 20]
    assert client.unmatched[0]["error"][1] == "Malformed request: not JSON"
    # A request without a usable method keeps its id in the error reply.
    reply = await client.call("", [])
    assert reply["error"] == [20, "Malformed request: no method", None]
    client.send_raw(b"one too many\n")
    await client.wait_closed()
    assert len(client.unmatched) == 3
    assert pool.stats().connections_dropped == 1


async def test_a_client_that_stops_reading_is_dropped(make_pool: MakePool) -> None:
    pool = await make_pool(write_buffer_limit=4096)
    assert pool.port is not None
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", pool.port))
    _, writer = await asyncio.open_connection(sock=sock)
    request = json.dumps({"id": 1, "method": "mining.extranonce.subscribe", "params": []})
    chunk = (request.encode() + b"\n") * 5000
    try:
        # Requests until the pool gives up on us (its replies pile up unread); the kernel
        # buffers take a few megabytes first.
        for _ in range(1000):
            if pool.stats().connections_dropped:
                break
            writer.write(chunk)
            try:
                await writer.drain()
            except ConnectionError:
                break
        await until(
            lambda: pool.stats().connections_dropped == 1,
            "the pool to drop a client that does not read",
        )
    finally:
        writer.transport.abort()
    assert pool.stats().connections == 0


async def test_a_taken_port_is_a_clear_error(make_pool: MakePool) -> None:
    pool = await make_pool()
    assert pool.running
    assert pool.port is not None
    with pytest.raises(LocalPoolError, match="already running"):
        await pool.start("127.0.0.1", 0)
    second = LocalPool()
    with pytest.raises(PoolPortInUseError) as err:
        await second.start("127.0.0.1", pool.port)
    assert isinstance(err.value, MiningSiteError)
    assert (err.value.host, err.value.port) == ("127.0.0.1", pool.port)
    assert "already in use" in str(err.value)
    assert not second.running
    # Something else on the port (on all interfaces), not a pool.
    listener = socket.socket()
    listener.bind(("", 0))
    listener.listen()
    try:
        with pytest.raises(PoolPortInUseError, match="all interfaces"):
            await second.start(None, listener.getsockname()[1])
    finally:
        listener.close()
    # An address this machine does not have is another error.
    with pytest.raises(LocalPoolError, match="192.0.2.1") as other:
        await second.start("192.0.2.1", 0)
    assert not isinstance(other.value, PoolPortInUseError)
    assert DEFAULT_PORT == 3333


async def test_stop_drops_every_client_and_frees_the_port(
    make_pool: MakePool, connect: Connect
) -> None:
    pool = await make_pool(job_interval=0.5)
    port = pool.port
    assert port is not None
    clients = [await connect(pool) for _ in range(3)]
    await clients[0].handshake()
    await clients[1].call("mining.subscribe", [])
    await pool.stop()
    await pool.stop()
    assert not pool.running
    for client in clients:
        await client.wait_closed()
    again = LocalPool(PoolConfig(vardiff=STILL))
    await again.start("127.0.0.1", port)
    try:
        client = await connect(again)
        await client.handshake()
    finally:
        await again.stop()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"max_connections": 0}, "max_connections"),
        ({"job_interval": 0}, "job_interval"),
        ({"handshake_timeout": -1}, "handshake_timeout"),
        ({"write_timeout": float("nan")}, "write_timeout"),
        ({"write_buffer_limit": 100}, "write_buffer_limit"),
        ({"max_malformed": -1}, "max_malformed"),
    ],
)
def test_bad_pool_settings_are_refused(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        PoolConfig(**kwargs)
