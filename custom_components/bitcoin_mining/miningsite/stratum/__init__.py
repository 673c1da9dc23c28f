"""A local Stratum v1 pool: keeps the site's miners hashing while the uplink is down."""

from __future__ import annotations

from .config import DEFAULT_PORT, PoolConfig, PoolStats
from .server import LocalPool, check_listen
from .vardiff import VardiffConfig

__all__ = ["DEFAULT_PORT", "LocalPool", "PoolConfig", "PoolStats", "VardiffConfig", "check_listen"]
