"""A container's sensors: power, energy, meters, climate, water loop, PDUs, alarm severity."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace

from homeassistant.components.sensor import (
    DOMAIN as SENSOR_DOMAIN,
    SensorDeviceClass,
    SensorEntity,
    SensorEntityDescription,
    SensorStateClass,
)
from homeassistant.const import (
    PERCENTAGE,
    EntityCategory,
    UnitOfElectricCurrent,
    UnitOfElectricPotential,
    UnitOfEnergy,
    UnitOfFrequency,
    UnitOfPower,
    UnitOfPressure,
    UnitOfTemperature,
)

from .container import ContainerCoordinator, ContainerData
from .container_entity import (
    ContainerEntity,
    ContainerEntityDescription,
    async_remove_absent_entities,
)
from .miningsite.containers import (
    CduReading,
    ContainerKind,
    ContainerReading,
    MeterReading,
    PduReading,
)
from .miningsite.containers.alarms import Severity

METERS = 4
PDUS = 12


@dataclass(frozen=True, kw_only=True)
class ContainerSensorDescription(ContainerEntityDescription, SensorEntityDescription):
    """A container sensor: its value from the coordinator's data."""

    value_fn: Callable[[ContainerData], float | str | None]


def _cdu(get: Callable[[CduReading], float | None]) -> Callable[[ContainerData], float | None]:
    """A CDU value, None while the CDU is unknown."""

    def value(data: ContainerData) -> float | None:
        cdu = data.reading.cdu if data.reading else None
        return get(cdu) if cdu else None

    return value


def _reading(
    get: Callable[[ContainerReading], float | str | None],
) -> Callable[[ContainerData], float | str | None]:
    return lambda data: get(data.reading) if data.reading else None


def _temperature(key: str, get: Callable[[CduReading], float | None]) -> ContainerSensorDescription:
    return ContainerSensorDescription(
        key=key,
        translation_key=key,
        device_class=SensorDeviceClass.TEMPERATURE,
        state_class=SensorStateClass.MEASUREMENT,
        native_unit_of_measurement=UnitOfTemperature.CELSIUS,
        value_fn=_cdu(get),
    )


def _pressure(key: str, get: Callable[[CduReading], float | None]) -> ContainerSensorDescription:
    return ContainerSensorDescription(
        key=key,
        translation_key=key,
        device_class=SensorDeviceClass.PRESSURE,
        state_class=SensorStateClass.MEASUREMENT,
        native_unit_of_measurement=UnitOfPressure.BAR,
        value_fn=_cdu(get),
    )


CONTAINER_SENSORS: tuple[ContainerSensorDescription, ...] = (
    ContainerSensorDescription(
        key="power",
        device_class=SensorDeviceClass.POWER,
        state_class=SensorStateClass.MEASUREMENT,
        native_unit_of_measurement=UnitOfPower.WATT,
        suggested_unit_of_measurement=UnitOfPower.KILO_WATT,
        value_fn=_reading(lambda r: r.power_w),
    ),
    ContainerSensorDescription(
        key="energy",
        device_class=SensorDeviceClass.ENERGY,
        state_class=SensorStateClass.TOTAL_INCREASING,
        native_unit_of_measurement=UnitOfEnergy.KILO_WATT_HOUR,
        suggested_display_precision=2,
        value_fn=lambda data: data.energy_kwh,
    ),
    ContainerSensorDescription(
        key="status",
        translation_key="container_status",
        device_class=SensorDeviceClass.ENUM,
        options=["running", "stopped", "error"],
        value_fn=_reading(lambda r: r.status.value if r.status else None),
    ),
    ContainerSensorDescription(
        key="alarm_severity",
        translation_key="alarm_severity",
        device_class=SensorDeviceClass.ENUM,
        options=[severity.label for severity in Severity],
        value_fn=lambda data: data.alarms.severity.label,
    ),
    ContainerSensorDescription(
        key="ambient_temperature",
        translation_key="ambient_temperature",
        device_class=SensorDeviceClass.TEMPERATURE,
        state_class=SensorStateClass.MEASUREMENT,
        native_unit_of_measurement=UnitOfTemperature.CELSIUS,
        value_fn=_reading(lambda r: r.ambient.temperature_c if r.ambient else None),
    ),
    ContainerSensorDescription(
        key="ambient_humidity",
        translation_key="ambient_humidity",
        device_class=SensorDeviceClass.HUMIDITY,
        state_class=SensorStateClass.MEASUREMENT,
        native_unit_of_measurement=PERCENTAGE,
        value_fn=_reading(lambda r: r.ambient.humidity if r.ambient else None),
    ),
    _temperature("inlet_water_temperature", lambda c: c.inlet_temp_c),
    # Only Wonderint has an outlet sensor (reg 211): on a Kehua it would be unknown for ever.
    replace(
        _temperature("outlet_water_temperature", lambda c: c.outlet_temp_c),
        exists_fn=lambda kind: kind is not ContainerKind.KEHUA,
    ),
    _temperature("cooling_water_temperature", lambda c: c.cooling_temp_c),
    _temperature("dew_point", lambda c: c.dew_point_c),
    _pressure("inlet_pressure", lambda c: c.inlet_pressure_bar),
    _pressure("outlet_pressure", lambda c: c.outlet_pressure_bar),
    _pressure("pump_inlet_pressure", lambda c: c.pump_inlet_pressure_bar),
    _pressure("pump_outlet_pressure", lambda c: c.pump_outlet_pressure_bar),
    _pressure("filter_pressure_difference", lambda c: c.filter_pressure_difference),
    ContainerSensorDescription(
        key="pump_speed",
        translation_key="pump_speed",
        state_class=SensorStateClass.MEASUREMENT,
        native_unit_of_measurement=PERCENTAGE,
        value_fn=_cdu(lambda c: c.pump_speed),
    ),
    ContainerSensorDescription(
        key="cooling_system_status",
        translation_key="cooling_system_status",
        entity_category=EntityCategory.DIAGNOSTIC,
        value_fn=_cdu(lambda c: c.cooling_system_status),
    ),
)


def _meter(
    index: int, get: Callable[[MeterReading], float | None]
) -> Callable[[ContainerData], float | None]:
    def value(data: ContainerData) -> float | None:
        meter = data.reading.meters[index] if data.reading else None
        return get(meter) if meter else None

    return value


def meter_sensors(index: int) -> list[ContainerSensorDescription]:
    """One power meter's voltage, current, power factor and frequency (disabled by default)."""
    number = {"meter": str(index + 1)}
    measures: list[
        tuple[str, SensorDeviceClass | None, str | None, Callable[[MeterReading], float | None]]
    ] = [
        (
            "voltage_ab",
            SensorDeviceClass.VOLTAGE,
            UnitOfElectricPotential.VOLT,
            lambda m: m.voltage_ab,
        ),
        (
            "voltage_bc",
            SensorDeviceClass.VOLTAGE,
            UnitOfElectricPotential.VOLT,
            lambda m: m.voltage_bc,
        ),
        (
            "voltage_ca",
            SensorDeviceClass.VOLTAGE,
            UnitOfElectricPotential.VOLT,
            lambda m: m.voltage_ca,
        ),
        (
            "current_a",
            SensorDeviceClass.CURRENT,
            UnitOfElectricCurrent.AMPERE,
            lambda m: m.current_a,
        ),
        (
            "current_b",
            SensorDeviceClass.CURRENT,
            UnitOfElectricCurrent.AMPERE,
            lambda m: m.current_b,
        ),
        (
            "current_c",
            SensorDeviceClass.CURRENT,
            UnitOfElectricCurrent.AMPERE,
            lambda m: m.current_c,
        ),
        ("power_factor", SensorDeviceClass.POWER_FACTOR, None, lambda m: m.power_factor),
        ("frequency", SensorDeviceClass.FREQUENCY, UnitOfFrequency.HERTZ, lambda m: m.frequency),
    ]
    return [
        ContainerSensorDescription(
            key=f"meter_{index + 1}_{name}",
            translation_key=f"meter_{name}",
            translation_placeholders=number,
            device_class=device_class,
            state_class=SensorStateClass.MEASUREMENT,
            native_unit_of_measurement=unit,
            entity_registry_enabled_default=False,
            entity_category=EntityCategory.DIAGNOSTIC,
            value_fn=_meter(index, get),
        )
        for name, device_class, unit, get in measures
    ]


def _pdu_power(index: int) -> Callable[[ContainerData], float | None]:
    def value(data: ContainerData) -> float | None:
        pdu: PduReading | None = data.reading.pdus[index] if data.reading else None
        return pdu.total_power if pdu else None

    return value


def pdu_sensor(index: int, used: bool) -> ContainerSensorDescription:
    """A PDU's total power; enabled by default where a mapped miner draws from it."""
    return ContainerSensorDescription(
        key=f"pdu_{index + 1}_power",
        translation_key="pdu_power",
        translation_placeholders={"pdu": str(index + 1)},
        device_class=SensorDeviceClass.POWER,
        state_class=SensorStateClass.MEASUREMENT,
        native_unit_of_measurement=UnitOfPower.KILO_WATT,
        entity_registry_enabled_default=used,
        value_fn=_pdu_power(index),
    )


class ContainerSensor(ContainerEntity, SensorEntity):
    """A container's measurement."""

    entity_description: ContainerSensorDescription

    @property
    def native_value(self) -> float | str | None:
        """The value from the latest read."""
        data = self.coordinator.data
        return self.entity_description.value_fn(data) if data else None


def container_sensors(coordinator: ContainerCoordinator) -> Iterable[ContainerSensor]:
    """Every sensor of one container."""
    async_remove_absent_entities(coordinator, SENSOR_DOMAIN, CONTAINER_SENSORS)
    descriptions = [d for d in CONTAINER_SENSORS if d.exists_fn(coordinator.client.kind)]
    for index in range(METERS):
        descriptions += meter_sensors(index)
    used = {pdu for pdu, _ in coordinator.sockets}
    descriptions += [pdu_sensor(index, index + 1 in used) for index in range(PDUS)]
    return [ContainerSensor(coordinator, description) for description in descriptions]
