"""MicroBT containers over real sockets: registers decode to the state, writes, refusals, faults."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
import math
from typing import Any

from pymodbus.client import AsyncModbusTcpClient
from pymodbus.exceptions import ModbusException
import pytest

from simulator.container_maps import system_error_registers
from simulator.container_state import SEVERITY, ContainerState
from simulator.containers import ContainerServer, parse_containers
from simulator.state import SiteState
from tests.simulator.container_client import (
    DIAG,
    FCDU,
    GTEMP,
    HENV,
    HOST,
    ILLEGAL_ADDRESS,
    ILLEGAL_FUNCTION,
    ILLEGAL_VALUE,
    METER1,
    PDU1,
    UNIT_KEYWORD,
    Clock,
    Container,
    close_container,
    int16,
    open_container,
)
from tests.support.modbus_meter import free_port


@pytest.fixture(params=["kehua", "wonderint"])
async def container(
    request: pytest.FixtureRequest, loopback_network: None
) -> AsyncIterator[Container]:
    running = await open_container(request.param)
    try:
        yield running
    finally:
        await close_container(running)


async def test_each_kind_decodes_to_the_state(container: Container) -> None:
    state, kehua = container.state, container.server.kind == "kehua"
    state.ambient_c, state.humidity_pct = 31.5, 42.5
    state.set_socket(2, 5, False)

    # Ambient (unit 2): Kehua ÷100, Wonderint ÷10.
    scale = 100 if kehua else 10
    status, temp, humidity = await container.read(GTEMP, 2, 3)
    assert (status, int16(temp) / scale, int16(humidity) / scale) == (1, 31.5, 42.5)

    # Power meter 1 (unit 4): PDUs 1-3 (59 sockets of 3 kW) plus a quarter of cooling/standby.
    regs = await container.read(METER1, 1, 84)
    reg = lambda n: regs[n - 1]  # noqa: E731 - 1-based view
    power_kw = reg(57) / 100
    assert power_kw == pytest.approx(state.meter_power_kw(0), abs=0.01)
    assert power_kw > 59 * 3.0
    assert [reg(n) / 100 for n in (50, 51, 52)] == [400.0, 400.5, 399.5]
    expected_a = power_kw * 1000 / (math.sqrt(3) * 400 * 0.98)
    assert [reg(n) / 100 for n in (53, 54, 55)] == [pytest.approx(expected_a, abs=0.01)] * 3
    assert reg(69) / 100 == 0.98
    assert reg(65) / 100 == pytest.approx(power_kw / 0.98, abs=0.01)
    assert reg(82) / 100 == 50.0
    assert reg(2) == 1
    meters_kw = [(await container.read_one(unit, 57)) / 100 for unit in range(4, 8)]
    assert sum(meters_kw) * 1000 == pytest.approx(state.power_w(), abs=20)

    # PDU 2 (unit 10): socket 5 off, CA before BC, voltages above 327.67 V as uint16.
    sockets = await container.read(PDU1 + 1, 46, 20)
    assert sockets == [1, 1, 1, 1, 2] + [1] * 15
    assert await container.read(PDU1 + 1, 74, 8) == [5000, 40000, 39950, 40050] + [
        round(19 * 3000 / (math.sqrt(3) * 400 * 0.98) * 100)
    ] * 3 + [5700]

    # Environment and cooling (unit 3, unit 1).
    assert await container.read(HENV, 2, 7) == [1, 0, 0, 0, 0, 0, 0]
    assert int16(await container.read_one(FCDU, 201)) / 100 == pytest.approx(
        state.inlet_temp_c(), abs=0.01
    )
    pump_208, pump_606 = await container.read_one(FCDU, 208), await container.read_one(FCDU, 606)
    # Kehua: 208 is the pump status (100 running), 606 the pump control; Wonderint swaps them.
    assert (pump_208, pump_606) == ((100, 1) if kehua else (1, 1))
    t3, cooling_status = await container.read(FCDU, 211, 2)
    assert (t3 != 0, cooling_status) == ((False, 100) if kehua else (True, 0))
    assert await container.read(FCDU, 601, 1) == [1]
    assert await container.read(FCDU, 613, 3) == [8000, 3500, 3000]
    assert await container.read(FCDU, 291, 10) == [0] * 10
    assert (await container.read(DIAG, 2, 13))[0] == 1


async def test_socket_writes_switch_and_read_back(container: Container) -> None:
    before_kw = (await container.read_one(PDU1 + 2, 81)) / 100
    # Socket 7 of PDU 3: written at reg 309 - 7, read back at reg 45 + 7.
    response = await container.write(PDU1 + 2, 302, 2)
    assert not response.isError()
    assert not container.state.socket_on(3, 7)
    assert await container.read_one(PDU1 + 2, 52) == 2
    assert await container.read_one(PDU1 + 2, 302) == 2
    assert (await container.read_one(PDU1 + 2, 81)) / 100 == before_kw - 3.0
    # Every socket of PDU 12 off in one FC16 write, then one back on.
    assert not (await container.write_many(PDU1 + 11, 289, [2] * 20)).isError()
    assert await container.read(PDU1 + 11, 46, 20) == [2] * 20
    await container.write(PDU1 + 11, 308, 1)
    assert await container.read(PDU1 + 11, 46, 2) == [1, 2]
    assert sum(sum(pdu) for pdu in container.state.sockets) == 240 - 1 - 19


async def test_the_cooling_switch_stops_pump_and_fans_not_the_sockets(
    container: Container,
) -> None:
    kehua = container.server.kind == "kehua"
    pdu_before = await container.read_one(PDU1, 81)
    assert not (await container.write(FCDU, 601, 0)).isError()
    assert container.state.enabled is False
    assert await container.read_one(FCDU, 601) == 0
    assert container.state.status() == "stopped"
    assert await container.read_one(FCDU, 208 if kehua else 606) == 0
    assert await container.read(FCDU, 607, 1) == [0]  # the fans stop
    assert await container.read_one(FCDU, 209) == 0  # pump speed
    # The PDUs stay powered: the sockets keep drawing, only the cooling's draw is gone.
    assert await container.read_one(PDU1, 81) == pdu_before
    assert await container.read_one(PDU1, 46) == 1
    meters_kw = [(await container.read_one(unit, 57)) / 100 for unit in range(4, 8)]
    assert sum(meters_kw) == pytest.approx(240 * 3.0 + 0.5, abs=0.03)
    # Without circulation the water heats (the water settles at once here): 30 + 45 K.
    assert int16(await container.read_one(FCDU, 201)) / 100 == pytest.approx(75.0)
    # A switched-off controller raises no temperature alarm.
    assert await container.read(FCDU, 291, 1) == [0]
    await container.write(FCDU, 601, 1)
    assert container.state.status() == "running"
    assert int16(await container.read_one(FCDU, 201)) / 100 == pytest.approx(37.2)


async def test_fan_thresholds_write_and_read_back(container: Container) -> None:
    assert not (await container.write(FCDU, 613, 6550)).isError()
    assert not (await container.write_many(FCDU, 614, [4000, 3200])).isError()
    state = container.state
    assert (state.fan_speed_pct, state.fan_start_c, state.fan_stop_c) == (65.5, 40.0, 32.0)
    assert await container.read(FCDU, 613, 3) == [6550, 4000, 3200]


async def test_the_threshold_registers_are_configurable(loopback_network: None) -> None:
    container = await open_container("kehua", fan_threshold_reg=614)
    try:
        assert await container.read(FCDU, 613, 4) == [0, 8000, 3500, 3000]
        await container.write(FCDU, 616, 2500)
        assert container.state.fan_stop_c == 25.0
        # Reg 613 is read-only here.
        assert (await container.write(FCDU, 613, 100)).exception_code == ILLEGAL_ADDRESS
        assert container.state.fan_speed_pct == 80.0
    finally:
        await close_container(container)


@pytest.mark.parametrize(
    ("unit", "reg", "value", "code"),
    [
        (FCDU, 201, 0, ILLEGAL_ADDRESS),  # inlet temperature is read-only
        (FCDU, 96, 0, ILLEGAL_ADDRESS),  # a fault flag is read-only
        (FCDU, 701, 0, ILLEGAL_ADDRESS),  # beyond the unit's registers
        (FCDU, 601, 2, ILLEGAL_VALUE),  # the switch takes 0 or 1
        (FCDU, 613, 10001, ILLEGAL_VALUE),  # fan speed above 100 %
        (FCDU, 614, 0xFFFF, ILLEGAL_VALUE),  # a negative start temperature
        (FCDU, 615, 8001, ILLEGAL_VALUE),  # a stop temperature above 80 °C
        (PDU1, 300, 3, ILLEGAL_VALUE),  # a socket takes 1 or 2
        (PDU1, 300, 0, ILLEGAL_VALUE),
        (PDU1, 50, 2, ILLEGAL_ADDRESS),  # the socket status registers are read-only
        (PDU1, 309, 1, ILLEGAL_ADDRESS),  # no socket 0
        (GTEMP, 3, 1, ILLEGAL_ADDRESS),
        (METER1, 57, 0, ILLEGAL_ADDRESS),
        (HENV, 3, 0, ILLEGAL_ADDRESS),
    ],
)
async def test_illegal_writes_are_refused(
    container: Container, unit: int, reg: int, value: int, code: int
) -> None:
    before = container.server.snapshot()
    response = await container.write(unit, reg, value)
    assert response.isError()
    assert response.exception_code == code
    assert container.server.snapshot() == before


async def test_a_partly_illegal_multiple_write_changes_nothing(container: Container) -> None:
    # Speed and start are fine, the stop temperature is not: none of the three is written.
    response = await container.write_many(FCDU, 613, [5000, 4000, 9000])
    assert response.exception_code == ILLEGAL_VALUE
    assert await container.read(FCDU, 613, 3) == [8000, 3500, 3000]
    # Sockets 20..1 of PDU 1, the last one refused.
    response = await container.write_many(PDU1, 289, [2] * 19 + [7])
    assert response.exception_code == ILLEGAL_VALUE
    assert all(container.state.sockets[0])


async def test_illegal_reads_and_functions_are_refused(container: Container) -> None:
    assert await container.read_error(FCDU, 700, 2) == ILLEGAL_ADDRESS
    assert await container.read_error(METER1, 65536) == ILLEGAL_ADDRESS  # "reg 0" = wire 65535
    assert await container.read_error(PDU1, 300, 30) == ILLEGAL_ADDRESS
    coils = await container.client.read_coils(0, count=1, **{UNIT_KEYWORD: FCDU})
    assert coils.isError()
    assert coils.exception_code == ILLEGAL_FUNCTION
    inputs = await container.client.read_input_registers(200, count=1, **{UNIT_KEYWORD: FCDU})
    assert inputs.exception_code == ILLEGAL_FUNCTION


async def test_an_unknown_unit_gets_no_answer(loopback_network: None) -> None:
    container = await open_container("kehua")
    client = AsyncModbusTcpClient(HOST, port=container.server.port, timeout=0.2, retries=0)
    await client.connect()
    try:
        with pytest.raises(ModbusException):
            await client.read_holding_registers(0, count=1, **{UNIT_KEYWORD: 21})
    finally:
        client.close()
        await close_container(container)


async def test_injected_faults_show_in_the_registers(container: Container) -> None:
    kehua = container.server.kind == "kehua"
    state = container.state
    # The clock stands still: the pump fault does not get to heat the water here.
    state.water_tau_s = 60.0
    state.smoke = state.water_ingress = True
    for name in ("fan_fault", "circulating_pump_fault", "power_fault"):
        state.set_fault(name)
    assert (await container.read(HENV, 3, 6))[::5] == [1, 1]
    bitmap = await container.read(FCDU, 291, 10)
    # Bit 3 = MSB-first bit 3 of reg 291's high byte; bit 20 = reg 292, bit 4 of its high byte.
    assert bitmap == [0x1000, 0x0800] + [0] * 8
    assert bitmap == system_error_registers({"fan_fault", "circulating_pump_fault"})
    assert await container.read(FCDU, 96, 5) == [0, 0, 0, 1, 0]
    assert await container.read_one(FCDU, 208) == (200 if kehua else 1)
    assert await container.read_one(FCDU, 607) == 0  # a faulted fan does not run
    snapshot = container.server.snapshot()
    assert snapshot["status"] == "error"
    assert {alarm["name"]: alarm["severity"] for alarm in snapshot["alarms"]} == {
        "circulating_pump_fault": "critical",
        "fan_fault": "high",
        "power_fault": "medium",
    }
    state.set_fault("fan_fault", active=False)
    assert "fan_fault" not in state.alarms()
    with pytest.raises(ValueError, match="unknown container alarm 'fan_failure'"):
        state.set_fault("fan_failure")


def test_every_alarm_has_a_severity_from_the_fact_sheet() -> None:
    assert len(SEVERITY) == 30
    assert set(SEVERITY.values()) == {"critical", "high", "medium"}
    assert SEVERITY["water_immersion_alarm"] == "critical"
    assert SEVERITY["high_inlet_temp_unit"] == "high"
    assert SEVERITY["indoor_temp_humidity_sensor_fault"] == "medium"


async def test_temperatures_follow_ambient_and_cooling(container: Container) -> None:
    state, scale = container.state, 100
    # Full load at 30 °C: without fans the water would reach 50 °C, over the 35 °C start,
    # so the fans run at 80 % and hold it at 30 + (20 - 16 x 0.8) = 37.2 °C.
    assert await container.read_one(FCDU, 607) == 1
    assert await container.read_one(FCDU, 201) / scale == pytest.approx(37.2)
    assert await container.read(FCDU, 291, 1) == [0]
    state.ambient_c = 45.0
    assert await container.read_one(FCDU, 201) / scale == pytest.approx(52.2)
    # Over 40 °C the unit raises high_inlet_temp_unit (bit 8: MSB of reg 291's low byte).
    assert await container.read(FCDU, 291, 1) == [0x0080]
    # Manual fan control: fans off by register, the water warms to the fan-less 65 °C.
    await container.write(FCDU, 604, 0)
    await container.write(FCDU, 607, 0)
    assert await container.read_one(FCDU, 607) == 0
    assert await container.read_one(FCDU, 201) / scale == pytest.approx(65.0)
    await container.write(FCDU, 607, 1)
    assert await container.read_one(FCDU, 201) / scale == pytest.approx(52.2)


def test_the_fan_controller_has_hysteresis() -> None:
    state = ContainerState(
        ambient_c=10.0, water_tau_s=0
    )  # full load: the fan-less water is ambient + 20 K
    state.update(0)
    assert not state.fan_running  # 30 °C < start 35 °C
    state.ambient_c = 16.0
    state.update(1)
    assert state.fan_running  # 36 °C >= 35 °C
    state.ambient_c = 12.0
    state.update(2)
    assert state.fan_running  # 32 °C: above the 30 °C stop, keeps running
    state.ambient_c = 9.0
    state.update(3)
    assert not state.fan_running  # 29 °C <= 30 °C
    assert state.inlet_temp_c() == pytest.approx(29.0)
    with pytest.raises(ValueError, match="no socket 21 on PDU 1"):
        state.set_socket(1, 21, True)


async def test_energy_counts_with_the_clock(container: Container) -> None:
    start = await container.read_one(METER1, 3)
    power_kw = (await container.read_one(METER1, 57)) / 100
    container.clock.now += 360  # 0.1 h
    energy = (await container.read_one(METER1, 3) - start) / 100
    assert energy == pytest.approx(power_kw * 0.1, abs=0.02)


async def test_offline_refuses_connections(container: Container) -> None:
    await container.server.set_offline(True)
    assert container.server.snapshot()["online"] is False
    with pytest.raises(ConnectionRefusedError):
        await asyncio.open_connection(HOST, container.server.port)
    await container.server.set_offline(False)
    container.client.close()
    await container.client.connect()
    assert await container.read_one(FCDU, 601) == 1


async def test_a_container_follows_the_site(loopback_network: None) -> None:
    site = SiteState()
    site.ambient_c, site.grid.frequency_hz, site.grid.voltage_v = 41.0, 49.5, 410.0
    clock = Clock()
    server = ContainerServer("wonderint", ContainerState(), HOST, free_port(HOST), site=site)
    server._clock = clock
    await server.start()
    client = AsyncModbusTcpClient(HOST, port=server.port, timeout=1, retries=0)
    await client.connect()
    container = Container(server, client, clock)
    try:
        assert await container.read_one(GTEMP, 3) == 410
        assert await container.read_one(METER1, 82) == 4950
        assert await container.read_one(METER1, 50) == 41000
        site.ambient_c = 20.0
        assert await container.read_one(GTEMP, 3) == 200
    finally:
        await close_container(container)


def test_parse_containers() -> None:
    assert parse_containers("kehua=1,wonderint=2") == ["kehua", "wonderint", "wonderint"]
    assert parse_containers("Wonderint") == ["wonderint"]
    assert parse_containers("") == []
    with pytest.raises(ValueError, match="unknown kind 'antminer'"):
        parse_containers("antminer=1")
    with pytest.raises(ValueError, match="'kehua=two': the count must be a whole number"):
        parse_containers("kehua=two")
    with pytest.raises(ValueError, match="at most 50"):
        parse_containers("kehua=51")


def test_a_bad_kind_or_threshold_register_is_refused() -> None:
    with pytest.raises(ValueError, match="kehua or wonderint, not 'bitmain'"):
        ContainerServer("bitmain", ContainerState(), HOST, 1)
    with pytest.raises(ValueError, match="fan threshold register must be 610..620, not 700"):
        ContainerServer("kehua", ContainerState(), HOST, 1, fan_threshold_reg=700)


async def test_control_requests_change_the_container(container: Container) -> None:
    server, state = container.server, container.state
    await server.control(
        {
            "smoke": True,
            "socket": {"pdu": 2, "socket": 3, "on": False},
            "fault": "power_fault",
            "socket_kw": 2.5,
        }
    )
    assert await container.read_one(HENV, 3) == 1
    assert await container.read_one(PDU1 + 1, 48) == 2
    assert await container.read_one(FCDU, 99) == 1
    assert (await container.read_one(PDU1 + 1, 81)) / 100 == 19 * 2.5
    await server.control({"fault": "power_fault", "active": False, "enabled": False})
    assert state.faults == set()
    assert await container.read_one(FCDU, 601) == 0
    state.set_fault("fan_fault")
    await server.control({"clear_faults": True, "offline": True})
    assert state.faults == set()
    assert server.snapshot()["online"] is False
    with pytest.raises(ConnectionRefusedError):
        await asyncio.open_connection(HOST, server.port)
    await server.control({"offline": False})
    assert state.offline is False


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"enabled": 1}, '"enabled" must be true or false'),
        ({"smoke": True, "offline": "yes"}, '"offline" must be true or false'),
        ({"socket_kw": 30}, '"socket_kw" must be between 0 and 20'),
        ({"socket_kw": "3"}, '"socket_kw" must be a number'),
        ({"socket": {"pdu": 13, "socket": 1, "on": False}}, '"socket" must be'),
        ({"socket": {"pdu": True, "socket": 1, "on": False}}, '"socket" must be'),
        ({"socket": {"pdu": 1, "socket": 1}}, '"socket" must be'),
        ({"fault": "nope"}, "\"fault\" must be a container alarm name, not 'nope'"),
        ({"fault": "power_fault", "active": "yes"}, '"active" must be true or false'),
        ({"clear_faults": False}, '"clear_faults" must be true'),
        ({"active": True}, "unknown field 'active'"),
        ({"enabled": False, "colour": "red"}, "unknown field 'colour'"),
    ],
)
async def test_bad_control_requests_change_nothing(body: dict[str, Any], message: str) -> None:
    server = ContainerServer("kehua", ContainerState(), HOST, 1)  # never started
    before = server.snapshot()
    with pytest.raises(ValueError, match=message):
        await server.control(body)
    assert server.snapshot() == before
