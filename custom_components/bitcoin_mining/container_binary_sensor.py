"""A container's binary sensors: smoke, water ingress, pump fault, every system error."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from homeassistant.components.binary_sensor import BinarySensorEntity, BinarySensorEntityDescription
from homeassistant.const import EntityCategory

from .compat import BinarySensorDeviceClass
from .container import ContainerCoordinator
from .container_entity import ContainerEntity
from .miningsite.containers import ContainerReading
from .miningsite.containers.alarms import RAW_ERRORS


@dataclass(frozen=True, kw_only=True)
class ContainerBinarySensorDescription(BinarySensorEntityDescription):
    """A container binary sensor: on, off or unknown from the latest reading."""

    value_fn: Callable[[ContainerReading], bool | None]


def _smoke(reading: ContainerReading) -> bool | None:
    env = reading.environment
    return env.smoke if env else None


def _water(reading: ContainerReading) -> bool | None:
    env = reading.environment
    return env.water_ingress if env else None


def _pump_fault(reading: ContainerReading) -> bool | None:
    cdu = reading.cdu
    if cdu is None:
        return None
    return cdu.pump_fault or bool(
        reading.raw_errors & {"circulating_pump_fault", "circ_pump_inverter_fault"}
    )


def _raw(name: str) -> Callable[[ContainerReading], bool | None]:
    return lambda reading: name in reading.raw_errors if reading.cdu else None


BINARY_SENSORS: tuple[ContainerBinarySensorDescription, ...] = (
    ContainerBinarySensorDescription(
        key="smoke", device_class=BinarySensorDeviceClass.SMOKE, value_fn=_smoke
    ),
    ContainerBinarySensorDescription(
        key="water_ingress",
        translation_key="water_ingress",
        device_class=BinarySensorDeviceClass.MOISTURE,
        value_fn=_water,
    ),
    ContainerBinarySensorDescription(
        key="pump_fault",
        translation_key="pump_fault",
        device_class=BinarySensorDeviceClass.PROBLEM,
        value_fn=_pump_fault,
    ),
    ContainerBinarySensorDescription(
        key="pump_running",
        translation_key="pump_running",
        device_class=BinarySensorDeviceClass.RUNNING,
        value_fn=lambda r: r.cdu.pump_running if r.cdu else None,
    ),
    *(
        ContainerBinarySensorDescription(
            key=f"error_{name}",
            translation_key="system_error",
            translation_placeholders={"error": name.replace("_", " ")},
            device_class=BinarySensorDeviceClass.PROBLEM,
            entity_category=EntityCategory.DIAGNOSTIC,
            value_fn=_raw(name),
        )
        for name in RAW_ERRORS
    ),
)


class ContainerBinarySensor(ContainerEntity, BinarySensorEntity):
    """A container's detector or error flag."""

    entity_description: ContainerBinarySensorDescription

    @property
    def is_on(self) -> bool | None:
        """On, off, or unknown while the unit behind it did not answer."""
        reading = self.reading
        return self.entity_description.value_fn(reading) if reading else None


def container_binary_sensors(coordinator: ContainerCoordinator) -> Iterable[ContainerBinarySensor]:
    """Every binary sensor of one container."""
    return [ContainerBinarySensor(coordinator, d) for d in BINARY_SENSORS]
