"""MicroBT container register maps (Kehua, Wonderint): registers from the state, writes into it.

Register numbers are the MicroBT container fact sheet's 1-based "reg N"; the wire address is
N - 1. Every value is one 16-bit register; signed values travel as two's complement.
Where the fact sheet is silent, the comments say "choice".
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
import math

from .container_state import (
    GENERAL_FAULTS,
    METER_COUNT,
    PDU_COUNT,
    SOCKETS_PER_PDU,
    SYSTEM_ERRORS,
    ContainerState,
)

KINDS = ("kehua", "wonderint")

ILLEGAL_FUNCTION = 0x01
ILLEGAL_ADDRESS = 0x02
ILLEGAL_VALUE = 0x03

UNIT_FCDU = 1
UNIT_GTEMP = 2
UNIT_HENV = 3
FIRST_METER_UNIT = 4
UNIT_DIAG = 8
FIRST_PDU_UNIT = 9
UNITS = tuple(range(1, FIRST_PDU_UNIT + PDU_COUNT))

# Highest readable register per unit (choice: the upstream read windows, rounded up).
# Reading past it, or register 0, is an illegal data address.
_HIGHEST_REG = {UNIT_FCDU: 700, UNIT_GTEMP: 10, UNIT_HENV: 10, UNIT_DIAG: 20}
_METER_HIGHEST_REG = 100
_PDU_HIGHEST_REG = 320

# fcdu (unit 1)
REG_PROTOCOL_VERSION = 1
REG_DEW_POINT = 95
REG_INLET_T2 = 201
REG_COOLING_T1 = 202
REG_INLET_PRESSURE_P2 = 203
REG_OUTLET_PRESSURE_P3 = 204
REG_PUMP_INLET_PRESSURE_P1 = 205
REG_PUMP_OUTLET_PRESSURE_P5 = 206
REG_208 = 208  # Kehua: pump running status; Wonderint: cycle_pump_control
REG_PUMP_SPEED = 209
REG_FILTER_DP = 210
REG_OUTLET_T3 = 211  # Wonderint only
REG_COOLING_STATUS = 212  # Kehua only
REG_SYSTEM_ERRORS = 291  # 10 registers, bits MSB-first across the byte stream
REG_CHALLENGE = 301  # 4 registers
REG_LOGIN = 305  # 16 registers, write only
REG_MAIN_CONTROL = 601
REG_PUMP_AUTO = 602
REG_DRAIN_VALVE_AUTO = 603
REG_FAN_AUTO = 604
REG_MAKEUP_PUMP_AUTO = 605
REG_606 = 606  # Kehua: cycle_pump_control; Wonderint: pump running status
REG_FAN_CONTROL = 607
REG_MAKEUP_PUMP_CONTROL = 608
REG_BUZZER = 609
DEFAULT_FAN_THRESHOLD_REG = 613  # speed, start, stop at 613, 614, 615 (the write side upstream)

# power meters (units 4-7)
REG_STATUS = 2
REG_ENERGY = 3
REG_METER_VOLTAGE_AB = 50
REG_METER_CURRENT_A = 53
REG_METER_ACTIVE_POWER = 57
REG_METER_APPARENT_POWER = 65
REG_METER_POWER_FACTOR = 69
REG_METER_FREQUENCY = 82

# PDUs (units 9-20)
REG_PDU_BUZZER = 5
REG_SOCKET_STATE = 45  # + socket (1..20): 1 on, 2 off
REG_PDU_FREQUENCY = 74
REG_PDU_VOLTAGE_AB = 75  # then CA at 76 and BC at 77
REG_PDU_CURRENT_A = 78
REG_PDU_POWER = 81
REG_SOCKET_SWITCH = 309  # - socket: socket 1 at 308 ... socket 20 at 289
SOCKET_ON = 1
SOCKET_OFF = 2

# gtemp (unit 2), henv (unit 3)
REG_TEMPERATURE = 3
REG_HUMIDITY = 4
REG_SMOKE = 3
REG_WATER_INGRESS = 8

# A challenge when no connection hands one (the server gives each connection its own).
CHALLENGE = b"MBTCont1"

# What a unit with the out_of_range fault reads in its measured registers (reg -> signed):
# int16 ones read -32768 (-327.68 at /100, -3276.8 °C at /10), uint16 ones 65535 (655.35).
_MEASURED_FCDU = dict.fromkeys((95, 201, 202, 203, 204, 205, 206, 209, 210, 211), True)
_MEASURED_GTEMP = dict.fromkeys((3, 4), True)
_MEASURED_HENV = dict.fromkeys((3, 8), True)
_MEASURED_DIAG = dict.fromkeys((9, 10, 11), False)
_MEASURED_METER = dict.fromkeys((3, 50, 51, 52, 53, 54, 55, 57, 65, 69, 82), False)
_MEASURED_PDU = {74: True, 75: False, 76: False, 77: False, 78: True, 79: True, 80: True, 81: True}


class ModbusRefusedError(Exception):
    """A request the container refuses, with the Modbus exception code it answers."""

    def __init__(self, code: int, reason: str) -> None:
        """Keep the code for the exception response and the reason for logs and tests."""
        super().__init__(reason)
        self.code = code


def _u16(value: float) -> int:
    """An unsigned register: rounded and clamped to 0..65535."""
    return min(max(round(value), 0), 0xFFFF)


def _s16(value: float) -> int:
    """A signed register in two's complement: rounded and clamped to -32768..32767."""
    return min(max(round(value), -0x8000), 0x7FFF) & 0xFFFF


def _line_current_a(power_kw: float, voltage_v: float, power_factor: float) -> float:
    """Three-phase line current: P = √3·V·I·PF."""
    if voltage_v <= 0 or power_factor <= 0:
        return 0.0
    return power_kw * 1000 / (math.sqrt(3) * voltage_v * power_factor)


def dew_point_c(temperature_c: float, humidity_pct: float) -> float:
    """The Magnus formula (good to ±0.4 K between -45 and 60 °C)."""
    a, b = 17.62, 243.12
    gamma = math.log(max(humidity_pct, 1.0) / 100) + a * temperature_c / (b + temperature_c)
    return b * gamma / (a - gamma)


def system_error_registers(active: set[str]) -> list[int]:
    """The 10 registers of the system error bitmap for these active alarm names."""
    registers = [0] * 10
    for bit, name in enumerate(SYSTEM_ERRORS):
        if name in active:
            registers[bit // 16] |= 1 << (15 - bit % 16)
    return registers


def socket_switch_reg(socket: int) -> int:
    """The register that switches a socket (1..20): reg 309 - socket."""
    return REG_SOCKET_SWITCH - socket


class ContainerMap:
    """The register map of one container kind, read from and written to a ContainerState."""

    def __init__(self, kind: str, fan_threshold_reg: int = DEFAULT_FAN_THRESHOLD_REG) -> None:
        """Kind is kehua or wonderint; fan speed, start and stop from fan_threshold_reg on."""
        if kind not in KINDS:
            raise ValueError(f"container kind must be kehua or wonderint, not {kind!r}")
        if not 610 <= fan_threshold_reg <= 620:
            raise ValueError(f"fan threshold register must be 610..620, not {fan_threshold_reg}")
        self.kind = kind
        self.fan_threshold_reg = fan_threshold_reg

    @staticmethod
    def highest_reg(unit: int) -> int:
        """The last readable register of a unit."""
        if FIRST_METER_UNIT <= unit < FIRST_METER_UNIT + METER_COUNT:
            return _METER_HIGHEST_REG
        if unit >= FIRST_PDU_UNIT:
            return _PDU_HIGHEST_REG
        return _HIGHEST_REG[unit]

    def read(
        self, state: ContainerState, unit: int, reg: int, count: int, challenge: bytes = CHALLENGE
    ) -> list[int]:
        """Read count registers from reg (1-based); registers the unit does not define read 0.

        challenge: the 8 bytes the login challenge (regs 301-304) reads on this connection.
        """
        if reg < 1 or reg + count - 1 > self.highest_reg(unit):
            raise ModbusRefusedError(
                ILLEGAL_ADDRESS,
                f"unit {unit} has registers 1..{self.highest_reg(unit)}, "
                f"not {reg}..{reg + count - 1}",
            )
        values = self._registers(state, unit)
        if unit == UNIT_FCDU:
            for offset in range(4):
                values[REG_CHALLENGE + offset] = int.from_bytes(
                    challenge[2 * offset : 2 * offset + 2], "big"
                )
        fault = state.unit_faults.get(unit)
        if fault is not None and fault[0] == "out_of_range":
            for measured, signed in self.measured(unit).items():
                if measured in values:
                    values[measured] = (
                        fault[1] if fault[1] is not None else (0x8000 if signed else 0xFFFF)
                    )
        return [values.get(n, 0) for n in range(reg, reg + count)]

    @staticmethod
    def measured(unit: int) -> dict[int, bool]:
        """A unit's measured registers (reg -> signed): what out_of_range replaces."""
        if FIRST_METER_UNIT <= unit < FIRST_METER_UNIT + METER_COUNT:
            return _MEASURED_METER
        if unit >= FIRST_PDU_UNIT:
            return _MEASURED_PDU
        return {
            UNIT_FCDU: _MEASURED_FCDU,
            UNIT_GTEMP: _MEASURED_GTEMP,
            UNIT_HENV: _MEASURED_HENV,
            UNIT_DIAG: _MEASURED_DIAG,
        }[unit]

    def write(self, state: ContainerState, unit: int, reg: int, values: list[int]) -> None:
        """Write registers from reg (1-based): all of them or, on a refusal, none."""
        apply = [self._writer(state, unit, reg + offset, v) for offset, v in enumerate(values)]
        for setter in apply:
            setter()

    # --- reads ---

    def _registers(self, state: ContainerState, unit: int) -> dict[int, int]:
        if unit == UNIT_FCDU:
            return self._fcdu(state)
        if unit == UNIT_GTEMP:
            scale = 100 if self.kind == "kehua" else 10
            return {
                REG_STATUS: 1,
                REG_TEMPERATURE: _s16(state.ambient_c * scale),
                REG_HUMIDITY: _s16(state.humidity_pct * scale),
            }
        if unit == UNIT_HENV:
            return {
                REG_STATUS: 1,
                REG_SMOKE: int(state.smoke),
                REG_WATER_INGRESS: int(state.water_ingress),
            }
        if unit == UNIT_DIAG:
            return _diag()
        if unit >= FIRST_PDU_UNIT:
            return self._pdu(state, unit - FIRST_PDU_UNIT + 1)
        return self._meter(state, unit - FIRST_METER_UNIT)

    def _meter(self, state: ContainerState, index: int) -> dict[int, int]:
        power_kw = state.meter_power_kw(index)
        volts = state.voltage_v
        amps = _line_current_a(power_kw, volts, state.power_factor)
        registers = {
            REG_STATUS: 1,
            # 16 bits of hundredths of a kWh: it wraps, as on the real meter.
            REG_ENERGY: round(state.energy_kwh[index] * 100) & 0xFFFF,
            REG_METER_ACTIVE_POWER: _u16(power_kw * 100),
            REG_METER_APPARENT_POWER: _u16(power_kw / max(state.power_factor, 0.01) * 100),
            REG_METER_POWER_FACTOR: _u16(state.power_factor * 100),
            REG_METER_FREQUENCY: _u16(state.frequency_hz * 100),
        }
        # Choice: a small phase imbalance (BC +0.5 V, CA -0.5 V) so swapped phases show.
        for offset, phase_v in enumerate((volts, volts + 0.5, volts - 0.5)):
            registers[REG_METER_VOLTAGE_AB + offset] = _u16(phase_v * 100)
            registers[REG_METER_CURRENT_A + offset] = _u16(amps * 100)
        return registers

    def _pdu(self, state: ContainerState, pdu: int) -> dict[int, int]:
        power_kw = state.pdu_power_kw(pdu)
        volts = state.voltage_v
        amps = _line_current_a(power_kw, volts, state.power_factor)
        registers = {
            REG_STATUS: 1,
            REG_PDU_BUZZER: 0,
            REG_PDU_FREQUENCY: _s16(state.frequency_hz * 100),
            # AB, CA, BC in this order; above 327.67 V these exceed int16 (the wire is right,
            # the upstream int16 decoding is not).
            REG_PDU_VOLTAGE_AB: _u16(volts * 100),
            REG_PDU_VOLTAGE_AB + 1: _u16((volts - 0.5) * 100),
            REG_PDU_VOLTAGE_AB + 2: _u16((volts + 0.5) * 100),
            REG_PDU_POWER: _s16(power_kw * 100),
        }
        for offset in range(3):
            registers[REG_PDU_CURRENT_A + offset] = _s16(amps * 100)
        for socket in range(1, SOCKETS_PER_PDU + 1):
            value = SOCKET_ON if state.socket_on(pdu, socket) else SOCKET_OFF
            registers[REG_SOCKET_STATE + socket] = value
            registers[socket_switch_reg(socket)] = value
        return registers

    def _fcdu(self, state: ContainerState) -> dict[int, int]:
        pump_running = state.pump_running()
        active = set(state.alarms())
        kehua = self.kind == "kehua"
        if kehua:
            pump_status = 100 if pump_running else 200 if state.pump_faulted() else 0
        else:
            pump_status = int(pump_running)
        pressures = state.pressures_bar()
        registers = {
            REG_PROTOCOL_VERSION: 10,
            REG_DEW_POINT: _s16(dew_point_c(state.ambient_c, state.humidity_pct) * 100),
            REG_INLET_T2: _s16(state.inlet_temp_c() * 100),
            REG_COOLING_T1: _s16(state.cooling_temp_c() * 100),
            REG_INLET_PRESSURE_P2: _s16(pressures["p2"] * 100),
            REG_OUTLET_PRESSURE_P3: _s16(pressures["p3"] * 100),
            REG_PUMP_INLET_PRESSURE_P1: _s16(pressures["p1"] * 100),
            REG_PUMP_OUTLET_PRESSURE_P5: _s16(pressures["p5"] * 100),
            REG_208: pump_status if kehua else int(state.enabled),
            REG_PUMP_SPEED: _s16(state.pump_speed_pct() * 100),
            REG_FILTER_DP: _s16(pressures["filter_dp"] * 100),
            REG_MAIN_CONTROL: int(state.enabled),
            REG_PUMP_AUTO: int(state.pump_auto),
            REG_DRAIN_VALVE_AUTO: int(state.drain_valve_auto),
            REG_FAN_AUTO: int(state.fan_auto),
            REG_MAKEUP_PUMP_AUTO: int(state.makeup_pump_auto),
            REG_606: int(state.enabled) if kehua else pump_status,
            REG_FAN_CONTROL: int(state.fan_running),
            REG_MAKEUP_PUMP_CONTROL: int(state.makeup_pump_on),
            REG_BUZZER: int(state.buzzer),
            self.fan_threshold_reg: _s16(state.fan_speed_pct * 100),
            self.fan_threshold_reg + 1: _s16(state.fan_start_c * 100),
            self.fan_threshold_reg + 2: _s16(state.fan_stop_c * 100),
        }
        if kehua:
            # Choice: cooling_system_status is decoded ÷100, so 1.00 running, 2.00 error.
            registers[REG_COOLING_STATUS] = pump_status
        else:
            registers[REG_OUTLET_T3] = _s16(state.outlet_temp_c() * 100)
        for reg, name in GENERAL_FAULTS.items():
            registers[reg] = int(name in active)
        for offset, value in enumerate(system_error_registers(active)):
            registers[REG_SYSTEM_ERRORS + offset] = value
        return registers

    # --- writes ---

    def _writer(self, state: ContainerState, unit: int, reg: int, value: int) -> Callable[[], None]:
        """Check one register write and return what applies it (nothing changes yet)."""
        if not 0 <= value <= 0xFFFF:
            raise ModbusRefusedError(ILLEGAL_VALUE, f"{value} does not fit a register")
        signed = value - 0x10000 if value & 0x8000 else value
        if unit == UNIT_FCDU:
            return self._fcdu_writer(state, reg, signed)
        if unit >= FIRST_PDU_UNIT and socket_switch_reg(20) <= reg <= socket_switch_reg(1):
            if value not in (SOCKET_ON, SOCKET_OFF):
                raise ModbusRefusedError(
                    ILLEGAL_VALUE, f"a socket takes 1 (on) or 2 (off), not {value}"
                )
            pdu, socket = unit - FIRST_PDU_UNIT + 1, REG_SOCKET_SWITCH - reg
            return lambda: state.set_socket(pdu, socket, value == SOCKET_ON)
        raise ModbusRefusedError(ILLEGAL_ADDRESS, f"unit {unit} register {reg} is read-only")

    def _fcdu_writer(self, state: ContainerState, reg: int, signed: int) -> Callable[[], None]:
        flags = {
            REG_MAIN_CONTROL: "enabled",
            REG_PUMP_AUTO: "pump_auto",
            REG_DRAIN_VALVE_AUTO: "drain_valve_auto",
            REG_FAN_AUTO: "fan_auto",
            REG_MAKEUP_PUMP_AUTO: "makeup_pump_auto",
            REG_FAN_CONTROL: "fan_manual_on",
            REG_MAKEUP_PUMP_CONTROL: "makeup_pump_on",
            REG_BUZZER: "buzzer",
        }
        if reg in flags:
            if signed not in (0, 1):
                raise ModbusRefusedError(
                    ILLEGAL_VALUE, f"register {reg} takes 0 or 1, not {signed}"
                )
            return lambda: setattr(state, flags[reg], bool(signed))
        # Choice of ranges: speed 0..100 %, temperatures 0..80 °C, all x100.
        thresholds = {
            self.fan_threshold_reg: ("fan_speed_pct", 100.0),
            self.fan_threshold_reg + 1: ("fan_start_c", 80.0),
            self.fan_threshold_reg + 2: ("fan_stop_c", 80.0),
        }
        if reg in thresholds:
            field, highest = thresholds[reg]
            if not 0 <= signed <= highest * 100:
                raise ModbusRefusedError(
                    ILLEGAL_VALUE, f"register {reg} takes 0..{highest * 100:.0f}, not {signed}"
                )
            return lambda: setattr(state, field, signed / 100)
        raise ModbusRefusedError(ILLEGAL_ADDRESS, f"unit 1 register {reg} is read-only")


def _diag() -> dict[int, int]:
    """Diagnostics (unit 8): fixed versions and loads (choice), today's date."""
    today = datetime.now(UTC).date()
    return {
        2: 1,  # communicate_status
        3: 120,  # software_version
        4: 3,  # pcb_version
        5: 2,  # hardware_version
        6: today.year,
        7: today.month,
        8: today.day,
        9: 12,  # cpu %
        10: 35,  # disk %
        11: 41,  # memory %
        12: 100,  # eth speed (Mbit/s)
        13: 5,  # upstream traffic
        14: 7,  # downstream traffic
    }
