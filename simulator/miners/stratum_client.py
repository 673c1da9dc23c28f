"""A miner's Stratum v1 session with its active pool: real subscribe, authorize, jobs and shares.

While the miner is awake (mining or starting) the link keeps one session with the
miner's active pool: it subscribes, authorizes with the pool entry's worker name,
asks for a tiny difficulty (mining.suggest_difficulty, as a Bitaxe does), and
while mining submits a real share (a nonce found by sha256d at the pool's
difficulty) about every `share_interval_s` (exponentially spread). A sleeping or
offline miner has no session: its mining process is stopped.

Health is what the miner's failover reads for its active pool: alive while the
session is up, its shares are answered (within `failover_delay_s`, at most 5 s)
and the pool is not silent for 90 s (cgminer's limit); otherwise dead since the
pool was last known alive: its last line, or the moment it closed or reset the
session (or when the miner took the pool up). A session that fails, or stays dead
for `failover_delay_s`, is dropped and retried with exponential backoff.
A pool named by a host name is out on the internet and never dialled: it follows
the outage switch, and its shares are counted without a socket.

Most firmware families subscribe to extranonce changes (mining.set_extranonce takes
effect with the next job); every one follows `client.reconnect` at once. The link
records the longest gap without a valid job while hashing: from the moment the session
ended or went stalled (as the miner's failover sees it) until the next job came.
"""

from __future__ import annotations

import asyncio
from collections import deque
import contextlib
import json
import logging
import time
from typing import TYPE_CHECKING

from ..stratum import (
    MAX_LINE,
    TINY_DIFFICULTY,
    Job,
    encode,
    find_nonce,
    header_prefix,
    target,
)
from .pools import is_named_host, split_pool_url

if TYPE_CHECKING:
    from .model import PoolEntry, SimMiner

LOGGER = logging.getLogger(__name__)

AGENTS = {
    "whatsminer": "whatsminer/v1",
    "whatsminer_v3": "whatsminer/v1",
    "antminer": "Antminer S19/Thu Jan 11 2024",
    "luxos": "LUXminer/2024.11.1",
    "braiins": "bosminer-plus-tuner/25.01",
    "cgminer": "cgminer/4.11.1",
}
ATTEMPTS_KEPT = 32
REPLY_TIMEOUT_S = 5.0
SILENT_S = 90.0
START_SPREAD_S = 1.0
# Families whose firmware sends mining.extranonce.subscribe (plain cgminer does not).
XNSUB_FAMILIES = frozenset({"whatsminer", "whatsminer_v3", "antminer", "luxos", "braiins"})


class PoolLink:
    """One miner's session with its active pool."""

    def __init__(self, miner: SimMiner) -> None:
        """Idle until start()."""
        self.miner = miner
        self.env = miner.env
        self.url: str | None = None
        self.entry: PoolEntry | None = None
        self.ready = False
        self.ready_since = 0.0
        self.heard = 0.0
        # Whether a session with this pool was tried yet (until then the probe's answer holds).
        self.tried = False
        # Monotonic times of connection attempts (tests read the backoff from them).
        self.attempts: deque[float] = deque(maxlen=ATTEMPTS_KEPT)
        self._task: asyncio.Task[None] | None = None
        self._next_share = 0.0
        self._extranonce2 = 0
        # Submits waiting for their answer: id -> monotonic time sent.
        self._pending: dict[int, float] = {}
        # The longest gap without a valid job while hashing, and the one running now.
        self.longest_gap = 0.0
        self._gap_since: float | None = None
        self._had_job = False
        self._reconnect_now = False

    # --- gaps without a valid job ---------------------------------------------------------

    def gap_s(self, now: float) -> float:
        """The longest gap so far, the running one included."""
        running = now - self._gap_since if self._gap_since is not None else 0.0
        return max(self.longest_gap, running)

    def reset_gap(self, now: float) -> None:
        """Start measuring afresh (a gap running now counts from now)."""
        self.longest_gap = 0.0
        if self._gap_since is not None:
            self._gap_since = now

    def _gap_begins(self, at: float) -> None:
        if self._had_job and self._gap_since is None and self.miner.hashing:
            self._gap_since = at

    def _gap_ends(self, now: float) -> None:
        if self._gap_since is not None:
            self.longest_gap = max(self.longest_gap, now - self._gap_since)
            self._gap_since = None

    def _stall_began(self) -> float:
        """When the session went stalled: silence, or the oldest share's answer overdue."""
        oldest = min(self._pending.values(), default=None)
        limit = min(self.env.failover_delay_s, REPLY_TIMEOUT_S)
        overdue = oldest + limit if oldest is not None else float("inf")
        return min(self.heard + SILENT_S, overdue)

    # --- health ---------------------------------------------------------------------------

    def status(self, now: float) -> tuple[bool, float]:
        """(alive, since) of the pool this link is on."""
        if self.url is not None and (is_named_host(self.url) or not self.tried):
            return self.env.pool_status(self.url, now)
        if self.ready and not self._stalled(now):
            return True, self.ready_since
        return False, self.heard

    def _stalled(self, now: float) -> bool:
        """The pool stopped answering: a share unanswered too long, or silence."""
        if now - self.heard >= SILENT_S:
            return True
        oldest = min(self._pending.values(), default=None)
        limit = min(self.env.failover_delay_s, REPLY_TIMEOUT_S)
        return oldest is not None and now - oldest >= limit

    @property
    def tick_s(self) -> float:
        """How often the link looks at its miner (failover is noticed within a tick)."""
        return min(1.0, max(0.05, self.env.failover_delay_s / 10))

    # --- life cycle -------------------------------------------------------------------------

    def start(self) -> None:
        """Run in the background."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        """End the session."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    def _wanted(self) -> str | None:
        """The URL to be connected to now (advancing the miner), taking it up if new."""
        now = self.env.clock()
        url, entry = self.miner.stratum_target()
        if not self.miner.hashing:
            self._gap_ends(now)  # a miner that does not hash misses no job
        if url != self.url or entry is not self.entry:
            self.url, self.entry = url, entry
            self.ready = self.tried = False
            self.heard = now
            self._next_share = now + self._share_gap()
        return url

    def _share_gap(self) -> float:
        return self.env.rng.expovariate(1 / max(self.env.share_interval_s, 1e-3))

    async def _run(self) -> None:
        # Miners of a site do not all dial at the same instant: spread the first connects.
        await asyncio.sleep(self.env.rng.uniform(0, START_SPREAD_S))
        backoff = self.env.reconnect_min_s
        while True:
            url = self._wanted()
            address = split_pool_url(url) if url else None
            if url is None or address is None or is_named_host(url):
                self._count_blind_share()
                await asyncio.sleep(self.tick_s)
                continue
            was_ready = await self._session(url, *address)
            if self._reconnect_now:
                self._reconnect_now = False
                continue  # the pool asked for it: at once, no backoff
            if self._wanted() != url:
                backoff = self.env.reconnect_min_s
                continue  # moved to another pool: connect there at once
            backoff = self.env.reconnect_min_s if was_ready else backoff
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, self.env.reconnect_max_s)

    def _count_blind_share(self) -> None:
        """A pool on the internet (never dialled): a share accepted while it is alive."""
        now = self.env.clock()
        if self.url is None or self.entry is None or now < self._next_share:
            return
        self._next_share = now + self._share_gap()
        if self.miner.hashing and self.status(now)[0]:
            self.entry.accepted += 1
            self.entry.last_share_wall = time.time()

    # --- one session ----------------------------------------------------------------------

    async def _session(self, url: str, host: str, port: int) -> bool:
        """Connect, handshake, mine until the pool dies or the miner moves; True if it worked."""
        clock = self.env.clock
        started = clock()
        self.attempts.append(started)
        handshake_s = max(1.0, min(self.env.failover_delay_s, 10.0))
        try:
            async with asyncio.timeout(handshake_s):
                reader, writer = await asyncio.open_connection(host, port, limit=MAX_LINE)
        except (OSError, TimeoutError):
            self.tried = True
            return False
        entry = self.entry
        assert entry is not None
        state = _SessionState()
        self._pending.clear()
        was_ready = False
        try:
            handshake: list[tuple[int, str, list[object]]] = [
                (1, "mining.subscribe", [AGENTS[self.miner.family]]),
                (2, "mining.authorize", [entry.user, entry.password]),
                (3, "mining.suggest_difficulty", [TINY_DIFFICULTY]),
            ]
            if self.miner.family in XNSUB_FAMILIES:
                handshake.append((4, "mining.extranonce.subscribe", []))
            for request_id, method, params in handshake:  # pipelined, as a Bitaxe does
                writer.write(encode({"id": request_id, "method": method, "params": params}))
            while self._wanted() == url and self.entry is entry:
                now = clock()
                if not self.ready and now - started >= handshake_s:
                    self.tried = True
                    return was_ready
                stalled = self.ready and self._stalled(now)
                if stalled:
                    self._gap_begins(self._stall_began())
                if stalled and now - self.heard >= self.env.failover_delay_s:
                    return was_ready  # dead long enough: drop the session, dial again
                hashing = self.ready and self.miner.hashing
                if hashing and now >= self._next_share:
                    self._next_share = now + self._share_gap()
                    self._submit(writer, state, entry)
                due = self._next_share - now if hashing else self.tick_s
                wait = max(0.001, min(self.tick_s, due))
                try:
                    line = await asyncio.wait_for(reader.readline(), wait)
                except TimeoutError:
                    continue
                if not line:
                    if self.ready:
                        self.heard = clock()  # alive until it closed the session
                    return was_ready
                self.heard = clock()
                limit = min(self.env.failover_delay_s, REPLY_TIMEOUT_S)
                # The pool talks again: a share it never answered was lost on the way.
                self._pending = {k: t for k, t in self._pending.items() if self.heard - t < limit}
                self._handle(line, state, entry)
                if state.reconnect:
                    self._reconnect_now = True
                    return was_ready
                if state.ready and not self.ready:
                    self.ready, self.ready_since, was_ready = True, self.heard, True
                    self.tried = True
        except OSError:
            if self.ready:
                self.heard = clock()  # alive until it reset the session
            return was_ready
        except ValueError:  # a line over the limit
            return was_ready
        finally:
            if was_ready:
                self._gap_begins(clock())
            self.ready = False
            if self.url == url and self.entry is entry:  # not if the miner moved meanwhile
                self.tried = True
            writer.transport.abort()
        return was_ready

    def _handle(self, line: bytes, state: _SessionState, entry: PoolEntry) -> None:
        try:
            message = json.loads(line)
        except ValueError:
            return
        if not isinstance(message, dict):
            return
        method, params = message.get("method"), message.get("params")
        if method == "mining.set_difficulty" and isinstance(params, list) and params:
            with contextlib.suppress(TypeError, ValueError):
                state.pending_difficulty = float(params[0])
                target(state.pending_difficulty)
        elif method == "mining.notify":
            try:
                job = Job.from_params(params)
            except ValueError:
                return
            if state.pending_extranonce is not None:
                state.extranonce1, state.extranonce2_size = state.pending_extranonce
                state.pending_extranonce = None
            state.job = job
            state.limit = target(state.pending_difficulty) if state.pending_difficulty else None
            entry.jobs += 1
            self._had_job = True
            self._gap_ends(self.env.clock())
        elif method == "mining.set_extranonce" and isinstance(params, list) and len(params) >= 2:
            if isinstance(params[0], str) and isinstance(params[1], int):
                state.pending_extranonce = (params[0], params[1])
        elif method == "client.reconnect":
            state.reconnect = True
        elif message.get("id") == 1 and isinstance(message.get("result"), list):
            result = message["result"]
            if len(result) >= 3 and isinstance(result[1], str) and isinstance(result[2], int):
                state.extranonce1, state.extranonce2_size = result[1], result[2]
        elif message.get("id") == 2:
            state.authorized = message.get("result") is True
        elif message.get("id") in self._pending:
            del self._pending[message["id"]]
            if message.get("result") is True:
                entry.accepted += 1
                entry.last_share_wall = time.time()
            else:
                entry.rejected += 1

    def _submit(self, writer: asyncio.StreamWriter, state: _SessionState, entry: PoolEntry) -> None:
        job, limit = state.job, state.limit
        if job is None or limit is None or state.extranonce1 is None:
            return
        self._extranonce2 += 1
        extranonce2 = (
            (self._extranonce2 % 256**state.extranonce2_size)
            .to_bytes(state.extranonce2_size, "big")
            .hex()
        )
        nonce = find_nonce(header_prefix(job, state.extranonce1, extranonce2, job.ntime), limit)
        if nonce is None:
            LOGGER.debug("Miner %s found no share at the pool's difficulty", self.miner.index)
            return
        state.next_id += 1
        self._pending[state.next_id] = self.env.clock()
        params = [entry.user, job.job_id, extranonce2, job.ntime, f"{nonce:08x}"]
        writer.write(encode({"id": state.next_id, "method": "mining.submit", "params": params}))


class _SessionState:
    """What one session learned from its pool."""

    def __init__(self) -> None:
        self.extranonce1: str | None = None
        self.extranonce2_size = 8
        self.authorized = False
        self.pending_difficulty: float | None = None
        self.limit: int | None = None
        self.job: Job | None = None
        self.next_id = 10
        # A new extranonce (mining.set_extranonce) waits for the next job.
        self.pending_extranonce: tuple[str, int] | None = None
        self.reconnect = False

    @property
    def ready(self) -> bool:
        """Subscribed, authorized and given a job."""
        return self.extranonce1 is not None and self.authorized and self.job is not None
