"""Whatsminer: btminer API v2 on 4028 (token, AES writes) and API v3 on 4433 (length prefix)."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import shutil
import struct
import subprocess
from typing import Any

import httpx
import pytest

from simulator.miners import SimMiner, crypto
from tests.simulator.test_miners_helpers import (
    assert_same_shape,
    closed_without_reply,
    decode_cgminer,
    exchange,
    fixture,
    rpc_raw,
    running_site,
    v3_frame,
    v3_request,
    wait_for,
)

V3 = "whatsminer/v3"
ADMIN = "admin"
SUPER = "super"


async def wm(miner: SimMiner, cmd: str) -> dict[str, Any]:
    """A btminer read: {"cmd": ...}."""
    return await rpc_raw(miner, json.dumps({"cmd": cmd}).encode())


async def wm_write(
    miner: SimMiner, command: dict[str, Any], password: str = ADMIN
) -> dict[str, Any]:
    """The privileged flow: get_token, md5-crypt key and sign, AES-256-ECB, decrypt the reply."""
    token = await wm(miner, "get_token")
    assert token["Code"] == 134, token
    msg = token["Msg"]
    key = crypto.md5_crypt(password, msg["salt"]).split("$")[3]
    sign = crypto.md5_crypt(key + msg["time"], msg["newsalt"]).split("$")[3]
    aes_key = hashlib.sha256(key.encode()).digest()
    plain = json.dumps({**command, "token": sign}).encode()
    data = base64.b64encode(crypto.aes_ecb_encrypt_zero(aes_key, plain)).decode()
    reply = await rpc_raw(miner, json.dumps({"enc": 1, "data": data}).encode())
    if "enc" in reply:
        decrypted = crypto.aes_ecb_decrypt_zero(aes_key, base64.b64decode(reply["enc"]))
        result: dict[str, Any] = json.loads(decrypted)
        return result
    return reply


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl missing")
@pytest.mark.parametrize(("password", "salt"), [("admin", "BQ5hoXV9"), ("x" * 40, "ab"), ("", "s")])
def test_md5_crypt_matches_openssl(password: str, salt: str) -> None:
    expected = subprocess.run(
        ["openssl", "passwd", "-1", "-salt", salt, password],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert crypto.md5_crypt(password, salt) == expected


# --- API v2 ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("cmd", "fixtures"),
    [
        ("summary", ["whatsminer/v2/summary.json", "whatsminer/v1/summary.json"]),
        ("devs", ["whatsminer/v2/devs.json", "whatsminer/v1/devs.json"]),
        ("edevs", ["whatsminer/v2/devs.json"]),
        ("pools", ["whatsminer/v2/pools.json", "whatsminer/v1/pools.json"]),
        ("status", ["whatsminer/v2/status.json"]),
        ("get_psu", ["whatsminer/v2/get_psu.json", "whatsminer/v1/get_psu.json"]),
        ("get_version", ["whatsminer/v2/get_version.json", "whatsminer/v1/get_version.json"]),
        ("get_miner_info", ["whatsminer/v2/get_miner_info.json"]),
        ("get_error_code", ["whatsminer/v2/get_error_code.json"]),
    ],
)
async def test_v2_replies_have_the_firmware_shape(
    loopback_network: None, cmd: str, fixtures: list[str]
) -> None:
    async with running_site("whatsminer", miners=1) as site:
        reply = await wm(site.miners[0], cmd)
    for path in fixtures:
        assert_same_shape(reply, path)


async def test_v2_power_off_and_on_change_state_and_read_back(loopback_network: None) -> None:
    async with running_site("whatsminer", miners=1, wake_delay_s=2.0) as site:
        miner = site.miners[0]
        before = (await wm(miner, "summary"))["SUMMARY"][0]
        assert before["MHS av"] > 100e6
        reply = await wm_write(miner, {"cmd": "power_off", "respbefore": "true"})
        assert (reply["STATUS"], reply["Code"]) == ("S", 131)
        assert (await wm(miner, "status"))["Msg"]["mineroff"] == "true"
        summary = (await wm(miner, "summary"))["SUMMARY"][0]
        assert summary["MHS av"] == 0
        assert miner.state == "sleeping"
        assert miner.cycles == 1

        assert (await wm_write(miner, {"cmd": "power_on"}))["Code"] == 131
        assert (await wm(miner, "status"))["Msg"]["mineroff"] == "false"
        assert miner.state == "starting"
        await wait_for(lambda: miner.state == "mining", timeout=6)
        assert (await wm(miner, "summary"))["SUMMARY"][0]["MHS av"] > 100e6


async def test_v2_update_pools_reads_back(loopback_network: None) -> None:
    async with running_site("whatsminer", miners=1) as site:
        miner = site.miners[0]
        reply = await wm_write(
            miner,
            {
                "cmd": "update_pools",
                "pool1": "stratum+tcp://127.0.0.1:1",
                "worker1": "w1",
                "passwd1": "x",
                "pool2": "stratum+tcp://127.0.0.1:2",
                "worker2": "w2",
                "passwd2": "x",
                "pool3": "",
                "worker3": "",
                "passwd3": "",
            },
        )
        assert reply["Code"] == 131
        pools = (await wm(miner, "pools"))["POOLS"]
        assert [(p["POOL"], p["URL"], p["User"]) for p in pools] == [
            (1, "stratum+tcp://127.0.0.1:1", "w1"),
            (2, "stratum+tcp://127.0.0.1:2", "w2"),
        ]
        bad = await wm_write(miner, {"cmd": "update_pools", "pool1": ""})
        assert (bad["STATUS"], bad["Code"]) == ("E", 132)


async def test_v2_refuses_bad_tokens_and_plain_writes(loopback_network: None) -> None:
    async with running_site("whatsminer", miners=1) as site:
        miner = site.miners[0]
        plain = await wm(miner, "power_off")
        assert (plain["STATUS"], plain["Code"], plain["Msg"]) == ("E", 45, "can't access write cmd")
        # A sign made up by the client: decrypts fine, but no such token was issued.
        token = (await wm(miner, "get_token"))["Msg"]
        key = crypto.md5_crypt("admin", token["salt"]).split("$")[3]
        aes_key = hashlib.sha256(key.encode()).digest()
        forged = json.dumps({"cmd": "power_off", "token": "forged"}).encode()
        data = base64.b64encode(crypto.aes_ecb_encrypt_zero(aes_key, forged)).decode()
        reply = await rpc_raw(miner, json.dumps({"enc": 1, "data": data}).encode())
        assert (reply["STATUS"], reply["Code"]) == ("E", 135)
        not_base64 = await rpc_raw(miner, b'{"enc": 1, "data": "***"}')
        assert not_base64["Code"] in (135, 137)
        assert miner.state == "mining"


async def test_v2_wrong_admin_password_is_refused(loopback_network: None) -> None:
    async with running_site("whatsminer", miners=1) as site:
        miner = site.miners[0]
        assert site.fleet is not None
        await site.fleet.set_fault(miner, "wrong_credentials", True)
        reply = await wm_write(miner, {"cmd": "power_off", "respbefore": "true"})
        assert (reply["STATUS"], reply["Code"]) == ("E", 135)
        assert miner.state == "mining"
        # The miner's real password still works: the refusal is about credentials only.
        ok = await wm_write(miner, {"cmd": "power_off"}, password=miner.password)
        assert ok["Code"] == 131


async def test_v2_too_many_tokens(loopback_network: None) -> None:
    async with running_site("whatsminer", miners=1) as site:
        miner = site.miners[0]
        codes = [(await wm(miner, "get_token"))["Code"] for _ in range(33)]
        assert codes[:32] == [134] * 32
        assert codes[32] == 136


async def test_v2_bad_input(loopback_network: None) -> None:
    async with running_site("whatsminer", miners=1) as site:
        miner = site.miners[0]
        assert (await wm(miner, "fly"))["Code"] == 14
        assert (await rpc_raw(miner, b'{"cmd": "summ'))["Code"] == 23
        assert await closed_without_reply(miner.host, miner.api_port, b"{" + b" " * 70000)
        assert (await wm(miner, "summary"))["STATUS"][0]["Code"] == 11


async def test_v2_status_has_no_v1_keys(loopback_network: None) -> None:
    async with running_site("whatsminer", miners=1) as site:
        msg = (await wm(site.miners[0], "status"))["Msg"]
    assert set(msg) == set(fixture("whatsminer/v2/status.json")["Msg"])
    assert "btmineroff" not in msg


async def test_v2_write_answers_api_command_ok(loopback_network: None) -> None:
    async with running_site("whatsminer", miners=1) as site:
        reply = await wm_write(site.miners[0], {"cmd": "power_off", "respbefore": "true"})
    assert reply["STATUS"] == "S"
    assert (reply["Code"], reply["Msg"]) == (131, "API command OK")


async def test_v2_devdetails_gives_the_full_model_name(loopback_network: None) -> None:
    async with running_site("whatsminer", miners=1) as site:
        details = (await wm(site.miners[0], "devdetails"))["DEVDETAILS"]
    assert {entry["Model"] for entry in details} == {"M50S_VH30"}
    # What pyasic and asic-rs make of it: "_" dropped, the last character set to 0.
    model = details[0]["Model"].replace("_", "")
    assert model[:-1] + "0" == "M50SVH30"


async def test_v2_join_answers_each_part(loopback_network: None) -> None:
    async with running_site("whatsminer", miners=1) as site:
        reply = await wm(site.miners[0], "summary+get_version+fly")
    assert set(reply) == {"summary", "get_version", "fly", "id"}
    assert reply["summary"][0]["STATUS"][0]["Code"] == 11
    # Not joinable and unknown: each part its own error, the others still answered.
    assert (reply["get_version"][0]["STATUS"], reply["get_version"][0]["Code"]) == ("E", 45)
    assert (reply["fly"][0]["STATUS"], reply["fly"][0]["Code"]) == ("E", 14)


async def test_v2_web_redirects_to_https(loopback_network: None) -> None:
    async with running_site("whatsminer", miners=1) as site:
        miner = site.miners[0]
        assert miner.web_port is not None
        async with httpx.AsyncClient(timeout=3) as client:
            response = await client.get(f"http://{miner.host}:{miner.web_port}/")
    assert response.status_code == 307
    assert response.headers["location"].startswith("https://")
    assert "/cgi-bin/luci" in response.text


async def test_v3_firmware_answers_btminer_reads_on_4028(loopback_network: None) -> None:
    async with running_site("whatsminer_v3", miners=1) as site:
        miner = site.miners[0]
        rpc_port = miner.ports["rpc"]
        version = decode_cgminer(
            await exchange(miner.host, rpc_port, json.dumps({"cmd": "get_version"}).encode())
        )
        assert_same_shape(version, "whatsminer/v2/get_version.json")
        # Clients tell v3 firmware by the date of fw_ver (on or after 2024-11-01).
        assert int(version["Msg"]["fw_ver"].split(".")[0]) >= 20241101
        details = decode_cgminer(
            await exchange(miner.host, rpc_port, json.dumps({"command": "devdetails"}).encode())
        )
        assert details["DEVDETAILS"][0]["Model"] == "M60S_VK40"
        token = decode_cgminer(
            await exchange(miner.host, rpc_port, json.dumps({"cmd": "get_token"}).encode())
        )
        assert (token["STATUS"], token["Code"]) == ("E", 45)


# --- API v3 ------------------------------------------------------------------------------


def v3_signed(miner_salt: str, cmd: str, param: Any, password: str = SUPER) -> dict[str, Any]:
    ts = 1767000000
    digest = hashlib.sha256(f"{cmd}{password}{miner_salt}{ts}".encode()).digest()
    token = base64.b64encode(digest).decode()[:8]
    return {"cmd": cmd, "param": param, "ts": ts, "account": "super", "token": token}


async def salt_of(miner: SimMiner) -> str:
    reply = await v3_request(miner, {"cmd": "get.device.info", "param": "salt"})
    salt: str = reply["msg"]["salt"]
    return salt


@pytest.mark.parametrize(
    ("message", "path"),
    [
        ({"cmd": "get.device.info"}, "whatsminer/v3/get_device_info.json"),
        ({"cmd": "get.device.info", "param": "salt"}, "whatsminer/v3/get_device_info.json"),
        *(
            ({"cmd": "get.miner.status", "param": part}, f"{V3}/get_miner_status_{part}.json")
            for part in ("summary", "pools", "edevs")
        ),
    ],
)
async def test_v3_replies_have_the_firmware_shape(
    loopback_network: None, message: dict[str, Any], path: str
) -> None:
    async with running_site("whatsminer_v3", miners=1) as site:
        reply = await v3_request(site.miners[0], message)
    assert_same_shape(reply, path)


async def test_v3_service_stop_start(loopback_network: None) -> None:
    async with running_site("whatsminer_v3", miners=1) as site:
        miner = site.miners[0]
        salt = await salt_of(miner)
        reply = await v3_request(miner, v3_signed(salt, "set.miner.service", "stop"))
        assert (reply["code"], reply["msg"], reply["desc"]) == (0, "ok", "set.miner.service")
        info = await v3_request(miner, {"cmd": "get.device.info"})
        assert info["msg"]["miner"]["working"] == "false"
        summary = await v3_request(miner, {"cmd": "get.miner.status", "param": "summary"})
        assert summary["msg"]["summary"]["hash-realtime"] == 0
        await v3_request(miner, v3_signed(salt, "set.miner.service", "start"))
        info = await v3_request(miner, {"cmd": "get.device.info"})
        assert info["msg"]["miner"]["working"] == "true"
        await wait_for(lambda: miner.state == "mining", timeout=6)


async def test_v3_pools_write_is_encrypted(loopback_network: None) -> None:
    async with running_site("whatsminer_v3", miners=1) as site:
        miner = site.miners[0]
        salt = await salt_of(miner)
        pools = [{"pool": "stratum+tcp://127.0.0.1:9", "worker": "w", "passwd": "x"}]
        message = v3_signed(salt, "set.miner.pools", "")
        message["param"] = crypto.v3_encrypt(
            "set.miner.pools", "super", salt, message["ts"], json.dumps(pools).encode()
        )
        assert (await v3_request(miner, message))["code"] == 0
        listed = await v3_request(miner, {"cmd": "get.miner.status", "param": "pools"})
        assert [p["url"] for p in listed["msg"]["pools"]] == ["stratum+tcp://127.0.0.1:9"]
        plain = v3_signed(salt, "set.miner.pools", pools)
        assert (await v3_request(miner, plain))["code"] == -1


async def test_v3_refusals_and_bad_input(loopback_network: None) -> None:
    async with running_site("whatsminer_v3", miners=1) as site:
        miner = site.miners[0]
        salt = await salt_of(miner)
        wrong = v3_signed(salt, "set.miner.service", "stop", password="nope")
        reply = await v3_request(miner, wrong)
        assert (reply["code"], reply["msg"], reply["desc"]) == (-4, "invalid token", wrong["cmd"])
        assert set(reply) == {"code", "desc", "msg", "when"}
        assert (await v3_request(miner, {"cmd": "get.nothing"}))["code"] == -2
        assert (await v3_request(miner, {"cmd": "get.miner.status", "param": "x"}))["code"] == -1
        # Not JSON at all, inside a valid frame.
        reader, writer = await asyncio.open_connection(miner.host, miner.api_port)
        writer.write(struct.pack("<I", 5) + b"{nope")
        size = struct.unpack("<I", await asyncio.wait_for(reader.readexactly(4), 2))[0]
        assert json.loads(await reader.readexactly(size))["code"] == -3
        # Two requests on one connection are both answered.
        writer.write(v3_frame({"cmd": "get.device.info"}) + v3_frame({"cmd": "get.device.info"}))
        for _ in range(2):
            size = struct.unpack("<I", await asyncio.wait_for(reader.readexactly(4), 2))[0]
            assert json.loads(await reader.readexactly(size))["code"] == 0
        writer.close()
        # A length prefix over 64 KiB closes the connection.
        assert await closed_without_reply(miner.host, miner.api_port, struct.pack("<I", 70000))
        assert miner.state == "mining"
        await site.fleet.set_fault(miner, "wrong_credentials", True)  # type: ignore[union-attr]
        refused = await v3_request(miner, v3_signed(salt, "set.miner.service", "stop"))
        assert refused["code"] == -4
        assert miner.state == "mining"
