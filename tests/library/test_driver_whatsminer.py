"""The Whatsminer API v1/v2 driver against a real server holding the fixture replies.

The server decrypts privileged commands with its own key derivation (md5-crypt
values from `openssl passwd -1`, SHA-256 and AES from hashlib and cryptography),
so the driver's crypto is checked, not mirrored.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import replace
import subprocess

import pytest

from custom_components.bitcoin_mining.miningsite.exceptions import (
    CommandRejectedError,
    DeviceAuthError,
    DeviceConnectionError,
    DeviceProtocolError,
    DeviceTimeoutError,
)
from custom_components.bitcoin_mining.miningsite.miners.base import (
    Credentials,
    MinerEndpoint,
    PoolConfig,
)
from custom_components.bitcoin_mining.miningsite.miners.md5crypt import md5_crypt, md5_crypt_hash
from custom_components.bitcoin_mining.miningsite.miners.models import model_spec
from custom_components.bitcoin_mining.miningsite.miners.rpc import ApiAccessRefusedError
from custom_components.bitcoin_mining.miningsite.miners.whatsminer import (
    ERRORS_MAX_AGE_S,
    WhatsminerDriver,
)
from tests.support.firmware_servers import (
    WHATSMINER_JOINABLE,
    Fault,
    WhatsminerServer,
    load_fixtures,
    simulated_miner,
)
from tests.support.modbus_meter import free_port

pytestmark = pytest.mark.usefixtures("loopback_network")

READS = ["get_error_code", "status", "summary+devs+pools"]


# Stock btminer is said to refuse `a+b`; a build that joins its cgminer reports is read too.
@pytest.fixture(params=[None, WHATSMINER_JOINABLE], ids=["joins-refused", "joins-accepted"])
async def server(request: pytest.FixtureRequest) -> AsyncIterator[WhatsminerServer]:
    async with WhatsminerServer("whatsminer/v2", joinable=request.param) as running:
        yield running


def driver_for(
    server: WhatsminerServer, password: str | None = None, timeout: float = 1.0
) -> WhatsminerDriver:
    return WhatsminerDriver(
        MinerEndpoint("127.0.0.1", server.port), Credentials(password=password), timeout=timeout
    )


# Vectors from `openssl passwd -1 -salt SALT PASSWORD`.
@pytest.mark.parametrize(
    ("password", "salt", "expected"),
    [
        ("admin", "BQ5hoXV9", "$1$BQ5hoXV9$RxmaDUO33TS7O26yeMHZ81"),
        ("", "abc", "$1$abc$Or2rbeUYTvt12aiVzMuS/."),
        ("a" * 40, "12345678", "$1$12345678$beiWYJUUHF.ZVo9A4ag9w0"),
        ("pässwörd", "x", "$1$x$JCGkBY00FL7KZ2Wf1VmLX."),
        ("password", "$1$saltstring$", "$1$saltstri$qQY4WxjABChYG1ccLpfkz/"),
        ("x", "", "$1$$LP5.V3ajGqHDdXW6XwZQy."),
    ],
)
def test_md5_crypt_matches_openssl(password: str, salt: str, expected: str) -> None:
    assert md5_crypt(password, salt) == expected
    assert md5_crypt_hash(password, salt) == expected.rsplit("$", 1)[1]


def test_md5_crypt_matches_openssl_when_available() -> None:
    try:
        result = subprocess.run(
            ["openssl", "passwd", "-1", "-salt", "Zq9.x/Ab", "s3cret with spaces"],
            capture_output=True,
            text=True,
            check=True,
            timeout=5,
        )
    except (OSError, subprocess.SubprocessError):
        pytest.skip("no openssl binary")
    assert md5_crypt("s3cret with spaces", "Zq9.x/Ab") == result.stdout.strip()


async def test_every_v2_fixture_is_served_and_parsed(server: WhatsminerServer) -> None:
    driver = driver_for(server)
    fixtures = load_fixtures("whatsminer/v2")
    for command in ("summary", "pools", "devs", "status", "get_psu", "get_version"):
        assert await driver.query(command) == fixtures[command]
    for command in ("get_miner_info", "get_error_code"):
        assert await driver.query(command) == fixtures[command]
    psu = await driver.query("get_psu")
    assert psu["Msg"]["model"] == "P222B"


async def test_reads_the_v2_replies(server: WhatsminerServer) -> None:
    status = await driver_for(server).read_status()
    assert status.mining is True
    assert status.hashrate_ths == pytest.approx(125.0)  # MHS av 125000000
    assert status.power_w == 3200.0
    assert status.power_estimated is False
    assert status.mac == "D4:01:02:03:04:05"
    assert status.temperature_c == 81.0  # Chip Temp Max
    assert status.board_temperatures_c == (65.0, 66.0, 67.0)
    assert status.fan_rpm == (5400, 5280)
    assert status.uptime_s == 25500
    assert status.accepted_shares == 5412
    assert status.nominal_hashrate_ths == pytest.approx(126.0)  # Factory GHS
    assert status.errors == ()
    assert status.active_pool is not None
    assert status.active_pool.url == "stratum+tcp://btc.example.pool:3333"
    assert [pool.priority for pool in status.pools] == [0, 1, 2]
    assert status.pools[0].accepted == 5412


async def test_error_codes_from_get_error_code(server: WhatsminerServer) -> None:
    server.replies["get_error_code"] = server.replies["get_error_code_with_errors"]
    assert (await driver_for(server).read_status()).errors == ("218", "110")


async def test_identify_v2(server: WhatsminerServer) -> None:
    identity = await driver_for(server).identify()
    assert identity.family == "whatsminer"
    assert identity.mac == "D4:01:02:03:04:05"
    assert identity.hostname == "WhatsMiner"
    assert identity.firmware == "20230803.11.REL"
    assert identity.model == "Whatsminer"  # no devdetails in the fixtures
    server.overrides["devdetails"] = {
        "STATUS": [{"STATUS": "S", "Code": 69}],
        "DEVDETAILS": [{"DEVDETAILS": 0, "Name": "SM", "Model": "M50S.VH40"}],
    }
    assert (await driver_for(server).identify()).model == "M50S.VH40"


# What btminer v2 answers to `devdetails`: one entry per hashboard, the full model name.
REAL_DEVDETAILS = {
    "STATUS": [
        {"STATUS": "S", "When": 1773953446, "Code": 69, "Msg": "Device Details", "Description": ""}
    ],
    "DEVDETAILS": [
        {
            "DEVDETAILS": board,
            "Name": "SM",
            "ID": board,
            "Driver": "bitmicro",
            "Kernel": "",
            "Model": "M30S+_VE40",
        }
        for board in range(3)
    ],  # fmt: skip
    "id": 1,
}


async def test_a_full_model_name_maps_to_its_nameplate(server: WhatsminerServer) -> None:
    server.replies["devdetails"] = REAL_DEVDETAILS
    identity = await driver_for(server).identify()
    assert identity.model == "M30S+_VE40"
    spec = model_spec(identity.model)
    assert spec is not None
    assert spec.name == "Whatsminer M30S+"


async def test_v2_status_has_no_btmineroff_and_writes_say_api_command_ok(
    server: WhatsminerServer,
) -> None:
    assert "btmineroff" not in server.replies["status"]["Msg"]
    driver = driver_for(server)
    reply = await driver.privileged("power_off", respbefore="true")
    assert reply["Msg"] == "API command OK"
    assert server.replies["status"]["Msg"]["mineroff"] == "true"
    assert (await driver.read_status()).mining is False
    assert await driver.read_mining() is False
    await driver.start_mining()
    assert await driver.read_mining() is True


async def test_reads_and_identifies_api_v1() -> None:
    async with WhatsminerServer("whatsminer/v1") as server:
        driver = driver_for(server)
        fixtures = load_fixtures("whatsminer/v1")
        for command in ("summary", "pools", "devs", "status", "get_psu", "get_version"):
            assert await driver.query(command) == fixtures[command]
        status = await driver.read_status()
        assert status.mining is True  # btmineroff "false"
        assert status.hashrate_ths == pytest.approx(67.43935249)  # MHS 1m
        assert status.power_w == 3417.0
        assert status.mac == "C4:08:28:00:A4:19"
        assert status.nominal_hashrate_ths == pytest.approx(68.796)
        assert status.board_temperatures_c == (70.0, 69.5, 71.5)
        assert status.temperature_c == 92.5
        assert status.uptime_s == 10792
        assert len(status.pools) == 3
        assert status.errors == ()
        server.replies["summary"] = server.replies["summary_with_errors"]
        assert (await driver.read_status()).errors == ("110", "600")
        identity = await driver.identify()
        assert identity.mac == "C4:08:28:00:A4:19"  # from summary: v1 has no get_miner_info
        assert identity.hostname is None
        assert identity.firmware == "20210322.22.REL"


async def test_stop_and_start_through_the_encrypted_flow(server: WhatsminerServer) -> None:
    driver = driver_for(server)
    await driver.stop_mining()
    assert server.executed[-1]["cmd"] == "power_off"
    assert server.executed[-1]["respbefore"] == "true"
    assert (await driver.read_status()).mining is False
    await driver.start_mining()
    assert server.executed[-1]["cmd"] == "power_on"
    assert (await driver.read_status()).mining is True
    # One token for both commands: it is cached.
    assert server.commands().count("get_token") == 1


async def test_api_v1_stops_too() -> None:
    async with WhatsminerServer("whatsminer/v1") as server:
        driver = driver_for(server)
        await driver.stop_mining()
        assert (await driver.read_status()).mining is False


async def test_a_forgotten_token_is_fetched_once_more(server: WhatsminerServer) -> None:
    driver = driver_for(server)
    await driver.stop_mining()
    server.rotate_token()  # as after a reboot: the cached sign is refused with 135
    await driver.start_mining()
    assert server.commands() == ["get_token", "enc", "enc", "get_token", "enc"]
    assert [command["cmd"] for command in server.executed] == ["power_off", "power_on"]


async def test_a_password_set_again_is_followed(server: WhatsminerServer) -> None:
    driver = driver_for(server)
    await driver.stop_mining()
    server.rotate_token(2)  # new salt: the cached key no longer decrypts (code 23)
    await driver.start_mining()
    assert [command["cmd"] for command in server.executed] == ["power_off", "power_on"]


async def test_a_token_refused_twice_is_an_auth_error(server: WhatsminerServer) -> None:
    server.overrides["enc"] = {"STATUS": "E", "Code": 135, "Msg": "check token error"}
    with pytest.raises(DeviceAuthError, match=rf"127\.0\.0\.1:{server.port}.*code 135"):
        await driver_for(server).stop_mining()
    assert server.commands() == ["get_token", "enc", "get_token", "enc"]


async def test_a_wrong_password_is_an_auth_error(server: WhatsminerServer) -> None:
    with pytest.raises(DeviceAuthError, match=r"power_off.*code 23"):
        await driver_for(server, password="wrong").stop_mining()
    assert server.executed == []
    assert server.replies["status"]["Msg"]["mineroff"] == "false"


async def test_another_password_from_the_credentials() -> None:
    async with WhatsminerServer("whatsminer/v2", password="Pa55word") as server:
        with pytest.raises(DeviceAuthError):
            await driver_for(server).stop_mining()  # the default "admin" is refused
        await driver_for(server, password="Pa55word").stop_mining()
        assert server.executed[-1]["cmd"] == "power_off"


async def test_write_access_disabled_is_an_auth_error() -> None:
    async with WhatsminerServer("whatsminer/v2", write_access=False) as server:
        with pytest.raises(DeviceAuthError, match="code 45"):
            await driver_for(server).start_mining()


async def test_too_many_tokens_is_a_rejection(server: WhatsminerServer) -> None:
    server.overrides["get_token"] = {"STATUS": "S", "Code": 136, "Msg": "over max connect"}
    with pytest.raises(CommandRejectedError, match="over max connect"):
        await driver_for(server).stop_mining()
    server.overrides["get_token"] = {"STATUS": "S", "Code": 134, "Msg": {"salt": "x"}}
    with pytest.raises(DeviceProtocolError, match="newsalt"):
        await driver_for(server).stop_mining()


@pytest.mark.parametrize("encrypted", ["%%% not base64", "QUJD", 17])
async def test_an_encrypted_reply_that_does_not_decrypt(
    server: WhatsminerServer, encrypted: object
) -> None:
    server.overrides["enc"] = {"enc": encrypted}
    with pytest.raises(DeviceProtocolError, match="encrypted reply"):
        await driver_for(server).stop_mining()


async def test_set_pools_updates_all_three_slots(server: WhatsminerServer) -> None:
    driver = driver_for(server)
    await driver.set_pools(
        [
            PoolConfig("stratum+tcp://a.example:3333", "site.a1"),
            PoolConfig("stratum+tcp://127.0.0.1:3333", "site.local", "pw"),
        ]
    )
    sent = server.executed[-1]
    assert sent["cmd"] == "update_pools"
    assert (sent["pool3"], sent["worker3"], sent["passwd3"]) == ("", "", "")
    assert sent["passwd2"] == "pw"
    status = await driver.read_status()
    assert [pool.url for pool in status.pools] == [
        "stratum+tcp://a.example:3333",
        "stratum+tcp://127.0.0.1:3333",
    ]


async def test_switch_pool_writes_the_list_again_with_that_pool_first(
    server: WhatsminerServer,
) -> None:
    # API v2 has no switch command: update_pools with the pool first, the others kept.
    driver = driver_for(server)
    await driver.set_pools(
        [
            PoolConfig("stratum+tcp://a.example:3333", "site.a1", "secret-a"),
            PoolConfig("stratum+tcp://b.example:3333", "site.b1"),
            PoolConfig("stratum+tcp://127.0.0.1:3333", "site.local", "pw"),
        ]
    )
    await driver.switch_pool(2)
    sent = server.executed[-1]
    assert sent["cmd"] == "update_pools"
    slots = [(sent[f"pool{n}"], sent[f"worker{n}"], sent[f"passwd{n}"]) for n in (1, 2, 3)]
    # The passwords are the ones this driver wrote (the firmware never reports them).
    assert slots == [
        ("stratum+tcp://127.0.0.1:3333", "site.local", "pw"),
        ("stratum+tcp://a.example:3333", "site.a1", "secret-a"),
        ("stratum+tcp://b.example:3333", "site.b1", "x"),
    ]
    status = await driver.read_status()
    assert status.active_pool is not None
    assert status.active_pool.url == "stratum+tcp://127.0.0.1:3333"
    # A driver that did not write them (a restart): "x", the default.
    await driver_for(server).switch_pool(1)
    sent = server.executed[-1]
    assert (sent["pool1"], sent["passwd1"], sent["pool2"], sent["passwd2"]) == (
        "stratum+tcp://a.example:3333",
        "x",
        "stratum+tcp://127.0.0.1:3333",
        "x",
    )
    with pytest.raises(ValueError, match="pool 3 is not configured"):
        await driver.switch_pool(3)
    with pytest.raises(ValueError, match="pool -1 is not configured"):
        await driver.switch_pool(-1)


@pytest.mark.parametrize(
    ("fault", "error"),
    [
        ("garbage", DeviceProtocolError),
        ("truncated", DeviceProtocolError),
        ("oversized", DeviceProtocolError),
        ("close", ApiAccessRefusedError),
        ("reset", DeviceConnectionError),
    ],
)
async def test_bad_replies_are_library_errors(
    server: WhatsminerServer, fault: Fault, error: type[Exception]
) -> None:
    server.faults["summary"] = fault
    with pytest.raises(error, match=rf"127\.0\.0\.1:{server.port}"):
        await driver_for(server).read_status()
    server.faults = {"get_token": fault}
    with pytest.raises(error, match=rf"127\.0\.0\.1:{server.port}"):
        await driver_for(server).stop_mining()


async def test_a_silent_miner_times_out(server: WhatsminerServer) -> None:
    server.faults["enc"] = "silent"
    # Only catches a driver that never gives up: ten times the timeout.
    async with asyncio.timeout(3):
        with pytest.raises(DeviceTimeoutError, match=r"within 0\.3 s"):
            await driver_for(server, timeout=0.3).stop_mining()
    # The command timed out once: it is not sent again (the server may not have read it yet).
    assert server.commands() in (["get_token"], ["get_token", "enc"])


async def test_a_refused_connection() -> None:
    driver = WhatsminerDriver(MinerEndpoint("127.0.0.1", free_port()), timeout=1.0)
    with pytest.raises(DeviceConnectionError):
        await driver.identify()


async def test_missing_parts_are_protocol_errors(server: WhatsminerServer) -> None:
    driver = driver_for(server)
    server.overrides["get_version"] = {"STATUS": "S", "Code": 131, "Msg": "2.0.5"}
    with pytest.raises(DeviceProtocolError, match="get_version without a Msg"):
        await driver.identify()
    server.overrides["get_miner_info"] = {"STATUS": "S", "Code": 131, "Msg": {}}
    server.overrides["get_version"] = server.replies["get_version"]
    server.overrides["summary"] = {"STATUS": [{"STATUS": "S"}], "SUMMARY": [{}]}
    with pytest.raises(DeviceProtocolError, match="no MAC"):
        await driver.identify()
    server.overrides["summary"] = {"STATUS": [{"STATUS": "S", "Code": 11}]}
    with pytest.raises(DeviceProtocolError, match="SUMMARY section"):
        await driver.read_status()
    refused = {"STATUS": "E", "Code": 14, "Msg": "invalid cmd"}
    server.overrides |= {"summary": refused, "status": refused}
    with pytest.raises(DeviceProtocolError, match="neither status nor summary"):
        await driver.read_status()


async def test_a_powered_off_miner_that_refuses_reports(server: WhatsminerServer) -> None:
    refused = {"STATUS": "E", "Code": 14, "Msg": "invalid cmd"}
    server.overrides |= {"summary": refused, "devs": refused, "pools": refused}
    server.replies["status"]["Msg"]["mineroff"] = "true"
    status = await driver_for(server).read_status()
    assert status.mining is False
    assert status.hashrate_ths is None
    assert status.pools == ()


async def test_reads_renew_the_token_so_a_stop_is_one_round_trip(
    server: WhatsminerServer,
) -> None:
    driver = driver_for(server)
    await driver.read_status()
    assert server.commands().count("get_token") == 1
    server.requests.clear()
    await driver.stop_mining()
    assert server.commands() == ["enc"], "the stop waited for no token"
    # A token nearly expired is renewed by the next read, not by the next write.
    token = driver._token
    assert token is not None
    driver._token = replace(token, fetched_at=token.fetched_at - 26 * 60)
    await driver.read_status()
    assert server.commands().count("get_token") == 1
    server.requests.clear()
    await driver.start_mining()
    assert server.commands() == ["enc"]
    # A miner that refuses tokens still answers reads; the next write reports the refusal.
    driver._token = None
    server.overrides["get_token"] = {"STATUS": "S", "Code": 136, "Msg": "over max connect"}
    assert (await driver.read_status()).mining is True
    with pytest.raises(CommandRejectedError, match="over max connect"):
        await driver.stop_mining()


async def test_a_token_is_reused_for_thirty_minutes(server: WhatsminerServer) -> None:
    driver = driver_for(server)
    await driver.stop_mining()
    token = driver._token
    assert token is not None
    driver._token = replace(token, fetched_at=token.fetched_at - 29 * 60)
    await driver.start_mining()
    assert server.commands().count("get_token") == 1
    driver._token = replace(token, fetched_at=token.fetched_at - 31 * 60)
    await driver.stop_mining()
    assert server.commands().count("get_token") == 2


async def test_drives_the_simulated_whatsminer() -> None:
    async with simulated_miner("whatsminer") as miner:
        driver = WhatsminerDriver(MinerEndpoint(miner.host, miner.api_port), timeout=2.0)
        identity = await driver.identify()
        assert identity.family == "whatsminer"
        assert identity.mac == miner.mac
        status = await driver.read_status()
        assert status.mining is True
        assert status.hashrate_ths is not None
        assert status.hashrate_ths > 0
        assert status.mac == miner.mac
        assert status.power_w is not None
        await driver.stop_mining()
        assert (await driver.read_status()).mining is False
        assert miner.state == "sleeping"
        await driver.start_mining()
        assert (await driver.read_status()).mining is True
        assert miner.state in ("starting", "mining")
        assert miner.cycles == 1


async def test_a_joining_btminer_is_read_in_one_round_trip() -> None:
    async with WhatsminerServer("whatsminer/v2", joinable=WHATSMINER_JOINABLE) as server:
        driver = driver_for(server, timeout=5.0)
        joined = await driver.read_status()
        # The first read also fetches a write token, in the same round trip.
        assert sorted(server.commands()) == sorted([*READS, "get_token"])
        server.requests.clear()
        # Status and the joined reports at once: neither is answered before both arrived.
        server.in_flight.hold(2)
        assert await driver.read_status() == joined
        assert sorted(server.commands()) == ["status", "summary+devs+pools"]
    async with WhatsminerServer("whatsminer/v2") as plain:
        assert await driver_for(plain).read_status() == joined
        # Refused once as a whole, the join is not asked for again.
        assert sorted(plain.commands()) == sorted([*READS, "devs", "pools", "summary", "get_token"])


async def test_error_codes_are_read_at_most_once_a_minute(server: WhatsminerServer) -> None:
    driver = driver_for(server)
    assert (await driver.read_status()).errors == ()
    server.replies["get_error_code"] = server.replies["get_error_code_with_errors"]
    # Up to a minute old: the codes are not asked for on every poll.
    assert (await driver.read_status()).errors == ()
    assert server.commands().count("get_error_code") == 1
    cached = driver._error_codes
    assert cached is not None
    driver._error_codes = (cached[0] - ERRORS_MAX_AGE_S, cached[1])
    assert (await driver.read_status()).errors == ("218", "110")
    assert server.commands().count("get_error_code") == 2


async def test_the_quick_read_back_asks_status_alone(server: WhatsminerServer) -> None:
    driver = driver_for(server)
    assert await driver.read_mining() is True
    await driver.stop_mining()
    server.requests.clear()
    assert await driver.read_mining() is False
    assert server.commands() == ["status"]
    # A build that refuses `status` is read whole, as read_status() decides.
    server.overrides["status"] = {"STATUS": "E", "Code": 14, "Msg": "invalid cmd"}
    assert await driver.read_mining() is True  # hashing, by summary


async def test_a_write_token_is_fetched_ahead_once(server: WhatsminerServer) -> None:
    driver = driver_for(server)
    await driver.prepare_writes()
    await driver.prepare_writes()  # held and young: nothing to do
    assert server.commands() == ["get_token"]
    await driver.stop_mining()
    # The shed is the encrypted command alone.
    assert server.commands() == ["get_token", "enc"]
