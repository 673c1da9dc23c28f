"""Faults per unit over real sockets: no answer, exception codes, empty replies, bad values."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from pymodbus.exceptions import ModbusException
import pytest

from simulator.containers import UNIT_NAMES
from tests.simulator.container_client import (
    DEVICE_FAILURE,
    FCDU,
    GATEWAY_NO_RESPONSE,
    GTEMP,
    HENV,
    ILLEGAL_ADDRESS,
    ILLEGAL_FUNCTION,
    METER1,
    PDU1,
    UNIT_KEYWORD,
    Container,
    close_container,
    connect,
    int16,
    open_container,
)


@pytest.fixture(params=["kehua", "wonderint"])
async def container(
    request: pytest.FixtureRequest, loopback_network: None
) -> AsyncIterator[Container]:
    running = await open_container(request.param)
    try:
        yield running
    finally:
        await close_container(running)


async def unit_fault(container: Container, **fault: Any) -> None:
    await container.server.control({"unit_fault": fault})


async def test_a_unit_that_times_out_leaves_the_others_answering(container: Container) -> None:
    await unit_fault(container, unit="pdu03", fault="timeout")
    quick = await connect(container.server, container.clock, timeout=0.3)
    try:
        with pytest.raises(ModbusException):
            await quick.client.read_holding_registers(45, count=20, **{UNIT_KEYWORD: PDU1 + 2})
        # Writes get no answer either, and change nothing.
        await quick.login()
        with pytest.raises(ModbusException):
            await quick.client.write_register(300, 2, **{UNIT_KEYWORD: PDU1 + 2})
        assert all(container.state.sockets[2])
        # The other units answer on the same connection.
        await quick.client.connect()  # an older pymodbus closes on a timeout
        assert await quick.read(PDU1 + 3, 46, 20) == [1] * 20
        assert await quick.read_one(FCDU, 601) == 1
    finally:
        quick.client.close()
    await unit_fault(container, unit=PDU1 + 2, fault=None)
    assert await container.read(PDU1 + 2, 46, 20) == [1] * 20


@pytest.mark.parametrize(
    ("fault", "code"),
    [
        ("illegal_address", ILLEGAL_ADDRESS),
        ("illegal_function", ILLEGAL_FUNCTION),
        ("device_failure", DEVICE_FAILURE),
        ("gateway_no_response", GATEWAY_NO_RESPONSE),
    ],
)
async def test_a_unit_answers_an_exception(container: Container, fault: str, code: int) -> None:
    await unit_fault(container, unit="powermeter02", fault=fault)
    assert await container.read_error(METER1 + 1, 57) == code
    assert await container.read_error(METER1 + 1, 2, 84) == code
    assert await container.read_one(METER1, 2) == 1  # meter 1 is fine
    await unit_fault(container, unit="fcdu", fault=fault)
    # Writes too (the unit does nothing), and the other function codes.
    assert (await container.write(FCDU, 601, 0)).exception_code == code
    assert container.state.enabled is True
    coils = await container.client.read_coils(0, count=1, **{UNIT_KEYWORD: FCDU})
    assert coils.exception_code == code
    await container.server.control({"clear_faults": True})
    assert await container.read_one(METER1 + 1, 2) == 1
    assert not (await container.write(FCDU, 601, 0)).isError()


async def test_an_empty_reply(container: Container) -> None:
    await unit_fault(container, unit="gtemp", fault="empty")
    response = await container.client.read_holding_registers(1, count=3, **{UNIT_KEYWORD: GTEMP})
    # A reply with a byte count of 0: no registers where three were asked for.
    assert not response.isError()
    assert list(response.registers) == []
    assert len(await container.read(HENV, 2, 7)) == 7


async def test_out_of_range_values(container: Container) -> None:
    wonderint = container.server.kind == "wonderint"
    await unit_fault(container, unit="fcdu", fault="out_of_range")
    await unit_fault(container, unit="gtemp", fault="out_of_range")
    await unit_fault(container, unit="powermeter01", fault="out_of_range")
    await unit_fault(container, unit="pdu01", fault="out_of_range")
    # int16 measurements read -32768: -327.68 °C / bar at /100.
    t2, t1, p2, p3, p1, p5 = (int16(v) / 100 for v in await container.read(FCDU, 201, 6))
    assert (t2, t1, p2, p3, p1, p5) == (-327.68,) * 6
    assert int16(await container.read_one(FCDU, 95)) / 100 == -327.68  # dew point
    # Wonderint ambient is /10: -3276.8 °C.
    scale = 10 if wonderint else 100
    assert int16(await container.read_one(GTEMP, 3)) / scale == -32768 / scale
    # uint16 measurements read 65535: 655.35 V, kW, Hz.
    meter = await container.read(METER1, 50, 33)
    assert [meter[0], meter[7], meter[32]] == [65535] * 3
    assert await container.read(PDU1, 74, 4) == [0x8000, 0xFFFF, 0xFFFF, 0xFFFF]
    # Status and switches keep their values; the other units are fine.
    assert await container.read_one(FCDU, 601) == 1
    assert await container.read(PDU1, 46, 2) == [1, 1]
    assert (await container.read_one(METER1 + 1, 82)) / 100 == 50.0
    # A chosen raw value: 655 bar as the register's unsigned reading.
    await unit_fault(container, unit=FCDU, fault="out_of_range", value=65500)
    assert (await container.read_one(FCDU, 203)) / 100 == 655.0
    await unit_fault(container, unit="all", fault=None)
    assert 0 < int16(await container.read_one(FCDU, 201)) / 100 < 60
    assert container.server.snapshot()["unit_faults"] == {}


async def test_every_unit_times_out(container: Container) -> None:
    await unit_fault(container, unit="all", fault="timeout")
    assert set(container.state.unit_faults) == set(UNIT_NAMES.values())
    quick = await connect(container.server, container.clock, timeout=0.3)
    try:
        with pytest.raises(ModbusException):
            await quick.client.read_holding_registers(0, count=1, **{UNIT_KEYWORD: FCDU})
    finally:
        quick.client.close()
    assert container.server.snapshot()["unit_faults"]["1"] == {"fault": "timeout", "value": None}


async def test_unit_faults_as_a_list(container: Container) -> None:
    await container.server.control(
        {
            "unit_fault": [
                {"unit": "henv", "fault": "illegal_address"},
                {"unit": 20, "fault": "device_failure"},
            ]
        }
    )
    assert await container.read_error(HENV, 3) == ILLEGAL_ADDRESS
    assert await container.read_error(PDU1 + 11, 46) == DEVICE_FAILURE


@pytest.mark.parametrize(
    ("fault", "message"),
    [
        ({"unit": 21, "fault": "timeout"}, "no unit 21"),
        ({"unit": "pdu13", "fault": "timeout"}, "no unit 'pdu13'"),
        ({"unit": True, "fault": "timeout"}, "no unit True"),
        ({"unit": 1, "fault": "melt"}, '"fault" must be one of timeout, illegal_function'),
        ({"unit": 1}, '"unit_fault" must be'),
        ({"unit": 1, "fault": "timeout", "colour": 1}, '"unit_fault" must be'),
        ({"unit": 1, "fault": "timeout", "value": 5}, "for out_of_range only"),
        ({"unit": 1, "fault": "out_of_range", "value": 70000}, "raw register 0..65535"),
        ({"unit": 1, "fault": "out_of_range", "value": 1.5}, "raw register 0..65535"),
        ("timeout", '"unit_fault" must be'),
    ],
)
async def test_bad_unit_fault_requests_change_nothing(
    container: Container, fault: object, message: str
) -> None:
    body = {"unit_fault": [{"unit": 2, "fault": "timeout"}, fault]}
    with pytest.raises(ValueError, match=message):
        await container.server.control(body)
    assert container.state.unit_faults == {}
