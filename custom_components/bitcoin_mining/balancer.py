"""The load balancer: runs the allocation core on live data and carries out its plan."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, replace
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
from .miningsite.allocation import (
    AllocationMemory,
    AllocationPlan,
    AllocationSettings,
    Curtailment,
    FrequencySample,
    FrequencyStage,
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
class BalancerState:
    """What the balancer shows: its mode, targets and what it last did."""

    mode: Mode
    power_target_w: float | None
    curtailment: Curtailment | None
    last_plan: AllocationPlan | None
    last_action: str | None
    last_reason: str | None
    last_run_at: float | None
    planned_running: int | None = None
    failures: tuple[str, ...] = ()

    @property
    def curtailed(self) -> bool:
        """Whether mining is capped below what the supply could carry."""
        plan = self.last_plan
        return plan is not None and (plan.curtailed or plan.frequency_stage is not None)


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
        self._under_frequency_seen = False
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
        """A supply that falls below what runs must not wait for the fleet poll."""
        site: SiteData | None = self.site.data
        if site is None or self._run_lock.locked():
            return
        if site.available_power_w is None or site.available_power_w < self.fleet.running_draw_w():
            self._schedule("supply_change")

    def _schedule(self, trigger: str) -> None:
        self.config_entry.async_create_background_task(
            self.hass, self.async_run(trigger), f"{DOMAIN} allocation ({trigger})"
        )

    def snapshot(self, now: float | None = None) -> SiteSnapshot:
        """The site frozen now, on the wall clock (samples are moved off the monotonic one)."""
        now = time.time() if now is None else now
        offset = now - time.monotonic()
        samples = tuple(FrequencySample(s.t + offset, s.hz) for s in self.grid.samples)
        site = self.site.data
        available = site.available_power_w if site else None
        return SiteSnapshot(
            now=now,
            available_power_w=available,
            supply_updated_at=now if available is not None else None,
            asics=self.fleet.asic_states(),
            frequency_samples=samples[-10:],
            power_target_w=self.data.power_target_w,
            curtailment=self.data.curtailment,
            memory=self.memory,
            settings=self.settings,
        )

    async def async_run(self, trigger: str, *, dry_run: bool = False) -> AllocationPlan:
        """Plan now; in auto mode carry the plan out (a dry run only plans)."""
        if dry_run:
            return plan_allocation(self.snapshot())
        async with self._run_lock:
            snapshot = self.snapshot()
            plan = plan_allocation(snapshot)
            self.memory = plan.memory
            planned = sum(a.running for a in snapshot.asics) - len(plan.stops) + len(plan.starts)
            failures: tuple[str, ...] = ()
            mode = self.data.mode
            if mode == "auto" and (plan.stops or plan.starts):
                failures = await self._async_execute(plan)
            self.async_set_updated_data(self._record(plan, trigger, planned, failures))
            return plan

    async def _async_execute(self, plan: AllocationPlan) -> tuple[str, ...]:
        """Stops first (they free power), then starts; return what failed."""
        failed: list[str] = []
        steps: tuple[tuple[Action, tuple[PlannedAction, ...]], ...] = (
            ("stop", plan.stops),
            ("start", plan.starts),
        )
        for action, items in steps:
            if not items:
                continue
            outcomes = await self.fleet.async_command([i.asic_id for i in items], action)
            failed += [f"{mac}: {error}" for mac, error in outcomes.items() if error is not None]
        if failed:
            LOGGER.warning("%d allocation commands failed, e.g. %s", len(failed), failed[0])
        return tuple(failed)

    def _record(
        self, plan: AllocationPlan, trigger: str, planned: int, failures: tuple[str, ...]
    ) -> BalancerState:
        """What the entities show after a run."""
        action, reason = self.data.last_action, self.data.last_reason
        if plan.stops or plan.starts:
            verb = "advised" if self.data.mode != "auto" else "did"
            parts = []
            if plan.stops:
                parts.append(f"stop {len(plan.stops)}")
            if plan.starts:
                parts.append(f"start {len(plan.starts)}")
            action = f"{verb}: {' and '.join(parts)}"
            reason = (plan.stops or plan.starts)[0].reason
        if self.data.mode == "off":
            action, reason = "off", trigger
        return replace(
            self.data,
            last_plan=plan,
            last_action=action,
            last_reason=reason,
            last_run_at=time.time(),
            planned_running=planned,
            failures=failures,
        )

    def _save_choices(self) -> None:
        self.store.balancer = {"mode": self.data.mode, "power_target_w": self.data.power_target_w}
        self.store.async_schedule_save()

    async def async_set_mode(self, mode: Mode) -> None:
        """Auto acts, advisory only plans, off does nothing."""
        self.async_set_updated_data(replace(self.data, mode=mode))
        self._save_choices()
        if mode != "off":
            await self.async_run("mode_change")

    async def async_set_power_target(self, power_w: float | None) -> AllocationPlan:
        """Cap mining power (None clears the cap) and re-plan at once."""
        if power_w is not None and (not math.isfinite(power_w) or power_w < 0):
            raise ValueError("power target must be a finite number >= 0")
        self.async_set_updated_data(replace(self.data, power_target_w=power_w))
        self._save_choices()
        return await self.async_run("power_target")

    async def async_curtail(self, cap_w: float, duration_s: float) -> AllocationPlan:
        """Cap mining at `cap_w` for `duration_s` and re-plan at once."""
        until = time.time() + duration_s
        self.async_set_updated_data(replace(self.data, curtailment=Curtailment(cap_w, until)))
        return await self.async_run("curtail")
