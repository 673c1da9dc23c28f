"""A lean Modbus TCP client connection for the containers: FC03, FC06, FC16, pipelined.

A container read is 40 small requests; through pymodbus each cost about 150 µs of CPU (its
request machinery, a timer per request, and ours on top), so 10 containers took 60-80 ms
per read. Here a request is one frame written and one future: the MBAP header packed and
parsed with struct, and one timer per connection that follows the earliest deadline instead
of a timer armed and cancelled per request. The grid meter keeps pymodbus.

Several requests may be in flight, as Modbus TCP allows: each is keyed by its transaction
id and its reply matched by it, in whatever order the replies come. A reply must echo its
request's unit id and function and carry no more registers than asked, or the framing is
not trusted (several in flight, a reply answering the wrong request is how a server that
cannot take them shows it). Replies that answer no request in flight (a timed-out or
cancelled one, a duplicate) are dropped. A reply that does not parse fails every request in
flight with MalformedReplyError, and the connection with them: after bytes that are not
Modbus TCP, the framing cannot be trusted. How many requests go out at once is the caller's
choice (client.py): writes go one at a time.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
import functools
import struct

from ..exceptions import DeviceProtocolError

READ_HOLDING_REGISTERS = 3
WRITE_SINGLE_REGISTER = 6
WRITE_MULTIPLE_REGISTERS = 16
MAX_READ_COUNT = 125  # registers per FC03 request, by the Modbus specification
MAX_WRITE_COUNT = 123  # registers per FC16 request

# MBAP header: transaction id, protocol id (0), length of what follows (unit id + PDU).
_MBAP = struct.Struct(">HHH")
_MBAP_SIZE = _MBAP.size
# A request: the MBAP header, unit id, function code, then two 16-bit fields.
_REQUEST = struct.Struct(">HHHBBHH")
_WRITE_MANY = struct.Struct(">HHHBBHHB")

# The registers of a read reply, by count (a cached Struct skips struct's format lookup).
_registers = functools.cache(lambda count: struct.Struct(f">{count}H"))

type Reply = list[int] | None
# A request in flight: its future, unit id, function, registers asked (reads), deadline.
type _Pending = tuple[asyncio.Future[Reply], int, int, int, float]


class MalformedReplyError(DeviceProtocolError):
    """Bytes from the container that are not the Modbus TCP reply asked for."""


class ExceptionReplyError(DeviceProtocolError):
    """The container answered with a Modbus exception code."""

    def __init__(self, code: int) -> None:
        """Keep the exception code."""
        super().__init__(f"exception code {code}")
        self.code = code


class ModbusTcpConnection(asyncio.Protocol):
    """One Modbus TCP connection; several requests may be in flight, matched by transaction id."""

    def __init__(self) -> None:
        """Not connected yet: use open()."""
        self._loop = asyncio.get_running_loop()
        self._transport: asyncio.Transport | None = None
        self._buffer = b""
        self._tid = 0
        self._pending: dict[int, _Pending] = {}
        # One timer per connection, due at (or before) the earliest deadline in flight.
        self._timer: asyncio.TimerHandle | None = None
        self._lost: Exception | None = None

    @classmethod
    async def open(cls, host: str, port: int) -> ModbusTcpConnection:
        """Connect (OSError if nothing accepts; the caller bounds the time)."""
        connection = cls()
        await connection._loop.create_connection(lambda: connection, host, port)
        return connection

    @property
    def connected(self) -> bool:
        """Whether requests can still go out."""
        return (
            self._lost is None and self._transport is not None and not self._transport.is_closing()
        )

    def close(self) -> None:
        """Close the connection; the requests in flight fail."""
        if self._transport is not None:
            self._transport.close()
        self._lose(ConnectionResetError("the connection was closed"))

    def send_reads(
        self, requests: Sequence[tuple[int, int, int]], timeout: float
    ) -> list[asyncio.Future[Reply]]:
        """FC03 requests (unit, wire address, count) sent now, in one write; their futures.

        Each future gets its registers (maybe fewer) or its failure; the caller awaits them,
        or cancels those whose reply it no longer wants. ConnectionResetError at once, none
        sent, when the connection is gone.
        """
        for _unit, _address, count in requests:
            if not 1 <= count <= MAX_READ_COUNT:
                raise ValueError(f"count must be 1..{MAX_READ_COUNT}, not {count}")
        transport = self._check_open()
        deadline = self._loop.time() + timeout
        frames = []
        futures = []
        pending = self._pending
        for unit, address, count in requests:
            self._tid = tid = (self._tid + 1) & 0xFFFF
            frames.append(_REQUEST.pack(tid, 0, 6, unit, READ_HOLDING_REGISTERS, address, count))
            future: asyncio.Future[Reply] = self._loop.create_future()
            pending[tid] = (future, unit, READ_HOLDING_REGISTERS, count, deadline)
            futures.append(future)
        self._follow(deadline)
        transport.write(b"".join(frames))
        return futures

    async def read_holding_registers(
        self, unit: int, address: int, count: int, timeout: float
    ) -> list[int]:
        """FC03: count registers from wire address (the reply may carry fewer)."""
        if not 1 <= count <= MAX_READ_COUNT:
            raise ValueError(f"count must be 1..{MAX_READ_COUNT}, not {count}")
        registers = await self._send(unit, READ_HOLDING_REGISTERS, address, count, timeout)
        assert registers is not None
        return registers

    async def write_register(self, unit: int, address: int, value: int, timeout: float) -> None:
        """FC06: one register."""
        await self._send(unit, WRITE_SINGLE_REGISTER, address, value, timeout)

    async def write_registers(
        self, unit: int, address: int, values: list[int], timeout: float
    ) -> None:
        """FC16: consecutive registers from wire address."""
        if not 1 <= len(values) <= MAX_WRITE_COUNT:
            raise ValueError(f"write 1..{MAX_WRITE_COUNT} registers, not {len(values)}")
        data = struct.pack(f">{len(values)}H", *values)
        await self._send(unit, WRITE_MULTIPLE_REGISTERS, address, len(values), timeout, data)

    def _send(
        self,
        unit: int,
        function: int,
        first: int,
        second: int,
        timeout: float,
        data: bytes = b"",
    ) -> asyncio.Future[Reply]:
        """Send one request; its future fails with TimeoutError after timeout s."""
        transport = self._check_open()
        self._tid = tid = (self._tid + 1) & 0xFFFF
        if data:
            size = len(data)
            frame = _WRITE_MANY.pack(tid, 0, 7 + size, unit, function, first, second, size) + data
        else:
            frame = _REQUEST.pack(tid, 0, 6, unit, function, first, second)
        future: asyncio.Future[Reply] = self._loop.create_future()
        deadline = self._loop.time() + timeout
        count = second if function == READ_HOLDING_REGISTERS else 0
        self._pending[tid] = (future, unit, function, count, deadline)
        self._follow(deadline)
        transport.write(frame)
        return future

    def _check_open(self) -> asyncio.Transport:
        """The transport to write to; ConnectionResetError when the connection is gone."""
        transport = self._transport
        if self._lost is not None or transport is None or transport.is_closing():
            # Closing: a write failed, connection_lost is on its way (writes after it log).
            raise ConnectionResetError("the container closed the connection")
        return transport

    def _follow(self, deadline: float) -> None:
        """Have the timer due by deadline (it only ever moves earlier here)."""
        timer = self._timer
        if timer is None or timer.when() > deadline:
            if timer is not None:
                timer.cancel()
            self._timer = self._loop.call_at(deadline, self._check_deadlines)

    def _check_deadlines(self) -> None:
        """The timer: fail the requests past their deadline, then follow the earliest left."""
        self._timer = None
        now = self._loop.time()
        earliest = None
        for tid, (future, _unit, _function, _count, deadline) in list(self._pending.items()):
            if future.done():  # cancelled by its caller: its reply, if any, is a stray
                del self._pending[tid]
            elif deadline <= now:
                del self._pending[tid]
                future.set_exception(TimeoutError())
            elif earliest is None or deadline < earliest:
                earliest = deadline
        if earliest is not None:  # else idle: the next request arms the timer again
            self._timer = self._loop.call_at(earliest, self._check_deadlines)

    # --- asyncio.Protocol ---

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Keep the transport."""
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport

    def connection_lost(self, exc: Exception | None) -> None:
        """The requests in flight fail at once, not at their timeout."""
        self._lose(ConnectionResetError("the container closed the connection"))

    def data_received(self, data: bytes) -> None:
        """Frame the replies: each MBAP header says how long its frame is."""
        buffer = self._buffer + data if self._buffer else data
        size = len(buffer)
        used = 0
        while size - used >= _MBAP_SIZE:
            tid, protocol, length = _MBAP.unpack_from(buffer, used)
            if protocol != 0 or length < 2:
                # Not Modbus TCP: nothing after it can be framed.
                what = f"protocol id {protocol}" if protocol else f"a frame of length {length}"
                self._malformed(what)
                return
            end = used + _MBAP_SIZE + length
            if end > size:
                break  # the rest of the frame is still on its way
            pending = self._pending.pop(tid, None)
            if pending is not None and not pending[0].done():
                self._answer(pending, buffer, used + _MBAP_SIZE, end)
                if self._lost is not None:
                    return
            used = end  # else a stray reply: the request it answers is over
        self._buffer = buffer[used:]

    def _answer(self, pending: _Pending, buffer: bytes, start: int, end: int) -> None:
        """Resolve the request with the reply in buffer[start:end] (unit id, PDU)."""
        future, unit, asked, count, _deadline = pending
        function = buffer[start + 1]
        size = end - start - 2  # after the unit id and the function code
        if buffer[start] != unit:
            self._malformed(f"unit {buffer[start]} in reply to unit {unit}", future)
        elif function == asked | 0x80 and size == 1:
            future.set_exception(ExceptionReplyError(buffer[start + 2]))
        elif function != asked:
            self._malformed(f"function {function} in reply to function {asked}", future)
        elif function == READ_HOLDING_REGISTERS:
            got = buffer[start + 2] if size else 0
            if not size:
                self._malformed("a reply without its byte count", future)
            elif got != size - 1 or got % 2:
                self._malformed(f"byte count {got} in a reply of {size - 1} data bytes", future)
            elif got > 2 * count:
                self._malformed(f"{got // 2} registers in reply to a read of {count}", future)
            else:
                future.set_result(list(_registers(got // 2).unpack_from(buffer, start + 3)))
        elif size != 4:
            self._malformed(f"a write acknowledgement of {size} bytes", future)
        else:
            future.set_result(None)

    def _malformed(self, what: str, future: asyncio.Future[Reply] | None = None) -> None:
        """Fail every request in flight (future: the one answered) and drop the connection."""
        error = MalformedReplyError(what)
        if future is not None:
            future.set_exception(error)
        self._lose(error)
        if self._transport is not None:
            self._transport.close()

    def _lose(self, error: Exception) -> None:
        if self._lost is None:
            self._lost = error
        self._buffer = b""
        pending, self._pending = self._pending, {}
        for future, *_ in pending.values():
            if not future.done():
                future.set_exception(error)
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
