"""Chaos soak: a real Home Assistant and a simulated site under faults, then five checks.

Starts a mosquitto broker, the simulator (160 miners by default, per-miner ports, supply
sensors publishing over MQTT) and a real Home Assistant (this lane's) in a temporary config
directory with MQTT and the site added through their config flows. Then, for --minutes:
- 20 % of the miners keep cycling through every miner fault (timeout, reset, garbage,
  slow, offline, wrong credentials), a few changing every few seconds;
- a script swings the supply (stops, then starts), dips the grid frequency (a full shed,
  then a restore), makes the meter answer garbage, nothing, late and twice, and restarts
  the MQTT broker;
- Home Assistant is restarted twice in the middle of an allocation: right after a dip's
  shed has begun, and right after a supply step's starts have begun.
Then the faults clear, the site settles and the soak checks, printing PASS/FAIL with figures:
1. the site never drew more than the supply for longer than one fleet poll (the simulator's
   own figures, sampled every 0.5 s);
2. every miner's Cycles sensor equals the simulator's count of on→off transitions;
3. no miner is left mining that the balancer wanted stopped (a dry-run plan has no stops;
   every Mining switch matches the simulator);
4. no unhandled exception in Home Assistant's logs (every run's);
5. Home Assistant's memory growth (RSS from /proc) over the last run stays bounded.
Exits 1 on any FAIL. Every process it starts is stopped on the way out (also on Ctrl-C).

Run in the latest lane (timings are accelerated through the site's options):
    bash -c "source scripts/lanes.sh; lane_exec latest python -m bench.soak"
Options: --minutes 6  --miners 160  --seed 1  --keep (keep the logs even on PASS)
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Awaitable, Callable
import contextlib
from dataclasses import dataclass, field
import itertools
from pathlib import Path
import random
import shutil
import signal
import sys
import tempfile
import time
from typing import Any

import aiohttp

from devtools.hass_process import HomeAssistantProcess, mqtt_answers
from devtools.homeassistant import HomeAssistantApi, onboard, site_answers, wait_for_http
from devtools.simulation import (
    SimulatorControl,
    free_port,
    miner_list,
    restartable_port,
    running_simulator,
)
from devtools.steps import StepError, poll_until
from simulator.miners.faults import MINER_FAULTS
from simulator.mqtt import Mosquitto

DOMAIN = "bitcoin_mining"
SUPPLY_ENTITY = "sensor.simulated_supply_supply_power"
SITE_NAME = "Soak site"
FLEET_INTERVAL_S = 5.0
OVERHEAD_KW = 12.0  # the simulator's overhead, and the site's option
MARGIN_KW = 5.0
OPTIONS = {
    "fleet_interval": FLEET_INTERVAL_S,
    "min_on_s": 10,
    "min_off_s": 10,
    "restore_hold_s": 10,
    "max_starts_per_batch": 40,
}
FAULT_SHARE = 0.2
SAMPLE_S = 0.5
SETTLE_S = 120.0
# Home Assistant's own errors for packages the lane lacks (--skip-pip): onboarding adds
# integrations (met, camera, conversation, ...) this integration has nothing to do with.
LANE_GAPS = ("No module named",)
# The last run's RSS may grow by this much (caches fill in the first minutes).
RSS_GROWTH_LIMIT = 96 * 1024 * 1024


def say(text: str) -> None:
    """A progress line with the time since start."""
    print(f"[{time.monotonic() - STARTED:6.1f} s] {text}", flush=True)


STARTED = time.monotonic()


@dataclass
class Soak:
    """Everything the soak runs and records."""

    args: argparse.Namespace
    sim: SimulatorControl
    home_assistant: HomeAssistantProcess
    broker: Mosquitto
    miners: list[dict[str, Any]]
    full_kw: float = 0.0
    api: HomeAssistantApi | None = None
    token: str = ""
    entry_id: str = ""
    # (monotonic time, site draw W, supply W) every SAMPLE_S.
    samples: list[tuple[float, float, float]] = field(default_factory=list)
    # Site events wait while Home Assistant restarts: nothing could react to them.
    quiet: asyncio.Lock = field(default_factory=asyncio.Lock)
    events: list[str] = field(default_factory=list)
    restarts: list[str] = field(default_factory=list)
    rss: list[tuple[int, float, int]] = field(default_factory=list)  # (run, t, bytes)
    ready: dict[int, float] = field(default_factory=dict)  # run -> when its site was up
    rng: random.Random = field(default_factory=random.Random)
    rotating: bool = False

    @property
    def ha(self) -> HomeAssistantApi:
        """Home Assistant's API (after setup)."""
        assert self.api is not None
        return self.api

    def note(self, text: str) -> None:
        """Record and print a chaos event."""
        self.events.append(text)
        say(text)

    # --- setup ------------------------------------------------------------------------------

    async def set_up(self, session: aiohttp.ClientSession) -> None:
        """Onboard, MQTT, the site and its options; wait until every miner has a switch."""
        base = self.home_assistant.base
        await wait_for_http(session, base, 240)
        access = HomeAssistantApi(session, base, await onboard(session, base))
        self.token = await access.long_lived_token("bench/soak")
        self.api = HomeAssistantApi(session, base, self.token)
        # Otherwise Home Assistant 2026.10 reverts its HTTP settings and restarts after 5 min.
        await self.ha.promote_http_config()
        await self.ha.run_flow("mqtt", mqtt_answers("127.0.0.1", self.broker.port))
        await poll_until(self._supply_known, 90, f"{SUPPLY_ENTITY} to have a value", 0.5)
        state = await self.sim.state()
        answers = site_answers(
            SITE_NAME,
            meter_port=int(state["grid"]["meter"].rpartition(":")[2]),
            pool_port=int(state["internet"]["pool"].rpartition(":")[2]),
            supply_entity=SUPPLY_ENTITY,
            miners=miner_list(self.miners),
        )
        answers["overhead_kw"], answers["margin_kw"] = OVERHEAD_KW, MARGIN_KW
        self.entry_id = (await self.ha.run_flow(DOMAIN, answers))["result"]["entry_id"]
        # The local pool on a free port: another Home Assistant on this machine
        # (scripts/develop) may have 3333.
        await self.ha.set_options(self.entry_id, OPTIONS | {"local_pool_port": free_port()})
        await self.wait_site_up(180)

    async def _supply_known(self) -> bool:
        with contextlib.suppress(StepError, ValueError):
            float((await self.ha.state(SUPPLY_ENTITY))["state"])
            return True
        return False

    async def switches(self) -> dict[str, str]:
        """unique_id -> state of every Mining switch."""
        registry = await self.ha.entities(DOMAIN)
        states = {s["entity_id"]: s["state"] for s in await self.ha.get("/api/states")}
        return {
            unique_id: states.get(entity_id, "missing")
            for unique_id, entity_id in registry.items()
            if entity_id.startswith("switch.") and unique_id.endswith("_mining")
        }

    async def wait_site_up(self, timeout: float) -> None:
        """Until the entry is loaded and every miner's Mining switch is on or off."""

        async def up() -> bool:
            with contextlib.suppress(StepError, aiohttp.ClientError):
                entries = await self.ha.get("/api/config/config_entries/entry")
                loaded = any(
                    e["entry_id"] == self.entry_id and e["state"] == "loaded" for e in entries
                )
                known = [s for s in (await self.switches()).values() if s in ("on", "off")]
                return loaded and len(known) >= len(self.miners) - self.faulted_now()
            return False

        try:
            await poll_until(up, timeout, "the site's entry loaded with every Mining switch", 1)
        except StepError as err:
            entries = await self.ha.get("/api/config/config_entries/entry")
            states = [e["state"] for e in entries if e["entry_id"] == self.entry_id]
            shown = list((await self.switches()).values())
            counts = {state: shown.count(state) for state in sorted(set(shown))}
            raise StepError(f"{err}: entry {states}, Mining switches {counts}") from None
        self.ready[self.home_assistant.runs] = time.monotonic()

    def faulted_now(self) -> int:
        """Miners that may be unreadable now (the fault rotator's share)."""
        return round(FAULT_SHARE * len(self.miners)) if self.rotating else 0

    # --- background: samples, memory, miner faults --------------------------------------------

    async def sample_forever(self) -> None:
        """The simulator's site draw and supply every SAMPLE_S."""
        while True:
            with contextlib.suppress(aiohttp.ClientError, StepError, TimeoutError):
                state = await self.sim.state()
                self.samples.append(
                    (
                        time.monotonic(),
                        float(state["grid"]["power_w"]),
                        float(state["supply"]["power_kw"]) * 1000,
                    )
                )
            await asyncio.sleep(SAMPLE_S)

    async def memory_forever(self) -> None:
        """Home Assistant's RSS every 5 s, per run."""
        while True:
            rss = self.home_assistant.rss()
            if rss is not None:
                self.rss.append((self.home_assistant.runs, time.monotonic(), rss))
            await asyncio.sleep(5)

    async def rotate_faults_forever(self) -> None:
        """Keep FAULT_SHARE of the miners faulted, a few moving every 3 s, each fault in turn."""
        count = round(FAULT_SHARE * len(self.miners))
        kinds = itertools.cycle(MINER_FAULTS)
        faulted: dict[int, str] = {}
        self.rotating = True
        while True:
            healthy = [m["index"] for m in self.miners if m["index"] not in faulted]
            # A quarter of the faulted miners recover, as many others fail.
            for index in self.rng.sample(sorted(faulted), min(len(faulted), max(1, count // 4))):
                await self.sim.post(
                    "/api/faults", {"fault": faulted.pop(index), "miners": [index], "active": False}
                )
            for index in self.rng.sample(healthy, count - len(faulted)):
                fault = next(kinds)
                await self.sim.post("/api/faults", {"fault": fault, "miners": [index]})
                faulted[index] = fault
            await asyncio.sleep(3)

    # --- site events ---------------------------------------------------------------------------

    async def supply(self, fraction: float) -> None:
        """Supply = fraction of what the whole fleet draws, plus overhead and margin."""
        kw = round(self.full_kw * fraction + OVERHEAD_KW + MARGIN_KW, 1)
        await self.sim.post("/api/supply", {"power_kw": kw})
        self.note(f"supply {kw:.0f} kW ({fraction:.0%} of the fleet)")

    async def frequency(self, hz: float) -> None:
        """The grid frequency now."""
        await self.sim.post("/api/grid", {"frequency_hz": hz})
        self.note(f"frequency {hz} Hz")

    async def meter_fault(self, fault: str, seconds: float, **extra: float) -> None:
        """One of the meter's wire faults for a while."""
        self.note(f"meter {fault} for {seconds:.0f} s")
        await self.sim.post("/api/faults", {"fault": f"meter_{fault}", "active": True, **extra})
        await asyncio.sleep(seconds)
        await self.sim.post("/api/faults", {"fault": f"meter_{fault}", "active": False})

    async def restart_broker(self) -> None:
        """Stop mosquitto for 3 s and start it again on the same port."""
        self.note("MQTT broker stopped")
        await self.broker.stop()
        await asyncio.sleep(3)
        await self.broker.start()
        self.note("MQTT broker started again")

    async def sim_states(self) -> dict[int, str]:
        """The state of every simulated miner, by index."""
        return {m["index"]: m["state"] for m in await self.sim.miners()}

    async def restart_during(
        self, why: str, trigger: Callable[[], Awaitable[None]], began: str
    ) -> None:
        """Trigger an allocation, and stop Home Assistant as soon as its commands land.

        began: the simulator state the commands put miners in ("sleeping" or "starting").
        """
        async with self.quiet:
            before = await self.sim_states()
            await trigger()

            async def landed() -> bool:
                now = await self.sim_states()
                return any(now[i] == began and before.get(i) != began for i in now)

            try:
                await poll_until(landed, 30, f"a miner {began}", 0.05)
            except StepError:
                self.note(f"restart ({why}): no miner was {began} within 30 s; restarting anyway")
            moved = sum(
                s == began and before.get(i) != began for i, s in (await self.sim_states()).items()
            )
            code = await self.home_assistant.stop()
            self.restarts.append(f"{why}: stopped with {moved} miners {began} so far (exit {code})")
            self.note(f"Home Assistant stopped mid-allocation ({why}; {moved} miners {began})")
            await self.home_assistant.start()
            await self.wait_site_up(240)
            self.note("Home Assistant is back with the site loaded")

    async def chaos(self, minutes: float) -> None:
        """The site events, in a loop, for `minutes`; the two restarts at 1/3 and 2/3."""
        end = time.monotonic() + minutes * 60
        restarts = [
            (time.monotonic() + minutes * 60 / 3, self._restart_after_dip),
            (time.monotonic() + minutes * 60 * 2 / 3, self._restart_after_step),
        ]
        steps: list[Callable[[], Awaitable[None]]] = [
            lambda: self.supply(0.6),
            lambda: self.meter_fault("garbage", 4),
            lambda: self.supply(1.0),
            self.restart_broker,
            self._dip,
            lambda: self.meter_fault("silent", 4),
            lambda: self.supply(0.75),
            lambda: self.meter_fault("late", 5, late_s=1.5),
            lambda: self.supply(0.45),
            lambda: self.meter_fault("duplicate", 5),
            lambda: self.supply(0.9),
        ]
        for step in itertools.cycle(steps):
            if time.monotonic() >= end:
                return
            if restarts and time.monotonic() >= restarts[0][0]:
                await restarts.pop(0)[1]()
            async with self.quiet:
                await step()
            await asyncio.sleep(self.rng.uniform(6, 12))

    async def _dip(self) -> None:
        await self.frequency(49.3)
        await asyncio.sleep(self.rng.uniform(3, 6))
        await self.frequency(50.0)

    async def _restart_after_dip(self) -> None:
        async with self.quiet:
            await self.supply(1.0)
        await asyncio.sleep(20)  # a fleet that mines, so the dip has something to shed
        await self.restart_during("a dip's shed", lambda: self.frequency(49.3), "sleeping")
        await self.frequency(50.0)

    async def _restart_after_step(self) -> None:
        async with self.quiet:
            await self.supply(0.4)
        await asyncio.sleep(20)  # miners asleep (past their minimum off-time) to start
        await self.restart_during("a supply step's starts", lambda: self.supply(1.0), "starting")

    # --- the end: settle and check --------------------------------------------------------------

    async def calm(self) -> None:
        """Faults cleared, grid and supply steady."""
        self.rotating = False
        await self.sim.post("/api/faults", {"clear": True})
        await self.frequency(50.0)
        await self.supply(0.7)

    async def settled(self) -> dict[str, Any] | None:
        """A dry-run plan with nothing to do and switches that match the simulator, or None."""
        plan = await self.dry_run()
        if plan.get("stops") or plan.get("starts"):
            return None
        if await self.switch_mismatches():
            return None
        return plan

    async def dry_run(self) -> dict[str, Any]:
        """The balancer's plan now, without acting on it."""
        answer = await self.ha.call(DOMAIN, "rebalance", {"dry_run": True}, response=True)
        return dict(answer["service_response"])

    async def switch_mismatches(self) -> list[str]:
        """Miners whose Mining switch disagrees with the simulator."""
        switches = await self.switches()
        found = []
        for miner in await self.sim.miners():
            unique_id = match_unique_id(miner, switches, "_mining")
            awake = miner["state"] in ("mining", "starting")
            shown = switches.get(unique_id or "", "missing")
            if shown != ("on" if awake else "off"):
                found.append(f"{miner['ip']}:{miner['api_port']} {miner['state']}, switch {shown}")
        return found

    async def cycle_counts(self) -> dict[str, tuple[int, str | None]]:
        """By address: (the simulator's cycles, Home Assistant's Cycles sensor)."""
        registry = await self.ha.entities(DOMAIN)
        states = {s["entity_id"]: s["state"] for s in await self.ha.get("/api/states")}
        counts = {}
        for miner in await self.sim.miners():
            unique_id = match_unique_id(miner, registry, "_cycles")
            shown = states.get(registry[unique_id]) if unique_id else None
            counts[f"{miner['ip']}:{miner['api_port']}"] = (int(miner["cycles"]), shown)
        return counts


def match_unique_id(miner: dict[str, Any], unique_ids: Any, suffix: str) -> str | None:
    """The unique id of a simulated miner's entity: by MAC, or by address for MAC-less firmware."""
    wanted = {
        f"{miner['mac']}{suffix}".lower(),
        f"address:{miner['ip']}:{miner['api_port']}{suffix}".lower(),
    }
    return next((u for u in unique_ids if u.lower() in wanted), None)


def overdraws(samples: list[tuple[float, float, float]]) -> list[tuple[float, float, float]]:
    """Each time the site drew more than the supply: (start, seconds, worst excess W)."""
    found: list[tuple[float, float, float]] = []
    since: float | None = None
    for t, draw, supply in samples:
        if draw <= supply:
            since = None
            continue
        if since is None:
            since = t
            found.append((t, 0.0, 0.0))
        start, _, worst = found[-1]
        found[-1] = (start, t - start + SAMPLE_S, max(worst, draw - supply))
    return found


async def checks(soak: Soak, settle_s: float) -> int:
    """Settle, then the five checks; the number that failed."""
    failures = 0

    def verdict(ok: bool, name: str, figures: str) -> None:
        nonlocal failures
        failures += not ok
        print(f"{'PASS' if ok else 'FAIL'}  {name}: {figures}", flush=True)

    await soak.calm()
    try:
        plan = await poll_until(soak.settled, settle_s, "the site to settle", 3)
        settled_note = "settled"
    except StepError:
        plan = await soak.dry_run()
        settled_note = f"NOT settled after {settle_s:.0f} s"
    say(f"site {settled_note}")
    # The sampler stops with the chaos: the settle itself is part of the figures.
    episodes = overdraws(soak.samples)
    longest = max((seconds for _, seconds, _ in episodes), default=0.0)
    print("\n=== soak checks ===", flush=True)
    verdict(
        longest <= FLEET_INTERVAL_S,
        "1 draw within supply",
        f"longest overdraw {longest:.1f} s (limit one fleet poll, {FLEET_INTERVAL_S:.0f} s), "
        f"{len(episodes)} episodes, {len(soak.samples)} samples"
        + "".join(
            f"\n      at {start - STARTED:6.1f} s for {seconds:4.1f} s, up to {worst / 1000:.1f} kW"
            for start, seconds, worst in episodes[:12]
        ),
    )
    counts = await soak.cycle_counts()
    wrong = {a: c for a, c in counts.items() if c[1] is None or str(c[0]) != c[1]}
    sim_total = sum(c[0] for c in counts.values())
    verdict(
        not wrong,
        "2 cycles counted once",
        f"{len(counts) - len(wrong)}/{len(counts)} miners match, {sim_total} on→off transitions"
        + "".join(
            f"\n      {a}: simulator {c[0]}, Home Assistant {c[1]}"
            for a, c in list(wrong.items())[:10]
        ),
    )
    mismatches = await soak.switch_mismatches()
    stops = plan.get("stops") or []
    verdict(
        not stops and not mismatches,
        "3 nothing left mining that should stop",
        f"plan {settled_note}: {len(stops)} stops, {len(plan.get('starts') or [])} starts; "
        f"{len(mismatches)} switches disagree with the simulator"
        + "".join(f"\n      {m}" for m in mismatches[:10])
        + "".join(f"\n      stop {s.get('address')}: {s.get('reason')}" for s in stops[:10]),
    )
    code = await soak.home_assistant.stop()
    errors = soak.home_assistant.unhandled(ignore=LANE_GAPS)
    gaps = len(soak.home_assistant.unhandled()) - len(errors)
    # Ours: raised in, or logged by, this integration. Home Assistant's own bugs (a
    # traceback with none of our frames) are shown, with their cause, but not failed.
    ours = [e for e in errors if DOMAIN in e]
    theirs = [e for e in errors if DOMAIN not in e]
    verdict(
        not ours and code == 0,
        "4 no unhandled exception",
        f"{len(ours)} from {DOMAIN} in {soak.home_assistant.runs} runs' logs; last exit code "
        f"{code}; not counted: {len(theirs)} of Home Assistant's own (no frame of ours), "
        f"{gaps} for packages missing in this lane"
        + "".join(f"\n      {e.splitlines()[0][:300]}" for e in ours[:10])
        + "".join(
            f"\n      (Home Assistant's own) {e.splitlines()[0][:160]}\n"
            f"        ... {e.strip().splitlines()[-1][:200]}"
            for e in theirs[:5]
        ),
    )
    for error in ours[:3]:
        print("\n".join(f"        {line}" for line in error.splitlines()[:30]), flush=True)
    verdict(*rss_verdict(soak.rss, soak.ready))
    return failures


def rss_verdict(
    rss: list[tuple[int, float, int]], ready: dict[int, float]
) -> tuple[bool, str, str]:
    """Memory growth of the last run (from its first sample after setup to its last)."""
    up = [(r, t, b) for r, t, b in rss if t >= ready.get(r, float("inf"))]
    if not up:
        return False, "5 memory", "no RSS sample after setup (is /proc readable?)"
    last_run = up[-1][0]
    run = [(t, b) for r, t, b in up if r == last_run]
    first = [(t, b) for r, t, b in up if r == up[0][0]]
    growth = run[-1][1] - run[0][1]
    mib = 1024 * 1024
    return (
        growth <= RSS_GROWTH_LIMIT,
        "5 memory",
        f"run 1 {first[0][1] / mib:.0f} → {first[-1][1] / mib:.0f} MiB; "
        f"last run {run[0][1] / mib:.0f} → {run[-1][1] / mib:.0f} MiB "
        f"over {run[-1][0] - run[0][0]:.0f} s "
        f"(growth {growth / mib:+.0f} MiB, limit {RSS_GROWTH_LIMIT / mib:.0f})",
    )


async def run(args: argparse.Namespace) -> int:
    """The whole soak; its exit code."""
    work = Path(tempfile.mkdtemp(prefix="soak-"))
    say(f"soak: {args.miners} miners, {args.minutes:g} min of chaos; logs in {work}")
    # Both restart during the soak: their ports must stay theirs meanwhile.
    broker = Mosquitto("127.0.0.1", restartable_port())
    home_assistant = HomeAssistantProcess(work, restartable_port(), name="Soak")
    home_assistant.prepare()
    tasks: list[asyncio.Task[None]] = []
    failures = 1
    await broker.start()
    try:
        async with (
            running_simulator(
                args.miners,
                "--base-port=0",
                "--latency-ms=50",
                "--wake-delay-s=3",
                f"--seed={args.seed}",
                f"--meter=127.0.0.1:{free_port()}",
                f"--pool=127.0.0.1:{free_port()}",
                f"--mqtt=127.0.0.1:{broker.port}",
                "--mqtt-external",
            ) as simulator,
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as session,
        ):
            sim = SimulatorControl(session, simulator.control_url)
            soak = Soak(args, sim, home_assistant, broker, simulator.miners)
            soak.rng.seed(args.seed)
            soak.full_kw = sum(m["power_w"] for m in await sim.miners()) / 1000
            await soak.supply(1.1)
            await home_assistant.start()
            await soak.set_up(session)
            say(f"site up: {args.miners} miners drawing {soak.full_kw:.0f} kW")
            jobs = (soak.sample_forever, soak.memory_forever, soak.rotate_faults_forever)
            tasks += [asyncio.create_task(job()) for job in jobs]
            await soak.chaos(args.minutes)
            tasks.pop().cancel()  # the fault rotator: the calm begins
            failures = await checks(soak, SETTLE_S)
            if soak.restarts:
                print("restarts:\n" + "\n".join(f"  {r}" for r in soak.restarts))
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await home_assistant.stop()
        await broker.stop()
    print(
        f"\nsoak: {'FAIL' if failures else 'PASS'} ({failures} checks failed, "
        f"{time.monotonic() - STARTED:.0f} s)",
        flush=True,
    )
    if failures or args.keep:
        print(f"  logs kept in {work}")
    else:
        shutil.rmtree(work, ignore_errors=True)
    return 1 if failures else 0


def main() -> None:
    """Parse the options and run the soak, bounded in time."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=6.0, help="minutes of chaos")
    parser.add_argument("--miners", type=int, default=160)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--keep", action="store_true", help="keep the logs even on PASS")
    args = parser.parse_args()
    if args.minutes <= 0 or args.miners < 10:
        parser.error("--minutes must be > 0 and --miners at least 10")

    def terminate(signum: int, _frame: object) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, terminate)
    # Setup, chaos, two restarts and the settle, with room for a slow machine.
    limit = 900 + args.minutes * 60 + SETTLE_S

    async def bounded() -> int:
        async with asyncio.timeout(limit):
            return await run(args)

    try:
        code = asyncio.run(bounded())
    except TimeoutError:
        print(f"soak: FAIL (did not finish within {limit:.0f} s)", flush=True)
        code = 1
    except StepError as err:
        print(f"soak: FAIL ({err})", flush=True)
        code = 1
    except KeyboardInterrupt:
        print("soak: interrupted", flush=True)
        code = 130
    sys.exit(code)


if __name__ == "__main__":
    main()
