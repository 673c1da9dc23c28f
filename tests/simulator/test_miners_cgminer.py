"""Generic CGMiner 4.11.1, held to what a real one was observed to answer (cgminer-observed.md)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
import contextlib
import json
import re
from typing import Any

import pytest

from devtools.steps import poll_until
from simulator.miners import SimMiner
from simulator.pool import StratumPool
from tests.simulator.test_miners_helpers import (
    TIMEOUT,
    closed_without_reply,
    decode_cgminer,
    exchange,
    rpc,
    rpc_raw,
    running_site,
    status,
    wait_for,
)

SUMMARY_KEYS = [
    "Elapsed",
    "MHS av",
    "MHS 5s",
    "MHS 1m",
    "MHS 5m",
    "MHS 15m",
    "Found Blocks",
    "Getworks",
    "Accepted",
    "Rejected",
    "Hardware Errors",
    "Utility",
    "Discarded",
    "Stale",
    "Get Failures",
    "Local Work",
    "Remote Failures",
    "Network Blocks",
    "Total MH",
    "Work Utility",
    "Difficulty Accepted",
    "Difficulty Rejected",
    "Difficulty Stale",
    "Best Share",
    "Device Hardware%",
    "Device Rejected%",
    "Pool Rejected%",
    "Pool Stale%",
    "Last getwork",
]
POOL_STATS_KEYS = [
    "Pool Calls",
    "Pool Attempts",
    "Pool Wait",
    "Pool Max",
    "Pool Min",
    "Pool Av",
    "Work Had Roll Time",
    "Work Can Roll",
    "Work Had Expire",
    "Work Roll Time",
    "Work Diff",
    "Min Diff",
    "Max Diff",
    "Min Diff Count",
    "Max Diff Count",
    "Times Sent",
    "Bytes Sent",
    "Times Recv",
    "Bytes Recv",
    "Net Bytes Sent",
    "Net Bytes Recv",
]


@contextlib.asynccontextmanager
async def stratum_listener() -> AsyncIterator[str]:
    """A real Stratum pool on loopback (the liveness probe and the miners speak Stratum)."""
    pool = StratumPool("127.0.0.1", 0)
    await pool.start()
    try:
        yield f"stratum+tcp://127.0.0.1:{pool.port}"
    finally:
        await pool.stop()


async def text(miner: SimMiner, request: bytes) -> str:
    """A plain-text request; the text reply without its NUL."""
    raw = await exchange(miner.host, miner.api_port, request)
    assert raw.endswith(b"\x00"), raw[-20:]
    return raw[:-1].decode()


def pools_of(reply: dict[str, Any]) -> list[tuple[int, str, int, str]]:
    """(POOL, URL, Priority, Status) of each pool."""
    return [(p["POOL"], p["URL"], p["Priority"], p["Status"]) for p in reply["POOLS"]]


# --- reports ------------------------------------------------------------------------------


async def test_version_and_summary_are_4_11_1(loopback_network: None) -> None:
    async with running_site("cgminer", miners=1) as site:
        miner = site.miners[0]
        version = await rpc(miner, "version")
        assert status(version)["Description"] == "cgminer 4.11.1"
        assert version["VERSION"] == [{"CGMiner": "4.11.1", "API": "3.7"}]
        summary = (await rpc(miner, "summary"))["SUMMARY"][0]
        assert list(summary) == SUMMARY_KEYS
        assert 13e6 <= summary["MHS 5s"] <= 14e6
        assert isinstance(summary["Best Share"], int)


async def test_numbers_have_fixed_decimals_on_the_wire(loopback_network: None) -> None:
    async with running_site("cgminer", miners=1) as site:
        raw = (await exchange(*address(site.miners[0]), b'{"command": "summary"}')).decode()
    assert re.search(r'"MHS av":\d+\.\d{2}[,}]', raw), raw
    assert re.search(r'"Total MH":\d+\.\d{4}[,}]', raw), raw
    assert re.search(r'"Difficulty Accepted":\d+\.\d{8}[,}]', raw), raw
    assert re.search(r'"Difficulty Stale":0\.00000000[,}]', raw), raw


def address(miner: SimMiner) -> tuple[str, int]:
    return miner.host, miner.api_port


async def test_config_has_the_4_11_1_keys(loopback_network: None) -> None:
    async with running_site("cgminer", miners=1) as site:
        config = (await rpc(site.miners[0], "config"))["CONFIG"][0]
    assert config == {
        "ASC Count": 3,
        "PGA Count": 0,
        "Pool Count": 2,
        "Strategy": "Failover",
        "Log Interval": 5,
        "Device Code": "ICA ",
        "OS": "Linux",
        "Hotplug": 5,
    }


async def test_devs_entries(loopback_network: None) -> None:
    async with running_site("cgminer", miners=1) as site:
        devs = (await rpc(site.miners[0], "devs"))["DEVS"]
    assert [dev["Name"] for dev in devs] == ["ICA", "ICA", "ICA"]
    keys = list(devs[0])
    # "No Device" between Last Share Difficulty and Last Valid Work (USB builds).
    assert keys.index("No Device") == keys.index("Last Share Difficulty") + 1
    assert keys.index("Last Valid Work") == keys.index("No Device") + 1
    assert devs[0]["No Device"] is False
    # No share on any pool of this session yet.
    assert {dev["Last Share Pool"] for dev in devs} == {-1}


async def test_stats_per_device_then_per_pool(loopback_network: None) -> None:
    async with running_site("cgminer", miners=1) as site:
        stats = (await rpc(site.miners[0], "stats"))["STATS"]
        estats = (await rpc(site.miners[0], "estats"))["STATS"]
    assert [entry["ID"] for entry in stats] == ["ICA0", "ICA1", "ICA2", "POOL0", "POOL1"]
    assert [entry["STATS"] for entry in stats] == [0, 1, 2, 3, 4]
    for entry in stats:
        assert not any(key.startswith(("temp", "fan")) for key in entry), entry
    pool_keys = list(stats[3])
    assert pool_keys[pool_keys.index("Pool Calls") :] == POOL_STATS_KEYS
    assert [entry["ID"] for entry in estats] == ["ICA0", "ICA1", "ICA2"]


async def test_pools_keys_types_and_order(loopback_network: None) -> None:
    async with running_site("cgminer", miners=1) as site:
        miner = site.miners[0]
        pools = (await rpc(miner, "pools"))["POOLS"]
    first = pools[0]
    assert "Diff" not in first
    keys = list(first)
    assert keys.index("Has Vmask") == keys.index("Has GBT") - 1
    assert keys[-3:] == ["Bad Work", "Current Block Height", "Current Block Version"]
    assert first["Has Vmask"] is False
    assert isinstance(first["Works"], int)
    assert isinstance(first["Work Difficulty"], float)
    assert isinstance(first["Stratum Difficulty"], float)
    assert isinstance(first["Last Share Time"], int)
    assert isinstance(first["Best Share"], int)
    # The host only, not host:port.
    assert first["Stratum Active"] is True
    assert first["Stratum URL"] == "127.0.0.1"


async def test_check_devdetails_coin_asccount(loopback_network: None) -> None:
    async with running_site("cgminer", miners=1) as site:
        miner = site.miners[0]
        check = await rpc(miner, "check", "addpool")
        assert status(check)["Msg"] == "Check command"
        assert check["CHECK"] == [{"Exists": "Y", "Access": "Y"}]
        assert (await rpc(miner, "check", "fly"))["CHECK"] == [{"Exists": "N", "Access": "N"}]
        details = await rpc(miner, "devdetails")
        assert status(details)["Code"] == 69
        assert [d["Driver"] for d in details["DEVDETAILS"]] == ["icarus"] * 3
        coin = await rpc(miner, "coin")
        assert (status(coin)["Code"], coin["COIN"][0]["Hash Method"]) == (78, "sha256")
        count = await rpc(miner, "asccount")
        assert (status(count)["Code"], count["ASCS"]) == (104, [{"Count": 3}])


# --- request forms ------------------------------------------------------------------------


async def test_joins_answer_each_part(loopback_network: None) -> None:
    async with running_site("cgminer", miners=1) as site:
        miner = site.miners[0]
        reply = await rpc_raw(miner, b'{"command": "summary+addpool+foo+summary"}')
        assert list(reply) == ["summary", "addpool", "foo", "id"]
        assert status(reply["summary"][0])["Code"] == 11
        refused = status(reply["addpool"][0])
        assert (refused["STATUS"], refused["Code"]) == ("E", 45)
        assert refused["Msg"] == "Access denied to 'addpool' command"
        unknown = status(reply["foo"][0])
        assert (unknown["STATUS"], unknown["Code"]) == ("E", 14)
        assert "Description" not in unknown
        plain = await rpc_raw(miner, b'{"command": "summary+pools"}')
        assert status(plain["pools"][0])["Code"] == 7


async def test_plain_text_is_answered_in_text(loopback_network: None) -> None:
    async with running_site("cgminer", miners=1) as site:
        miner = site.miners[0]
        summary = await text(miner, b"summary")
        assert re.match(
            r"STATUS=S,When=\d+,Code=11,Msg=Summary,Description=cgminer 4\.11\.1"
            r"\|SUMMARY,Elapsed=\d+,MHS av=\d+\.\d\d,",
            summary,
        ), summary
        assert summary.endswith("|")
        pools = await text(miner, b"pools")
        assert "|POOL=0,URL=stratum+tcp://127.0.0.1:" in pools
        assert "|POOL=1," in pools
        joined = await text(miner, b"summary+pools")
        assert joined.startswith("CMD=summary|STATUS=S,")
        assert "|CMD=pools|STATUS=S," in joined
        switched = await text(miner, b"switchpool|0")
        assert re.match(r"STATUS=S,When=\d+,Code=27,Msg=Switching to pool 0:'", switched)


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        (b"[1, 2]", "text"),  # only a leading "{" makes a request JSON
        (b"fly|away", "text"),
        (b"../../etc/passwd", "text"),
        (b'{"command": 1}', 14),
        (b'{"command": "summary"', 23),
        (b'{"parameter": "0"}', 24),
        (b'{"command": "fly"}', 14),
    ],
)
async def test_bad_input_gets_the_firmware_error(
    loopback_network: None, payload: bytes, expected: str | int
) -> None:
    async with running_site("cgminer", miners=1) as site:
        miner = site.miners[0]
        if expected == "text":
            reply = await text(miner, payload)
            assert re.fullmatch(r"STATUS=E,When=\d+,Code=14,Msg=Invalid command\|", reply), reply
        else:
            entry = status(await rpc_raw(miner, payload))
            assert (entry["STATUS"], entry["Code"]) == ("E", expected)
            # "Do not give out description for random probes": code 14 only.
            assert ("Description" in entry) is (expected != 14)
        assert status(await rpc(miner, "summary"))["Code"] == 11


async def test_nothing_sent_closes_without_a_reply(loopback_network: None) -> None:
    async with running_site("cgminer", miners=1) as site:
        miner = site.miners[0]
        reader, writer = await asyncio.open_connection(miner.host, miner.api_port)
        writer.write_eof()
        assert await asyncio.wait_for(reader.read(), 2) == b""
        writer.close()


# --- devices ------------------------------------------------------------------------------


async def test_stop_is_ascdisable_of_every_device(loopback_network: None) -> None:
    async with running_site("cgminer", miners=1, wake_delay_s=2.0) as site:
        miner = site.miners[0]
        assert status(await rpc(miner, "privileged"))["Code"] == 46
        for device in range(3):
            entry = status(await rpc(miner, "ascdisable", str(device)))
            assert (entry["STATUS"], entry["Code"]) == ("I", 111)
        assert miner.state == "sleeping"
        assert miner.cycles == 1
        assert [dev["Enabled"] for dev in (await rpc(miner, "devs"))["DEVS"]] == ["N", "N", "N"]
        assert (await rpc(miner, "summary"))["SUMMARY"][0]["MHS 5s"] == 0
        assert (await rpc(miner, "edevs"))["DEVS"] == []
        answers = [status(await rpc(miner, "ascdisable", p)) for p in ("0", "7", "x")]
        # "x" is device 0 (atoi), already disabled.
        assert [(a["STATUS"], a["Code"]) for a in answers] == [("I", 109), ("E", 107), ("I", 109)]
        assert status(await rpc(miner, "ascdisable", "7"))["Msg"] == (
            "Invalid ASC id 7 - range is 0 - 2"
        )
        missing = status(await rpc(miner, "ascdisable"))
        assert (missing["STATUS"], missing["Code"]) == ("E", 15)

        entry = status(await rpc(miner, "ascenable", "0"))
        assert (entry["STATUS"], entry["Code"]) == ("I", 110)
        assert miner.state == "starting"
        for device in (1, 2):
            await rpc(miner, "ascenable", str(device))
        assert status(await rpc(miner, "ascenable", "1"))["Code"] == 108
        await wait_for(lambda: miner.state == "mining", timeout=6)


async def test_a_miner_without_devices(loopback_network: None) -> None:
    async with running_site("cgminer", miners=1) as site:
        miner = site.miners[0]
        miner.options.devices = 0
        for command in ("devs", "edevs", "devdetails"):
            reply = await rpc(miner, command)
            entry = status(reply)
            assert (entry["STATUS"], entry["Code"], entry["Msg"]) == ("E", 10, "No ASCs")
            assert set(reply) == {"STATUS", "id"}
        for command, parameter in (("ascdisable", "0"), ("ascenable", "0"), ("ascdisable", None)):
            entry = status(await rpc(miner, command, parameter))
            assert (entry["STATUS"], entry["Code"], entry["Msg"]) == ("E", 105, "No ASCs")
        assert (await rpc(miner, "asccount"))["ASCS"] == [{"Count": 0}]
        joined = await rpc_raw(miner, b'{"command": "summary+devs+pools"}')
        assert status(joined["devs"][0])["Code"] == 10
        assert status(joined["pools"][0])["Code"] == 7
        assert joined["summary"][0]["SUMMARY"][0]["MHS 5s"] == 0
        assert (await rpc(miner, "config"))["CONFIG"][0]["ASC Count"] == 0
        assert [e["ID"] for e in (await rpc(miner, "stats"))["STATS"]] == ["POOL0", "POOL1"]


# --- pools --------------------------------------------------------------------------------


async def test_pool_command_answers(loopback_network: None) -> None:
    async with running_site("cgminer", miners=1) as site:
        miner = site.miners[0]
        url0 = miner.pools[0].url
        added = await rpc(miner, "addpool", "stratum+tcp://127.0.0.1:9\\,x, w.1,x,extra")
        assert (status(added)["Code"], status(added)["Msg"]) == (
            55,
            "Added pool 2: 'stratum+tcp://127.0.0.1:9,x'",
        )
        assert (miner.pools[2].url, miner.pools[2].user) == ("stratum+tcp://127.0.0.1:9,x", " w.1")
        assert status(await rpc(miner, "addpool", "only-url,user"))["Code"] == 53
        assert status(await rpc(miner, "addpool"))["Code"] == 52

        already = status(await rpc(miner, "enablepool", "0"))
        assert (already["STATUS"], already["Code"]) == ("I", 49)
        assert status(await rpc(miner, "disablepool", "2"))["Code"] == 48
        assert (await rpc(miner, "pools"))["POOLS"][2]["Status"] == "Disabled"
        again = status(await rpc(miner, "disablepool", "2"))
        assert (again["STATUS"], again["Code"]) == ("I", 50)
        assert status(await rpc(miner, "enablepool", "2"))["Code"] == 47

        # atoi: "x" is pool 0.
        assert status(await rpc(miner, "switchpool", "x"))["Msg"] == f"Switching to pool 0:'{url0}'"
        invalid = status(await rpc(miner, "switchpool", "5"))
        assert (invalid["Code"], invalid["Msg"]) == (26, "Invalid pool id 5 - range is 0 - 2")
        assert status(await rpc(miner, "switchpool"))["Code"] == 25
        assert status(await rpc(miner, "poolpriority", "2,1"))["Code"] == 73
        assert [p.priority for p in miner.pools] == [2, 1, 0]
        assert status(await rpc(miner, "poolpriority", "1,1"))["Code"] == 74


async def test_removing_the_last_pool(loopback_network: None) -> None:
    async with running_site("cgminer", miners=1) as site:
        miner = site.miners[0]
        url1 = miner.pools[1].url
        assert status(await rpc(miner, "removepool", "1"))["Msg"] == f"Removed pool 1:'{url1}'"
        url0 = miner.pools[0].url
        last = status(await rpc(miner, "removepool", "0"))
        assert (last["Code"], last["Msg"]) == (66, f"Cannot remove last pool 0:'{url0}'")


async def test_removepool_renumbers_like_cgminer(loopback_network: None) -> None:
    async with running_site("cgminer", miners=1) as site:
        miner = site.miners[0]
        miner.options.pool_test_s = 0
        for name in ("c", "d"):
            await rpc(miner, "addpool", f"stratum+tcp://127.0.0.1:9/{name},w,x")
        urls = [pool.url for pool in miner.pools]
        assert [pool.priority for pool in miner.pools] == [0, 1, 2, 3]
        assert status(await rpc(miner, "removepool", "1"))["Code"] == 68
        # The last pool takes the removed one's number; priorities close up.
        pools = pools_of(await rpc(miner, "pools"))
        assert [(n, url, prio) for n, url, prio, _ in pools] == [
            (0, urls[0], 0),
            (1, urls[3], 2),
            (2, urls[2], 1),
        ]


async def test_a_new_pool_is_dead_until_its_test_passes(loopback_network: None) -> None:
    async with stratum_listener() as url, running_site("cgminer", miners=1) as site:
        miner = site.miners[0]
        miner.options.pool_test_s = 1.0
        assert status(await rpc(miner, "addpool", f"{url},w,x"))["Code"] == 55
        new = (await rpc(miner, "pools"))["POOLS"][2]
        # Under test: "Dead", but its Stratum connection is open.
        assert (new["Status"], new["Stratum Active"]) == ("Dead", True)
        await wait_for(lambda: miner.pool_usable(2), timeout=5)
        assert (await rpc(miner, "pools"))["POOLS"][2]["Status"] == "Alive"


async def test_switchpool_moves_only_to_a_usable_pool(loopback_network: None) -> None:
    async with stratum_listener() as url, running_site("cgminer", miners=1, fallback_s=0.5) as site:
        miner = site.miners[0]
        upstream = miner.pool
        miner.options.pool_test_s = 1.0
        await rpc(miner, "addpool", f"{url},w,x")
        # Untested: the answer is a success, the priority changes, the miner stays.
        switched = status(await rpc(miner, "switchpool", "2"))
        assert (switched["STATUS"], switched["Code"]) == ("S", 27)
        assert miner.pools[2].priority == 0
        assert miner.pool == upstream
        # Removing the current pool: cgminer tries to switch away first; nothing usable
        # is better, so it stays current and the removal is refused.
        refused = status(await rpc(miner, "removepool", "0"))
        assert (refused["Code"], refused["Msg"]) == (
            67,
            f"Cannot remove active pool 0:'{upstream}'",
        )
        # Two connections at once: the current pool and the better one under test.
        active = [p["Stratum Active"] for p in (await rpc(miner, "pools"))["POOLS"]]
        assert active[0] is True
        assert active[2] is True
        # Once tested and stable for the fallback time, cgminer moves by itself.
        await wait_for(lambda: miner.pool == url, timeout=5)
        assert status(await rpc(miner, "removepool", "0"))["Code"] == 68
        assert miner.pool == url


async def test_switchpool_to_a_dead_pool_never_switches(loopback_network: None) -> None:
    async with running_site("cgminer", miners=1, fallback_s=0.1) as site:
        miner = site.miners[0]
        upstream = miner.pool
        miner.options.pool_test_s = 0
        await rpc(miner, "addpool", "stratum+tcp://127.0.0.1:1,w,x")  # nothing listens on 1
        await wait_for(lambda: not miner.pool_alive(2))
        assert status(await rpc(miner, "switchpool", "2"))["Code"] == 27
        await asyncio.sleep(0.3)
        assert miner.pool == upstream
        pools = (await rpc(miner, "pools"))["POOLS"]
        assert (pools[2]["Status"], pools[2]["Stratum Active"]) == ("Dead", False)


async def test_switchpool_to_a_usable_pool_is_immediate(loopback_network: None) -> None:
    async with stratum_listener() as url, running_site("cgminer", miners=1) as site:
        miner = site.miners[0]
        miner.options.pool_test_s = 0.05
        await rpc(miner, "addpool", f"{url},w,x")
        await wait_for(lambda: miner.pool_usable(2))
        assert status(await rpc(miner, "switchpool", "2"))["Code"] == 27
        assert miner.pool == url
        upstream_index = 0
        assert status(await rpc(miner, "removepool", str(upstream_index)))["Code"] == 68


# --- access -------------------------------------------------------------------------------


async def test_writes_follow_api_allow(loopback_network: None) -> None:
    async with running_site("cgminer", miners=1) as site:
        miner = site.miners[0]
        miner.options.api_allow = "R:127.0.0.0/8,W:10.0.0/24"
        denied = status(await rpc(miner, "ascdisable", "0"))
        assert (denied["STATUS"], denied["Code"]) == ("E", 45)
        assert (await rpc(miner, "check", "switchpool"))["CHECK"][0] == {
            "Exists": "Y",
            "Access": "N",
        }
        assert status(await rpc(miner, "privileged"))["Code"] == 45
        assert status(await rpc(miner, "summary"))["Code"] == 11
        assert miner.board_enabled == [True, True, True]
        miner.options.api_allow = "W:0/0"
        assert status(await rpc(miner, "privileged"))["Code"] == 46


async def test_an_address_outside_api_allow_gets_no_reply(loopback_network: None) -> None:
    async with running_site("cgminer", miners=1) as site:
        miner = site.miners[0]
        miner.options.api_allow = "W:10.0.0.0/8"
        assert await closed_without_reply(miner.host, miner.api_port, b'{"command": "version"}')
        miner.options.api_allow = "R:127.0.0.1"
        assert status(await rpc(miner, "version"))["Code"] == 22


async def test_wrong_credentials_mean_no_write_access(loopback_network: None) -> None:
    async with running_site("cgminer", miners=1) as site:
        miner = site.miners[0]
        assert site.fleet is not None
        await site.fleet.set_fault(miner, "wrong_credentials", True)
        assert status(await rpc(miner, "switchpool", "1"))["Code"] == 45
        await site.fleet.set_fault(miner, "wrong_credentials", False)
        assert status(await rpc(miner, "switchpool", "1"))["Code"] == 27


async def test_one_client_at_a_time(loopback_network: None) -> None:
    async with running_site("cgminer", miners=1) as site:
        miner = site.miners[0]
        assert miner.options.single_client
        # A client that connects and says nothing holds the API thread.
        _, silent = await asyncio.open_connection(miner.host, miner.api_port)
        await asyncio.sleep(0.05)
        waiting = asyncio.ensure_future(rpc(miner, "version"))
        await asyncio.sleep(0.5)
        assert not waiting.done()
        silent.close()
        reply = await asyncio.wait_for(waiting, TIMEOUT)
        assert status(reply)["Code"] == 22
        # Several callers at once are served one after the other, none lost.
        replies = await asyncio.gather(*(rpc(miner, "summary") for _ in range(5)))
        assert [status(r)["Code"] for r in replies] == [11] * 5


async def test_clients_waiting_are_served_while_earlier_replies_travel(
    loopback_network: None,
) -> None:
    async with running_site("cgminer", miners=1) as site:
        miner = site.miners[0]
        assert site.fleet is not None
        (server,) = site.fleet._servers[miner.index]
        # Replies that take a minute to arrive: none comes during the test.
        miner.env.latency_ms = 60_000
        requests = [asyncio.ensure_future(rpc(miner, "summary")) for _ in range(3)]
        try:
            # Every request is read and answered (busy) while the first reply still travels:
            # cgminer's API thread is busy for milliseconds per client, not a round trip.
            async def all_answered() -> bool:
                return sum(c.busy for c in server.connections) == 3

            await poll_until(all_answered, TIMEOUT, "three requests answered", interval=0.01)
            assert server.serving is None
            assert not server.waiting
        finally:
            for request in requests:
                request.cancel()
            await asyncio.gather(*requests, return_exceptions=True)


async def test_concurrent_clients_when_single_client_is_off(loopback_network: None) -> None:
    async with running_site("cgminer", miners=1) as site:
        miner = site.miners[0]
        miner.options.single_client = False
        _, silent = await asyncio.open_connection(miner.host, miner.api_port)
        try:
            assert status(await asyncio.wait_for(rpc(miner, "version"), 1.0))["Code"] == 22
        finally:
            silent.close()


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


async def test_numeric_json_parameters(loopback_network: None) -> None:
    async with running_site("cgminer", miners=1) as site:
        miner = site.miners[0]
        request = {"command": "switchpool", "parameter": 1}
        assert status(await rpc_raw(miner, json.dumps(request).encode()))["Code"] == 27


async def test_a_malformed_api_allow_lets_nobody_in_and_says_why(
    loopback_network: None, caplog: pytest.LogCaptureFixture
) -> None:
    async with running_site("cgminer", miners=1) as site:
        miner = site.miners[0]
        miner.options.api_allow = "W:not-an-address"
        assert await closed_without_reply(miner.host, miner.api_port, b'{"command": "version"}')
    assert "api_allow 'W:not-an-address'" in caplog.text
