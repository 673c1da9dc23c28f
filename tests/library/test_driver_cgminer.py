"""The generic CGMiner driver against a real cgminer-style server answering the Antminer replies."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
import json
import math
import os
from pathlib import Path
import warnings

import pytest
import pytest_socket

from custom_components.bitcoin_mining.miningsite.exceptions import (
    CommandNotConfirmedError,
    CommandRejectedError,
    DeviceAuthError,
    DeviceConnectionError,
    DeviceProtocolError,
    DeviceTimeoutError,
)
from custom_components.bitcoin_mining.miningsite.miners.base import (
    MinerEndpoint,
    MinerStatus,
    PoolConfig,
    PoolStatus,
)
from custom_components.bitcoin_mining.miningsite.miners.cgminer import (
    CgminerDriver,
    NoDevicesError,
)
from custom_components.bitcoin_mining.miningsite.miners.cgminer_rpc import (
    JOIN_RETRY_S,
    escape_parameter,
    hashrate_ths,
)
from custom_components.bitcoin_mining.miningsite.miners.rpc import (
    MAX_REPLY,
    ApiAccessRefusedError,
    decode_reply,
    exchange_many,
    rpc_exchange,
)
from custom_components.bitcoin_mining.miningsite.miners.values import integer, number
from tests.support.firmware_servers import (
    CGMINER_JOINABLE,
    Cgminer411Server,
    CgminerServer,
    Fault,
    load_fixtures,
    simulated_miner,
    split_parameter,
)
from tests.support.modbus_meter import free_port

pytestmark = pytest.mark.usefixtures("loopback_network")

STATUS_JOIN = "summary+devs+pools+stats"


# Stock bmminer refuses `a+b` as an unknown command; cgminer >= 3.1 joins its reports.
@pytest.fixture(params=[None, CGMINER_JOINABLE], ids=["joins-refused", "joins-accepted"])
async def server(request: pytest.FixtureRequest) -> AsyncIterator[CgminerServer]:
    async with CgminerServer("antminer/v2020", joinable=request.param) as running:
        yield running


def driver_for(server: CgminerServer, timeout: float = 1.0) -> CgminerDriver:
    return CgminerDriver(MinerEndpoint("127.0.0.1", server.port), timeout=timeout)


async def test_every_rpc_fixture_is_served_and_parsed(server: CgminerServer) -> None:
    driver = driver_for(server)
    fixtures = load_fixtures("antminer/v2020")
    for command in ("version", "stats", "summary", "pools", "devs"):
        assert await driver.query(command) == fixtures[command]


async def test_reads_the_antminer_replies(server: CgminerServer) -> None:
    status = await driver_for(server).read_status()
    assert status.mining is True
    assert status.hashrate_ths == pytest.approx(110.56689)  # GHS 5s 110566.89
    assert status.power_w is None
    assert status.power_estimated is False
    assert status.board_temperatures_c == (73.0, 66.0, 64.0)  # stats temp1..3
    assert status.temperature_c == 78.0  # hottest chip, temp_chip1 "78-50-69-70"
    assert status.fan_rpm == (6000, 5880, 5040, 5040)
    assert status.uptime_s == 50474
    assert status.accepted_shares == 4057
    assert status.rejected_shares == 11
    assert status.nominal_hashrate_ths == pytest.approx(110.0)  # total_rateideal in GH
    assert [pool.priority for pool in status.pools] == [0, 1, 2]
    assert status.active_pool is not None
    assert status.active_pool.url == "stratum+tcp://btc.global.luxor.tech:700"
    assert status.active_pool.user == "satokierepair.H04YK"
    assert all(pool.alive for pool in status.pools)
    assert status.mac is None


async def test_identify_without_a_mac_leaves_it_empty(server: CgminerServer) -> None:
    identity = await driver_for(server).identify()
    assert identity.mac == ""
    assert identity.family == "cgminer"


async def test_identify_with_a_mac_in_summary(server: CgminerServer) -> None:
    server.replies["summary"]["SUMMARY"][0]["MAC"] = "aa-bb-cc-00-11-22"
    identity = await driver_for(server).identify()
    assert identity.family == "cgminer"
    assert identity.model == "Antminer S19 Pro"
    assert identity.firmware == "49.0.1.3"
    assert identity.mac == "AA:BB:CC:00:11:22"


async def test_identify_with_a_mac_as_miner_id(server: CgminerServer) -> None:
    server.replies["stats"]["STATS"][1]["miner_id"] = "62f75eb71046"
    assert (await driver_for(server).identify()).mac == "62:F7:5E:B7:10:46"


async def test_stop_and_start_disable_and_enable_every_device(server: CgminerServer) -> None:
    driver = driver_for(server)
    await driver.stop_mining()
    assert server.commands()[-1] == "ascdisable"
    assert server.requests[-1]["parameter"] == "0"
    assert (await driver.read_status()).mining is False
    await driver.start_mining()
    assert server.commands()[-1] == "ascenable"
    assert (await driver.read_status()).mining is True


async def test_writes_without_write_access_are_an_auth_error() -> None:
    async with CgminerServer("antminer/v2020", write_access=False) as server:
        driver = driver_for(server)
        with pytest.raises(DeviceAuthError, match=r"ascdisable.*code 45"):
            await driver.stop_mining()
        with pytest.raises(DeviceAuthError, match="code 45"):
            await driver.switch_pool(1)
        # Reads stay open.
        assert (await driver.read_status()).mining is True


async def test_set_pools_replaces_the_list_in_order(server: CgminerServer) -> None:
    driver = driver_for(server)
    wanted = [
        PoolConfig("stratum+tcp://a.example:3333", "site.a1", "x"),
        PoolConfig("stratum+tcp://b.example:3333", "site.b1", "p,ss\\word"),
        PoolConfig("stratum+tcp://127.0.0.1:3333", "site.local"),
    ]
    await driver.set_pools(wanted)
    by_priority = sorted(server.pools, key=lambda pool: pool["Priority"])
    assert [pool["URL"] for pool in by_priority] == [pool.url for pool in wanted]
    assert sorted(pool["POOL"] for pool in server.pools) == [0, 1, 2]
    status = await driver.read_status()
    assert status.active_pool is not None
    assert status.active_pool.url == "stratum+tcp://a.example:3333"
    assert [pool.user for pool in sorted(status.pools, key=lambda p: p.priority)] == [
        "site.a1",
        "site.b1",
        "site.local",
    ]


async def test_set_pools_refuses_a_bad_list(server: CgminerServer) -> None:
    with pytest.raises(ValueError, match="1 to 3 pools"):
        await driver_for(server).set_pools([])
    with pytest.raises(ValueError, match="URL"):
        await driver_for(server).set_pools([PoolConfig(" ", "user")])
    assert server.requests == []


def test_parameters_are_escaped_for_cgminer() -> None:
    for value in ("plain", "a,b", "back\\slash", "\\,", ",,"):
        assert split_parameter(escape_parameter(value)) == [value]


async def test_switch_pool(server: CgminerServer) -> None:
    driver = driver_for(server)
    await driver.switch_pool(2)
    status = await driver.read_status()
    assert status.active_pool is not None
    assert status.active_pool.priority == 0
    assert [pool.active for pool in status.pools] == [False, False, True]
    with pytest.raises(CommandRejectedError, match=r"switchpool.*code 26"):
        await driver.switch_pool(7)
    with pytest.raises(ValueError, match=">= 0"):
        await driver.switch_pool(-1)


def test_hashrate_units() -> None:
    assert hashrate_ths({"MHS av": 125_000_000}) == pytest.approx(125.0)
    assert hashrate_ths({"GHS 5s": "110566.89"}) == pytest.approx(110.56689)
    assert hashrate_ths({"THS 1m": 1.5, "MHS av": 9}) == pytest.approx(1.5)
    assert hashrate_ths({"GHS 1m": float("nan"), "GHS av": 1000}) == pytest.approx(1.0)
    assert hashrate_ths({"GHS 5s": "fast"}) is None


@pytest.mark.parametrize(
    ("fault", "error", "message"),
    [
        ("garbage", DeviceProtocolError, "not JSON"),
        ("truncated", DeviceProtocolError, "not JSON"),
        ("oversized", DeviceProtocolError, "more than"),
        ("close", ApiAccessRefusedError, "--api-allow"),
        ("reset", DeviceConnectionError, r"127\.0\.0\.1"),
    ],
)
async def test_bad_replies_are_library_errors(
    server: CgminerServer, fault: Fault, error: type[Exception], message: str
) -> None:
    server.faults["summary"] = fault
    with pytest.raises(error, match=message) as caught:
        await driver_for(server).read_status()
    assert f"127.0.0.1:{server.port}" in str(caught.value)


async def test_a_silent_miner_times_out_within_the_timeout(server: CgminerServer) -> None:
    server.faults["*"] = "silent"
    # Only catches a driver that never gives up: ten times the timeout.
    async with asyncio.timeout(3):
        with pytest.raises(DeviceTimeoutError, match=r"within 0\.3 s"):
            await driver_for(server, timeout=0.3).read_status()
    # One timeout for the read: nothing is asked again after the silence (the
    # server may not even have read the one request yet).
    assert server.commands() in ([], [STATUS_JOIN])


async def test_a_refused_connection_is_a_connection_error() -> None:
    driver = CgminerDriver(MinerEndpoint("127.0.0.1", free_port()), timeout=1.0)
    with pytest.raises(DeviceConnectionError) as caught:
        await driver.read_status()
    assert not isinstance(caught.value, DeviceTimeoutError)


@pytest.mark.parametrize(
    ("command", "reply", "message"),
    [
        ("summary", {"STATUS": [{"STATUS": "S", "Code": 11}], "id": 1}, "SUMMARY section"),
        ("devs", {"STATUS": [{"STATUS": "S", "Code": 9}], "DEVS": "none"}, "DEVS section"),
        ("pools", {"POOLS": []}, "without a STATUS"),
        ("summary", {"STATUS": "broken"}, "with STATUS 'BROKEN'"),
        ("summary", {"STATUS": [7]}, "without a STATUS"),
        ("summary", {"STATUS": [{"STATUS": "E", "Code": 14, "Msg": "Invalid"}]}, "code 14"),
    ],
)
async def test_missing_sections_are_protocol_errors(
    server: CgminerServer, command: str, reply: dict[str, object], message: str
) -> None:
    server.overrides[command] = reply
    with pytest.raises((DeviceProtocolError, CommandRejectedError), match=message):
        await driver_for(server).read_status()


async def test_odd_values_read_as_unknown(server: CgminerServer) -> None:
    server.overrides["summary"] = {
        "STATUS": [{"STATUS": "S", "Code": 11}],
        "SUMMARY": [{"GHS 5s": "fast", "Accepted": None, "Elapsed": [1], "Rejected": True}],
    }
    server.overrides["stats"] = {"STATUS": [{"STATUS": "S"}], "STATS": [{"fan1": "x", "temp1": {}}]}
    server.overrides["devs"] = {"STATUS": [{"STATUS": "S"}], "DEVS": [{"Enabled": None}, 7]}
    server.overrides["pools"] = {
        "STATUS": [{"STATUS": "S"}],
        "POOLS": [{"URL": 3, "Priority": "x"}],
    }
    status = await driver_for(server).read_status()
    assert status.mining is False
    assert status.hashrate_ths is None
    assert status.accepted_shares is None
    assert status.rejected_shares is None
    assert status.uptime_s is None
    assert status.fan_rpm == ()
    assert status.temperature_c is None
    assert status.pools[0].url == "3"
    assert status.pools[0].priority == 0


async def test_stop_on_a_miner_without_devices_is_rejected(server: CgminerServer) -> None:
    # What cgminer really sends when it has no device: an error, and no DEVS section.
    server.overrides["devs"] = {
        "STATUS": [
            {
                "STATUS": "E",
                "When": 1796517922,
                "Code": 10,
                "Msg": "No ASCs",
                "Description": "cgminer 4.11.1",
            }
        ],
        "id": 1,
    }
    with pytest.raises(NoDevicesError, match="no devices to disable"):
        await driver_for(server).stop_mining()
    assert "ascdisable" not in server.commands()


async def test_concurrent_reads_do_not_interfere(server: CgminerServer) -> None:
    driver = driver_for(server)
    results = await asyncio.gather(*(driver.read_status() for _ in range(10)))
    assert all(status.hashrate_ths == pytest.approx(110.56689) for status in results)


async def test_drives_the_simulated_cgminer() -> None:
    async with simulated_miner("cgminer") as miner:
        driver = CgminerDriver(MinerEndpoint(miner.host, miner.api_port), timeout=2.0)
        # Like real cgminer, the simulated one reports no MAC: the caller keys it by address.
        assert (await driver.identify()).mac == ""
        status = await driver.read_status()
        assert status.mining is True
        assert status.hashrate_ths is not None
        assert status.hashrate_ths > 0
        assert status.power_w is None
        await driver.stop_mining()
        assert (await driver.read_status()).mining is False
        assert miner.state == "sleeping"
        await driver.start_mining()
        assert (await driver.read_status()).mining is True
        assert miner.state in ("starting", "mining")
        assert miner.cycles == 1


# --- reads in one round trip ---------------------------------------------------------


async def test_a_joining_firmware_is_read_with_one_request() -> None:
    async with CgminerServer("antminer/v2020", joinable=CGMINER_JOINABLE) as server:
        joined = await driver_for(server).read_status()
        assert server.commands() == [STATUS_JOIN]
    async with CgminerServer("antminer/v2020") as plain:
        alone = await driver_for(plain).read_status()
    assert joined == alone
    assert joined.hashrate_ths == pytest.approx(110.56689)


async def test_a_firmware_that_refuses_joins_is_asked_command_by_command() -> None:
    async with CgminerServer("antminer/v2020") as server:
        driver = driver_for(server)
        await driver.read_status()
        assert server.commands()[0] == STATUS_JOIN
        assert sorted(server.commands()[1:]) == ["devs", "pools", "stats", "summary"]
        server.requests.clear()
        await driver.read_status()
        assert sorted(server.commands()) == ["devs", "pools", "stats", "summary"]
        # An hour on it is asked to join again (a firmware update may have brought joins).
        refused_at = driver.reports.join_refused_at
        assert refused_at is not None
        driver.reports.join_refused_at = refused_at - JOIN_RETRY_S
        server.requests.clear()
        await driver.read_status()
        assert server.commands()[0] == STATUS_JOIN


async def test_a_report_refused_inside_a_join_is_asked_alone_from_then_on() -> None:
    # cgminer answers a part it will not join "access denied" (45).
    async with CgminerServer("antminer/v2020", joinable=CGMINER_JOINABLE - {"stats"}) as server:
        driver = driver_for(server)
        status = await driver.read_status()
        assert server.commands() == [STATUS_JOIN, "stats"]
        assert status.fan_rpm == (6000, 5880, 5040, 5040)  # stats, asked alone
        server.requests.clear()
        assert await driver.read_status() == status
        assert sorted(server.commands()) == ["stats", "summary+devs+pools"]


async def test_a_report_the_firmware_lacks_is_taken_from_the_join() -> None:
    async with CgminerServer("antminer/v2020", joinable=CGMINER_JOINABLE) as server:
        del server.replies["stats"]  # "Invalid command" inside the join: no need to ask alone
        status = await driver_for(server).read_status()
        assert server.commands() == [STATUS_JOIN]
        assert status.fan_rpm == ()
        assert status.hashrate_ths == pytest.approx(110.56689)


async def test_a_mangled_joined_reply_counts_as_a_refusal(server: CgminerServer) -> None:
    server.overrides[STATUS_JOIN] = {"STATUS": [{"STATUS": "S", "Code": 11}], "id": 1}
    status = await driver_for(server).read_status()
    assert status.hashrate_ths == pytest.approx(110.56689)
    assert sorted(server.commands()[1:]) == ["devs", "pools", "stats", "summary"]


async def test_a_read_takes_one_round_trip(server: CgminerServer) -> None:
    driver = driver_for(server, timeout=5.0)
    await driver.read_status()  # learns whether the firmware joins
    server.requests.clear()
    asked = [STATUS_JOIN] if server.joinable else ["devs", "pools", "stats", "summary"]
    # No reply before every request of the read has arrived: one request after
    # another would wait for the first reply, which never comes, and time out.
    server.in_flight.hold(len(asked))
    await driver.read_status()
    assert sorted(server.commands()) == asked
    assert server.in_flight.peak == len(asked)


# --- the transport -------------------------------------------------------------------


def request_of(command: str) -> bytes:
    return json.dumps({"command": command}).encode()


async def test_requests_sent_together_come_back_in_order(server: CgminerServer) -> None:
    commands = ["version", "summary", "pools", "devs"]
    raws = await exchange_many("127.0.0.1", server.port, [request_of(c) for c in commands], 1.0)
    fixtures = load_fixtures("antminer/v2020")
    assert [decode_reply(raw, "x") for raw in raws] == [fixtures[c] for c in commands]
    assert sorted(server.commands()) == sorted(commands)
    assert await exchange_many("127.0.0.1", server.port, [], 1.0) == []


async def test_the_first_failure_ends_the_batch_at_once(server: CgminerServer) -> None:
    server.faults |= {"summary": "reset", "pools": "silent"}
    # The batch's deadline is 30 s: waiting for the silent one would hit this bound
    # (which only catches that; the reset ends the batch within milliseconds).
    async with asyncio.timeout(5):
        with pytest.raises(DeviceConnectionError, match=r"127\.0\.0\.1") as caught:
            await exchange_many(
                "127.0.0.1", server.port, [request_of("pools"), request_of("summary")], 30.0
            )
    assert not isinstance(caught.value, DeviceTimeoutError)


async def test_a_reply_of_exactly_the_limit_is_taken() -> None:
    reply = {"STATUS": [{"STATUS": "S"}], "pad": ""}
    reply["pad"] = "x" * (MAX_REPLY - len(json.dumps(reply)) - 1)  # plus the NUL: MAX_REPLY
    async with CgminerServer(None) as server:
        server.overrides["big"] = reply
        raw = await rpc_exchange("127.0.0.1", server.port, request_of("big"), 2.0)
        assert len(raw) == MAX_REPLY
        assert decode_reply(raw, "x") == reply
        reply["pad"] += "x"
        with pytest.raises(DeviceProtocolError, match=f"more than {MAX_REPLY} bytes"):
            await rpc_exchange("127.0.0.1", server.port, request_of("big"), 2.0)


async def test_a_host_name_is_resolved(server: CgminerServer) -> None:
    raw = await rpc_exchange("localhost", server.port, request_of("version"), 1.0)
    assert decode_reply(raw, "x") == load_fixtures("antminer/v2020")["version"]


async def test_the_transport_honours_a_test_network_guard() -> None:
    # connect() goes through pytest-socket's guard (connect_ex() would slip past it).
    pytest_socket.socket_allow_hosts(["127.0.0.1"])
    # pytest-socket >= 0.8 also warns about the attempt; that is not what is tested here.
    with (
        warnings.catch_warnings(action="ignore", category=UserWarning),
        pytest.raises(pytest_socket.SocketConnectBlockedError),
    ):
        await rpc_exchange("127.0.1.7", 4028, request_of("version"), 1.0)


def open_descriptors() -> int:
    return len(os.listdir("/proc/self/fd"))


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc")
async def test_every_socket_is_closed_whatever_the_outcome() -> None:
    selector_map = asyncio.get_running_loop()._selector.get_map()  # type: ignore[attr-defined]
    watched, descriptors = len(selector_map), open_descriptors()
    async with CgminerServer("antminer/v2020") as server:
        driver = driver_for(server, timeout=5.0)
        await driver.read_status()
        server.faults["summary"] = "reset"
        with pytest.raises(DeviceConnectionError):
            await driver.read_status()
        server.faults = {"*": "silent"}
        # The short timeout only where it is the point: the reads above must not race it.
        driver.timeout = 0.3
        with pytest.raises(DeviceTimeoutError):
            await driver.read_status()
        task = asyncio.create_task(driver.read_status())
        await asyncio.sleep(0.1)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    # The server is gone: whatever is still open or watched by the loop would be ours.
    assert len(selector_map) == watched
    assert open_descriptors() == descriptors


async def test_every_device_is_switched_at_once(server: CgminerServer) -> None:
    server.replies["devs"]["DEVS"] += [
        dict(server.devs[0], ASC=number) for number in (1, 2)
    ]  # three chains, as an S9
    driver = driver_for(server, timeout=5.0)
    # devs, then the three commands together: none is answered before all have arrived.
    server.in_flight.hold(3, only={"ascdisable"})
    await driver.stop_mining()
    assert server.in_flight.peak == 3
    assert server.commands()[0] == "devs"
    assert sorted(server.commands()[1:]) == ["ascdisable"] * 3
    assert sorted(r["parameter"] for r in server.requests[1:]) == ["0", "1", "2"]
    assert all(dev["Enabled"] == "N" for dev in server.devs)
    assert await driver.read_mining() is False
    await driver.start_mining()
    assert await driver.read_mining() is True
    assert (await driver.read_status()).mining is True


# --- a real cgminer 4.11.1 (cgminer-observed.md) -----------------------------------


@pytest.fixture
async def real() -> AsyncIterator[Cgminer411Server]:
    async with Cgminer411Server() as running:
        yield running


def by_priority(server: CgminerServer) -> list[tuple[str, str]]:
    return [(p["URL"], p["User"]) for p in sorted(server.pools, key=lambda p: p["Priority"])]


async def test_a_cgminer_without_devices_is_read_as_not_mining(real: Cgminer411Server) -> None:
    # F1: `devs` is `E 10 "No ASCs"`; the rest of the join is still read.
    driver = driver_for(real)
    status = await driver.read_status()
    assert real.commands() == [STATUS_JOIN]
    assert status.mining is False
    assert status.hashrate_ths == 0.0
    assert status.uptime_s == 578
    assert (status.accepted_shares, status.rejected_shares) == (12, 1)
    assert [pool.url for pool in status.pools] == [
        "stratum+tcp://127.0.0.1:23402",
        "stratum+tcp://127.0.0.1:23409",
    ]
    assert status.board_temperatures_c == ()
    assert await driver.read_mining() is False
    identity = await driver.identify()
    assert (identity.model, identity.firmware, identity.mac) == ("cgminer", "CGMiner 4.11.1", "")


async def test_stop_and_start_without_devices_say_so(real: Cgminer411Server) -> None:
    driver = driver_for(real)
    for call, action in ((driver.stop_mining, "disable"), (driver.start_mining, "enable")):
        with pytest.raises(NoDevicesError, match=f"no devices to {action}.*No ASCs"):
            await call()
    # Devices that drop out between `devs` and the command: cgminer answers E 105.
    real.overrides["devs"] = load_fixtures("antminer/v2020")["devs"]
    with pytest.raises(NoDevicesError, match=r"dropped out.*code 105"):
        await driver.stop_mining()


async def test_each_part_of_a_join_is_read_for_what_it_says(real: Cgminer411Server) -> None:
    # summary+foo: cgminer answers summary and refuses foo (E 14) on its own.
    raw = await rpc_exchange("127.0.0.1", real.port, request_of("summary+foo+devs"), 1.0)
    reply = decode_reply(raw, "x")
    assert reply["summary"][0]["STATUS"][0]["STATUS"] == "S"
    assert reply["foo"][0]["STATUS"][0]["Code"] == 14
    assert reply["devs"][0]["STATUS"][0]["Code"] == 10
    # A refused part is not asked again alone (only "access denied" parts are).
    driver = driver_for(real)
    await driver.read_status()
    await driver.read_status()
    assert real.commands()[1:] == [STATUS_JOIN, STATUS_JOIN]


ABC = [
    PoolConfig("stratum+tcp://a.example:3333", "site.a"),
    PoolConfig("stratum+tcp://b.example:3333", "site.b"),
    PoolConfig("stratum+tcp://c.example:3333", "site.c"),
]


@pytest.mark.parametrize("poolpriority", [True, False], ids=["poolpriority", "switchpool"])
async def test_set_pools_while_new_pools_are_still_tested(
    real: Cgminer411Server, poolpriority: bool
) -> None:
    # F2: new pools are "Dead" until their test passes; the current pool is never removed.
    real.pool_test_delay = math.inf  # until pass_pool_tests(): no race with the calls
    real.pool_priority = poolpriority
    driver = driver_for(real)
    await driver.set_pools(ABC)
    old = real.pools[0]
    assert old["Status"] == "Disabled"  # hashed on: disabled, removed by a later call
    assert by_priority(real)[:3] == [(p.url, p.user) for p in ABC]
    assert len(real.pools) == 4
    # A retry at once adds nothing and leaves the pool it still hashes on.
    await driver.set_pools(ABC)
    assert real.added == 3
    assert len(real.pools) == 4
    # Once the new pools pass their test, cgminer moves (fallback); the next call converges.
    real.pass_pool_tests()
    real.switch_best()
    await driver.set_pools(ABC)
    assert by_priority(real) == [(p.url, p.user) for p in ABC]
    assert real.added == 3
    status = await driver.read_status()
    assert status.active_pool is not None
    assert status.active_pool.url == "stratum+tcp://a.example:3333"


async def test_set_pools_with_live_pools_converges_in_one_call(real: Cgminer411Server) -> None:
    driver = driver_for(real)
    await driver.set_pools(ABC[:2])
    assert by_priority(real) == [(p.url, p.user) for p in ABC[:2]]
    assert sorted(p["POOL"] for p in real.pools) == [0, 1]
    # Idempotent: the same list again writes nothing.
    real.requests.clear()
    await driver.set_pools(ABC[:2])
    assert real.commands() == ["pools"]


async def test_set_pools_cleans_up_a_list_grown_by_old_retries(real: Cgminer411Server) -> None:
    for url in ("stratum+tcp://a.example:3333", "stratum+tcp://a.example:3333", "stratum+tcp://x"):
        real.do_addpool(f"{url},site.a,x")
    await driver_for(real).set_pools(ABC[:1])
    assert by_priority(real) == [("stratum+tcp://a.example:3333", "site.a")]


async def test_set_pools_without_write_access_is_an_auth_error() -> None:
    async with Cgminer411Server(write_access=False) as server:
        with pytest.raises(DeviceAuthError, match=r"addpool.*code 45"):
            await driver_for(server).set_pools(ABC)


async def test_the_current_pool_is_not_the_first_flagged(real: Cgminer411Server) -> None:
    # F4: both pools show "Stratum Active"; the current one is alive and highest in priority.
    real.pools[0]["Priority"], real.pools[1]["Priority"] = 1, 0
    status = await driver_for(real).read_status()
    assert [pool.active for pool in status.pools] == [False, True]
    assert status.active_pool is not None
    assert status.active_pool.url == "stratum+tcp://127.0.0.1:23409"
    real.pools[1]["Status"] = "Dead"
    status = await driver_for(real).read_status()
    assert status.active_pool is not None
    assert status.active_pool.url == "stratum+tcp://127.0.0.1:23402"


async def test_a_switch_is_what_reads_back(real: Cgminer411Server) -> None:
    # F3: cgminer answers "Switching to pool 1" and stays on pool 0 when pool 1 is dead.
    driver = driver_for(real, timeout=0.5)
    real.pools[1]["Status"] = "Dead"
    with pytest.raises(CommandNotConfirmedError, match="still hashes on pool 0, not pool 1"):
        await driver.switch_pool(1)
    real.pools[1]["Status"] = "Alive"
    await driver.switch_pool(1)
    status = await driver.read_status()
    assert status.active_pool is not None
    assert status.active_pool.url == "stratum+tcp://127.0.0.1:23409"


@pytest.mark.parametrize("how", ["close", "reset"])
async def test_an_address_left_out_of_api_allow(real: Cgminer411Server, how: str) -> None:
    # F5: cgminer closes (or resets) without a word: the error says where to look.
    real.refuse = how  # type: ignore[assignment]
    with pytest.raises(ApiAccessRefusedError, match="--api-allow"):
        await driver_for(real).read_status()


async def test_a_silent_client_stalls_the_api_for_the_timeout(real: Cgminer411Server) -> None:
    # F6: one API thread; a client that sends nothing holds it. The timeout bounds the wait.
    real.one_at_a_time = True
    _, silent = await asyncio.open_connection("127.0.0.1", real.port)
    try:
        # Only catches a driver that never gives up: ten times the timeout.
        async with asyncio.timeout(3):
            with pytest.raises(DeviceTimeoutError, match=r"within 0\.3 s"):
                await driver_for(real, timeout=0.3).identify()
        assert real.requests == []  # the API thread never got to the request
    finally:
        silent.close()
        await silent.wait_closed()
    # The first call after the silent client left is answered.
    assert (await driver_for(real).identify()).firmware == "CGMiner 4.11.1"


# --- the one value coercer of every driver -------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (3, 3.0),
        (2.5, 2.5),
        ("110566.89", 110566.89),
        (" 42 ", 42.0),
        ("'7'", 7.0),
        (float("nan"), None),
        (float("inf"), None),
        ("nan", None),
        ("-inf", None),
        (True, None),
        (False, None),
        ("fast", None),
        (None, None),
        ([1], None),
        ({}, None),
    ],
)
def test_one_coercer_for_every_driver(value: object, expected: float | None) -> None:
    assert number(value) == expected
    assert integer(value) == (int(expected) if expected is not None else None)


def test_the_active_pool_of_a_status_is_not_the_first_flagged() -> None:
    # Firmware whose parser flags every connected pool (Whatsminer v3, Braiins) is read alike.
    pools = (
        PoolStatus("stratum+tcp://dead", "u", alive=False, active=True, priority=0),
        PoolStatus("stratum+tcp://low", "u", alive=True, active=True, priority=2),
        PoolStatus("stratum+tcp://high", "u", alive=True, active=True, priority=1),
        PoolStatus("stratum+tcp://idle", "u", alive=True, active=False, priority=0),
    )
    active = MinerStatus(mining=True, pools=pools).active_pool
    assert active is not None
    assert active.url == "stratum+tcp://high"
    assert MinerStatus(mining=True, pools=pools[3:]).active_pool is None


async def test_a_stop_after_a_poll_reuses_its_device_list(server: CgminerServer) -> None:
    driver = driver_for(server)
    await driver.read_status()
    server.requests.clear()
    await driver.stop_mining()
    # The poll's `devs` names the devices: a shed is the command alone, one round trip.
    assert server.commands() == ["ascdisable"]
    assert await driver.read_mining() is False


async def test_prepare_writes_reads_the_devices_once(server: CgminerServer) -> None:
    driver = driver_for(server)
    await driver.prepare_writes()
    await driver.prepare_writes()
    assert server.commands() == ["devs"]
    server.requests.clear()
    await driver.start_mining()
    assert server.commands() == ["ascenable"]


async def test_a_reused_device_list_refused_is_read_again_once(server: CgminerServer) -> None:
    driver = driver_for(server)
    await driver.read_status()
    # Chain 0 dropped out and chain 1 came up since the poll: ascdisable|0 is refused.
    server.replies["devs"]["DEVS"][0]["ASC"] = 1
    server.requests.clear()
    await driver.stop_mining()
    assert server.commands() == ["ascdisable", "devs", "ascdisable"]
    assert [r.get("parameter") for r in server.requests] == ["0", None, "1"]
