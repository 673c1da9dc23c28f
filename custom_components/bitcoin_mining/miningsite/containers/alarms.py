"""A container's alarms: raw errors and thresholds in, alarms raised and cleared out (pure).

Every raw error the container reports becomes an alarm with a severity (the upstream
worker's default table, overridable; an unknown name is `high`). On top, the threshold
alarms upstream configured and never evaluated: inlet water too cold, in the warm or the
hot band, loop pressures out of range. Each threshold has a hysteresis: an alarm raised at
a limit clears only once the value is back past the limit by the hysteresis, so a value
resting on the edge does not flap. An unknown value (a unit that did not answer, a reading
out of physical range) neither raises nor clears anything: unknown is not evidence.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from enum import IntEnum
import math
from types import MappingProxyType
from typing import Any

from . import registers
from .models import ContainerReading


class Severity(IntEnum):
    """How bad an alarm is; a container's severity is its worst active alarm's."""

    NONE = 0
    WARNING = 1
    MEDIUM = 2
    HIGH = 3
    CRITICAL = 4

    @property
    def label(self) -> str:
        """The name automations and the UI use: none, warning, medium, high, critical."""
        return self.name.lower()

    @classmethod
    def parse(cls, text: str) -> Severity:
        """A severity from its label; a clear ValueError for anything else."""
        try:
            return cls[text.strip().upper()]
        except KeyError:
            names = ", ".join(s.label for s in cls)
            raise ValueError(f"unknown severity {text!r} (one of {names})") from None


# Alarms of the environment unit (not part of the CDU's error bitmap).
SMOKE = "smoke_detected"
WATER_INGRESS = "water_ingress_detected"
# Threshold alarms (upstream names where upstream had one).
INLET_TOO_COLD = "water_min_inlet_temp_warn"
INLET_WARM = "water_inlet_temp_warm"
INLET_HOT = "water_inlet_temp_hot"
PRESSURE_LOW = "{}_pressure_low"
PRESSURE_HIGH = "{}_pressure_high"
# The loop pressures checked against the range, by the names AlarmInputs uses.
PRESSURES: tuple[str, ...] = ("unit_inlet", "unit_outlet", "pump_inlet", "pump_outlet")

# Every raw error the client reports (the system-error bitmap, then the general faults),
# each an alarm of its own.
RAW_ERRORS = registers.RAW_ERRORS

_CRITICAL = (
    "circulating_pump_fault",
    "low_inlet_pressure_circ_pump",
    "low_outlet_pressure_circ_pump",
    "circ_pump_inverter_fault",
    "bypass_valve_fault",
    "makeup_water_pump_fault",
    "water_immersion_alarm",
    "circ_pump_high_inlet_pressure",
    SMOKE,
    WATER_INGRESS,
)
_HIGH = (
    "fan_fault",
    "high_outlet_pressure_circ_pump",
    "high_pressure_diff_filter",
    "small_inlet_outlet_pressure_diff",
    "large_inlet_outlet_pressure_diff",
    "high_inlet_temp_unit",
    "high_outlet_temp_unit",
    "small_temp_dew_point_diff_inlet_unit",
    "circ_pump_inlet_pressure_sensor_fault",
    "circ_pump_outlet_pressure_sensor_fault",
    "unit_inlet_temp_sensor_fault",
    "unit_outlet_temp_sensor_fault",
    "unit_inlet_pressure_sensor_fault",
    "unit_outlet_pressure_sensor_fault",
    "filter_front_pressure_sensor_fault",
    "filter_rear_pressure_sensor_fault",
    "temp_sensor_chilled_water_supply_fault",
    "pressure_sensor_chilled_water_supply_fault",
    INLET_HOT,
    *(PRESSURE_LOW.format(p) for p in PRESSURES),
    *(PRESSURE_HIGH.format(p) for p in PRESSURES),
)
_MEDIUM = (
    INLET_TOO_COLD,
    "power_fault",
    "outdoor_ambient_temp_sensor_fault",
    "indoor_temp_humidity_sensor_fault",
)
# Upstream configured no severity for its hot-water alert; the warm band only derates.
_WARNING = (INLET_WARM,)

DEFAULT_SEVERITIES: Mapping[str, Severity] = MappingProxyType(
    dict.fromkeys(_CRITICAL, Severity.CRITICAL)
    | dict.fromkeys(_HIGH, Severity.HIGH)
    | dict.fromkeys(_MEDIUM, Severity.MEDIUM)
    | dict.fromkeys(_WARNING, Severity.WARNING)
)
# What a raw error nobody configured is worth (the upstream default).
UNKNOWN_SEVERITY = Severity.HIGH
# Critical alarms the site answers by stopping the container's miners at once.
EMERGENCY_ALARMS: frozenset[str] = frozenset(
    {SMOKE, WATER_INGRESS, "water_immersion_alarm", "circulating_pump_fault",
     "circ_pump_inverter_fault"}
)  # fmt: skip


# Every alarm a container can raise: its raw errors, its detectors, the threshold alarms.
ALARM_NAMES: tuple[str, ...] = (
    *RAW_ERRORS,
    SMOKE,
    WATER_INGRESS,
    INLET_TOO_COLD,
    INLET_WARM,
    INLET_HOT,
    *(name.format(p) for p in PRESSURES for name in (PRESSURE_LOW, PRESSURE_HIGH)),
)
# The severities an alarm may be given (none is the state of a container without alarms).
ALARM_SEVERITIES: tuple[Severity, ...] = tuple(s for s in Severity if s is not Severity.NONE)


class AlarmSettingsError(ValueError):
    """Alarm settings that cannot hold: `reason` says why, `field` which setting."""

    def __init__(self, reason: str, field_name: str, message: str) -> None:
        """Keep the reason (a stable code) and the setting with the message."""
        super().__init__(message)
        self.reason = reason
        self.field = field_name


@dataclass(frozen=True, slots=True, kw_only=True)
class AlarmSettings:
    """Limits and severities; the defaults are the fact sheet's (upstream config, UI bands)."""

    # Upstream's water_min_inlet_temp_warn ({temp: 20}); below it condensation threatens.
    inlet_min_c: float = 20.0
    # The UI's WARM and HOT bands for unit_inlet_temp_t2.
    inlet_warm_c: float = 37.0
    inlet_hot_c: float = 39.0
    temperature_hysteresis_c: float = 1.0
    # Loop pressures (bar): no vendor range is known; a hydro loop runs at 1.5-3 bar.
    pressure_min_bar: float = 0.5
    pressure_max_bar: float = 5.0
    pressure_hysteresis_bar: float = 0.1
    severities: Mapping[str, Severity] = field(default_factory=dict)

    def __post_init__(self) -> None:
        """Refuse limits that contradict each other (they would raise and clear at once)."""
        for name in THRESHOLDS:
            if not math.isfinite(getattr(self, name)):
                raise AlarmSettingsError("not_a_number", name, f"{name} is not a number")
        for name in ("temperature_hysteresis_c", "pressure_hysteresis_bar"):
            if getattr(self, name) < 0:
                raise AlarmSettingsError(
                    "negative_hysteresis", name, "a hysteresis cannot be negative"
                )
        if not self.inlet_min_c < self.inlet_warm_c:
            raise AlarmSettingsError(
                "inlet_min_not_below_warm",
                "inlet_min_c",
                "inlet limits must rise: minimum < warm <= hot",
            )
        if not self.inlet_warm_c <= self.inlet_hot_c:
            raise AlarmSettingsError(
                "inlet_warm_above_hot",
                "inlet_warm_c",
                "inlet limits must rise: minimum < warm <= hot",
            )
        if not self.pressure_min_bar < self.pressure_max_bar:
            raise AlarmSettingsError(
                "pressure_min_not_below_max",
                "pressure_min_bar",
                "the pressure minimum must be below the maximum",
            )

    def severity(self, name: str) -> Severity:
        """An alarm's severity: the override, else the default table, else high."""
        return self.severities.get(name, DEFAULT_SEVERITIES.get(name, UNKNOWN_SEVERITY))

    @classmethod
    def from_overrides(cls, overrides: Mapping[str, Any]) -> AlarmSettings:
        """Settings from what differs from the defaults (as `overrides()` gives it).

        Raises AlarmSettingsError for an unknown key, a value that is not a number or
        a severity, or limits that contradict each other.
        """
        limits: dict[str, float] = {}
        for key, value in overrides.items():
            if key == "severities":
                continue
            if key not in THRESHOLDS:
                raise AlarmSettingsError("unknown_setting", key, f"no alarm setting {key!r}")
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise AlarmSettingsError("not_a_number", key, f"{key} is not a number: {value!r}")
            limits[key] = float(value)
        severities: dict[str, Severity] = {}
        for name, label in dict(overrides.get("severities") or {}).items():
            try:
                severity = Severity.parse(str(label))
            except ValueError as err:
                raise AlarmSettingsError("unknown_severity", name, str(err)) from None
            if severity is Severity.NONE:
                raise AlarmSettingsError("unknown_severity", name, "an alarm cannot be none")
            severities[name] = severity
        return cls(**limits, severities=MappingProxyType(severities))

    def overrides(self) -> dict[str, Any]:
        """What differs from the defaults: the limits, and severities as labels (JSON-ready)."""
        defaults = AlarmSettings()
        changed: dict[str, Any] = {
            name: getattr(self, name)
            for name in THRESHOLDS
            if getattr(self, name) != getattr(defaults, name)
        }
        severities = {
            name: severity.label
            for name, severity in sorted(self.severities.items())
            if severity is not defaults.severity(name)
        }
        if severities:
            changed["severities"] = severities
        return changed

    def as_dict(self) -> dict[str, Any]:
        """Every limit and every alarm's severity in effect (for diagnostics)."""
        return {
            **{name: getattr(self, name) for name in THRESHOLDS},
            "severities": {name: self.severity(name).label for name in ALARM_NAMES},
        }


# The numeric limits of AlarmSettings (°C and bar), in the order the UI shows them.
THRESHOLDS: tuple[str, ...] = tuple(f.name for f in fields(AlarmSettings) if f.name != "severities")


@dataclass(frozen=True, slots=True, kw_only=True)
class AlarmInputs:
    """What one read tells the alarms; None = unknown (that unit did not answer sensibly)."""

    raw_errors: frozenset[str] | None
    smoke: bool | None = None
    water_ingress: bool | None = None
    inlet_temp_c: float | None = None
    pressures_bar: Mapping[str, float | None] = field(default_factory=dict)
    # Whether the cooling runs: a stopped container's water is cold by design.
    running: bool | None = None


@dataclass(frozen=True, slots=True)
class Alarm:
    """One alarm: its name, severity, a description and the value that raised it."""

    name: str
    severity: Severity
    description: str
    value: float | bool | None = None


@dataclass(frozen=True, slots=True)
class AlarmState:
    """The active alarms of one container, by name."""

    active: Mapping[str, Alarm] = field(default_factory=lambda: MappingProxyType({}))

    @property
    def severity(self) -> Severity:
        """The worst active alarm's severity (none without alarms)."""
        return max((alarm.severity for alarm in self.active.values()), default=Severity.NONE)

    @property
    def emergency(self) -> bool:
        """Whether an alarm is active that stops the container's miners at once."""
        return any(name in EMERGENCY_ALARMS for name in self.active)


def _threshold(
    active: bool, value: float | None, limit: float, hysteresis: float, *, above: bool
) -> bool:
    """Whether a threshold alarm is active after this value (unknown keeps it as it was)."""
    if value is None:
        return active
    if above:
        return value >= limit - hysteresis if active else value >= limit
    return value <= limit + hysteresis if active else value < limit


def _describe(name: str, value: float | bool | None, settings: AlarmSettings) -> str:
    """A short English description (the UI translates by name; this is for logs and events)."""
    if name == INLET_TOO_COLD:
        return f"inlet water {value} °C below {settings.inlet_min_c} °C"
    if name == INLET_WARM:
        return f"inlet water {value} °C in the warm band (from {settings.inlet_warm_c} °C)"
    if name == INLET_HOT:
        return f"inlet water {value} °C in the hot band (from {settings.inlet_hot_c} °C)"
    if name.endswith("_pressure_low"):
        return f"{name.removesuffix('_low')} {value} bar below {settings.pressure_min_bar} bar"
    if name.endswith("_pressure_high"):
        return f"{name.removesuffix('_high')} {value} bar above {settings.pressure_max_bar} bar"
    if name in DEFAULT_SEVERITIES:
        return name.replace("_", " ")
    return "unknown_error"


def _wanted(
    previous: AlarmState, inputs: AlarmInputs, settings: AlarmSettings
) -> dict[str, float | bool | None]:
    """The alarms that should be active after this read, with the value behind each."""
    was = previous.active
    wanted: dict[str, float | bool | None] = {}
    # Raw errors: what the container says, unless its error registers were not read.
    if inputs.raw_errors is None:
        wanted |= {n: a.value for n, a in was.items() if _is_raw(n)}
    else:
        wanted |= dict.fromkeys(inputs.raw_errors, True)
    for name, flag in ((SMOKE, inputs.smoke), (WATER_INGRESS, inputs.water_ingress)):
        if flag or (flag is None and name in was):
            wanted[name] = True
    temp = inputs.inlet_temp_c
    hyst = settings.temperature_hysteresis_c
    checks: list[tuple[str, float | None, float, float, bool]] = [
        (INLET_WARM, temp, settings.inlet_warm_c, hyst, True),
        (INLET_HOT, temp, settings.inlet_hot_c, hyst, True),
    ]
    # Cold water in a stopped container is expected; hot water never is.
    if inputs.running is not False:
        checks.append((INLET_TOO_COLD, temp, settings.inlet_min_c, hyst, False))
    for pressure in PRESSURES:
        value = inputs.pressures_bar.get(pressure)
        physt = settings.pressure_hysteresis_bar
        checks.append(
            (PRESSURE_LOW.format(pressure), value, settings.pressure_min_bar, physt, False)
        )
        checks.append(
            (PRESSURE_HIGH.format(pressure), value, settings.pressure_max_bar, physt, True)
        )
    for name, value, limit, hysteresis, above in checks:
        if _threshold(name in was, value, limit, hysteresis, above=above):
            wanted[name] = value if value is not None else was[name].value
    return wanted


def _is_raw(name: str) -> bool:
    """Whether an alarm comes from the container's error registers (not a threshold)."""
    return name not in _THRESHOLD_OR_ENV


_THRESHOLD_OR_ENV = frozenset(
    {SMOKE, WATER_INGRESS, INLET_TOO_COLD, INLET_WARM, INLET_HOT}
    | {PRESSURE_LOW.format(p) for p in PRESSURES}
    | {PRESSURE_HIGH.format(p) for p in PRESSURES}
)


def evaluate(
    previous: AlarmState, inputs: AlarmInputs, settings: AlarmSettings
) -> tuple[AlarmState, tuple[Alarm, ...], tuple[Alarm, ...]]:
    """The new state, the alarms raised by this read and those it cleared (sorted by name)."""
    wanted = _wanted(previous, inputs, settings)
    active: dict[str, Alarm] = {}
    raised: list[Alarm] = []
    for name in sorted(wanted):
        old = previous.active.get(name)
        if old is not None:
            # Still active: the description and severity it was raised with stand.
            active[name] = old
            continue
        value = wanted[name]
        alarm = Alarm(name, settings.severity(name), _describe(name, value, settings), value)
        active[name] = alarm
        raised.append(alarm)
    cleared = tuple(previous.active[n] for n in sorted(previous.active) if n not in wanted)
    return AlarmState(MappingProxyType(active)), tuple(raised), cleared


def alarm_inputs(reading: ContainerReading | None) -> AlarmInputs:
    """What a container's read tells the alarms (None: the container did not answer at all)."""
    if reading is None:
        return AlarmInputs(raw_errors=None)
    cdu, env = reading.cdu, reading.environment
    pdus = [pdu for pdu in reading.pdus if pdu is not None]
    smoke = water = None
    if env is not None:
        # A PDU's own detectors count as much as the container's.
        smoke = env.smoke or any(any(pdu.smoke_alarms) for pdu in pdus)
        water = env.water_ingress or any(any(pdu.water_ingress_alarms) for pdu in pdus)
    if cdu is None:
        return AlarmInputs(raw_errors=None, smoke=smoke, water_ingress=water)
    raw = set(reading.raw_errors)
    if cdu.pump_fault:
        # Kehua's pump status register says error (200) without a bit in the bitmap.
        raw.add("circulating_pump_fault")
    return AlarmInputs(
        raw_errors=frozenset(raw),
        smoke=smoke,
        water_ingress=water,
        inlet_temp_c=cdu.inlet_temp_c,
        pressures_bar={
            "unit_inlet": cdu.inlet_pressure_bar,
            "unit_outlet": cdu.outlet_pressure_bar,
            "pump_inlet": cdu.pump_inlet_pressure_bar,
            "pump_outlet": cdu.pump_outlet_pressure_bar,
        },
        running=cdu.pump_running,
    )
