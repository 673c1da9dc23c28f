"""Sensors: grid, supply, available power and network health of a site."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from homeassistant.components.sensor import (
    SensorDeviceClass,
    SensorEntity,
    SensorEntityDescription,
    SensorStateClass,
)
from homeassistant.const import (
    EntityCategory,
    UnitOfElectricCurrent,
    UnitOfElectricPotential,
    UnitOfFrequency,
    UnitOfPower,
    UnitOfTime,
)
from homeassistant.core import HomeAssistant
from homeassistant.helpers.entity_platform import AddConfigEntryEntitiesCallback
from homeassistant.helpers.typing import StateType

from .const import PROBE_EXTRA, PROBE_UPSTREAM_POOL
from .coordinator import (
    BitcoinMiningConfigEntry,
    GridCoordinator,
    GridData,
    SiteCoordinator,
    SiteData,
)
from .entity import SiteEntity

# Coordinators do the polling; entities only read their data.
PARALLEL_UPDATES = 0


@dataclass(frozen=True, kw_only=True)
class GridSensorDescription(SensorEntityDescription):
    """A sensor fed by the grid meter."""

    value_fn: Callable[[GridData], float | None]
    exists_fn: Callable[[GridCoordinator], bool] = lambda _: True


@dataclass(frozen=True, kw_only=True)
class SiteSensorDescription(SensorEntityDescription):
    """A sensor fed by the site poll."""

    value_fn: Callable[[SiteData], StateType]
    exists_fn: Callable[[SiteCoordinator], bool] = lambda _: True


def _kw(watts: float | None) -> float | None:
    return None if watts is None else watts / 1000


def _latency(probe: str) -> Callable[[SiteData], StateType]:
    def value(data: SiteData) -> StateType:
        result = data.probes.get(probe)
        return None if result is None else result.latency_ms

    return value


GRID_SENSORS: tuple[GridSensorDescription, ...] = (
    GridSensorDescription(
        key="grid_frequency",
        translation_key="grid_frequency",
        device_class=SensorDeviceClass.FREQUENCY,
        native_unit_of_measurement=UnitOfFrequency.HERTZ,
        state_class=SensorStateClass.MEASUREMENT,
        suggested_display_precision=2,
        value_fn=lambda data: data.reading.frequency_hz,
    ),
    GridSensorDescription(
        key="grid_voltage",
        translation_key="grid_voltage",
        device_class=SensorDeviceClass.VOLTAGE,
        native_unit_of_measurement=UnitOfElectricPotential.VOLT,
        state_class=SensorStateClass.MEASUREMENT,
        suggested_display_precision=1,
        value_fn=lambda data: data.reading.voltage_v,
        exists_fn=lambda grid: grid.meter.meter_map.voltage is not None,
    ),
    GridSensorDescription(
        key="grid_current",
        translation_key="grid_current",
        device_class=SensorDeviceClass.CURRENT,
        native_unit_of_measurement=UnitOfElectricCurrent.AMPERE,
        state_class=SensorStateClass.MEASUREMENT,
        suggested_display_precision=1,
        value_fn=lambda data: data.reading.current_a,
        exists_fn=lambda grid: grid.meter.meter_map.current is not None,
    ),
    GridSensorDescription(
        key="grid_power",
        translation_key="grid_power",
        device_class=SensorDeviceClass.POWER,
        native_unit_of_measurement=UnitOfPower.WATT,
        suggested_unit_of_measurement=UnitOfPower.KILO_WATT,
        state_class=SensorStateClass.MEASUREMENT,
        value_fn=lambda data: data.reading.power_w,
        exists_fn=lambda grid: grid.meter.meter_map.power is not None,
    ),
)

SITE_SENSORS: tuple[SiteSensorDescription, ...] = (
    SiteSensorDescription(
        key="supply_power",
        translation_key="supply_power",
        device_class=SensorDeviceClass.POWER,
        native_unit_of_measurement=UnitOfPower.KILO_WATT,
        state_class=SensorStateClass.MEASUREMENT,
        suggested_display_precision=1,
        value_fn=lambda data: _kw(data.supply.power_w),
    ),
    SiteSensorDescription(
        key="available_power",
        translation_key="available_power",
        device_class=SensorDeviceClass.POWER,
        native_unit_of_measurement=UnitOfPower.KILO_WATT,
        state_class=SensorStateClass.MEASUREMENT,
        suggested_display_precision=1,
        value_fn=lambda data: _kw(data.available_power_w),
    ),
    SiteSensorDescription(
        key="site_power",
        translation_key="site_power",
        device_class=SensorDeviceClass.POWER,
        native_unit_of_measurement=UnitOfPower.KILO_WATT,
        state_class=SensorStateClass.MEASUREMENT,
        suggested_display_precision=1,
        value_fn=lambda data: _kw(data.site_power_w),
    ),
    SiteSensorDescription(
        key="pool_latency",
        translation_key="pool_latency",
        device_class=SensorDeviceClass.DURATION,
        native_unit_of_measurement=UnitOfTime.MILLISECONDS,
        state_class=SensorStateClass.MEASUREMENT,
        suggested_display_precision=0,
        value_fn=_latency(PROBE_UPSTREAM_POOL),
    ),
    SiteSensorDescription(
        key="probe_latency",
        translation_key="probe_latency",
        device_class=SensorDeviceClass.DURATION,
        native_unit_of_measurement=UnitOfTime.MILLISECONDS,
        state_class=SensorStateClass.MEASUREMENT,
        suggested_display_precision=0,
        entity_category=EntityCategory.DIAGNOSTIC,
        value_fn=_latency(PROBE_EXTRA),
        exists_fn=lambda site: any(t.name == PROBE_EXTRA for t in site.probe_targets),
    ),
)


async def async_setup_entry(
    hass: HomeAssistant,
    entry: BitcoinMiningConfigEntry,
    async_add_entities: AddConfigEntryEntitiesCallback,
) -> None:
    """Add the site's sensors."""
    grid = entry.runtime_data.grid
    site = entry.runtime_data.site
    entities: list[SensorEntity] = [GridSensor(grid, d) for d in GRID_SENSORS if d.exists_fn(grid)]
    entities += [SiteSensor(site, d) for d in SITE_SENSORS if d.exists_fn(site)]
    async_add_entities(entities)


class GridSensor(SiteEntity[GridCoordinator], SensorEntity):
    """A grid meter reading."""

    entity_description: GridSensorDescription

    @property
    def native_value(self) -> float | None:
        """The latest plausible reading."""
        return self.entity_description.value_fn(self.coordinator.data)


class SiteSensor(SiteEntity[SiteCoordinator], SensorEntity):
    """A supply, power or network figure of the site."""

    entity_description: SiteSensorDescription

    @property
    def native_value(self) -> StateType:
        """The value from the latest site poll."""
        return self.entity_description.value_fn(self.coordinator.data)
