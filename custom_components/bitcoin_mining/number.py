"""The mining power target: a cap the load balancer never plans above."""

from __future__ import annotations

from homeassistant.components.number import (
    NumberDeviceClass,
    NumberEntity,
    NumberEntityDescription,
    NumberMode,
)
from homeassistant.const import EntityCategory, UnitOfPower
from homeassistant.core import HomeAssistant
from homeassistant.helpers.entity_platform import AddConfigEntryEntitiesCallback

from .balancer import LoadBalancer
from .container_entity import async_add_container_entities
from .container_number import container_numbers
from .entity import SiteEntity
from .helpers import checked_power_kw, command_errors, raise_for_failures
from .models import BitcoinMiningConfigEntry

PARALLEL_UPDATES = 0

POWER_TARGET = NumberEntityDescription(
    key="power_target",
    translation_key="power_target",
    device_class=NumberDeviceClass.POWER,
    native_unit_of_measurement=UnitOfPower.KILO_WATT,
    native_min_value=0,
    native_max_value=10000,
    native_step=0.5,
    mode=NumberMode.BOX,
    entity_category=EntityCategory.CONFIG,
)


async def async_setup_entry(
    hass: HomeAssistant,
    entry: BitcoinMiningConfigEntry,
    async_add_entities: AddConfigEntryEntitiesCallback,
) -> None:
    """Add the power target number."""
    async_add_entities([PowerTargetNumber(entry.runtime_data.balancer, POWER_TARGET)])
    async_add_container_entities(entry, async_add_entities, container_numbers)


class PowerTargetNumber(SiteEntity[LoadBalancer], NumberEntity):
    """Cap on mining power in kW; unknown while no cap is set (the supply is the limit)."""

    @property
    def native_value(self) -> float | None:
        """The cap in kW, or None."""
        target = self.coordinator.data.power_target_w
        return None if target is None else target / 1000

    @command_errors
    async def async_set_native_value(self, value: float) -> None:
        """Set the cap and re-plan at once; fail when the miners did not all follow."""
        # The range check of the number platform lets NaN through.
        checked_power_kw(value, "value")
        run = await self.coordinator.async_set_power_target(value * 1000)
        raise_for_failures(self.coordinator.fleet, run.failures, run.commands)
