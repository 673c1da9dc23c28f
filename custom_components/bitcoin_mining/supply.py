"""Supply power from Home Assistant sensors (MQTT INA219 boards, ESPHome, any power sensor)."""

from __future__ import annotations

from dataclasses import dataclass
import math

from homeassistant.const import UnitOfElectricCurrent, UnitOfElectricPotential, UnitOfPower
from homeassistant.core import HomeAssistant, State
from homeassistant.util import dt as dt_util
from homeassistant.util.unit_conversion import (
    ElectricCurrentConverter,
    ElectricPotentialConverter,
    PowerConverter,
)


@dataclass(frozen=True, slots=True)
class SupplyReading:
    """What the supply gives now; power is None when any sensor cannot be trusted."""

    power_w: float | None
    problem: str | None = None


@dataclass(frozen=True, slots=True)
class SupplySensors:
    """The entities that measure the supply."""

    power_entities: tuple[str, ...] = ()
    voltage_entity: str | None = None
    current_entity: str | None = None

    @property
    def entity_ids(self) -> list[str]:
        """Every entity the supply is computed from."""
        pair = [e for e in (self.voltage_entity, self.current_entity) if e]
        return [*self.power_entities, *pair]

    def read(self, hass: HomeAssistant, stale_after_s: float) -> SupplyReading:
        """Sum the supply; unknown when any sensor is unavailable, stale or not a number.

        Unknown supply is never guessed: the allocation starts nothing on it.
        """
        total = 0.0
        for entity_id in self.power_entities:
            watts = _value(hass, entity_id, PowerConverter, UnitOfPower.WATT, stale_after_s)
            if isinstance(watts, str):
                return SupplyReading(None, watts)
            total += watts
        if self.voltage_entity and self.current_entity:
            volts = _value(
                hass,
                self.voltage_entity,
                ElectricPotentialConverter,
                UnitOfElectricPotential.VOLT,
                stale_after_s,
            )
            if isinstance(volts, str):
                return SupplyReading(None, volts)
            amps = _value(
                hass,
                self.current_entity,
                ElectricCurrentConverter,
                UnitOfElectricCurrent.AMPERE,
                stale_after_s,
            )
            if isinstance(amps, str):
                return SupplyReading(None, amps)
            total += volts * amps
        return SupplyReading(max(total, 0.0))


def _value(
    hass: HomeAssistant,
    entity_id: str,
    converter: type[PowerConverter]
    | type[ElectricPotentialConverter]
    | type[ElectricCurrentConverter],
    target_unit: str,
    stale_after_s: float,
) -> float | str:
    """The sensor's value in target_unit, or a short reason why it cannot be used."""
    state: State | None = hass.states.get(entity_id)
    if state is None:
        return f"{entity_id}: missing"
    try:
        value = float(state.state)
    except ValueError:
        return f"{entity_id}: {state.state}"
    if not math.isfinite(value):
        return f"{entity_id}: not finite"
    # Sensors that report only on change keep last_updated old; last_reported moves on every report.
    age = (dt_util.utcnow() - state.last_reported).total_seconds()
    if age > stale_after_s:
        return f"{entity_id}: stale for {age:.0f} s"
    unit = state.attributes.get("unit_of_measurement")
    if unit not in converter.VALID_UNITS:
        return f"{entity_id}: unexpected unit {unit!r}"
    return converter.convert(value, unit, target_unit)
