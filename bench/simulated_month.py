"""An accelerated month of the allocation: solar swings, sensor noise and grid dips.

Prints the spread of start/stop cycles across 160 ASICs and the number of flaps.
Run: bash -c "source scripts/lanes.sh; lane_exec min python bench/simulated_month.py [days]"
"""

from __future__ import annotations

from pathlib import Path
import sys
import time

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.library.test_allocation import simulate


def main() -> None:
    """Simulate, then print the figures for identical and mixed-efficiency fleets."""
    days = int(sys.argv[1]) if len(sys.argv) > 1 else 30
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
