"""Real Stratum v1 in the simulator: share verification, the pool, miners as clients, outages."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
import contextlib
import itertools
import json
import time
from typing import Any

import pytest

from devtools.steps import poll_until
from simulator import Site
from simulator.cli import config_from_args
from simulator.miners import SimMiner
from simulator.pool import StratumPool
from simulator.stratum import (
    Job,
    find_nonce,
    header_prefix,
    rolled_version,
    share_hash,
    target,
)
from tests.simulator.test_miners_fleet import control
from tests.simulator.test_miners_helpers import rpc, running_site

MIX = "whatsminer=1,whatsminer_v3=1,antminer=1,luxos=1,braiins=1,cgminer=1"
# Quick shares and jobs, so that the tests see many of them in a second.
QUICK = {"share_interval_s": 0.1, "job_interval_s": 0.2}


async def until(predicate: Callable[[], object], timeout: float, what: str) -> None:
    """Poll until predicate() holds (a real event), StepError after the deadline."""

    async def check() -> object:
        return predicate()

    await poll_until(check, timeout, what, interval=0.02)


class Client:
    """A raw Stratum client: one JSON line out, one in."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def connect(cls, pool: StratumPool) -> Client:
        return cls(*await asyncio.open_connection(pool.host, pool.port))

    def send(self, request_id: object, method: str, params: list[Any]) -> None:
        line = {"id": request_id, "method": method, "params": params}
        self.writer.write(json.dumps(line).encode() + b"\n")

    async def receive(self, timeout: float = 5) -> dict[str, Any]:
        line = await asyncio.wait_for(self.reader.readline(), timeout)
        assert line, "the pool closed the session"
        message: dict[str, Any] = json.loads(line)
        return message

    async def call(self, request_id: object, method: str, params: list[Any]) -> dict[str, Any]:
        self.send(request_id, method, params)
        return await self.receive()

    async def mine(self, worker: str = "site.w1") -> tuple[str, Job, float]:
        """Subscribe and authorize; extranonce1, the first job and the difficulty."""
        subscribed = await self.call(1, "mining.subscribe", ["test/1"])
        assert (await self.call(2, "mining.authorize", [worker, "secret"]))["result"] is True
        difficulty = (await self.receive())["params"][0]
        notify = await self.receive()
        assert notify["method"] == "mining.notify"
        return subscribed["result"][1], Job.from_params(notify["params"]), difficulty

    def close(self) -> None:
        self.writer.close()


@contextlib.asynccontextmanager
async def stratum_pool(**options: Any) -> AsyncIterator[StratumPool]:
    pool = StratumPool("127.0.0.1", 0, **options)
    await pool.start()
    try:
        yield pool
    finally:
        await pool.stop()


def url_of(pool: StratumPool) -> str:
    return f"stratum+tcp://127.0.0.1:{pool.port}"


# --- share verification: the fact sheet's recorded Bitaxe share (§4) ----------------------

RECORDED = Job(
    "1",
    "171592f223740e92d223f6e68bff25279af7ac4f2246451e0000000200000000",
    "02000000010000000000000000000000000000000000000000000000000000000000000000ffffffff1903c943"
    "255c7075626c69632d706f6f6c5c",
    "ffffffff037a90000000000000160014e6f22ca44dc800e9d049621a3b9a42c509f1c4bc3b0f25000000000016"
    "0014e6f22ca44dc800e9d049621a3b9a42c509f1c4bc0000000000000000266a24aa21a9edbd3d1d916aa0b573"
    "26a2d88ebe1b68a1d7c48585f26d8335fe6a94b62755f64c00000000",
    (
        "175335649d5e8746982969ec88f52e85ac9917106fba5468e699c8879ab974a1",
        "d5644ab3e708c54cd68dc5aedc92b8d3037449687f92ec41ed6e37673d969d4a",
        "5c9ec187517edc0698556cca5ce27e54c96acb014770599ed9df4d4937fbf2b0",
    ),
    "20000000",
    "192495f8",
    "64b3f3ec",
)


def test_the_recorded_bitaxe_share_verifies() -> None:
    version = rolled_version(RECORDED, 0x00002000, 0x1FFFE000)
    assert version == 0x20002000
    prefix = header_prefix(RECORDED, "57a6f098", "c7080000", "64b3f3ec", version)
    assert (prefix + bytes.fromhex("ed460d91")[::-1]).hex() == (
        "00200020f2921517920e7423e6f623d22725ff8b4facf79a1e45462202000000000000006b5d684a704b4a"
        "be62b2375c5326d1fc1dbb61168aff84e920ba28968bf1075fecf3b364f8952419910d46ed"
    )
    hashed = share_hash(prefix, 0xED460D91)
    assert hashed.to_bytes(32, "little")[::-1].hex() == (
        "000000000061d52983863e5c424c00d9e0981874fddf6a8493433e73928a3e4e"
    )
    # Share difficulty 669.87: enough for 512, not for 670.
    assert target(670) < hashed <= target(512)
    # Negative controls: without the version bits, or with another extranonce1, it is no share.
    assert share_hash(header_prefix(RECORDED, "57a6f098", "c7080000", "64b3f3ec"), 0xED460D91) > (
        target(1)
    )
    other = header_prefix(RECORDED, "57a6f099", "c7080000", "64b3f3ec", version)
    assert share_hash(other, 0xED460D91) > target(1)


def test_a_difficulty_must_be_positive() -> None:
    with pytest.raises(ValueError, match="difficulty must be > 0"):
        target(0)
    with pytest.raises(ValueError, match="mining.notify needs 9 params"):
        Job.from_params(["1", "00"])


# --- the pool -----------------------------------------------------------------------------


async def test_pool_handshake_as_a_bitaxe_pipelines_it(loopback_network: None) -> None:
    async with stratum_pool() as pool:
        client = await Client.connect(pool)
        client.send(
            1, "mining.configure", [["version-rolling"], {"version-rolling.mask": "ffffffff"}]
        )
        client.send("s", "mining.subscribe", ["bitaxe/BM1368/v2.4.0"])
        client.send(3, "mining.authorize", ["site.w1", "123"])
        client.send(4, "mining.suggest_difficulty", [1000])
        client.send(5, "mining.extranonce.subscribe", [])
        replies = [await client.receive() for _ in range(7)]
        assert replies[0] == {
            "id": 1,
            "result": {"version-rolling": True, "version-rolling.mask": "1fffe000"},
            "error": None,
        }
        assert replies[1]["id"] == "s"  # the id is echoed as it came
        _, extranonce1, size = replies[1]["result"]
        assert (len(extranonce1), size) == (8, 8)
        assert replies[2] == {"id": 3, "result": True, "error": None}
        assert replies[3]["method"] == "mining.set_difficulty"
        assert replies[4]["method"] == "mining.notify"
        assert replies[4]["params"][8] is True  # the first job is clean
        assert [replies[5]["id"], replies[5]["result"]] == [4, True]
        assert [replies[6]["id"], replies[6]["result"]] == [5, True]
        other = await Client.connect(pool)
        assert (await other.call(1, "mining.subscribe", []))["result"][1] != extranonce1
        client.close()
        other.close()


async def test_pool_verifies_shares(loopback_network: None) -> None:
    async with stratum_pool() as pool:
        client = await Client.connect(pool)
        extranonce1, job, difficulty = await client.mine()
        limit = target(difficulty)
        prefix = header_prefix(job, extranonce1, "00" * 8, job.ntime)
        nonce = find_nonce(prefix, limit)
        assert nonce is not None
        good = ["site.w1", job.job_id, "00" * 8, job.ntime, f"{nonce:08x}"]
        assert (await client.call(10, "mining.submit", good))["result"] is True
        assert (await client.call(11, "mining.submit", good))["error"][0] == 22  # duplicate
        bad = next(n for n in range(1000) if share_hash(prefix, n) > limit)
        low = [*good[:4], f"{bad:08x}"]
        assert (await client.call(12, "mining.submit", low))["error"][:2] == [
            23,
            "Low difficulty share",
        ]
        # Version rolling: a 6th parameter within the negotiated mask (here none: rejected).
        rolled = [*good[:2], "01" * 8, job.ntime, f"{nonce:08x}", "00002000"]
        assert (await client.call(13, "mining.submit", rolled))["error"][0] == 20
        for params, code in (
            (["site.w1", "nope", "00" * 8, job.ntime, "00000000"], 21),
            (["site.w1", job.job_id, "00" * 7, job.ntime, "00000000"], 20),
            (["site.w1", job.job_id, "00" * 8, "xyz", "00000000"], 20),
            (["site.w1", job.job_id, "00" * 8, job.ntime], 20),
            (["site.other", job.job_id, "02" * 8, job.ntime, "00000000"], 24),
            ("not a list", 20),
        ):
            reply = await client.call(20, "mining.submit", params)  # type: ignore[arg-type]
            assert (reply["result"], reply["error"][0]) == (False, code), params
        reply = await client.call(30, "mining.teleport", [])
        assert reply["error"][0] == 20
        assert (await client.call(31, "mining.suggest_difficulty", [1]))["result"] is True

        fresh = await Client.connect(pool)
        assert (await fresh.call(1, "mining.submit", good))["error"][0] == 25  # not subscribed
        assert (pool.workers["site.w1"].accepted, pool.workers["site.w1"].rejected) == (1, 8)
        assert pool.rejected_shares == 10  # also under the names given: "site.other", ""
        client.close()
        fresh.close()


async def test_pool_verifies_rolled_versions(loopback_network: None) -> None:
    async with stratum_pool() as pool:
        client = await Client.connect(pool)
        await client.call(1, "mining.configure", [["version-rolling"], {}])
        extranonce1, job, difficulty = await client.mine()
        version = rolled_version(job, 0x00002000, 0x1FFFE000)
        prefix = header_prefix(job, extranonce1, "11" * 8, job.ntime, version)
        nonce = find_nonce(prefix, target(difficulty))
        assert nonce is not None
        share = ["site.w1", job.job_id, "11" * 8, job.ntime, f"{nonce:08x}", "00002000"]
        assert (await client.call(10, "mining.submit", share))["result"] is True
        outside = [*share[:5], "00000001"]  # a bit outside the mask
        assert (await client.call(11, "mining.submit", outside))["error"][0] == 20
        client.close()


async def test_pool_sends_fresh_jobs_and_keeps_recent_ones(loopback_network: None) -> None:
    async with stratum_pool(job_interval_s=0.05) as pool:
        client = await Client.connect(pool)
        extranonce1, first, difficulty = await client.mine()
        refresh = await client.receive()
        assert refresh["method"] == "mining.notify"
        assert refresh["params"][0] != first.job_id
        assert refresh["params"][8] is False  # a keep-alive refresh, not a new block
        # A share on the older job is still accepted.
        nonce = find_nonce(
            header_prefix(first, extranonce1, "22" * 8, first.ntime), target(difficulty)
        )
        share = ["site.w1", first.job_id, "22" * 8, first.ntime, f"{nonce:08x}"]
        client.send(10, "mining.submit", share)
        while (reply := await client.receive()).get("id") != 10:
            assert reply["method"] == "mining.notify"
        assert reply["result"] is True
        client.close()


# --- miners as Stratum clients --------------------------------------------------------------


def user(miner: SimMiner) -> str:
    return miner.pools[0].user


async def test_every_family_mines_real_shares_on_the_upstream_pool(
    loopback_network: None,
) -> None:
    async with running_site(MIX, miners=6, **QUICK) as site:
        pool = site.pool
        assert pool is not None

        def counted() -> bool:
            return all(
                pool.workers.get(user(m)) is not None
                and pool.workers[user(m)].accepted >= 2
                and m.pools[0].accepted >= 2
                for m in site.miners
            )

        await until(counted, 20, "two verified shares from every miner")
        assert pool.rejected_shares == 0
        assert all(m.pools[0].rejected == 0 and m.pools[0].getworks >= 1 for m in site.miners)
        cgminer = site.miners[5]
        pools = (await rpc(cgminer, "pools"))["POOLS"]
        assert pools[0]["Accepted"] >= 2
        assert (pools[0]["Status"], pools[0]["Stratum Active"]) == ("Alive", True)
        code, state = await control(site, "GET", "/api/state")
        assert code == 200
        assert all(m["stratum"]["connected"] for m in state["miners"])
        assert all(m["stratum"]["accepted"] >= 2 for m in state["miners"])
        assert state["internet"]["shares"]["connections"] >= 6

        # A sleeping miner's mining process is stopped: its session ends; woken, it mines again.
        sleeper = site.miners[0]
        sleeper.stop()
        await until(lambda: pool.connections == 5, 10, "the sleeper's session to end")
        before = pool.workers[user(sleeper)].accepted
        sleeper.start()
        await until(
            lambda: pool.workers[user(sleeper)].accepted > before, 20, "shares after waking"
        )


async def test_a_miner_dialling_a_real_pool_gets_a_tiny_difficulty_or_finds_nothing(
    loopback_network: None,
) -> None:
    # A difficulty far above the tiny one (1: 2**32 hashes) is never burnt on: no share.
    async with (
        stratum_pool(difficulty=1.0, job_interval_s=0.1) as hard,
        running_site("antminer", miners=1, **QUICK) as site,
    ):
        miner = site.miners[0]
        miner.set_pools([(url_of(hard), "site.hard", "x")])
        await until(lambda: miner.link is not None and miner.link.ready, 10, "a session")
        await until(lambda: miner.pools[0].getworks >= 3, 10, "a few jobs")
        assert hard.workers["site.hard"].accepted == hard.workers["site.hard"].rejected == 0


# --- outages --------------------------------------------------------------------------------


async def two_pools(site: Site, local: StratumPool) -> str:
    """Every miner: the upstream pool first, the local pool second; the upstream URL."""
    assert site.pool is not None
    upstream = url_of(site.pool)
    for miner in site.miners:
        name = user(miner)
        miner.set_pools([(upstream, name, "x"), (url_of(local), name, "x")])
    await until(
        lambda: all(
            m.pool == upstream and m.pool_usable(1) and m.pools[0].accepted >= 1
            for m in site.miners
        ),
        20,
        "miners hashing upstream, the local pool probed",
    )
    return upstream


async def test_blackhole_fails_over_to_the_next_pool_after_the_delay(
    loopback_network: None,
) -> None:
    async with (
        stratum_pool(job_interval_s=0.2) as local,
        running_site(
            "whatsminer=1,antminer=1,cgminer=1",
            miners=3,
            failover_delay_s=1.0,
            fallback_s=0.5,
            **QUICK,
        ) as site,
    ):
        upstream = await two_pools(site, local)
        assert site.pool is not None
        started = time.monotonic()
        code, internet = await control(site, "POST", "/api/internet", {"mode": "blackhole"})
        assert (code, internet["up"], internet["mode"]) == (200, False, "blackhole")
        assert all(m.pool == upstream for m in site.miners)  # the firmware waits first
        # Nothing answers: a new connect hangs (the SYN is dropped), no RST.
        with contextlib.suppress(OSError, TimeoutError):
            async with asyncio.timeout(0.5):
                await asyncio.open_connection(site.pool.host, site.pool.port)
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.5):
                await asyncio.open_connection(site.pool.host, site.pool.port)

        local_url = url_of(local)
        await until(lambda: all(m.pool == local_url for m in site.miners), 15, "failover")
        assert time.monotonic() - started >= 0.5  # after the dead-pool delay, not at once
        await until(
            lambda: all(
                local.workers.get(user(m)) and local.workers[user(m)].accepted >= 1
                for m in site.miners
            ),
            15,
            "verified shares on the local pool",
        )
        assert not site.miners[2].pool_alive(0)
        pools = (await rpc(site.miners[2], "pools"))["POOLS"]
        assert (pools[0]["Status"], pools[1]["Stratum Active"]) == ("Dead", True)

        await control(site, "POST", "/api/internet", {"mode": "up"})
        await until(lambda: all(m.pool == upstream for m in site.miners), 15, "fallback")
        upstream_pool = site.pool
        accepted = {user(m): upstream_pool.workers[user(m)].accepted for m in site.miners}
        await until(
            lambda: all(upstream_pool.workers[u].accepted > n for u, n in accepted.items()),
            15,
            "shares upstream again",
        )


async def test_refuse_resets_sessions_and_miners_reconnect_with_backoff(
    loopback_network: None,
) -> None:
    async with running_site("cgminer", miners=1, **QUICK) as site:
        pool, miner = site.pool, site.miners[0]
        assert pool is not None
        assert miner.link is not None
        link = miner.link
        site.fleet.env.reconnect_min_s = 0.05  # type: ignore[union-attr]
        site.fleet.env.reconnect_max_s = 0.4  # type: ignore[union-attr]
        await until(lambda: link.ready and miner.pools[0].accepted >= 1, 20, "a session")

        code, internet = await control(site, "POST", "/api/internet", {"mode": "refuse"})
        assert (code, internet["mode"], internet["up"]) == (200, "refuse", False)
        with pytest.raises(ConnectionRefusedError):
            await asyncio.open_connection(pool.host, pool.port)
        await until(lambda: not miner.pool_alive(0), 5, "the session reset")
        first = len(link.attempts)
        await until(lambda: len(link.attempts) >= first + 6, 20, "six reconnection attempts")
        times = list(link.attempts)[first:]
        gaps = [b - a for a, b in itertools.pairwise(times)]
        # Exponential backoff: 0.1, 0.2, 0.4 s, then capped at 0.4 s (lower bounds: a loaded
        # machine only stretches them).
        for gap, least in zip(gaps, (0.1, 0.2, 0.4, 0.4, 0.4), strict=False):
            assert gap >= least * 0.9, gaps
        assert miner.pool == url_of(pool)  # nothing else alive: it stays and retries

        accepted = pool.workers[user(miner)].accepted
        await control(site, "POST", "/api/internet", {"up": True})
        await until(lambda: pool.workers[user(miner)].accepted > accepted, 15, "shares again")
        assert miner.pool_alive(0)


async def test_flap_never_moves_a_miner(loopback_network: None) -> None:
    async with (
        stratum_pool(job_interval_s=0.2) as local,
        running_site(
            "whatsminer=1,luxos=1,braiins=1", miners=3, failover_delay_s=1.5, **QUICK
        ) as site,
    ):
        upstream = await two_pools(site, local)
        assert site.pool is not None
        downs = site.uplink.downs
        body = {"mode": "flap", "down_s": 0.3, "up_s": 0.6, "down_mode": "blackhole"}
        code, internet = await control(site, "POST", "/api/internet", body)
        assert code == 200
        assert internet["mode"] == "flap"
        assert (internet["down_s"], internet["up_s"]) == (0.3, 0.6)
        moved: list[str] = []

        def flapped_enough() -> bool:
            moved.extend(m.pool for m in site.miners if m.pool != upstream)
            return site.uplink.downs >= downs + 5

        await until(flapped_enough, 30, "five outages of the flap")
        assert moved == []
        await control(site, "POST", "/api/internet", {"mode": "up"})
        assert not any(local.workers.get(user(m)) for m in site.miners)
        pool = site.pool
        accepted = pool.accepted_shares
        await until(lambda: pool.accepted_shares > accepted + 3, 15, "shares upstream")


async def test_degraded_delays_messages_in_order(loopback_network: None) -> None:
    async with running_site("antminer", miners=1, failover_delay_s=5, **QUICK) as site:
        pool = site.pool
        assert pool is not None
        body = {"mode": "degraded", "latency_ms": 300, "jitter_ms": 0, "loss": 1.0}
        code, internet = await control(site, "POST", "/api/internet", body)
        assert (code, internet["up"], internet["loss"]) == (200, True, 1.0)
        client = await Client.connect(pool)
        started = time.monotonic()
        for n in range(5):
            client.send(n, "mining.extranonce.subscribe", [])
        ids = [(await client.receive())["id"] for _ in range(5)]
        # Every message lost once: latency + one retransmission timeout, still in order.
        assert time.monotonic() - started >= 0.45
        assert ids == [0, 1, 2, 3, 4]
        client.close()
        # The miner keeps mining through it.
        accepted = site.miners[0].pools[0].accepted
        await until(lambda: site.miners[0].pools[0].accepted > accepted + 2, 20, "shares")
        assert site.miners[0].pool == url_of(pool)


async def test_a_short_blackhole_holds_messages_and_loses_none(loopback_network: None) -> None:
    async with stratum_pool() as pool:
        client = await Client.connect(pool)
        await client.mine()
        await pool.set_reachability("blackhole")
        client.send(7, "mining.suggest_difficulty", [1])
        with pytest.raises(TimeoutError):
            await client.receive(timeout=0.3)  # silence while the uplink is down
        await pool.set_reachability("up")
        assert (await client.receive())["id"] == 7  # delivered late, as TCP does
        client.close()


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"mode": "storm"}, '"mode" must be one of up, refuse, blackhole, degraded, flap'),
        ({"mode": "degraded", "loss": 2}, '"loss" must be between 0 and 1'),
        ({"mode": "degraded", "latency_ms": "slow"}, '"latency_ms" must be a number'),
        ({"mode": "flap", "down_mode": "degraded"}, '"down_mode" must be one of refuse'),
        ({"mode": "flap", "up_s": 0}, '"up_s" must be between 0.05 and 86400'),
        ({"up": "no"}, '"up" must be true or false, or give a "mode"'),
    ],
)
async def test_bad_outage_requests(
    loopback_network: None, body: dict[str, Any], message: str
) -> None:
    async with running_site("cgminer", miners=1) as site:
        code, text = await control(site, "POST", "/api/internet", body)
        assert (code, message in str(text)) == (400, True), text
        assert site.uplink.settings.mode == "up"
        assert site.state.internet_up is True


def test_command_line_stratum_options() -> None:
    config = config_from_args(["--share-interval-s", "3", "--job-interval-s", "10"])
    assert (config.share_interval_s, config.job_interval_s) == (3.0, 10.0)
    assert config.pool_difficulty == 2.0**-24
