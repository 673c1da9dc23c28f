"""The containers' Modbus TCP connection against real peers: the scripted container, raw bytes."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
import struct

import pytest

from custom_components.bitcoin_mining.miningsite.containers.transport import (
    ExceptionReplyError,
    MalformedReplyError,
    ModbusTcpConnection,
)
from tests.support.container_peer import CHALLENGE, ContainerPeer, expected_login
from tests.support.modbus_meter import free_port

HOST = "127.0.0.1"
TIMEOUT = 0.3
FCDU, GTEMP, HENV, PDU1 = 1, 2, 3, 9


@pytest.fixture
async def connection(peer: ContainerPeer) -> AsyncIterator[ModbusTcpConnection]:
    opened = await ModbusTcpConnection.open(HOST, peer.port)
    try:
        yield opened
    finally:
        opened.close()


async def test_reads_and_writes(connection: ModbusTcpConnection, peer: ContainerPeer) -> None:
    # Wire address = reg - 1: the challenge at reg 301.
    assert await connection.read_holding_registers(FCDU, 300, 4, TIMEOUT) == list(CHALLENGE)
    pdu = peer.registers[PDU1]
    assert await connection.read_holding_registers(PDU1, 1, 80, TIMEOUT) == [
        pdu[reg] for reg in range(2, 82)
    ]
    await connection.write_register(PDU1, 307, 2, TIMEOUT)  # socket 1 off (reg 308)
    assert peer.registers[PDU1][46] == 2
    login = expected_login(peer.username, peer.password)
    await connection.write_registers(FCDU, 304, list(struct.unpack(">16H", login)), TIMEOUT)
    assert peer.accepted_logins == 1
    assert [(req.unit, req.function, req.reg) for req in peer.requests] == [
        (FCDU, 3, 301),
        (PDU1, 3, 2),
        (PDU1, 6, 308),
        (FCDU, 16, 305),
    ]
    assert connection.connected


@pytest.mark.parametrize(("fault", "code"), [("illegal_address", 2), ("illegal_function", 1)])
async def test_an_exception_reply_carries_its_code(
    connection: ModbusTcpConnection, peer: ContainerPeer, fault: str, code: int
) -> None:
    peer.faults[GTEMP] = fault
    with pytest.raises(ExceptionReplyError) as caught:
        await connection.read_holding_registers(GTEMP, 1, 3, TIMEOUT)
    assert caught.value.code == code
    # A refusal is an answer: the connection goes on.
    assert await connection.read_holding_registers(HENV, 1, 7, TIMEOUT)


async def test_a_refused_write(connection: ModbusTcpConnection, peer: ContainerPeer) -> None:
    peer.refuse_login = True
    with pytest.raises(ExceptionReplyError) as caught:
        await connection.write_registers(FCDU, 304, [0] * 16, TIMEOUT)
    assert caught.value.code == 3
    peer.refuse_next_writes = 1
    with pytest.raises(ExceptionReplyError):
        await connection.write_register(FCDU, 600, 0, TIMEOUT)


async def test_short_and_empty_replies_are_returned_as_they_are(
    connection: ModbusTcpConnection, peer: ContainerPeer
) -> None:
    peer.faults[PDU1] = "empty"
    assert await connection.read_holding_registers(PDU1, 1, 80, TIMEOUT) == []
    peer.faults[PDU1] = "short"
    assert len(await connection.read_holding_registers(PDU1, 1, 80, TIMEOUT)) == 40


async def test_no_answer_times_out_and_its_late_reply_is_dropped(
    connection: ModbusTcpConnection, peer: ContainerPeer
) -> None:
    peer.unit_latency[GTEMP] = TIMEOUT * 1.5
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(TimeoutError):
        await connection.read_holding_registers(GTEMP, 1, 3, TIMEOUT)
    assert loop.time() - started >= TIMEOUT
    # The ambient reply lands while this request waits: it is not this one's answer.
    henv = await connection.read_holding_registers(HENV, 1, 7, TIMEOUT)
    assert henv == [peer.registers[HENV][reg] for reg in range(2, 9)]
    assert connection.connected


async def test_the_deadline_is_per_request(
    connection: ModbusTcpConnection, peer: ContainerPeer
) -> None:
    # Each reply comes in well within the timeout, the requests together take longer: one
    # timer follows the requests' deadlines, it does not time the sequence.
    peer.latency_s = TIMEOUT / 4
    loop = asyncio.get_running_loop()
    started = loop.time()
    for _ in range(8):
        await connection.read_holding_registers(HENV, 1, 7, TIMEOUT)
    assert loop.time() - started > TIMEOUT
    # After an idle spell the next silent request still waits its whole timeout.
    await asyncio.sleep(TIMEOUT * 1.2)
    peer.faults[GTEMP] = "timeout"
    started = loop.time()
    with pytest.raises(TimeoutError):
        await connection.read_holding_registers(GTEMP, 1, 3, TIMEOUT)
    assert loop.time() - started >= TIMEOUT
    # A shorter timeout than the one the timer follows is kept too.
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(connection.read_holding_registers(GTEMP, 1, 3, 0.05), 1.0)


async def test_a_cancelled_request_leaves_the_connection_usable(
    connection: ModbusTcpConnection, peer: ContainerPeer
) -> None:
    peer.unit_latency[PDU1] = 0.2
    task = asyncio.create_task(connection.read_holding_registers(PDU1, 1, 80, TIMEOUT))
    while not peer.requests:  # noqa: ASYNC110 - the peer's log
        await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await connection.read_holding_registers(GTEMP, 1, 3, TIMEOUT) == [
        peer.registers[GTEMP][reg] for reg in range(2, 5)
    ]


async def test_a_closed_connection_fails_at_once(
    connection: ModbusTcpConnection, peer: ContainerPeer
) -> None:
    peer.faults[GTEMP] = "close"
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(ConnectionResetError, match="closed the connection"):
        await connection.read_holding_registers(GTEMP, 1, 3, 5.0)
    assert loop.time() - started < 5.0
    assert not connection.connected
    with pytest.raises(ConnectionResetError):
        await connection.read_holding_registers(HENV, 1, 7, TIMEOUT)


async def test_bytes_that_are_not_modbus_drop_the_connection(
    connection: ModbusTcpConnection, peer: ContainerPeer
) -> None:
    peer.faults[GTEMP] = "garbled"
    with pytest.raises(MalformedReplyError, match="protocol id 39321"):
        await connection.read_holding_registers(GTEMP, 1, 3, TIMEOUT)
    assert not connection.connected


async def test_a_byte_count_that_does_not_fit(
    connection: ModbusTcpConnection, peer: ContainerPeer
) -> None:
    peer.faults[PDU1] = "bad_count"
    with pytest.raises(MalformedReplyError, match="byte count 164 in a reply of 160 data bytes"):
        await connection.read_holding_registers(PDU1, 1, 80, TIMEOUT)


async def test_a_write_acknowledgement_too_short(
    connection: ModbusTcpConnection, peer: ContainerPeer
) -> None:
    peer.truncate_write_acks = True
    with pytest.raises(MalformedReplyError, match="acknowledgement of 1 bytes"):
        await connection.write_register(FCDU, 600, 1, TIMEOUT)


async def test_replies_in_two_pieces(connection: ModbusTcpConnection, peer: ContainerPeer) -> None:
    peer.split_replies = True
    assert len(await connection.read_holding_registers(PDU1, 157, 34, TIMEOUT)) == 34
    await connection.write_register(PDU1, 300, 2, TIMEOUT)


# --- raw replies a well-behaved peer never sends ---

Reply = Callable[[int, bytes], bytes]


async def raw_peer(reply: Reply) -> tuple[asyncio.Server, int]:
    """A server that answers each request (transaction id, PDU) with reply's bytes."""

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                tid, _protocol, length = struct.unpack(">HHH", await reader.readexactly(6))
                body = await reader.readexactly(length)
                writer.write(reply(tid, body))
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()

    server = await asyncio.start_server(serve, HOST, 0)
    return server, int(server.sockets[0].getsockname()[1])


def frame(tid: int, body: bytes) -> bytes:
    return struct.pack(">HHH", tid, 0, len(body)) + body


@pytest.mark.parametrize(
    ("reply", "message"),
    [
        (
            lambda tid, body: frame(tid, bytes([body[0], 4, 2, 0, 1])),
            "function 4 in reply to function 3",
        ),
        (lambda tid, body: frame(tid, bytes([body[0]])), "a frame of length 1"),
        (lambda tid, body: frame(tid, bytes([body[0], 3, 3, 0, 1, 2])), "byte count 3"),
        (lambda tid, body: frame(tid, bytes([body[0], 3])), "without its byte count"),
    ],
)
async def test_replies_that_do_not_parse(
    loopback_network: None, reply: Reply, message: str
) -> None:
    server, port = await raw_peer(reply)
    connection = await ModbusTcpConnection.open(HOST, port)
    try:
        with pytest.raises(MalformedReplyError, match=message):
            await connection.read_holding_registers(1, 0, 1, TIMEOUT)
        assert not connection.connected
    finally:
        connection.close()
        server.close()


async def test_a_stray_reply_before_the_answer_in_one_segment(loopback_network: None) -> None:
    def reply(tid: int, body: bytes) -> bytes:
        stray = frame((tid - 1) & 0xFFFF, bytes([body[0], 3, 2, 0xDE, 0xAD]))
        return stray + frame(tid, bytes([body[0], 3, 2, 0x12, 0x34]))

    server, port = await raw_peer(reply)
    connection = await ModbusTcpConnection.open(HOST, port)
    try:
        for _ in range(3):
            assert await connection.read_holding_registers(1, 0, 1, TIMEOUT) == [0x1234]
    finally:
        connection.close()
        server.close()


async def test_bad_requests_and_nothing_listening(
    connection: ModbusTcpConnection, loopback_network: None
) -> None:
    for count in (0, 126):
        with pytest.raises(ValueError, match="count must be 1..125"):
            await connection.read_holding_registers(1, 0, count, TIMEOUT)
    with pytest.raises(ValueError, match="write 1..123 registers"):
        await connection.write_registers(1, 0, [], TIMEOUT)
    with pytest.raises(ConnectionRefusedError):
        await ModbusTcpConnection.open(HOST, free_port(HOST))
