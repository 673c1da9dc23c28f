"""The LuxOS driver against a real server holding the LuxOS replies, sessions and curtail."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
import logging

import pytest

from custom_components.bitcoin_mining.miningsite.exceptions import (
    CommandNotConfirmedError,
    CommandRejectedError,
    DeviceAuthError,
    DeviceConnectionError,
    DeviceProtocolError,
    DeviceTimeoutError,
)
from custom_components.bitcoin_mining.miningsite.miners.base import MinerEndpoint, PoolConfig
from custom_components.bitcoin_mining.miningsite.miners.luxos import (
    EVENTS_MAX_AGE_S,
    SESSION_RENEW_S,
    LuxosDriver,
)
from custom_components.bitcoin_mining.miningsite.miners.rpc import ApiAccessRefusedError
from tests.support.firmware_servers import (
    CGMINER_JOINABLE,
    Fault,
    LuxosServer,
    load_fixtures,
    simulated_miner,
)
from tests.support.modbus_meter import free_port

pytestmark = pytest.mark.usefixtures("loopback_network")

READS = ["config+summary+pools+devs", "events", "fans", "power", "temps"]


# LUXminer joins cgminer's reports; the driver must also cope with a build that does not.
@pytest.fixture(params=[CGMINER_JOINABLE, None], ids=["joins-accepted", "joins-refused"])
async def server(request: pytest.FixtureRequest) -> AsyncIterator[LuxosServer]:
    async with LuxosServer(joinable=request.param) as running:
        yield running


def driver_for(server: LuxosServer, timeout: float = 1.0) -> LuxosDriver:
    return LuxosDriver(MinerEndpoint("127.0.0.1", server.port), timeout=timeout)


async def test_every_fixture_is_served_and_parsed(server: LuxosServer) -> None:
    driver = driver_for(server)
    fixtures = load_fixtures("luxminer/v1")
    for name, expected in fixtures.items():
        command, _, parameter = name.partition("_")
        assert await driver.query(command, parameter or None) == expected, name
    chips = await driver.query("healthchipget", "1")
    assert chips["CHIPS"][0]["Board"] == 1
    voltage = await driver.query("voltageget", "2")
    assert voltage["VOLTAGE"][0]["Board"] == 2


async def test_reads_the_luxos_replies(server: LuxosServer) -> None:
    status = await driver_for(server).read_status()
    assert status.mining is True  # CurtailMode "None"
    assert status.hashrate_ths == pytest.approx(60.82948)  # GHS 1m
    assert status.power_w == 1051.0
    assert status.power_estimated is False
    assert status.temperature_c == 47.0
    assert status.board_temperatures_c == (47.0, 47.0, 47.0)
    assert status.fan_rpm == (1920, 1920, 2340, 2340)
    assert status.uptime_s == 3453
    assert status.accepted_shares == 1483
    assert status.rejected_shares == 1
    assert status.nominal_hashrate_ths == pytest.approx(121.8)  # NameplateTHS
    assert status.mac == "62:F7:5E:B7:10:46"
    assert status.errors == (
        "NOPIC_PROTECTION: Miner shutdown due to NOPIC protection.",
        "REBOOT_NOT_HASHING: Board reboot due to it not hashing.",
    )
    assert len(status.pools) == 4
    assert [pool.alive for pool in status.pools] == [True, False, True, False]
    assert status.pools[2].user == "asic-rs.user2"


async def test_identify_luxos(server: LuxosServer) -> None:
    identity = await driver_for(server).identify()
    assert identity.family == "luxos"
    assert identity.model == "Antminer S19k Pro"
    assert identity.firmware == "2025.4.8.220305-57b389c7"
    assert identity.mac == "62:F7:5E:B7:10:46"
    assert identity.serial == "JYZZB0UBDJABF06RB"
    assert identity.hostname == "UrlacherS19k"


async def test_reads_groups_profiles_tempctrl_and_devdetails(server: LuxosServer) -> None:
    driver = driver_for(server)
    for command, name in (
        ("groups", "GROUPS"),
        ("profiles", "PROFILES"),
        ("tempctrl", "TEMPCTRL"),
        ("devdetails", "DEVDETAILS"),
    ):
        reply = await driver.query(command)
        assert reply[name], command
    assert (await driver.query("tempctrl"))["TEMPCTRL"][0]["Target"] == 75
    # A CONFIG without a model: devdetails names it.
    del server.config["Model"]
    assert (await driver_for(server).identify()).model == "Antminer S19k Pro"
    assert "devdetails" in server.commands()


async def test_the_current_pool_of_two_connected(server: LuxosServer) -> None:
    # The real reply shows "Stratum Active" on pools 0 and 2: pool 0 is highest in priority.
    status = await driver_for(server).read_status()
    assert [pool.active for pool in status.pools] == [True, False, False, False]


async def test_sleep_and_wake_in_a_session(server: LuxosServer) -> None:
    driver = driver_for(server)
    await driver.stop_mining()
    # The session stays open for the next command: a shed is one round trip.
    assert server.commands() == ["logon", "curtail"]
    assert server.requests[1]["parameter"].endswith(",sleep")
    kept = server.session
    assert kept is not None
    status = await driver.read_status()
    assert status.mining is False
    assert status.power_w == 24.0
    server.requests.clear()
    await driver.start_mining()
    assert server.commands() == ["curtail"]
    assert server.requests[-1]["parameter"] == f"{kept},wakeup"
    assert (await driver.read_status()).mining is True
    assert server.sessions_opened == 1
    server.requests.clear()
    await driver.close()
    assert server.commands() == ["logoff"]
    assert server.requests[0]["parameter"] == kept
    assert server.session is None  # logged off
    await driver.close()  # nothing left to log off
    assert server.commands() == ["logoff"]


async def test_an_expired_session_is_opened_again_once(server: LuxosServer) -> None:
    driver = driver_for(server)
    await driver.stop_mining()
    expired = server.session
    server.session = None  # the miner forgot it (timed out, or restarted)
    server.requests.clear()
    await driver.start_mining()
    # The refused id is released (best effort), a new one opened, the curtail retried.
    assert server.commands() == ["curtail", "logoff", "logon", "curtail"]
    assert server.requests[0]["parameter"] == f"{expired},wakeup"
    assert server.session not in (None, expired)
    assert server.requests[-1]["parameter"] == f"{server.session},wakeup"
    assert server.config["CurtailMode"] == "None"
    assert server.sessions_opened == 2
    server.requests.clear()
    await driver.stop_mining()  # the new session is kept in turn
    assert server.commands() == ["curtail"]
    await driver.close()
    assert server.session is None


async def test_a_session_refused_again_after_a_new_logon_is_an_auth_error(
    server: LuxosServer,
) -> None:
    driver = driver_for(server)
    await driver.stop_mining()
    server.overrides["curtail"] = server.status("E", 403, "Invalid session id")
    server.requests.clear()
    with pytest.raises(DeviceAuthError, match="Invalid session id"):
        await driver.start_mining()
    # One new logon and one retry, no more; both refused ids are released.
    assert server.commands() == ["curtail", "logoff", "logon", "curtail", "logoff"]
    assert server.session is None
    server.overrides.clear()
    server.requests.clear()
    await driver.start_mining()  # nothing kept: a fresh logon
    assert server.commands() == ["logon", "curtail"]
    await driver.close()


async def test_concurrent_commands_share_one_logon(server: LuxosServer) -> None:
    driver = driver_for(server)
    await asyncio.gather(driver.stop_mining(), driver.stop_mining())
    assert server.commands().count("logon") == 1
    assert server.commands().count("curtail") == 2
    await driver.close()


async def test_a_session_left_open_is_used_not_closed(server: LuxosServer) -> None:
    server.session = "5e55104a"
    driver = driver_for(server)
    await driver.stop_mining()
    assert server.commands() == ["logon", "session", "curtail"]
    assert server.requests[-1]["parameter"] == "5e55104a,sleep"
    assert server.session == "5e55104a"
    assert server.sessions_opened == 0
    # Borrowed, not kept: the next command asks again, and close() leaves it open.
    await driver.start_mining()
    assert server.commands()[3:] == ["logon", "session", "curtail"]
    await driver.close()
    assert "logoff" not in server.commands()
    assert server.session == "5e55104a"


async def test_an_active_session_nobody_names_is_an_auth_error(server: LuxosServer) -> None:
    server.session = "5e55104a"
    server.overrides["session"] = {"STATUS": [{"STATUS": "S"}], "SESSION": [{"SessionID": ""}]}
    with pytest.raises(DeviceAuthError, match="another session"):
        await driver_for(server).stop_mining()


async def test_a_refused_logon_is_an_auth_error() -> None:
    async with LuxosServer(refuse_logon=True) as server:
        with pytest.raises(DeviceAuthError, match=rf"127\.0\.0\.1:{server.port} refused logon"):
            await driver_for(server).stop_mining()
        assert "curtail" not in server.commands()


async def test_a_logon_without_session_id(server: LuxosServer) -> None:
    server.overrides["logon"] = {"STATUS": [{"STATUS": "S", "Code": 339}], "SESSION": []}
    with pytest.raises(DeviceProtocolError, match="SessionID"):
        await driver_for(server).stop_mining()


async def test_a_curtail_refused_for_its_session(server: LuxosServer) -> None:
    server.overrides["curtail"] = server.status("E", 403, "Invalid session id")
    with pytest.raises(DeviceAuthError, match="Invalid session id"):
        await driver_for(server).stop_mining()
    assert server.session is None  # still logged off


async def test_a_curtail_refused_otherwise_is_a_rejection(server: LuxosServer) -> None:
    server.overrides["curtail"] = server.status("E", 336, "Board is busy")
    with pytest.raises(CommandRejectedError, match=r"curtail.*code 336"):
        await driver_for(server).stop_mining()


async def test_a_failed_logoff_is_reported_not_raised(
    server: LuxosServer, caplog: pytest.LogCaptureFixture
) -> None:
    server.overrides["logoff"] = server.status("E", 403, "Invalid session id")
    driver = driver_for(server)
    with caplog.at_level(logging.WARNING):
        await driver.stop_mining()
        assert "logoff failed" not in caplog.text  # the session is kept, not logged off
        await driver.close()
    assert "logoff failed" in caplog.text
    assert server.config["CurtailMode"] == "Sleep"


async def test_set_pools_replaces_the_four_pools(server: LuxosServer) -> None:
    driver = driver_for(server)
    await driver.set_pools(
        [
            PoolConfig("stratum+tcp://a.example:3333", "site.a1"),
            PoolConfig("stratum+tcp://127.0.0.1:3333", "site.local"),
        ]
    )
    assert "logon" not in server.commands()  # pool commands need no session
    status = await driver.read_status()
    by_priority = sorted(status.pools, key=lambda pool: pool.priority)
    assert [pool.url for pool in by_priority] == [
        "stratum+tcp://a.example:3333",
        "stratum+tcp://127.0.0.1:3333",
    ]
    assert status.active_pool is not None
    assert status.active_pool.user == "site.a1"


async def test_switch_pool(server: LuxosServer) -> None:
    driver = driver_for(server)
    await driver.switch_pool(2)
    status = await driver.read_status()
    assert status.active_pool is not None
    assert status.active_pool.priority == 0
    assert status.active_pool.user == "asic-rs.user2"
    assert status.pools[2].active
    assert [pool.active for pool in status.pools] == [False, False, True, False]


async def test_a_switch_to_a_dead_pool_is_not_confirmed(server: LuxosServer) -> None:
    # Pool 3 is "Dead" in the real reply: cgminer gives it priority and stays where it is.
    with pytest.raises(CommandNotConfirmedError, match=r"not pool 3: the pool is not alive"):
        await driver_for(server).switch_pool(3)


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
    server: LuxosServer, fault: Fault, error: type[Exception]
) -> None:
    server.faults["config"] = fault
    with pytest.raises(error, match=rf"127\.0\.0\.1:{server.port}"):
        await driver_for(server).read_status()
    server.faults = {"logon": fault}
    with pytest.raises(error, match=rf"127\.0\.0\.1:{server.port}"):
        await driver_for(server).stop_mining()


async def test_a_silent_miner_times_out(server: LuxosServer) -> None:
    server.faults["curtail"] = "silent"
    driver = driver_for(server, timeout=0.3)
    # Only catches a driver that never gives up: ten times the timeout.
    async with asyncio.timeout(3):
        with pytest.raises(DeviceTimeoutError, match=r"within 0\.3 s"):
            await driver.stop_mining()
    # The curtail timed out once and was not sent again.
    assert server.commands().count("curtail") <= 1
    # The session is kept, and close() still logs it off.
    assert server.session is not None
    await driver.close()
    assert server.session is None


async def test_a_refused_connection() -> None:
    driver = LuxosDriver(MinerEndpoint("127.0.0.1", free_port()), timeout=1.0)
    with pytest.raises(DeviceConnectionError):
        await driver.identify()


async def test_missing_parts_are_protocol_errors(server: LuxosServer) -> None:
    driver = driver_for(server)
    server.overrides["config"] = {"STATUS": [{"STATUS": "S", "Code": 33}], "CONFIG": [{}]}
    with pytest.raises(DeviceProtocolError, match="no MAC"):
        await driver.identify()
    server.overrides["config"] = {"STATUS": [{"STATUS": "S", "Code": 33}]}
    with pytest.raises(DeviceProtocolError, match="CONFIG section"):
        await driver.read_status()
    server.overrides.clear()
    server.overrides["power"] = {"STATUS": [{"STATUS": "S"}], "POWER": [{"Watts": "n/a"}]}
    server.overrides["temps"] = {"STATUS": [{"STATUS": "S"}], "TEMPS": [{"TopLeft": None}]}
    status = await driver.read_status()
    assert status.power_w is None
    assert status.temperature_c == 47.0


async def test_drives_the_simulated_luxos() -> None:
    async with simulated_miner("luxos") as miner:
        driver = LuxosDriver(MinerEndpoint(miner.host, miner.api_port), timeout=2.0)
        identity = await driver.identify()
        assert identity.family == "luxos"
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


async def test_a_read_is_one_round_trip_of_five_requests() -> None:
    async with LuxosServer() as server:
        driver = driver_for(server, timeout=5.0)
        # All five at once: none is answered before every one has arrived.
        server.in_flight.hold(len(READS))
        status = await driver.read_status()
        assert sorted(server.commands()) == READS
        server.requests.clear()
        server.in_flight.hold(len(READS) - 1)
        assert await driver.read_status() == status
        # The event log is not read again within the minute.
        assert sorted(server.commands()) == [r for r in READS if r != "events"]


async def test_events_are_read_at_most_once_a_minute(server: LuxosServer) -> None:
    driver = driver_for(server)
    assert len((await driver.read_status()).errors) == 2
    server.replies["events"]["EVENTS"] = []
    assert len((await driver.read_status()).errors) == 2  # up to a minute old
    cached = driver._events
    assert cached is not None
    driver._events = (cached[0] - EVENTS_MAX_AGE_S, cached[1])
    assert (await driver.read_status()).errors == ()
    assert server.commands().count("events") == 2


async def test_the_quick_read_back_asks_config_alone(server: LuxosServer) -> None:
    driver = driver_for(server)
    assert await driver.read_mining() is True
    await driver.stop_mining()
    server.requests.clear()
    assert await driver.read_mining() is False
    assert server.commands() == ["config"]
    del server.config["CurtailMode"]  # then the hashrate decides, as in read_status()
    assert await driver.read_mining() is True


async def test_the_session_is_opened_ahead_so_a_shed_is_one_round_trip(
    server: LuxosServer,
) -> None:
    driver = driver_for(server)
    await driver.prepare_writes()
    assert server.commands() == ["logon"]
    await driver.prepare_writes()  # held and young: nothing to do
    assert server.commands() == ["logon"]
    server.requests.clear()
    await driver.stop_mining()
    assert server.commands() == ["curtail"]
    assert server.config["CurtailMode"] == "Sleep"
    await driver.close()
    assert server.session is None


async def test_a_session_long_unused_is_renewed_ahead(server: LuxosServer) -> None:
    driver = driver_for(server)
    await driver.prepare_writes()
    old = server.session
    # As if opened SESSION_RENEW_S ago (the loop's clock is left alone).
    driver._session_used_at -= SESSION_RENEW_S
    server.requests.clear()
    await driver.prepare_writes()
    # Released before the miner lets it expire, and a new one opened.
    assert server.commands() == ["logoff", "logon"]
    assert server.requests[0]["parameter"] == old
    assert server.session not in (None, old)
    server.requests.clear()
    await driver.stop_mining()
    assert server.commands() == ["curtail"]
    await driver.prepare_writes()  # the curtail used it: young again
    assert server.commands() == ["curtail"]
    await driver.close()


async def test_another_session_active_is_left_alone_and_borrowed_by_the_shed(
    server: LuxosServer,
) -> None:
    server.session = "5e55104a"
    driver = driver_for(server)
    await driver.prepare_writes()
    # Someone else's session: neither kept nor closed; the shed borrows it as before.
    assert server.commands() == ["logon", "session"]
    assert server.session == "5e55104a"
    await driver.stop_mining()
    assert server.requests[-1]["parameter"] == "5e55104a,sleep"
    await driver.close()
    assert server.session == "5e55104a"


async def test_a_failed_preparation_does_not_stop_a_shed() -> None:
    async with LuxosServer(refuse_logon=True) as server:
        driver = driver_for(server)
        with pytest.raises(DeviceAuthError):
            await driver.prepare_writes()
        server.refuse_logon = False
        server.requests.clear()
        # Cold, as before any preparation: it logs on itself.
        await driver.stop_mining()
        assert server.commands() == ["logon", "curtail"]
        assert server.config["CurtailMode"] == "Sleep"
        await driver.close()


async def test_a_shed_during_the_preparation_shares_its_logon(server: LuxosServer) -> None:
    driver = driver_for(server)
    await asyncio.gather(driver.prepare_writes(), driver.stop_mining())
    assert server.commands() == ["logon", "curtail"]
    assert server.config["CurtailMode"] == "Sleep"
    await driver.close()
