"""A Mining switch for every ASIC: on = hashing, confirmed by reading back."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from homeassistant.components.switch import SwitchEntity, SwitchEntityDescription
from homeassistant.core import HomeAssistant, ServiceResponse, SupportsResponse
from homeassistant.helpers.entity_platform import AddConfigEntryEntitiesCallback

from .compat import async_register_entity_service_from_platform
from .container_entity import async_add_container_entities
from .container_switch import container_switches
from .entity import MinerEntity, MinerEntityDescription, async_add_miner_entities
from .fleet import FleetCoordinator
from .helpers import command_errors, command_failures, raise_for_failures
from .miningsite.allocation import LockState
from .miningsite.miners.fleet import Action
from .models import BitcoinMiningConfigEntry
from .services import SERVICE_SET_LOCK, set_lock_schema

# Commands go through the fleet, which bounds its own concurrency.
PARALLEL_UPDATES = 0


@dataclass(frozen=True, kw_only=True)
class MiningSwitchDescription(SwitchEntityDescription, MinerEntityDescription):
    """The Mining switch of an ASIC."""


MINING = MiningSwitchDescription(key="mining", translation_key="mining")


async def async_setup_entry(
    hass: HomeAssistant,
    entry: BitcoinMiningConfigEntry,
    async_add_entities: AddConfigEntryEntitiesCallback,
) -> None:
    """Add a switch per ASIC, and for every ASIC that appears later."""
    async_register_entity_service_from_platform(
        SERVICE_SET_LOCK, set_lock_schema(hass), "async_set_lock", SupportsResponse.OPTIONAL
    )
    fleet = entry.runtime_data.fleet
    async_add_miner_entities(
        entry, fleet, async_add_entities, lambda mac: [MiningSwitch(fleet, mac, MINING)]
    )
    async_add_container_entities(entry, async_add_entities, container_switches)


class MiningSwitch(MinerEntity, SwitchEntity):
    """Whether an ASIC hashes; turning it sends sleep or wake and waits for the read-back."""

    coordinator: FleetCoordinator
    entity_description: MiningSwitchDescription

    @property
    def is_on(self) -> bool | None:
        """What the firmware reports, never what was last asked."""
        view = self.view
        return None if view is None else view.mining

    async def async_turn_on(self, **kwargs: Any) -> None:
        """Wake the miner."""
        await self._async_command("start")

    async def async_turn_off(self, **kwargs: Any) -> None:
        """Put the miner to sleep."""
        await self._async_command("stop")

    @command_errors
    async def _async_command(self, action: Action) -> None:
        outcomes = await self.coordinator.async_command([self.mac], action)
        raise_for_failures(self.coordinator, command_failures(outcomes, action), 1)

    async def async_set_lock(self, lock: LockState) -> ServiceResponse:
        """Lock the ASIC against the balancer, put it in maintenance, or unlock it."""
        store = self.coordinator.store
        previous = store.locks.get(self.mac, "none")
        if lock == "none":
            store.locks.pop(self.mac, None)
        else:
            store.locks[self.mac] = lock
        store.async_schedule_save()
        # One re-plan for however many ASICs this call locks or unlocks.
        self.coordinator.config_entry.runtime_data.balancer.async_request_run("lock")
        return {"lock": lock, "previous": previous}
