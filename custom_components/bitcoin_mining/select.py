"""The load balancer's mode: auto acts, advisory only plans, off does nothing."""

from __future__ import annotations

from homeassistant.components.select import SelectEntity, SelectEntityDescription
from homeassistant.const import EntityCategory
from homeassistant.core import HomeAssistant
from homeassistant.helpers.entity_platform import AddConfigEntryEntitiesCallback

from .balancer import MODES, LoadBalancer
from .entity import SiteEntity
from .models import BitcoinMiningConfigEntry

PARALLEL_UPDATES = 0

ALLOCATION_MODE = SelectEntityDescription(
    key="allocation_mode",
    translation_key="allocation_mode",
    options=list(MODES),
    entity_category=EntityCategory.CONFIG,
)


async def async_setup_entry(
    hass: HomeAssistant,
    entry: BitcoinMiningConfigEntry,
    async_add_entities: AddConfigEntryEntitiesCallback,
) -> None:
    """Add the allocation mode select."""
    async_add_entities([AllocationModeSelect(entry.runtime_data.balancer, ALLOCATION_MODE)])


class AllocationModeSelect(SiteEntity[LoadBalancer], SelectEntity):
    """Who decides which miners run: the balancer (auto), the operator (advisory, off)."""

    @property
    def current_option(self) -> str:
        """The balancer's mode."""
        return self.coordinator.data.mode

    async def async_select_option(self, option: str) -> None:
        """Change the mode (saved, so a restart keeps it)."""
        await self.coordinator.async_set_mode(option)  # type: ignore[arg-type]
