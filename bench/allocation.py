"""Plan time of the allocation core for 160, 1000 and 10,000 ASICs (target: <= 5 ms at 10,000).

Run in a lane: bash -c "source scripts/lanes.sh; lane_exec min python bench/allocation.py"
"""

from __future__ import annotations

from pathlib import Path
import random
import statistics
import sys
import time

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from custom_components.bitcoin_mining.miningsite.allocation import (
    AllocationSettings,
    AsicState,
    FrequencySample,
    SiteSnapshot,
    plan_allocation,
)

NOW = 1_000_000.0


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


def main() -> None:
    """Print the median and worst plan time per fleet size and scenario."""
    rnd = random.Random(1)
    print(f"{'ASICs':>7} {'scenario':>8} {'median ms':>10} {'max ms':>8}")
    for size in (160, 1000, 10_000):
        for scenario in ("shed", "start", "dip"):
            snap = fleet_snapshot(size, scenario, rnd)
            timings = []
            for _ in range(30 if size == 10_000 else 200):
                started = time.perf_counter()
                plan_allocation(snap)
                timings.append((time.perf_counter() - started) * 1000)
            print(
                f"{size:>7} {scenario:>8} {statistics.median(timings):>10.2f} {max(timings):>8.2f}"
            )


if __name__ == "__main__":
    main()
