"""Random and malformed lines from many connections: the pool stays up and miners keep working.

The 100,000-message run with memory figures is `python -m bench.stratum_pool --fuzz`.
"""

from __future__ import annotations

import asyncio
import contextlib
import random

from custom_components.bitcoin_mining.miningsite.stratum import (
    LocalPool,
    PoolConfig,
    VardiffConfig,
)
from devtools.steps import poll_until
from devtools.stratum import StratumClient, fuzz_lines

TINY = 2.0**-24
OFFENDERS = 30
LINES_EACH = 150
SEED = 20261207


class Offender:
    """One hostile client: sends its share of fuzz lines, reconnecting whenever dropped."""

    def __init__(self, port: int, rng: random.Random, pool: LocalPool) -> None:
        self.port = port
        self.rng = rng
        self.pool = pool
        self.sent = 0
        self.answers = 0
        self.connections = 0

    async def _drain_replies(self, reader: asyncio.StreamReader) -> None:
        with contextlib.suppress(ConnectionError):
            while await reader.readline():
                self.answers += 1

    async def run(self, lines: int) -> None:
        while self.sent < lines:
            reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
            self.connections += 1
            replies = asyncio.create_task(self._drain_replies(reader))
            current = self.pool.current_job
            job_ids = (current.job_id,) if current is not None else ()
            try:
                for line in fuzz_lines(self.rng, job_ids):
                    writer.write(line)
                    self.sent += 1
                    await writer.drain()
                    await asyncio.sleep(0)  # drain() alone never yields: let replies in
                    if self.sent >= lines or replies.done():
                        break
                if not replies.done():
                    # Done: half-close, and take the replies until the pool closes.
                    writer.write_eof()
                    await replies
            except OSError:
                pass  # dropped by the pool: reconnect
            finally:
                writer.transport.abort()
                with contextlib.suppress(ConnectionError):
                    await replies


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
        offenders = [
            Offender(pool.port, random.Random(rng.random()), pool) for _ in range(OFFENDERS)
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
