"""Uplink and pool reachability: TCP connect probes that never block the loop."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
import contextlib
from dataclasses import dataclass
import errno
import ipaddress
import socket
import time


@dataclass(frozen=True, slots=True)
class ProbeTarget:
    """A host and port to connect to."""

    name: str
    host: str
    port: int


@dataclass(frozen=True, slots=True)
class ProbeResult:
    """What one probe found: reachable with a connect time, or why not."""

    target: ProbeTarget
    reachable: bool
    latency_ms: float | None
    error: str | None
    checked_at_monotonic: float


def connect_error(err: OSError, otherwise: str = "error") -> str:
    """What a failed connection says about the network, in one word."""
    if isinstance(err, TimeoutError):
        return "timeout"
    if isinstance(err, socket.gaierror):
        return "dns"
    if isinstance(err, ConnectionRefusedError):
        return "refused"
    if err.errno in (errno.ENETUNREACH, errno.EHOSTUNREACH):
        return "unreachable"
    return otherwise


async def probe_tcp(target: ProbeTarget, timeout: float) -> ProbeResult:
    """Time a TCP connect; network errors become an unreachable result, never an exception."""
    started = time.monotonic()
    error: str | None = None
    try:
        async with asyncio.timeout(timeout):
            _, writer = await asyncio.open_connection(target.host, target.port)
    except OSError as err:
        error = connect_error(err)
    else:
        latency_ms = (time.monotonic() - started) * 1000
        writer.close()
        # The peer may reset a connection it never wanted.
        with contextlib.suppress(OSError):
            await writer.wait_closed()
        return ProbeResult(target, True, round(latency_ms, 2), None, time.monotonic())
    return ProbeResult(target, False, None, error, time.monotonic())


async def probe_all(targets: Sequence[ProbeTarget], timeout: float) -> list[ProbeResult]:
    """Probe every target concurrently, in the targets' order."""
    return list(await asyncio.gather(*(probe_tcp(target, timeout) for target in targets)))


def internet_up(results: Sequence[ProbeResult]) -> bool:
    """The internet is up when any probe got through."""
    return any(result.reachable for result in results)


def local_address_towards(host: str) -> str | None:
    """The address this machine would reach `host` from (an IP; no packet is sent).

    None for a host name (it is never looked up here) or an address without a route.
    """
    try:
        family = socket.AF_INET6 if ipaddress.ip_address(host).version == 6 else socket.AF_INET
    except ValueError:
        return None
    try:
        with socket.socket(family, socket.SOCK_DGRAM) as probe:
            # A UDP connect only picks the route and the source address.
            probe.connect((host, 9))
            return str(probe.getsockname()[0])
    except OSError:
        return None
