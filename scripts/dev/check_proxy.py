"""Check proxy mode on a running `scripts/develop` session: an outage the miners never see.

Puts the site's failover in proxy mode (through the options flow) and waits until every
mining miner works through the proxy, relayed upstream. Then blackholes the simulator's
uplink for --outage-s seconds and checks, from the simulator's own figures, that no miner
went more than 1 s without a valid job (each miner's longest gap, measured from just
before the outage), that the miners' power draw never fell by more than 1 %, that the
proxy counted local shares and that nobody was moved off it. Last, the uplink comes back:
every miner must be relayed upstream again within the hold time plus the batches, with
upstream shares resuming. With --restore the site goes back to backup-pool mode at the
end. Exits non-zero when a check fails.

    bash -c "source scripts/lanes.sh; lane_exec latest python -m scripts.dev.check_proxy"
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from typing import Any

import aiohttp

from devtools.develop import session_apis, session_parser
from devtools.homeassistant import HomeAssistantApi
from devtools.simulation import SimulatorControl, hashing_on
from devtools.steps import Check, StepError, poll_until

DOMAIN = "bitcoin_mining"
MAX_GAP_S = 1.0
MAX_DRAW_DROP = 0.01
SAMPLE_S = 0.25


def by_key(entities: dict[str, str], key: str) -> str:
    """The entity whose unique id is <site>_<key>."""
    matches = [entity for unique_id, entity in entities.items() if unique_id.endswith(f"_{key}")]
    if len(matches) != 1:
        raise SystemExit(f"expected one entity for {key}, found {matches}")
    return matches[0]


async def site_entry(api: HomeAssistantApi) -> str:
    """The entry id of the developed site."""
    entries = [
        e for e in await api.get("/api/config/config_entries/entry") if e["domain"] == DOMAIN
    ]
    if len(entries) != 1:
        raise SystemExit(f"expected one {DOMAIN} entry, found {len(entries)}")
    return str(entries[0]["entry_id"])


async def main(args: argparse.Namespace) -> int:
    """Run the checks; print each figure."""
    check = Check()
    async with aiohttp.ClientSession() as session:
        api, sim = session_apis(session, args)
        entry_id = await site_entry(api)
        await api.set_options(entry_id, {"local_pool_mode": "proxy"})
        await poll_until(lambda: _loaded(api, entry_id), 120, "the site to load in proxy mode", 1)
        entities = await api.entities()
        state_entity = by_key(entities, "failover_state")
        work_lost = by_key(entities, "work_lost")

        async def proxy_url() -> str | None:
            shown = await api.state(state_entity)
            url = shown["attributes"].get("local_pool_url")
            return str(url) if shown["state"] == "normal" and url else None

        url = await poll_until(proxy_url, 120, "the proxy listening (state normal)", 1)
        awake = {m["mac"] for m in await sim.miners() if m["state"] == "mining"}

        async def all_relayed() -> bool:
            miners = [m for m in await sim.miners() if m["mac"] in awake]
            return all(hashing_on(m, url) for m in miners)

        try:
            await poll_until(all_relayed, 300, "every mining miner on the proxy", 1)
        except StepError as err:
            check(False, str(err))
            return 1
        print(f"{len(awake)} miners work through the proxy {url}")
        upstream_before = await _upstream_accepted(sim)

        await sim.post("/api/job_gaps/reset", {})
        draw_before = (await sim.state())["site"]["mining_power_w"]
        await sim.post("/api/internet", {"mode": "blackhole"})
        lowest = draw_before
        started = time.monotonic()
        while time.monotonic() - started < args.outage_s:
            lowest = min(lowest, (await sim.state())["site"]["mining_power_w"])
            await asyncio.sleep(SAMPLE_S)
        state = await sim.state()
        gap = state["site"]["max_job_gap_s"]
        check(gap <= MAX_GAP_S, f"longest gap without a job in the outage: {gap:.3f} s (max 1 s)")
        drop = (draw_before - lowest) / draw_before if draw_before else 0.0
        check(
            drop <= MAX_DRAW_DROP,
            f"miners' draw {draw_before / 1000:.1f} kW, lowest {lowest / 1000:.1f} kW in the "
            f"outage: a drop of {drop * 100:.2f} % (max 1 %)",
        )
        moved = [m["mac"] for m in state["miners"] if m["mac"] in awake and not hashing_on(m, url)]
        check(not moved, f"miners moved off the proxy in the outage: {len(moved)}")
        lost = (await api.state(work_lost))["attributes"].get("local_shares")
        check(bool(lost), f"local shares counted by the proxy: {lost}")

        await sim.post("/api/internet", {"mode": "up"})
        back = time.monotonic()

        async def upstream_resumed() -> bool:
            shown = await api.state(state_entity)
            return shown["state"] == "normal" and await _upstream_accepted(sim) > upstream_before

        try:
            await poll_until(upstream_resumed, args.back_within_s, "relayed upstream again", 1)
            check(True, f"back upstream, shares resuming, after {time.monotonic() - back:.0f} s")
        except StepError as err:
            check(False, str(err))
        if args.restore:
            await api.set_options(entry_id, {"local_pool_mode": "backup"})
    return 1 if check.failures else 0


async def _loaded(api: HomeAssistantApi, entry_id: str) -> bool:
    return await api.entry_state(entry_id) == "loaded"


async def _upstream_accepted(sim: SimulatorControl) -> int:
    shares: dict[str, Any] | None = (await sim.state())["internet"]["shares"]
    return int(shares["accepted"]) if shares else 0


if __name__ == "__main__":
    parser = session_parser(__doc__)
    parser.add_argument("--outage-s", type=float, default=60, help="how long the uplink is down")
    parser.add_argument(
        "--back-within-s", type=float, default=180, help="the hold time plus the batches, at most"
    )
    parser.add_argument("--restore", action="store_true", help="back to backup-pool mode after")
    sys.exit(asyncio.run(main(parser.parse_args())))
