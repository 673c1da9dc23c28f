"""The local Stratum pool under load: connections, job broadcast, share checks, fuzz memory.

Targets (issue 13): >= 1000 concurrent connections (subscribed, authorized); one job
broadcast to all of them <= 50 ms p99; share verification throughput on one core; the
pool's CPU with 160 miners submitting; 100,000 random and malformed messages from many
connections with the pool's RSS flat.

The pool runs in a child process (`--serve`), so its CPU and RSS are its own; the clients
run here. Broadcast latency is from the moment the pool starts the broadcast to the
moment each client reads the line (CLOCK_MONOTONIC is shared by both processes): the
1000 clients share one event loop, so the tail includes their own turn-taking.

Run in a lane: bash -c "source scripts/lanes.sh; lane_exec min python -m bench.stratum_pool"
Options: --connections 1000  --broadcasts 20  --miners 160  --paced-seconds 10
         --flat-out-seconds 3  --verify-seconds 2  --fuzz 100000 (0: skip)  --fuzzers 50
"""

from __future__ import annotations

import argparse
import asyncio
from functools import partial
import json
import os
import random
import resource
import statistics
import sys
import time
from typing import Any

from custom_components.bitcoin_mining.miningsite.stratum import (
    LocalPool,
    PoolConfig,
    VardiffConfig,
)
from custom_components.bitcoin_mining.miningsite.stratum.jobs import JobBook
from custom_components.bitcoin_mining.miningsite.stratum.shares import (
    POOL_VERSION_MASK,
    parse_submit,
    target_for,
    verify,
)
from devtools.stratum import FuzzClient, StratumClient

# One hash in 256 is a share: the clients' hashing stays cheap.
TINY = 2.0**-24
HANDSHAKE = (
    b'{"id":1,"method":"mining.configure","params":[["version-rolling"],'
    b'{"version-rolling.mask":"ffffffff"}]}\n'
    b'{"id":2,"method":"mining.subscribe","params":["bench/1.0"]}\n'
    b'{"id":3,"method":"mining.authorize","params":["bench.%d","x"]}\n'
)


def _rss_kib() -> int:
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


async def serve() -> None:
    """The pool process: listens, then obeys `notify`, `stats`, `quit` on stdin."""
    vardiff = VardiffConfig(start_difficulty=TINY, min_difficulty=TINY, max_difficulty=TINY)
    pool = LocalPool(
        PoolConfig(max_connections=4096, handshake_timeout=120, job_interval=30, vardiff=vardiff)
    )
    await pool.start("127.0.0.1", 0)
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    print(f"port {pool.port}", flush=True)
    while line := await reader.readline():
        command = line.decode().strip()
        if command == "notify":
            started = time.monotonic()
            pool.new_job(clean=False)
            print(f"notified {started} {time.monotonic()}", flush=True)
        elif command == "stats":
            stats = pool.stats()
            usage = resource.getrusage(resource.RUSAGE_SELF)
            figures = {
                "connections": stats.connections,
                "miners": stats.miners,
                "dropped": stats.connections_dropped,
                "accepted": stats.shares_accepted,
                "rejected": stats.shares_rejected,
                "cpu": usage.ru_utime + usage.ru_stime,
                "rss_kib": _rss_kib(),
                "wall": time.monotonic(),
            }
            print("stats " + json.dumps(figures), flush=True)
        elif command == "quit":
            break
    await pool.stop()


class PoolProcess:
    """The child process running the pool."""

    def __init__(self, process: asyncio.subprocess.Process, port: int) -> None:
        """Use start()."""
        self.process = process
        self.port = port

    @classmethod
    async def start(cls) -> PoolProcess:
        """Start the child and read its port."""
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bench.stratum_pool",
            "--serve",
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        assert process.stdout is not None
        line = (await process.stdout.readline()).decode()
        return cls(process, int(line.split()[1]))

    async def ask(self, command: str) -> str:
        """One command, one line back."""
        assert self.process.stdin is not None
        assert self.process.stdout is not None
        self.process.stdin.write(command.encode() + b"\n")
        await self.process.stdin.drain()
        return (await self.process.stdout.readline()).decode().strip()

    async def stats(self) -> dict[str, Any]:
        """The pool's counters, CPU seconds and RSS."""
        reply = await self.ask("stats")
        return dict(json.loads(reply.removeprefix("stats ")))

    async def stop(self) -> None:
        """Ask it to quit and wait."""
        assert self.process.stdin is not None
        self.process.stdin.write(b"quit\n")
        await self.process.stdin.drain()
        await self.process.wait()


class Arrivals:
    """When each connection received each job; an event once all have the awaited one."""

    def __init__(self, count: int) -> None:
        """No job yet."""
        self.times: list[list[float]] = [[] for _ in range(count)]
        self.waiting: set[int] = set()
        self.all_in = asyncio.Event()

    def expect(self) -> None:
        """Wait for one more job on every connection."""
        self.waiting = set(range(len(self.times)))
        self.all_in.clear()

    def add(self, number: int, when: float) -> None:
        """A job reached connection `number`."""
        self.times[number].append(when)
        if number in self.waiting:
            self.waiting.discard(number)
            if not self.waiting:
                self.all_in.set()


class Listener(asyncio.Protocol):
    """A bare connection that handshakes and timestamps every job it receives."""

    def __init__(self, number: int, arrivals: Arrivals) -> None:
        """Log arrivals in `arrivals`."""
        self.number = number
        self.arrivals = arrivals
        self.ready = asyncio.get_running_loop().create_future()
        self.transport: asyncio.Transport | None = None
        self.partial = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Send the whole handshake at once, as a Bitaxe does."""
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        transport.write(HANDSHAKE % self.number)

    def data_received(self, data: bytes) -> None:
        """Count notify lines, stamped on arrival (no JSON parsing: the stamp is what counts)."""
        now = time.monotonic()
        lines = (self.partial + data).split(b"\n")
        self.partial = lines.pop()
        for line in lines:
            if b'"mining.notify"' in line and b'"method"' in line:
                self.arrivals.add(self.number, now)
                if not self.ready.done():
                    self.ready.set_result(None)

    def connection_lost(self, exc: Exception | None) -> None:
        """A lost connection fails the run."""
        if not self.ready.done():
            self.ready.set_exception(ConnectionError("connection lost before the first job"))


def _percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


async def connections_and_broadcast(pool: PoolProcess, count: int, broadcasts: int) -> None:
    """Open `count` connections, then time job broadcasts to all of them."""
    loop = asyncio.get_running_loop()
    arrivals = Arrivals(count)
    listeners: list[Listener] = []
    started = time.perf_counter()
    for batch in range(0, count, 100):
        opened = await asyncio.gather(
            *(
                loop.create_connection(partial(Listener, n, arrivals), "127.0.0.1", pool.port)
                for n in range(batch, min(batch + 100, count))
            )
        )
        listeners.extend(protocol for _, protocol in opened)
    await asyncio.gather(*(listener.ready for listener in listeners))
    handshake = time.perf_counter() - started
    stats = await pool.stats()
    print(
        f"{count} connections: subscribed and authorized in {handshake:.2f} s;"
        f" the pool counts {stats['miners']} miners, RSS {stats['rss_kib'] / 1024:.0f} MiB"
    )
    latencies: list[float] = []
    writes: list[float] = []
    for _ in range(broadcasts):
        before = [len(times) for times in arrivals.times]
        arrivals.expect()
        reply = (await pool.ask("notify")).split()
        begun, ended = float(reply[1]), float(reply[2])
        writes.append(ended - begun)
        await asyncio.wait_for(arrivals.all_in.wait(), 30)
        latencies.extend(times[n] - begun for times, n in zip(arrivals.times, before, strict=True))
    ms = [x * 1000 for x in latencies]
    print(
        f"  job broadcast to all {count}, {broadcasts} times: latency p50"
        f" {statistics.median(ms):.1f} ms  p99 {_percentile(ms, 0.99):.1f} ms"
        f"  max {max(ms):.1f} ms (target p99 <= 50 ms)"
    )
    print(
        f"  the pool's own write loop: median {statistics.median(writes) * 1000:.1f} ms"
        f"  max {max(writes) * 1000:.1f} ms"
    )
    for listener in listeners:
        if listener.transport is not None:
            listener.transport.close()


def verification_throughput(seconds: float) -> None:
    """parse_submit + verify on one core (this process), shares that all pass."""
    book = JobBook()
    job = book.new_job(clean=True)
    rng = random.Random(1)
    params = [
        ["bench.1", job.job_id, rng.randbytes(8).hex(), f"{job.ntime:08x}", f"{n:08x}", "00002000"]
        for n in range(10_000)
    ]
    extranonce1 = bytes(4)
    target = target_for(1e-12)  # every hash passes: the cost is the same, no exceptions
    done = 0
    started = time.process_time()
    while time.process_time() - started < seconds:
        for p in params:
            verify(job, extranonce1, parse_submit(p, 8), POOL_VERSION_MASK, target)
        done += len(params)
    elapsed = time.process_time() - started
    print(
        f"share verification (parse + sha256d header check), one core: "
        f"{done / elapsed:,.0f} shares/s ({elapsed / done * 1e6:.1f} us each)"
    )


async def miners_submitting(
    pool: PoolProcess, count: int, paced_seconds: float, flat_out_seconds: float
) -> None:
    """`count` miners at 20 shares a minute each, then as fast as they can solve."""
    miners = [await StratumClient.connect("127.0.0.1", pool.port) for _ in range(count)]
    await asyncio.gather(*(m.handshake(f"site.m{n:03d}") for n, m in enumerate(miners)))

    async def submit_until(miner: StratumClient, deadline: float, interval: float) -> None:
        # Spread out, and never past the deadline: the figures are per second of wall time.
        await asyncio.sleep(random.uniform(0, interval))
        while (left := deadline - time.monotonic()) > 0:
            reply = await miner.call("mining.submit", miner.solve(miner.jobs[-1]))
            if reply["result"] is not True:
                raise RuntimeError(f"share refused: {reply}")
            await asyncio.sleep(min(interval, max(left, 0)))

    for label, seconds, interval in (
        ("at 20 shares/min each", paced_seconds, 3.0),
        ("flat out", flat_out_seconds, 0.0),
    ):
        before = await pool.stats()
        deadline = time.monotonic() + seconds
        await asyncio.gather(*(submit_until(m, deadline, interval) for m in miners))
        after = await pool.stats()
        wall = after["wall"] - before["wall"]
        shares = after["accepted"] - before["accepted"]
        cpu = after["cpu"] - before["cpu"]
        print(
            f"{count} miners submitting {label} for {wall:.1f} s: {shares / wall:,.0f} shares/s"
            f" accepted, pool CPU {cpu / wall * 100:.1f} % of a core"
            f" ({cpu / max(shares, 1) * 1e6:.0f} us per share, sockets included)"
        )
    for miner in miners:
        await miner.close()


async def fuzz(pool: PoolProcess, messages: int, fuzzers: int) -> None:
    """`messages` hostile lines from `fuzzers` connections while 10 miners keep working."""
    miners = [await StratumClient.connect("127.0.0.1", pool.port) for _ in range(10)]
    for n, miner in enumerate(miners):
        await miner.handshake(f"site.f{n}")
    before = await pool.stats()
    rng = random.Random(13)

    def job_ids() -> tuple[str, ...]:
        return tuple(job.job_id for job in miners[0].jobs[-3:])

    clients = [
        FuzzClient("127.0.0.1", pool.port, random.Random(rng.random()), job_ids)
        for _ in range(fuzzers)
    ]
    started = time.perf_counter()
    sending = asyncio.gather(*(c.run(messages // fuzzers) for c in clients))
    middle: dict[str, Any] | None = None
    jobs = 1
    while not sending.done():
        # Miners keep getting jobs (and their shares count) throughout.
        await pool.ask("notify")
        jobs += 1
        for miner in miners:
            job = await miner.wait_jobs(jobs, timeout=30)
            reply = await miner.call("mining.submit", miner.solve(job), timeout=30)
            if reply["result"] is not True:
                raise RuntimeError(f"share refused during the fuzz: {reply}")
        if middle is None and sum(c.sent for c in clients) >= messages // 2:
            middle = await pool.stats()
        await asyncio.sleep(0.2)
    await sending
    elapsed = time.perf_counter() - started
    after = await pool.stats()
    sent = sum(c.sent for c in clients)
    print(
        f"fuzz: {sent:,} lines from {fuzzers} connections ({sum(c.connections for c in clients):,}"
        f" connections opened, {after['dropped'] - before['dropped']:,} dropped by the pool)"
        f" in {elapsed:.1f} s, {sum(c.answers for c in clients):,} replies"
    )
    print(
        f"  pool RSS before {before['rss_kib'] / 1024:.1f} MiB, halfway"
        f" {(middle or after)['rss_kib'] / 1024:.1f} MiB, after {after['rss_kib'] / 1024:.1f} MiB;"
        f" the 10 miners got all {jobs} jobs and {after['accepted'] - before['accepted']}"
        f" shares accepted; miners still connected: {sum(not m.closed for m in miners)}/10"
    )
    for miner in miners:
        await miner.close()


async def measure(args: argparse.Namespace) -> None:
    """Every figure, against one pool process."""
    pool = await PoolProcess.start()
    try:
        await connections_and_broadcast(pool, args.connections, args.broadcasts)
        verification_throughput(args.verify_seconds)
        await miners_submitting(pool, args.miners, args.paced_seconds, args.flat_out_seconds)
        if args.fuzz:
            await fuzz(pool, args.fuzz, args.fuzzers)
    finally:
        await pool.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--connections", type=int, default=1000)
    parser.add_argument("--broadcasts", type=int, default=20)
    parser.add_argument("--miners", type=int, default=160)
    parser.add_argument("--paced-seconds", type=float, default=10)
    parser.add_argument("--flat-out-seconds", type=float, default=3)
    parser.add_argument("--verify-seconds", type=float, default=2)
    parser.add_argument("--fuzz", type=int, default=100_000)
    parser.add_argument("--fuzzers", type=int, default=50)
    args = parser.parse_args()
    if args.serve:
        asyncio.run(serve())
        return
    print(f"Local Stratum pool bench (pid {os.getpid()}, Python {sys.version.split()[0]})")
    asyncio.run(measure(args))


if __name__ == "__main__":
    main()
