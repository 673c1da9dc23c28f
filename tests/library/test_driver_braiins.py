"""Braiins OS REST driver against a real token-checking test server on loopback."""

from __future__ import annotations

from collections.abc import AsyncIterator
import time

import aiohttp
import pytest

from custom_components.bitcoin_mining.miningsite.exceptions import (
    CommandRejectedError,
    DeviceAuthError,
    DeviceConnectionError,
    DeviceProtocolError,
    DeviceTimeoutError,
    UnsupportedError,
)
from custom_components.bitcoin_mining.miningsite.miners.base import (
    Credentials,
    MinerEndpoint,
    PoolConfig,
)
from custom_components.bitcoin_mining.miningsite.miners.braiins import (
    SLOW_MAX_AGE_S,
    BraiinsDriver,
)
from tests.support.modbus_meter import free_port
from tests.support.web_firmware import (
    BRAIINS_FIXTURES,
    BadHttpServer,
    BraiinsServer,
    load_fixture,
)


@pytest.fixture
async def session(loopback_network: None) -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client:
        yield client


@pytest.fixture
async def server(loopback_network: None) -> AsyncIterator[BraiinsServer]:
    async with BraiinsServer() as miner:
        yield miner


def driver_for(
    server: BraiinsServer | BadHttpServer,
    session: aiohttp.ClientSession,
    credentials: Credentials | None = None,
    timeout: float = 2.0,
) -> BraiinsDriver:
    endpoint = MinerEndpoint(server.host, server.port)
    return BraiinsDriver(endpoint, credentials, session=session, timeout=timeout)


async def test_identify_from_miner_details(
    server: BraiinsServer, session: aiohttp.ClientSession
) -> None:
    identity = await driver_for(server, session).identify()
    assert identity.family == "braiins"
    assert identity.model == "Antminer S21 Pro"
    assert identity.firmware == "2026-04-14-0-912d084c-26.04-plus"
    assert identity.mac == "02:8F:77:EC:E7:E0"
    assert identity.serial == "THQGFKUBDJIAH0E9G"
    assert identity.hostname == "Antminer"
    assert server.counts["POST /auth/login"] == 1


async def test_model_falls_back_to_the_identity_name(
    server: BraiinsServer, session: aiohttp.ClientSession
) -> None:
    del server.data["miner_details"]["miner_identity"]["miner_model"]
    assert (await driver_for(server, session).identify()).model == "Antminer S21 Pro"


async def test_status_from_every_endpoint(
    server: BraiinsServer, session: aiohttp.ClientSession
) -> None:
    status = await driver_for(server, session).read_status()
    assert status.mining is True
    assert status.hashrate_ths == pytest.approx(248.187, abs=1e-3)
    assert status.nominal_hashrate_ths == pytest.approx(234.0)
    assert status.power_w == 3480
    assert status.power_estimated is False
    assert status.board_temperatures_c == (50.375, 48.5625, 48.5)
    assert status.temperature_c == 65.375
    assert status.fan_rpm == (5943, 5943, 5943, 5973)
    assert status.uptime_s == 7039
    assert (status.accepted_shares, status.rejected_shares) == (848, 0)
    assert status.mac == "02:8F:77:EC:E7:E0"
    assert [(p.url, p.active, p.alive, p.priority) for p in status.pools] == [
        ("stratum+tcp://example.pool.com:3333", True, True, 0),
        ("stratum+tcp://example.pool2.com:3333", False, True, 1),
    ]
    assert status.pools[0].accepted == 848
    assert status.pools[0].user == "asic_rs.test"
    # The newest distinct messages of the log, newest first.
    assert 1 <= len(status.errors) <= 10
    assert status.errors[0] == 'Failed to resolve ("a830bcc3.bos.braiins.com", 3336)'
    assert len(set(status.errors)) == len(status.errors)
    # One login serves the six concurrent requests.
    assert server.counts["POST /auth/login"] == 1


async def test_the_error_log_is_read_once_a_minute(
    server: BraiinsServer, session: aiohttp.ClientSession
) -> None:
    driver = driver_for(server, session)
    first = await driver.read_status()
    server.data["miner_errors"]["errors"].append({"message": "new trouble"})
    second = await driver.read_status()
    assert server.counts["GET /miner/errors"] == 1
    assert second.errors == first.errors
    driver._errors_at = (driver._errors_at or 0) - 61  # a minute later
    third = await driver.read_status()
    assert server.counts["GET /miner/errors"] == 2
    assert third.errors[0] == "new trouble"
    assert server.counts["GET /miner/details"] == 3


def _requests(server: BraiinsServer) -> int:
    return sum(count for what, count in server.counts.items() if what != "POST /auth/login")


async def test_slow_parts_are_read_every_30_s_the_rest_every_poll(
    server: BraiinsServer, session: aiohttp.ClientSession
) -> None:
    driver = driver_for(server, session)
    first = await driver.read_status()
    assert _requests(server) == 6
    server.data["cooling_state"]["fans"][0]["rpm"] = 1234
    server.data["miner_stats"]["power_stats"]["approximated_consumption"]["watt"] = 3000
    second = await driver.read_status()
    # Two requests: details and stats. Power is fresh, the fans are the cached ones.
    assert _requests(server) == 8
    assert second.power_w == 3000
    assert second.fan_rpm == first.fan_rpm
    assert second.board_temperatures_c == first.board_temperatures_c
    assert second.temperature_c == first.temperature_c
    assert second.pools == first.pools
    assert second.errors == first.errors
    assert sorted(max_age for max_age in SLOW_MAX_AGE_S.values()) == [30.0, 30.0, 30.0]
    for path, (at, reply) in list(driver._slow.items()):
        driver._slow[path] = (at - 30, reply)  # 30 s later
    third = await driver.read_status()
    assert third.fan_rpm[0] == 1234
    for path in ("/miner/hw/hashboards", "/cooling/state", "/pools"):
        assert server.counts[f"GET {path}"] == 2, path
    assert server.counts["GET /miner/details"] == server.counts["GET /miner/stats"] == 3
    assert server.counts["GET /miner/errors"] == 1  # a minute, not 30 s


async def test_the_first_refresh_is_spread_over_the_second_half_of_the_age(
    server: BraiinsServer, session: aiohttp.ClientSession
) -> None:
    drivers = [driver_for(server, session) for _ in range(20)]
    reads: list[tuple[float, float]] = []
    for driver in drivers:
        before = time.monotonic()
        await driver.read_status()
        reads.append((before, time.monotonic()))
    # A cold read counts as 0-50 % of its max age old (30 s), a different share per driver.
    stamps = [driver._slow["/cooling/state"][0] for driver in drivers]
    assert all(before - 15 < at <= after for at, (before, after) in zip(stamps, reads, strict=True))
    assert len({round(at - before, 3) for at, (before, _) in zip(stamps, reads, strict=True)}) > 1
    # Refreshed reads are stamped with their own time.
    driver = drivers[0]
    at, reply = driver._slow["/cooling/state"]
    driver._slow["/cooling/state"] = (at - 30, reply)
    before = time.monotonic()
    await driver.read_status()
    assert before <= driver._slow["/cooling/state"][0] <= time.monotonic()


async def test_mining_state_hashrate_and_power_are_fresh_every_poll(
    server: BraiinsServer, session: aiohttp.ClientSession
) -> None:
    driver = driver_for(server, session)
    hashing = await driver.read_status()
    assert hashing.mining is True
    assert hashing.hashrate_ths
    await driver.stop_mining()
    paused = await driver.read_status()
    assert paused.mining is False
    assert paused.hashrate_ths == 0.0
    assert paused.power_w == 25
    await driver.start_mining()
    assert (await driver.read_status()).hashrate_ths == hashing.hashrate_ths
    assert server.counts["GET /cooling/state"] == 1


async def test_pools_are_read_again_right_after_a_pool_command(
    server: BraiinsServer, session: aiohttp.ClientSession
) -> None:
    driver = driver_for(server, session)
    before = await driver.read_status()
    await driver.switch_pool(1)
    reads = server.counts["GET /pools"]
    after = await driver.read_status()
    assert server.counts["GET /pools"] == reads + 1
    assert after.pools[0].url == before.pools[1].url
    await driver.read_status()
    assert server.counts["GET /pools"] == reads + 1  # then cached again
    server.passwords.clear()  # a refused write: still read again, it may have half-happened
    with pytest.raises(CommandRejectedError):
        await driver.switch_pool(1)
    reads = server.counts["GET /pools"]
    await driver.read_status()
    assert server.counts["GET /pools"] == reads + 1


async def test_a_failed_slow_read_is_raised_and_retried_next_poll(
    server: BraiinsServer, session: aiohttp.ClientSession
) -> None:
    driver = driver_for(server, session)
    server.data["cooling_state"] = ["not", "an", "object"]
    with pytest.raises(DeviceProtocolError, match="cooling/state: not a JSON object"):
        await driver.read_status()
    server.data["cooling_state"] = load_fixture(BRAIINS_FIXTURES, "cooling_state")
    status = await driver.read_status()
    assert status.fan_rpm
    assert server.counts["GET /cooling/state"] == 2


async def test_pause_and_resume_change_the_state(
    server: BraiinsServer, session: aiohttp.ClientSession
) -> None:
    driver = driver_for(server, session)
    await driver.stop_mining()
    assert server.paused
    status = await driver.read_status()
    assert status.mining is False
    assert status.hashrate_ths == 0.0
    await driver.start_mining()
    assert not server.paused
    assert (await driver.read_status()).mining is True
    assert server.counts["PUT /actions/pause"] == server.counts["PUT /actions/resume"] == 1


async def test_read_mining_asks_only_the_details(
    server: BraiinsServer, session: aiohttp.ClientSession
) -> None:
    driver = driver_for(server, session)
    assert await driver.read_mining() is True
    server.data["miner_details"]["status"] = 3
    assert await driver.read_mining() is False
    assert server.counts["GET /miner/details"] == 2
    assert server.counts["GET /miner/stats"] == 0
    del server.data["miner_details"]["status"]
    with pytest.raises(DeviceProtocolError, match="no status"):
        await driver.read_mining()


async def test_a_refused_action_is_command_rejected(
    server: BraiinsServer, session: aiohttp.ClientSession
) -> None:
    server.refuse_actions = True
    with pytest.raises(CommandRejectedError, match="refused to pause"):
        await driver_for(server, session).stop_mining()
    assert not server.paused


async def test_an_expired_token_logs_in_again_once(
    server: BraiinsServer, session: aiohttp.ClientSession
) -> None:
    driver = driver_for(server, session)
    await driver.identify()
    server.expire_tokens()
    assert (await driver.identify()).serial == "THQGFKUBDJIAH0E9G"
    assert server.counts["POST /auth/login"] == 2
    assert server.counts["GET /miner/details"] == 3  # the refused one, then the retry


async def test_wrong_password_is_an_auth_error(
    server: BraiinsServer, session: aiohttp.ClientSession
) -> None:
    driver = driver_for(server, session, Credentials("root", "nope"))
    with pytest.raises(DeviceAuthError, match="refused user 'root'"):
        await driver.read_status()
    with pytest.raises(DeviceAuthError):
        await driver.stop_mining()
    assert not server.paused


async def test_a_token_refused_right_after_login_is_an_auth_error(
    server: BraiinsServer, session: aiohttp.ClientSession
) -> None:
    driver = driver_for(server, session)
    await driver.identify()
    # Every token the server hands out is refused at once.
    server.tokens = _Forgetful()
    with pytest.raises(DeviceAuthError, match="HTTP 401"):
        await driver.identify()


class _Forgetful(set[str]):
    def add(self, element: str) -> None:
        pass


async def test_set_pools_puts_one_group(
    server: BraiinsServer, session: aiohttp.ClientSession
) -> None:
    driver = driver_for(server, session)
    await driver.set_pools(
        [PoolConfig("stratum+tcp://a:3333", "w.1", "p1"), PoolConfig("stratum+tcp://b:3333", "w.2")]
    )
    assert server.put_pools[-1] == [
        {
            "name": "Default",
            "pools": [
                {"url": "stratum+tcp://a:3333", "user": "w.1", "password": "p1", "enabled": True},
                {"url": "stratum+tcp://b:3333", "user": "w.2", "password": "x", "enabled": True},
            ],
        }
    ]
    status = await driver.read_status()
    assert [p.url for p in status.pools] == ["stratum+tcp://a:3333", "stratum+tcp://b:3333"]
    with pytest.raises(ValueError, match="1 to 3"):
        await driver.set_pools([])


async def test_set_pools_sends_a_pool_already_there_by_its_uid(
    server: BraiinsServer, session: aiohttp.ClientSession
) -> None:
    # The operator's password is not readable: the pool goes by uid, the firmware keeps it.
    server.passwords["r7ZTdqnV8s8JtY82"] = "operator-secret"
    driver = driver_for(server, session)
    await driver.set_pools(
        [
            PoolConfig("stratum+tcp://Example.Pool.com:3333/", "asic_rs.test"),
            PoolConfig("stratum+tcp://127.0.0.1:3333", "site.local", "lp"),
        ]
    )
    sent = server.put_pools[-1][0]["pools"]
    assert sent[0] == {
        "url": "stratum+tcp://Example.Pool.com:3333/",
        "user": "asic_rs.test",
        "uid": "r7ZTdqnV8s8JtY82",
        "enabled": True,
    }
    assert sent[1]["password"] == "lp"
    assert "uid" not in sent[1]
    assert server.passwords["r7ZTdqnV8s8JtY82"] == "operator-secret"
    status = await driver.read_status()
    assert [p.user for p in status.pools] == ["asic_rs.test", "site.local"]


async def test_switch_pool_reorders_keeping_the_stored_passwords(
    server: BraiinsServer, session: aiohttp.ClientSession
) -> None:
    server.passwords["voc1A31EwtMcyFzC"] = "second-secret"
    driver = driver_for(server, session)
    await driver.switch_pool(1)
    sent = server.put_pools[-1][0]["pools"]
    assert [p["uid"] for p in sent] == ["voc1A31EwtMcyFzC", "r7ZTdqnV8s8JtY82"]
    assert all("password" not in p for p in sent)
    assert server.passwords["voc1A31EwtMcyFzC"] == "second-secret"
    status = await driver.read_status()
    assert status.pools[0].url == "stratum+tcp://example.pool2.com:3333"
    with pytest.raises(ValueError, match="pool 2 is not configured"):
        await driver.switch_pool(2)


async def test_a_rejected_pool_write_is_command_rejected(
    server: BraiinsServer, session: aiohttp.ClientSession
) -> None:
    server.passwords.clear()  # the uids the driver sends are unknown now
    with pytest.raises(CommandRejectedError, match="HTTP 400"):
        await driver_for(server, session).switch_pool(1)


async def test_details_without_status_is_a_protocol_error(
    server: BraiinsServer, session: aiohttp.ClientSession
) -> None:
    del server.data["miner_details"]["status"]
    with pytest.raises(DeviceProtocolError, match="no status"):
        await driver_for(server, session).read_status()


async def test_details_that_is_not_an_object_is_a_protocol_error(
    server: BraiinsServer, session: aiohttp.ClientSession
) -> None:
    server.data["miner_details"] = ["not", "an", "object"]
    with pytest.raises(DeviceProtocolError, match="not a JSON object"):
        await driver_for(server, session).identify()


async def test_a_missing_endpoint_is_unsupported(
    server: BraiinsServer, session: aiohttp.ClientSession
) -> None:
    driver = driver_for(server, session)
    with pytest.raises(UnsupportedError, match="HTTP 404"):
        await driver._call("GET", "/no/such/thing")


async def test_a_silent_server_times_out(
    server: BraiinsServer, session: aiohttp.ClientSession
) -> None:
    server.silent = True
    with pytest.raises(DeviceTimeoutError, match="within 0.3 s"):
        await driver_for(server, session, timeout=0.3).read_status()


@pytest.mark.parametrize(
    ("fault", "error"),
    [
        ("garbage", DeviceProtocolError),
        ("truncated", DeviceConnectionError),
        ("oversized", DeviceProtocolError),
        ("not_json", DeviceProtocolError),
        ("reset", DeviceConnectionError),
        ("silent", DeviceTimeoutError),
    ],
)
async def test_faults_give_library_errors(
    loopback_network: None,
    session: aiohttp.ClientSession,
    fault: str,
    error: type[Exception],
) -> None:
    bad = BadHttpServer(fault)
    await bad.start()
    # A short timeout only where it is the point: the others must not race it.
    timeout = 0.3 if fault == "silent" else 5.0
    try:
        with pytest.raises(error):
            await driver_for(bad, session, timeout=timeout).read_status()
    finally:
        await bad.stop()
    assert bad.requests >= 1


async def test_refused_connection(loopback_network: None, session: aiohttp.ClientSession) -> None:
    driver = BraiinsDriver(MinerEndpoint("127.0.0.1", free_port()), session=session, timeout=1)
    with pytest.raises(DeviceConnectionError):
        await driver.identify()


async def test_close_forgets_the_token(
    server: BraiinsServer, session: aiohttp.ClientSession
) -> None:
    driver = driver_for(server, session)
    await driver.identify()
    await driver.close()
    await driver.identify()
    assert server.counts["POST /auth/login"] == 2


# -- against the site simulator (an independent implementation of the firmware) --


async def test_against_the_simulator(loopback_network: None) -> None:
    from simulator import Site, SiteConfig

    config = SiteConfig(
        miners=2,
        mix="braiins=1",
        base_port=0,
        latency_ms=0,
        meter=None,
        control=None,
        pool="127.0.0.1:0",
    )
    async with Site(config) as site, aiohttp.ClientSession() as client:
        miner = site.miners[0]
        assert miner.family == "braiins"
        driver = BraiinsDriver(MinerEndpoint(miner.host, miner.api_port), session=client)
        identity = await driver.identify()
        assert identity.mac == miner.mac
        status = await driver.read_status()
        assert status.mining is True
        assert status.mac == miner.mac
        assert status.power_w is not None
        assert status.power_w > 1000
        assert not status.power_estimated
        await driver.stop_mining()
        assert miner.state == "sleeping"
        assert (await driver.read_status()).mining is False
        await driver.start_mining()
        assert miner.state in ("starting", "mining")
        assert (await driver.read_status()).mining is True
        await driver.switch_pool(1)
        switched = await driver.read_status()
        assert switched.pools[0].url == status.pools[1].url


async def test_every_fixture_is_served_and_parsed(
    server: BraiinsServer, session: aiohttp.ClientSession
) -> None:
    driver = driver_for(server, session)
    paths = {
        "miner_details": "/miner/details",
        "miner_stats": "/miner/stats",
        "miner_hw_hashboards": "/miner/hw/hashboards",
        "cooling_state": "/cooling/state",
        "pools": "/pools",
        "miner_errors": "/miner/errors",
        "version": "/version",
        "configuration_miner": "/configuration/miner",
        "performance_tuner_state": "/performance/tuner-state",
        "actions_locate": "/actions/locate",
        "network": "/network/configuration",
    }
    files = {path.stem for path in BRAIINS_FIXTURES.glob("*.json")}
    assert files == set(paths), "a fixture without a route"
    for name, path in paths.items():
        assert await driver.query(path) == load_fixture(BRAIINS_FIXTURES, name), name
    tuner = await driver.query("/configuration/miner")
    assert tuner["tuner"]["power_target"]["watt"] == 3500
    assert await driver.query("/actions/locate") is False


async def test_numeric_strings_count_and_nan_does_not(
    server: BraiinsServer, session: aiohttp.ClientSession
) -> None:
    stats = server.data["miner_stats"]
    stats["power_stats"]["approximated_consumption"]["watt"] = "3480"
    stats["pool_stats"]["accepted_shares"] = "NaN"
    status = await driver_for(server, session).read_status()
    assert status.power_w == 3480.0
    assert status.accepted_shares is None
