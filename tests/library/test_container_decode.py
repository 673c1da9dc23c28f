"""Container register decoding (pure): bitmaps, kinds, scales, physical ranges, the read plan."""

from __future__ import annotations

from hypothesis import given, strategies as st
import pytest

from custom_components.bitcoin_mining.miningsite.containers import (
    ContainerKind,
    ContainerStatus,
    decode,
    registers as r,
)
from simulator.container_maps import ContainerMap, system_error_registers
from simulator.container_state import SYSTEM_ERRORS, ContainerState

FAN_REGS = r.DEFAULT_FAN_THRESHOLD_REGISTERS


def unit_registers(kind: str, unit: int, state: ContainerState | None = None) -> dict[int, int]:
    """Every register of a unit as the simulator's map (an independent implementation) has it."""
    container = ContainerMap(kind)
    highest = container.highest_reg(unit)
    values = container.read(state or ContainerState(), unit, 1, highest)
    return dict(zip(range(1, highest + 1), values, strict=True))


def bitmap(*words: int) -> dict[int, int]:
    regs = dict.fromkeys(range(291, 301), 0)
    regs.update({291 + offset: word for offset, word in enumerate(words)})
    return regs


def test_system_error_bits_are_numbered_msb_first_across_the_bytes() -> None:
    assert decode.system_errors(bitmap(0x8000)) == {"low_inlet_pressure_circ_pump"}  # bit 0
    assert decode.system_errors(bitmap(0x0080)) == {"high_inlet_temp_unit"}  # bit 8
    assert decode.system_errors(bitmap(0x0001)) == {"unit_inlet_pressure_sensor_fault"}  # 15
    assert decode.system_errors(bitmap(0, 0x8000)) == {"unit_outlet_pressure_sensor_fault"}
    assert decode.system_errors(bitmap(0, 0x0080)) == {"circ_pump_high_inlet_pressure"}  # 24
    assert decode.system_errors(bitmap(0x1000)) == {"circulating_pump_fault"}  # bit 3
    # Bits past 24 name nothing.
    assert decode.system_errors(bitmap(0, 0x007F, 0xFFFF, *[0xFFFF] * 7)) == frozenset()
    assert decode.system_errors(bitmap(0xFFFF, 0xFF80)) == frozenset(r.SYSTEM_ERRORS)


@given(st.sets(st.sampled_from(SYSTEM_ERRORS)))
def test_the_bitmap_reads_what_the_simulator_sets(active: set[str]) -> None:
    assert decode.system_errors(bitmap(*system_error_registers(active))) == active


def test_general_faults_are_single_registers_set_to_one() -> None:
    regs = dict.fromkeys(range(96, 101), 0)
    regs[98] = 1
    regs[99] = 2  # not 1: not set
    assert decode.general_faults(regs) == {"makeup_water_pump_fault"}


@pytest.mark.parametrize("kind", list(ContainerKind))
def test_a_healthy_container_decodes_to_its_state(kind: ContainerKind) -> None:
    state = ContainerState(ambient_c=31.5, humidity_pct=42.5)
    state.set_socket(3, 7, False)
    cdu, issues = decode.decode_cdu(kind, unit_registers(kind, r.UNIT_FCDU, state), FAN_REGS)
    assert issues == {}
    assert cdu.inlet_temp_c == pytest.approx(state.inlet_temp_c(), abs=0.01)
    assert cdu.pump_running
    assert not cdu.pump_fault
    assert cdu.system_main_control
    assert (cdu.fan_running_speed, cdu.fan_start_temp_c, cdu.fan_stop_temp_c) == (80, 35, 30)
    assert cdu.pump_outlet_pressure_bar == 3.0
    if kind is ContainerKind.KEHUA:
        assert cdu.outlet_temp_c is None
        assert cdu.cooling_system_status == 1.0
    else:
        assert cdu.outlet_temp_c == pytest.approx(state.outlet_temp_c(), abs=0.01)
        assert cdu.cooling_system_status is None
    ambient, issues = decode.decode_ambient(kind, unit_registers(kind, r.UNIT_GTEMP, state))
    assert (ambient.temperature_c, ambient.humidity, issues) == (31.5, 42.5, {})
    pdu, issues = decode.decode_pdu(3, unit_registers(kind, r.pdu_unit(3), state))
    assert issues == {}
    assert pdu.sockets == tuple(socket != 7 for socket in range(1, 21))
    # CA comes before BC on the wire (the simulator puts BC 0.5 V above AB, CA below).
    assert (pdu.voltage_ab, pdu.voltage_bc, pdu.voltage_ca) == (400.0, 400.5, 399.5)
    meter, issues = decode.decode_meter(0, unit_registers(kind, r.meter_unit(0), state))
    assert issues == {}
    assert meter.power_kw == pytest.approx(state.meter_power_kw(0), abs=0.01)
    assert (meter.voltage_bc, meter.voltage_ca, meter.frequency) == (400.5, 399.5, 50.0)


def test_ambient_scale_differs_by_kind() -> None:
    regs = {2: 1, 3: 2345, 4: 456}
    kehua, _ = decode.decode_ambient(ContainerKind.KEHUA, regs)
    wonderint, issues = decode.decode_ambient(ContainerKind.WONDERINT, regs)
    assert (kehua.temperature_c, kehua.humidity) == (23.45, 4.56)
    # 234.5 °C is no ambient temperature: unknown, with the reason.
    assert (wonderint.temperature_c, wonderint.humidity) == (None, 45.6)
    assert "234.5" in issues["gtemp.temperature_c"]


def test_registers_208_and_606_swap_between_the_kinds() -> None:
    regs = unit_registers("kehua", r.UNIT_FCDU)
    regs[208], regs[606] = 200, 7
    kehua, _ = decode.decode_cdu(ContainerKind.KEHUA, regs, FAN_REGS)
    assert (kehua.pump_running, kehua.pump_fault, kehua.cycle_pump_control) == (False, True, 7)
    regs[208], regs[606] = 5, 1
    wonderint, _ = decode.decode_cdu(ContainerKind.WONDERINT, regs, FAN_REGS)
    assert (wonderint.pump_running, wonderint.pump_fault) == (True, False)
    assert wonderint.cycle_pump_control == 5


def test_status_follows_errors_then_the_pump() -> None:
    regs = unit_registers("wonderint", r.UNIT_FCDU)
    cdu, _ = decode.decode_cdu(ContainerKind.WONDERINT, regs, FAN_REGS)
    assert decode.container_status(cdu, frozenset()) is ContainerStatus.RUNNING
    assert decode.container_status(cdu, frozenset({"fan_fault"})) is ContainerStatus.ERROR
    regs[606] = 0
    stopped, _ = decode.decode_cdu(ContainerKind.WONDERINT, regs, FAN_REGS)
    assert decode.container_status(stopped, frozenset()) is ContainerStatus.STOPPED


@pytest.mark.parametrize(
    ("reg", "raw", "field"),
    [
        (201, 0x8000, "inlet_temp_c"),  # -327.68 °C
        (202, 0x7FFF, "cooling_temp_c"),  # 327.67 °C
        (203, 0x7FFF, "inlet_pressure_bar"),  # 327.67 bar
        (206, 0x8000, "pump_outlet_pressure_bar"),  # -327.68 bar
        (209, 0x4E20, "pump_speed"),  # 200 %
        (210, 0x7FFF, "filter_pressure_difference"),
        (95, 0x8000, "dew_point_c"),
        (613, 0xFFFF - 99, "fan_running_speed"),  # -1 %
    ],
)
def test_cdu_values_out_of_physical_range_are_unknown(reg: int, raw: int, field: str) -> None:
    regs = unit_registers("kehua", r.UNIT_FCDU)
    regs[reg] = raw
    cdu, issues = decode.decode_cdu(ContainerKind.KEHUA, regs, FAN_REGS)
    assert getattr(cdu, field) is None
    assert list(issues) == [f"fcdu.{field}"]
    assert f"reg {reg} = {raw}" in issues[f"fcdu.{field}"]


def test_wonderint_ambient_at_minus_3276_degrees_is_unknown() -> None:
    ambient, issues = decode.decode_ambient(ContainerKind.WONDERINT, {2: 1, 3: 0x8000, 4: 450})
    assert ambient.temperature_c is None
    assert "-3276.8 is outside" in issues["gtemp.temperature_c"]


def test_pdu_voltages_are_unsigned_and_sentinels_unknown() -> None:
    regs = unit_registers("kehua", r.pdu_unit(1))
    regs[75] = 41500  # 415 V: an int16 decoding would read -239.36 V
    regs[76] = 0xFFFF  # 655.35 V: no sensor
    regs[46] = 0  # neither on nor off
    pdu, issues = decode.decode_pdu(1, regs)
    assert (pdu.voltage_ab, pdu.voltage_ca) == (415.0, None)
    assert pdu.sockets[0] is None
    assert set(issues) == {"pdu01.voltage_ca", "pdu01.socket_1"}


def test_meter_energy_is_the_raw_wrapping_register() -> None:
    regs = unit_registers("kehua", r.meter_unit(2))
    regs[3] = 0xFFFF
    regs[57] = 0xFFFF  # 655.35 kW on one meter of a 720 kW container: no reading
    meter, issues = decode.decode_meter(2, regs)
    assert meter.energy_kwh == 655.35
    assert meter.power_kw is None
    assert list(issues) == ["powermeter03.power_kw"]


def test_diagnostics_are_raw() -> None:
    diag = decode.decode_diagnostics(unit_registers("kehua", r.UNIT_DIAG))
    assert (diag.software_version, diag.cpu_utilization, diag.eth_speed) == (120, 12, 100)


def test_environment_flags() -> None:
    env = decode.decode_environment({2: 1, 3: 1, 4: 0, 5: 0, 6: 0, 7: 0, 8: 0})
    assert (env.smoke, env.water_ingress) == (True, False)


@pytest.mark.parametrize("kind", list(ContainerKind))
@pytest.mark.parametrize("enabled", [True, False])
def test_each_kind_is_detected_running_or_stopped(kind: ContainerKind, enabled: bool) -> None:
    state = ContainerState(enabled=enabled)
    fcdu = unit_registers(kind, r.UNIT_FCDU, state)
    gtemp = unit_registers(kind, r.UNIT_GTEMP, state)
    assert decode.detect(fcdu, gtemp) is kind
    assert decode.detect(fcdu, None) is (kind if enabled or kind == "wonderint" else None)


def test_a_stopped_kehua_in_a_cold_room_cannot_be_told() -> None:
    state = ContainerState(enabled=False, ambient_c=5.0, humidity_pct=9.0)
    fcdu = unit_registers("kehua", r.UNIT_FCDU, state)
    assert decode.detect(fcdu, unit_registers("kehua", r.UNIT_GTEMP, state)) is None
    evidence = decode.kind_evidence(fcdu, unit_registers("kehua", r.UNIT_GTEMP, state))
    assert evidence == {ContainerKind.KEHUA: [], ContainerKind.WONDERINT: []}


def test_contradictory_registers_cannot_be_told() -> None:
    fcdu = unit_registers("kehua", r.UNIT_FCDU)
    fcdu[211] = 3500  # a Wonderint's outlet temperature on a Kehua's pump status
    assert decode.detect(fcdu, None) is None
    # High humidity alone gives a Kehua away (÷10 would be over 100 %).
    wonderint = unit_registers("wonderint", r.UNIT_FCDU)
    wonderint[211] = 0
    assert decode.detect(wonderint, {2: 1, 3: 300, 4: 4500}) is ContainerKind.KEHUA


def test_the_read_plan_stays_in_upstream_windows() -> None:
    assert r.fcdu_blocks(FAN_REGS) == r.FCDU_BLOCKS
    # Thresholds moved past the window get their own (merged) block.
    assert r.fcdu_blocks((624, 625, 700)) == (*r.FCDU_BLOCKS[:-1], (601, 25), (700, 1))
    assert r.merge_blocks([(10, 5), (1, 3), (4, 2)]) == ((1, 5), (10, 5))
    assert r.merge_blocks([(1, 100), (101, 50)]) == ((1, 100), (101, 50))  # max 125
    for blocks in (r.FCDU_BLOCKS, r.METER_BLOCKS, r.PDU_BLOCKS, r.DIAG_BLOCKS):
        assert all(count <= 125 for _, count in blocks)
    assert [r.unit_name(unit) for unit in (1, 2, 3, 4, 7, 8, 9, 20)] == [
        "fcdu",
        "gtemp",
        "henv",
        "powermeter01",
        "powermeter04",
        "diag",
        "pdu01",
        "pdu12",
    ]
    assert (r.socket_switch_reg(1), r.socket_switch_reg(20)) == (308, 289)
    assert (r.socket_state_reg(1), r.socket_state_reg(20)) == (46, 65)
