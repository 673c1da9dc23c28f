"""An accelerated month of the allocation: solar swings, sensor noise and grid dips.

Prints the spread of start/stop cycles across 160 ASICs and the number of flaps.
Run: bash -c "source scripts/lanes.sh; lane_exec min python -m bench.simulated_month [days]"
"""

from __future__ import annotations

import argparse
import time

from tests.library.test_allocation import simulate


def main() -> None:
    """Simulate, then print the figures for identical and mixed-efficiency fleets."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("days", nargs="?", type=int, default=30, help="simulated days (30)")
    days = parser.parse_args().days
    for label, spread in (("identical models", 1.5), ("mixed efficiency 20-35 J/TH", 15.0)):
        started = time.perf_counter()
        cycles, flaps, plans = simulate(days=days, efficiency_spread=spread)
        elapsed = time.perf_counter() - started
        print(
            f"{label}: {days} days, {plans} plans in {elapsed:.1f} s; cycles per ASIC "
            f"min {min(cycles)} max {max(cycles)} spread {max(cycles) - min(cycles)} "
            f"mean {sum(cycles) / len(cycles):.1f}; flaps {flaps}"
        )


if __name__ == "__main__":
    main()
