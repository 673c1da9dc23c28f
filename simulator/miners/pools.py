"""Is a pool reachable? The site's upstream pool follows the outage switch; others are probed.

The answer is (alive, since): miners fall back when a better pool has been alive
for fallback_s, so each URL remembers when its liveness last changed. A miner's
active pool is judged by its own Stratum session (stratum_client.PoolLink); this
is for the others. Pools at an IP address are probed with a real Stratum handshake
(subscribe, authorize, first job), cached per URL and refreshed in the background
every few seconds, never awaited by a request. A pool named by a host name
is out on the internet: it is alive while the outage switch says the internet is up,
and is never looked up (the simulator makes no DNS query).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
import contextlib
from dataclasses import dataclass
import functools
import ipaddress
import json
import math
import time
from urllib.parse import urlsplit

from ..stratum import MAX_LINE

PROBE_INTERVAL_S = 5.0
PROBE_TIMEOUT_S = 2.0


@functools.lru_cache(maxsize=4096)  # asked on every tick of every miner's session
def split_pool_url(url: str) -> tuple[str, int] | None:
    """Host and port of a stratum URL (`stratum+tcp://host:port`), or None if it has none."""
    try:
        parts = urlsplit(url if "://" in url else f"stratum+tcp://{url}")
        host, port = parts.hostname, parts.port
    except ValueError:
        return None
    if not host or port is None:
        return None
    return host, port


@functools.lru_cache(maxsize=4096)
def is_named_host(url: str) -> bool:
    """The pool is named by a host name (not an IP address): somewhere on the internet."""
    address = split_pool_url(url)
    if address is None:
        return False
    try:
        ipaddress.ip_address(address[0])
    except ValueError:
        return True
    return False


@dataclass(slots=True)
class _Probe:
    alive: bool
    since: float
    checked: float
    task: asyncio.Task[None] | None = None


class PoolLiveness:
    """Liveness of every pool URL the miners use."""

    def __init__(
        self,
        internet_up: Callable[[], bool],
        upstream_url: str | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """`internet_up` reads the outage switch; `upstream_url` is the site's pool, if any."""
        self._internet_up = internet_up
        self.upstream_url = upstream_url
        self._clock = clock
        self._upstream_up = True
        self._upstream_since = -math.inf
        self._probes: dict[str, _Probe] = {}
        self._closed = False

    def internet_changed(self, up: bool) -> None:
        """The outage switch moved (called at once, so failover counts from the real moment)."""
        if up != self._upstream_up:
            self._upstream_up = up
            self._upstream_since = self._clock()

    def status(self, url: str, now: float) -> tuple[bool, float]:
        """(alive, since) of a pool URL."""
        if url == self.upstream_url or is_named_host(url):
            # The switch may also be flipped directly on SiteState: notice it here.
            self.internet_changed(self._internet_up())
            return self._upstream_up, self._upstream_since
        probe = self._probes.get(url)
        if probe is None:
            # Optimistic until the first probe answers (milliseconds on loopback).
            probe = self._probes[url] = _Probe(True, -math.inf, -math.inf)
        if now - probe.checked >= PROBE_INTERVAL_S and probe.task is None and not self._closed:
            probe.checked = now
            with contextlib.suppress(RuntimeError):  # no running loop: keep the cached answer
                probe.task = asyncio.get_running_loop().create_task(self._probe(url, probe))
        return probe.alive, probe.since

    async def _probe(self, url: str, probe: _Probe) -> None:
        alive = False
        address = split_pool_url(url)
        try:
            if address is not None:
                async with asyncio.timeout(PROBE_TIMEOUT_S):
                    alive = await stratum_handshake(*address)
        # Whatever goes wrong (refused, no DNS, a test harness forbidding DNS), the pool
        # is simply dead: a probe must never take the simulator down.
        except Exception:  # noqa: BLE001
            alive = False
        finally:
            probe.task = None
        if alive != probe.alive:
            probe.alive = alive
            probe.since = self._clock()
        probe.checked = self._clock()

    async def close(self) -> None:
        """Cancel the probes in flight."""
        self._closed = True
        tasks = [probe.task for probe in self._probes.values() if probe.task is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task


async def stratum_handshake(host: str, port: int) -> bool:
    """Whether the pool gives work: subscribe and authorize, then wait for the first job."""
    reader, writer = await asyncio.open_connection(host, port, limit=MAX_LINE)
    try:
        writer.write(
            b'{"id":1,"method":"mining.subscribe","params":["sim-probe"]}\n'
            b'{"id":2,"method":"mining.authorize","params":["probe","x"]}\n'
        )
        while line := await reader.readline():
            with contextlib.suppress(ValueError, AttributeError):
                if json.loads(line).get("method") == "mining.notify":
                    return True
        return False
    finally:
        writer.transport.abort()
