"""Plan time of the allocation core for 160, 1000 and 10,000 ASICs (target: <= 5 ms at 10,000).

Run in a lane: bash -c "source scripts/lanes.sh; lane_exec min python -m bench.allocation"

Scenarios (the first three are the historical ones, half the fleet mining):
  shed        budget at 70 % of what runs: a partial shed
  start       budget at 130 % of what runs, up to 10,000 starts per batch
  dip         a confirmed under-frequency dip: everything running stops
  full-shed   the whole fleet mining, then a dip: every ASIC stops
  part-shed   the whole fleet mining, budget at 70 %: the least efficient 30 % stop
  batch       the whole fleet off after a shed, supply back: one default batch of 10 starts
  steady      half mining, 2 kW of headroom: nothing to do (the usual poll)
  start-all   the whole fleet off, unlimited budget and batch: every ASIC starts
"""

from __future__ import annotations

import argparse
import random
import statistics
import time

from custom_components.bitcoin_mining.miningsite.allocation import (
    AllocationSettings,
    AsicState,
    FrequencySample,
    SiteSnapshot,
    plan_allocation,
)

NOW = 1_000_000.0
HISTORICAL = ("shed", "start", "dip")
WORST = ("full-shed", "part-shed", "batch", "steady", "start-all")


def fleet_snapshot(size: int, scenario: str, rnd: random.Random) -> SiteSnapshot:
    """Half the fleet mining; a budget that forces stops or allows starts; or a dip."""
    asics = tuple(
        AsicState(
            id=f"asic-{n:05d}",
            online=True,
            mining=n % 2 == 0,
            power_w=3000 + rnd.random() * 500,
            efficiency_j_per_th=18 + rnd.random() * 20,
            cycles=rnd.randrange(500),
            last_on=NOW - rnd.random() * 5000,
            last_off=NOW - rnd.random() * 5000,
        )
        for n in range(size)
    )
    running = sum(a.power_w for a in asics if a.mining)
    budget = {"shed": running * 0.7, "start": running * 1.3, "dip": running}[scenario]
    hz = 49.2 if scenario == "dip" else 50.0
    return SiteSnapshot(
        now=NOW,
        available_power_w=budget,
        supply_updated_at=NOW,
        asics=asics,
        frequency_samples=(FrequencySample(NOW - 0.01, hz), FrequencySample(NOW, hz)),
        settings=AllocationSettings(max_starts_per_batch=10_000),
    )


def worst_case_snapshot(size: int, scenario: str, rnd: random.Random) -> SiteSnapshot:
    """A worst case: the whole fleet in play, ids (MACs) in no particular order.

    Built like the balancer builds a snapshot (fresh objects, in the fleet's discovery
    order), so sorting by id gets no help from the input order.
    """
    numbers = list(range(size))
    rnd.shuffle(numbers)
    mining = scenario in ("full-shed", "part-shed")
    asics = [
        AsicState(
            id=f"02:1a:2b:{n >> 16 & 255:02x}:{n >> 8 & 255:02x}:{n & 255:02x}",
            online=True,
            mining=mining if scenario != "steady" else n % 2 == 0,
            power_w=3000 + rnd.random() * 500,
            efficiency_j_per_th=18 + rnd.random() * 20,
            cycles=rnd.randrange(500),
            # Past both minimum times, so every ASIC is a candidate.
            last_on=NOW - 600 - rnd.random() * 5000,
            last_off=NOW - 300 - rnd.random() * 5000,
        )
        for n in numbers
    ]
    running = sum(a.power_w for a in asics if a.mining)
    budget = {
        "full-shed": running,
        "part-shed": running * 0.7,
        "batch": 1e9,
        "steady": running + 2000,
        "start-all": 1e12,
    }[scenario]
    hz = 49.2 if scenario == "full-shed" else 50.0
    settings = AllocationSettings()
    if scenario == "start-all":
        settings = AllocationSettings(max_starts_per_batch=size)
    return SiteSnapshot(
        now=NOW,
        available_power_w=budget,
        supply_updated_at=NOW,
        asics=tuple(asics),
        frequency_samples=(FrequencySample(NOW - 0.01, hz), FrequencySample(NOW, hz)),
        settings=settings,
    )


def main() -> None:
    """Print the median and worst plan time per fleet size and scenario."""
    argparse.ArgumentParser(
        description=__doc__.splitlines()[0], epilog="Takes no options."
    ).parse_args()
    rnd = random.Random(1)
    header = ("ASICs", 7), ("scenario", 9), ("stops", 6), ("starts", 6), ("median ms", 10)
    print(" ".join(f"{title:>{width}}" for title, width in header), f"{'max ms':>8}")
    for size in (160, 1000, 10_000):
        for scenario in HISTORICAL + WORST:
            if scenario in HISTORICAL:
                snap = fleet_snapshot(size, scenario, rnd)
            else:
                snap = worst_case_snapshot(size, scenario, rnd)
            plan = plan_allocation(snap)
            timings = []
            for _ in range(30 if size == 10_000 else 200):
                started = time.perf_counter()
                plan_allocation(snap)
                timings.append((time.perf_counter() - started) * 1000)
            print(
                f"{size:>7} {scenario:>9} {len(plan.stops):>6} {len(plan.starts):>6}"
                f" {statistics.median(timings):>10.2f} {max(timings):>8.2f}"
            )


if __name__ == "__main__":
    main()
