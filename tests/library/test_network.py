"""Network probes over real sockets."""

from __future__ import annotations

import asyncio
import contextlib
import socket

import pytest

from custom_components.bitcoin_mining.miningsite.network import (
    ProbeTarget,
    internet_up,
    probe_all,
    probe_tcp,
)
from tests.support.modbus_meter import free_port


async def test_unknown_host_is_a_dns_failure(loopback_network: None) -> None:
    try:
        await asyncio.get_running_loop().getaddrinfo("no-such-host.invalid", 3333)
    except RuntimeError:
        pytest.skip("this Home Assistant test harness blocks name resolution")
    except OSError:
        pass
    result = await probe_tcp(ProbeTarget("nowhere", "no-such-host.invalid", 3333), timeout=2)
    assert (result.reachable, result.error) == (False, "dns")


async def test_reachable_and_refused(loopback_network: None) -> None:
    async def close(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.close()

    server = await asyncio.start_server(close, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        up, refused = await probe_all(
            [
                ProbeTarget("pool", "127.0.0.1", port),
                ProbeTarget("closed", "127.0.0.1", free_port()),
            ],
            timeout=2,
        )
    finally:
        server.close()
        await server.wait_closed()
    assert up.reachable
    assert up.error is None
    assert up.latency_ms is not None
    assert up.latency_ms >= 0
    assert (refused.reachable, refused.error, refused.latency_ms) == (False, "refused", None)
    assert internet_up([up, refused])
    assert not internet_up([refused])


async def test_a_server_that_never_accepts_times_out(loopback_network: None) -> None:
    # A listening socket whose backlog is full leaves further connects hanging.
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    fillers = []
    try:
        for _ in range(8):
            filler = socket.socket()
            filler.setblocking(False)
            with contextlib.suppress(BlockingIOError):
                filler.connect(("127.0.0.1", port))
            fillers.append(filler)
        result = await probe_tcp(ProbeTarget("blackhole", "127.0.0.1", port), timeout=0.3)
    finally:
        for filler in fillers:
            filler.close()
        listener.close()
    assert (result.reachable, result.error) == (False, "timeout")
