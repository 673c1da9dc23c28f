"""What one read of a MicroBT container returns: frozen, scaled, None where unknown.

Every number is already scaled to its unit (°C, bar, V, A, kW, Hz, %); a value the
container did not give, or gave outside its physical range, is None and the reason is in
ContainerReading.unit_errors.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum


class ContainerKind(StrEnum):
    """The container's cooling model: the register maps differ in scales and swapped registers."""

    KEHUA = "kehua"
    WONDERINT = "wonderint"


class ContainerStatus(StrEnum):
    """The container's state, derived as the upstream worker does."""

    RUNNING = "running"  # no raw error and the circulation pump runs
    STOPPED = "stopped"  # no raw error and the pump does not run
    ERROR = "error"  # a raw error (system-error bit or general fault) is set


@dataclass(frozen=True, slots=True)
class MeterReading:
    """One of the four power meters (units 4-7)."""

    status: int
    # The meter's 16-bit register of hundredths of a kWh: it wraps at 655.36 kWh, so a
    # caller that wants a total must add the wraps itself.
    energy_kwh: float
    voltage_ab: float | None
    voltage_bc: float | None
    voltage_ca: float | None
    current_a: float | None
    current_b: float | None
    current_c: float | None
    power_kw: float | None
    apparent_power: float | None  # kVA
    power_factor: float | None
    frequency: float | None  # Hz


@dataclass(frozen=True, slots=True)
class AmbientReading:
    """The ambient sensor (unit 2, gtemp)."""

    status: int
    temperature_c: float | None
    humidity: float | None  # %


@dataclass(frozen=True, slots=True)
class EnvironmentReading:
    """The environment detectors (unit 3, henv)."""

    status: int
    smoke: bool
    water_ingress: bool


@dataclass(frozen=True, slots=True)
class CduReading:
    """The cooling distribution unit (unit 1, fcdu)."""

    protocol_version: float
    inlet_temp_c: float | None  # unit inlet water T2
    outlet_temp_c: float | None  # unit outlet water T3 (Wonderint only)
    cooling_temp_c: float | None  # T1
    inlet_pressure_bar: float | None  # unit inlet P2
    outlet_pressure_bar: float | None  # unit outlet P3
    pump_inlet_pressure_bar: float | None  # circulation pump inlet P1
    pump_outlet_pressure_bar: float | None  # circulation pump outlet P5
    pump_speed: float | None  # %
    pump_running: bool
    pump_fault: bool  # Kehua's pump status says error (200); Wonderint has no such value
    cycle_pump_control: int
    filter_pressure_difference: float | None  # bar
    dew_point_c: float | None
    cooling_system_status: float | None  # Kehua only
    system_main_control: bool  # reg 601: the cooling system (the container) is switched on
    circulation_pump_auto: bool
    drain_valve_auto: bool
    cooling_fan_auto: bool
    makeup_water_pump_auto: bool
    cooling_fan_control: int
    makeup_water_pump_control: bool
    buzzer_alarm: bool
    fan_running_speed: float | None  # %
    fan_start_temp_c: float | None
    fan_stop_temp_c: float | None


@dataclass(frozen=True, slots=True)
class PduReading:
    """One of the twelve PDUs (units 9-20)."""

    status: int
    buzzer: int
    frequency: float | None  # Hz
    voltage_ab: float | None
    voltage_bc: float | None
    voltage_ca: float | None
    current_a: float | None
    current_b: float | None
    current_c: float | None
    total_power: float | None  # kW
    # Socket 1..20 at index 0..19: True on, False off, None for a state that is neither.
    sockets: tuple[bool | None, ...]
    access_control_alarms: tuple[bool, ...]  # 8
    infrared_alarms: tuple[bool, ...]  # 6
    water_ingress_alarms: tuple[bool, ...]  # 8
    smoke_alarms: tuple[bool, ...]  # 8
    high_wind_speed_alarm: int
    low_wind_speed_alarm: int


@dataclass(frozen=True, slots=True)
class DiagnosticsReading:
    """The container controller's own diagnostics (unit 8, diag)."""

    communicate_status: int
    software_version: int
    pcb_version: int
    hardware_version: int
    year: int
    month: int
    day: int
    cpu_utilization: int  # %
    disk_usage: int  # %
    memory_utilization: int  # %
    eth_speed: int
    eth_upstream_traffic: int
    eth_downstream_traffic: int


@dataclass(frozen=True, slots=True)
class ContainerReading:
    """One full read of a container; a unit that failed leaves only its own block None."""

    kind: ContainerKind
    # None when the CDU (which carries the errors and the pump state) could not be read.
    status: ContainerStatus | None
    # Sum of the four meters' active power; None unless all four were read.
    power_w: float | None
    meters: tuple[MeterReading | None, ...]  # 4
    ambient: AmbientReading | None
    environment: EnvironmentReading | None
    cdu: CduReading | None
    pdus: tuple[PduReading | None, ...]  # 12
    diagnostics: DiagnosticsReading | None
    # System-error bitmap names and general faults (regs 96-100) that are set.
    raw_errors: frozenset[str]
    # Why something is unknown: "pdu03" -> the unit's failure; "fcdu.inlet_temp_c" -> a
    # value outside its physical range.
    unit_errors: dict[str, str] = field(default_factory=dict)
