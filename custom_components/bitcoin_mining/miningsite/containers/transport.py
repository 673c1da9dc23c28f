"""A lean Modbus TCP client connection for the containers: FC03, FC06, FC16, one request at a time.

A container read is 40 small requests; through pymodbus each cost about 150 µs of CPU (its
request machinery, a timer per request, and ours on top), so 10 containers took 60-80 ms
per read. Here a request is one frame written and one future: the MBAP header packed and
parsed with struct, the reply matched by transaction id, and one timer per connection
whose deadline each request moves forward instead of a timer armed and cancelled per
request. The grid meter keeps pymodbus.

Replies that answer no request in flight (a timed-out or cancelled one, a duplicate) are
dropped. A reply that does not parse fails its request with MalformedReplyError, and the
connection with it: after bytes that are not Modbus TCP, the framing cannot be trusted.
"""

from __future__ import annotations

import asyncio
import struct

from ..exceptions import DeviceProtocolError

READ_HOLDING_REGISTERS = 3
WRITE_SINGLE_REGISTER = 6
WRITE_MULTIPLE_REGISTERS = 16
MAX_READ_COUNT = 125  # registers per FC03 request, by the Modbus specification
MAX_WRITE_COUNT = 123  # registers per FC16 request

# MBAP header: transaction id, protocol id (0), length of what follows (unit id + PDU).
_MBAP = struct.Struct(">HHH")
# A request: the MBAP header, unit id, function code, then two 16-bit fields.
_REQUEST = struct.Struct(">HHHBBHH")
_WRITE_MANY = struct.Struct(">HHHBBHHB")


class MalformedReplyError(DeviceProtocolError):
    """Bytes from the container that are not the Modbus TCP reply asked for."""


class ExceptionReplyError(DeviceProtocolError):
    """The container answered with a Modbus exception code."""

    def __init__(self, code: int) -> None:
        """Keep the exception code."""
        super().__init__(f"exception code {code}")
        self.code = code


class ModbusTcpConnection(asyncio.Protocol):
    """One Modbus TCP connection; requests take turns (the caller serialises them)."""

    def __init__(self) -> None:
        """Not connected yet: use open()."""
        self._loop = asyncio.get_running_loop()
        self._transport: asyncio.Transport | None = None
        self._buffer = b""
        self._tid = 0
        self._function = 0
        self._pending: asyncio.Future[list[int] | None] | None = None
        # The request in flight times out at _deadline; one timer per connection follows it.
        self._deadline = 0.0
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
        return self._lost is None and self._transport is not None

    def close(self) -> None:
        """Close the connection; a request in flight fails."""
        if self._transport is not None:
            self._transport.close()
        self._lose(ConnectionResetError("the connection was closed"))

    async def read_holding_registers(
        self, unit: int, address: int, count: int, timeout: float
    ) -> list[int]:
        """FC03: count registers from wire address (the reply may carry fewer)."""
        if not 1 <= count <= MAX_READ_COUNT:
            raise ValueError(f"count must be 1..{MAX_READ_COUNT}, not {count}")
        registers = await self._request(unit, READ_HOLDING_REGISTERS, address, count, timeout)
        assert registers is not None
        return registers

    async def write_register(self, unit: int, address: int, value: int, timeout: float) -> None:
        """FC06: one register."""
        await self._request(unit, WRITE_SINGLE_REGISTER, address, value, timeout)

    async def write_registers(
        self, unit: int, address: int, values: list[int], timeout: float
    ) -> None:
        """FC16: consecutive registers from wire address."""
        if not 1 <= len(values) <= MAX_WRITE_COUNT:
            raise ValueError(f"write 1..{MAX_WRITE_COUNT} registers, not {len(values)}")
        data = struct.pack(f">{len(values)}H", *values)
        await self._request(unit, WRITE_MULTIPLE_REGISTERS, address, len(values), timeout, data)

    async def _request(
        self,
        unit: int,
        function: int,
        first: int,
        second: int,
        timeout: float,
        data: bytes = b"",
    ) -> list[int] | None:
        """Send one request and wait for its reply, at most timeout s (TimeoutError)."""
        if self._lost is not None or self._transport is None:
            raise ConnectionResetError("the container closed the connection")
        self._tid = tid = (self._tid + 1) & 0xFFFF
        self._function = function
        if data:
            size = len(data)
            frame = _WRITE_MANY.pack(tid, 0, 7 + size, unit, function, first, second, size) + data
        else:
            frame = _REQUEST.pack(tid, 0, 6, unit, function, first, second)
        future: asyncio.Future[list[int] | None] = self._loop.create_future()
        self._pending = future
        self._deadline = deadline = self._loop.time() + timeout
        timer = self._timer
        if timer is None or timer.when() > deadline:
            if timer is not None:
                timer.cancel()
            self._timer = self._loop.call_at(deadline, self._check_deadline)
        self._transport.write(frame)
        try:
            return await future
        finally:
            if self._pending is future:
                self._pending = None

    def _check_deadline(self) -> None:
        """The timer: fail the request in flight if its deadline passed, else follow it."""
        self._timer = None
        future = self._pending
        if future is None or future.done():
            return  # idle: the next request arms the timer again
        if self._loop.time() >= self._deadline:
            future.set_exception(TimeoutError())
        else:
            self._timer = self._loop.call_at(self._deadline, self._check_deadline)

    # --- asyncio.Protocol ---

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Keep the transport."""
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport

    def connection_lost(self, exc: Exception | None) -> None:
        """A request in flight fails at once, not at its timeout."""
        self._lose(ConnectionResetError("the container closed the connection"))

    def data_received(self, data: bytes) -> None:
        """Frame the replies: each MBAP header says how long its frame is."""
        buffer = self._buffer + data if self._buffer else data
        used = 0
        while len(buffer) - used >= _MBAP.size:
            tid, protocol, length = _MBAP.unpack_from(buffer, used)
            if protocol != 0 or length < 2:
                # Not Modbus TCP: nothing after it can be framed.
                what = f"protocol id {protocol}" if protocol else f"a frame of length {length}"
                self._malformed(what)
                return
            end = used + _MBAP.size + length
            if end > len(buffer):
                break  # the rest of the frame is still on its way
            future = self._pending
            if future is not None and not future.done() and tid == self._tid:
                self._answer(future, buffer, used + _MBAP.size, end)
                if self._lost is not None:
                    return
            used = end  # else a stray reply: the request it answers is over
        self._buffer = buffer[used:]

    def _answer(
        self, future: asyncio.Future[list[int] | None], buffer: bytes, start: int, end: int
    ) -> None:
        """Resolve the request with the reply in buffer[start:end] (unit id, PDU)."""
        function = buffer[start + 1]
        size = end - start - 2  # after the unit id and the function code
        if function == self._function | 0x80 and size == 1:
            future.set_exception(ExceptionReplyError(buffer[start + 2]))
        elif function != self._function:
            self._malformed(f"function {function} in reply to function {self._function}")
        elif function == READ_HOLDING_REGISTERS:
            count = buffer[start + 2] if size else 0
            if not size:
                self._malformed("a reply without its byte count")
            elif count != size - 1 or count % 2:
                self._malformed(f"byte count {count} in a reply of {size - 1} data bytes")
            else:
                future.set_result(list(struct.unpack_from(f">{count // 2}H", buffer, start + 3)))
        elif size != 4:
            self._malformed(f"a write acknowledgement of {size} bytes")
        else:
            future.set_result(None)

    def _malformed(self, what: str) -> None:
        """Fail the request in flight and drop the connection: its framing is lost."""
        self._lose(MalformedReplyError(what))
        if self._transport is not None:
            self._transport.close()

    def _lose(self, error: Exception) -> None:
        if self._lost is None:
            self._lost = error
        self._buffer = b""
        future = self._pending
        if future is not None and not future.done():
            future.set_exception(error)
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
