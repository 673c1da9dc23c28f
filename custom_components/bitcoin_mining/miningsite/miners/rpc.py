"""The CGMiner RPC transport (TCP 4028): one JSON request per connection.

Shared by every family that speaks it (Antminer stock, Whatsminer v2, LuxOS,
generic CGMiner), and, with a 4-byte length prefix instead of the close, by
Whatsminer API v3. The server reads once, answers, and closes; the reply may end
with a NUL byte. Replies larger than MAX_REPLY are refused, not buffered.

A fleet poll makes hundreds of exchanges, so each one is a non-blocking socket
driven by the event loop's reader and writer callbacks: no StreamReader, no
transport, no task per request. That costs a third of the CPU of asyncio streams
(what is left is mostly the kernel's TCP work). Several requests to one miner go
out at once, each on its own connection, under one deadline (`exchange_many`).
It needs a loop with add_reader/add_writer: asyncio's selector loop (the default
on Linux and macOS) or uvloop.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
import errno
import functools
import ipaddress
import json
import os
import socket
import struct
from typing import Any

from ..exceptions import (
    DeviceConnectionError,
    DeviceProtocolError,
    DeviceTimeoutError,
    MiningSiteError,
)


class ApiAccessRefusedError(DeviceConnectionError):
    """The API accepted the connection and closed it without a word (cgminer's `--api-allow`)."""


def access_refused(where: str) -> ApiAccessRefusedError:
    """The error of a connection closed or reset before any byte of a reply."""
    return ApiAccessRefusedError(
        f"{where} closed the connection without a reply: cgminer-based firmware does this"
        " to an address its --api-allow leaves out (allow this host, e.g. --api-allow W:<ip>)"
    )


# A `stats` reply of a big miner is ~10 kB; nothing legitimate comes near this.
MAX_REPLY = 512 * 1024
# Below glibc's mmap threshold: a larger recv buffer would be mapped and unmapped each time.
_RECV_SIZE = 64 * 1024
_PREFIX = struct.Struct("<I")
_IDLE, _WRITING, _READING = 0, 1, 2
# A connection accepted, then reset or closed under our request: how an API refuses an address.
_REFUSED_ERRNOS = frozenset({errno.ECONNRESET, errno.EPIPE})

# orjson (a Home Assistant dependency) parses a reply in a third of json's time; what it
# refuses (NaN, huge numbers, bad UTF-8) is left to json as before.
fast_loads: Callable[[bytes], Any]
try:
    from orjson import loads as fast_loads
except ImportError:  # pragma: no cover - without Home Assistant
    fast_loads = json.loads


@functools.lru_cache(maxsize=4096)
def _is_ipv4(host: str) -> bool:
    """Whether host is an IPv4 literal (the usual miner address: no resolver needed)."""
    try:
        ipaddress.IPv4Address(host)
    except ValueError:
        return False
    return True


async def _resolve(host: str, port: int, timeout: float) -> tuple[int, tuple[Any, ...]]:
    """Address family and socket address of host:port."""
    if _is_ipv4(host):
        return socket.AF_INET, (host, port)
    loop = asyncio.get_running_loop()
    async with asyncio.timeout(timeout):
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    if not infos:
        raise OSError(errno.EHOSTUNREACH, f"{host} has no address")
    # Miners are IPv4 devices: of a name with both, take its IPv4 address.
    family, _, _, _, address = min(infos, key=lambda info: info[0] != socket.AF_INET)
    return family, address


def _connection_error(where: str, err: OSError) -> DeviceConnectionError:
    """An OSError of one miner's socket as the library's error."""
    error = DeviceConnectionError(f"{where}: {err.strerror or err}")
    error.__cause__ = err
    return error


class _Batch:
    """Exchanges with one miner that run together and end together (or at the first failure)."""

    __slots__ = ("exchanges", "framed", "future", "left", "loop", "where")

    def __init__(self, loop: asyncio.AbstractEventLoop, where: str, framed: bool) -> None:
        """Nothing runs until start()."""
        self.loop = loop
        self.where = where
        self.framed = framed
        self.future: asyncio.Future[None] = loop.create_future()
        self.exchanges: list[_Exchange] = []
        self.left = 0

    def start(self, requests: Sequence[bytes], family: int, address: tuple[Any, ...]) -> None:
        """Open a connection for each request and send it there."""
        # Counted first: no exchange can end the batch before the last one is started.
        self.left = len(requests)
        for request in requests:
            if self.future.done():
                break  # one already failed at once (refused): the batch is over
            exchange = _Exchange(self, request)
            self.exchanges.append(exchange)
            exchange.start(family, address)

    def finished(self) -> None:
        """One exchange has its whole reply."""
        self.left -= 1
        if self.left == 0 and not self.future.done():
            self.future.set_result(None)

    def fail(self, error: MiningSiteError) -> None:
        """One exchange failed: the batch fails with it (the others are closed by close())."""
        if not self.future.done():
            self.future.set_exception(error)

    def expire(self, timeout: float) -> None:
        """The deadline passed."""
        self.fail(DeviceTimeoutError(f"{self.where} did not answer within {timeout} s"))

    def close(self) -> list[_Exchange]:
        """Close every connection still open; the exchanges, forgotten (no reference cycle)."""
        exchanges, self.exchanges = self.exchanges, []
        for exchange in exchanges:
            exchange.close()
        return exchanges


class _Exchange:
    """One request on its own non-blocking connection, advanced by loop callbacks."""

    __slots__ = ("_batch", "_chunks", "_expected", "_fd", "_pending", "_size", "_sock", "_watch")

    def __init__(self, batch: _Batch, request: bytes) -> None:
        """Remember what to send; start() connects."""
        self._batch = batch
        self._pending = request
        self._chunks: list[bytes] = []
        self._size = 0
        # Length-prefixed replies: prefix + length once the prefix has arrived.
        self._expected: int | None = None
        self._sock: socket.socket | None = None
        self._fd = -1
        self._watch = _IDLE

    @property
    def reply(self) -> bytes:
        """The reply received (without the length prefix of a framed one)."""
        data = b"".join(self._chunks)
        if self._expected is not None:
            return data[_PREFIX.size : self._expected]
        return data

    def start(self, family: int, address: tuple[Any, ...]) -> None:
        """Connect without blocking; the rest happens in callbacks."""
        try:
            sock = self._sock = socket.socket(family, socket.SOCK_STREAM)
            sock.setblocking(False)
            self._fd = sock.fileno()
            # connect(), not connect_ex(): test harnesses that guard the network patch it.
            sock.connect(address)
        except (BlockingIOError, InterruptedError):
            self._set_watch(_WRITING, self._connected)
        except OSError as err:
            self._fail(_connection_error(self._batch.where, err))
        else:
            self._send()

    def close(self) -> None:
        """Stop watching the socket and close it (nothing if already closed)."""
        # Unregister before closing: the fd number may be reused at once by another socket.
        self._set_watch(_IDLE)
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def _set_watch(self, watch: int, callback: Any = None) -> None:
        """Watch the socket for writing, for reading, or not at all."""
        loop = self._batch.loop
        if self._watch == _WRITING:
            loop.remove_writer(self._fd)
        elif self._watch == _READING:
            loop.remove_reader(self._fd)
        self._watch = watch
        if watch == _WRITING:
            loop.add_writer(self._fd, callback)
        elif watch == _READING:
            loop.add_reader(self._fd, callback)

    def _fail(self, error: MiningSiteError) -> None:
        self.close()
        self._batch.fail(error)

    def _finish(self) -> None:
        self.close()
        self._batch.finished()

    def _connected(self) -> None:
        """Writable after a connect: connected, or refused."""
        assert self._sock is not None
        code = self._sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if code:
            self._fail(_connection_error(self._batch.where, OSError(code, os.strerror(code))))
            return
        self._send()

    def _send(self) -> None:
        """Send what is left of the request; then wait for the reply."""
        assert self._sock is not None
        try:
            sent = self._sock.send(self._pending)
        except (BlockingIOError, InterruptedError):
            sent = 0
        except OSError as err:
            # Closed before our request was even taken: refused, as a reset after it is.
            if err.errno in _REFUSED_ERRNOS and not self._batch.framed:
                self._fail(access_refused(self._batch.where))
            else:
                self._fail(_connection_error(self._batch.where, err))
            return
        self._pending = self._pending[sent:]
        if self._pending:
            self._set_watch(_WRITING, self._send)
        else:
            self._set_watch(_READING, self._readable)

    def _readable(self) -> None:
        """Take every byte there is; finish at the end of the reply."""
        assert self._sock is not None
        while True:
            try:
                data = self._sock.recv(_RECV_SIZE)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as err:
                if not self._size and err.errno in _REFUSED_ERRNOS and not self._batch.framed:
                    self._fail(access_refused(self._batch.where))
                else:
                    self._fail(_connection_error(self._batch.where, err))
                return
            if not data:
                self._end_of_stream()
                return
            self._chunks.append(data)
            self._size += len(data)
            if self._batch.framed:
                if self._framed_progress():
                    return
            elif self._size > MAX_REPLY:
                where = self._batch.where
                self._fail(DeviceProtocolError(f"{where} sent more than {MAX_REPLY} bytes"))
                return

    def _framed_progress(self) -> bool:
        """Check a length-prefixed reply so far; True once it is complete or refused."""
        if self._expected is None:
            if self._size < _PREFIX.size:
                return False
            (length,) = _PREFIX.unpack_from(b"".join(self._chunks))
            if not 0 < length <= MAX_REPLY:
                where = self._batch.where
                self._fail(DeviceProtocolError(f"{where} announced a reply of {length} bytes"))
                return True
            self._expected = _PREFIX.size + length
        if self._size >= self._expected:
            self._finish()
            return True
        return False

    def _end_of_stream(self) -> None:
        """The server closed: the end of a cgminer reply, or a framed one cut short."""
        where = self._batch.where
        if not self._batch.framed:
            if not self._size:
                self._fail(access_refused(where))
            else:
                self._finish()
            return
        if not self._size:
            self._fail(DeviceProtocolError(f"{where} closed the connection without a reply"))
            return
        expected = self._expected if self._expected is not None else _PREFIX.size
        self._fail(
            DeviceProtocolError(
                f"{where} closed the connection mid-reply ({self._size} of {expected} bytes)"
            )
        )


async def exchange_many(
    host: str,
    port: int,
    requests: Sequence[bytes],
    timeout: float,
    *,
    length_prefixed: bool = False,
) -> list[bytes]:
    """Send each request on its own connection, all at once; the replies in the same order.

    A reply ends when the server closes, or, `length_prefixed`, after the length its
    4-byte little-endian prefix announces (requests get the same prefix). The first
    failure ends them all: a timeout for the whole batch is DeviceTimeoutError.
    """
    if not requests:
        return []
    where = f"{host}:{port}"
    try:
        family, address = await _resolve(host, port, timeout)
    except TimeoutError as err:
        raise DeviceTimeoutError(f"{where} was not resolved within {timeout} s") from err
    except OSError as err:
        raise _connection_error(where, err) from err
    loop = asyncio.get_running_loop()
    batch = _Batch(loop, where, length_prefixed)
    # A timer, not asyncio.timeout(): no cancellation to undo, a fraction of the cost.
    timer = loop.call_later(timeout, batch.expire, timeout)
    try:
        if length_prefixed:
            requests = [_PREFIX.pack(len(request)) + request for request in requests]
        batch.start(requests, family, address)
        await batch.future
    finally:
        timer.cancel()
        exchanges = batch.close()
    return [exchange.reply for exchange in exchanges]


async def rpc_exchange(host: str, port: int, payload: bytes, timeout: float) -> bytes:
    """Send one request and read the whole reply (until the server closes)."""
    return (await exchange_many(host, port, (payload,), timeout))[0]


def decode_reply(raw: bytes, where: str) -> dict[str, Any]:
    """The JSON object of a reply, without the trailing NUL (and junk some firmware adds)."""
    text = raw.rstrip(b"\x00 \r\n\t")
    if not text:
        raise DeviceProtocolError(f"{where} closed the connection without a reply")
    try:
        decoded = fast_loads(text)
    except ValueError:
        try:
            decoded = json.loads(text.decode("utf-8", errors="strict"))
        except ValueError:
            # Some cgminer builds emit a bare NaN or a stray byte inside; try the lenient path.
            try:
                lenient = text.decode("utf-8", errors="replace").replace("nan", "null")
                decoded = json.loads(lenient)
            except ValueError as err:
                raise DeviceProtocolError(f"{where} sent a reply that is not JSON") from err
    if not isinstance(decoded, dict):
        raise DeviceProtocolError(f"{where} sent JSON that is not an object")
    return decoded


async def rpc_command(
    host: str,
    port: int,
    command: str,
    parameter: str | None = None,
    *,
    timeout: float,
) -> dict[str, Any]:
    """Send `{"command": ..., "parameter": ...}` and return the decoded reply."""
    request: dict[str, Any] = {"command": command}
    if parameter is not None:
        request["parameter"] = parameter
    raw = await rpc_exchange(host, port, json.dumps(request).encode(), timeout)
    return decode_reply(raw, f"{host}:{port}")


def status_of(reply: dict[str, Any]) -> dict[str, Any]:
    """The first STATUS entry of a cgminer reply (an empty dict when there is none)."""
    status = reply.get("STATUS")
    if isinstance(status, list) and status and isinstance(status[0], dict):
        return status[0]
    return {}


def section(reply: dict[str, Any], name: str) -> list[dict[str, Any]]:
    """A named section of a cgminer reply (SUMMARY, POOLS, ...); missing or odd means empty."""
    value = reply.get(name)
    if not isinstance(value, list):
        return []
    return [item for item in value if isinstance(item, dict)]
