"""Several read requests in flight: matched by transaction id, and a safe fall back to one.

The peers here misbehave the ways a controller or a TCP-to-RTU gateway can when it gets a
second request before it answered the first: it drops it, answers "server busy", closes
the connection, or answers out of order (valid by transaction id, so accepted). Each ends
with a whole and correct reading; the misbehaving ones with the client reading one
request at a time from then on, said once in the log and by its properties.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
import logging
import struct

import pytest

from custom_components.bitcoin_mining.miningsite.containers import (
    ContainerClient,
    ContainerKind,
    ContainerReading,
)
from custom_components.bitcoin_mining.miningsite.containers.client import (
    DEFAULT_REQUESTS_IN_FLIGHT,
)
from custom_components.bitcoin_mining.miningsite.containers.transport import (
    MalformedReplyError,
    ModbusTcpConnection,
)
from custom_components.bitcoin_mining.miningsite.exceptions import ContainerValueError
from simulator.container_state import ContainerState
from simulator.containers import ContainerServer
from tests.support.container_peer import ContainerPeer
from tests.support.modbus_meter import free_port

HOST = "127.0.0.1"
TIMEOUT = 0.3
LATENCY = 0.002
FCDU, GTEMP, HENV, PDU1 = 1, 2, 3, 9
_HEADER = struct.Struct(">HHHB")


class Misbehaving(asyncio.Protocol):
    """A container (a ContainerPeer's registers and answers) that mishandles requests in flight.

    "drop" takes one request at a time and discards what arrives while it is busy, "latest"
    answers only the last of the requests that arrive together (a gateway option that
    discards the older ones), "busy" answers a second one with exception 6, "close" closes
    the connection on it, "reverse" answers the requests that arrive together in reverse
    order.
    """

    def __init__(self, core: ContainerPeer, mode: str) -> None:
        self.core, self.mode = core, mode
        self.buffer = b""
        self.outstanding = 0
        self.held: list[bytes] = []
        self.reversed_batches = 0
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.core.connections += 1

    def data_received(self, data: bytes) -> None:
        if self.mode == "drop" and self.outstanding:
            return  # busy: what arrives now is lost
        self.buffer += data
        requests = []
        while len(self.buffer) >= _HEADER.size:
            tid, _protocol, length, unit = _HEADER.unpack_from(self.buffer)
            if len(self.buffer) < 6 + length:
                break
            pdu, self.buffer = self.buffer[7 : 6 + length], self.buffer[6 + length :]
            requests.append((tid, unit, pdu))
            if self.mode == "drop":
                self.buffer = b""  # the rest arrived with it, while busy
        if self.mode == "latest":
            requests = requests[-1:]
        for request in requests:
            self.request(*request)

    def request(self, tid: int, unit: int, pdu: bytes) -> None:
        assert self.transport is not None
        if self.outstanding and self.mode == "close":
            self.transport.close()
            return
        if self.outstanding and self.mode == "busy":
            self.transport.write(self.frame(tid, unit, bytes([pdu[0] | 0x80, 6])))
            return
        reply = self.core._answer(unit, pdu)
        assert isinstance(reply, bytes)
        self.outstanding += 1
        frame = self.frame(tid, unit, reply)
        loop = asyncio.get_running_loop()
        if self.mode == "reverse":
            self.held.append(frame)
            if len(self.held) == 1:
                loop.call_later(LATENCY * 5, self.flush)
        else:
            loop.call_later(LATENCY, self.send, frame)

    @staticmethod
    def frame(tid: int, unit: int, reply: bytes) -> bytes:
        return _HEADER.pack(tid, 0, len(reply) + 1, unit) + reply

    def send(self, frame: bytes) -> None:
        self.outstanding -= 1
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(frame)

    def flush(self) -> None:
        held, self.held = self.held, []
        self.reversed_batches += len(held) > 1
        for frame in reversed(held):
            self.send(frame)


@pytest.fixture
def core(peer: ContainerPeer) -> ContainerPeer:
    """A well-behaved container: its registers and answers are the misbehaving peers' too."""
    return peer


def client_for(port: int, core: ContainerPeer, **options: object) -> ContainerClient:
    return ContainerClient(
        HOST,
        port,
        kind=ContainerKind.KEHUA,
        username=core.username,
        password=core.password,
        timeout=TIMEOUT,
        **options,  # type: ignore[arg-type]
    )


async def reference(core: ContainerPeer) -> ContainerReading:
    """The container read one request at a time from the well-behaved peer."""
    client = client_for(core.port, core, requests_in_flight=1)
    try:
        reading = await client.read()
    finally:
        await client.close()
    assert reading.unit_errors == {}
    return reading


async def serve(core: ContainerPeer, mode: str) -> tuple[asyncio.Server, list[Misbehaving]]:
    peers: list[Misbehaving] = []

    def make() -> Misbehaving:
        peers.append(Misbehaving(core, mode))
        return peers[-1]

    server = await asyncio.get_running_loop().create_server(make, HOST, 0)
    return server, peers


def warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        record.getMessage()
        for record in caplog.records
        if record.levelno >= logging.WARNING and record.name.endswith("containers.client")
    ]


@pytest.mark.parametrize(
    ("mode", "reason"),
    [
        ("drop", f"no answer within {TIMEOUT:g} s"),
        ("latest", f"no answer within {TIMEOUT:g} s"),
        ("busy", "server device busy (6)"),
        ("close", "closed the connection"),
    ],
)
async def test_a_container_that_cannot_take_requests_in_flight_is_read_whole(
    core: ContainerPeer, mode: str, reason: str, caplog: pytest.LogCaptureFixture
) -> None:
    expected = await reference(core)
    server, peers = await serve(core, mode)
    client = client_for(server.sockets[0].getsockname()[1], core)
    assert client.requests_in_flight == DEFAULT_REQUESTS_IN_FLIGHT > 1
    assert client.pipelining_failure is None
    try:
        # The read that finds out loses nothing: what failed is read again one at a time.
        assert await client.read() == expected
        assert client.requests_in_flight == 1
        assert client.pipelining_failure is not None
        assert reason in client.pipelining_failure
        assert await client.read() == expected
    finally:
        await client.close()
        server.close()
    (warning,) = warnings(caplog)
    assert "one request at a time from now on" in warning
    assert reason in warning
    if mode == "close":
        assert len(peers) >= 2  # reconnected after the close


async def test_replies_out_of_order_are_matched_by_transaction_id(
    core: ContainerPeer, caplog: pytest.LogCaptureFixture
) -> None:
    expected = await reference(core)
    server, peers = await serve(core, "reverse")
    client = client_for(server.sockets[0].getsockname()[1], core)
    try:
        for _ in range(2):
            assert await client.read() == expected
    finally:
        await client.close()
        server.close()
    assert sum(peer.reversed_batches for peer in peers) > 0  # it did reverse some
    assert client.requests_in_flight == DEFAULT_REQUESTS_IN_FLIGHT
    assert client.pipelining_failure is None
    assert warnings(caplog) == []


async def test_a_silent_unit_is_its_own_fault_not_the_pipelining(
    core: ContainerPeer, caplog: pytest.LogCaptureFixture
) -> None:
    core.faults[PDU1 + 2] = "timeout"
    client = client_for(core.port, core)

    def asked() -> int:
        return sum(req.unit == PDU1 + 2 for req in core.requests)

    try:
        reading = await client.read()
        assert reading.pdus[2] is None
        assert list(reading.unit_errors) == ["pdu03"]
        # Its two blocks in flight with the others, then the first alone: it fails alone too.
        assert asked() == 3
        reading = await client.read()
        assert list(reading.unit_errors) == ["pdu03"]
        # Known to fail alone: in flight with the others only, not tried alone again.
        assert asked() == 5
        del core.faults[PDU1 + 2]
        assert (await client.read()).unit_errors == {}
    finally:
        await client.close()
    assert client.requests_in_flight == DEFAULT_REQUESTS_IN_FLIGHT
    assert client.pipelining_failure is None
    assert [message for message in warnings(caplog) if "in flight" in message] == []


async def test_one_request_at_a_time_when_asked(core: ContainerPeer) -> None:
    expected = await reference(core)
    server, _peers = await serve(core, "drop")
    client = client_for(server.sockets[0].getsockname()[1], core, requests_in_flight=1)
    try:
        assert await client.read() == expected
    finally:
        await client.close()
        server.close()
    assert client.pipelining_failure is None
    for bad in (0, 33, 2.0, True):
        with pytest.raises(ContainerValueError, match="requests in flight must be 1..32"):
            client_for(core.port, core, requests_in_flight=bad)


async def test_the_simulated_container_takes_requests_in_flight(
    loopback_network: None, caplog: pytest.LogCaptureFixture
) -> None:
    state = ContainerState()
    state.set_credentials("admin", "secret")
    server = ContainerServer("wonderint", state, HOST, free_port(HOST))
    await server.start()
    client = ContainerClient(
        HOST, server.port, kind=None, username="admin", password="secret", timeout=1.0
    )
    try:
        for _ in range(2):
            assert (await client.read()).unit_errors == {}
        # A unit made to time out is that unit's fault: the pipelining stays.
        await server.control({"unit_fault": {"unit": PDU1, "fault": "timeout"}})
        for _ in range(2):
            assert list((await client.read()).unit_errors) == ["pdu01"]
    finally:
        await client.close()
        await server.stop()
    assert client.requests_in_flight == DEFAULT_REQUESTS_IN_FLIGHT
    assert client.pipelining_failure is None


# --- the connection itself ---

Answer = Callable[[list[tuple[int, bytes]]], bytes]


async def batch_peer(batch: int, answer: Answer) -> tuple[asyncio.Server, int]:
    """A server that waits for batch requests (transaction id, unit + PDU), then answers."""

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                requests = []
                for _ in range(batch):
                    tid, _protocol, length = struct.unpack(">HHH", await reader.readexactly(6))
                    requests.append((tid, await reader.readexactly(length)))
                writer.write(answer(requests))
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()

    server = await asyncio.start_server(serve, HOST, 0)
    return server, int(server.sockets[0].getsockname()[1])


def reply(tid: int, unit: int, body: bytes) -> bytes:
    return struct.pack(">HHHB", tid, 0, len(body) + 1, unit) + body


def registers(tid: int, request: bytes, value: int) -> bytes:
    """A read reply of count registers, each value (the request: unit, 3, address, count)."""
    count = struct.unpack_from(">H", request, 4)[0]
    return reply(tid, request[0], bytes([3, 2 * count]) + struct.pack(">H", value) * count)


async def test_replies_in_reverse_order_each_reach_their_request(loopback_network: None) -> None:
    def backwards(requests: list[tuple[int, bytes]]) -> bytes:
        return b"".join(registers(tid, body, body[0]) for tid, body in reversed(requests))

    server, port = await batch_peer(3, backwards)
    connection = await ModbusTcpConnection.open(HOST, port)
    try:
        futures = connection.send_reads([(unit, 0, unit) for unit in (1, 2, 3)], TIMEOUT)
        assert [await future for future in futures] == [[1], [2, 2], [3, 3, 3]]
        assert connection.connected
        with pytest.raises(ValueError, match="count must be 1..125"):
            connection.send_reads([(1, 0, 1), (1, 0, 126)], TIMEOUT)
    finally:
        connection.close()
        server.close()


@pytest.mark.parametrize(
    ("answer", "message"),
    [
        # The second reply names another unit: it answers some other request.
        (
            lambda requests: registers(*requests[0], 7)
            + reply(requests[1][0], 9, bytes([3, 2, 0, 1])),
            "unit 9 in reply to unit 2",
        ),
        # More registers than the request asked for.
        (
            lambda requests: registers(*requests[0], 7)
            + reply(requests[1][0], 2, bytes([3, 6, 0, 1, 0, 2, 0, 3])),
            "3 registers in reply to a read of 2",
        ),
    ],
)
async def test_a_reply_to_another_request_fails_all_in_flight(
    loopback_network: None, answer: Answer, message: str
) -> None:
    server, port = await batch_peer(3, answer)
    connection = await ModbusTcpConnection.open(HOST, port)
    try:
        first, second, third = connection.send_reads([(unit, 0, 2) for unit in (1, 2, 3)], TIMEOUT)
        assert await first == [7, 7]
        for future in (second, third):
            with pytest.raises(MalformedReplyError, match=message):
                await future
        assert not connection.connected
    finally:
        connection.close()
        server.close()


async def test_requests_in_flight_time_out_each_at_its_deadline(loopback_network: None) -> None:
    # Only the second of three is answered; the others time out, the late one is dropped.
    server, port = await batch_peer(3, lambda requests: registers(*requests[1], 5))
    connection = await ModbusTcpConnection.open(HOST, port)
    loop = asyncio.get_running_loop()
    try:
        started = loop.time()
        first, second, third = connection.send_reads([(unit, 0, 1) for unit in (1, 2, 3)], TIMEOUT)
        assert await second == [5]
        for future in (first, third):
            with pytest.raises(TimeoutError):
                await future
        assert loop.time() - started >= TIMEOUT
        assert connection.connected
    finally:
        connection.close()
        server.close()
