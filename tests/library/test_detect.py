"""Firmware family detection against real servers answering each protocol."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
import contextlib
import json
import struct
from typing import Any

import aiohttp
import pytest

from custom_components.bitcoin_mining.miningsite.exceptions import (
    DeviceConnectionError,
    UnsupportedError,
)
from custom_components.bitcoin_mining.miningsite.miners.base import MinerEndpoint
from custom_components.bitcoin_mining.miningsite.miners.detect import (
    classify_version,
    detect_family,
)
from custom_components.bitcoin_mining.miningsite.miners.rpc import ApiAccessRefusedError
from tests.conftest import MINER_API_FIXTURES
from tests.support.firmware_servers import Cgminer411Server, LuxosServer, WhatsminerServer
from tests.support.modbus_meter import free_port
from tests.support.web_firmware import AntminerServer, BadHttpServer, BraiinsServer

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]

CGMINER_VERSION = {
    "STATUS": [
        {"STATUS": "S", "Code": 22, "Msg": "CGMiner versions", "Description": "cgminer 4.12.1"}
    ],
    "VERSION": [{"CGMiner": "4.12.1", "API": "3.7"}],
    "id": 1,
}
# btminer answers `version` in its own shape: STATUS is a bare string.
BTMINER_VERSION = {
    "STATUS": "E",
    "When": 1773871985,
    "Code": 14,
    "Msg": "invalid cmd",
    "Description": "",
}


def fixture(path: str) -> Any:
    return json.loads((MINER_API_FIXTURES / path).read_text())


def rpc_answer(reply: Any) -> Handler:
    """A CGMiner RPC server: read once, answer with a NUL, close."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError):
            await reader.read(65536)
            writer.write(json.dumps(reply).encode() + b"\x00")
            await writer.drain()
        writer.close()

    return handle


def v3_answer(reply: Any) -> Handler:
    """A Whatsminer v3 server: length-prefixed JSON both ways."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError, asyncio.IncompleteReadError):
            (length,) = struct.unpack("<I", await reader.readexactly(4))
            request = json.loads(await reader.readexactly(length))
            assert request["cmd"] == "get.device.info"
            body = json.dumps(reply).encode()
            writer.write(struct.pack("<I", len(body)) + body)
            await writer.drain()
        writer.close()

    return handle


@contextlib.asynccontextmanager
async def serving(handler: Handler, host: str = "127.0.0.1", port: int = 0) -> AsyncIterator[int]:
    server = await asyncio.start_server(handler, host, port)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        await server.wait_closed()


@pytest.fixture
async def session(loopback_network: None) -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client:
        yield client


async def test_stock_antminer(session: aiohttp.ClientSession) -> None:
    async with AntminerServer() as server:
        # BMMiner settles it: no waiting for the other probes' timeouts. Those are
        # 30 s, so waiting for one would hit this bound, which only catches that.
        async with asyncio.timeout(5):
            family = await detect_family(MinerEndpoint(server.host, server.port), session, 30)
    assert family == "antminer"


@pytest.mark.parametrize("public_version", [False, True])
async def test_braiins(session: aiohttp.ClientSession, public_version: bool) -> None:
    async with BraiinsServer(public_version=public_version) as server:
        family = await detect_family(MinerEndpoint(server.host, server.port), session, 1)
        assert server.counts["GET /version"] == 1
    assert family == "braiins"


async def test_braiins_serves_its_web_ui_at_the_root(session: aiohttp.ClientSession) -> None:
    async with BraiinsServer() as server:
        async with session.get(f"http://{server.host}:{server.port}/") as page:
            assert page.status == 200
            assert "Braiins OS" in await page.text()
        assert await detect_family(MinerEndpoint(server.host, server.port), session, 1) == "braiins"


@pytest.mark.parametrize("how", ["close", "reset"])
async def test_an_address_left_out_of_api_allow_is_named(
    session: aiohttp.ClientSession, how: str
) -> None:
    # A real cgminer closes on an address outside --api-allow without a word.
    async with Cgminer411Server() as server:
        server.refuse = how  # type: ignore[assignment]
        with pytest.raises(ApiAccessRefusedError, match="--api-allow"):
            await detect_family(MinerEndpoint(server.host, server.port), session, 1)
        server.refuse = None
        assert await detect_family(MinerEndpoint(server.host, server.port), session, 1) == (
            "cgminer"
        )


async def test_a_real_cgminer_without_devices(session: aiohttp.ClientSession) -> None:
    async with Cgminer411Server() as server:
        assert await detect_family(MinerEndpoint(server.host, server.port), session, 1) == (
            "cgminer"
        )


@pytest.mark.parametrize("family", ["luxos", "whatsminer"])
async def test_real_shaped_rpc_servers(session: aiohttp.ClientSession, family: str) -> None:
    server = LuxosServer() if family == "luxos" else WhatsminerServer()
    async with server:
        assert await detect_family(MinerEndpoint(server.host, server.port), session, 1) == family


async def test_whatsminer_v3(session: aiohttp.ClientSession) -> None:
    reply = fixture("whatsminer/v3/get_device_info.json")
    async with serving(v3_answer(reply)) as port:
        family = await detect_family(MinerEndpoint("127.0.0.1", port), session, 1)
    assert family == "whatsminer_v3"


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        (BTMINER_VERSION, "whatsminer"),
        (fixture("luxminer/v1/version.json"), "luxos"),
        (fixture("antminer/v2020/version.json"), "antminer"),
        (CGMINER_VERSION, "cgminer"),
    ],
)
async def test_rpc_families(session: aiohttp.ClientSession, reply: Any, expected: str) -> None:
    async with serving(rpc_answer(reply)) as port:
        assert await detect_family(MinerEndpoint("127.0.0.1", port), session, 1) == expected


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        (BTMINER_VERSION, "whatsminer"),
        ({"STATUS": [{"STATUS": "S", "Description": "btminer 2.0"}], "VERSION": []}, "whatsminer"),
        ({"VERSION": [{"BMMiner": "2.0.0", "Type": "Antminer S9"}]}, "antminer"),
        ({"VERSION": [{"LUXminer": "2025.4"}]}, "luxos"),
        ({"VERSION": [{"BOSminer": "0.9"}]}, "cgminer"),
        ({"STATUS": [{"STATUS": "S"}]}, "cgminer"),
    ],
)
def test_classify_version(reply: dict[str, Any], expected: str) -> None:
    assert classify_version(reply) == expected


async def test_nothing_answering_is_a_connection_error(session: aiohttp.ClientSession) -> None:
    with pytest.raises(DeviceConnectionError, match="nothing answers"):
        await detect_family(MinerEndpoint("127.0.0.1", free_port()), session, 1)


@pytest.mark.parametrize("fault", ["garbage", "not_json"])
async def test_an_unknown_answer_is_unsupported(session: aiohttp.ClientSession, fault: str) -> None:
    server = BadHttpServer(fault)
    await server.start()
    try:
        with pytest.raises(UnsupportedError, match="no known miner firmware"):
            await detect_family(MinerEndpoint(server.host, server.port), session, 0.5)
    finally:
        await server.stop()


async def test_a_digest_challenge_is_not_braiins(session: aiohttp.ClientSession) -> None:
    # The Antminer's web port: 401 with a Digest challenge on /api/v1/version.
    async with AntminerServer() as server:
        with pytest.raises(UnsupportedError):
            await detect_family(MinerEndpoint(server.host, server.web_port), session, 0.5)
        assert server.digest.challenges == 1


async def test_a_silent_server_is_a_connection_error(session: aiohttp.ClientSession) -> None:
    server = BadHttpServer("silent")
    await server.start()
    try:
        with pytest.raises(DeviceConnectionError):
            await detect_family(MinerEndpoint(server.host, server.port), session, 0.3)
    finally:
        await server.stop()


STANDARD_HOST = "127.0.5.70"


async def test_standard_ports_prefer_v3_over_the_rpc_of_the_same_whatsminer(
    session: aiohttp.ClientSession,
) -> None:
    try:
        async with (
            serving(rpc_answer(BTMINER_VERSION), STANDARD_HOST, 4028),
            serving(v3_answer(fixture("whatsminer/v3/get_device_info.json")), STANDARD_HOST, 4433),
        ):
            with_v3 = await detect_family(MinerEndpoint(STANDARD_HOST), session, 1)
            async with serving(rpc_answer(BTMINER_VERSION), "127.0.5.71", 4028):
                v2_only = await detect_family(MinerEndpoint("127.0.5.71"), session, 1)
    except OSError as err:  # pragma: no cover - someone else holds the port
        pytest.skip(f"standard ports on {STANDARD_HOST} are taken: {err}")
    assert with_v3 == "whatsminer_v3"
    assert v2_only == "whatsminer"


@pytest.mark.parametrize("rpc", ["closed", "silent"])
async def test_a_v3_whatsminer_answers_nothing_on_4028(
    session: aiohttp.ClientSession, rpc: str
) -> None:
    host = "127.0.5.72"

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError):
            await reader.read()
        writer.close()

    async with contextlib.AsyncExitStack() as stack:
        try:
            await stack.enter_async_context(
                serving(v3_answer(fixture("whatsminer/v3/get_device_info.json")), host, 4433)
            )
            if rpc == "silent":
                await stack.enter_async_context(serving(silent, host, 4028))
        except OSError as err:  # pragma: no cover - someone else holds the port
            pytest.skip(f"standard ports on {host} are taken: {err}")
        # v3 settles it: the silent RPC port is not waited for. Its probe times out
        # after 30 s, so waiting for it would hit this bound, which only catches that
        # (outside the `except OSError` above: a TimeoutError is an OSError).
        async with asyncio.timeout(5):
            family = await detect_family(MinerEndpoint(host), session, 30)
    assert family == "whatsminer_v3"


async def test_every_family_of_the_simulator(session: aiohttp.ClientSession) -> None:
    from simulator import Site, SiteConfig

    mix = "antminer=1,braiins=1,whatsminer=1,whatsminer_v3=1,luxos=1,cgminer=1"
    config = SiteConfig(
        miners=6, mix=mix, base_port=0, latency_ms=0, meter=None, control=None, pool="127.0.0.1:0"
    )
    async with Site(config) as site:
        found = await asyncio.gather(
            *(
                detect_family(MinerEndpoint(miner.host, miner.api_port), session, 2)
                for miner in site.miners
            )
        )
        expected = [miner.family for miner in site.miners]
    assert sorted(expected) == sorted(mix.replace("=1", "").split(","))
    assert found == expected
