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

from .balancer import LoadBalancer
from .compat import BinarySensorDeviceClass
from .const import PROBE_EXTRA, PROBE_UPSTREAM_POOL
from .coordinator import GridCoordinator, SiteCoordinator, SiteData
from .entity import MinerEntity, SiteEntity, async_add_miner_entities
from .fleet import FleetCoordinator
from .models import BitcoinMiningConfigEntry

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


CURTAILED = BinarySensorEntityDescription(key="curtailed", translation_key="curtailed")
MINER_ONLINE = BinarySensorEntityDescription(
    key="online",
    translation_key="online",
    device_class=BinarySensorDeviceClass.CONNECTIVITY,
    entity_category=EntityCategory.DIAGNOSTIC,
)
MINER_PROBLEM = BinarySensorEntityDescription(
    key="problem",
    translation_key="problem",
    device_class=BinarySensorDeviceClass.PROBLEM,
)

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
    entities.append(CurtailedSensor(entry.runtime_data.balancer, CURTAILED))
    async_add_entities(entities)

    fleet = entry.runtime_data.fleet
    async_add_miner_entities(
        entry,
        fleet,
        async_add_entities,
        lambda mac: [
            MinerOnlineSensor(fleet, mac, MINER_ONLINE),
            MinerProblemSensor(fleet, mac, MINER_PROBLEM),
        ],
    )


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


class CurtailedSensor(SiteEntity[LoadBalancer], BinarySensorEntity):
    """On while mining is capped by a curtailment, a frequency event or its restore."""

    @property
    def is_on(self) -> bool:
        """Whether the last plan ran under a curtailment or a frequency stage."""
        return self.coordinator.data.curtailed


class MinerOnlineSensor(MinerEntity, BinarySensorEntity):
    """Whether the miner answered the last poll (always available itself)."""

    coordinator: FleetCoordinator

    @property
    def available(self) -> bool:
        """Known miners always have an online state."""
        return self.view is not None

    @property
    def is_on(self) -> bool:
        """Answered the last poll."""
        view = self.view
        return view is not None and view.online

    @property
    def extra_state_attributes(self) -> dict[str, str | None]:
        """Why it does not answer, and where it is."""
        view = self.view
        return {"address": view.address if view else None, "error": view.error if view else None}


class MinerProblemSensor(MinerEntity, BinarySensorEntity):
    """On while the firmware reports errors."""

    coordinator: FleetCoordinator

    @property
    def is_on(self) -> bool | None:
        """Whether the firmware reports errors."""
        view = self.view
        return None if view is None or view.status is None else bool(view.status.errors)

    @property
    def extra_state_attributes(self) -> dict[str, list[str]]:
        """The errors as the firmware words them."""
        view = self.view
        return {"errors": list(view.status.errors[:20]) if view and view.status else []}
