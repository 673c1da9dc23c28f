"""Wall and CPU time of one fleet poll (and one load shed) against the simulated site.

Targets: 160 miners <= 1 s wall and <= 50 ms CPU per poll; 1000 miners <= 2 s wall;
160 miners confirmed stopped well under 0.5 s. The simulator runs in a subprocess
(its CPU is not counted) with 100 ms reply latency; CPU is this process's
time.process_time over the poll, so it includes the HTTP client and socket work.

Run in a lane: bash -c "source scripts/lanes.sh; lane_exec min python -m bench.poll_fleet"
Options: --sizes 160,1000  --latency-ms 100  --mix (simulator default)  --polls 5
         --concurrency N (default: the fleet's DEFAULT_CONCURRENCY)
         --profile [FILE]: cProfile the measured polls (which slows them: the wall and CPU
           figures of a profiled run are not the real ones), print the top functions by own
           time and save the pstats data to FILE (default /tmp/poll_fleet.pstats)
         --skip-commands: measure polls only (no load shed, no one-miner timings)
The CPU figure includes the kernel's TCP work, on loopback also the simulator's side
of it (its receive path runs in the sending process's time): "in the kernel" says about
how much (getrusage splits user and system time by sampling). Profiles count CPU time.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import pstats
import resource
import statistics
import time

import aiohttp

from custom_components.bitcoin_mining.miningsite.miners.base import MinerEndpoint
from custom_components.bitcoin_mining.miningsite.miners.fleet import (
    DEFAULT_CONCURRENCY,
    Fleet,
    driver_for,
)
from devtools.simulation import free_port, running_simulator


async def measure(
    size: int,
    latency_ms: float,
    mix: str | None,
    polls: int,
    concurrency: int,
    profile: str | None = None,
    skip_commands: bool = False,
) -> None:
    options = [
        "--base-port=0",
        f"--latency-ms={latency_ms}",
        "--meter=off",
        f"--pool=127.0.0.1:{free_port()}",
        *([f"--mix={mix}"] if mix else []),
    ]
    async with running_simulator(size, *options) as simulator:
        miners = simulator.miners
        # Home Assistant's shared session allows 4096 connections, 100 per host.
        connector = aiohttp.TCPConnector(limit=4096, limit_per_host=100)
        async with aiohttp.ClientSession(connector=connector) as session:
            fleet = Fleet(
                {
                    f"m{m['index']:04d}": driver_for(
                        m["family"], MinerEndpoint(m["ip"], m["api_port"]), session=session
                    )
                    for m in miners
                },
                timeout=5,
                concurrency=concurrency,
            )
            report = await fleet.identify_all()
            await fleet.poll()  # logins, digest challenges, first connections
            walls, cpus, kernel, errors = [], [], [], 0
            # CPU time, not wall time: the simulator shares the cores.
            profiler = cProfile.Profile(time.process_time) if profile else None
            for _ in range(polls):
                gc.collect()
                if profiler is not None:
                    profiler.enable()
                usage = resource.getrusage(resource.RUSAGE_SELF)
                cpu, wall = time.process_time(), time.perf_counter()
                results = await fleet.poll()
                cpus.append(time.process_time() - cpu)
                walls.append(time.perf_counter() - wall)
                kernel.append(resource.getrusage(resource.RUSAGE_SELF).ru_stime - usage.ru_stime)
                if profiler is not None:
                    profiler.disable()
                errors = sum(1 for r in results.values() if isinstance(r, Exception))
                if errors:
                    first = next(r for r in results.values() if isinstance(r, Exception))
                    print(f"  {errors} errors, e.g. {type(first).__name__}: {first}")
            families = sorted({m["family"] for m in miners})
            print(
                f"{size} miners ({', '.join(families)}), latency {latency_ms:g} ms,"
                f" poll concurrency {concurrency}:"
            )
            print(f"  identified {len(report.identified)}, identify errors {len(report.errors)}")
            print(
                f"  poll wall   median {statistics.median(walls) * 1000:6.0f} ms"
                f"  max {max(walls) * 1000:6.0f} ms"
            )
            print(
                f"  poll CPU    median {statistics.median(cpus) * 1000:6.1f} ms"
                f"  max {max(cpus) * 1000:6.1f} ms"
                f"  ({statistics.median(cpus) / size * 1e6:.0f} us per miner,"
                f" {statistics.median(kernel) * 1000:.1f} ms of it in the kernel)"
            )
            print(f"  miners in error on the last poll: {errors}")
            if profiler is not None and profile is not None:
                profiler.dump_stats(profile)
                print(f"  profile of the {polls} polls (saved to {profile}):")
                stats = pstats.Stats(profiler)
                stats.sort_stats("tottime").print_stats(30)
            if skip_commands:
                await fleet.close()
                return

            family_of = {f"m{m['index']:04d}": m["family"] for m in miners}
            for quick in (False, True):
                gc.collect()
                cpu, wall = time.process_time(), time.perf_counter()
                outcomes = await fleet.command(fleet.keys, "stop", quick_readback=quick)
                shed_wall = time.perf_counter() - wall
                shed_cpu = time.process_time() - cpu
                confirmed = sum(1 for o in outcomes.values() if o.confirmed)
                slowest = max(o.elapsed_s for o in outcomes.values())
                print(
                    f"  shed, {'quick' if quick else 'full status'} read-back:"
                    f" {confirmed}/{size} confirmed stopped in {shed_wall * 1000:.0f} ms wall"
                    f" (slowest miner {slowest * 1000:.0f} ms), {shed_cpu * 1000:.0f} ms CPU"
                )
                for family in families:
                    times = [o.elapsed_s for k, o in outcomes.items() if family_of[k] == family]
                    print(
                        f"    {family:14s} confirmed in median"
                        f" {statistics.median(times) * 1000:5.0f} ms"
                    )
                await fleet.command(fleet.keys, "start")
            # One miner of each family alone: how many round trips its poll takes.
            for family in families:
                key = next(k for k, f in family_of.items() if f == family)
                driver = fleet.driver(key)
                started = time.perf_counter()
                await driver.read_status()
                alone = time.perf_counter() - started
                print(
                    f"    {family:14s} one read_status alone {alone * 1000:5.0f} ms"
                    f" (~{alone * 1000 / latency_ms:.1f} round trips)"
                    if latency_ms
                    else f"    {family:14s} one read_status alone {alone * 1000:5.1f} ms"
                )
            await fleet.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="160,1000")
    parser.add_argument("--latency-ms", type=float, default=100.0)
    parser.add_argument("--mix", default=None)
    parser.add_argument("--polls", type=int, default=5)
    parser.add_argument("--concurrency", type=int, default=DEFAULT_CONCURRENCY)
    parser.add_argument("--profile", nargs="?", const="/tmp/poll_fleet.pstats", default=None)
    parser.add_argument("--skip-commands", action="store_true")
    args = parser.parse_args()
    for size in (int(part) for part in args.sizes.split(",")):
        asyncio.run(
            measure(
                size,
                args.latency_ms,
                args.mix,
                args.polls,
                args.concurrency,
                args.profile,
                args.skip_commands,
            )
        )


if __name__ == "__main__":
    main()
