"""The modes of the load balancer and the failover: auto acts, advisory only tells, off is off."""

from __future__ import annotations

from homeassistant.components.select import SelectEntity, SelectEntityDescription
from homeassistant.const import EntityCategory
from homeassistant.core import HomeAssistant
from homeassistant.helpers.entity_platform import AddConfigEntryEntitiesCallback

from .balancer import MODES, LoadBalancer
from .entity import SiteEntity
from .failover import FailoverController
from .helpers import command_errors, raise_for_failures
from .models import BitcoinMiningConfigEntry

PARALLEL_UPDATES = 0

ALLOCATION_MODE = SelectEntityDescription(
    key="allocation_mode",
    translation_key="allocation_mode",
    options=list(MODES),
    entity_category=EntityCategory.CONFIG,
)


FAILOVER_MODE = SelectEntityDescription(
    key="failover_mode",
    translation_key="failover_mode",
    options=list(MODES),
    entity_category=EntityCategory.CONFIG,
)


async def async_setup_entry(
    hass: HomeAssistant,
    entry: BitcoinMiningConfigEntry,
    async_add_entities: AddConfigEntryEntitiesCallback,
) -> None:
    """Add the allocation and failover mode selects."""
    async_add_entities(
        [
            AllocationModeSelect(entry.runtime_data.balancer, ALLOCATION_MODE),
            FailoverModeSelect(entry.runtime_data.failover, FAILOVER_MODE),
        ]
    )


class AllocationModeSelect(SiteEntity[LoadBalancer], SelectEntity):
    """Who decides which miners run: the balancer (auto), the operator (advisory, off)."""

    @property
    def current_option(self) -> str:
        """The balancer's mode."""
        return self.coordinator.data.mode

    @command_errors
    async def async_select_option(self, option: str) -> None:
        """Change the mode (saved, so a restart keeps it); fail when the miners did not follow."""
        run = await self.coordinator.async_set_mode(option)  # type: ignore[arg-type]
        if run is not None:
            raise_for_failures(self.coordinator.fleet, run.failures, run.commands)


class FailoverModeSelect(SiteEntity[FailoverController], SelectEntity):
    """Who moves the miners in an outage: the site (auto), the operator (advisory, off)."""

    @property
    def current_option(self) -> str:
        """The failover's mode."""
        return self.coordinator.data.mode

    async def async_select_option(self, option: str) -> None:
        """Change the mode (saved, so a restart keeps it)."""
        await self.coordinator.async_set_mode(option)  # type: ignore[arg-type]
