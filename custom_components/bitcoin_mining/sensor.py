"""Sensors: grid, supply, network, fleet, balancer and failover figures, and each ASIC's."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from homeassistant.components.sensor import (
    RestoreSensor,
    SensorDeviceClass,
    SensorEntity,
    SensorEntityDescription,
    SensorStateClass,
)
from homeassistant.const import (
    PERCENTAGE,
    REVOLUTIONS_PER_MINUTE,
    EntityCategory,
    UnitOfElectricCurrent,
    UnitOfElectricPotential,
    UnitOfEnergy,
    UnitOfFrequency,
    UnitOfPower,
    UnitOfTemperature,
    UnitOfTime,
)
from homeassistant.core import HomeAssistant, callback
from homeassistant.helpers.entity_platform import AddConfigEntryEntitiesCallback
from homeassistant.helpers.typing import StateType
from homeassistant.helpers.update_coordinator import DataUpdateCoordinator
from homeassistant.util import dt as dt_util

from .alert_entities import ActiveAlertsSensor
from .balancer import LAST_ACTIONS, BalancerState, LoadBalancer
from .const import PROBE_EXTRA, PROBE_UPSTREAM_POOL
from .container_entity import async_add_container_entities
from .container_sensor import container_sensors
from .coordinator import (
    GridCoordinator,
    SiteCoordinator,
    SiteData,
)
from .entity import MinerEntity, MinerEntityDescription, SiteEntity, async_add_miner_entities
from .failover import FAILOVER_STATES, FailoverController, FailoverData
from .fleet import FleetCoordinator, FleetData, MinerView
from .miningsite.cycles import CycleRecord
from .miningsite.miners.base import MinerStatus
from .miningsite.stratum import PoolStats
from .models import BitcoinMiningConfigEntry

HASHRATE_UNIT = "TH/s"
# Home Assistant refuses longer states.
MAX_STATE_LENGTH = 255

# Coordinators do the polling; entities only read their data.
PARALLEL_UPDATES = 0


@dataclass(frozen=True, kw_only=True)
class GridSensorDescription(SensorEntityDescription):
    """A sensor fed by the grid meter."""

    value_fn: Callable[[GridCoordinator], float | None]
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
        value_fn=lambda grid: grid.data.reading.frequency_hz,
    ),
    GridSensorDescription(
        key="grid_voltage",
        translation_key="grid_voltage",
        device_class=SensorDeviceClass.VOLTAGE,
        native_unit_of_measurement=UnitOfElectricPotential.VOLT,
        state_class=SensorStateClass.MEASUREMENT,
        suggested_display_precision=1,
        value_fn=lambda grid: grid.data.reading.voltage_v,
        exists_fn=lambda grid: grid.meter.meter_map.voltage is not None,
    ),
    GridSensorDescription(
        key="grid_current",
        translation_key="grid_current",
        device_class=SensorDeviceClass.CURRENT,
        native_unit_of_measurement=UnitOfElectricCurrent.AMPERE,
        state_class=SensorStateClass.MEASUREMENT,
        suggested_display_precision=1,
        value_fn=lambda grid: grid.data.reading.current_a,
        exists_fn=lambda grid: grid.meter.meter_map.current is not None,
    ),
    GridSensorDescription(
        key="grid_power",
        translation_key="grid_power",
        device_class=SensorDeviceClass.POWER,
        native_unit_of_measurement=UnitOfPower.WATT,
        suggested_unit_of_measurement=UnitOfPower.KILO_WATT,
        state_class=SensorStateClass.MEASUREMENT,
        value_fn=lambda grid: grid.data.reading.power_w,
        exists_fn=lambda grid: grid.meter.meter_map.power is not None,
    ),
    GridSensorDescription(
        key="under_frequency_threshold",
        translation_key="under_frequency_threshold",
        device_class=SensorDeviceClass.FREQUENCY,
        native_unit_of_measurement=UnitOfFrequency.HERTZ,
        suggested_display_precision=2,
        entity_category=EntityCategory.DIAGNOSTIC,
        value_fn=lambda grid: grid.under_frequency_hz,
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


@dataclass(frozen=True, kw_only=True)
class FleetSensorDescription(SensorEntityDescription):
    """A site-wide figure of the fleet."""

    value_fn: Callable[[FleetData], StateType]


@dataclass(frozen=True, kw_only=True)
class BalancerSensorDescription(SensorEntityDescription):
    """What the load balancer last did."""

    value_fn: Callable[[BalancerState], StateType]
    attributes_fn: Callable[[BalancerState], dict[str, Any]] | None = None


@dataclass(frozen=True, kw_only=True)
class FailoverSensorDescription(SensorEntityDescription):
    """The uplink, the local pool and where the miners hash."""

    value_fn: Callable[[FailoverData], StateType]
    attributes_fn: Callable[[FailoverData], dict[str, Any]] | None = None
    # Figures of the local pool: unavailable while it cannot listen (or in proxy mode).
    needs_pool: bool = False
    # Figures of the proxy: created only in proxy mode, unavailable while it cannot listen.
    proxy_only: bool = False
    # Figures of either (the local pool or the proxy): unavailable while neither listens.
    needs_listener: bool = False


def _pool_figure(value: Callable[[PoolStats], float]) -> Callable[[FailoverData], StateType]:
    def figure(data: FailoverData) -> StateType:
        return None if data.pool is None else value(data.pool)

    return figure


# Miners a move names in its attributes (the log has every one).
FAILURES_SHOWN = 10


def _failover_attributes(data: FailoverData) -> dict[str, Any]:
    move = data.last_move
    attributes: dict[str, Any] = {
        "local_pool_url": data.pool_url,
        "local_pool_error": data.pool_error,
        "outage_started": data.outage_started.isoformat() if data.outage_started else None,
        "last_outage_s": None if data.last_outage_s is None else round(data.last_outage_s, 1),
        "miners_without_local_pool": len(data.backup_missing),
    }
    if move is not None:
        attributes |= {
            "last_move": move.kind,
            "last_move_at": move.finished_at.isoformat(),
            "last_move_miners": move.asked,
            "last_move_failed": len(move.failures),
            "last_move_failures": dict(list(move.failures.items())[:FAILURES_SHOWN]),
            "last_move_s": move.elapsed_s,
        }
    return attributes


FAILOVER_SENSORS: tuple[FailoverSensorDescription, ...] = (
    FailoverSensorDescription(
        key="failover_state",
        translation_key="failover_state",
        device_class=SensorDeviceClass.ENUM,
        options=list(FAILOVER_STATES),
        value_fn=lambda data: data.state,
        attributes_fn=_failover_attributes,
    ),
    FailoverSensorDescription(
        key="miners_on_local_pool",
        translation_key="miners_on_local_pool",
        state_class=SensorStateClass.MEASUREMENT,
        native_unit_of_measurement="miners",
        value_fn=lambda data: data.miners_on_local_pool,
    ),
    FailoverSensorDescription(
        key="share_loss",
        translation_key="share_loss",
        native_unit_of_measurement=PERCENTAGE,
        state_class=SensorStateClass.MEASUREMENT,
        suggested_display_precision=2,
        value_fn=lambda data: data.share_loss_percent,
        attributes_fn=lambda data: {"by_pool": data.share_loss_by_pool},
    ),
    FailoverSensorDescription(
        key="outage_duration",
        translation_key="outage_duration",
        device_class=SensorDeviceClass.DURATION,
        native_unit_of_measurement=UnitOfTime.SECONDS,
        state_class=SensorStateClass.MEASUREMENT,
        suggested_display_precision=0,
        # 0 while the uplink gives work; unknown until the first probe has answered.
        value_fn=lambda data: (
            None if data.internet_up is None else round(data.outage_s or 0.0, 1)
        ),
    ),
    FailoverSensorDescription(
        key="pool_work_latency",
        translation_key="pool_work_latency",
        device_class=SensorDeviceClass.DURATION,
        native_unit_of_measurement=UnitOfTime.MILLISECONDS,
        state_class=SensorStateClass.MEASUREMENT,
        suggested_display_precision=0,
        value_fn=lambda data: data.handshake.latency_ms if data.handshake else None,
        attributes_fn=lambda data: {"error": data.handshake.error if data.handshake else None},
    ),
    FailoverSensorDescription(
        key="local_pool_connections",
        translation_key="local_pool_connections",
        state_class=SensorStateClass.MEASUREMENT,
        native_unit_of_measurement="connections",
        needs_listener=True,
        # The miners connected to the site's pool, in either mode.
        value_fn=lambda data: (
            data.proxy.connections
            if data.proxy is not None
            else None
            if data.pool is None
            else data.pool.connections
        ),
    ),
    FailoverSensorDescription(
        key="work_lost",
        translation_key="work_lost",
        native_unit_of_measurement=PERCENTAGE,
        state_class=SensorStateClass.MEASUREMENT,
        suggested_display_precision=2,
        proxy_only=True,
        # Hashing time on local jobs (outages) over all hashing time through the proxy.
        value_fn=lambda data: (
            None if data.proxy is None else round(100 * data.proxy.work_lost_fraction, 3)
        ),
        attributes_fn=lambda data: (
            {}
            if data.proxy is None
            else {
                "local_shares": data.proxy.totals.local_accepted,
                "upstream_accepted": data.proxy.totals.upstream_accepted,
                "upstream_rejected": data.proxy.totals.upstream_rejected,
                "upstream_stale": data.proxy.totals.upstream_stale,
                "upstream_lost": data.proxy.totals.upstream_lost,
                "fallbacks": data.proxy.fallbacks,
            }
        ),
    ),
    FailoverSensorDescription(
        key="proxy_latency",
        translation_key="proxy_latency",
        device_class=SensorDeviceClass.DURATION,
        native_unit_of_measurement=UnitOfTime.MILLISECONDS,
        state_class=SensorStateClass.MEASUREMENT,
        suggested_display_precision=1,
        entity_category=EntityCategory.DIAGNOSTIC,
        proxy_only=True,
        # The 99th percentile of what relaying adds to a miner's round trip.
        value_fn=lambda data: None if data.proxy is None else data.proxy.latency_p99_ms,
        attributes_fn=lambda data: {
            "p50_ms": None if data.proxy is None else data.proxy.latency_p50_ms
        },
    ),
    FailoverSensorDescription(
        key="local_pool_shares",
        translation_key="local_pool_shares",
        state_class=SensorStateClass.MEASUREMENT,
        native_unit_of_measurement="shares/min",
        needs_pool=True,
        value_fn=_pool_figure(lambda pool: pool.accepted_per_minute),
    ),
    FailoverSensorDescription(
        key="local_pool_hashrate",
        translation_key="local_pool_hashrate",
        state_class=SensorStateClass.MEASUREMENT,
        native_unit_of_measurement=HASHRATE_UNIT,
        suggested_display_precision=2,
        needs_pool=True,
        # Estimated from the difficulty of the shares accepted over the last ten minutes.
        value_fn=_pool_figure(lambda pool: pool.hashrate / 1e12),
    ),
)


@dataclass(frozen=True, kw_only=True)
class MinerSensorDescription(SensorEntityDescription, MinerEntityDescription):
    """A figure of one ASIC: from its last reading, or from its cycle record."""

    value_fn: Callable[[MinerView, CycleRecord], StateType | datetime]


def _efficiency(data: FleetData) -> float | None:
    hashrate = data.hashrate_ths
    return round(data.power_w / hashrate, 1) if hashrate > 0 else None


def _truncated(text: str | None) -> str | None:
    """Text as a state: at most 255 characters, None when empty."""
    if not text:
        return None
    return text if len(text) <= MAX_STATE_LENGTH else text[: MAX_STATE_LENGTH - 1] + "…"


def _timestamp(value: float | None) -> datetime | None:
    return None if value is None else dt_util.utc_from_timestamp(value)


def _status_value(
    read: Callable[[MinerStatus], StateType],
) -> Callable[[MinerView, CycleRecord], StateType]:
    """A value from the miner's last reading; unknown while it does not answer."""

    def value(view: MinerView, record: CycleRecord) -> StateType:
        return None if view.status is None else read(view.status)

    return value


FLEET_SENSORS: tuple[FleetSensorDescription, ...] = (
    FleetSensorDescription(
        key="fleet_hashrate",
        translation_key="fleet_hashrate",
        native_unit_of_measurement=HASHRATE_UNIT,
        state_class=SensorStateClass.MEASUREMENT,
        suggested_display_precision=1,
        value_fn=lambda data: round(data.hashrate_ths, 3),
    ),
    FleetSensorDescription(
        key="fleet_power",
        translation_key="fleet_power",
        device_class=SensorDeviceClass.POWER,
        native_unit_of_measurement=UnitOfPower.KILO_WATT,
        state_class=SensorStateClass.MEASUREMENT,
        suggested_display_precision=1,
        value_fn=lambda data: round(data.power_w / 1000, 3),
    ),
    FleetSensorDescription(
        key="miners_running",
        translation_key="miners_running",
        state_class=SensorStateClass.MEASUREMENT,
        value_fn=lambda data: data.running,
    ),
    FleetSensorDescription(
        key="miners_total",
        translation_key="miners_total",
        state_class=SensorStateClass.MEASUREMENT,
        value_fn=lambda data: data.total,
    ),
    FleetSensorDescription(
        key="fleet_efficiency",
        translation_key="fleet_efficiency",
        native_unit_of_measurement="J/TH",
        state_class=SensorStateClass.MEASUREMENT,
        suggested_display_precision=1,
        value_fn=_efficiency,
    ),
)

# Failures listed on the Last allocation action sensor (state attributes stay small).
FAILURES_SHOWN = 10


def _last_action_attributes(state: BalancerState) -> dict[str, Any]:
    """The numbers behind the last action, for the dashboard and automations."""
    plan = state.last_plan
    return {
        "reason": state.last_reason,
        "trigger": state.last_trigger,
        "mode": state.mode,
        "stops": state.last_stops,
        "starts": state.last_starts,
        "commands": state.last_commands,
        "failed": len(state.failures),
        "failures": [
            {"mac": f.mac, "action": f.action, "error": f.error}
            for f in state.failures[:FAILURES_SHOWN]
        ],
        "notes": list(plan.notes) if plan else [],
        "budget_kw": None
        if plan is None or plan.budget_w is None
        else round(plan.budget_w / 1000, 2),
    }


BALANCER_SENSORS: tuple[BalancerSensorDescription, ...] = (
    BalancerSensorDescription(
        key="last_allocation_action",
        translation_key="last_allocation_action",
        device_class=SensorDeviceClass.ENUM,
        options=list(LAST_ACTIONS),
        value_fn=lambda state: state.last_action,
        attributes_fn=_last_action_attributes,
    ),
    BalancerSensorDescription(
        key="planned_running",
        translation_key="planned_running",
        state_class=SensorStateClass.MEASUREMENT,
        value_fn=lambda state: state.planned_running,
    ),
)

MINER_SENSORS: tuple[MinerSensorDescription, ...] = (
    MinerSensorDescription(
        key="hashrate",
        translation_key="hashrate",
        native_unit_of_measurement=HASHRATE_UNIT,
        state_class=SensorStateClass.MEASUREMENT,
        suggested_display_precision=1,
        value_fn=_status_value(lambda status: status.hashrate_ths),
    ),
    MinerSensorDescription(
        key="power",
        translation_key="power",
        device_class=SensorDeviceClass.POWER,
        native_unit_of_measurement=UnitOfPower.WATT,
        state_class=SensorStateClass.MEASUREMENT,
        suggested_display_precision=0,
        value_fn=_status_value(lambda status: status.power_w),
    ),
    MinerSensorDescription(
        key="temperature",
        translation_key="temperature",
        device_class=SensorDeviceClass.TEMPERATURE,
        native_unit_of_measurement=UnitOfTemperature.CELSIUS,
        state_class=SensorStateClass.MEASUREMENT,
        suggested_display_precision=1,
        value_fn=_status_value(lambda status: status.temperature_c),
    ),
    MinerSensorDescription(
        key="cycles",
        translation_key="cycles",
        available_offline=True,
        state_class=SensorStateClass.TOTAL_INCREASING,
        value_fn=lambda view, record: record.cycles,
    ),
    MinerSensorDescription(
        key="last_off",
        translation_key="last_off",
        available_offline=True,
        device_class=SensorDeviceClass.TIMESTAMP,
        value_fn=lambda view, record: _timestamp(record.last_off),
    ),
    MinerSensorDescription(
        key="last_on",
        translation_key="last_on",
        available_offline=True,
        device_class=SensorDeviceClass.TIMESTAMP,
        entity_category=EntityCategory.DIAGNOSTIC,
        entity_registry_enabled_default=False,
        value_fn=lambda view, record: _timestamp(record.last_on),
    ),
    MinerSensorDescription(
        key="fan_speed",
        translation_key="fan_speed",
        native_unit_of_measurement=REVOLUTIONS_PER_MINUTE,
        state_class=SensorStateClass.MEASUREMENT,
        entity_category=EntityCategory.DIAGNOSTIC,
        entity_registry_enabled_default=False,
        value_fn=_status_value(lambda status: max(status.fan_rpm, default=None)),
    ),
    MinerSensorDescription(
        key="uptime",
        translation_key="uptime",
        device_class=SensorDeviceClass.DURATION,
        native_unit_of_measurement=UnitOfTime.SECONDS,
        suggested_unit_of_measurement=UnitOfTime.HOURS,
        entity_category=EntityCategory.DIAGNOSTIC,
        entity_registry_enabled_default=False,
        value_fn=_status_value(lambda status: status.uptime_s),
    ),
    MinerSensorDescription(
        key="active_pool",
        translation_key="active_pool",
        entity_category=EntityCategory.DIAGNOSTIC,
        entity_registry_enabled_default=False,
        value_fn=_status_value(lambda status: pool.url if (pool := status.active_pool) else None),
    ),
    MinerSensorDescription(
        key="address",
        translation_key="address",
        entity_category=EntityCategory.DIAGNOSTIC,
        entity_registry_enabled_default=False,
        available_offline=True,
        value_fn=lambda view, record: view.address,
    ),
    MinerSensorDescription(
        key="last_error",
        translation_key="last_error",
        entity_category=EntityCategory.DIAGNOSTIC,
        entity_registry_enabled_default=False,
        available_offline=True,
        # Why the last poll got no reading; unknown while the miner answers.
        value_fn=lambda view, record: _truncated(view.error),
    ),
    MinerSensorDescription(
        key="firmware_errors",
        translation_key="firmware_errors",
        entity_category=EntityCategory.DIAGNOSTIC,
        entity_registry_enabled_default=False,
        # The errors as the firmware words them; unknown while it reports none.
        value_fn=_status_value(lambda status: _truncated("; ".join(status.errors))),
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
    fleet = entry.runtime_data.fleet
    balancer = entry.runtime_data.balancer
    entities += [FleetSensor(fleet, d) for d in FLEET_SENSORS]
    entities.append(EnergySensor(fleet, MINING_ENERGY))
    if site.supply.entity_ids:
        entities.append(EnergySensor(site, SUPPLY_ENERGY))
    if entry.runtime_data.containers:
        entities.append(EnergySensor(site, CONTAINERS_OVERHEAD_ENERGY))
    entities += [BalancerSensor(balancer, d) for d in BALANCER_SENSORS]
    failover = entry.runtime_data.failover
    entities += [
        FailoverSensor(failover, d)
        for d in FAILOVER_SENSORS
        if failover.proxy_mode or not d.proxy_only
    ]
    entities.append(ActiveAlertsSensor(entry, "active_alerts"))
    async_add_entities(entities)

    async_add_miner_entities(
        entry,
        fleet,
        async_add_entities,
        lambda mac: [MinerSensor(fleet, mac, d) for d in MINER_SENSORS],
    )
    async_add_container_entities(entry, async_add_entities, container_sensors)


class GridSensor(SiteEntity[GridCoordinator], SensorEntity):
    """A grid meter reading."""

    entity_description: GridSensorDescription

    @property
    def native_value(self) -> float | None:
        """The latest plausible reading."""
        return self.entity_description.value_fn(self.coordinator)


class SiteSensor(SiteEntity[SiteCoordinator], SensorEntity):
    """A supply, power or network figure of the site."""

    entity_description: SiteSensorDescription

    @property
    def native_value(self) -> StateType:
        """The value from the latest site poll."""
        return self.entity_description.value_fn(self.coordinator.data)


class FleetSensor(SiteEntity[FleetCoordinator], SensorEntity):
    """A site-wide figure of the fleet."""

    entity_description: FleetSensorDescription

    @property
    def native_value(self) -> StateType:
        """The value from the latest fleet poll."""
        return self.entity_description.value_fn(self.coordinator.data)


@dataclass(frozen=True, kw_only=True)
class EnergySensorDescription[DataT](SensorEntityDescription):
    """A kWh total integrated from a power figure at every poll (Energy dashboard)."""

    device_class: SensorDeviceClass = SensorDeviceClass.ENERGY
    native_unit_of_measurement: str = UnitOfEnergy.KILO_WATT_HOUR
    state_class: SensorStateClass = SensorStateClass.TOTAL_INCREASING
    suggested_display_precision: int = 2
    # (seconds on a clock that only goes forward, W or None when unknown) of a poll.
    sample_fn: Callable[[DataT], tuple[float, float | None]]


MINING_ENERGY = EnergySensorDescription[FleetData](
    key="mining_energy",
    translation_key="mining_energy",
    sample_fn=lambda data: (data.polled_at, data.power_w),
)
# The supply's energy: what the site took in (the Energy dashboard's grid consumption).
SUPPLY_ENERGY = EnergySensorDescription[SiteData](
    key="supply_energy",
    translation_key="supply_energy",
    sample_fn=lambda data: (dt_util.utcnow().timestamp(), data.supply.power_w),
)
# What the containers drew besides their miners: with mining energy, the site's whole draw
# without counting a miner twice (a container's own meters include its miners).
CONTAINERS_OVERHEAD_ENERGY = EnergySensorDescription[SiteData](
    key="containers_overhead_energy",
    translation_key="containers_overhead_energy",
    sample_fn=lambda data: (data.polled_at, data.containers_overhead_w),
)


class EnergySensor[DataT](SiteEntity[DataUpdateCoordinator[DataT]], RestoreSensor):
    """Energy integrated from a power figure at every poll, kept across restarts."""

    entity_description: EnergySensorDescription[DataT]
    _total_kwh: float = 0.0
    _last: tuple[float, float] | None = None  # (time, W) of the previous known sample

    async def async_added_to_hass(self) -> None:
        """Continue from the total before the restart."""
        await super().async_added_to_hass()
        if (last := await self.async_get_last_sensor_data()) is not None and isinstance(
            last.native_value, int | float
        ):
            self._total_kwh = float(last.native_value)
        self._integrate()

    @callback
    def _handle_coordinator_update(self) -> None:
        """Add the energy since the previous poll, then write the state."""
        self._integrate()
        super()._handle_coordinator_update()

    def _integrate(self) -> None:
        now, power_w = self.entity_description.sample_fn(self.coordinator.data)
        if power_w is None:
            # Unknown power: the gap is not guessed at; counting resumes from the next sample.
            self._last = None
            return
        if self._last is not None and now > self._last[0]:
            hours = (now - self._last[0]) / 3600
            # Trapezoid: the mean of the two powers over the interval.
            self._total_kwh += (self._last[1] + power_w) / 2 / 1000 * hours
        self._last = (now, power_w)

    @property
    def native_value(self) -> float:
        """Total kWh since the sensor was created."""
        return round(self._total_kwh, 4)


class BalancerSensor(SiteEntity[LoadBalancer], SensorEntity):
    """What the load balancer last did and plans."""

    entity_description: BalancerSensorDescription

    @property
    def native_value(self) -> StateType:
        """The value from the balancer's last run."""
        return self.entity_description.value_fn(self.coordinator.data)

    @property
    def extra_state_attributes(self) -> dict[str, Any] | None:
        """What the description adds to the state (the last action's numbers)."""
        attributes_fn = self.entity_description.attributes_fn
        return None if attributes_fn is None else attributes_fn(self.coordinator.data)


class FailoverSensor(SiteEntity[FailoverController], SensorEntity):
    """The uplink's health, the local pool's figures and where the miners hash."""

    entity_description: FailoverSensorDescription

    @property
    def available(self) -> bool:
        """Pool figures need a pool that listens, proxy figures a proxy."""
        description, data = self.entity_description, self.coordinator.data
        if (
            (description.needs_pool and data.pool is None)
            or (description.proxy_only and data.proxy is None)
            or (description.needs_listener and data.pool is None and data.proxy is None)
        ):
            return False
        return super().available

    @property
    def native_value(self) -> StateType:
        """The figure now."""
        return self.entity_description.value_fn(self.coordinator.data)

    @property
    def extra_state_attributes(self) -> dict[str, Any] | None:
        """What the description adds to the state."""
        attributes_fn = self.entity_description.attributes_fn
        return None if attributes_fn is None else attributes_fn(self.coordinator.data)


class MinerSensor(MinerEntity, SensorEntity):
    """A figure of one ASIC."""

    entity_description: MinerSensorDescription

    @property
    def native_value(self) -> StateType | datetime:
        """From the miner's last reading, or its cycle record."""
        view = self.view
        if view is None:
            return None
        return self.entity_description.value_fn(view, self.coordinator.store.cycles.get(self.mac))
