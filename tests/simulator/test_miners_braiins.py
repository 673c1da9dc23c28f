"""Braiins OS public REST API: login token, pause/resume, reads shaped like the fixtures, pools."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp
import pytest

from simulator.miners import SimMiner
from tests.simulator.test_miners_helpers import (
    assert_same_shape,
    closed_without_reply,
    exchange,
    running_site,
    wait_for,
)


def base(miner: SimMiner) -> str:
    return f"http://{miner.host}:{miner.api_port}/api/v1"


async def call(
    miner: SimMiner, method: str, path: str, body: Any = None, token: str | None = None
) -> tuple[int, Any]:
    headers = {"Authorization": token} if token else {}
    async with (
        aiohttp.ClientSession() as session,
        session.request(method, base(miner) + path, json=body, headers=headers) as response,
    ):
        return response.status, await response.json(content_type=None)


ROOT = "root"


async def login(miner: SimMiner, password: str = ROOT) -> str:
    credentials = {"username": "root", "password": password}
    status, body = await call(miner, "POST", "/auth/login", credentials)
    assert status == 200, body
    assert body["timeout_s"] > 0
    token: str = body["token"]
    return token


@pytest.mark.parametrize(
    ("path", "fixture_path"),
    [
        ("/miner/details", "braiins/v26_04/miner_details.json"),
        ("/miner/stats", "braiins/v26_04/miner_stats.json"),
        ("/pools", "braiins/v26_04/pools.json"),
        ("/cooling/state", "braiins/v26_04/cooling_state.json"),
        ("/miner/hw/hashboards", "braiins/v26_04/miner_hw_hashboards.json"),
        ("/miner/errors", "braiins/v26_04/miner_errors.json"),
        ("/version", "braiins/v26_04/version.json"),
        ("/network", "braiins/v26_04/network.json"),
        ("/performance/tuner-state", "braiins/v26_04/performance_tuner_state.json"),
        ("/configuration/miner", "braiins/v26_04/configuration_miner.json"),
        ("/actions/locate", "braiins/v26_04/actions_locate.json"),
    ],
)
async def test_replies_have_the_firmware_shape(
    loopback_network: None, path: str, fixture_path: str
) -> None:
    async with running_site("braiins", miners=1, share_interval_s=0.05) as site:
        miner = site.miners[0]
        # A pool's last share time exists once the miner found a real share there.
        await wait_for(lambda: miner.pools[0].accepted > 0, timeout=20)
        status, body = await call(miner, "GET", path, token=await login(miner))
        assert status == 200
        assert_same_shape(body, fixture_path)


async def test_pause_and_resume(loopback_network: None) -> None:
    async with running_site("braiins", miners=1) as site:
        miner = site.miners[0]
        token = await login(miner)
        assert (await call(miner, "GET", "/miner/details", token=token))[1]["status"] == 2
        assert await call(miner, "PUT", "/actions/pause", token=token) == (200, True)
        assert await call(miner, "PUT", "/actions/pause", token=token) == (200, False)
        assert (await call(miner, "GET", "/miner/details", token=token))[1]["status"] == 3
        stats = (await call(miner, "GET", "/miner/stats", token=token))[1]
        assert stats["miner_stats"]["real_hashrate"]["last_5s"]["gigahash_per_second"] == 0
        assert miner.state == "sleeping"

        assert await call(miner, "PUT", "/actions/resume", token=token) == (200, True)
        assert (await call(miner, "GET", "/miner/details", token=token))[1]["status"] == 2
        await wait_for(lambda: miner.state == "mining")
        stats = (await call(miner, "GET", "/miner/stats", token=token))[1]
        assert stats["power_stats"]["approximated_consumption"]["watt"] > 3000


async def test_pools_update_reads_back(loopback_network: None) -> None:
    async with running_site("braiins", miners=1) as site:
        miner = site.miners[0]
        token = await login(miner)
        groups = [
            {
                "name": "Default",
                "pools": [
                    {"url": "stratum+tcp://127.0.0.1:6", "user": "b.1", "password": "x"},
                    {"url": "stratum+tcp://127.0.0.1:7", "user": "b.2", "password": "x"},
                ],
            }
        ]
        status, body = await call(miner, "PUT", "/pools", groups, token=token)
        assert status == 200
        assert [p["url"] for p in body[0]["pools"]] == [
            "stratum+tcp://127.0.0.1:6",
            "stratum+tcp://127.0.0.1:7",
        ]
        listed = (await call(miner, "GET", "/pools", token=token))[1]
        assert [p["user"] for p in listed[0]["pools"]] == ["b.1", "b.2"]
        status, _ = await call(miner, "PUT", "/pools/batch", groups[:1], token=token)
        assert status == 200
        status, error = await call(miner, "PUT", "/pools", [{"pools": [{}]}], token=token)
        assert status == 400
        assert set(error) == {"code", "message", "details"}


async def test_tokens_and_credentials_are_checked(loopback_network: None) -> None:
    async with running_site("braiins", miners=1) as site:
        miner = site.miners[0]
        assert (await call(miner, "GET", "/miner/details"))[0] == 401
        assert (await call(miner, "GET", "/miner/details", token="nope"))[0] == 401
        assert (await call(miner, "PUT", "/actions/pause", token="nope"))[0] == 401
        status, _ = await call(miner, "POST", "/auth/login", {"username": "root", "password": "x"})
        assert status == 401
        assert (await call(miner, "POST", "/auth/login", {"user": "root"}))[0] == 400
        token = await login(miner)
        assert (await call(miner, "GET", "/miner/details", token=f"Bearer {token}"))[0] == 200
        assert site.fleet is not None
        await site.fleet.set_fault(miner, "wrong_credentials", True)
        factory = {"username": "root", "password": "root"}
        assert (await call(miner, "POST", "/auth/login", factory))[0] == 401
        assert miner.state == "mining"


async def test_the_rest_api_keeps_the_connection_alive(loopback_network: None) -> None:
    async with running_site("braiins", miners=1) as site:
        miner = site.miners[0]
        reader, writer = await asyncio.open_connection(miner.host, miner.api_port)
        try:
            for _ in range(2):  # two requests, one connection, as lighttpd and bosminer allow
                writer.write(b"GET /api/v1/version HTTP/1.1\r\nHost: x\r\n\r\n")
                head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
                assert head.startswith(b"HTTP/1.1 200 ")
                assert b"connection: close" not in head.lower()
                length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
                assert json.loads(await reader.readexactly(length))
            writer.write(b"GET /api/v1/version HTTP/1.1\r\nConnection: close\r\n\r\n")
            last = await asyncio.wait_for(reader.read(), 5)  # ends: the client asked it
            assert last.startswith(b"HTTP/1.1 200 ")
            assert b"Connection: close" in last
        finally:
            writer.close()


async def test_bad_requests(loopback_network: None) -> None:
    async with running_site("braiins", miners=1) as site:
        miner = site.miners[0]
        token = await login(miner)
        assert (await call(miner, "GET", "/nothing", token=token))[0] == 404
        assert (await call(miner, "DELETE", "/miner/details", token=token))[0] == 405
        raw = b"POST /api/v1/auth/login HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\n{bad}"
        assert (await exchange(miner.host, miner.api_port, raw)).startswith(b"HTTP/1.1 400 ")
        tls = await exchange(miner.host, miner.api_port, b"\x16\x03\x01 tls?\r\n\r\n")
        assert tls.startswith(b"HTTP/1.1 400 ")
        assert await closed_without_reply(miner.host, miner.api_port, b"x" * 70000)
        assert (await call(miner, "GET", "/miner/details", token=token))[0] == 200


async def test_web_ui_is_served_at_the_root(loopback_network: None) -> None:
    async with running_site("braiins", miners=1) as site:
        miner = site.miners[0]
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"http://{miner.host}:{miner.api_port}/") as response,
        ):
            assert response.status == 200
            assert response.content_type == "text/html"
            assert "Braiins OS" in await response.text()
        # The API next to it still wants its token.
        assert (await call(miner, "GET", "/miner/details"))[0] == 401


async def test_grpc_port_speaks_http2(loopback_network: None) -> None:
    async with running_site("braiins", miners=1) as site:
        miner = site.miners[0]
        port = miner.ports["grpc"]
        reply = await exchange(miner.host, port, b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
        # The server's SETTINGS frame (type 4), then GOAWAY (type 7).
        assert reply[3] == 4
        assert reply[9 + 3] == 7
        garbage = await exchange(miner.host, port, b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n")
        assert garbage[-4:] == (1).to_bytes(4, "big")  # PROTOCOL_ERROR
