"""LuxOS: cgminer-style JSON on 4028 with one session per miner and curtail sleep/wakeup."""

from __future__ import annotations

import pytest

from tests.simulator.test_miners_helpers import (
    assert_same_shape,
    rpc,
    rpc_raw,
    running_site,
    status,
    wait_for,
)


@pytest.mark.parametrize(
    ("command", "path"),
    [
        ("config", "luxminer/v1/config.json"),
        ("devs", "luxminer/v1/devs.json"),
        ("events", "luxminer/v1/events.json"),
        ("fans", "luxminer/v1/fans.json"),
        ("pools", "luxminer/v1/pools.json"),
        ("power", "luxminer/v1/power.json"),
        ("stats", "luxminer/v1/stats.json"),
        ("summary", "luxminer/v1/summary.json"),
        ("temps", "luxminer/v1/temps.json"),
        ("version", "luxminer/v1/version.json"),
    ],
)
async def test_replies_have_the_firmware_shape(
    loopback_network: None, command: str, path: str
) -> None:
    async with running_site("luxos", miners=1) as site:
        assert_same_shape(await rpc(site.miners[0], command), path)


async def test_curtail_sleep_and_wakeup(loopback_network: None) -> None:
    async with running_site("luxos", miners=1) as site:
        miner = site.miners[0]
        logon = await rpc(miner, "logon")
        sid = logon["SESSION"][0]["SessionID"]
        assert sid
        assert (await rpc(miner, "session"))["SESSION"][0]["SessionID"] == sid

        reply = await rpc(miner, "curtail", f"{sid},sleep")
        assert (status(reply)["Code"], reply["CURTAIL"][0]["Action"]) == (335, "sleep")
        assert (await rpc(miner, "config"))["CONFIG"][0]["CurtailMode"] == "Sleep"
        assert (await rpc(miner, "summary"))["SUMMARY"][0]["GHS 5s"] == 0
        assert miner.state == "sleeping"
        power = await rpc(miner, "power")
        assert status(power)["Code"] == 311
        # The draw falls to the sleep draw over ~2 s (see test_miners_model.py).
        assert power["POWER"][0]["PSU"] is False
        assert power["POWER"][0]["Watts"] <= 2760 * 1.01

        reply = await rpc(miner, "curtail", f"{sid},wakeup")
        assert reply["CURTAIL"][0]["Action"] == "wakeup"
        assert (await rpc(miner, "config"))["CONFIG"][0]["CurtailMode"] == "None"
        await wait_for(lambda: miner.state == "mining")
        assert (await rpc(miner, "summary"))["SUMMARY"][0]["GHS 5s"] > 100_000
        assert miner.cycles == 1

        assert status(await rpc(miner, "logoff", sid))["STATUS"] == "S"
        assert (await rpc(miner, "session"))["SESSION"][0]["SessionID"] == ""


async def test_one_session_at_a_time(loopback_network: None) -> None:
    async with running_site("luxos", miners=1) as site:
        miner = site.miners[0]
        sid = (await rpc(miner, "logon"))["SESSION"][0]["SessionID"]
        second = await rpc(miner, "logon")
        assert (status(second)["STATUS"], status(second)["Code"]) == ("E", 402)
        assert status(second)["Msg"] == "Another session is active"
        await rpc(miner, "logoff", sid)
        assert status(await rpc(miner, "logon"))["STATUS"] == "S"


async def test_session_is_checked(loopback_network: None) -> None:
    async with running_site("luxos", miners=1) as site:
        miner = site.miners[0]
        sid = (await rpc(miner, "logon"))["SESSION"][0]["SessionID"]
        wrong = await rpc(miner, "curtail", "deadbeef,sleep")
        assert status(wrong)["STATUS"] == "E"
        assert status(await rpc(miner, "curtail"))["STATUS"] == "E"
        bad_action = await rpc(miner, "curtail", f"{sid},nap")
        assert status(bad_action)["STATUS"] == "E"
        assert miner.state == "mining"


async def test_wrong_credentials_leave_the_session_taken(loopback_network: None) -> None:
    async with running_site("luxos", miners=1) as site:
        miner = site.miners[0]
        assert site.fleet is not None
        await site.fleet.set_fault(miner, "wrong_credentials", True)
        assert status(await rpc(miner, "logon"))["Code"] == 402


async def test_pool_commands_need_no_session(loopback_network: None) -> None:
    async with running_site("luxos", miners=1) as site:
        miner = site.miners[0]
        added = await rpc(miner, "addpool", "stratum+tcp://127.0.0.1:5,w.1,x")
        assert status(added)["Code"] == 55
        switched = await rpc(miner, "switchpool", "2")
        assert status(switched)["Code"] == 27
        assert miner.pool == "stratum+tcp://127.0.0.1:5"
        pools = (await rpc(miner, "pools"))["POOLS"]
        assert pools[2]["URL"] == "stratum+tcp://127.0.0.1:5"
        assert status(await rpc(miner, "switchpool", "9"))["Code"] == 26


async def test_bad_input(loopback_network: None) -> None:
    async with running_site("luxos", miners=1) as site:
        miner = site.miners[0]
        assert status(await rpc_raw(miner, b"{]"))["Code"] == 23
        assert status(await rpc(miner, "ascdisable", "0"))["Code"] == 14
        assert status(await rpc(miner, "summary"))["Code"] == 11


async def test_profiles_have_the_firmware_shape(loopback_network: None) -> None:
    async with running_site("luxos", miners=1) as site:
        reply = await rpc(site.miners[0], "profiles")
        assert_same_shape(reply, "luxminer/v1/profiles.json")
        assert (status(reply)["Code"], status(reply)["Msg"]) == (323, "List profiles")
        assert sum(profile["IsTuned"] for profile in reply["PROFILES"]) == 1


async def test_groups_tempctrl_devdetails(loopback_network: None) -> None:
    async with running_site("luxos", miners=1) as site:
        miner = site.miners[0]
        groups = (await rpc(miner, "groups"))["GROUPS"]
        assert [pool["URL"] for pool in groups[0]["Pools"]] == [p.url for p in miner.pools]
        tempctrl = (await rpc(miner, "tempctrl"))["TEMPCTRL"][0]
        assert tempctrl["Target"] < tempctrl["Hot"] < tempctrl["Dangerous"]
        details = await rpc(miner, "devdetails")
        assert status(details)["Code"] == 69
        assert [d["Model"] for d in details["DEVDETAILS"]] == [miner.model] * 3


async def test_a_join_answers_each_part(loopback_network: None) -> None:
    async with running_site("luxos", miners=1) as site:
        reply = await rpc_raw(site.miners[0], b'{"command": "summary+power+devdetails"}')
        assert status(reply["summary"][0])["Code"] == 11
        assert status(reply["devdetails"][0])["Code"] == 69
        # power is no report cgminer joins: that part alone is refused.
        assert (status(reply["power"][0])["STATUS"], status(reply["power"][0])["Code"]) == (
            "E",
            45,
        )
