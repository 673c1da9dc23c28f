"""A Mining switch for every ASIC: on = hashing, confirmed by reading back."""

from __future__ import annotations

from typing import Any

from homeassistant.components.switch import SwitchEntity, SwitchEntityDescription
from homeassistant.core import HomeAssistant
from homeassistant.exceptions import HomeAssistantError
from homeassistant.helpers.entity_platform import AddConfigEntryEntitiesCallback

from .const import DOMAIN
from .entity import MinerEntity, async_add_miner_entities
from .fleet import FleetCoordinator
from .miningsite.miners.fleet import Action
from .models import BitcoinMiningConfigEntry

# Commands go through the fleet, which bounds its own concurrency.
PARALLEL_UPDATES = 0

MINING = SwitchEntityDescription(key="mining", translation_key="mining")


async def async_setup_entry(
    hass: HomeAssistant,
    entry: BitcoinMiningConfigEntry,
    async_add_entities: AddConfigEntryEntitiesCallback,
) -> None:
    """Add a switch per ASIC, and for every ASIC that appears later."""
    fleet = entry.runtime_data.fleet
    async_add_miner_entities(
        entry, fleet, async_add_entities, lambda mac: [MiningSwitch(fleet, mac, MINING)]
    )


class MiningSwitch(MinerEntity, SwitchEntity):
    """Whether an ASIC hashes; turning it sends sleep or wake and waits for the read-back."""

    coordinator: FleetCoordinator

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

    async def _async_command(self, action: Action) -> None:
        errors = await self.coordinator.async_command([self.mac], action)
        if (error := errors.get(self.mac)) is not None:
            raise HomeAssistantError(
                translation_domain=DOMAIN,
                translation_key=f"{action}_failed",
                translation_placeholders={"miner": self.device_entry_name, "error": error},
            )

    @property
    def device_entry_name(self) -> str:
        """How the error names the miner: its model and address."""
        view = self.view
        return f"{view.identity.model} at {view.address}" if view else self.mac
