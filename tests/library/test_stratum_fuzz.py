"""Random and malformed lines from many connections: the pool stays up and miners keep working.

The 100,000-message run with memory figures is `python -m bench.stratum_pool --fuzz`.
"""

from __future__ import annotations

import asyncio
import random

from custom_components.bitcoin_mining.miningsite.stratum import (
    LocalPool,
    PoolConfig,
    VardiffConfig,
)
from devtools.steps import poll_until
from devtools.stratum import FuzzClient, StratumClient

TINY = 2.0**-24
OFFENDERS = 30
LINES_EACH = 150
SEED = 20261207


async def test_fuzzing_from_many_connections_leaves_the_miners_working(
    loopback_network: None,
) -> None:
    vardiff = VardiffConfig(
        start_difficulty=TINY, min_difficulty=TINY, max_difficulty=TINY, retarget_shares=1000
    )
    pool = LocalPool(PoolConfig(vardiff=vardiff, handshake_timeout=5))
    await pool.start("127.0.0.1", 0)
    assert pool.port is not None
    miners: list[StratumClient] = []
    try:
        for n in range(3):
            miner = await StratumClient.connect("127.0.0.1", pool.port)
            miners.append(miner)
            await miner.handshake(f"site.m{n}")
        rng = random.Random(SEED)

        def job_ids() -> tuple[str, ...]:
            current = pool.current_job
            return (current.job_id,) if current is not None else ()

        offenders = [
            FuzzClient("127.0.0.1", pool.port, random.Random(rng.random()), job_ids)
            for _ in range(OFFENDERS)
        ]
        fuzzing = asyncio.gather(*(o.run(LINES_EACH) for o in offenders))
        # While the fuzz runs, every job reaches every miner and their shares count.
        jobs = 1
        while not fuzzing.done():
            pool.new_job(clean=jobs % 4 == 0)
            jobs += 1
            for miner in miners:
                job = await miner.wait_jobs(jobs)
                reply = await miner.call("mining.submit", miner.solve(job))
                assert reply["result"] is True, reply
        await fuzzing
        assert all(not miner.closed for miner in miners)
        sent = sum(o.sent for o in offenders)
        assert sent >= OFFENDERS * LINES_EACH
        assert sum(o.answers for o in offenders) > sent // 4
        stats = pool.stats()
        # Some offenders were dropped (lines over 16 KiB, too many malformed lines) ...
        assert stats.connections_dropped > 0
        assert sum(o.connections for o in offenders) > OFFENDERS
        assert stats.shares_accepted == 3 * (jobs - 1)
        assert stats.rejected.get("low_difficulty", 0) == 0

        async def offenders_gone() -> bool:
            return pool.stats().connections == 3

        await poll_until(offenders_gone, 15, "the offenders' connections to close")
        # ... and the pool still takes new miners.
        late = await StratumClient.connect("127.0.0.1", pool.port)
        miners.append(late)
        job = await late.handshake("site.late")
        assert (await late.call("mining.submit", late.solve(job)))["result"] is True
    finally:
        for miner in miners:
            await miner.close()
        await pool.stop()
