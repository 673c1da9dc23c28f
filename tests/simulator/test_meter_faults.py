"""The simulated meter's wire faults: late, twice, garbage, silent, set over the control API."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
import struct

import pytest

from simulator import Site, SiteConfig
from simulator.meter import GARBAGE, METER_FAULTS

from .test_site import FAST, control

FREQUENCY = 900


def read_request(tid: int, address: int = FREQUENCY, count: int = 2) -> bytes:
    """A Modbus TCP read of holding registers from unit 1."""
    return struct.pack(">HHHBBHH", tid, 0, 6, 1, 3, address, count)


async def read_frame(reader: asyncio.StreamReader) -> bytes:
    """One Modbus TCP frame as it comes off the wire."""
    header = await reader.readexactly(6)
    (length,) = struct.unpack(">H", header[4:6])
    return header + await reader.readexactly(length)


def frequency_of(frame: bytes) -> float:
    """The frequency in a reply to read_request()."""
    tid, protocol, _, unit, function, size = struct.unpack(">HHHBBB", frame[:9])
    assert (protocol, unit, function, size) == (0, 1, 3, 4)
    high, low = struct.unpack(">HH", frame[9:13])
    return ((high << 16) | low) / 100


@pytest.fixture
async def site(loopback_network: None) -> AsyncIterator[Site]:
    async with Site(SiteConfig(**FAST)) as running:
        yield running


@pytest.fixture
async def wire(site: Site) -> AsyncIterator[tuple[asyncio.StreamReader, asyncio.StreamWriter]]:
    assert site.meter_address is not None
    reader, writer = await asyncio.open_connection(*site.meter_address)
    yield reader, writer
    writer.close()


async def fault(site: Site, body: dict[str, object]) -> None:
    status, answer = await control(site, "POST", "/api/faults", body)
    assert status == 200, answer


async def test_a_healthy_meter_answers_once_at_once(
    site: Site, wire: tuple[asyncio.StreamReader, asyncio.StreamWriter]
) -> None:
    reader, writer = wire
    writer.write(read_request(7))
    frame = await asyncio.wait_for(read_frame(reader), 2)
    assert frame[:2] == b"\x00\x07"
    assert abs(frequency_of(frame) - 50.0) <= 0.021
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(reader.read(1), 0.2)
    assert site.meter is not None
    assert site.meter.active_faults() == []


async def test_late_replies_come_after_the_delay(
    site: Site, wire: tuple[asyncio.StreamReader, asyncio.StreamWriter]
) -> None:
    await fault(site, {"fault": "meter_late", "late_s": 0.4})
    assert site.meter is not None
    assert site.meter.active_faults() == ["late"]
    reader, writer = wire
    loop = asyncio.get_running_loop()
    started = loop.time()
    writer.write(read_request(1))
    frame = await asyncio.wait_for(read_frame(reader), 5)
    # Timed from before the request was sent: an early reply could not take this long.
    assert loop.time() - started >= 0.4, "the reply came early"
    assert frame[:2] == b"\x00\x01"


async def test_duplicate_replies_come_twice(
    site: Site, wire: tuple[asyncio.StreamReader, asyncio.StreamWriter]
) -> None:
    await fault(site, {"fault": "meter_duplicate"})
    reader, writer = wire
    writer.write(read_request(3))
    first = await asyncio.wait_for(read_frame(reader), 2)
    second = await asyncio.wait_for(read_frame(reader), 2)
    assert first == second
    assert first[:2] == b"\x00\x03"


async def test_garbage_replaces_the_reply(
    site: Site, wire: tuple[asyncio.StreamReader, asyncio.StreamWriter]
) -> None:
    await fault(site, {"fault": "meter_garbage"})
    reader, writer = wire
    writer.write(read_request(4))
    data = await asyncio.wait_for(reader.readexactly(len(GARBAGE)), 2)
    assert data == GARBAGE
    assert struct.unpack(">H", data[2:4])[0] != 0, "not Modbus TCP: the protocol id is not 0"


async def test_a_silent_meter_keeps_the_connection_and_answers_once_cleared(
    site: Site, wire: tuple[asyncio.StreamReader, asyncio.StreamWriter]
) -> None:
    await fault(site, {"fault": "meter_silent"})
    reader, writer = wire
    writer.write(read_request(5))
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(reader.read(1), 0.3)
    assert not reader.at_eof()
    await fault(site, {"clear": True})
    assert site.meter is not None
    assert site.meter.active_faults() == []
    writer.write(read_request(6))
    frame = await asyncio.wait_for(read_frame(reader), 2)
    assert frame[:2] == b"\x00\x06"


async def test_a_late_reply_to_a_client_that_left_does_not_stop_the_meter(site: Site) -> None:
    await fault(site, {"fault": "meter_late", "late_s": 0.2})
    assert site.meter_address is not None
    reader, writer = await asyncio.open_connection(*site.meter_address)
    writer.write(read_request(1))
    await writer.drain()
    writer.close()  # gone before the reply
    await asyncio.sleep(0.4)
    await fault(site, {"fault": "meter_late", "active": False})
    reader, writer = await asyncio.open_connection(*site.meter_address)
    try:
        writer.write(read_request(2))
        frame = await asyncio.wait_for(read_frame(reader), 2)
        assert frame[:2] == b"\x00\x02"
    finally:
        writer.close()


async def test_faults_combine_and_clear_one_by_one(site: Site) -> None:
    for name in METER_FAULTS:
        await fault(site, {"fault": f"meter_{name}"})
    assert site.meter is not None
    assert site.meter.active_faults() == list(METER_FAULTS)
    await fault(site, {"fault": "meter_garbage", "active": False})
    assert "garbage" not in site.meter.active_faults()
    await fault(site, {"clear": True})
    assert site.meter.active_faults() == []


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"fault": "meter_late", "late_s": 0}, '"late_s" must be between'),
        ({"fault": "meter_late", "late_s": 601}, '"late_s" must be between'),
        ({"fault": "meter_late", "late_s": "soon"}, '"late_s" must be a number'),
        ({"fault": "meter_silent", "active": "yes"}, '"active" must be true or false'),
        ({"fault": "meter_slow"}, "meter_late, meter_duplicate, meter_garbage, meter_silent"),
    ],
)
async def test_bad_meter_fault_requests_are_refused(
    site: Site, body: dict[str, object], message: str
) -> None:
    status, answer = await control(site, "POST", "/api/faults", body)
    assert status == 400
    assert message in str(answer)
    assert site.meter is not None
    assert site.meter.active_faults() == []


def test_unknown_faults_and_delays_are_refused_in_code(site: Site) -> None:
    assert site.meter is not None
    with pytest.raises(ValueError, match="unknown meter fault 'slow'"):
        site.meter.set_fault("slow", True)
    with pytest.raises(ValueError, match="late_s must be"):
        site.meter.set_fault("late", True, late_s=0)
    with pytest.raises(ValueError, match="late_s must be"):
        site.meter.set_fault("late", True, late_s=float("nan"))
