"""Check a running `scripts/develop` session's fleet and load balancing end to end (REST API).

1. Every simulated miner has a Mining switch of this integration.
2. Turning one off puts that miner to sleep in the simulator and raises its cycle count by
   exactly one; turning it on wakes it.
3. With --restart: Home Assistant restarts and every cycle count and last-off time is kept.
4. 49.3 Hz on the grid leaves no miner mining within 2 s; back at 50.0 Hz the fleet returns
   in batches once the hold time has passed.
5. `rebalance` with dry_run through the REST API returns a plan and changes nothing.
6. Lower supply stops the least efficient miners first; more supply starts those with the
   fewest cycles first.
Exits non-zero when a check fails.
"""

from __future__ import annotations

import argparse
import asyncio
from dataclasses import dataclass
import sys
import time
from typing import Any

import aiohttp

from devtools.develop import session_apis, session_parser
from devtools.homeassistant import HomeAssistantApi
from devtools.simulation import SimulatorControl, miner_address
from devtools.steps import Check, StepError, seconds_until

SHED_TARGET_S = 2.0


@dataclass(slots=True)
class Site:
    """Home Assistant's APIs and the simulator's control API."""

    ha: HomeAssistantApi
    sim: SimulatorControl


def by_mac(entities: dict[str, str], mac: str, key: str) -> str:
    """A miner's entity from its MAC (or, for plain cgminer, its address) and the entity key."""
    return entities[f"{mac}_{key}"]


def ha_key(miner: dict[str, Any]) -> str:
    """How the integration names a simulated miner: its MAC, or its address for plain cgminer."""
    if miner["family"] != "cgminer":
        return str(miner["mac"])
    return f"address:{miner_address(miner)}"


async def check_switch_and_cycles(site: Site, entities: dict[str, str], check: Check) -> str:
    """Turn one miner off and on; return its MAC."""
    miners = await site.sim.miners()
    switches = [u for u in entities if u.endswith("_mining")]
    check(len(switches) == len(miners), f"{len(switches)} Mining switches for {len(miners)} miners")
    miner = next(m for m in miners if m["family"] == "whatsminer" and m["state"] == "mining")
    switch = by_mac(entities, miner["mac"], "mining")
    cycles_entity = by_mac(entities, miner["mac"], "cycles")
    before = int((await site.ha.state(cycles_entity))["state"])
    await site.ha.call("switch", "turn_off", {"entity_id": switch})
    shown = next(m for m in await site.sim.miners() if m["mac"] == miner["mac"])
    check(shown["state"] == "sleeping", f"{switch} off: simulator shows {shown['state']}")
    after = int((await site.ha.state(cycles_entity))["state"])
    check(after == before + 1, f"cycles {before} -> {after} (exactly one more)")
    await site.ha.call("switch", "turn_on", {"entity_id": switch})
    shown = next(m for m in await site.sim.miners() if m["mac"] == miner["mac"])
    check(
        shown["state"] in ("starting", "mining"), f"{switch} on: simulator shows {shown['state']}"
    )
    return str(miner["mac"])


async def check_restart(site: Site, entities: dict[str, str], check: Check) -> None:
    """Restart Home Assistant; cycle counts and last-off times must come back unchanged."""
    keys = [u for u in entities if u.endswith(("_cycles", "_last_off"))]
    before = {u: (await site.ha.state(entities[u]))["state"] for u in keys}
    ha = site.ha
    async with ha.session.post(
        f"{ha.base}/api/services/homeassistant/restart", headers=ha.headers
    ) as response:
        response.raise_for_status()
    await asyncio.sleep(5)

    async def back() -> bool:
        try:
            state = await site.ha.state(entities[keys[0]])
        except (aiohttp.ClientError, StepError, ValueError):
            return False
        return state.get("state") not in (None, "unavailable", "unknown")

    took = await seconds_until(back, 120)
    check(took is not None, "Home Assistant back after a restart")
    after = {u: (await site.ha.state(entities[u]))["state"] for u in keys}
    changed = [u for u in keys if before[u] != after[u]]
    check(
        not changed,
        f"{len(keys)} cycle counts and last-off times kept across the restart"
        + (f" (changed: {changed[:3]})" if changed else ""),
    )


async def check_frequency(site: Site, check: Check) -> None:
    """Shed on 49.3 Hz within 2 s, restore in batches after the hold time."""
    await site.sim.post("/api/grid", {"frequency_hz": 49.3})

    async def none_mining() -> bool:
        return all(m["state"] != "mining" for m in await site.sim.miners())

    took = await seconds_until(none_mining, 10)
    check(
        took is not None and took <= SHED_TARGET_S,
        f"49.3 Hz: no miner mining after {took if took is None else round(took, 2)} s "
        f"(target {SHED_TARGET_S} s)",
    )
    await site.sim.post("/api/grid", {"frequency_hz": 50.0})
    started = time.monotonic()
    first_back: float | None = None
    counts: list[int] = []
    while time.monotonic() - started < 300:
        running = sum(m["state"] != "sleeping" for m in await site.sim.miners())
        if running and first_back is None:
            first_back = time.monotonic() - started
        if not counts or counts[-1] != running:
            counts.append(running)
        if running == len(await site.sim.miners()):
            break
        await asyncio.sleep(0.5)
    check(
        first_back is not None,
        f"50.0 Hz: first miners back after {first_back and round(first_back)} s (the hold time)",
    )
    check(len(counts) > 2, f"restored in batches: running counts {counts}")


async def check_dry_run_and_supply(site: Site, entities: dict[str, str], check: Check) -> None:
    """A dry run changes nothing; supply changes stop the least efficient, start fewest cycles."""
    # Let every miner pass its minimum on-time (30 s on the dev site) and finish waking:
    # the balancer only stops miners past it, and efficiency is read while hashing.
    await asyncio.sleep(40)
    mode = next(e for u, e in entities.items() if u.endswith("_allocation_mode"))
    # Advisory: the balancer plans but acts only when asked, so the dry run stands alone.
    await site.ha.call("select", "select_option", {"entity_id": mode, "option": "advisory"})
    states_before = [m["state"] for m in await site.sim.miners()]
    await site.sim.post("/api/supply", {"power_kw": 100})
    await asyncio.sleep(2)  # the MQTT sensor follows within a second
    plan = (await site.ha.call("bitcoin_mining", "rebalance", {"dry_run": True}, response=True))[
        "service_response"
    ]
    states_after = [m["state"] for m in await site.sim.miners()]
    check(
        bool(plan["stops"]) and states_before == states_after,
        f"dry run: {len(plan['stops'])} stops planned, nothing changed",
    )
    # Efficiency while hashing, from before anything stops.
    efficiency = {
        ha_key(m): m["power_w"] / m["hashrate_ths"]
        for m in await site.sim.miners()
        if m["hashrate_ths"]
    }
    # Back to auto: the balancer acts on the plan at once.
    await site.ha.call("select", "select_option", {"entity_id": mode, "option": "auto"})
    await asyncio.sleep(3)
    stopped = {ha_key(m) for m in await site.sim.miners() if m["state"] == "sleeping"}
    kept = [e for mac, e in efficiency.items() if mac not in stopped]
    gone = [e for mac, e in efficiency.items() if mac in stopped]
    # The balancer treats efficiencies within 2 J/TH as equal (then the longest running stops).
    check(
        bool(stopped) and bool(kept) and min(gone) >= max(kept) - 2,
        f"less supply: {len(stopped)} stopped, least efficient first "
        f"(stopped {min(gone, default=0):.1f}-{max(gone, default=0):.1f} J/TH, "
        f"kept {min(kept, default=0):.1f}-{max(kept, default=0):.1f} J/TH)",
    )
    cycles = {
        mac: int((await site.ha.state(by_mac(entities, mac, "cycles")))["state"]) for mac in stopped
    }
    await site.sim.post("/api/supply", {"power_kw": 600})

    async def first_batch() -> bool:
        return any(
            ha_key(m) in stopped and m["state"] != "sleeping" for m in await site.sim.miners()
        )

    await seconds_until(first_batch, 60)
    await asyncio.sleep(1)
    started = {
        ha_key(m)
        for m in await site.sim.miners()
        if ha_key(m) in stopped and m["state"] != "sleeping"
    }
    waiting = stopped - started
    check(
        bool(started)
        and (not waiting or max(cycles[m] for m in started) <= min(cycles[m] for m in waiting)),
        f"more supply: {len(started)} started first, with the fewest cycles "
        f"(cycles {sorted({cycles[m] for m in started})}; "
        f"still waiting: {sorted({cycles[m] for m in waiting})})",
    )


async def main(args: argparse.Namespace) -> int:
    """Run the checks in order."""
    check = Check()
    async with aiohttp.ClientSession() as session:
        site = Site(*session_apis(session, args))
        entities = await site.ha.entities()

        async def all_mining() -> bool:
            return all(m["state"] == "mining" for m in await site.sim.miners())

        # A dip or supply change just before may still be restoring in batches.
        if await seconds_until(all_mining, 300) is None:
            print("the fleet did not come back to mining within 5 minutes", file=sys.stderr)
            return 1
        await check_switch_and_cycles(site, entities, check)
        if args.restart:
            await check_restart(site, entities, check)
        await check_frequency(site, check)
        await check_dry_run_and_supply(site, entities, check)
    return 1 if check.failures else 0


if __name__ == "__main__":
    parser = session_parser(__doc__)
    parser.add_argument("--restart", action="store_true", help="also restart Home Assistant")
    sys.exit(asyncio.run(main(parser.parse_args())))
