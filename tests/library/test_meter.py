"""Register definitions and the grid meter client, against a real Modbus TCP server."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
import math

from hypothesis import given, strategies as st
import pytest

from custom_components.bitcoin_mining.miningsite.exceptions import (
    DeviceConnectionError,
    DeviceProtocolError,
    DeviceTimeoutError,
)
from custom_components.bitcoin_mining.miningsite.meter import (
    SEL735_FREQUENCY,
    SEL735_PRESET,
    ByteOrder,
    DataType,
    GridMeter,
    MeterMap,
    RegisterSpec,
    RegisterType,
    WordOrder,
    validate_frequency,
)
from tests.support.modbus_meter import MeterServer, free_port, uint32_high_first

RANGES = {
    DataType.INT16: (-32768, 32767),
    DataType.UINT16: (0, 65535),
    DataType.INT32: (-(2**31), 2**31 - 1),
    DataType.UINT32: (0, 2**32 - 1),
}


@given(
    data_type=st.sampled_from([t for t in DataType if t is not DataType.FLOAT32]),
    word_order=st.sampled_from(WordOrder),
    byte_order=st.sampled_from(ByteOrder),
    fraction=st.floats(0, 1),
)
def test_integer_types_round_trip(
    data_type: DataType, word_order: WordOrder, byte_order: ByteOrder, fraction: float
) -> None:
    low, high = RANGES[data_type]
    raw = int(low + (high - low) * fraction)
    spec = RegisterSpec(10, data_type=data_type, word_order=word_order, byte_order=byte_order)
    registers = spec.encode(raw)
    assert len(registers) == spec.count
    assert all(0 <= r <= 0xFFFF for r in registers)
    assert spec.decode(registers) == raw


@given(
    value=st.floats(allow_nan=False, allow_infinity=False, width=32),
    word_order=st.sampled_from(WordOrder),
)
def test_float32_round_trips(value: float, word_order: WordOrder) -> None:
    spec = RegisterSpec(0, data_type=DataType.FLOAT32, word_order=word_order)
    assert spec.decode(spec.encode(value)) == value


def test_known_encodings() -> None:
    assert SEL735_FREQUENCY.decode([0, 5000]) == pytest.approx(50.0)
    assert SEL735_FREQUENCY.encode(59.97) == [0, 5997]
    low_first = RegisterSpec(
        0, data_type=DataType.UINT32, word_order=WordOrder.LOW_FIRST, scale=0.01
    )
    assert low_first.decode([5000, 0]) == pytest.approx(50.0)
    little = RegisterSpec(0, data_type=DataType.UINT16, byte_order=ByteOrder.LITTLE)
    assert little.decode([0x3412]) == 0x1234
    signed = RegisterSpec(0, data_type=DataType.INT16, scale=0.1, offset=-5)
    assert signed.decode([0xFFFF]) == pytest.approx(-5.1)
    nan = RegisterSpec(0, data_type=DataType.FLOAT32)
    assert math.isnan(nan.decode([0x7FC0, 0]))


def test_decode_needs_the_right_number_of_registers() -> None:
    with pytest.raises(DeviceProtocolError, match="expected 2 registers, got 1"):
        SEL735_FREQUENCY.decode([5000])


def test_one_based_addresses() -> None:
    spec = RegisterSpec(901, address_base=1, data_type=DataType.UINT32)
    assert spec.wire_address == 900


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"address": 0, "address_base": 1}, "outside 0..65535"),
        ({"address": 65535, "data_type": "uint32"}, "outside 0..65535"),
        ({"address": 1, "address_base": 2}, "address base must be 0 or 1"),
        ({"address": 1, "scale": 0}, "scale must be a non-zero number"),
        ({"address": 1, "scale": float("nan")}, "scale must be a non-zero number"),
        ({"address": 1, "offset": float("inf")}, "offset must be a number"),
        ({"address": 1, "data_type": "int64"}, "unknown data type 'int64'"),
        ({"address": 1, "register_type": "coil"}, "unknown register type 'coil'"),
        ({"address": 1, "word_order": "middle"}, "unknown word order"),
        ({"address": 1, "byte_order": "middle"}, "unknown byte order"),
    ],
)
def test_bad_definitions_are_refused(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        RegisterSpec(**kwargs)  # type: ignore[arg-type]


def test_stored_form_round_trips_and_rejects_junk() -> None:
    spec = RegisterSpec(
        101,
        1,
        RegisterType.INPUT,
        DataType.FLOAT32,
        WordOrder.LOW_FIRST,
        ByteOrder.LITTLE,
        2.0,
        1.0,
    )
    stored = spec.as_dict()
    assert stored["register_type"] == "input"
    assert RegisterSpec.from_dict(stored) == spec
    with pytest.raises(ValueError, match="unknown register keys: colour"):
        RegisterSpec.from_dict(stored | {"colour": "red"})
    with pytest.raises(ValueError, match="needs an address"):
        RegisterSpec.from_dict({"data_type": "uint16"})


@pytest.mark.parametrize("hz", [float("nan"), float("inf"), 0.0, 5.0, 655.35, 39.99, 70.01])
def test_implausible_frequencies(hz: float) -> None:
    with pytest.raises(DeviceProtocolError, match="plausible frequency"):
        validate_frequency(hz, 50)


def test_plausible_frequency_passes() -> None:
    assert validate_frequency(49.3, 50) == 49.3
    assert validate_frequency(59.94, 60) == 59.94


@pytest.fixture
async def server(loopback_network: None) -> AsyncIterator[MeterServer]:
    meter = MeterServer()
    await meter.start()
    yield meter
    await meter.stop()


async def test_sel735_preset_reads_every_quantity(server: MeterServer) -> None:
    server.set_frequency(49.87)
    server.set_holding(350, SEL735_PRESET.current.encode(812.34))  # type: ignore[union-attr]
    server.set_holding(364, SEL735_PRESET.voltage.encode(401.5))  # type: ignore[union-attr]
    server.set_holding(370, SEL735_PRESET.power.encode(-123456))  # type: ignore[union-attr]
    meter = GridMeter(server.host, server.port)
    try:
        reading = await meter.read()
    finally:
        await meter.close()
    assert reading.frequency_hz == pytest.approx(49.87)
    assert reading.current_a == pytest.approx(812.34)
    assert reading.voltage_v == pytest.approx(401.5)
    assert reading.power_w == -123456


async def test_input_registers_and_reuse_of_the_connection(server: MeterServer) -> None:
    spec = RegisterSpec(20, register_type=RegisterType.INPUT, data_type=DataType.UINT16, scale=0.01)
    server.set_input(20, [6001])
    meter = GridMeter(server.host, server.port, meter_map=MeterMap(spec))
    try:
        assert (await meter.read()).frequency_hz == pytest.approx(60.01)
        client = meter._client
        server.set_input(20, [5995])
        assert (await meter.read()).frequency_hz == pytest.approx(59.95)
        assert meter._client is client, "one connection serves every poll"
        assert (await meter.read()).voltage_v is None
    finally:
        await meter.close()


async def test_meter_offline_then_back(server: MeterServer) -> None:
    server.set_frequency(50.0)
    meter = GridMeter(server.host, server.port, timeout=0.5)
    try:
        await meter.read()
        await server.stop()
        with pytest.raises(DeviceConnectionError):
            await meter.read()
        await server.start()
        assert (await meter.read()).frequency_hz == 50.0
    finally:
        await meter.close()


async def test_nobody_listening(loopback_network: None) -> None:
    meter = GridMeter("127.0.0.1", free_port(), timeout=0.5)
    with pytest.raises(DeviceConnectionError) as err:
        await meter.read()
    assert not isinstance(err.value, DeviceTimeoutError)


async def test_silent_meter_times_out_within_the_timeout(loopback_network: None) -> None:
    held: list[asyncio.StreamWriter] = []

    async def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)

    silent = await asyncio.start_server(hold, "127.0.0.1", 0)
    meter = GridMeter("127.0.0.1", silent.sockets[0].getsockname()[1], timeout=0.3)
    loop = asyncio.get_running_loop()
    started = loop.time()
    try:
        with pytest.raises(DeviceTimeoutError):
            await meter.read()
        assert loop.time() - started < 1.0
    finally:
        for writer in held:
            writer.close()
        silent.close()
        await silent.wait_closed()


async def test_register_the_meter_lacks_is_a_protocol_error(server: MeterServer) -> None:
    meter = GridMeter(
        server.host, server.port, meter_map=MeterMap(RegisterSpec(5000, data_type=DataType.UINT32))
    )
    try:
        with pytest.raises(DeviceProtocolError, match="refused holding registers 5000..5001"):
            await meter.read()
    finally:
        await meter.close()


async def test_far_apart_registers_take_separate_requests(server: MeterServer) -> None:
    server.set_frequency(50.5)
    server.set_holding(1500, uint32_high_first(4242))
    meter_map = MeterMap(SEL735_FREQUENCY, power=RegisterSpec(1500, data_type=DataType.UINT32))
    meter = GridMeter(server.host, server.port, meter_map=meter_map)
    try:
        reading = await meter.read()
    finally:
        await meter.close()
    assert (reading.frequency_hz, reading.power_w) == (pytest.approx(50.5), 4242)


async def test_optional_quantities_the_meter_lacks_read_as_none(server: MeterServer) -> None:
    server.set_frequency(50.02)
    meter_map = MeterMap(SEL735_FREQUENCY, power=RegisterSpec(5000, data_type=DataType.INT32))
    meter = GridMeter(server.host, server.port, meter_map=meter_map)
    try:
        reading = await meter.read()
    finally:
        await meter.close()
    assert reading.frequency_hz == pytest.approx(50.02)
    assert reading.power_w is None
    assert meter.unavailable_quantities == {"power"}
