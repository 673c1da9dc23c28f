"""The local pool's settings and the figures it reports."""

from __future__ import annotations

from dataclasses import dataclass, field
import math

from .jobs import DEFAULT_KEEP_JOBS
from .stats import DEFAULT_HASHRATE_WINDOW
from .vardiff import VardiffConfig

DEFAULT_PORT = 3333


@dataclass(frozen=True, slots=True)
class PoolConfig:
    """Limits and timings of the local pool."""

    max_connections: int = 2048
    # A connection that has not subscribed and authorized by then is closed.
    handshake_timeout: float = 30.0
    # cgminer gives a pool up after 90 s without a line; the fact sheet says 20-30 s.
    job_interval: float = 25.0
    keep_jobs: int = DEFAULT_KEEP_JOBS
    merkle_branches: int = 0
    vardiff: VardiffConfig = field(default_factory=VardiffConfig)
    # A client that stops reading is dropped once this much is queued for it, or
    # when a reply has waited this long to be taken.
    write_buffer_limit: int = 256 * 1024
    write_timeout: float = 30.0
    # Lines that are not Stratum requests at all a connection may send before it is dropped.
    max_malformed: int = 32
    hashrate_window: float = DEFAULT_HASHRATE_WINDOW

    def __post_init__(self) -> None:
        """Refuse settings the pool cannot run with."""
        if self.max_connections < 1:
            raise ValueError("max_connections must be at least 1")
        if not 0 < self.job_interval <= 30:
            raise ValueError("job_interval must be in (0, 30] seconds")
        for name in ("handshake_timeout", "write_timeout"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a positive number of seconds")
        if self.write_buffer_limit < 4096 or self.max_malformed < 0:
            raise ValueError("write_buffer_limit must be >= 4096 and max_malformed >= 0")


@dataclass(frozen=True, slots=True)
class PoolStats:
    """What the pool counted since it started."""

    connections: int
    miners: int
    connections_total: int
    connections_refused: int
    connections_dropped: int
    shares_accepted: int
    shares_rejected: int
    rejected: dict[str, int]
    accepted_per_minute: float
    hashrate: float
    workers: tuple[str, ...]
    jobs_issued: int
