"""Raw container registers into typed readings (pure: no I/O).

Each decoder takes one unit's registers as {reg N (1-based): raw 0..65535} and returns its
reading plus the values it refused: a value outside its physical range reads None, and
`issues["<unit>.<field>"]` says why.
"""

from __future__ import annotations

from collections.abc import Mapping

from . import registers as r
from .models import (
    AmbientReading,
    CduReading,
    ContainerKind,
    ContainerStatus,
    DiagnosticsReading,
    EnvironmentReading,
    MeterReading,
    PduReading,
)

Registers = Mapping[int, int]
Issues = dict[str, str]


def int16(raw: int) -> int:
    """A register as a signed 16-bit value."""
    return raw - 0x10000 if raw & 0x8000 else raw


class _Unit:
    """Reads fields of one unit's registers and collects the out-of-range ones."""

    def __init__(self, name: str, regs: Registers) -> None:
        self.name = name
        self.regs = regs
        self.issues: Issues = {}

    def signed(self, reg: int) -> int:
        return int16(self.regs[reg])

    def flag(self, reg: int) -> bool:
        return self.regs[reg] == 1

    def flags(self, first: int, count: int) -> tuple[bool, ...]:
        return tuple(self.regs[reg] == 1 for reg in range(first, first + count))

    def value(
        self,
        field: str,
        reg: int,
        scale: float,
        bounds: tuple[float, float],
        *,
        unsigned: bool = False,
    ) -> float | None:
        """The scaled register, or None (with the reason) when outside its physical range."""
        raw = self.regs[reg]
        value = (raw if unsigned else int16(raw)) / scale
        low, high = bounds
        if low <= value <= high:
            return value
        self.issues[f"{self.name}.{field}"] = (
            f"{value:g} is outside {low:g}..{high:g} (reg {reg} = {raw}): unknown"
        )
        return None


def decode_meter(index: int, regs: Registers) -> tuple[MeterReading, Issues]:
    """Power meter index 0..3 (units 4-7); every value but the status is unsigned."""
    unit = _Unit(r.unit_name(r.meter_unit(index)), regs)
    volts = [
        unit.value(
            f"voltage_{phase}", r.REG_METER_VOLTAGE_AB + offset, 100, r.VOLTAGE_V, unsigned=True
        )
        for offset, phase in enumerate(("ab", "bc", "ca"))
    ]
    amps = [
        unit.value(
            f"current_{phase}", r.REG_METER_CURRENT_A + offset, 100, r.CURRENT_A, unsigned=True
        )
        for offset, phase in enumerate("abc")
    ]
    reading = MeterReading(
        status=unit.signed(r.REG_STATUS),
        energy_kwh=regs[r.REG_ENERGY] / 100,
        voltage_ab=volts[0],
        voltage_bc=volts[1],
        voltage_ca=volts[2],
        current_a=amps[0],
        current_b=amps[1],
        current_c=amps[2],
        power_kw=unit.value("power_kw", r.REG_METER_POWER, 100, r.POWER_KW, unsigned=True),
        apparent_power=unit.value(
            "apparent_power", r.REG_METER_APPARENT_POWER, 100, r.POWER_KW, unsigned=True
        ),
        power_factor=unit.value(
            "power_factor", r.REG_METER_POWER_FACTOR, 100, r.POWER_FACTOR, unsigned=True
        ),
        frequency=unit.value(
            "frequency", r.REG_METER_FREQUENCY, 100, r.FREQUENCY_HZ, unsigned=True
        ),
    )
    return reading, unit.issues


def _scale(kind: ContainerKind) -> int:
    return 100 if kind is ContainerKind.KEHUA else 10


def decode_ambient(kind: ContainerKind, regs: Registers) -> tuple[AmbientReading, Issues]:
    """The ambient sensor (unit 2): Kehua ÷100, Wonderint ÷10."""
    unit = _Unit(r.unit_name(r.UNIT_GTEMP), regs)
    scale = _scale(kind)
    reading = AmbientReading(
        status=unit.signed(r.REG_STATUS),
        temperature_c=unit.value("temperature_c", r.REG_TEMPERATURE, scale, r.AMBIENT_TEMP_C),
        humidity=unit.value("humidity", r.REG_HUMIDITY, scale, r.HUMIDITY_PCT),
    )
    return reading, unit.issues


def decode_environment(regs: Registers) -> EnvironmentReading:
    """The environment detectors (unit 3): 1 = alarm."""
    unit = _Unit(r.unit_name(r.UNIT_HENV), regs)
    return EnvironmentReading(
        status=unit.signed(r.REG_STATUS),
        smoke=unit.flag(r.REG_SMOKE),
        water_ingress=unit.flag(r.REG_WATER_INGRESS),
    )


def decode_cdu(
    kind: ContainerKind, regs: Registers, fan_threshold_registers: tuple[int, int, int]
) -> tuple[CduReading, Issues]:
    """The CDU (unit 1); regs 208 and 606 swap meanings between the kinds."""
    unit = _Unit(r.unit_name(r.UNIT_FCDU), regs)
    kehua = kind is ContainerKind.KEHUA
    if kehua:
        pump_status = regs[r.REG_208]
        pump_running = pump_status == r.KEHUA_PUMP_RUNNING
        pump_fault = pump_status == r.KEHUA_PUMP_ERROR
        cycle_pump_control = unit.signed(r.REG_606)
        outlet = None
        cooling_status = unit.value(
            "cooling_system_status", r.REG_COOLING_STATUS, 100, r.COOLING_STATUS
        )
    else:
        pump_running = regs[r.REG_606] == 1
        pump_fault = False
        cycle_pump_control = unit.signed(r.REG_208)
        outlet = unit.value("outlet_temp_c", r.REG_OUTLET_T3, 100, r.WATER_TEMP_C)
        cooling_status = None
    speed_reg, start_reg, stop_reg = fan_threshold_registers
    reading = CduReading(
        protocol_version=unit.signed(r.REG_PROTOCOL_VERSION) / 10,
        inlet_temp_c=unit.value("inlet_temp_c", r.REG_INLET_T2, 100, r.WATER_TEMP_C),
        outlet_temp_c=outlet,
        cooling_temp_c=unit.value("cooling_temp_c", r.REG_COOLING_T1, 100, r.WATER_TEMP_C),
        inlet_pressure_bar=unit.value("inlet_pressure_bar", r.REG_INLET_P2, 100, r.PRESSURE_BAR),
        outlet_pressure_bar=unit.value("outlet_pressure_bar", r.REG_OUTLET_P3, 100, r.PRESSURE_BAR),
        pump_inlet_pressure_bar=unit.value(
            "pump_inlet_pressure_bar", r.REG_PUMP_INLET_P1, 100, r.PRESSURE_BAR
        ),
        pump_outlet_pressure_bar=unit.value(
            "pump_outlet_pressure_bar", r.REG_PUMP_OUTLET_P5, 100, r.PRESSURE_BAR
        ),
        pump_speed=unit.value("pump_speed", r.REG_PUMP_SPEED, 100, r.PERCENT),
        pump_running=pump_running,
        pump_fault=pump_fault,
        cycle_pump_control=cycle_pump_control,
        filter_pressure_difference=unit.value(
            "filter_pressure_difference", r.REG_FILTER_DP, 100, r.FILTER_DP_BAR
        ),
        dew_point_c=unit.value("dew_point_c", r.REG_DEW_POINT, 100, r.DEW_POINT_C),
        cooling_system_status=cooling_status,
        system_main_control=unit.flag(r.REG_MAIN_CONTROL),
        circulation_pump_auto=unit.flag(r.REG_PUMP_AUTO),
        drain_valve_auto=unit.flag(r.REG_DRAIN_VALVE_AUTO),
        cooling_fan_auto=unit.flag(r.REG_FAN_AUTO),
        makeup_water_pump_auto=unit.flag(r.REG_MAKEUP_PUMP_AUTO),
        cooling_fan_control=unit.signed(r.REG_FAN_CONTROL),
        makeup_water_pump_control=unit.flag(r.REG_MAKEUP_PUMP_CONTROL),
        buzzer_alarm=unit.flag(r.REG_BUZZER),
        fan_running_speed=unit.value("fan_running_speed", speed_reg, 100, r.PERCENT),
        fan_start_temp_c=unit.value("fan_start_temp_c", start_reg, 100, r.FAN_TEMP_C),
        fan_stop_temp_c=unit.value("fan_stop_temp_c", stop_reg, 100, r.FAN_TEMP_C),
    )
    return reading, unit.issues


def system_errors(regs: Registers) -> frozenset[str]:
    """The system-error bitmap (regs 291..300), bits numbered MSB-first across the bytes."""
    data = b"".join(
        regs[reg].to_bytes(2, "big")
        for reg in range(r.REG_SYSTEM_ERRORS, r.REG_SYSTEM_ERRORS + r.SYSTEM_ERROR_REGISTERS)
    )
    return frozenset(
        name for bit, name in enumerate(r.SYSTEM_ERRORS) if data[bit // 8] & (0x80 >> bit % 8)
    )


def general_faults(regs: Registers) -> frozenset[str]:
    """The general faults, one register each (regs 96-100, 1 = set)."""
    return frozenset(name for reg, name in r.GENERAL_FAULTS.items() if regs[reg] == 1)


def container_status(cdu: CduReading, raw_errors: frozenset[str]) -> ContainerStatus:
    """Error with any raw error; otherwise running while the pump runs; otherwise stopped."""
    if raw_errors:
        return ContainerStatus.ERROR
    return ContainerStatus.RUNNING if cdu.pump_running else ContainerStatus.STOPPED


def decode_pdu(pdu: int, regs: Registers) -> tuple[PduReading, Issues]:
    """PDU 1..12 (units 9-20); voltages are unsigned (upstream's int16 wraps above 327.67 V)."""
    unit = _Unit(r.unit_name(r.pdu_unit(pdu)), regs)
    sockets: list[bool | None] = []
    for socket in range(1, r.SOCKETS_PER_PDU + 1):
        state = regs[r.socket_state_reg(socket)]
        if state in (r.SOCKET_ON, r.SOCKET_OFF):
            sockets.append(state == r.SOCKET_ON)
        else:
            sockets.append(None)
            unit.issues[f"{unit.name}.socket_{socket}"] = (
                f"state {state} is neither 1 (on) nor 2 (off): unknown"
            )
    voltage = r.REG_PDU_VOLTAGE_AB
    current = r.REG_PDU_CURRENT_A
    reading = PduReading(
        status=unit.signed(r.REG_STATUS),
        buzzer=unit.signed(r.REG_PDU_BUZZER),
        frequency=unit.value("frequency", r.REG_PDU_FREQUENCY, 100, r.FREQUENCY_HZ),
        voltage_ab=unit.value("voltage_ab", voltage, 100, r.VOLTAGE_V, unsigned=True),
        voltage_ca=unit.value("voltage_ca", voltage + 1, 100, r.VOLTAGE_V, unsigned=True),
        voltage_bc=unit.value("voltage_bc", voltage + 2, 100, r.VOLTAGE_V, unsigned=True),
        current_a=unit.value("current_a", current, 100, r.CURRENT_A),
        current_b=unit.value("current_b", current + 1, 100, r.CURRENT_A),
        current_c=unit.value("current_c", current + 2, 100, r.CURRENT_A),
        total_power=unit.value("total_power", r.REG_PDU_POWER, 100, r.POWER_KW),
        sockets=tuple(sockets),
        access_control_alarms=unit.flags(r.REG_ACCESS_CONTROL, 8),
        infrared_alarms=unit.flags(r.REG_INFRARED, 6),
        water_ingress_alarms=unit.flags(r.REG_PDU_WATER_INGRESS, 8),
        smoke_alarms=unit.flags(r.REG_PDU_SMOKE, 8),
        high_wind_speed_alarm=unit.signed(r.REG_HIGH_WIND),
        low_wind_speed_alarm=unit.signed(r.REG_LOW_WIND),
    )
    return reading, unit.issues


def decode_diagnostics(regs: Registers) -> DiagnosticsReading:
    """The controller's diagnostics (unit 8, regs 2..14, raw)."""
    values = {name: int16(regs[2 + offset]) for offset, name in enumerate(r.DIAG_FIELDS)}
    return DiagnosticsReading(**values)


# A Wonderint's outlet water temperature T3 (reg 211): Kehua leaves the register at 0.
_T3_BOUNDS = (1.0, r.WATER_TEMP_C[1])


def kind_evidence(fcdu: Registers, gtemp: Registers | None) -> dict[ContainerKind, list[str]]:
    """What in the registers speaks for each kind (see `detect`)."""
    evidence: dict[ContainerKind, list[str]] = {kind: [] for kind in ContainerKind}
    kehua, wonderint = evidence[ContainerKind.KEHUA], evidence[ContainerKind.WONDERINT]
    if fcdu[r.REG_208] in (r.KEHUA_PUMP_RUNNING, r.KEHUA_PUMP_ERROR):
        kehua.append(f"reg 208 = {fcdu[r.REG_208]} is a Kehua pump status")
    if fcdu[r.REG_COOLING_STATUS] != 0:
        kehua.append(f"reg 212 (Kehua's cooling system status) = {fcdu[r.REG_COOLING_STATUS]}")
    outlet = int16(fcdu[r.REG_OUTLET_T3]) / 100
    if _T3_BOUNDS[0] <= outlet <= _T3_BOUNDS[1]:
        wonderint.append(f"reg 211 (Wonderint's outlet water T3) = {outlet:g} °C")
    if gtemp is not None:
        # The ambient sensor is ÷100 on Kehua and ÷10 on Wonderint: a raw value too large
        # for a Wonderint reading (over 80 °C, over 100 %) is a Kehua one.
        temperature, humidity = int16(gtemp[r.REG_TEMPERATURE]), int16(gtemp[r.REG_HUMIDITY])
        low, high = r.AMBIENT_TEMP_C
        if not low * 10 <= temperature <= high * 10 and low * 100 <= temperature <= high * 100:
            kehua.append(f"ambient raw {temperature} is Kehua's ÷100 scale")
        if 1000 < humidity <= 10000:
            kehua.append(f"humidity raw {humidity} is Kehua's ÷100 scale")
    return evidence


def detect(fcdu: Registers, gtemp: Registers | None) -> ContainerKind | None:
    """The kind the registers show, or None when they show neither or both.

    Kehua: reg 208 holds a pump status (100 running, 200 error), reg 212 the cooling
    system status, and the ambient sensor's ÷100 scale gives raw values a Wonderint (÷10)
    cannot have. Wonderint: reg 211 holds the outlet water temperature T3. A stopped
    Kehua in a cool room (208 and 212 at 0, ambient below 8 °C) shows nothing: None.
    """
    evidence = kind_evidence(fcdu, gtemp)
    shown = [kind for kind, signs in evidence.items() if signs]
    return shown[0] if len(shown) == 1 else None
