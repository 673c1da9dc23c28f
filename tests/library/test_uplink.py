"""Uplink health: the Stratum handshake probe over real sockets, outage confirmation, share loss."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
import contextlib
import json

import pytest

from custom_components.bitcoin_mining.miningsite.uplink import (
    OutageDetector,
    ShareCounters,
    ShareLossWindow,
    probe_stratum,
)
from simulator.pool import UpstreamPool
from tests.support.modbus_meter import free_port

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@contextlib.asynccontextmanager
async def pool_that(handler: Handler) -> AsyncIterator[int]:
    """A loopback server that runs `handler` for each connection; yields its port."""
    connections: set[asyncio.StreamWriter] = set()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.add(writer)
        with contextlib.suppress(ConnectionError):
            await handler(reader, writer)

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    try:
        yield int(server.sockets[0].getsockname()[1])
    finally:
        for writer in connections:
            writer.transport.abort()
        server.close()
        await server.wait_closed()


def line(message: object) -> bytes:
    return json.dumps(message).encode() + b"\n"


async def test_a_pool_that_gives_work_passes_with_its_latency(loopback_network: None) -> None:
    pool = UpstreamPool("127.0.0.1", 0)
    await pool.start()
    try:
        result = await probe_stratum("127.0.0.1", pool.port, "site.probe", timeout=5)
    finally:
        await pool.stop()
    assert result.ok
    assert result.error is None
    assert result.latency_ms is not None
    assert 0 < result.latency_ms < 5000


async def test_a_pool_that_is_down_refuses(loopback_network: None) -> None:
    result = await probe_stratum("127.0.0.1", free_port(), "site.probe", timeout=5)
    assert (result.ok, result.latency_ms, result.error) == (False, None, "refused")


async def test_a_pool_that_never_completes_the_handshake_times_out(
    loopback_network: None,
) -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()  # reads everything, answers nothing

    async with pool_that(silent) as port:
        loop = asyncio.get_running_loop()
        started = loop.time()
        result = await probe_stratum("127.0.0.1", port, "site.probe", timeout=0.5)
    assert (result.ok, result.error) == (False, "timeout")
    assert loop.time() - started < 3  # bounded by the probe's timeout, not the pool


async def test_a_job_without_replies_is_not_work(loopback_network: None) -> None:
    """A pool that pushes jobs but never answers subscribe gives no work to a miner."""

    async def pushy(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(line({"id": None, "method": "mining.notify", "params": ["1"]}))
        await reader.read()

    async with pool_that(pushy) as port:
        result = await probe_stratum("127.0.0.1", port, "site.probe", timeout=0.5)
    assert (result.ok, result.error) == (False, "timeout")


@pytest.mark.parametrize(
    ("reply", "error"),
    [
        (b"\xff\xfe garbage\n", "protocol: not JSON"),
        (b"[1, 2, 3]\n", "protocol: not a JSON-RPC message"),
        (line({"id": 1, "result": True, "error": None}), "protocol: subscribe answered True"),
        (
            line({"id": 1, "result": None, "error": [24, "Unauthorized worker", None]}),
            "rejected: subscribe: [24, 'Unauthorized worker', None]",
        ),
        (b"x" * (20 * 1024) + b"\n", "protocol: a line over 16 KiB"),
        (b"", "closed: the pool hung up during the handshake"),
    ],
    ids=["garbage", "not-an-object", "bad-subscribe", "refused-subscribe", "long-line", "hangup"],
)
async def test_a_pool_that_answers_nonsense_fails_clearly(
    loopback_network: None, reply: bytes, error: str
) -> None:
    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readline()
        writer.write(reply)
        await writer.drain()
        writer.close()

    async with pool_that(answer) as port:
        result = await probe_stratum("127.0.0.1", port, "site.probe", timeout=5)
    assert not result.ok
    assert result.error is not None
    assert result.error.startswith(error), result.error


async def test_an_authorize_refused_is_no_work(loopback_network: None) -> None:
    async def refuse(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readline()
        await reader.readline()
        subscribed = {"id": 1, "result": [[["mining.notify", "1"]], "08000002", 8], "error": None}
        writer.write(line(subscribed) + line({"id": 2, "result": False, "error": None}))
        await writer.drain()
        await reader.read()

    async with pool_that(refuse) as port:
        result = await probe_stratum("127.0.0.1", port, "site.probe", timeout=5)
    assert (result.ok, result.error) == (False, "rejected: authorize answered False")


async def test_a_probe_needs_a_positive_timeout() -> None:
    with pytest.raises(ValueError, match="timeout must be positive"):
        await probe_stratum("127.0.0.1", 3333, "site.probe", timeout=0)


def test_one_lost_probe_is_no_outage() -> None:
    detector = OutageDetector(failures=3, window_s=30)
    detector.observe(False, 100.0)
    detector.observe(True, 105.0)
    detector.observe(False, 110.0)
    detector.observe(False, 115.0)
    assert not detector.down  # two in a row, then the third never came
    detector.observe(True, 120.0)
    assert not detector.down
    assert detector.outage_s(120.0) is None


def test_failures_within_the_window_confirm_an_outage_from_the_first() -> None:
    detector = OutageDetector(failures=3, window_s=30)
    for at in (100.0, 105.0, 110.0):
        detector.observe(False, at)
    assert detector.down
    assert detector.down_since == 100.0
    assert detector.outage_s(130.0) == 30.0
    assert detector.healthy_for(130.0) == 0.0
    detector.observe(True, 140.0)
    assert not detector.down
    assert detector.last_outage_s == 40.0
    assert detector.healthy_for(150.0) == 10.0


def test_failures_spread_wider_than_the_window_do_not_add_up() -> None:
    detector = OutageDetector(failures=3, window_s=10)
    for at in (100.0, 108.0, 116.0, 124.0):
        detector.observe(False, at)
    assert not detector.down  # never three within 10 s
    detector.observe(False, 126.0)
    assert detector.down
    assert detector.down_since == 116.0


def test_a_failure_restarts_the_hold_before_a_switch_back() -> None:
    detector = OutageDetector(failures=1, window_s=10)
    detector.observe(False, 100.0)
    detector.observe(True, 110.0)
    assert detector.healthy_for(140.0) == 30.0
    detector.observe(False, 141.0)  # a flap: down again at once (one failure confirms here)
    assert detector.down
    detector.observe(True, 150.0)
    assert detector.healthy_for(155.0) == 5.0


@pytest.mark.parametrize(("failures", "window_s"), [(0, 10.0), (3, 0.0), (3, -1.0)])
def test_an_outage_detector_refuses_nonsense_settings(failures: int, window_s: float) -> None:
    with pytest.raises(ValueError, match="must be"):
        OutageDetector(failures=failures, window_s=window_s)


def test_share_loss_over_the_window_per_pool_and_overall() -> None:
    window = ShareLossWindow(window_s=60)
    window.observe(0.0, {("a", "up"): ShareCounters(100, 1), ("b", "local"): ShareCounters(5, 0)})
    assert window.loss_percent(0.0) is None  # the first reading is a baseline
    window.observe(
        10.0,
        {("a", "up"): ShareCounters(197, 4, 1), ("b", "local"): ShareCounters(15, 0)},
    )
    # a: 97 accepted, 3 rejected, 1 stale; b: 10 accepted.
    assert window.loss_percent(10.0, "up") == pytest.approx(100 * 4 / 101, abs=0.001)
    assert window.loss_percent(10.0, "local") == 0.0
    assert window.loss_percent(10.0) == pytest.approx(100 * 4 / 111, abs=0.001)
    # Out of the window, those shares no longer count.
    assert window.loss_percent(71.0) is None


def test_a_miner_that_restarted_counts_from_zero() -> None:
    window = ShareLossWindow(window_s=60)
    window.observe(0.0, {("a", "up"): ShareCounters(1000, 10)})
    window.observe(10.0, {("a", "up"): ShareCounters(8, 2)})  # rebooted: counters restarted
    assert window.loss_percent(10.0) == 20.0
    window.observe(20.0, {("a", "up"): ShareCounters(18, 2)})
    assert window.loss_percent(20.0) == pytest.approx(100 * 2 / 20)


def test_share_loss_refuses_nonsense() -> None:
    with pytest.raises(ValueError, match="must be positive"):
        ShareLossWindow(window_s=0)
    window = ShareLossWindow(window_s=60)
    window.observe(0.0, {("a", "up"): ShareCounters(10, 0)})
    with pytest.raises(ValueError, match="negative share counters"):
        window.observe(1.0, {("a", "up"): ShareCounters(-1, 0)})
    # Nothing of the bad reading was kept: the next good one still counts from 10.
    window.observe(2.0, {("a", "up"): ShareCounters(20, 0)})
    assert window.loss_percent(2.0) == 0.0
