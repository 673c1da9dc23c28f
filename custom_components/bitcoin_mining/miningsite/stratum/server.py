"""LocalPool: a Stratum v1 server that keeps miners hashing and never submits anything.

It only listens: no share, block or connection ever leaves it, so a share that would
meet the network target is counted like any other and goes nowhere.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Awaitable, Callable
import contextlib
import errno
import logging
import math
import secrets
import socket
import time
from typing import Any

from ..exceptions import LocalPoolError, PoolPortInUseError
from .config import DEFAULT_PORT, PoolConfig, PoolStats
from .connection import Connection
from .jobs import EXTRANONCE1_SIZE, EXTRANONCE2_SIZE, Job, JobBook
from .protocol import (
    MAX_LINE,
    ErrorCode,
    MalformedMessageError,
    Request,
    error_line,
    notification_line,
    parse_line,
    result_line,
)
from .shares import (
    MAX_WORKER_LENGTH,
    POOL_VERSION_MASK,
    RejectReason,
    ShareRejectedError,
    Submission,
    parse_submit,
    target_for,
    verify,
)
from .stats import ShareWindow

_LOGGER = logging.getLogger(__name__)

MAX_WORKERS_PER_CONNECTION = 16
MAX_USER_AGENT = 128
DEAD_PEER_MS = 120_000
LISTEN_BACKLOG = 512
ACCEPT_PAUSE_S = 1.0


Serve = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


class Listener:
    """Listening sockets whose accepted connections are handed to `serve` as streams.

    Neither an asyncio.Server nor loop.sock_accept: a connection accepted while
    Server.close() runs makes asyncio report "Error on transport creation" (its
    Server._attach asserts), and a cancelled sock_accept can still have its accept
    callback queued, which then sets a cancelled future. Miners connect to a pool at any
    moment, its stop included, so the sockets are watched with add_reader and a flag:
    once closed, a callback still queued accepts nothing.
    """

    def __init__(self, sockets: list[socket.socket], serve: Serve) -> None:
        """Take over bound, listening sockets; start() accepts."""
        self.sockets = sockets
        self._serve = serve
        self._closed = False
        self._handing: set[asyncio.Task[None]] = set()
        self._loop: asyncio.AbstractEventLoop | None = None

    @classmethod
    async def bind(cls, host: str | None, port: int, serve: Serve) -> Listener:
        """Listen on host (None: every interface) and port, or raise the library's error."""
        loop = asyncio.get_running_loop()
        sockets: list[socket.socket] = []
        try:
            infos = await loop.getaddrinfo(
                host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
            )
            for family, kind, proto, _, address in dict.fromkeys(infos):
                sock = socket.socket(family, kind, proto)
                sockets.append(sock)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                if family == socket.AF_INET6:
                    # One socket per family, as asyncio does: v6 only on the v6 one.
                    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                sock.bind(address)
                sock.listen(LISTEN_BACKLOG)
                sock.setblocking(False)
        except OSError as err:
            for sock in sockets:
                sock.close()
            if err.errno == errno.EADDRINUSE:
                raise PoolPortInUseError(host, port) from err
            raise LocalPoolError(
                f"Local pool cannot listen on {host or '*'}:{port}: {err}"
            ) from err
        return cls(sockets, serve)

    @property
    def port(self) -> int:
        """The port of the first socket (the one asked for, or the one the system chose)."""
        return int(self.sockets[0].getsockname()[1])

    def start(self) -> None:
        """Accept on every socket."""
        self._loop = asyncio.get_running_loop()
        for sock in self.sockets:
            self._loop.add_reader(sock.fileno(), self._accept, sock)

    async def close(self) -> None:
        """Accept nothing more, close the sockets, end the connections being served."""
        self._closed = True
        for sock in self.sockets:
            if self._loop is not None:
                self._loop.remove_reader(sock.fileno())
            sock.close()
        for task in list(self._handing):
            task.cancel()
        await asyncio.gather(*self._handing, return_exceptions=True)

    def _accept(self, sock: socket.socket) -> None:
        """Take every connection waiting (called by the loop when the socket is readable)."""
        for _ in range(LISTEN_BACKLOG):
            if self._closed:
                return
            try:
                conn, _ = sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as err:
                # Out of file descriptors, say: pause a second rather than spin on it.
                _LOGGER.warning("Local pool: accepting a connection failed: %s", err)
                self._pause(sock)
                return
            conn.setblocking(False)
            task = asyncio.create_task(self._hand_over(conn), name="stratum pool connection")
            self._handing.add(task)
            task.add_done_callback(self._handing.discard)

    def _pause(self, sock: socket.socket) -> None:
        assert self._loop is not None
        self._loop.remove_reader(sock.fileno())

        def resume() -> None:
            if not self._closed and self._loop is not None:
                self._loop.add_reader(sock.fileno(), self._accept, sock)

        self._loop.call_later(ACCEPT_PAUSE_S, resume)

    async def _hand_over(self, conn: socket.socket) -> None:
        try:
            reader, writer = await asyncio.open_connection(sock=conn, limit=MAX_LINE)
        except OSError:
            conn.close()
            return
        await self._serve(reader, writer)


async def check_listen(host: str | None, port: int) -> None:
    """Raise what start() would raise on this address, without keeping it (for forms)."""

    async def refuse(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.transport.abort()  # pragma: no cover - it never accepts

    listener = await Listener.bind(host, port, refuse)
    await listener.close()


class LocalPool:
    """A Stratum v1 pool for miners on the site LAN while the uplink is down."""

    def __init__(
        self, config: PoolConfig | None = None, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        """Configure; start() listens."""
        self.config = config or PoolConfig()
        self._clock = clock
        self._jobs = JobBook(
            keep=self.config.keep_jobs, merkle_branches=self.config.merkle_branches
        )
        self._server: Listener | None = None
        self._refresher: asyncio.Task[None] | None = None
        self._connections: dict[int, Connection] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._extranonces: set[bytes] = set()
        self._next_extranonce = secrets.randbelow(2 ** (8 * EXTRANONCE1_SIZE))
        self._number = 0
        self._refused = 0
        self._dropped = 0
        self._accepted = 0
        self._rejected: Counter[str] = Counter()
        self._window = ShareWindow(self.config.hashrate_window, clock())
        self.host: str | None = None
        self.port: int | None = None
        self._methods: dict[str, Callable[[Connection, Request], None]] = {
            "mining.configure": self._configure,
            "mining.subscribe": self._subscribe,
            "mining.authorize": self._authorize,
            "mining.submit": self._submit,
            "mining.suggest_difficulty": self._suggest_difficulty,
            "mining.extranonce.subscribe": self._extranonce_subscribe,
        }

    @property
    def running(self) -> bool:
        """Whether the pool listens."""
        return self._server is not None

    @property
    def current_job(self) -> Job | None:
        """The newest job."""
        return self._jobs.current

    async def start(self, host: str | None = None, port: int = DEFAULT_PORT) -> None:
        """Listen on host (None: every interface) and port (0: any free port)."""
        if self._server is not None:
            raise LocalPoolError("the local pool is already running")
        self._server = await Listener.bind(host, port, self._serve)
        self._server.start()
        self.host = host
        self.port = self._server.port
        self._window = ShareWindow(self.config.hashrate_window, self._clock())
        self._jobs.new_job(clean=True)
        self._refresher = asyncio.create_task(self._refresh(), name="stratum pool jobs")
        _LOGGER.info("Local pool listening on %s:%s", host or "*", self.port)

    async def stop(self) -> None:
        """Stop listening and drop every connection."""
        server, self._server = self._server, None
        if server is None:
            return
        await server.close()
        if self._refresher is not None:
            self._refresher.cancel()
        for connection in list(self._connections.values()):
            connection.drop("pool stopped")
        tasks = [*self._tasks, *([self._refresher] if self._refresher else [])]
        self._refresher = None
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        _LOGGER.info("Local pool stopped")

    def new_job(self, *, clean: bool) -> Job:
        """Issue a job and send it to every miner (clean: a new prevhash, older jobs stale)."""
        job = self._jobs.new_job(clean=clean)
        line = notification_line("mining.notify", job.notify_params())
        keep = self.config.keep_jobs
        for connection in list(self._connections.values()):
            if connection.ready:
                connection.send_job(job, line, clean, keep)
        return job

    def stats(self) -> PoolStats:
        """Counters since start, share rate over the last minute, hashrate over the window."""
        now = self._clock()
        connections = self._connections.values()
        return PoolStats(
            connections=len(self._connections),
            miners=sum(1 for c in connections if c.ready),
            connections_total=self._number,
            connections_refused=self._refused,
            connections_dropped=self._dropped,
            shares_accepted=self._accepted,
            shares_rejected=sum(self._rejected.values()),
            rejected={str(reason): count for reason, count in self._rejected.items()},
            accepted_per_minute=self._window.per_minute(now),
            hashrate=self._window.hashrate(now),
            workers=tuple(sorted({w for c in connections for w in c.workers})),
            jobs_issued=self._jobs.issued,
        )

    async def _refresh(self) -> None:
        """A fresh clean_jobs=false job every interval; vardiff for miners gone quiet."""
        while True:
            await asyncio.sleep(self.config.job_interval)
            try:
                self.new_job(clean=False)
                now = self._clock()
                for connection in list(self._connections.values()):
                    if connection.ready and connection.vardiff.tick(now) is not None:
                        self._retargeted(connection)
            except Exception:
                # Without refreshes every miner gives the pool up after 90 s: log, keep going.
                _LOGGER.exception("Local pool: job refresh failed")

    def _allocate_extranonce1(self) -> bytes:
        space = 2 ** (8 * EXTRANONCE1_SIZE)
        while True:
            self._next_extranonce = (self._next_extranonce + 1) % space
            candidate = self._next_extranonce.to_bytes(EXTRANONCE1_SIZE, "big")
            if candidate not in self._extranonces:
                self._extranonces.add(candidate)
                return candidate

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._server is None or len(self._connections) >= self.config.max_connections:
            self._refused += 1
            writer.transport.abort()
            return
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        self._number += 1
        connection = Connection(self._number, writer, self.config, self._clock())
        self._connections[connection.number] = connection
        sock = writer.get_extra_info("socket")
        if sock is not None and hasattr(socket, "TCP_USER_TIMEOUT"):
            # A miner that lost power never sends a FIN; the jobs we keep sending stay
            # unacknowledged, and Linux then drops the connection after this long
            # instead of after ~15 minutes of retransmissions.
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT, DEAD_PEER_MS)
        connection.handshake_timer = asyncio.get_running_loop().call_later(
            self.config.handshake_timeout, self._handshake_expired, connection
        )
        try:
            await self._read(reader, connection)
        finally:
            if connection.handshake_timer is not None:
                connection.handshake_timer.cancel()
            if connection.closing:
                self._dropped += 1
            connection.closing = True
            writer.transport.abort()
            del self._connections[connection.number]
            if connection.extranonce1 is not None:
                self._extranonces.discard(connection.extranonce1)
            if task is not None:
                self._tasks.discard(task)

    async def _read(self, reader: asyncio.StreamReader, connection: Connection) -> None:
        while not connection.closing:
            try:
                line = await reader.readuntil(b"\n")
            except asyncio.LimitOverrunError:
                connection.drop("line over 16 KiB")
                return
            except (asyncio.IncompleteReadError, ConnectionError):
                return  # the client left (possibly mid-line)
            if line.strip():
                self._handle_line(connection, line)
            if connection.transport.get_write_buffer_size() > 0 and not connection.closing:
                try:
                    async with asyncio.timeout(self.config.write_timeout):
                        await connection.writer.drain()
                except TimeoutError:
                    connection.drop("replies not read")
                except ConnectionError:
                    return

    def _handshake_expired(self, connection: Connection) -> None:
        connection.handshake_timer = None
        if not connection.ready:
            connection.drop("no subscribe and authorize in time")

    def _handle_line(self, connection: Connection, line: bytes) -> None:
        try:
            request = parse_line(line)
        except MalformedMessageError as err:
            connection.malformed += 1
            if connection.malformed > self.config.max_malformed:
                connection.drop("too many malformed lines")
                return
            connection.send(
                error_line(err.request_id, ErrorCode.OTHER, f"Malformed request: {err}")
            )
            return
        if request is None:
            return  # a reply from the client: we send no requests that wait for one
        handler = self._methods.get(request.method)
        if handler is None:
            connection.send(error_line(request.id, ErrorCode.METHOD_NOT_FOUND, "Method not found"))
            return
        handler(connection, request)

    def _configure(self, connection: Connection, request: Request) -> None:
        params = request.params
        extensions = params[0] if params else None
        options = params[1] if len(params) > 1 else {}
        if not (
            isinstance(extensions, list)
            and all(isinstance(e, str) for e in extensions)
            and isinstance(options, dict)
        ):
            connection.send(error_line(request.id, ErrorCode.OTHER, "Invalid configure params"))
            return
        result: dict[str, Any] = {}
        for extension in extensions:
            if extension != "version-rolling":
                result[extension] = False
                continue
            mask = options.get("version-rolling.mask", "ffffffff")
            if not isinstance(mask, str) or not 1 <= len(mask) <= 8:
                connection.send(error_line(request.id, ErrorCode.OTHER, "Invalid version mask"))
                return
            try:
                client_mask = int(mask, 16)
            except ValueError:
                connection.send(error_line(request.id, ErrorCode.OTHER, "Invalid version mask"))
                return
            connection.version_mask = client_mask & POOL_VERSION_MASK
            result["version-rolling"] = True
            result["version-rolling.mask"] = f"{connection.version_mask:08x}"
        connection.send(result_line(request.id, result))

    def _subscribe(self, connection: Connection, request: Request) -> None:
        was_ready = connection.ready
        if request.params and isinstance(request.params[0], str):
            connection.user_agent = request.params[0][:MAX_USER_AGENT]
        if connection.extranonce1 is None:
            connection.extranonce1 = self._allocate_extranonce1()
        subscription = f"{connection.number:x}"
        connection.send(
            result_line(
                request.id,
                [
                    [["mining.set_difficulty", subscription], ["mining.notify", subscription]],
                    connection.extranonce1.hex(),
                    EXTRANONCE2_SIZE,
                ],
            )
        )
        self._maybe_start_mining(connection, was_ready=was_ready)

    def _authorize(self, connection: Connection, request: Request) -> None:
        worker = request.params[0] if request.params else None
        if not isinstance(worker, str) or not 0 < len(worker) <= MAX_WORKER_LENGTH:
            connection.send(error_line(request.id, ErrorCode.OTHER, "Invalid worker name", False))
            return
        was_ready = connection.ready
        if worker not in connection.workers:
            if len(connection.workers) >= MAX_WORKERS_PER_CONNECTION:
                connection.send(
                    error_line(
                        request.id, ErrorCode.OTHER, "Too many workers on one connection", False
                    )
                )
                return
            connection.workers.append(worker)
            # Worker names only: the password (params[1]) is never stored or logged.
            _LOGGER.debug("Local pool: worker %r authorized from %s", worker, connection.peer)
        connection.send(result_line(request.id, True))
        self._maybe_start_mining(connection, was_ready=was_ready)

    def _maybe_start_mining(self, connection: Connection, *, was_ready: bool) -> None:
        """Once subscribed and authorized: the difficulty, then the current job (clean)."""
        if was_ready or not connection.ready:
            return
        if connection.handshake_timer is not None:
            connection.handshake_timer.cancel()
            connection.handshake_timer = None
        connection.send_difficulty()
        self._send_current_job(connection)

    def _send_current_job(self, connection: Connection) -> None:
        job = self._jobs.current
        if job is not None:
            line = notification_line("mining.notify", job.notify_params(clean=True))
            connection.send_job(job, line, False, self.config.keep_jobs)

    def _extranonce_subscribe(self, connection: Connection, request: Request) -> None:
        # The extranonce never changes, so there is nothing to notify; the reply matters.
        connection.send(result_line(request.id, True))

    def _suggest_difficulty(self, connection: Connection, request: Request) -> None:
        value = request.params[0] if request.params else None
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not math.isfinite(value)
            or value <= 0
        ):
            connection.send(error_line(request.id, ErrorCode.OTHER, "Invalid difficulty"))
            return
        previous = connection.vardiff.difficulty
        connection.vardiff.suggest(float(value), self._clock())
        connection.send(result_line(request.id, True))
        if connection.vardiff.difficulty != previous:
            connection.target = target_for(connection.vardiff.difficulty)
            if connection.ready:
                connection.send_difficulty()
                self._send_current_job(connection)

    def _retargeted(self, connection: Connection) -> None:
        """After vardiff moved: set_difficulty, then the current job again, clean."""
        connection.target = target_for(connection.vardiff.difficulty)
        connection.send_difficulty()
        self._send_current_job(connection)

    def _submit(self, connection: Connection, request: Request) -> None:
        try:
            job, submission, difficulty = self._check_share(connection, request.params)
        except ShareRejectedError as err:
            self._rejected[err.reason] += 1
            connection.send(error_line(request.id, err.code, err.message, False))
            return
        connection.seen.setdefault(job.job_id, set()).add(submission.key)
        self._accepted += 1
        now = self._clock()
        self._window.record(now, difficulty)
        connection.send(result_line(request.id, True))
        if connection.vardiff.record_share(now) is not None:
            self._retargeted(connection)

    def _check_share(
        self, connection: Connection, params: list[Any]
    ) -> tuple[Job, Submission, float]:
        """The share's job, params and the difficulty it is credited at; else why not."""
        if connection.extranonce1 is None:
            raise ShareRejectedError(RejectReason.NOT_SUBSCRIBED, "Not subscribed")
        if not connection.workers:
            raise ShareRejectedError(RejectReason.UNAUTHORIZED, "Unauthorized worker")
        submission = parse_submit(params, EXTRANONCE2_SIZE)
        job = self._jobs.find(submission.job_id)
        difficulty = connection.job_difficulty.get(submission.job_id)
        if job is None or difficulty is None:
            if self._jobs.is_stale(submission.job_id):
                raise ShareRejectedError(RejectReason.STALE, "Stale job")
            raise ShareRejectedError(RejectReason.UNKNOWN_JOB, "Job not found")
        if submission.key in connection.seen.get(job.job_id, ()):
            raise ShareRejectedError(RejectReason.DUPLICATE, "Duplicate share")
        # The connection's target is cached; a job sent at another difficulty needs its own.
        current = difficulty == connection.vardiff.difficulty
        target = connection.target if current else target_for(difficulty)
        verify(job, connection.extranonce1, submission, connection.version_mask, target)
        return job, submission, difficulty
