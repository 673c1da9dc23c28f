"""The Whatsminer API v3 driver against a real length-prefixed server holding the fixture replies.

The server checks tokens and decrypts pool lists with its own code (hashlib and
cryptography), so the driver's signing and encryption are verified, not mirrored.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

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
from custom_components.bitcoin_mining.miningsite.miners.whatsminer_v3 import WhatsminerV3Driver
from tests.support.firmware_servers import Fault, WhatsminerV3Server, load_fixtures, simulated_miner
from tests.support.modbus_meter import free_port

pytestmark = pytest.mark.usefixtures("loopback_network")


@pytest.fixture
async def server() -> AsyncIterator[WhatsminerV3Server]:
    async with WhatsminerV3Server() as running:
        yield running


def driver_for(
    server: WhatsminerV3Server,
    credentials: Credentials | None = None,
    timeout: float = 1.0,
) -> WhatsminerV3Driver:
    return WhatsminerV3Driver(MinerEndpoint("127.0.0.1", server.port), credentials, timeout=timeout)


async def test_every_v3_fixture_is_served_and_parsed(server: WhatsminerV3Server) -> None:
    driver = driver_for(server)
    fixtures = load_fixtures("whatsminer/v3")
    assert await driver.query("get.device.info") == fixtures["get_device_info"]["msg"]
    for part in ("summary", "edevs", "pools"):
        expected = fixtures[f"get_miner_status_{part}"]["msg"]
        assert await driver.query("get.miner.status", part) == expected
    server.device_info = fixtures["get_device_info_with_errors"]
    status = await driver.read_status()
    assert status.errors[0] == "264: Power xfer error. code: 0xffffffffc0000000"
    assert len(status.errors) == 5


async def test_reads_the_v3_replies(server: WhatsminerV3Server) -> None:
    status = await driver_for(server).read_status()
    assert status.mining is True
    assert status.hashrate_ths == pytest.approx(171.2)  # hash-1min, already TH/s
    assert status.power_w == 3156.0  # power-realtime
    assert status.power_estimated is False
    assert status.temperature_c == 82.0
    assert status.board_temperatures_c == (41.1, 40.1, 41.5)
    assert status.fan_rpm == (5400, 5280)
    assert status.uptime_s == 50000
    assert status.nominal_hashrate_ths == pytest.approx(181.051)
    assert status.mac == "CE:02:01:00:8C:36"
    assert status.errors == ()
    assert [(pool.url, pool.user, pool.active) for pool in status.pools] == [
        ("stratum+tcp://btc.example.pool:3333", "asic-rs.test", True),
        ("stratum+tcp://btc2.example.pool:3333", "asic-rs.test", False),
        ("stratum+tcp://btc3.example.pool:3333", "asic-rs.test", False),
    ]
    assert all(pool.alive for pool in status.pools)


async def test_identify_v3(server: WhatsminerV3Server) -> None:
    identity = await driver_for(server).identify()
    assert identity.family == "whatsminer_v3"
    assert identity.model == "M60S_VK40"
    assert identity.firmware == "20251209.16.Rel2"
    assert identity.mac == "CE:02:01:00:8C:36"
    assert identity.serial == "BTM3CS40HD24083100000000000000000"
    assert identity.hostname == "WhatsMiner"


async def test_stop_and_start_are_signed(server: WhatsminerV3Server) -> None:
    driver = driver_for(server)
    await driver.stop_mining()
    sent = server.executed[-1]
    assert (sent["cmd"], sent["param"], sent["account"]) == ("set.miner.service", "stop", "super")
    assert len(sent["token"]) == 8
    assert (await driver.read_status()).mining is False
    await driver.start_mining()
    assert server.executed[-1]["param"] == "start"
    assert (await driver.read_status()).mining is True
    # The salt is fetched once and reused.
    salt_requests = [r for r in server.requests if r.get("param") == "salt"]
    assert len(salt_requests) == 1


async def test_a_wrong_password_is_an_auth_error(server: WhatsminerV3Server) -> None:
    with pytest.raises(DeviceAuthError, match=rf"127\.0\.0\.1:{server.port}.*code -4"):
        await driver_for(server, Credentials(password="nope")).stop_mining()
    assert server.executed == []
    assert server.device_info["msg"]["miner"]["working"] == "true"


async def test_another_account() -> None:
    async with WhatsminerV3Server(accounts={"user1": "pw1"}) as server:
        with pytest.raises(DeviceAuthError):
            await driver_for(server).stop_mining()
        await driver_for(server, Credentials("user1", "pw1")).stop_mining()
        assert server.executed[-1]["account"] == "user1"


async def test_a_new_salt_is_fetched_once(server: WhatsminerV3Server) -> None:
    driver = driver_for(server)
    await driver.read_status()  # caches the salt the device info carries
    server.rotate_salt("Zx81qPwe")
    await driver.stop_mining()
    assert server.commands()[-3:] == ["set.miner.service", "get.device.info", "set.miner.service"]
    assert len(server.executed) == 1


async def test_set_pools_sends_the_list_encrypted(server: WhatsminerV3Server) -> None:
    driver = driver_for(server)
    await driver.set_pools(
        [
            PoolConfig("stratum+tcp://a.example:3333", "site.a1", "x"),
            PoolConfig("stratum+tcp://127.0.0.1:3333", "site.local"),
        ]
    )
    sent = server.executed[-1]
    assert sent["cmd"] == "set.miner.pools"
    assert "site.a1" not in str(sent["param"])  # encrypted on the wire
    status = await driver.read_status()
    assert [(pool.url, pool.user) for pool in status.pools] == [
        ("stratum+tcp://a.example:3333", "site.a1"),
        ("stratum+tcp://127.0.0.1:3333", "site.local"),
    ]


async def test_switch_pool_writes_the_list_again_with_that_pool_first(
    server: WhatsminerV3Server,
) -> None:
    # API v3 has no switch command: set.miner.pools with the pool first, the others kept.
    driver = driver_for(server)
    await driver.set_pools(
        [
            PoolConfig("stratum+tcp://a.example:3333", "site.a1", "secret-a"),
            PoolConfig("stratum+tcp://127.0.0.1:3333", "site.local", "pw"),
        ]
    )
    await driver.switch_pool(1)
    # The passwords sent (encrypted) are checked on the simulator (test_pool_moves).
    assert server.executed[-1]["cmd"] == "set.miner.pools"
    status = await driver.read_status()
    assert [pool.url for pool in status.pools] == [
        "stratum+tcp://127.0.0.1:3333",
        "stratum+tcp://a.example:3333",
    ]
    assert status.active_pool is not None
    assert status.active_pool.user == "site.local"
    with pytest.raises(ValueError, match="pool 2 is not configured"):
        await driver.switch_pool(2)


@pytest.mark.parametrize(
    ("fault", "error", "message"),
    [
        ("garbage", DeviceProtocolError, "not JSON"),
        ("truncated", DeviceProtocolError, "mid-reply"),
        ("close", DeviceProtocolError, "without a reply"),
        ("reset", DeviceConnectionError, r"127\.0\.0\.1"),
    ],
)
async def test_bad_replies_are_library_errors(
    server: WhatsminerV3Server, fault: Fault, error: type[Exception], message: str
) -> None:
    server.faults["get.device.info"] = fault
    with pytest.raises(error, match=message) as caught:
        await driver_for(server).identify()
    assert f"127.0.0.1:{server.port}" in str(caught.value)


async def test_an_oversized_reply_is_refused_before_reading_it(server: WhatsminerV3Server) -> None:
    server.faults["get.device.info"] = "oversized"
    with pytest.raises(DeviceProtocolError, match="announced a reply of"):
        await driver_for(server).identify()


async def test_a_silent_miner_times_out(server: WhatsminerV3Server) -> None:
    server.faults["*"] = "silent"
    # Only catches a driver that never gives up: ten times the timeout.
    async with asyncio.timeout(3):
        with pytest.raises(DeviceTimeoutError, match=r"within 0\.3 s"):
            await driver_for(server, timeout=0.3).read_status()
    # One timeout for the read's four requests: none is sent again.
    assert len(server.requests) <= 4


async def test_a_refused_connection() -> None:
    driver = WhatsminerV3Driver(MinerEndpoint("127.0.0.1", free_port()), timeout=1.0)
    with pytest.raises(DeviceConnectionError):
        await driver.read_status()


@pytest.mark.parametrize(
    ("reply", "error", "message"),
    [
        ({"msg": {}}, DeviceProtocolError, "without a code"),
        ({"code": True, "msg": {}}, DeviceProtocolError, "without a code"),
        ({"code": 0, "msg": "text"}, DeviceProtocolError, "no device info"),
        ({"code": 0, "msg": {"network": {}}}, DeviceProtocolError, "no miner"),
        ({"code": 0, "msg": {"miner": {}, "network": {}}}, DeviceProtocolError, "no MAC"),
        ({"code": -2, "msg": "invalid command"}, CommandRejectedError, "code -2"),
    ],
)
async def test_malformed_device_info(
    server: WhatsminerV3Server, reply: dict[str, object], error: type[Exception], message: str
) -> None:
    server.overrides["get.device.info"] = reply
    with pytest.raises(error, match=message):
        await driver_for(server).identify()


async def test_missing_status_sections(server: WhatsminerV3Server) -> None:
    server.status_replies["pools"] = {"code": 0, "msg": {"pool": []}}
    with pytest.raises(DeviceProtocolError, match="no pools list"):
        await driver_for(server).read_status()
    server.status_replies["pools"] = {"code": 0, "msg": {"pools": []}}
    server.status_replies["summary"] = {"code": 0, "msg": {}}
    with pytest.raises(DeviceProtocolError, match="no summary"):
        await driver_for(server).read_status()


async def test_a_stopped_service_that_refuses_status(server: WhatsminerV3Server) -> None:
    refused = {"code": -1, "msg": "miner not running"}
    server.status_replies = {}
    server.overrides["get.miner.status"] = refused
    server.device_info["msg"]["miner"]["working"] = "false"
    status = await driver_for(server).read_status()
    assert status.mining is False
    assert status.hashrate_ths is None
    assert status.pools == ()
    assert status.mac == "CE:02:01:00:8C:36"


async def test_drives_the_simulated_whatsminer_v3() -> None:
    async with simulated_miner("whatsminer_v3") as miner:
        driver = WhatsminerV3Driver(MinerEndpoint(miner.host, miner.api_port), timeout=2.0)
        identity = await driver.identify()
        assert identity.family == "whatsminer_v3"
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


async def test_a_read_is_one_round_trip_of_four_requests(server: WhatsminerV3Server) -> None:
    driver = driver_for(server, timeout=5.0)
    # All four at once: none is answered before every one has arrived.
    server.in_flight.hold(4)
    status = await driver.read_status()
    assert server.in_flight.peak == 4
    assert status.hashrate_ths == pytest.approx(171.2)
    assert sorted(server.commands()) == ["get.device.info"] + ["get.miner.status"] * 3
    assert sorted(str(request.get("param")) for request in server.requests) == [
        "None",
        "edevs",
        "pools",
        "summary",
    ]


async def test_a_refused_device_info_fails_the_read(server: WhatsminerV3Server) -> None:
    server.overrides["get.device.info"] = {"code": -2, "msg": "invalid command"}
    with pytest.raises(CommandRejectedError, match="get.device.info.*code -2"):
        await driver_for(server).read_status()
    server.overrides["get.device.info"] = {"code": -4, "msg": "permission denied"}
    with pytest.raises(DeviceAuthError, match="code -4"):
        await driver_for(server).read_status()
    # A status report may be refused (service stopped), but not for want of access.
    del server.overrides["get.device.info"]
    server.overrides["get.miner.status"] = {"code": -4, "msg": "permission denied"}
    with pytest.raises(DeviceAuthError, match=r"get\.miner\.status.*code -4"):
        await driver_for(server).read_status()


@pytest.mark.parametrize(
    ("fault", "error", "message"),
    [
        ("garbage", DeviceProtocolError, "not JSON"),
        ("truncated", DeviceProtocolError, "mid-reply"),
        ("close", DeviceProtocolError, "without a reply"),
        ("oversized", DeviceProtocolError, "announced a reply of"),
        ("reset", DeviceConnectionError, r"127\.0\.0\.1"),
    ],
)
async def test_a_bad_status_report_fails_the_read(
    server: WhatsminerV3Server, fault: Fault, error: type[Exception], message: str
) -> None:
    server.faults["get.miner.status"] = fault
    with pytest.raises(error, match=message) as caught:
        await driver_for(server).read_status()
    assert f"127.0.0.1:{server.port}" in str(caught.value)


async def test_the_quick_read_back_asks_device_info_alone(server: WhatsminerV3Server) -> None:
    driver = driver_for(server)
    assert await driver.read_mining() is True
    await driver.stop_mining()
    server.requests.clear()
    assert await driver.read_mining() is False
    assert server.commands() == ["get.device.info"]
    del server.device_info["msg"]["miner"]["working"]  # then the hashrate decides
    assert await driver.read_mining() is True


async def test_the_salt_is_fetched_ahead_once(server: WhatsminerV3Server) -> None:
    driver = driver_for(server)
    await driver.prepare_writes()
    await driver.prepare_writes()  # known: nothing to do
    assert server.commands() == ["get.device.info"]
    await driver.stop_mining()
    # The shed is the signed command alone.
    assert server.commands() == ["get.device.info", "set.miner.service"]
