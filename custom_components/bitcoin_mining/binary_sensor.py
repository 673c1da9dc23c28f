"""Binary sensors: grid under-frequency, connectivity, curtailment and each ASIC's health."""

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

from .balancer import BalancerState, LoadBalancer
from .compat import BinarySensorDeviceClass
from .const import PROBE_EXTRA, PROBE_UPSTREAM_POOL
from .container_binary_sensor import container_binary_sensors
from .container_entity import async_add_container_entities
from .coordinator import GridCoordinator, GridData, SiteCoordinator, SiteData
from .entity import MinerEntity, MinerEntityDescription, SiteEntity, async_add_miner_entities
from .failover import FailoverController
from .fleet import MinerView
from .models import BitcoinMiningConfigEntry

PARALLEL_UPDATES = 0


@dataclass(frozen=True, kw_only=True)
class GridBinarySensorDescription(BinarySensorEntityDescription):
    """A binary sensor fed by the grid meter."""

    is_on_fn: Callable[[GridData], bool | None]


@dataclass(frozen=True, kw_only=True)
class SiteBinarySensorDescription(BinarySensorEntityDescription):
    """A binary sensor fed by the site poll."""

    is_on_fn: Callable[[SiteData], bool | None]
    exists_fn: Callable[[SiteCoordinator], bool] = lambda _: True


@dataclass(frozen=True, kw_only=True)
class BalancerBinarySensorDescription(BinarySensorEntityDescription):
    """A binary sensor of the load balancer's state."""

    is_on_fn: Callable[[BalancerState], bool | None]


@dataclass(frozen=True, kw_only=True)
class MinerBinarySensorDescription(BinarySensorEntityDescription, MinerEntityDescription):
    """A binary sensor of one ASIC, from the last poll."""

    is_on_fn: Callable[[MinerView], bool | None]


def _reachable(probe: str) -> Callable[[SiteData], bool | None]:
    def value(data: SiteData) -> bool | None:
        result = data.probes.get(probe)
        return None if result is None else result.reachable

    return value


# The overall verdict: off once the upstream pool has given no work N times within M s.
INTERNET = BinarySensorEntityDescription(
    key="internet",
    translation_key="internet",
    device_class=BinarySensorDeviceClass.CONNECTIVITY,
)

GRID_BINARY_SENSORS: tuple[GridBinarySensorDescription, ...] = (
    GridBinarySensorDescription(
        key="under_frequency",
        translation_key="under_frequency",
        device_class=BinarySensorDeviceClass.PROBLEM,
        # On while a confirmed frequency sample is below the threshold.
        is_on_fn=lambda data: data.under_frequency,
    ),
)

BALANCER_BINARY_SENSORS: tuple[BalancerBinarySensorDescription, ...] = (
    BalancerBinarySensorDescription(
        key="curtailed",
        translation_key="curtailed",
        # On while mining is capped by a curtailment, a frequency event or its restore.
        is_on_fn=lambda state: state.curtailed,
    ),
)

MINER_BINARY_SENSORS: tuple[MinerBinarySensorDescription, ...] = (
    MinerBinarySensorDescription(
        key="online",
        translation_key="online",
        device_class=BinarySensorDeviceClass.CONNECTIVITY,
        entity_category=EntityCategory.DIAGNOSTIC,
        # Whether the miner answered the last poll: known miners always have one.
        available_offline=True,
        is_on_fn=lambda view: view.online,
    ),
    MinerBinarySensorDescription(
        key="problem",
        translation_key="problem",
        device_class=BinarySensorDeviceClass.PROBLEM,
        # On while the firmware reports errors (their text: the Firmware errors sensor).
        is_on_fn=lambda view: None if view.status is None else bool(view.status.errors),
    ),
)

SITE_BINARY_SENSORS: tuple[SiteBinarySensorDescription, ...] = (
    SiteBinarySensorDescription(
        key="pool_reachable",
        translation_key="pool_reachable",
        device_class=BinarySensorDeviceClass.CONNECTIVITY,
        entity_category=EntityCategory.DIAGNOSTIC,
        is_on_fn=_reachable(PROBE_UPSTREAM_POOL),
    ),
    SiteBinarySensorDescription(
        key="probe_reachable",
        translation_key="probe_reachable",
        device_class=BinarySensorDeviceClass.CONNECTIVITY,
        entity_category=EntityCategory.DIAGNOSTIC,
        is_on_fn=_reachable(PROBE_EXTRA),
        exists_fn=lambda site: any(t.name == PROBE_EXTRA for t in site.probe_targets),
    ),
)


async def async_setup_entry(
    hass: HomeAssistant,
    entry: BitcoinMiningConfigEntry,
    async_add_entities: AddConfigEntryEntitiesCallback,
) -> None:
    """Add the site's binary sensors, and each ASIC's (now and as ASICs appear)."""
    grid = entry.runtime_data.grid
    site = entry.runtime_data.site
    balancer = entry.runtime_data.balancer
    entities: list[BinarySensorEntity] = [GridBinarySensor(grid, d) for d in GRID_BINARY_SENSORS]
    entities += [SiteBinarySensor(site, d) for d in SITE_BINARY_SENSORS if d.exists_fn(site)]
    entities += [BalancerBinarySensor(balancer, d) for d in BALANCER_BINARY_SENSORS]
    entities.append(InternetBinarySensor(entry.runtime_data.failover, INTERNET))
    async_add_entities(entities)

    fleet = entry.runtime_data.fleet
    async_add_miner_entities(
        entry,
        fleet,
        async_add_entities,
        lambda mac: [MinerBinarySensor(fleet, mac, d) for d in MINER_BINARY_SENSORS],
    )
    async_add_container_entities(entry, async_add_entities, container_binary_sensors)


class GridBinarySensor(SiteEntity[GridCoordinator], BinarySensorEntity):
    """A state of the grid."""

    entity_description: GridBinarySensorDescription

    @property
    def is_on(self) -> bool | None:
        """The value from the latest meter reading."""
        return self.entity_description.is_on_fn(self.coordinator.data)


class SiteBinarySensor(SiteEntity[SiteCoordinator], BinarySensorEntity):
    """Connectivity of the site."""

    entity_description: SiteBinarySensorDescription

    @property
    def is_on(self) -> bool | None:
        """The value from the latest site poll."""
        return self.entity_description.is_on_fn(self.coordinator.data)


class InternetBinarySensor(SiteEntity[FailoverController], BinarySensorEntity):
    """Whether the upstream pool gives work (an outage is confirmed, never one lost probe)."""

    @property
    def is_on(self) -> bool | None:
        """Off during a confirmed outage; unknown until the first probe."""
        return self.coordinator.data.internet_up


class BalancerBinarySensor(SiteEntity[LoadBalancer], BinarySensorEntity):
    """A state of the load balancer."""

    entity_description: BalancerBinarySensorDescription

    @property
    def is_on(self) -> bool | None:
        """The value after the balancer's latest run."""
        return self.entity_description.is_on_fn(self.coordinator.data)


class MinerBinarySensor(MinerEntity, BinarySensorEntity):
    """A state of one ASIC."""

    entity_description: MinerBinarySensorDescription

    @property
    def is_on(self) -> bool | None:
        """The value from the miner's last poll."""
        view = self.view
        return None if view is None else self.entity_description.is_on_fn(view)
