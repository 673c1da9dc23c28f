"""Internet failover, end to end: the uplink dies, every miner hashes on the local pool; and back.

Starts its own simulated site (160 miners, real Stratum clients of their pools, per-miner
ports) and a real Home Assistant (this lane's) in a temporary config directory, adds the site
through the integration's own config flow, waits until every miner lists the local pool last,
then runs N outages of each mode. For each it measures on this machine's wall clock:
- switch-over: from the moment the simulator's uplink failed to the last miner hashing on
  the local pool (its Stratum session with the local pool ready, as the simulator shows it);
- switch-back: from the moment the uplink returned to the last miner hashing upstream again,
  and the same minus the hold time (what the moves themselves took).
A flap (down 2 s, up 5 s) for a minute follows: no miner may move.

Targets (issue 13): within 15 s of a blackhole every miner hashes on the local pool; a
2 s / 5 s flap for a minute never moves a miner.

Run in the latest lane:
    bash -c "source scripts/lanes.sh; lane_exec latest python -m bench.failover"
Options: --miners 160  --latency-ms 100  --outages 10  --modes blackhole,refuse
         --hold-s 5  --batch 20  --flap-s 60
"""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path
import tempfile
import time
from typing import Any

import aiohttp

from custom_components.bitcoin_mining.miningsite.miners.pool_moves import same_pool_url
from devtools.hass_process import BENCH_SUPPLY_ENTITY, BENCH_SUPPLY_YAML, HomeAssistantProcess
from devtools.homeassistant import HomeAssistantApi, onboard, site_answers, wait_for_http
from devtools.simulation import (
    SimulatorControl,
    free_port,
    hashing_on,
    miner_list,
    running_simulator,
)
from devtools.steps import poll_until
from simulator.stratum import TINY_DIFFICULTY

STATE_ENTITY = "sensor.bench_site_failover_state"
# How often the simulator's state is read while a move is timed.
WATCH_S = 0.1


def pct(values: list[float], share: float) -> float:
    """A percentile of seconds, in milliseconds (nearest rank)."""
    ordered = sorted(values)
    return ordered[min(int(share * len(ordered)), len(ordered) - 1)] * 1000


def all_on(miners: list[dict[str, Any]], url: str) -> bool:
    """Every miner hashes on `url`."""
    return all(hashing_on(m, url) for m in miners)


async def time_until(sim: SimulatorControl, url: str, since: float, limit: float) -> float:
    """Seconds from `since` (wall clock) until every miner hashes on `url`."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if all_on(await sim.miners(), url):
            return time.time() - since
        await asyncio.sleep(WATCH_S)
    left = [m for m in await sim.miners() if not hashing_on(m, url)]
    families = sorted({m["family"] for m in left})
    sample = {key: left[0][key] for key in ("ip", "family", "state", "pool", "stratum")}
    raise TimeoutError(
        f"{len(left)} miners not on {url} after {limit:g} s ({', '.join(families)}; {sample})"
    )


async def set_uplink(sim: SimulatorControl, mode: str, **params: Any) -> float:
    """Set the uplink mode; the wall-clock moment it changed."""
    before = time.time()
    await sim.post("/api/internet", {"mode": mode, **params})
    return before


async def run(args: argparse.Namespace) -> None:
    meter_port, pool_port = free_port(), free_port()
    with tempfile.TemporaryDirectory(prefix="bench-failover-") as work:
        home_assistant = HomeAssistantProcess(Path(work), free_port(), name="Failover bench")
        home_assistant.prepare(BENCH_SUPPLY_YAML)
        async with running_simulator(
            args.miners,
            "--base-port=0",
            f"--latency-ms={args.latency_ms}",
            "--wake-delay-s=1",
            f"--meter=127.0.0.1:{meter_port}",
            f"--pool=127.0.0.1:{pool_port}",
            "--share-interval-s=5",
        ) as simulator:
            await home_assistant.start()
            try:
                async with aiohttp.ClientSession() as session:
                    sim = SimulatorControl(session, simulator.control_url)
                    base = home_assistant.base
                    await wait_for_http(session, base, 180)
                    access = HomeAssistantApi(session, base, await onboard(session, base))
                    api = HomeAssistantApi(
                        session, base, await access.long_lived_token("bench/failover")
                    )
                    await api.promote_http_config()
                    await measure(api, sim, simulator.miners, meter_port, pool_port, args)
            except TimeoutError:
                # What the integration said about it (its warnings name the miners and why).
                for console in home_assistant.consoles:
                    for line in console.read_text(errors="replace").splitlines():
                        if "bitcoin_mining" in line and ("WARNING" in line or "ERROR" in line):
                            print(line[:400])
                raise
            finally:
                await home_assistant.stop()


async def measure(
    api: HomeAssistantApi,
    sim: SimulatorControl,
    miners: list[dict[str, Any]],
    meter_port: int,
    pool_port: int,
    args: argparse.Namespace,
) -> None:
    answers = site_answers(
        "Bench site",
        meter_port=meter_port,
        pool_port=pool_port,
        supply_entity=BENCH_SUPPLY_ENTITY,
        miners=miner_list(miners),
    )
    result = await api.run_flow("bitcoin_mining", answers)
    entry_id = result["result"]["entry_id"]
    local_port = free_port()
    await api.set_options(
        entry_id,
        {
            "supply_stale_s": 3600,
            "local_pool_port": local_port,
            "failback_hold_s": args.hold_s,
            "failback_batch": args.batch,
            # The simulated miners hash in Python: the local pool must take their tiny shares.
            "local_pool_min_difficulty": TINY_DIFFICULTY,
        },
    )
    upstream = f"stratum+tcp://127.0.0.1:{pool_port}"

    async def lists_ready() -> bool:
        state = await api.state(STATE_ENTITY)
        return state["state"] == "normal" and bool(state["attributes"].get("last_move"))

    await poll_until(lists_ready, 300, "the local pool on every miner's list", 0.5)
    state = await api.state(STATE_ENTITY)
    local = state["attributes"]["local_pool_url"]
    print(
        f"site up: {args.miners} miners, {args.latency_ms:g} ms latency; local pool {local}; "
        f"hold {args.hold_s:g} s, batches of {args.batch}",
        flush=True,
    )
    await time_until(sim, upstream, time.time(), 120)

    results: dict[str, tuple[list[float], list[float]]] = {}
    for mode in args.modes:
        over: list[float] = []
        back: list[float] = []
        for index in range(args.outages):
            died = await set_uplink(sim, mode)
            try:
                over.append(await time_until(sim, local, died, 120))
            except TimeoutError:
                state = await api.state(STATE_ENTITY)
                print(f"failover state: {state['state']} {state['attributes']}", flush=True)
                raise
            returned = await set_uplink(sim, "up")
            back.append(await time_until(sim, upstream, returned, 300))
            print(
                f"{mode} {index + 1:2}: on the local pool after {over[-1]:5.1f} s, "
                f"back upstream after {back[-1]:5.1f} s ({back[-1] - args.hold_s:5.1f} s "
                f"after the hold)",
                flush=True,
            )
        results[mode] = (over, back)

    flap_moved = 0
    if args.flap_s > 0:
        await set_uplink(sim, "flap", down_s=2, up_s=5, down_mode="blackhole")
        deadline = time.monotonic() + args.flap_s
        while time.monotonic() < deadline:
            on_local = sum(1 for m in await sim.miners() if same_pool_url(m["pool"], local))
            flap_moved = max(flap_moved, on_local)
            await asyncio.sleep(0.5)
        await set_uplink(sim, "up")

    print(f"\n{args.miners} miners, {args.latency_ms:g} ms latency, {args.outages} outages a mode")
    for mode, (over, back) in results.items():
        moves = [b - args.hold_s for b in back]
        print(
            f"  {mode:9} switch-over  p50 {pct(over, 0.5):6.0f} ms  p99 {pct(over, 0.99):6.0f} ms"
            f"  max {max(over) * 1000:6.0f} ms"
        )
        print(
            f"  {mode:9} switch-back  p50 {pct(back, 0.5):6.0f} ms  p99 {pct(back, 0.99):6.0f} ms"
            f"  (moves after the {args.hold_s:g} s hold: p50 {pct(moves, 0.5):6.0f} ms, "
            f"p99 {pct(moves, 0.99):6.0f} ms)"
        )
    worst = max(max(over) for over, _ in results.values())
    verdict = "met" if worst <= 15 else "NOT met"
    print(f"  target: every miner on the local pool within 15 s: {verdict}")
    if args.flap_s > 0:
        verdict = "met" if flap_moved == 0 else f"NOT met ({flap_moved} moved)"
        print(f"  target: a 2 s / 5 s flap for {args.flap_s:g} s moves no miner: {verdict}")


def main() -> None:
    """Parse the options and run the benchmark."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--miners", type=int, default=160)
    parser.add_argument("--latency-ms", type=float, default=100.0)
    parser.add_argument("--outages", type=int, default=10)
    parser.add_argument(
        "--modes", type=lambda text: text.split(","), default=["blackhole", "refuse"]
    )
    parser.add_argument("--hold-s", type=float, default=5.0)
    parser.add_argument("--batch", type=int, default=20)
    parser.add_argument("--flap-s", type=float, default=60.0)
    args = parser.parse_args()
    asyncio.run(run(args))


if __name__ == "__main__":
    main()
