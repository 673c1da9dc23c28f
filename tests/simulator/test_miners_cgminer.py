"""Generic CGMiner 4.x: reports, privileged pool and device commands behind --api-allow."""

from __future__ import annotations

import asyncio
import json

import pytest

from tests.simulator.test_miners_helpers import (
    closed_without_reply,
    decode_cgminer,
    exchange,
    rpc,
    rpc_raw,
    running_site,
    status,
    wait_for,
)


async def test_reports_carry_the_cgminer_fields(loopback_network: None) -> None:
    async with running_site("cgminer", miners=1) as site:
        miner = site.miners[0]
        summary = await rpc(miner, "summary")
        assert status(summary)["Description"] == "cgminer 4.12.1"
        entry = summary["SUMMARY"][0]
        assert isinstance(entry["MHS 5s"], float)
        assert 13e6 <= entry["MHS 5s"] <= 14e6
        pools = (await rpc(miner, "pools"))["POOLS"]
        assert pools[0]["Stratum Active"] is True
        assert {"POOL", "URL", "Status", "Priority", "Accepted", "Has Vmask"} <= set(pools[0])
        devs = (await rpc(miner, "devs"))["DEVS"]
        assert [dev["Enabled"] for dev in devs] == ["Y", "Y", "Y"]
        assert status(await rpc(miner, "version"))["Code"] == 22
        assert status(await rpc(miner, "config"))["Code"] == 33
        assert status(await rpc(miner, "stats"))["Code"] == 70
        check = (await rpc(miner, "check", "summary"))["COMMAND"][0]
        assert check == {"Exists": "Y", "Access": "Y"}


async def test_joined_commands(loopback_network: None) -> None:
    async with running_site("cgminer", miners=1) as site:
        reply = await rpc_raw(site.miners[0], b"summary+pools")
        assert set(reply) == {"summary", "pools", "id"}
        assert status(reply["summary"][0])["Code"] == 11
        assert status(reply["pools"][0])["Code"] == 7
        assert status(await rpc_raw(site.miners[0], b"summary+switchpool"))["Code"] == 14


async def test_stop_is_ascdisable_of_every_device(loopback_network: None) -> None:
    async with running_site("cgminer", miners=1) as site:
        miner = site.miners[0]
        assert status(await rpc(miner, "privileged"))["Code"] == 46
        for device in range(3):
            reply = await rpc(miner, "ascdisable", str(device))
            assert status(reply)["Code"] == 102
        assert miner.state == "sleeping"
        assert miner.cycles == 1
        assert [dev["Enabled"] for dev in (await rpc(miner, "devs"))["DEVS"]] == ["N", "N", "N"]
        assert (await rpc(miner, "summary"))["SUMMARY"][0]["MHS 5s"] == 0
        assert status(await rpc(miner, "ascdisable", "0"))["Code"] == 100
        assert status(await rpc(miner, "ascdisable", "7"))["Code"] == 107

        assert status(await rpc(miner, "ascenable", "0"))["Code"] == 101
        assert miner.state == "starting"
        for device in (1, 2):
            await rpc(miner, "ascenable", str(device))
        await wait_for(lambda: miner.state == "mining")
        assert [dev["Enabled"] for dev in (await rpc(miner, "devs"))["DEVS"]] == ["Y", "Y", "Y"]


async def test_pool_commands(loopback_network: None) -> None:
    async with running_site("cgminer", miners=1) as site:
        miner = site.miners[0]
        added = await rpc(miner, "addpool", "stratum+tcp://127.0.0.1:9\\,x,w.1,x")
        assert status(added)["Code"] == 55
        assert miner.pools[2].url == "stratum+tcp://127.0.0.1:9,x"
        assert status(await rpc(miner, "addpool", "only-url"))["Code"] == 53
        assert status(await rpc(miner, "addpool"))["Code"] == 52

        assert status(await rpc(miner, "switchpool", "1"))["Code"] == 27
        pools = (await rpc(miner, "pools"))["POOLS"]
        assert [(p["POOL"], p["Priority"]) for p in pools] == [(0, 1), (1, 0), (2, 2)]
        assert miner.pool == miner.pools[1].url

        assert status(await rpc(miner, "removepool", "1"))["Code"] == 67  # the active one
        assert status(await rpc(miner, "disablepool", "2"))["Code"] == 48
        assert (await rpc(miner, "pools"))["POOLS"][2]["Status"] == "Disabled"
        assert status(await rpc(miner, "disablepool", "2"))["Code"] == 50
        assert status(await rpc(miner, "enablepool", "2"))["Code"] == 47
        assert status(await rpc(miner, "removepool", "2"))["Code"] == 68
        assert len((await rpc(miner, "pools"))["POOLS"]) == 2
        assert status(await rpc(miner, "switchpool", "5"))["Code"] == 26
        assert status(await rpc(miner, "switchpool", "x"))["Code"] == 26
        assert status(await rpc(miner, "switchpool"))["Code"] == 25


async def test_writes_follow_api_allow(loopback_network: None) -> None:
    async with running_site("cgminer", miners=1) as site:
        miner = site.miners[0]
        miner.extra["api_allow"] = "R:127.0.0.0/8,W:10.0.0/24"
        denied = await rpc(miner, "ascdisable", "0")
        assert (status(denied)["STATUS"], status(denied)["Code"]) == ("E", 45)
        assert (await rpc(miner, "check", "switchpool"))["COMMAND"][0]["Access"] == "N"
        assert status(await rpc(miner, "privileged"))["Code"] == 45
        assert status(await rpc(miner, "summary"))["Code"] == 11
        assert miner.board_enabled == [True, True, True]
        miner.extra["api_allow"] = "W:0/0"
        assert status(await rpc(miner, "privileged"))["Code"] == 46


async def test_wrong_credentials_mean_no_write_access(loopback_network: None) -> None:
    async with running_site("cgminer", miners=1) as site:
        miner = site.miners[0]
        assert site.fleet is not None
        await site.fleet.set_fault(miner, "wrong_credentials", True)
        assert status(await rpc(miner, "switchpool", "1"))["Code"] == 45
        await site.fleet.set_fault(miner, "wrong_credentials", False)
        assert status(await rpc(miner, "switchpool", "1"))["Code"] == 27


@pytest.mark.parametrize(
    ("payload", "code"),
    [
        (b'{"command": "summary"', 23),
        (b"[1, 2]", 14),  # only a leading "{" makes a request JSON
        (b'{"parameter": "0"}', 24),
        (b"fly|away", 14),
        (b"../../etc/passwd", 14),
        (b"", None),
    ],
)
async def test_bad_input_gets_the_firmware_error(
    loopback_network: None, payload: bytes, code: int | None
) -> None:
    async with running_site("cgminer", miners=1) as site:
        miner = site.miners[0]
        if code is None:
            # Nothing, then end of stream: closed without a reply.
            reader, writer = await asyncio.open_connection(miner.host, miner.api_port)
            writer.write_eof()
            assert await asyncio.wait_for(reader.read(), 2) == b""
            writer.close()
        else:
            raw = await exchange(miner.host, miner.api_port, payload)
            reply = decode_cgminer(raw)
            assert (status(reply)["STATUS"], status(reply)["Code"]) == ("E", code)
        assert status(await rpc(miner, "summary"))["Code"] == 11


async def test_plain_text_parameters_and_numbers(loopback_network: None) -> None:
    async with running_site("cgminer", miners=1) as site:
        miner = site.miners[0]
        request = {"command": "switchpool", "parameter": 1}
        numeric = await rpc_raw(miner, json.dumps(request).encode())
        assert status(numeric)["Code"] == 27
        assert status(await rpc_raw(miner, b"switchpool|0\x00"))["Code"] == 27


async def test_oversized_and_abrupt_clients_do_not_hurt(loopback_network: None) -> None:
    async with running_site("cgminer", miners=1) as site:
        miner = site.miners[0]
        assert await closed_without_reply(miner.host, miner.api_port, b"summary" * 10000)
        for _ in range(20):
            _, writer = await asyncio.open_connection(miner.host, miner.api_port)
            writer.write(b'{"command": "su')
            writer.transport.abort()  # RST in the middle of a request
        _, writer = await asyncio.open_connection(miner.host, miner.api_port)
        writer.close()  # connect and leave
        # A JSON request split over two packets is still one request.
        reader, writer = await asyncio.open_connection(miner.host, miner.api_port)
        writer.write(b'{"command": ')
        await writer.drain()
        await asyncio.sleep(0.05)
        writer.write(b'"summary"}')
        reply = decode_cgminer(await asyncio.wait_for(reader.read(), 3))
        writer.close()
        assert status(reply)["Code"] == 11
        assert status(await rpc(miner, "summary"))["Code"] == 11
