"""The Stratum proxy's settings, the reasons it falls back to local jobs, and its figures."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field, fields
from enum import StrEnum
import math

from .config import PoolConfig

# Upstream lines may carry a long coinbase and merkle branch; a miner's are far shorter.
UPSTREAM_MAX_LINE = 64 * 1024


class Fallback(StrEnum):
    """Why a miner was moved from the upstream pool to local jobs (counted per reason)."""

    UPSTREAM_DOWN = "upstream_down"  # the caller said so (its handshake probe)
    CONNECT_FAILED = "connect_failed"
    CONNECTION_LOST = "connection_lost"
    SILENT = "silent"
    REPLY_TIMEOUT = "reply_timeout"
    GARBAGE = "garbage"
    UNKNOWN_METHOD = "unknown_method"
    FOREIGN_RECONNECT = "foreign_reconnect"
    RECONNECT = "reconnect"
    OVERSIZE_LINE = "oversize_line"
    BAD_DIFFICULTY = "bad_difficulty"
    BAD_EXTRANONCE = "bad_extranonce"
    AUTHORIZE_REFUSED = "authorize_refused"
    NOT_READING = "not_reading"


@dataclass(frozen=True, slots=True)
class ProxyConfig:
    """Where the upstream pool is, its health deadlines, the move-back pacing, local settings."""

    upstream_host: str
    upstream_port: int
    max_connections: int = 2048
    connect_timeout: float = 3.0
    # An upstream request (a share, say) unanswered this long: that connection is gone.
    # Below the 5 s after which firmware calls its pool dead.
    reply_timeout: float = 3.0
    # No line at all from the upstream this long (jobs come every 30-60 s): gone.
    silence_timeout: float = 120.0
    # A miner whose own upstream connection failed (the caller saying nothing) tries a
    # fresh one after this long, doubling on each failure in a row up to retry_max.
    retry_delay: float = 10.0
    retry_max: float = 300.0
    # upstream_up() moves local miners back this many at a time, this far apart.
    batch_size: int = 50
    batch_interval: float = 1.0
    # Hosts a client.reconnect may name besides upstream_host.
    reconnect_hosts: tuple[str, ...] = ()
    latency_samples: int = 10_000
    # Every relayed miner on one upstream connection, the extranonce2 space split between
    # them (for uplinks where a connection per miner costs too much).
    aggregate: bool = False
    # The proxy's own event loop this late (seconds) on three checks in a row: it cannot
    # serve, so it closes every miner connection (firmware goes on to the miner's own pool)
    # and refuses new ones for overload_cooldown.
    overload_lag: float = 2.0
    overload_cooldown: float = 60.0
    # Local jobs: job interval, jobs kept, write limits, handshake timeout, difficulty bounds.
    local: PoolConfig = field(default_factory=PoolConfig)

    def __post_init__(self) -> None:
        """Refuse settings the proxy cannot run with."""
        if not self.upstream_host or not 0 < self.upstream_port < 65536:
            raise ValueError("the upstream pool needs a host and a port in 1-65535")
        for name in (
            "connect_timeout",
            "reply_timeout",
            "silence_timeout",
            "retry_delay",
            "retry_max",
            "batch_interval",
            "overload_lag",
            "overload_cooldown",
        ):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a positive number of seconds")
        if self.max_connections < 1 or self.batch_size < 1 or self.latency_samples < 1:
            raise ValueError("max_connections, batch_size and latency_samples must be >= 1")


@dataclass(slots=True)
class MinerCounts:
    """What one miner connection did through the proxy."""

    upstream_accepted: int = 0
    upstream_rejected: int = 0
    upstream_stale: int = 0
    # Shares sent upstream and never answered because the upstream failed.
    upstream_lost: int = 0
    local_accepted: int = 0
    local_rejected: int = 0
    # Shares for a job of the other side (upstream vs local), answered stale by the proxy.
    cross_side_stale: int = 0
    upstream_seconds: float = 0.0
    local_seconds: float = 0.0
    fallbacks: int = 0
    moves_back: int = 0

    def add(self, other: MinerCounts) -> None:
        """Add another miner's counts (site totals)."""
        for item in fields(self):
            setattr(self, item.name, getattr(self, item.name) + getattr(other, item.name))


@dataclass(frozen=True, slots=True)
class MinerProxyStats:
    """One miner connection: where it hashes now, its counts, why it last fell back."""

    peer: str
    workers: tuple[str, ...]
    side: str  # "upstream", "local", or "moving" (local, a fresh upstream being set up)
    counts: MinerCounts
    last_fallback: str | None


@dataclass(frozen=True, slots=True)
class ProxyStats:
    """The site through the proxy since start."""

    upstream_healthy: bool
    connections: int
    on_upstream: int
    on_local: int
    connections_refused: int
    # Times the proxy was too overloaded to serve and handed the miners to their own pools.
    overloads: int
    # Connections open to the upstream pool (one per relayed miner, or one when aggregating).
    upstream_connections: int
    totals: MinerCounts
    # Hashing time on local jobs over all hashing time: the work outages cost.
    work_lost_fraction: float
    # Processing time the proxy adds to a request's round trip, over the last samples.
    latency_p50_ms: float | None
    latency_p99_ms: float | None
    fallbacks: dict[str, int]
    miners: tuple[MinerProxyStats, ...]


class LatencyWindow:
    """The last `size` latency samples (seconds) and their percentiles."""

    def __init__(self, size: int) -> None:
        """Bounded memory: the oldest sample goes when a new one comes."""
        self._samples: deque[float] = deque(maxlen=size)

    def record(self, seconds: float) -> None:
        """Keep one sample."""
        self._samples.append(seconds)

    def percentile_ms(self, fraction: float) -> float | None:
        """The sample below which `fraction` of them lie, in milliseconds (None: no samples)."""
        if not self._samples:
            return None
        ordered = sorted(self._samples)
        index = min(len(ordered) - 1, max(0, math.ceil(fraction * len(ordered)) - 1))
        return ordered[index] * 1000
