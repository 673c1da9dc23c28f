"""The MicroBT container register map: units, the read plan, addresses, scales, ranges.

"reg N" is the fact sheet's 1-based number; the wire address sent is N - 1. Every value is
one 16-bit big-endian register (no 32-bit values); scaling is a plain division.
"""

from __future__ import annotations

from collections.abc import Iterable

# Unit ids (the same on Kehua and Wonderint).
UNIT_FCDU = 1
UNIT_GTEMP = 2
UNIT_HENV = 3
FIRST_METER_UNIT = 4
METER_COUNT = 4
UNIT_DIAG = 8
FIRST_PDU_UNIT = 9
PDU_COUNT = 12
SOCKETS_PER_PDU = 20


def meter_unit(index: int) -> int:
    """The unit of power meter index 0..3."""
    return FIRST_METER_UNIT + index


def pdu_unit(pdu: int) -> int:
    """The unit of PDU 1..12."""
    return FIRST_PDU_UNIT + pdu - 1


def unit_name(unit: int) -> str:
    """The upstream worker's name of a unit (fcdu, gtemp, powermeter01, pdu07, ...)."""
    if unit == UNIT_FCDU:
        return "fcdu"
    if unit == UNIT_GTEMP:
        return "gtemp"
    if unit == UNIT_HENV:
        return "henv"
    if unit == UNIT_DIAG:
        return "diag"
    if FIRST_METER_UNIT <= unit < FIRST_METER_UNIT + METER_COUNT:
        return f"powermeter{unit - FIRST_METER_UNIT + 1:02d}"
    return f"pdu{unit - FIRST_PDU_UNIT + 1:02d}"


# --- fcdu (unit 1) ---
REG_PROTOCOL_VERSION = 1
REG_DEW_POINT = 95
GENERAL_FAULTS: dict[int, str] = {
    96: "outdoor_ambient_temp_sensor_fault",
    97: "indoor_temp_humidity_sensor_fault",
    98: "makeup_water_pump_fault",
    99: "power_fault",
    100: "water_immersion_alarm",
}
REG_INLET_T2 = 201
REG_COOLING_T1 = 202
REG_INLET_P2 = 203
REG_OUTLET_P3 = 204
REG_PUMP_INLET_P1 = 205
REG_PUMP_OUTLET_P5 = 206
REG_208 = 208  # Kehua: pump running status (100 running, 200 error); Wonderint: cycle pump control
REG_PUMP_SPEED = 209
REG_FILTER_DP = 210
REG_OUTLET_T3 = 211  # Wonderint only
REG_COOLING_STATUS = 212  # Kehua only
REG_SYSTEM_ERRORS = 291  # 10 registers, bits MSB-first across the byte stream
SYSTEM_ERROR_REGISTERS = 10
REG_CHALLENGE = 301  # 4 registers: the 8-byte login challenge
CHALLENGE_REGISTERS = 4
REG_LOGIN = 305  # 16 registers: the 32-byte login response
LOGIN_REGISTERS = 16
REG_MAIN_CONTROL = 601  # the cooling system (the container) on/off
REG_PUMP_AUTO = 602
REG_DRAIN_VALVE_AUTO = 603
REG_FAN_AUTO = 604
REG_MAKEUP_PUMP_AUTO = 605
REG_606 = 606  # Kehua: cycle pump control; Wonderint: pump running status (1 running)
REG_FAN_CONTROL = 607
REG_MAKEUP_PUMP_CONTROL = 608
REG_BUZZER = 609
# Running speed, start and stop temperature. Upstream writes 613-615 and reads 614-616; the
# mock holds them at 613-615, so 613-615 it is by default (configurable).
DEFAULT_FAN_THRESHOLD_REGISTERS = (613, 614, 615)
KEHUA_PUMP_RUNNING = 100
KEHUA_PUMP_ERROR = 200

# System error bitmap: bit 0 = MSB of reg 291's high byte. Bit 22 repeats bit 21's name
# upstream; it is presumably the return side, and named so (as the simulator does).
SYSTEM_ERRORS: tuple[str, ...] = (
    "low_inlet_pressure_circ_pump",
    "low_outlet_pressure_circ_pump",
    "high_outlet_pressure_circ_pump",
    "circulating_pump_fault",
    "circ_pump_inverter_fault",
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
    "bypass_valve_fault",
    "fan_fault",
    "temp_sensor_chilled_water_supply_fault",
    "temp_sensor_chilled_water_return_fault",
    "pressure_sensor_chilled_water_supply_fault",
    "circ_pump_high_inlet_pressure",
)
# Every raw error name the client can report.
RAW_ERRORS: tuple[str, ...] = SYSTEM_ERRORS + tuple(GENERAL_FAULTS.values())

# --- gtemp (unit 2), henv (unit 3) ---
REG_STATUS = 2
REG_TEMPERATURE = 3  # Kehua ÷100, Wonderint ÷10
REG_HUMIDITY = 4  # Kehua ÷100, Wonderint ÷10
REG_SMOKE = 3
REG_WATER_INGRESS = 8

# --- power meters (units 4-7) ---
REG_ENERGY = 3  # uint16 hundredths of a kWh: wraps
REG_METER_VOLTAGE_AB = 50  # BC 51, CA 52
REG_METER_CURRENT_A = 53  # B 54, C 55
REG_METER_POWER = 57  # kW
REG_METER_APPARENT_POWER = 65
REG_METER_POWER_FACTOR = 69
REG_METER_FREQUENCY = 82

# --- diag (unit 8): regs 2..14 in this order ---
DIAG_FIELDS: tuple[str, ...] = (
    "communicate_status",
    "software_version",
    "pcb_version",
    "hardware_version",
    "year",
    "month",
    "day",
    "cpu_utilization",
    "disk_usage",
    "memory_utilization",
    "eth_speed",
    "eth_upstream_traffic",
    "eth_downstream_traffic",
)

# --- PDUs (units 9-20) ---
REG_PDU_BUZZER = 5
REG_SOCKET_STATE = 45  # + socket (1..20): 1 on, 2 off
REG_PDU_FREQUENCY = 74
REG_PDU_VOLTAGE_AB = 75  # then CA at 76 and BC at 77 (CA before BC)
REG_PDU_CURRENT_A = 78  # B 79, C 80
REG_PDU_POWER = 81
REG_ACCESS_CONTROL = 158  # 8 alarms
REG_INFRARED = 168  # 6
REG_PDU_WATER_INGRESS = 174  # 8
REG_PDU_SMOKE = 182  # 8
REG_HIGH_WIND = 190
REG_LOW_WIND = 191
REG_SOCKET_SWITCH = 309  # - socket: socket 1 at 308 ... socket 20 at 289 (write only)
SOCKET_ON = 1
SOCKET_OFF = 2


def socket_switch_reg(socket: int) -> int:
    """The register that switches socket 1..20 (reg 309 - socket)."""
    return REG_SOCKET_SWITCH - socket


def socket_state_reg(socket: int) -> int:
    """The register that reports socket 1..20 (reg 45 + socket)."""
    return REG_SOCKET_STATE + socket


# --- read plan: (first reg, count) per request ---
# The upstream worker's windows, so no request reaches a register a real container may not
# have; only where the windows are adjacent or one register apart are they joined.
Block = tuple[int, int]
FCDU_BLOCKS: tuple[Block, ...] = ((1, 4), (90, 11), (201, 12), (291, 10), (601, 23))
GTEMP_BLOCKS: tuple[Block, ...] = ((2, 3),)
HENV_BLOCKS: tuple[Block, ...] = ((2, 7),)
METER_BLOCKS: tuple[Block, ...] = ((2, 70), (73, 12))
DIAG_BLOCKS: tuple[Block, ...] = ((2, 13),)
PDU_BLOCKS: tuple[Block, ...] = ((2, 80), (158, 34))


def fcdu_blocks(fan_threshold_registers: Iterable[int]) -> tuple[Block, ...]:
    """The CDU's blocks, with any fan threshold register outside them added."""
    extra = [
        (reg, 1)
        for reg in sorted(set(fan_threshold_registers))
        if not any(first <= reg < first + count for first, count in FCDU_BLOCKS)
    ]
    return merge_blocks([*FCDU_BLOCKS, *extra])


def merge_blocks(blocks: Iterable[Block]) -> tuple[Block, ...]:
    """Sorted blocks, overlapping or adjacent ones joined (at most 125 registers each)."""
    merged: list[Block] = []
    for first, count in sorted(blocks):
        if merged:
            last_first, last_count = merged[-1]
            end = max(last_first + last_count, first + count)
            if first <= last_first + last_count and end - last_first <= 125:
                merged[-1] = (last_first, end - last_first)
                continue
        merged.append((first, count))
    return tuple(merged)


# --- physical ranges: a value outside is a sensor or decoding fault, so it reads None ---
WATER_TEMP_C = (-20.0, 100.0)
AMBIENT_TEMP_C = (-50.0, 80.0)
DEW_POINT_C = (-60.0, 60.0)
HUMIDITY_PCT = (0.0, 100.0)
PRESSURE_BAR = (-1.0, 25.0)
FILTER_DP_BAR = (-5.0, 10.0)
PERCENT = (0.0, 100.0)
FAN_TEMP_C = (-20.0, 100.0)
VOLTAGE_V = (0.0, 600.0)
CURRENT_A = (0.0, 650.0)
POWER_KW = (0.0, 650.0)
POWER_FACTOR = (0.0, 1.0)
FREQUENCY_HZ = (40.0, 70.0)
COOLING_STATUS = (0.0, 100.0)
