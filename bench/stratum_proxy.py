"""The Stratum proxy under load: 1000 relayed miners, added latency, CPU, the switch to local jobs.

Targets (issue 14): 1000 relayed miner connections; relay latency the proxy adds
<= 2 ms p99 on loopback; the proxy's CPU per 1000 shares relayed; after an upstream
loss the last miner has a local job <= 1 s later.

Three processes: the upstream pool (the simulator's StratumPool) and the proxy each
in a child (`--serve upstream|proxy`), so the proxy's CPU is its own; the miners run
here. Added latency is a share's round trip through the proxy minus the same load's
round trip straight to the upstream (percentile by percentile), and the proxy's own
figure (its processing time per request, from its stats). Re-job times are from the
moment the proxy hears of the loss to the moment each miner reads its local job
(CLOCK_MONOTONIC is shared by the processes).

Run in a lane: bash -c "source scripts/lanes.sh; lane_exec latest python -m bench.stratum_proxy"
Options: --connections 1000  --rate 1 (shares per miner per second)  --seconds 10
         --batch-size 100  --batch-interval 0.5  --aggregate (every miner on one upstream
         connection)
"""

from __future__ import annotations

import argparse
import asyncio
from functools import partial
import json
import os
import random
import resource
import sys
import time
from typing import Any

from custom_components.bitcoin_mining.miningsite.stratum import (
    PoolConfig,
    ProxyConfig,
    StratumProxy,
    VardiffConfig,
)
from simulator.pool import StratumPool

TINY = 2.0**-24
HANDSHAKE = (
    b'{"id":1,"method":"mining.extranonce.subscribe","params":[]}\n'
    b'{"id":2,"method":"mining.subscribe","params":["bench/1.0"]}\n'
    b'{"id":3,"method":"mining.authorize","params":["bench.%d","x"]}\n'
)


async def serve(
    kind: str, upstream_port: int, batch_size: int, batch_interval: float, aggregate: bool
) -> None:
    """A child: the upstream pool or the proxy; obeys commands on stdin, one line back each."""
    loop = asyncio.get_running_loop()
    pool: StratumPool | None = None
    proxy: StratumProxy | None = None
    if kind == "upstream":
        pool = StratumPool("127.0.0.1", 0, difficulty=TINY, job_interval_s=30)
        await pool.start()
        port = pool.port
    else:
        vardiff = VardiffConfig(start_difficulty=TINY, min_difficulty=TINY, max_difficulty=TINY)
        config = ProxyConfig(
            "127.0.0.1",
            upstream_port,
            max_connections=4096,
            batch_size=batch_size,
            batch_interval=batch_interval,
            aggregate=aggregate,
            local=PoolConfig(handshake_timeout=120, job_interval=30, vardiff=vardiff),
        )
        proxy = StratumProxy(config)
        await proxy.start("127.0.0.1", 0)
        assert proxy.port is not None
        port = proxy.port
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    print(f"port {port}", flush=True)
    while line := await reader.readline():
        command = line.decode().strip()
        now = time.monotonic()
        if command == "stats":
            usage = resource.getrusage(resource.RUSAGE_SELF)
            figures: dict[str, Any] = {"cpu": usage.ru_utime + usage.ru_stime}
            if proxy is not None:
                stats = proxy.stats()
                figures |= {
                    "p50": stats.latency_p50_ms,
                    "p99": stats.latency_p99_ms,
                    "on_upstream": stats.on_upstream,
                    "on_local": stats.on_local,
                    "relayed": stats.totals.upstream_accepted + stats.totals.upstream_rejected,
                    "fallbacks": stats.fallbacks,
                }
            print("stats " + json.dumps(figures), flush=True)
        elif command == "down" and proxy is not None:
            proxy.upstream_down("bench")
            print(f"done {now}", flush=True)
        elif command == "up" and proxy is not None:
            proxy.upstream_up()
            print(f"done {now}", flush=True)
        elif command in ("refuse", "up-pool") and pool is not None:
            await pool.set_reachability("refuse" if command == "refuse" else "up")
            print(f"done {now}", flush=True)
        elif command == "quit":
            break
    if proxy is not None:
        await proxy.stop()
    if pool is not None:
        await pool.stop()


class Child:
    """A child process: the upstream pool or the proxy."""

    def __init__(self, process: asyncio.subprocess.Process, port: int) -> None:
        """Use start()."""
        self.process = process
        self.port = port

    @classmethod
    async def start(cls, *args: str) -> Child:
        """Start the child and read its port."""
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bench.stratum_proxy",
            "--serve",
            *args,
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
        """CPU seconds, and the proxy's figures."""
        return dict(json.loads((await self.ask("stats")).removeprefix("stats ")))

    async def stop(self) -> None:
        """Ask it to quit and wait."""
        assert self.process.stdin is not None
        self.process.stdin.write(b"quit\n")
        await self.process.stdin.drain()
        await self.process.wait()


class Miner(asyncio.Protocol):
    """A bare miner: handshakes, submits shares with random nonces, stamps replies and jobs."""

    def __init__(self, number: int) -> None:
        """Not connected yet."""
        self.number = number
        self.ready = asyncio.get_running_loop().create_future()
        self.transport: asyncio.Transport | None = None
        self.partial = b""
        self.job_id: str | None = None
        self.ntime = "00000000"
        self.extranonce2_size = 8
        self.sent: dict[int, float] = {}
        self.round_trips: list[float] = []
        self.jobs: list[tuple[float, str, bool]] = []
        self.next_id = 10
        self.lost = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """The whole handshake at once."""
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        transport.write(HANDSHAKE % self.number)

    def data_received(self, data: bytes) -> None:
        """Replies to submits and jobs, stamped on arrival."""
        now = time.monotonic()
        lines = (self.partial + data).split(b"\n")
        self.partial = lines.pop()
        for line in lines:
            message = json.loads(line)
            method = message.get("method")
            if method == "mining.notify":
                params = message["params"]
                self.job_id, self.ntime = params[0], params[7]
                self.jobs.append((now, params[0], params[8]))
                if not self.ready.done():
                    self.ready.set_result(None)
            elif method == "mining.set_extranonce":
                self.extranonce2_size = message["params"][1]
            elif method is None and message.get("id") == 2:
                self.extranonce2_size = message["result"][2]
            elif method is None and (sent := self.sent.pop(message.get("id"), None)):
                self.round_trips.append(now - sent)

    def connection_lost(self, exc: Exception | None) -> None:
        """Counted: a miner must never lose its connection here."""
        self.lost = True
        if not self.ready.done():
            self.ready.set_exception(ConnectionError("connection lost before the first job"))

    def submit(self, rng: random.Random) -> None:
        """A share with a random nonce (relayed and answered like any other)."""
        if self.transport is None or self.job_id is None or self.transport.is_closing():
            return
        self.next_id += 1
        extranonce2 = rng.randbytes(self.extranonce2_size).hex()
        params = [
            f"bench.{self.number}",
            self.job_id,
            extranonce2,
            self.ntime,
            rng.randbytes(4).hex(),
        ]
        line = {"id": self.next_id, "method": "mining.submit", "params": params}
        self.sent[self.next_id] = time.monotonic()
        self.transport.write(json.dumps(line).encode() + b"\n")


def _percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


async def open_miners(port: int, count: int) -> list[Miner]:
    """`count` miners, connected and given their first job."""
    loop = asyncio.get_running_loop()
    miners: list[Miner] = []
    for batch in range(0, count, 100):
        opened = await asyncio.gather(
            *(
                loop.create_connection(partial(Miner, n), "127.0.0.1", port)
                for n in range(batch, min(batch + 100, count))
            )
        )
        miners.extend(protocol for _, protocol in opened)
    await asyncio.gather(*(miner.ready for miner in miners))
    return miners


async def paced(miners: list[Miner], rate: float, seconds: float) -> list[float]:
    """Every miner submits `rate` shares a second, spread out; the round trips (seconds)."""
    rng = random.Random(1)
    for miner in miners:
        miner.round_trips.clear()
    interval = 1 / (rate * len(miners))
    deadline = time.monotonic() + seconds
    index = 0
    next_at = time.monotonic()
    while time.monotonic() < deadline:
        miners[index % len(miners)].submit(rng)
        index += 1
        next_at += interval
        delay = next_at - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
    await asyncio.sleep(0.5)  # the last replies
    return [t for miner in miners for t in miner.round_trips]


def _ms(values: list[float], share: float) -> float:
    return _percentile(values, share) * 1000


async def rejob_time(proxy: Child, upstream: Child, miners: list[Miner], command: str) -> float:
    """Seconds from the loss to the last miner's local job (`down` to the proxy, or `refuse`)."""
    before = [len(miner.jobs) for miner in miners]
    target = proxy if command == "down" else upstream
    began = float((await target.ask(command)).split()[1])
    deadline = time.monotonic() + 10

    def first_local(miner: Miner, seen: int) -> tuple[float, str, bool] | None:
        # The upstream's own periodic job may still arrive just before the loss.
        return next((job for job in miner.jobs[seen:] if job[1].startswith("L")), None)

    while any(first_local(m, n) is None for m, n in zip(miners, before, strict=True)):
        if time.monotonic() > deadline:
            raise TimeoutError("some miners got no local job within 10 s")
        await asyncio.sleep(0.01)
    local = [first_local(m, n) for m, n in zip(miners, before, strict=True)]
    assert all(job is not None and job[2] for job in local), "a local job not clean"
    return max(job[0] for job in local if job is not None) - began


async def back_up(proxy: Child, upstream: Child, count: int) -> float:
    """Seconds from upstream_up() until every miner is relayed again."""
    await upstream.ask("up-pool")
    began = time.monotonic()
    await proxy.ask("up")
    while (await proxy.stats())["on_upstream"] < count:
        if time.monotonic() - began > 120:
            raise TimeoutError("not every miner moved back within 120 s")
        await asyncio.sleep(0.05)
    return time.monotonic() - began


async def measure(args: argparse.Namespace) -> None:
    """Every figure, against one upstream and one proxy process."""
    upstream = await Child.start("upstream")
    proxy = await Child.start(
        "proxy",
        "--upstream-port",
        str(upstream.port),
        "--batch-size",
        str(args.batch_size),
        "--batch-interval",
        str(args.batch_interval),
        *(["--aggregate"] if args.aggregate else []),
    )
    print(f"  mode: {'one upstream connection for all' if args.aggregate else 'one each'}")
    try:
        count = args.connections
        direct = await open_miners(upstream.port, count)
        straight = await paced(direct, args.rate, args.seconds)
        for miner in direct:
            assert miner.transport is not None
            miner.transport.close()
        started = time.perf_counter()
        miners = await open_miners(proxy.port, count)
        print(
            f"{count} miners relayed: subscribed, authorized, first job in"
            f" {time.perf_counter() - started:.2f} s"
        )
        before = await proxy.stats()
        relayed = await paced(miners, args.rate, args.seconds)
        after = await proxy.stats()
        shares = after["relayed"] - before["relayed"]
        print(
            f"  {len(relayed)} shares round trip via the proxy: p50 {_ms(relayed, 0.5):.2f} ms"
            f"  p99 {_ms(relayed, 0.99):.2f} ms;  straight to the upstream: p50"
            f" {_ms(straight, 0.5):.2f} ms  p99 {_ms(straight, 0.99):.2f} ms"
        )
        print(
            f"  added by the proxy: p50 {_ms(relayed, 0.5) - _ms(straight, 0.5):.2f} ms"
            f"  p99 {_ms(relayed, 0.99) - _ms(straight, 0.99):.2f} ms (target p99 <= 2 ms);"
            f" its own processing per request: p50 {after['p50']:.3f} ms  p99 {after['p99']:.3f} ms"
        )
        cpu = after["cpu"] - before["cpu"]
        print(
            f"  the proxy's CPU: {cpu:.2f} s for {shares} shares relayed in {args.seconds:g} s:"
            f" {cpu / max(shares, 1) * 1000:.3f} s per 1000 shares"
        )
        down = await rejob_time(proxy, upstream, miners, "down")
        print(
            f"  upstream_down(): the last of {count} miners had a local job after"
            f" {down * 1000:.0f} ms (target <= 1 s)"
        )
        moved = await back_up(proxy, upstream, count)
        print(
            f"  upstream_up(): all {count} back on the upstream after {moved:.2f} s"
            f" (batches of {args.batch_size}, {args.batch_interval:g} s apart)"
        )
        reset = await rejob_time(proxy, upstream, miners, "refuse")
        stats = await proxy.stats()
        print(
            f"  the upstream resets every connection: the last miner had a local job after"
            f" {reset * 1000:.0f} ms; fallbacks {stats['fallbacks']}"
        )
        lost = sum(miner.lost for miner in miners)
        print(f"  miner connections lost through all of it: {lost}")
    finally:
        await proxy.stop()
        await upstream.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--serve", choices=("upstream", "proxy"), help=argparse.SUPPRESS)
    parser.add_argument("--upstream-port", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--connections", type=int, default=1000)
    parser.add_argument("--rate", type=float, default=1.0)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--batch-interval", type=float, default=0.5)
    parser.add_argument("--aggregate", action="store_true", help="all on one connection")
    args = parser.parse_args()
    if args.serve:
        asyncio.run(
            serve(
                args.serve, args.upstream_port, args.batch_size, args.batch_interval, args.aggregate
            )
        )
        return
    print(f"Stratum proxy bench (pid {os.getpid()}, Python {sys.version.split()[0]})")
    asyncio.run(measure(args))


if __name__ == "__main__":
    main()
