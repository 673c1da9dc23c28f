"""Check internet failover on a running `scripts/develop` session, end to end.

Blackholes the simulator's uplink (nothing answers, open sessions go silent) and checks
that within 15 s every simulated miner hashes on Home Assistant's local pool, that the
local pool counts their shares, that *Internet* is off, *Miners on local pool* reads the
fleet and the outage notification (the blueprint, set up by scripts/develop) is shown.
Then brings the uplink back and checks that after the hold time the miners return to the
upstream pool and the notification says so. Last, a 2 s down / 5 s up flap for a minute
must never move a miner. Exits non-zero when a check fails.

    bash -c "source scripts/lanes.sh; lane_exec latest python -m scripts.dev.check_failover"
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

SWITCH_OVER_TARGET_S = 15.0


def by_key(entities: dict[str, str], key: str) -> str:
    """The entity whose unique id is <site>_<key>."""
    matches = [entity for unique_id, entity in entities.items() if unique_id.endswith(f"_{key}")]
    if len(matches) != 1:
        raise SystemExit(f"expected one entity for {key}, found {matches}")
    return matches[0]


async def seconds_until_all_on(
    sim: SimulatorControl, url: str, limit: float, macs: set[str]
) -> float | None:
    """Seconds until these simulated miners all hash on `url` (None: not within limit)."""
    started = time.monotonic()
    while time.monotonic() - started < limit:
        if all(hashing_on(m, url) for m in await sim.miners() if m["mac"] in macs):
            return time.monotonic() - started
        await asyncio.sleep(0.2)
    return None


async def notification_titles(api: HomeAssistantApi) -> list[str]:
    """The titles of Home Assistant's notifications."""
    reply = await api.ws_command({"type": "persistent_notification/get"})
    return [str(item.get("title")) for item in reply.get("result") or []]


async def main(args: argparse.Namespace) -> int:
    """Run the checks; print each figure."""
    check = Check()
    async with aiohttp.ClientSession() as session:
        api, sim = session_apis(session, args)
        entities = await api.entities()
        state_entity = by_key(entities, "failover_state")
        on_local = by_key(entities, "miners_on_local_pool")
        shares = by_key(entities, "local_pool_shares")
        internet = by_key(entities, "internet")
        miners = await sim.miners()
        upstream = miners[0]["pool"]

        async def state(entity_id: str) -> dict[str, Any]:
            return await api.state(entity_id)

        async def ready() -> bool:
            shown = await state(state_entity)
            return shown["state"] == "normal" and bool(shown["attributes"].get("local_pool_url"))

        await poll_until(ready, 120, "the failover to be ready (state normal, a local pool)", 1)
        local = str((await state(state_entity))["attributes"]["local_pool_url"])
        # Miners the balancer put to sleep hash nowhere: they are moved when they wake.
        awake = {m["mac"] for m in await sim.miners() if m["state"] == "mining"}
        print(f"{len(awake)} of {len(miners)} miners mining on {upstream}; local pool {local}")

        await sim.post("/api/internet", {"mode": "blackhole"})
        moved = await seconds_until_all_on(sim, local, 60, awake)
        shown = "never (60 s)" if moved is None else f"{moved:.1f} s"
        check(
            moved is not None and moved <= SWITCH_OVER_TARGET_S,
            f"blackhole: every miner hashing on the local pool after {shown} "
            f"(target {SWITCH_OVER_TARGET_S:.0f} s)",
        )
        try:
            await poll_until(
                lambda: _equals(api, on_local, str(len(awake))), 30, "miners on local pool", 0.5
            )
            await poll_until(lambda: _equals(api, internet, "off"), 30, "internet off", 0.5)
            await poll_until(lambda: _positive(api, shares), 90, "local pool shares", 1)
            titles = await notification_titles(api)
            check(
                any(t.startswith("Internet outage") for t in titles),
                f"outage notification shown ({titles})",
            )
            check(True, f"{on_local} = {len(awake)}, {internet} off, local pool counts shares")
        except StepError as err:
            check(False, str(err))

        await sim.post("/api/internet", {"mode": "up"})
        back = await seconds_until_all_on(sim, upstream, 300, awake)
        shown = "never (300 s)" if back is None else f"{back:.1f} s (the hold time included)"
        check(back is not None, f"uplink back: every miner upstream again after {shown}")
        titles = await notification_titles(api)
        check(
            any(t.startswith("Internet back") for t in titles),
            f"restored notification shown ({titles})",
        )

        await sim.post("/api/internet", {"mode": "flap", "down_s": 2, "up_s": 5})
        worst = 0
        started = time.monotonic()
        while time.monotonic() - started < 60:
            worst = max(worst, sum(1 for m in await sim.miners() if hashing_on(m, local)))
            await asyncio.sleep(0.5)
        await sim.post("/api/internet", {"mode": "up"})
        check(worst == 0, f"a 2 s / 5 s flap for 60 s moved {worst} miners (target 0)")
    return 1 if check.failures else 0


async def _equals(api: HomeAssistantApi, entity_id: str, expected: str) -> bool:
    return str((await api.state(entity_id))["state"]) == expected


async def _positive(api: HomeAssistantApi, entity_id: str) -> bool:
    try:
        return float((await api.state(entity_id))["state"]) > 0
    except ValueError:
        return False


if __name__ == "__main__":
    sys.exit(asyncio.run(main(session_parser(__doc__).parse_args())))
