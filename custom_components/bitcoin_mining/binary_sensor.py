"""Binary sensors: grid under-frequency and internet connectivity."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from homeassistant.components.binary_sensor import (
    BinarySensorEntity,
    BinarySensorEntityDescription,
)
from homeassistant.const import EntityCategory
from homeassistant.core import HomeAssistant
from homeassistant.helpers.entity_platform import AddConfigEntryEntitiesCallback

from .compat import BinarySensorDeviceClass
from .const import PROBE_EXTRA, PROBE_UPSTREAM_POOL
from .coordinator import BitcoinMiningConfigEntry, GridCoordinator, SiteCoordinator, SiteData
from .entity import SiteEntity

PARALLEL_UPDATES = 0


@dataclass(frozen=True, kw_only=True)
class SiteBinarySensorDescription(BinarySensorEntityDescription):
    """A binary sensor fed by the site poll."""

    value_fn: Callable[[SiteData], bool | None]
    exists_fn: Callable[[SiteCoordinator], bool] = lambda _: True


def _reachable(probe: str) -> Callable[[SiteData], bool | None]:
    def value(data: SiteData) -> bool | None:
        result = data.probes.get(probe)
        return None if result is None else result.reachable

    return value


UNDER_FREQUENCY = BinarySensorEntityDescription(
    key="under_frequency",
    translation_key="under_frequency",
    device_class=BinarySensorDeviceClass.PROBLEM,
)

SITE_BINARY_SENSORS: tuple[SiteBinarySensorDescription, ...] = (
    SiteBinarySensorDescription(
        key="internet",
        translation_key="internet",
        device_class=BinarySensorDeviceClass.CONNECTIVITY,
        value_fn=lambda data: data.internet_up,
    ),
    SiteBinarySensorDescription(
        key="pool_reachable",
        translation_key="pool_reachable",
        device_class=BinarySensorDeviceClass.CONNECTIVITY,
        entity_category=EntityCategory.DIAGNOSTIC,
        value_fn=_reachable(PROBE_UPSTREAM_POOL),
    ),
    SiteBinarySensorDescription(
        key="probe_reachable",
        translation_key="probe_reachable",
        device_class=BinarySensorDeviceClass.CONNECTIVITY,
        entity_category=EntityCategory.DIAGNOSTIC,
        value_fn=_reachable(PROBE_EXTRA),
        exists_fn=lambda site: any(t.name == PROBE_EXTRA for t in site.probe_targets),
    ),
)


async def async_setup_entry(
    hass: HomeAssistant,
    entry: BitcoinMiningConfigEntry,
    async_add_entities: AddConfigEntryEntitiesCallback,
) -> None:
    """Add the site's binary sensors."""
    site = entry.runtime_data.site
    entities: list[BinarySensorEntity] = [
        UnderFrequencySensor(entry.runtime_data.grid, UNDER_FREQUENCY)
    ]
    entities += [SiteBinarySensor(site, d) for d in SITE_BINARY_SENSORS if d.exists_fn(site)]
    async_add_entities(entities)


class UnderFrequencySensor(SiteEntity[GridCoordinator], BinarySensorEntity):
    """On while a confirmed grid frequency sample is below the threshold."""

    @property
    def is_on(self) -> bool:
        """Whether the grid is under-frequency."""
        return self.coordinator.data.under_frequency

    @property
    def extra_state_attributes(self) -> dict[str, float]:
        """The threshold, so automations and the dashboard can show it."""
        return {"threshold_hz": self.coordinator.under_frequency_hz}


class SiteBinarySensor(SiteEntity[SiteCoordinator], BinarySensorEntity):
    """Connectivity of the site."""

    entity_description: SiteBinarySensorDescription

    @property
    def is_on(self) -> bool | None:
        """The value from the latest site poll."""
        return self.entity_description.value_fn(self.coordinator.data)
