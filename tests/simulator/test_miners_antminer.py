"""Antminer stock firmware: read-only RPC on 4028, web CGI behind HTTP Digest auth (httpx)."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from simulator.miners import SimMiner
from tests.simulator.test_miners_helpers import (
    assert_same_shape,
    closed_without_reply,
    exchange,
    rpc,
    rpc_raw,
    running_site,
    status,
    wait_for,
)


def web_url(miner: SimMiner, name: str) -> str:
    return f"http://{miner.host}:{miner.web_port}/cgi-bin/{name}.cgi"


async def cgi(
    miner: SimMiner,
    name: str,
    body: Any = None,
    auth: tuple[str, str] = ("root", "root"),
) -> httpx.Response:
    async with httpx.AsyncClient(auth=httpx.DigestAuth(*auth), timeout=3) as client:
        if body is None:
            return await client.get(web_url(miner, name))
        content = body if isinstance(body, bytes) else httpx.Request("POST", "/", json=body).content
        return await client.post(web_url(miner, name), content=content)


@pytest.mark.parametrize(
    ("command", "path"),
    [
        ("version", "antminer/v2020/version.json"),
        ("summary", "antminer/v2020/summary.json"),
        ("pools", "antminer/v2020/pools.json"),
        ("devs", "antminer/v2020/devs.json"),
        ("stats", "antminer/v2020/stats.json"),
    ],
)
async def test_rpc_replies_have_the_firmware_shape(
    loopback_network: None, command: str, path: str
) -> None:
    async with running_site("antminer", miners=1) as site:
        assert_same_shape(await rpc(site.miners[0], command), path)


async def test_system_info_has_the_firmware_shape(loopback_network: None) -> None:
    async with running_site("antminer", miners=1) as site:
        miner = site.miners[0]
        response = await cgi(miner, "get_system_info")
        assert response.status_code == 200
        info = response.json()
        assert_same_shape(info, "antminer/v2020/system_info.json")
        assert (info["macaddr"], info["serinum"], info["minertype"]) == (
            miner.mac,
            miner.serial,
            "Antminer S19 Pro",
        )


@pytest.mark.parametrize(
    "command", ["switchpool|1", "addpool|a,b,c", "ascdisable|0", "privileged", "restart"]
)
async def test_rpc_is_read_only(loopback_network: None, command: str) -> None:
    async with running_site("antminer", miners=1) as site:
        reply = await rpc_raw(site.miners[0], command.encode())
        name = command.split("|")[0]
        assert (status(reply)["STATUS"], status(reply)["Code"]) == ("E", 45)
        assert status(reply)["Msg"] == f"Access denied to '{name}' command"


async def test_sleep_and_wake_through_the_web_conf(loopback_network: None) -> None:
    # A wake long enough that "starting" is still there to be read on a loaded machine.
    async with running_site("antminer", miners=1, wake_delay_s=2.0) as site:
        miner = site.miners[0]
        conf = (await cgi(miner, "get_miner_conf")).json()
        assert conf["bitmain-work-mode"] == "0"
        assert len(conf["pools"]) == 3

        reply = await cgi(miner, "set_miner_conf", {**conf, "miner-mode": 1})
        assert reply.json() == {"stats": "success", "code": "M000", "msg": "OK!"}
        assert (await cgi(miner, "get_miner_conf")).json()["bitmain-work-mode"] == "1"
        assert (await rpc(miner, "summary"))["SUMMARY"] == []
        assert (await rpc(miner, "stats"))["STATS"] == []
        assert miner.state == "sleeping"
        assert miner.cycles == 1

        await cgi(miner, "set_miner_conf", {"miner-mode": "0"})  # some firmware sends strings
        assert (await cgi(miner, "get_miner_conf")).json()["bitmain-work-mode"] == "0"
        assert miner.state == "starting"
        summary = (await rpc(miner, "summary"))["SUMMARY"]
        assert len(summary) == 1
        await wait_for(lambda: miner.state == "mining", timeout=6)
        assert (await rpc(miner, "summary"))["SUMMARY"][0]["GHS 5s"] > 100_000


async def test_pools_through_the_web_conf(loopback_network: None) -> None:
    async with running_site("antminer", miners=1) as site:
        miner = site.miners[0]
        pools = [
            {"url": "stratum+tcp://127.0.0.1:7", "user": "a.1", "pass": "x"},
            {"url": "stratum+tcp://127.0.0.1:8", "user": "a.2", "pass": "x"},
            {"url": "", "user": "", "pass": ""},
        ]
        assert (await cgi(miner, "set_miner_conf", {"pools": pools})).status_code == 200
        conf = (await cgi(miner, "get_miner_conf")).json()
        assert conf["pools"] == pools
        rpc_pools = (await rpc(miner, "pools"))["POOLS"]
        assert [p["URL"] for p in rpc_pools] == [pools[0]["url"], pools[1]["url"]]
        web_pools = (await cgi(miner, "pools")).json()["POOLS"]
        assert [p["url"] for p in web_pools] == [pools[0]["url"], pools[1]["url"]]


@pytest.mark.parametrize("name", ["summary", "stats", "pools"])
async def test_web_reports_answer(loopback_network: None, name: str) -> None:
    async with running_site("antminer", miners=1) as site:
        response = await cgi(site.miners[0], name)
        assert response.status_code == 200
        body = response.json()
        assert body["STATUS"]["STATUS"] == "S"
        assert body["INFO"]["type"] == "Antminer S19 Pro"
        assert isinstance(body[name.upper()], list)


async def test_digest_auth_is_required_and_checked(loopback_network: None) -> None:
    async with running_site("antminer", miners=1) as site:
        miner = site.miners[0]
        async with httpx.AsyncClient(timeout=3) as client:
            response = await client.get(web_url(miner, "get_miner_conf"))
        assert response.status_code == 401
        assert response.headers["WWW-Authenticate"].startswith('Digest realm="antMiner')
        assert (await cgi(miner, "get_miner_conf", auth=("root", "admin"))).status_code == 401
        assert (await cgi(miner, "get_miner_conf", auth=("admin", "root"))).status_code == 401
        assert site.fleet is not None
        await site.fleet.set_fault(miner, "wrong_credentials", True)
        refused = await cgi(miner, "set_miner_conf", {"miner-mode": 1})
        assert refused.status_code == 401
        assert miner.state == "mining"


async def test_web_bad_input(loopback_network: None) -> None:
    async with running_site("antminer", miners=1) as site:
        miner = site.miners[0]
        assert (await cgi(miner, "set_miner_conf", b"{not json")).status_code == 400
        bad_mode = await cgi(miner, "set_miner_conf", {"miner-mode": 7})
        assert bad_mode.status_code == 400
        assert miner.state == "mining"
        assert (await cgi(miner, "nothing_here")).status_code == 404
        async with httpx.AsyncClient(auth=httpx.DigestAuth("root", "root"), timeout=3) as client:
            wrong_method = await client.delete(web_url(miner, "set_miner_conf"))
        assert wrong_method.status_code == 405
        assert miner.web_port is not None
        garbage = await exchange(miner.host, miner.web_port, b"NOT HTTP AT ALL\r\n\r\n")
        assert garbage.startswith(b"HTTP/1.1 400 ")
        too_big = b"POST /cgi-bin/set_miner_conf.cgi HTTP/1.1\r\nContent-Length: 999999\r\n\r\n"
        assert (await exchange(miner.host, miner.web_port, too_big)).startswith(b"HTTP/1.1 413 ")
        assert await closed_without_reply(miner.host, miner.web_port, b"G" * 70000)
        assert (await cgi(miner, "get_system_info")).status_code == 200


async def test_rpc_bad_input_and_joined_commands(loopback_network: None) -> None:
    async with running_site("antminer", miners=1) as site:
        miner = site.miners[0]
        assert status(await rpc_raw(miner, b'{"command": "summ'))["Code"] == 23
        assert status(await rpc_raw(miner, b'{"parameter": 1}'))["Code"] == 24
        assert status(await rpc_raw(miner, b"teleport"))["Code"] == 14
        assert status(await rpc_raw(miner, b"summary+pools"))["Code"] == 14
        assert status(await rpc(miner, "summary"))["Code"] == 11


async def test_rpc_stats_honours_new_api(loopback_network: None) -> None:
    async with running_site("antminer", miners=1) as site:
        miner = site.miners[0]
        raw = await exchange(miner.host, miner.api_port, b'{"command": "stats", "new_api": true}')
        assert raw.endswith(b"\x00")
        reply = json.loads(raw[:-1])
        assert reply["STATUS"]["STATUS"] == "S"
        chains = reply["STATS"][0]["chain"]
        assert [chain["index"] for chain in chains] == [0, 1, 2]
        for chain in chains:
            # Board temperatures: the lists pyasic and asic-rs read.
            assert all(isinstance(t, int) and t > 0 for t in chain["temp_pcb"])
            assert all(isinstance(t, int) and t > 0 for t in chain["temp_chip"])
            assert chain["rate_real"] > 0
        # Without new_api: the legacy shape of the fixture.
        assert_same_shape(await rpc(miner, "stats"), "antminer/v2020/stats.json")
        # The same body as the web's stats.cgi.
        web = (await cgi(miner, "stats")).json()
        assert set(web["STATS"][0]) == set(reply["STATS"][0])


@pytest.mark.parametrize("command", ["summary", "stats", "pools"])
async def test_rpc_new_api_is_the_web_body(loopback_network: None, command: str) -> None:
    async with running_site("antminer", miners=1) as site:
        miner = site.miners[0]
        request = json.dumps({"command": command, "new_api": True}).encode()
        reply = json.loads((await exchange(miner.host, miner.api_port, request))[:-1])
        web = (await cgi(miner, command)).json()
    assert reply["STATUS"]["Msg"] == command
    assert reply.keys() == web.keys()
    assert reply[command.upper()][0].keys() == web[command.upper()][0].keys()


async def test_joins_are_refused_whole(loopback_network: None) -> None:
    async with running_site("antminer", miners=1) as site:
        reply = await rpc_raw(site.miners[0], b'{"command": "summary+pools"}')
        assert (status(reply)["STATUS"], status(reply)["Code"]) == ("E", 14)
