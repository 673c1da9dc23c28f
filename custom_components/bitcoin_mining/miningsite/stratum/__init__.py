"""The local Stratum v1 server: a backup pool (LocalPool), or a proxy in front of the upstream."""

from __future__ import annotations

from .config import DEFAULT_PORT, PoolConfig, PoolStats
from .proxy import StratumProxy
from .proxy_config import Fallback, MinerCounts, MinerProxyStats, ProxyConfig, ProxyStats
from .server import LocalPool, check_listen
from .vardiff import VardiffConfig

__all__ = [
    "DEFAULT_PORT",
    "Fallback",
    "LocalPool",
    "MinerCounts",
    "MinerProxyStats",
    "PoolConfig",
    "PoolStats",
    "ProxyConfig",
    "ProxyStats",
    "StratumProxy",
    "VardiffConfig",
    "check_listen",
]
