"""StratumProxy: the local Stratum server in proxy mode, in front of the upstream pool.

While the upstream is healthy each miner connection is relayed on a connection of its
own (worker names, difficulty and extranonce are the upstream's, so its per-worker
figures stay right). When the upstream fails (a connection lost or silent, bad input,
or the caller's word) the miner's connection stays open and gets a local job at once;
upstream_up() moves the miners back in batches. A proxy that stops closes every miner
connection, so firmware fails over to its second pool: the upstream itself.
"""

from __future__ import annotations

import asyncio
from collections import Counter, deque
from collections.abc import Callable
import contextlib
import logging
import math
import secrets
import socket
import time
from typing import Any

from ..exceptions import LocalPoolError
from .aggregate import SharedUpstream
from .config import DEFAULT_PORT
from .jobs import EXTRANONCE1_SIZE, JobBook
from .local_work import SlotJobs
from .proxy_config import (
    Fallback,
    LatencyWindow,
    MinerCounts,
    MinerProxyStats,
    ProxyConfig,
    ProxyStats,
)
from .server import DEAD_PEER_MS, Listener
from .session import MinerSession
from .upstream import UpstreamLink, UpstreamRefusedError

_LOGGER = logging.getLogger(__name__)

# How often upstream connections are checked for unanswered requests and silence.
WATCH_INTERVAL = 0.25
# Checks in a row that came overload_lag late or more: the proxy is overloaded.
OVERLOAD_TICKS = 3


class StratumProxy:
    """Relays miners to the upstream pool; local jobs for them while it is unusable."""

    def __init__(self, config: ProxyConfig, *, clock: Callable[[], float] = time.monotonic):
        """Configure; start() listens."""
        self.config = config
        self.clock = clock
        self.book = JobBook(
            keep=config.local.keep_jobs, merkle_branches=config.local.merkle_branches
        )
        self.slots = SlotJobs()
        self.latency = LatencyWindow(config.latency_samples)
        self.host: str | None = None
        self.port: int | None = None
        self._healthy = True
        self._server: Listener | None = None
        self._sessions: dict[int, MinerSession] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._timers: set[asyncio.TimerHandle] = set()
        self._queue: deque[MinerSession] = deque()
        self._queued: set[int] = set()
        self._mover: asyncio.Task[None] | None = None
        self._background: list[asyncio.Task[None]] = []
        self._fallbacks: Counter[str] = Counter()
        self._closed = MinerCounts()
        self._extranonces: set[bytes] = set()
        self._next_extranonce = secrets.randbelow(2 ** (8 * EXTRANONCE1_SIZE))
        self._number = 0
        self._refused = 0
        self.overloads = 0
        self._refuse_until = -math.inf
        # Aggregation: every relayed miner on one upstream connection (None: one each).
        self.shared = SharedUpstream(config, clock) if config.aggregate else None

    # --- what the caller uses ---------------------------------------------------------------

    @property
    def running(self) -> bool:
        """Whether the proxy listens."""
        return self._server is not None

    @property
    def upstream_healthy(self) -> bool:
        """Whether miners are relayed upstream (False from upstream_down() to upstream_up())."""
        return self._healthy

    async def start(self, host: str | None = None, port: int = DEFAULT_PORT) -> None:
        """Listen on host (None: every interface) and port (0: any free port)."""
        if self._server is not None:
            raise LocalPoolError("the Stratum proxy is already running")
        self._server = await Listener.bind(host, port, self._serve)
        self._server.start()
        self.host, self.port = host, self._server.port
        self.book.new_job(clean=True)
        self._background = [
            asyncio.create_task(self._refresh(), name="stratum proxy jobs"),
            asyncio.create_task(self._watch(), name="stratum proxy watchdog"),
        ]
        _LOGGER.info(
            "Stratum proxy listening on %s:%s for %s:%s",
            host or "*",
            self.port,
            self.config.upstream_host,
            self.config.upstream_port,
        )

    async def stop(self) -> None:
        """Stop listening and close every miner connection (their firmware fails over)."""
        server, self._server = self._server, None
        if server is None:
            return
        await server.close()
        for timer in self._timers:
            timer.cancel()
        self._timers.clear()
        self._queue.clear()
        self._queued.clear()
        tasks = [*self._background, *([self._mover] if self._mover else [])]
        for task in tasks:
            task.cancel()
        for session in list(self._sessions.values()):
            session.close("proxy stopped")
        if self.shared is not None:
            await self.shared.close()
        await asyncio.gather(*tasks, *self._tasks, return_exceptions=True)
        self._background, self._mover = [], None
        _LOGGER.info("Stratum proxy stopped")

    def upstream_down(self, reason: str) -> None:
        """The upstream is unusable (the caller's probe says so): every miner on local jobs."""
        self._healthy = False
        self._queue.clear()
        self._queued.clear()
        for session in list(self._sessions.values()):
            if session.side == "upstream" or session.moving:
                session.fall_back(Fallback.UPSTREAM_DOWN, reason[:200])

    def upstream_up(self) -> None:
        """The upstream is back (and held): move local miners back, batch by batch."""
        self._healthy = True
        for session in list(self._sessions.values()):
            self._enqueue(session)

    def stats(self) -> ProxyStats:
        """Counts per miner and for the site, latency percentiles, fallbacks by reason."""
        now = self.clock()
        totals = MinerCounts()
        totals.add(self._closed)
        miners = []
        for session in self._sessions.values():
            counts = MinerCounts()
            counts.add(session.counts)
            counts.upstream_seconds, counts.local_seconds = session.hashing_seconds(now)
            totals.add(counts)
            miners.append(
                MinerProxyStats(
                    peer=session.peer,
                    workers=tuple(session.workers),
                    side=session.state,
                    counts=counts,
                    last_fallback=session.last_fallback,
                )
            )
        hashing = totals.upstream_seconds + totals.local_seconds
        on_upstream = sum(1 for s in self._sessions.values() if s.side == "upstream")
        if self.shared is not None:
            upstream_connections = int(self.shared.connected)
        else:
            upstream_connections = sum(1 for s in self._sessions.values() if s.upstream)
        return ProxyStats(
            upstream_healthy=self._healthy,
            connections=len(self._sessions),
            on_upstream=on_upstream,
            on_local=len(self._sessions) - on_upstream,
            connections_refused=self._refused,
            overloads=self.overloads,
            upstream_connections=upstream_connections,
            totals=totals,
            work_lost_fraction=totals.local_seconds / hashing if hashing > 0 else 0.0,
            latency_p50_ms=self.latency.percentile_ms(0.5),
            latency_p99_ms=self.latency.percentile_ms(0.99),
            fallbacks=dict(self._fallbacks),
            miners=tuple(miners),
        )

    # --- what sessions use ------------------------------------------------------------------

    async def open_upstream(self, key: int) -> UpstreamLink:
        """An upstream link for miner session `key`: its own connection, or its share of one.

        OSError or TimeoutError when the upstream cannot be reached, UpstreamRefusedError
        when it answers in a way miners cannot be relayed on.
        """
        if self.shared is not None:
            return await self.shared.attach(key)
        config = self.config
        return await UpstreamLink.open(
            config.upstream_host, config.upstream_port, config.connect_timeout, self.clock()
        )

    def fell_back(self, reason: Fallback) -> None:
        """Count a fallback by its reason."""
        self._fallbacks[reason] += 1

    def allocate_extranonce1(self) -> bytes:
        """A local extranonce1 no other connection has."""
        space = 2 ** (8 * EXTRANONCE1_SIZE)
        while True:
            self._next_extranonce = (self._next_extranonce + 1) % space
            candidate = self._next_extranonce.to_bytes(EXTRANONCE1_SIZE, "big")
            if candidate not in self._extranonces:
                self._extranonces.add(candidate)
                return candidate

    def retry_later(self, session: MinerSession, delay: float) -> None:
        """Try a fresh upstream connection for this miner after `delay` (if still healthy)."""
        if self._server is None:
            return
        loop = asyncio.get_running_loop()
        handle: asyncio.TimerHandle | None = None

        def fire() -> None:
            if handle is not None:
                self._timers.discard(handle)
            self._enqueue(session)

        handle = loop.call_later(delay, fire)
        self._timers.add(handle)

    # --- internals --------------------------------------------------------------------------

    def _enqueue(self, session: MinerSession) -> None:
        if (
            not self._healthy
            or self._server is None
            or session.closing
            or session.side != "local"
            or session.moving
            or session.number in self._queued
        ):
            return
        self._queue.append(session)
        self._queued.add(session.number)
        if self._mover is None or self._mover.done():
            self._mover = asyncio.create_task(self._move_batches(), name="stratum proxy moves")

    async def _move_batches(self) -> None:
        config = self.config
        while self._queue and self._healthy:
            batch = [self._queue.popleft() for _ in range(min(config.batch_size, len(self._queue)))]
            self._queued.difference_update(session.number for session in batch)
            await asyncio.gather(*(session.move_back() for session in batch))
            if self._queue:
                await asyncio.sleep(config.batch_interval)

    async def _refresh(self) -> None:
        """A fresh clean_jobs=false local job every interval, to every miner on local jobs."""
        while True:
            await asyncio.sleep(self.config.local.job_interval)
            job = self.book.new_job(clean=False)
            for session in list(self._sessions.values()):
                if session.local_started:
                    session.send_local_job(job, clean=False)

    async def _watch(self) -> None:
        late_ticks = 0
        while True:
            asked = time.monotonic()
            await asyncio.sleep(WATCH_INTERVAL)
            # How late the event loop woke us: a loop this busy cannot serve the miners.
            late = time.monotonic() - asked - WATCH_INTERVAL
            late_ticks = late_ticks + 1 if late >= self.config.overload_lag else 0
            if late_ticks >= OVERLOAD_TICKS:
                late_ticks = 0
                self._overloaded(late)
            now = self.clock()
            for session in list(self._sessions.values()):
                try:
                    session.check(now)
                except Exception:
                    _LOGGER.exception(
                        "Stratum proxy: checking connection %s failed", session.number
                    )

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if (
            self._server is None
            or len(self._sessions) >= self.config.max_connections
            or self.clock() < self._refuse_until
        ):
            # Refused at once: the miner's firmware goes to its second pool (the upstream).
            self._refused += 1
            writer.transport.abort()
            return
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        self._number += 1
        session = MinerSession(self._number, writer, self)
        self._sessions[session.number] = session
        sock = writer.get_extra_info("socket")
        if sock is not None and hasattr(socket, "TCP_USER_TIMEOUT"):
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT, DEAD_PEER_MS)
        session.handshake_timer = asyncio.get_running_loop().call_later(
            self.config.local.handshake_timeout, self._handshake_expired, session
        )
        try:
            await self._first_upstream(session)
            await session.run(reader)
        finally:
            session.close("connection ended")
            session.settle()
            self._closed.add(session.counts)
            del self._sessions[session.number]
            if session.local_extranonce is not None:
                self._extranonces.discard(session.local_extranonce)
            if task is not None:
                self._tasks.discard(task)

    async def _first_upstream(self, session: MinerSession) -> None:
        """Relay a new miner on a connection of its own, or serve it locally if none opens."""
        if not self._healthy:
            return
        try:
            link = await self.open_upstream(session.number)
        except (OSError, TimeoutError) as err:
            session.fall_back(Fallback.CONNECT_FAILED, type(err).__name__)
            return
        except UpstreamRefusedError as err:
            session.fall_back(err.reason, err.detail)
            return
        if session.closing or self._server is None or not self._healthy:
            link.close()
            return
        session.relay_on(link)

    def _overloaded(self, late: float) -> None:
        """Hand the miners to their own pools: close every connection, refuse new ones a while."""
        self.overloads += 1
        self._refuse_until = self.clock() + self.config.overload_cooldown
        _LOGGER.warning(
            "Stratum proxy overloaded (its checks ran %.1f s late): %d miner connections closed,"
            " so their firmware goes on to its own pool; new ones refused for %.0f s",
            late,
            len(self._sessions),
            self.config.overload_cooldown,
        )
        for session in list(self._sessions.values()):
            session.close("proxy overloaded")

    def _handshake_expired(self, session: MinerSession) -> None:
        session.handshake_timer = None
        if not session.ready:
            session.close("no subscribe and authorize in time")
