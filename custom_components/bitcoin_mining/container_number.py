"""A container's cooling-fan thresholds: running speed, start and stop temperature."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from homeassistant.components.number import (
    NumberDeviceClass,
    NumberEntity,
    NumberEntityDescription,
    NumberMode,
)
from homeassistant.const import PERCENTAGE, EntityCategory, UnitOfTemperature

from .container import ContainerCoordinator
from .container_entity import ContainerEntity
from .container_switch import container_write
from .miningsite.containers import CduReading


@dataclass(frozen=True, kw_only=True)
class FanThresholdDescription(NumberEntityDescription):
    """A threshold: read from the CDU, written by its keyword of set_fan_thresholds."""

    value_fn: Callable[[CduReading], float | None]
    argument: str


FAN_THRESHOLDS: tuple[FanThresholdDescription, ...] = (
    FanThresholdDescription(
        key="fan_running_speed",
        translation_key="fan_running_speed",
        native_unit_of_measurement=PERCENTAGE,
        native_min_value=0.01,
        native_max_value=100,
        native_step=0.01,
        mode=NumberMode.BOX,
        entity_category=EntityCategory.CONFIG,
        value_fn=lambda cdu: cdu.fan_running_speed,
        argument="running_speed",
    ),
    FanThresholdDescription(
        key="fan_start_temperature",
        translation_key="fan_start_temperature",
        device_class=NumberDeviceClass.TEMPERATURE,
        native_unit_of_measurement=UnitOfTemperature.CELSIUS,
        native_min_value=0.01,
        native_max_value=60,
        native_step=0.01,
        mode=NumberMode.BOX,
        entity_category=EntityCategory.CONFIG,
        value_fn=lambda cdu: cdu.fan_start_temp_c,
        argument="start_temp",
    ),
    FanThresholdDescription(
        key="fan_stop_temperature",
        translation_key="fan_stop_temperature",
        device_class=NumberDeviceClass.TEMPERATURE,
        native_unit_of_measurement=UnitOfTemperature.CELSIUS,
        native_min_value=0.01,
        native_max_value=60,
        native_step=0.01,
        mode=NumberMode.BOX,
        entity_category=EntityCategory.CONFIG,
        value_fn=lambda cdu: cdu.fan_stop_temp_c,
        argument="stop_temp",
    ),
)


class FanThresholdNumber(ContainerEntity, NumberEntity):
    """One cooling-fan threshold, confirmed by reading it back."""

    entity_description: FanThresholdDescription

    @property
    def native_value(self) -> float | None:
        """The threshold the container holds (unknown while the CDU does not answer)."""
        cdu = self.reading.cdu if self.reading else None
        return self.entity_description.value_fn(cdu) if cdu else None

    async def async_set_native_value(self, value: float) -> None:
        """Write the threshold (0 is never written: the container takes it as unset)."""
        arguments: dict[str, Any] = {self.entity_description.argument: value}
        what = f"{self.entity_description.key} {value}"
        client = self.coordinator.client
        await container_write(self.coordinator, what, client.set_fan_thresholds(**arguments))


def container_numbers(coordinator: ContainerCoordinator) -> Iterable[NumberEntity]:
    """The fan thresholds of one container."""
    return [FanThresholdNumber(coordinator, description) for description in FAN_THRESHOLDS]
