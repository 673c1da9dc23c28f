"""Register definitions and the grid meter client, against a real Modbus TCP server."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
import logging
import math
import struct
from typing import Any

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
        with pytest.raises(DeviceTimeoutError, match="did not answer within 0.3 s"):
            await meter.read()
        # Ends at the timeout (0.3 s), not never: the bound leaves room for a busy machine.
        assert loop.time() - started < 5
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


@pytest.fixture
async def loop_errors(caplog: pytest.LogCaptureFixture) -> AsyncIterator[list[dict[str, Any]]]:
    """Whatever reaches the event loop's exception handler; the test asserts none did."""
    loop = asyncio.get_running_loop()
    errors: list[dict[str, Any]] = []
    previous = loop.get_exception_handler()
    loop.set_exception_handler(lambda _loop, context: errors.append(context))
    caplog.set_level(logging.DEBUG)
    yield errors
    loop.set_exception_handler(previous)
    fatal = [r.getMessage() for r in caplog.records if "Fatal error" in r.getMessage()]
    assert not fatal, fatal


async def settle(server: MeterServer, replies: int) -> None:
    """Wait until the server sent `replies` replies, then let the client's loop take them in."""
    await server.wait_for_replies(replies)
    for _ in range(5):
        await asyncio.sleep(0.01)


async def test_a_late_reply_times_out_once_and_never_reaches_a_finished_request(
    server: MeterServer, loop_errors: list[dict[str, Any]]
) -> None:
    server.set_frequency(50.0)
    # Margins wide enough that the good reads never race the timeout on a loaded machine.
    meter = GridMeter(server.host, server.port, meter_map=MeterMap(SEL735_FREQUENCY), timeout=1.0)
    try:
        assert (await meter.read()).frequency_hz == 50.0
        sent = server.front.replies_sent
        server.misbehave(late_s=1.5, times=1)
        with pytest.raises(DeviceTimeoutError):
            await meter.read()
        # The late reply is sent after the client gave that connection up.
        await settle(server, sent + 1)
        server.set_frequency(49.9)
        assert (await meter.read()).frequency_hz == pytest.approx(49.9)
        assert (await meter.read()).frequency_hz == pytest.approx(49.9)
    finally:
        await meter.close()
    assert loop_errors == []


async def test_a_reply_sent_twice_is_answered_once(
    server: MeterServer, loop_errors: list[dict[str, Any]]
) -> None:
    """The SEL-735 preset takes two requests per read: a duplicate lands between and during them."""
    server.set_frequency(50.0)
    server.set_holding(370, SEL735_PRESET.power.encode(1000))  # type: ignore[union-attr]
    meter = GridMeter(server.host, server.port, timeout=0.5)
    server.misbehave(duplicate=True)
    try:
        for hz in (50.0, 49.8, 50.1, 49.95, 50.02):
            server.set_frequency(hz)
            reading = await meter.read()
            assert reading.frequency_hz == pytest.approx(hz)
            assert reading.power_w == 1000
        client = meter._client
        await settle(server, server.front.replies_sent)
        assert meter._client is client, "a duplicate does not cost the connection"
        assert client is not None
        assert client.connected
    finally:
        await meter.close()
    assert loop_errors == []


async def test_a_reply_after_the_read_was_cancelled_goes_nowhere(
    server: MeterServer, loop_errors: list[dict[str, Any]]
) -> None:
    server.set_frequency(50.0)
    meter = GridMeter(server.host, server.port, meter_map=MeterMap(SEL735_FREQUENCY), timeout=2)
    try:
        await meter.read()
        sent = server.front.replies_sent
        server.misbehave(late_s=0.2, times=1)
        read = asyncio.create_task(meter.read())
        await asyncio.sleep(0.05)  # the request is out, its reply held back
        read.cancel()
        with pytest.raises(asyncio.CancelledError):
            await read
        assert meter._client is None, "cancelled mid-request, the connection is dropped"
        await settle(server, sent + 1)
        assert (await meter.read()).frequency_hz == 50.0
    finally:
        await meter.close()
    assert loop_errors == []


def holding_reply(tid: int, registers: list[int], unit_id: int = 1) -> bytes:
    """A Modbus TCP reply to a read of holding registers, as a meter sends it."""
    pdu = bytes([3, 2 * len(registers)]) + b"".join(r.to_bytes(2, "big") for r in registers)
    return struct.pack(">HHHB", tid, 0, len(pdu) + 1, unit_id) + pdu


async def test_a_reply_arriving_as_its_request_ends_is_dropped(
    server: MeterServer, loop_errors: list[dict[str, Any]]
) -> None:
    """The reply is taken off the socket in the loop turn that ended its request.

    This is how the first fresh-clone run failed: a test's fake clock fired the read's
    timeout while the reply was already read and queued, and pymodbus 3.8 raised
    InvalidStateError inside data_received. Here the request is ended and the reply
    handed to the transport in the same turn, as the loop would.
    """
    server.set_frequency(50.0)
    meter = GridMeter(server.host, server.port, meter_map=MeterMap(SEL735_FREQUENCY), timeout=2)
    try:
        await meter.read()
        client = meter._client
        assert client is not None
        server.misbehave(silent=True, times=1)
        read = asyncio.create_task(meter.read())
        await asyncio.sleep(0.05)  # the request is out; the meter keeps quiet
        manager: Any = client.ctx
        manager.response_future.cancel()
        manager.data_received(holding_reply(manager.next_tid, uint32_high_first(5000)))
        manager.data_received(holding_reply(manager.next_tid, uint32_high_first(5000)))
        with pytest.raises((asyncio.CancelledError, DeviceConnectionError)):
            await read
        assert meter._client is None
        assert (await meter.read()).frequency_hz == 50.0
    finally:
        await meter.close()
    assert loop_errors == []


async def test_a_stray_reply_never_answers_the_next_request(
    server: MeterServer, loop_errors: list[dict[str, Any]]
) -> None:
    """A reply for an earlier transaction, arriving while a request waits, is not its answer."""
    server.set_frequency(50.0)
    meter = GridMeter(server.host, server.port, meter_map=MeterMap(SEL735_FREQUENCY), timeout=2)
    try:
        await meter.read()
        client = meter._client
        assert client is not None
        server.misbehave(late_s=0.3, times=1)
        requested = server.front.requests_relayed
        read = asyncio.create_task(meter.read())
        await server.wait_for_requests(requested + 1)  # the request is out
        manager: Any = client.ctx
        # An old transaction's reply, with a frequency that is not the meter's.
        manager.data_received(holding_reply(manager.next_tid - 1, uint32_high_first(4000)))
        assert (await read).frequency_hz == 50.0
        assert meter._client is client
    finally:
        await meter.close()
    assert loop_errors == []


@pytest.mark.parametrize("times", [1, None])
async def test_garbage_is_a_protocol_error_then_reads_recover(
    server: MeterServer, loop_errors: list[dict[str, Any]], times: int | None
) -> None:
    server.set_frequency(50.0)
    meter = GridMeter(server.host, server.port, meter_map=MeterMap(SEL735_FREQUENCY), timeout=2)
    try:
        server.misbehave(garbage=True, times=times)
        with pytest.raises(DeviceProtocolError, match="does not decode"):
            await meter.read()
        assert meter._client is None, "after garbage the stream cannot be trusted"
        server.behave()
        assert (await meter.read()).frequency_hz == 50.0
    finally:
        await meter.close()
    assert loop_errors == []


async def test_a_meter_gone_silent_times_out_and_comes_back(
    server: MeterServer, loop_errors: list[dict[str, Any]]
) -> None:
    server.set_frequency(50.0)
    meter = GridMeter(server.host, server.port, meter_map=MeterMap(SEL735_FREQUENCY), timeout=1.0)
    try:
        server.misbehave(silent=True)
        for _ in range(2):
            with pytest.raises(DeviceTimeoutError):
                await meter.read()
        server.behave()
        assert (await meter.read()).frequency_hz == 50.0
    finally:
        await meter.close()
    assert loop_errors == []
