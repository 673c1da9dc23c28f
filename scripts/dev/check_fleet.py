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
from collections.abc import Awaitable, Callable
from pathlib import Path
import sys
import time
from typing import Any

import aiohttp
from check_site import our_entities

SHED_TARGET_S = 2.0


class Check:
    """Counts failures and prints one line per check."""

    def __init__(self) -> None:
        """No failures yet."""
        self.failures = 0

    def __call__(self, ok: bool, what: str) -> None:
        """Record and print one check."""
        self.failures += not ok
        print(f"{'ok  ' if ok else 'FAIL'} {what}", flush=True)


class Site:
    """The REST API of Home Assistant and of the simulator's control API."""

    def __init__(self, session: aiohttp.ClientSession, args: argparse.Namespace) -> None:
        """Remember where both are."""
        self.session = session
        self.url = args.url.rstrip("/")
        self.control = args.control.rstrip("/")
        token = Path(args.token_file).read_text().strip()
        self.token = token
        self.headers = {"Authorization": f"Bearer {token}"}

    async def sim(self) -> dict[str, Any]:
        """The simulator's whole state."""
        async with self.session.get(f"{self.control}/api/state") as response:
            return dict(await response.json())

    async def sim_post(self, path: str, body: dict[str, Any]) -> None:
        """Change the simulated site."""
        async with self.session.post(f"{self.control}{path}", json=body) as response:
            response.raise_for_status()

    async def state(self, entity_id: str) -> dict[str, Any]:
        """One entity's state."""
        async with self.session.get(
            f"{self.url}/api/states/{entity_id}", headers=self.headers
        ) as response:
            return dict(await response.json())

    async def call(self, domain: str, service: str, data: dict[str, Any]) -> Any:
        """Call an action, asking for its response where it has one."""
        suffix = "?return_response" if domain == "bitcoin_mining" else ""
        async with self.session.post(
            f"{self.url}/api/services/{domain}/{service}{suffix}", json=data, headers=self.headers
        ) as response:
            response.raise_for_status()
            return await response.json()


async def until(predicate: Callable[[], Awaitable[bool]], timeout: float) -> float | None:
    """Seconds until the predicate holds, or None after the timeout."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if await predicate():
            return time.monotonic() - started
        await asyncio.sleep(0.05)
    return None


def by_mac(entities: dict[str, str], mac: str, key: str) -> str:
    """A miner's entity from its MAC (or, for plain cgminer, its address) and the entity key."""
    return entities[f"{mac}_{key}"]


def ha_key(miner: dict[str, Any]) -> str:
    """How the integration names a simulated miner: its MAC, or its address for plain cgminer."""
    if miner["family"] != "cgminer":
        return str(miner["mac"])
    address = miner["ip"] if miner["ip"] != "127.0.0.1" else f"{miner['ip']}:{miner['api_port']}"
    return f"address:{address}"


async def check_switch_and_cycles(site: Site, entities: dict[str, str], check: Check) -> str:
    """Turn one miner off and on; return its MAC."""
    miners = (await site.sim())["miners"]
    switches = [u for u in entities if u.endswith("_mining")]
    check(len(switches) == len(miners), f"{len(switches)} Mining switches for {len(miners)} miners")
    miner = next(m for m in miners if m["family"] == "whatsminer" and m["state"] == "mining")
    switch = by_mac(entities, miner["mac"], "mining")
    cycles_entity = by_mac(entities, miner["mac"], "cycles")
    before = int((await site.state(cycles_entity))["state"])
    await site.call("switch", "turn_off", {"entity_id": switch})
    shown = next(m for m in (await site.sim())["miners"] if m["mac"] == miner["mac"])
    check(shown["state"] == "sleeping", f"{switch} off: simulator shows {shown['state']}")
    after = int((await site.state(cycles_entity))["state"])
    check(after == before + 1, f"cycles {before} -> {after} (exactly one more)")
    await site.call("switch", "turn_on", {"entity_id": switch})
    shown = next(m for m in (await site.sim())["miners"] if m["mac"] == miner["mac"])
    check(
        shown["state"] in ("starting", "mining"), f"{switch} on: simulator shows {shown['state']}"
    )
    return str(miner["mac"])


async def check_restart(site: Site, entities: dict[str, str], check: Check) -> None:
    """Restart Home Assistant; cycle counts and last-off times must come back unchanged."""
    keys = [u for u in entities if u.endswith(("_cycles", "_last_off"))]
    before = {u: (await site.state(entities[u]))["state"] for u in keys}
    async with site.session.post(
        f"{site.url}/api/services/homeassistant/restart", headers=site.headers
    ) as response:
        response.raise_for_status()
    await asyncio.sleep(5)

    async def back() -> bool:
        try:
            state = await site.state(entities[keys[0]])
        except (aiohttp.ClientError, ValueError):
            return False
        return state.get("state") not in (None, "unavailable", "unknown")

    took = await until(back, 120)
    check(took is not None, "Home Assistant back after a restart")
    after = {u: (await site.state(entities[u]))["state"] for u in keys}
    changed = [u for u in keys if before[u] != after[u]]
    check(
        not changed,
        f"{len(keys)} cycle counts and last-off times kept across the restart"
        + (f" (changed: {changed[:3]})" if changed else ""),
    )


async def check_frequency(site: Site, check: Check) -> None:
    """Shed on 49.3 Hz within 2 s, restore in batches after the hold time."""
    await site.sim_post("/api/grid", {"frequency_hz": 49.3})

    async def none_mining() -> bool:
        return all(m["state"] != "mining" for m in (await site.sim())["miners"])

    took = await until(none_mining, 10)
    check(
        took is not None and took <= SHED_TARGET_S,
        f"49.3 Hz: no miner mining after {took if took is None else round(took, 2)} s "
        f"(target {SHED_TARGET_S} s)",
    )
    await site.sim_post("/api/grid", {"frequency_hz": 50.0})
    started = time.monotonic()
    first_back: float | None = None
    counts: list[int] = []
    while time.monotonic() - started < 300:
        running = sum(m["state"] != "sleeping" for m in (await site.sim())["miners"])
        if running and first_back is None:
            first_back = time.monotonic() - started
        if not counts or counts[-1] != running:
            counts.append(running)
        if running == len((await site.sim())["miners"]):
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
    await site.call("select", "select_option", {"entity_id": mode, "option": "advisory"})
    states_before = [m["state"] for m in (await site.sim())["miners"]]
    await site.sim_post("/api/supply", {"power_kw": 100})
    await asyncio.sleep(2)  # the MQTT sensor follows within a second
    plan = (await site.call("bitcoin_mining", "rebalance", {"dry_run": True}))["service_response"]
    states_after = [m["state"] for m in (await site.sim())["miners"]]
    check(
        bool(plan["stops"]) and states_before == states_after,
        f"dry run: {len(plan['stops'])} stops planned, nothing changed",
    )
    # Efficiency while hashing, from before anything stops.
    efficiency = {
        ha_key(m): m["power_w"] / m["hashrate_ths"]
        for m in (await site.sim())["miners"]
        if m["hashrate_ths"]
    }
    # Back to auto: the balancer acts on the plan at once.
    await site.call("select", "select_option", {"entity_id": mode, "option": "auto"})
    await asyncio.sleep(3)
    stopped = {ha_key(m) for m in (await site.sim())["miners"] if m["state"] == "sleeping"}
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
        mac: int((await site.state(by_mac(entities, mac, "cycles")))["state"]) for mac in stopped
    }
    await site.sim_post("/api/supply", {"power_kw": 600})

    async def first_batch() -> bool:
        return any(
            ha_key(m) in stopped and m["state"] != "sleeping" for m in (await site.sim())["miners"]
        )

    await until(first_batch, 60)
    await asyncio.sleep(1)
    started = {
        ha_key(m)
        for m in (await site.sim())["miners"]
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
        site = Site(session, args)
        entities = await our_entities(session, site.url, site.token)

        async def all_mining() -> bool:
            return all(m["state"] == "mining" for m in (await site.sim())["miners"])

        # A dip or supply change just before may still be restoring in batches.
        if await until(all_mining, 300) is None:
            print("the fleet did not come back to mining within 5 minutes", file=sys.stderr)
            return 1
        await check_switch_and_cycles(site, entities, check)
        if args.restart:
            await check_restart(site, entities, check)
        await check_frequency(site, check)
        await check_dry_run_and_supply(site, entities, check)
    return 1 if check.failures else 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--url", default="http://127.0.0.1:8123")
    parser.add_argument("--control", default="http://127.0.0.1:18780")
    parser.add_argument("--token-file", default=".dev/token")
    parser.add_argument("--restart", action="store_true", help="also restart Home Assistant")
    sys.exit(asyncio.run(main(parser.parse_args())))
