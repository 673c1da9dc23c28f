"""The load balancer: runs the allocation core on live data and carries out its plan."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Mapping
import contextlib
from dataclasses import dataclass, replace
import gc
import math
import time
from typing import TYPE_CHECKING, Literal

from homeassistant.core import HomeAssistant, callback
from homeassistant.helpers.update_coordinator import DataUpdateCoordinator

from .const import (
    CONF_MAX_STARTS,
    CONF_MIN_OFF_S,
    CONF_MIN_ON_S,
    CONF_NOMINAL_FREQUENCY,
    CONF_RESTORE_HOLD_S,
    CONF_SUPPLY_STALE_S,
    CONF_UNDER_FREQUENCY,
    DEFAULT_MAX_STARTS,
    DEFAULT_MIN_OFF_S,
    DEFAULT_MIN_ON_S,
    DEFAULT_RESTORE_HOLD_S,
    DEFAULT_SUPPLY_STALE_S,
    DOMAIN,
    LOGGER,
    default_under_frequency,
)
from .helpers import CommandFailure, command_failures
from .miningsite.allocation import (
    AllocationMemory,
    AllocationPlan,
    AllocationSettings,
    AsicState,
    Curtailment,
    FrequencySample,
    FrequencyStage,
    GroupLimit,
    PlannedAction,
    SiteSnapshot,
    plan_allocation,
)
from .models import BitcoinMiningConfigEntry
from .storage import SiteStore

if TYPE_CHECKING:
    from .coordinator import GridCoordinator, SiteCoordinator, SiteData
    from .fleet import FleetCoordinator
    from .miningsite.miners.fleet import Action

Mode = Literal["auto", "advisory", "off"]
MODES: tuple[Mode, ...] = ("auto", "advisory", "off")
# What the last run that had something to do did: the Last allocation action sensor's states.
LastAction = Literal["stopped", "started", "stopped_and_started", "advised", "incomplete", "off"]
LAST_ACTIONS: tuple[LastAction, ...] = (
    "stopped",
    "started",
    "stopped_and_started",
    "advised",
    "incomplete",
    "off",
)


# Stops whose miners' sockets may be cut when the miner does not confirm them.
HARD_STOP_REASONS = frozenset({"container_emergency", "container_hot"})


def allocation_settings(entry: BitcoinMiningConfigEntry) -> AllocationSettings:
    """The allocation settings of a site, from its options."""
    options = entry.options
    nominal = float(entry.data[CONF_NOMINAL_FREQUENCY])
    threshold = float(options.get(CONF_UNDER_FREQUENCY, default_under_frequency(nominal)))
    return AllocationSettings(
        nominal_hz=nominal,
        min_on_s=float(options.get(CONF_MIN_ON_S, DEFAULT_MIN_ON_S)),
        min_off_s=float(options.get(CONF_MIN_OFF_S, DEFAULT_MIN_OFF_S)),
        max_starts_per_batch=int(options.get(CONF_MAX_STARTS, DEFAULT_MAX_STARTS)),
        # The operator's threshold is the emergency stage: everything is shed below it.
        stages=(FrequencyStage(threshold, 1.0, emergency=True),),
        # Restore a little above the threshold, so a grid hovering at it never flaps.
        restore_hz=min(round(threshold + 0.3 * (nominal - threshold) + 0.1, 2), nominal),
        restore_hold_s=float(options.get(CONF_RESTORE_HOLD_S, DEFAULT_RESTORE_HOLD_S)),
        supply_stale_s=float(options.get(CONF_SUPPLY_STALE_S, DEFAULT_SUPPLY_STALE_S)),
    )


@dataclass(frozen=True, slots=True)
class AllocationRun:
    """One run of the balancer: its plan, the commands it sent and those that failed."""

    plan: AllocationPlan
    commands: int = 0
    failures: tuple[CommandFailure, ...] = ()


@dataclass(frozen=True, slots=True)
class BalancerState:
    """What the balancer shows: its mode, targets and what it last did.

    `last_*` describe the last run that had something to do (the plan stopped or
    started miners, or the balancer was off); `last_plan` is always the latest plan.
    """

    mode: Mode
    power_target_w: float | None
    curtailment: Curtailment | None
    last_plan: AllocationPlan | None
    last_action: LastAction | None
    last_reason: str | None
    last_run_at: float | None
    planned_running: int | None = None
    failures: tuple[CommandFailure, ...] = ()
    last_trigger: str | None = None
    last_stops: int = 0
    last_starts: int = 0
    last_commands: int = 0

    @property
    def curtailed(self) -> bool:
        """Whether mining is capped below what the supply could carry."""
        plan = self.last_plan
        return plan is not None and (plan.curtailed or plan.frequency_stage is not None)


@contextlib.contextmanager
def _collector_paused() -> Iterator[None]:
    """Python's cyclic garbage collector off meanwhile (left off if it already was)."""
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


class LoadBalancer(DataUpdateCoordinator[BalancerState]):
    """Plans after every fleet poll and at once on an under-frequency sample."""

    config_entry: BitcoinMiningConfigEntry

    def __init__(
        self,
        hass: HomeAssistant,
        entry: BitcoinMiningConfigEntry,
        grid: GridCoordinator,
        site: SiteCoordinator,
        fleet: FleetCoordinator,
        store: SiteStore,
    ) -> None:
        """Wire the balancer to the site's coordinators (it polls nothing itself)."""
        super().__init__(
            hass, LOGGER, config_entry=entry, name=f"{entry.title} balancer", update_interval=None
        )
        self.grid = grid
        self.site = site
        self.fleet = fleet
        self.store = store
        self.settings = allocation_settings(entry)
        self.memory = AllocationMemory()
        self._run_lock = asyncio.Lock()
        # A run asked for and not started yet: further requests fold into it.
        self._run_requested = False
        self._under_frequency_seen = False
        self._container_stages: tuple[tuple[str, float], ...] = ()
        saved = store.balancer
        target = saved.get("power_target_w")
        self.data = BalancerState(
            mode=saved["mode"] if saved.get("mode") in MODES else "auto",
            power_target_w=float(target) if isinstance(target, int | float) else None,
            curtailment=None,
            last_plan=None,
            last_action=None,
            last_reason=None,
            last_run_at=None,
        )

    async def _async_update_data(self) -> BalancerState:
        """Nothing to fetch: the balancer's state changes only when it runs."""
        return self.data

    def attach(self) -> None:
        """Start following the grid and the fleet (undone on unload)."""
        entry = self.config_entry
        entry.async_on_unload(self.grid.async_add_listener(self._grid_updated))
        entry.async_on_unload(self.fleet.async_add_listener(self._fleet_updated))
        entry.async_on_unload(self.site.async_add_listener(self._site_updated))
        runtime = getattr(entry, "runtime_data", None)
        for container in runtime.containers.values() if runtime else ():
            entry.async_on_unload(container.async_add_listener(self._container_updated))

    @callback
    def _container_updated(self) -> None:
        """A container's stage (warm, hot, emergency) that changed must not wait for the fleet."""
        stages = tuple(
            (limit.reason, limit.cap_w) for limit in self.group_limits(self.fleet.asic_states())
        )
        if stages != self._container_stages:
            self._container_stages = stages
            self.async_request_run("container_stage")

    def group_limits(self, asics: tuple[AsicState, ...]) -> tuple[GroupLimit, ...]:
        """Each container's cap on its miners (thermal derating, emergency stage)."""
        runtime = getattr(self.config_entry, "runtime_data", None)
        fleet = self.fleet.data
        if runtime is None or not runtime.containers or fleet is None:
            return ()
        mac_of = {view.address: mac for mac, view in fleet.miners.items()}
        power = {a.id: a.power_w for a in asics}
        limits = []
        for container in runtime.containers.values():
            macs = frozenset(
                mac for m in container.miners if (mac := mac_of.get(str(m))) is not None
            )
            total = sum(power.get(mac, 0.0) for mac in macs)
            if (limit := container.group_limit(macs, total)) is not None:
                limits.append(limit)
        return tuple(limits)

    @callback
    def _grid_updated(self) -> None:
        """An under-frequency sample must not wait for the fleet poll."""
        data = self.grid.data
        low = bool(data and data.under_frequency)
        if low and not self._under_frequency_seen:
            self._schedule("under_frequency")
        self._under_frequency_seen = low

    @callback
    def _fleet_updated(self) -> None:
        """Re-plan on fresh fleet data (skipped while a run is under way)."""
        if not self._run_lock.locked():
            self._schedule("fleet_update")

    @callback
    def _site_updated(self) -> None:
        """A supply that falls below what runs must not wait for the fleet poll.

        Nor for a run under way (its commands may wait seconds on unreachable miners):
        the request is queued behind it, once however many changes come meanwhile.
        """
        site: SiteData | None = self.site.data
        if site is None:
            return
        if site.available_power_w is None or site.available_power_w < self.fleet.running_draw_w():
            self.async_request_run("supply_change")

    def _schedule(self, trigger: str) -> None:
        self.config_entry.async_create_background_task(
            self.hass, self.async_run(trigger), f"{DOMAIN} allocation ({trigger})"
        )

    @callback
    def async_request_run(self, trigger: str) -> None:
        """Re-plan soon, once however many times it is asked before the run starts."""
        if not self._run_requested:
            self._run_requested = True
            self._schedule(trigger)

    def snapshot(self, now: float | None = None) -> SiteSnapshot:
        """The site frozen now, on the wall clock (samples are moved off the monotonic one)."""
        now = time.time() if now is None else now
        offset = now - time.monotonic()
        samples = tuple(FrequencySample(s.t + offset, s.hz) for s in self.grid.samples)
        site = self.site.data
        available = site.available_power_w if site else None
        asics = self.fleet.asic_states()
        return SiteSnapshot(
            now=now,
            available_power_w=available,
            supply_updated_at=now if available is not None else None,
            asics=asics,
            group_limits=self.group_limits(asics),
            frequency_samples=samples[-10:],
            power_target_w=self.data.power_target_w,
            curtailment=self.data.curtailment,
            memory=self.memory,
            settings=self.settings,
        )

    async def async_run(self, trigger: str, *, dry_run: bool = False) -> AllocationRun:
        """Plan now; in auto mode carry the plan out (a dry run only plans)."""
        if dry_run:
            return AllocationRun(plan_allocation(self.snapshot()))
        async with self._run_lock:
            self._run_requested = False
            snapshot = self.snapshot()
            plan = plan_allocation(snapshot)
            self.memory = plan.memory
            planned = sum(a.running for a in snapshot.asics) - len(plan.stops) + len(plan.starts)
            run = AllocationRun(plan)
            if self.data.mode == "auto" and (plan.stops or plan.starts):
                run = AllocationRun(
                    plan, len(plan.stops) + len(plan.starts), await self._async_execute(plan)
                )
            self.async_set_updated_data(self._record(run, trigger, planned))
            return run

    async def _async_execute(self, plan: AllocationPlan) -> tuple[CommandFailure, ...]:
        """Stops first (they free power), then starts; return what failed."""
        failed: list[CommandFailure] = []
        steps: tuple[tuple[Action, tuple[PlannedAction, ...]], ...] = (
            ("stop", plan.stops),
            ("start", plan.starts),
        )
        for action, items in steps:
            if not items:
                continue
            # A stop frees power the site may be short of: confirmed the quickest way,
            # and not held up by a full garbage collection (a few hundred ms in a Home
            # Assistant of thousands of entities); it runs once the stops are confirmed.
            shedding = action == "stop"
            with _collector_paused() if shedding else contextlib.nullcontext():
                outcomes = await self.fleet.async_command(
                    [i.asic_id for i in items], action, quick=shedding
                )
            failed += command_failures(outcomes, action)
            if shedding:
                await self._async_cut_unconfirmed(items, outcomes)
        if failed:
            first = failed[0]
            LOGGER.warning(
                "%d of %d allocation commands failed, e.g. %s %s: %s",
                len(failed),
                len(plan.stops) + len(plan.starts),
                first.action,
                first.mac,
                first.error,
            )
        return tuple(failed)

    async def _async_cut_unconfirmed(
        self, stops: tuple[PlannedAction, ...], outcomes: Mapping[str, str | None]
    ) -> None:
        """Hard shed: cut the sockets of miners that did not confirm a container's stop.

        Only where the container allows it (off by default): a cut miner loses power
        mid-hash, which no fleet manager does, but smoke or a dead pump cannot wait.
        """
        runtime = getattr(self.config_entry, "runtime_data", None)
        fleet = self.fleet.data
        if runtime is None or fleet is None:
            return
        unconfirmed = {
            fleet.miners[stop.asic_id].address
            for stop in stops
            if stop.reason in HARD_STOP_REASONS
            and outcomes.get(stop.asic_id) is not None
            and stop.asic_id in fleet.miners
        }
        for container in runtime.containers.values():
            if unconfirmed and container.socket_cut:
                await container.async_cut_sockets(unconfirmed)

    def _record(self, run: AllocationRun, trigger: str, planned: int) -> BalancerState:
        """What the entities show after a run."""
        plan = run.plan
        state = replace(self.data, last_plan=plan, planned_running=planned)
        action: LastAction
        if self.data.mode == "off":
            action, reason = "off", trigger
        elif not (plan.stops or plan.starts):
            # Nothing to do: the sensor keeps showing the last run that did something.
            return state
        elif self.data.mode != "auto":
            action, reason = (
                "advised",
                plan.stops[0].reason if plan.stops else plan.starts[0].reason,
            )
        else:
            reason = (plan.stops or plan.starts)[0].reason
            if run.failures:
                action = "incomplete"
            elif plan.stops and plan.starts:
                action = "stopped_and_started"
            else:
                action = "stopped" if plan.stops else "started"
        return replace(
            state,
            last_action=action,
            last_reason=reason,
            last_trigger=trigger,
            last_run_at=time.time(),
            last_stops=len(plan.stops),
            last_starts=len(plan.starts),
            last_commands=run.commands,
            failures=run.failures,
        )

    def _save_choices(self) -> None:
        self.store.balancer = {"mode": self.data.mode, "power_target_w": self.data.power_target_w}
        self.store.async_schedule_save()

    async def async_set_mode(self, mode: Mode) -> AllocationRun | None:
        """Auto acts, advisory only plans, off does nothing; return the run it started."""
        self.async_set_updated_data(replace(self.data, mode=mode))
        self._save_choices()
        if mode == "off":
            return None
        return await self.async_run("mode_change")

    async def async_set_power_target(self, power_w: float | None) -> AllocationRun:
        """Cap mining power (None clears the cap) and re-plan at once."""
        if power_w is not None and (not math.isfinite(power_w) or power_w < 0):
            raise ValueError("power target must be a finite number >= 0")
        self.async_set_updated_data(replace(self.data, power_target_w=power_w))
        self._save_choices()
        return await self.async_run("power_target")

    async def async_curtail(self, cap_w: float, duration_s: float) -> AllocationRun:
        """Cap mining at `cap_w` for `duration_s` and re-plan at once."""
        if not (
            math.isfinite(cap_w) and cap_w >= 0 and math.isfinite(duration_s) and duration_s > 0
        ):
            raise ValueError("a curtailment needs a finite cap >= 0 and a duration > 0")
        until = time.time() + duration_s
        self.async_set_updated_data(replace(self.data, curtailment=Curtailment(cap_w, until)))
        return await self.async_run("curtail")
