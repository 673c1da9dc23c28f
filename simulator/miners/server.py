"""A miner's listening socket: framing, reply latency and faults; subclasses answer requests.

One asyncio Protocol per connection and no task per request: replies are
computed synchronously from the miner's lazy state and written at once or
after the simulated latency (a loop timer), which keeps a thousand miners cheap.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
import asyncio
import collections
import contextlib
import logging
import socket
import struct
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .model import SimMiner

LOGGER = logging.getLogger(__name__)

# A request larger than this closes the connection (no firmware takes more).
MAX_REQUEST = 64 * 1024
# Frame verdict: the request is too large or malformed beyond answering.
CLOSE = -1
SLOW_MIN_S = 2.0
SILENT_CLIENT_S = 30.0
SLOW_FACTOR = 10


class MinerServer(ABC):
    """One listening socket of one miner."""

    # Serve further requests on the same connection after a reply (HTTP/1.1-like, v3).
    keep_alive = False
    # How long an incomplete request may wait for its next bytes before frame(eof=True).
    idle_s = 30.0

    def __init__(self, miner: SimMiner, host: str, port: int) -> None:
        """Describe the socket; start() binds it."""
        self.miner = miner
        self.host = host
        self.port = port
        self.connections: set[_Connection] = set()
        # One client at a time (exclusive()): the one served, and those waiting their turn.
        self.serving: _Connection | None = None
        self.waiting: collections.deque[_Connection] = collections.deque()
        self._server: asyncio.Server | None = None
        # The port, bound but not listening, while the miner is offline (see stop()).
        self._held: socket.socket | None = None

    @property
    def listening(self) -> bool:
        """Whether the socket accepts connections."""
        return self._server is not None

    async def start(self) -> None:
        """Listen (port 0 picks a free one and records it), on the port held if any."""
        if self._server is not None:
            return
        sock, self._held = self._held or _bound_socket(self.host, self.port), None
        loop = asyncio.get_running_loop()
        try:
            self._server = await loop.create_server(
                lambda: _Connection(self), sock=sock, backlog=256
            )
        except BaseException:
            sock.close()
            raise
        if self.port == 0:
            self.port = int(sock.getsockname()[1])

    async def stop(self, *, hold_port: bool = False) -> None:
        """Stop listening and drop every open connection (clients then see a reset).

        `hold_port` keeps the port bound, not listening (connections are refused, as
        before): in port mode the ports are ephemeral ones, and a port let go is soon a
        client's source port, so the miner could not listen there again.
        """
        server, self._server = self._server, None
        for connection in list(self.connections):
            connection.abort()
        if server is not None:
            server.close()
            if hold_port:
                self._held = _bound_socket(self.host, self.port)
            await server.wait_closed()
        if not hold_port and self._held is not None:
            self._held.close()
            self._held = None

    def admit(self, peer: str) -> bool:
        """Whether a client may talk at all (False: reset at once, with no reply)."""
        return True

    def exclusive(self) -> bool:
        """Serve one connection at a time, the others waiting unread (cgminer's API thread)."""
        return False

    def _release(self, connection: _Connection) -> None:
        """A connection ended: let the next waiting client in."""
        if self.serving is not connection:
            with contextlib.suppress(ValueError):
                self.waiting.remove(connection)
            return
        self.serving = None
        while self.waiting:
            follower = self.waiting.popleft()
            if follower.transport is not None:
                self.serving = follower
                follower.activate()
                return

    @abstractmethod
    def frame(self, buffer: bytes, eof: bool) -> int | None:
        """Size of the first complete request in buffer; None: need more; CLOSE: give up."""

    @abstractmethod
    def respond(self, request: bytes, peer: str) -> bytes | None:
        """The reply bytes to one request (None: close without a reply)."""

    def answer(self, request: bytes, peer: str) -> tuple[bytes | None, bool]:
        """The reply to one request, and whether a kept-alive connection ends after it."""
        return self.respond(request, peer), False

    def garbage(self) -> bytes:
        """Random bytes that are no valid reply (the garbage fault)."""
        rng = self.miner.env.rng
        return b"\xff\xfe" + bytes(rng.getrandbits(8) for _ in range(rng.randint(30, 250)))


def _bound_socket(host: str, port: int) -> socket.socket:
    """A TCP socket bound to host:port (0: a free port), not yet listening."""
    family, kind, proto, _, address = socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
    except BaseException:
        sock.close()
        raise
    return sock


def _reset(transport: asyncio.Transport) -> None:
    """Close with a TCP RST (SO_LINGER 0) rather than a FIN."""
    sock = transport.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()


class _Connection(asyncio.Protocol):
    """One client connection."""

    def __init__(self, server: MinerServer) -> None:
        self.server = server
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.peer = ""
        self.busy = False
        self.eof = False
        self.timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        peer = transport.get_extra_info("peername")
        self.peer = str(peer[0]) if peer else ""
        server = self.server
        if "reset" in server.miner.faults or not server.admit(self.peer):
            _reset(transport)
            return
        server.connections.add(self)
        if server.exclusive():
            if server.serving is not None:
                # Accepted by the kernel but not read: it waits in the backlog.
                transport.pause_reading()
                server.waiting.append(self)
                return
            server.serving = self
        self.activate()

    def activate(self) -> None:
        """Start reading (a waiting client's turn has come)."""
        if self.transport is None:
            return
        if self.transport.is_reading() is False:
            self.transport.resume_reading()
        # A client that connects and never sends is dropped after a while.
        self.timer = asyncio.get_running_loop().call_later(SILENT_CLIENT_S, self._idle)

    def connection_lost(self, exc: Exception | None) -> None:
        self.server.connections.discard(self)
        self._cancel_timer()
        self.transport = None
        self.server._release(self)  # noqa: SLF001 - the server's own bookkeeping

    def abort(self) -> None:
        if self.transport is not None:
            _reset(self.transport)

    def _cancel_timer(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None

    def data_received(self, data: bytes) -> None:
        if self.busy and not self.server.keep_alive:
            return
        self.buffer += data
        if len(self.buffer) > MAX_REQUEST:
            self.abort()
            return
        self._next()

    def eof_received(self) -> bool:
        self.eof = True
        if self.busy and self.timer is None and self.transport is not None:
            # Never going to answer (the timeout fault): the client left, so do we.
            self.transport.close()
            return True
        self._next()
        # Keep our side open: the reply may still be on its way (latency).
        return True

    def _next(self) -> None:
        if self.busy or self.transport is None:
            return
        self._cancel_timer()
        size = self.server.frame(bytes(self.buffer), self.eof) if self.buffer else None
        if size == CLOSE:
            self.abort()
            return
        if size is None:
            if self.eof:
                self.transport.close()
            else:
                loop = asyncio.get_running_loop()
                self.timer = loop.call_later(self.server.idle_s, self._idle)
            return
        request = bytes(self.buffer[:size])
        del self.buffer[:size]
        self._handle(request)

    def _idle(self) -> None:
        """No more bytes came: take what there is as the request (or close)."""
        self.timer = None
        self.eof = True
        self._next()

    def _handle(self, request: bytes) -> None:
        assert self.transport is not None
        miner = self.server.miner
        self.busy = True
        if "reset" in miner.faults:
            _reset(self.transport)  # a kept-alive connection sees the fault too
            return
        if "timeout" in miner.faults:
            return  # accept, read, never answer
        reply: bytes | None
        close = garbage = "garbage" in miner.faults
        if garbage:
            reply = self.server.garbage()
        else:
            try:
                reply, close = self.server.answer(request, self.peer)
            except Exception:  # a bug must not take the simulator down; the client sees a close
                LOGGER.exception("%r failed to answer %r", miner, request[:200])
                reply = None
        if self.server.serving is self:
            # The API thread moves on once it has answered: the latency is the reply's
            # transit (and the client's), so the next client waiting is served meanwhile.
            self.server._release(self)  # noqa: SLF001 - the server's own bookkeeping
        env = miner.env
        delay = env.reply_delay_s()
        if "slow" in miner.faults:
            delay = max(SLOW_MIN_S, SLOW_FACTOR * env.latency_ms / 1000)
        if delay > 0:
            self.timer = asyncio.get_running_loop().call_later(delay, self._send, reply, close)
        else:
            self._send(reply, close)

    def _send(self, reply: bytes | None, close: bool = False) -> None:
        self.timer = None
        transport = self.transport
        if transport is None:
            return
        if reply:
            transport.write(reply)
        if reply and self.server.keep_alive and not self.eof and not close:
            self.busy = False
            self._next()  # the next request, or an idle timer that closes the connection
            return
        transport.close()
