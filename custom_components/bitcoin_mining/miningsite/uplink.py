"""Uplink health that means "the pool gives work": handshake probe, outage, share loss.

A Stratum handshake probe, outage confirmation over several probes, and share loss
from the miners' own counters. A TCP connect proves little (a captive 4G portal or a
half-dead Starlink answers SYNs); a pool that subscribes, authorizes and sends a job
is giving work.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
import json
import time
from typing import Any

from .network import connect_error

# A Stratum line longer than this is nonsense (a job is well under 2 KiB).
MAX_LINE = 16 * 1024
USER_AGENT = "bitcoin_mining-uplink-probe/1"


@dataclass(frozen=True, slots=True)
class HandshakeResult:
    """One Stratum handshake: work received (with the time to the first job), or why not."""

    ok: bool
    latency_ms: float | None
    error: str | None
    checked_at_monotonic: float


class _HandshakeFailedError(Exception):
    """The pool answered, but not with work."""


async def probe_stratum(
    host: str,
    port: int,
    user: str,
    *,
    password: str = "x",  # noqa: S107 - what pools expect when they need none
    timeout: float = 5.0,
) -> HandshakeResult:
    """Subscribe, authorize and wait for the first job; never raises for the pool's sake.

    The latency runs from the connect to the first `mining.notify`. A pool that sends
    garbage, refuses, or never completes the handshake gives a failed result within
    `timeout`, whatever it does.
    """
    if timeout <= 0:
        raise ValueError(f"timeout must be positive, not {timeout}")
    started = time.monotonic()
    error: str
    writer: asyncio.StreamWriter | None = None
    try:
        async with asyncio.timeout(timeout):
            reader, writer = await asyncio.open_connection(host, port, limit=MAX_LINE)
            requests = (
                {"id": 1, "method": "mining.subscribe", "params": [USER_AGENT]},
                {"id": 2, "method": "mining.authorize", "params": [user, password]},
            )
            writer.write(b"".join(json.dumps(r).encode() + b"\n" for r in requests))
            await writer.drain()
            await _until_work(reader)
    except _HandshakeFailedError as err:
        error = str(err)
    except (ValueError, asyncio.LimitOverrunError):
        # StreamReader.readline raises ValueError for a line over the limit.
        error = "protocol: a line over 16 KiB"
    except OSError as err:  # TimeoutError included
        error = connect_error(err, otherwise="closed")
    else:
        latency_ms = round((time.monotonic() - started) * 1000, 2)
        _close(writer)
        return HandshakeResult(True, latency_ms, None, time.monotonic())
    _close(writer)
    return HandshakeResult(False, None, error, time.monotonic())


async def _until_work(reader: asyncio.StreamReader) -> None:
    """Read replies until subscribed, authorized and a job came; _HandshakeFailedError otherwise."""
    subscribed = authorized = False
    while True:
        line = await reader.readline()
        if not line:
            raise _HandshakeFailedError("closed: the pool hung up during the handshake")
        message = _parse(line)
        if message.get("method") == "mining.notify":
            if subscribed and authorized:
                return
            continue  # a job ahead of the replies: wait for them
        request_id = message.get("id")
        if request_id not in (1, 2):
            continue  # set_difficulty and other notifications
        if message.get("error"):
            what = "subscribe" if request_id == 1 else "authorize"
            raise _HandshakeFailedError(f"rejected: {what}: {message['error']}")
        result = message.get("result")
        if request_id == 1:
            if not (isinstance(result, list) and len(result) >= 3):
                raise _HandshakeFailedError(f"protocol: subscribe answered {result!r}")
            subscribed = True
        else:
            if result is not True:
                raise _HandshakeFailedError(f"rejected: authorize answered {result!r}")
            authorized = True


def _parse(line: bytes) -> dict[str, Any]:
    """One JSON-RPC message; _HandshakeFailedError for anything else."""
    try:
        message = json.loads(line)
    except ValueError:
        raise _HandshakeFailedError(f"protocol: not JSON: {line[:60]!r}") from None
    if not isinstance(message, dict):
        raise _HandshakeFailedError(f"protocol: not a JSON-RPC message: {line[:60]!r}")
    return message


def _close(writer: asyncio.StreamWriter | None) -> None:
    """Drop the probe's connection without waiting on the pool."""
    if writer is not None:
        writer.transport.abort()


class OutageDetector:
    """An outage is `failures` failed probes within `window_s`, so one lost packet is none.

    Times are the caller's clock (monotonic seconds). `healthy_since` is when the probes
    last started to succeed without a failure since: a switch-back waits a hold time on it.
    """

    def __init__(self, failures: int, window_s: float) -> None:
        """Confirm after `failures` failures within `window_s` seconds."""
        if failures < 1:
            raise ValueError(f"failures must be at least 1, not {failures}")
        if not window_s > 0:
            raise ValueError(f"the window must be positive, not {window_s}")
        self.failures = failures
        self.window_s = window_s
        self._failed_at: deque[float] = deque()
        self.down_since: float | None = None
        self.healthy_since: float | None = None
        self.last_outage_s: float | None = None

    @property
    def down(self) -> bool:
        """Whether an outage is confirmed and not over."""
        return self.down_since is not None

    def observe(self, ok: bool, at: float) -> None:
        """Count one probe's result, taken at `at`."""
        if ok:
            self._failed_at.clear()
            if self.healthy_since is None:
                self.healthy_since = at
            if self.down_since is not None:
                self.last_outage_s = at - self.down_since
                self.down_since = None
            return
        self.healthy_since = None
        self._failed_at.append(at)
        while self._failed_at and self._failed_at[0] < at - self.window_s:
            self._failed_at.popleft()
        if self.down_since is None and len(self._failed_at) >= self.failures:
            # The outage began with the first failure that counted towards it.
            self.down_since = self._failed_at[0]

    def outage_s(self, now: float) -> float | None:
        """How long the confirmed outage has lasted (None while up)."""
        return None if self.down_since is None else now - self.down_since

    def healthy_for(self, now: float) -> float:
        """How long the probes have succeeded without a failure (0 while failing)."""
        return 0.0 if self.healthy_since is None else now - self.healthy_since


@dataclass(frozen=True, slots=True)
class ShareCounters:
    """One miner's counters on one pool, as its firmware reports them (they only grow)."""

    accepted: int
    rejected: int
    stale: int = 0


@dataclass(frozen=True, slots=True)
class _ShareDelta:
    at: float
    pool: str
    accepted: int
    lost: int


class ShareLossWindow:
    """Share loss per pool over a sliding window, from the miners' own counters.

    Each observation gives every miner's counters per pool; the window keeps what they
    grew by. A counter that went down means the miner restarted: what it shows now is
    what it counted since.
    """

    def __init__(self, window_s: float) -> None:
        """Keep `window_s` seconds of share counts."""
        if not window_s > 0:
            raise ValueError(f"the window must be positive, not {window_s}")
        self.window_s = window_s
        self._last: dict[tuple[str, str], ShareCounters] = {}
        self._deltas: deque[_ShareDelta] = deque()

    def observe(self, at: float, counters: Mapping[tuple[str, str], ShareCounters]) -> None:
        """Counters by (miner, pool) read at `at`."""
        for (miner, pool), now in counters.items():
            if min(now.accepted, now.rejected, now.stale) < 0:
                # Checked before anything is taken: a bad reading changes nothing.
                raise ValueError(f"{miner} on {pool}: negative share counters {now}")
        for (miner, pool), now in counters.items():
            before = self._last.get((miner, pool))
            self._last[(miner, pool)] = now
            if before is None:
                continue  # the first reading is a baseline, not shares of this window
            grew = (
                now.accepted - before.accepted,
                now.rejected - before.rejected,
                now.stale - before.stale,
            )
            accepted, rejected, stale = grew if min(grew) >= 0 else _since_restart(now)
            if accepted or rejected or stale:
                self._deltas.append(_ShareDelta(at, pool, accepted, rejected + stale))
        self._prune(at)

    def loss_percent(self, now: float, pool: str | None = None) -> float | None:
        """Rejected and stale shares in % of all, on one pool or all (None: no shares)."""
        self._prune(now)
        accepted = lost = 0
        for delta in self._deltas:
            if pool is None or delta.pool == pool:
                accepted += delta.accepted
                lost += delta.lost
        total = accepted + lost
        return None if total == 0 else round(100 * lost / total, 3)

    def pools(self, now: float) -> list[str]:
        """The pools that had shares in the window, sorted."""
        self._prune(now)
        return sorted({delta.pool for delta in self._deltas})

    def _prune(self, now: float) -> None:
        while self._deltas and self._deltas[0].at < now - self.window_s:
            self._deltas.popleft()


def _since_restart(counters: ShareCounters) -> tuple[int, int, int]:
    return counters.accepted, counters.rejected, counters.stale
