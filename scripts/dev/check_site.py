"""Check a running `scripts/develop` session end to end, through the REST API.

Sets the simulator's grid to 49.3 Hz and measures how long the integration's
frequency sensor and under-frequency binary sensor take to follow, then back
to 50.0 Hz. Exits non-zero when a target (2 s) is missed.
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Callable
from functools import partial
import sys

import aiohttp

from devtools.develop import session_apis, session_parser
from devtools.steps import Check, seconds_until

TARGET_S = 2.0


def by_key(entities: dict[str, str], key: str) -> str:
    """The entity whose unique id is <site>_<key>."""
    matches = [
        entity_id for unique_id, entity_id in entities.items() if unique_id.endswith(f"_{key}")
    ]
    if len(matches) != 1:
        raise SystemExit(f"expected one entity for {key}, found {matches}")
    return matches[0]


def near(target: float) -> Callable[[str], bool]:
    """A check that a state is within 0.05 of target."""

    def check(state: str) -> bool:
        try:
            return abs(float(state) - target) <= 0.05
        except ValueError:
            return False

    return check


async def main(args: argparse.Namespace) -> int:
    """Run the checks; print each delay."""
    check = Check()
    async with aiohttp.ClientSession() as session:
        api, sim = session_apis(session, args)
        entities = await api.entities()
        frequency = by_key(entities, "grid_frequency")
        under = (
            by_key(entities, "grid_under_frequency")
            if any(u.endswith("_grid_under_frequency") for u in entities)
            else by_key(entities, "under_frequency")
        )
        print(f"entities: {frequency}, {under} ({len(entities)} of this integration)")

        async def shows(entity_id: str, passes: Callable[[str], bool]) -> bool:
            return passes((await api.state(entity_id))["state"])

        for hz, expected in ((49.3, "on"), (50.0, "off")):
            await sim.post("/api/grid", {"frequency_hz": hz})
            sensor_s = await seconds_until(partial(shows, frequency, near(hz)), 10)
            binary_s = await seconds_until(partial(shows, under, expected.__eq__), 10)
            for name, delay in (
                (f"frequency shows {hz} Hz", sensor_s),
                (f"under-frequency {expected}", binary_s),
            ):
                shown = "never" if delay is None else f"{delay:.2f} s"
                check(
                    delay is not None and delay <= TARGET_S,
                    f"{name}: {shown} (target {TARGET_S:.0f} s)",
                )
    return 1 if check.failures else 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main(session_parser(__doc__).parse_args())))
