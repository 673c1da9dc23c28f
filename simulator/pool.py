"""A Stratum v1 pool that verifies shares: the upstream pool stand-in (and a local pool in tests).

It answers configure, subscribe (a unique extranonce1, extranonce2_size 8),
authorize (any worker), suggest_difficulty, extranonce.subscribe and submit (real
sha256d verification at its one difficulty, tiny by default); it sends
set_difficulty and a clean job after authorize, then a fresh `clean_jobs=false`
job every `job_interval_s` to every authorized connection, keeping the last
few jobs valid. Shares are counted per worker.

Reachability (set_reachability) is how an uplink outage looks from the site:
- `up`: normal;
- `refuse`: the listener is closed (a connect gets RST) and open sessions are reset;
- `blackhole`: nothing answers: open sessions go silent (both ways: what is sent is
  held, as TCP keeps retransmitting it, and delivered if the uplink comes back while
  the session lasts), and new connects hang (a listen queue of one that is never
  accepted: the kernel drops further SYNs, so a connect times out);
- `degraded`: every message to the miners is delayed by latency ± jitter, and a
  `loss` share of them (a lost TCP segment) waits a retransmission timeout more,
  in order, as TCP delivers it.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
import contextlib
from dataclasses import dataclass
import itertools
import json
import logging
import os
import random
import socket
import struct
from typing import Any, Literal

from .stratum import (
    EXTRANONCE2_SIZE,
    MAX_LINE,
    TINY_DIFFICULTY,
    VERSION_MASK,
    Job,
    encode,
    error,
    header_prefix,
    is_hex,
    make_job,
    random_prevhash,
    rolled_version,
    share_hash,
    target,
)

LOGGER = logging.getLogger(__name__)

Reachability = Literal["up", "refuse", "blackhole", "degraded"]
JOBS_KEPT = 8
HELD_MAX = 256  # messages a silent session holds each way (TCP's buffers are not endless)
RETRANSMIT_S = 0.2  # Linux's minimum TCP retransmission timeout


@dataclass(slots=True)
class WorkerShares:
    """Shares of one worker name."""

    accepted: int = 0
    rejected: int = 0


@dataclass(frozen=True, slots=True)
class Degradation:
    """A degraded uplink: one-way delay, its jitter, and the share of lost segments."""

    latency_ms: float = 300.0
    jitter_ms: float = 100.0
    loss: float = 0.02


class _Session:
    """One miner connection."""

    def __init__(self, writer: asyncio.StreamWriter, extranonce1: str) -> None:
        self.writer = writer
        self.extranonce1 = extranonce1
        self.subscribed = False
        self.workers: set[str] = set()
        self.mask = 0
        self.seen: set[tuple[str, ...]] = set()
        self.due = 0.0  # when the last delayed message leaves (keeps them in order)
        self.pending: list[asyncio.TimerHandle] = []
        # What the blackhole holds: lines from the miner, messages to it.
        self.held_in: list[bytes] = []
        self.held_out: list[dict[str, Any]] = []


class StratumPool:
    """A small Stratum v1 server with real share verification."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        difficulty: float = TINY_DIFFICULTY,
        job_interval_s: float = 25.0,
        rng: random.Random | None = None,
    ) -> None:
        """Describe the pool; start() listens."""
        target(difficulty)  # ValueError for a difficulty that is not > 0
        self.host = host
        self.port = port
        self.difficulty = difficulty
        self.job_interval_s = job_interval_s
        self.reachability: Reachability = "up"
        self.degradation = Degradation()
        self.workers: dict[str, WorkerShares] = {}
        self.connections_total = 0
        self._rng = rng or random.Random()
        self._server: asyncio.Server | None = None
        self._old_servers: list[asyncio.Server] = []
        self._hole: socket.socket | None = None
        self._sessions: set[_Session] = set()
        self._extranonce = itertools.count(int.from_bytes(os.urandom(2), "big") << 16)
        self._prevhash = random_prevhash()
        self._branch = (os.urandom(32).hex(), os.urandom(32).hex())
        self._job_ids = itertools.count(1)
        self._jobs: OrderedDict[str, Job] = OrderedDict()
        self._refresher: asyncio.Task[None] | None = None
        self._delayed: set[asyncio.TimerHandle] = set()
        self._new_job()

    # --- figures --------------------------------------------------------------------------

    @property
    def up(self) -> bool:
        """Whether the pool answers (up or degraded)."""
        return self.reachability in ("up", "degraded")

    @property
    def accepted_shares(self) -> int:
        """Accepted shares of every worker."""
        return sum(w.accepted for w in self.workers.values())

    @property
    def rejected_shares(self) -> int:
        """Rejected shares of every worker."""
        return sum(w.rejected for w in self.workers.values())

    @property
    def connections(self) -> int:
        """Open sessions."""
        return len(self._sessions)

    def snapshot(self) -> dict[str, Any]:
        """The pool as the control API lists it."""
        return {
            "connections": self.connections,
            "accepted": self.accepted_shares,
            "rejected": self.rejected_shares,
            "difficulty": self.difficulty,
        }

    def inject(self, data: bytes) -> int:
        """Write raw bytes to every authorized session (a misbehaving pool, for tests); how many."""
        sessions = [s for s in self._sessions if s.workers and not s.writer.is_closing()]
        for session in sessions:
            session.writer.write(data)
        return len(sessions)

    # --- life cycle -------------------------------------------------------------------------

    async def start(self) -> None:
        """Listen and send jobs."""
        await self._listen()
        if self._refresher is None:
            self._refresher = asyncio.create_task(self._refresh_jobs())

    async def stop(self) -> None:
        """Close everything."""
        if self._refresher is not None:
            self._refresher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._refresher
            self._refresher = None
        self._close_listener()
        for handle in self._delayed:
            handle.cancel()
        self._delayed.clear()
        for session in list(self._sessions):
            session.writer.transport.abort()
        for server in self._old_servers:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(2):
                    await server.wait_closed()
        self._old_servers.clear()

    async def _listen(self) -> None:
        if self._hole is not None:
            self._hole.close()  # a connect still queued there gets RST
            self._hole = None
        if self._server is None:
            self._server = await asyncio.start_server(
                self._serve, self.host, self.port, limit=MAX_LINE
            )
            self.port = self._server.sockets[0].getsockname()[1]

    def _close_listener(self) -> None:
        if self._server is not None:
            # Not wait_closed(): that waits for every open session, which a blackhole keeps.
            self._server.close()
            self._old_servers.append(self._server)
            self._server = None
        if self._hole is not None:
            self._hole.close()
            self._hole = None

    async def set_reachability(
        self, mode: Reachability, degradation: Degradation | None = None
    ) -> None:
        """How the uplink carries the pool now (see the module docstring)."""
        if degradation is not None:
            self.degradation = degradation
        if mode == self.reachability:
            return
        self.reachability = mode
        if mode in ("up", "degraded"):
            await self._listen()
            for session in list(self._sessions):
                self._release(session)
            return
        self._close_listener()
        if mode == "refuse":
            for session in list(self._sessions):
                _reset(session.writer)
            return
        hole = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            hole.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            hole.bind((self.host, self.port))
            hole.listen(0)
        except OSError as err:  # the port was taken meanwhile: connects are refused instead
            LOGGER.warning("Blackhole listener on %s:%s: %s", self.host, self.port, err)
            hole.close()
            return
        self._hole = hole

    # --- jobs -----------------------------------------------------------------------------

    def _new_job(self) -> Job:
        job = make_job(f"{next(self._job_ids):x}", self._prevhash, self._branch)
        self._jobs[job.job_id] = job
        while len(self._jobs) > JOBS_KEPT:
            self._jobs.popitem(last=False)
        return job

    @property
    def current_job(self) -> Job:
        """The newest job."""
        return next(reversed(self._jobs.values()))

    async def _refresh_jobs(self) -> None:
        while True:
            await asyncio.sleep(self.job_interval_s)
            notify = self._new_job().notify(clean=False)
            for session in list(self._sessions):
                if session.workers:
                    self._send(session, notify)

    # --- sessions -------------------------------------------------------------------------

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.reachability == "refuse":
            _reset(writer)
            return
        self.connections_total += 1
        session = _Session(writer, f"{next(self._extranonce) & 0xFFFFFFFF:08x}")
        self._sessions.add(session)
        try:
            while line := await reader.readline():
                if self.reachability == "blackhole":
                    if len(session.held_in) < HELD_MAX:
                        session.held_in.append(line)
                    continue
                for message in self._answer(session, line):
                    self._send(session, message)
                if self.reachability == "up":
                    await writer.drain()
        except (ConnectionError, ValueError, asyncio.LimitOverrunError):
            pass  # an oversized or broken line ends the session, as on a real pool
        finally:
            self._sessions.discard(session)
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    def _release(self, session: _Session) -> None:
        """The uplink is back: what the blackhole held gets through, in order."""
        held_out, held_in = session.held_out, session.held_in
        session.held_out, session.held_in = [], []
        for message in held_out:
            self._send(session, message)
        for line in held_in:
            for message in self._answer(session, line):
                self._send(session, message)

    def _send(self, session: _Session, message: dict[str, Any]) -> None:
        if session.writer.is_closing():
            return
        if self.reachability == "blackhole":
            if len(session.held_out) < HELD_MAX:
                session.held_out.append(message)
            return
        data = encode(message)
        if self.reachability != "degraded":
            session.writer.write(data)
            return
        loop = asyncio.get_running_loop()
        d = self.degradation
        delay = max(0.0, d.latency_ms + self._rng.uniform(-d.jitter_ms, d.jitter_ms)) / 1000
        if self._rng.random() < d.loss:
            delay += RETRANSMIT_S
        # TCP delivers in order: a message never overtakes the one before it.
        session.due = max(session.due + 1e-6, loop.time() + delay)
        handle = loop.call_at(session.due, self._deliver, session, data)
        self._delayed.add(handle)
        session.pending.append(handle)

    def _deliver(self, session: _Session, data: bytes) -> None:
        self._delayed.discard(session.pending.pop(0))
        if not session.writer.is_closing():
            session.writer.write(data)

    def _answer(self, session: _Session, line: bytes) -> list[dict[str, Any]]:
        """Replies to one JSON-RPC line (pipelined lines are answered in order)."""
        try:
            request = json.loads(line)
            method, request_id = request["method"], request.get("id")
            params = request.get("params", [])
        except (ValueError, KeyError, TypeError):
            return [{"id": None, "result": None, "error": error(20, "Other/Unknown")}]
        if not isinstance(params, list):
            params = []

        def reply(result: object, err: list[Any] | None = None) -> dict[str, Any]:
            return {"id": request_id, "result": result, "error": err}

        if method == "mining.configure":
            return [reply(self._configure(session, params))]
        if method == "mining.subscribe":
            session.subscribed = True
            subscriptions = [["mining.set_difficulty", "1"], ["mining.notify", "1"]]
            return [reply([subscriptions, session.extranonce1, EXTRANONCE2_SIZE])]
        if method == "mining.authorize":
            worker = params[0] if params and isinstance(params[0], str) else ""
            if not worker:
                return [reply(False, error(24, "Unauthorized worker"))]
            first = not session.workers
            session.workers.add(worker)
            self.workers.setdefault(worker, WorkerShares())
            messages = [reply(True)]
            if first:
                messages.append(
                    {"id": None, "method": "mining.set_difficulty", "params": [self.difficulty]}
                )
                messages.append(self.current_job.notify(clean=True))
            return messages
        if method in ("mining.suggest_difficulty", "mining.extranonce.subscribe"):
            return [reply(True)]
        if method == "mining.submit":
            err = self._verify(session, params)
            worker = params[0] if params and isinstance(params[0], str) else ""
            shares = self.workers.setdefault(worker, WorkerShares())
            if err is None:
                shares.accepted += 1
                return [reply(True)]
            shares.rejected += 1
            return [reply(False, err)]
        return [reply(None, error(20, f"Unknown method {method}"))]

    @staticmethod
    def _configure(session: _Session, params: list[Any]) -> dict[str, Any]:
        extensions = params[0] if params and isinstance(params[0], list) else []
        options = params[1] if len(params) > 1 and isinstance(params[1], dict) else {}
        result: dict[str, Any] = {}
        for name in extensions:
            if name == "version-rolling":
                asked = options.get("version-rolling.mask", "ffffffff")
                mask = int(asked, 16) if is_hex(asked, 8) else 0xFFFFFFFF
                session.mask = mask & VERSION_MASK
                result["version-rolling"] = True
                result["version-rolling.mask"] = f"{session.mask:08x}"
            elif isinstance(name, str):
                result[name] = False
        return result

    def _verify(self, session: _Session, params: list[Any]) -> list[Any] | None:
        """None for a valid share, else the Stratum error."""
        if len(params) not in (5, 6) or not all(isinstance(p, str) for p in params):
            return error(20, "Malformed submit")
        worker, job_id, extranonce2, ntime, nonce = params[:5]
        if not session.subscribed:
            return error(25, "Not subscribed")
        if worker not in session.workers:
            return error(24, "Unauthorized worker")
        job = self._jobs.get(job_id)
        if job is None:
            return error(21, "Job not found")
        if not is_hex(extranonce2, 2 * EXTRANONCE2_SIZE):
            return error(20, "Bad extranonce2 size")
        if not is_hex(ntime, 8) or not is_hex(nonce, 8):
            return error(20, "Bad ntime or nonce")
        version = None
        if len(params) == 6:
            if not is_hex(params[5], 8) or int(params[5], 16) & ~session.mask:
                return error(20, "Bad version bits")
            version = rolled_version(job, int(params[5], 16), session.mask)
        key = tuple(params[1:])
        if key in session.seen:
            return error(22, "Duplicate share")
        prefix = header_prefix(job, session.extranonce1, extranonce2, ntime, version)
        if share_hash(prefix, int(nonce, 16)) > target(self.difficulty):
            return error(23, "Low difficulty share")
        session.seen.add(key)
        if len(session.seen) > 4096:  # duplicates matter only for jobs still valid
            session.seen = {seen for seen in session.seen if seen[0] in self._jobs}
        return None


def _reset(writer: asyncio.StreamWriter) -> None:
    """Close with RST (SO_LINGER 0), as a refusing host does."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


# The name the stand-in had before it verified shares (tests/integration still use it).
UpstreamPool = StratumPool
