"""Stock Antminer driver against a real RPC + Digest-protected web server on loopback."""

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
from custom_components.bitcoin_mining.miningsite.miners.antminer import (
    CONF_REFRESH_S,
    AntminerDriver,
    _hashing_stats,
)
from custom_components.bitcoin_mining.miningsite.miners.base import (
    Credentials,
    MinerEndpoint,
    PoolConfig,
)
from custom_components.bitcoin_mining.miningsite.miners.digest import (
    DigestAuth,
    parse_digest_challenge,
)
from tests.support.modbus_meter import free_port
from tests.support.web_firmware import AntminerServer


@pytest.fixture
async def session(loopback_network: None) -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client:
        yield client


@pytest.fixture
async def server(loopback_network: None) -> AsyncIterator[AntminerServer]:
    async with AntminerServer() as miner:
        yield miner


def driver_for(
    server: AntminerServer,
    session: aiohttp.ClientSession,
    credentials: Credentials | None = None,
    timeout: float = 2.0,
) -> AntminerDriver:
    endpoint = MinerEndpoint(server.host, server.port)
    return AntminerDriver(endpoint, credentials, session=session, timeout=timeout)


async def test_identify_reads_system_info_behind_digest(
    server: AntminerServer, session: aiohttp.ClientSession
) -> None:
    identity = await driver_for(server, session).identify()
    assert identity.family == "antminer"
    assert identity.model == "Antminer S21"
    assert identity.firmware == "FR-1.12(251009-S21)"
    # The fixture's MAC is sanitized (not hex): kept as given, upper-cased.
    assert identity.mac == "02:55:97:22:3M:72"
    assert identity.serial == "THQING0BDJAB024NF"
    assert identity.hostname == "Antminer"
    assert server.digest.challenges == 1
    assert server.counts["get_system_info"] == 1


async def test_digest_challenge_is_reused_with_growing_nonce_count(
    server: AntminerServer, session: aiohttp.ClientSession
) -> None:
    driver = driver_for(server, session)
    for _ in range(3):
        await driver.identify()
    await driver.read_status()
    # One challenge for the first request; every later one answers it preemptively
    # (the server refuses a nonce count that does not grow).
    assert server.digest.challenges == 1
    assert server.digest.refused == 0
    assert server.counts["get_system_info"] == 3


async def test_a_new_challenge_is_answered_when_the_server_forgets_its_nonce(
    server: AntminerServer, session: aiohttp.ClientSession
) -> None:
    driver = driver_for(server, session)
    await driver.identify()
    server.digest.nonces.clear()  # e.g. the web server restarted
    identity = await driver.identify()
    assert identity.model == "Antminer S21"
    assert server.digest.challenges == 2


async def test_status_from_stats_pools_and_conf(
    server: AntminerServer, session: aiohttp.ClientSession
) -> None:
    status = await driver_for(server, session).read_status()
    assert status.mining is True
    assert status.hashrate_ths == pytest.approx(110.567, abs=1e-3)
    assert status.nominal_hashrate_ths == pytest.approx(110.0)
    assert status.board_temperatures_c == (73.0, 66.0, 64.0)
    assert status.temperature_c == 78.0
    assert status.fan_rpm == (6000, 5880, 5040, 5040)
    assert status.uptime_s == 50474
    assert (status.accepted_shares, status.rejected_shares) == (4057, 11)
    assert [p.priority for p in status.pools] == [0, 1, 2]
    active = status.active_pool
    assert active is not None
    assert active.url == "stratum+tcp://btc.global.luxor.tech:700"
    assert active.user == "satokierepair.H04YK"
    assert active.alive
    assert (active.accepted, active.rejected) == (4057, 11)
    assert not status.pools[1].active
    assert status.errors == ()
    # No power from the firmware: the S19 Pro nameplate (3250 W at 110 TH/s),
    # scaled to the hashrate it reports.
    assert status.power_estimated is True
    assert status.power_w is not None
    assert 3200 < status.power_w < 3300
    # summary repeats stats and pools: not asked, to keep a big poll cheap.
    assert server.counts["rpc:stats"] == server.counts["rpc:pools"] == 1
    assert server.counts["get_miner_conf"] == 1
    assert server.counts["rpc:summary"] == 0


async def test_sleep_writes_the_conf_and_reads_back_as_not_mining(
    server: AntminerServer, session: aiohttp.ClientSession
) -> None:
    driver = driver_for(server, session)
    before = [dict(pool) for pool in server.conf["pools"]]
    await driver.stop_mining()
    assert server.conf["bitmain-work-mode"] == "1"
    posted = server.posted[-1]
    assert posted["miner-mode"] == 1
    assert posted["pools"] == before  # read-modify-write keeps the pools
    assert posted["bitmain-fan-pwm"] == "100"

    status = await driver.read_status()
    assert status.mining is False
    assert status.hashrate_ths == 0.0
    assert status.power_w is not None
    assert status.power_w < 50
    assert status.power_estimated
    assert status.pools  # pools still answer while asleep

    await driver.start_mining()
    assert server.conf["bitmain-work-mode"] == "0"
    assert (await driver.read_status()).mining is True


async def test_read_mining_asks_only_the_conf(
    server: AntminerServer, session: aiohttp.ClientSession
) -> None:
    driver = driver_for(server, session)
    assert await driver.read_mining() is True
    server.conf["bitmain-work-mode"] = "1"
    assert await driver.read_mining() is False
    assert server.counts["get_miner_conf"] == 2
    assert server.counts["rpc:stats"] == 0


async def test_a_hashing_miner_is_polled_over_rpc_alone(
    server: AntminerServer, session: aiohttp.ClientSession
) -> None:
    driver = driver_for(server, session)
    first = await driver.read_status()  # state unknown: the conf is read along
    assert first.mining is True
    assert server.counts["get_miner_conf"] == 1
    http = server.counts["http"]
    for _ in range(3):
        assert await driver.read_status() == first
    # Full stats decide: no HTTP request at all on these polls.
    assert server.counts["http"] == http
    assert server.counts["get_miner_conf"] == 1
    assert server.counts["rpc:stats"] == server.counts["rpc:pools"] == 4


async def test_a_poll_after_the_conf_refresh_age_reads_it_again(
    server: AntminerServer, session: aiohttp.ClientSession
) -> None:
    driver = driver_for(server, session)
    await driver.read_status()
    await driver.read_status()
    assert server.counts["get_miner_conf"] == 1
    driver._conf_at -= CONF_REFRESH_S  # as if the conf were that old
    await driver.read_status()
    assert server.counts["get_miner_conf"] == 2
    # ...so a shed soon after reuses it: one write, no read.
    await driver.stop_mining()
    assert server.counts["get_miner_conf"] == 2
    assert server.counts["set_miner_conf"] == 1
    assert server.asleep


async def test_a_miner_put_to_sleep_elsewhere_is_seen_asleep_at_once(
    server: AntminerServer, session: aiohttp.ClientSession
) -> None:
    driver = driver_for(server, session)
    await driver.read_status()
    await driver.read_status()
    server.conf["bitmain-work-mode"] = "1"  # through the miner's own web page
    server.latency_s = 0.1
    started = time.monotonic()
    status = await driver.read_status()
    # Empty stats are ambiguous: the conf, read after them, decides (two round trips
    # of 0.1 s each, one after the other: true by construction).
    assert status.mining is False
    assert time.monotonic() - started >= 0.2
    assert server.counts["get_miner_conf"] == 2
    # While asleep every poll reads the conf along, in the same round trip: the
    # conf, stats and pools requests all arrive before any is answered.
    server.latency_s = 0
    server.in_flight.hold(3)
    assert (await driver.read_status()).mining is False
    assert server.in_flight.peak == 3
    assert server.counts["get_miner_conf"] == 3


async def test_rpc_failing_on_a_hashing_miner_asks_the_conf(
    server: AntminerServer, session: aiohttp.ClientSession
) -> None:
    driver = driver_for(server, session)
    await driver.read_status()
    server.rpc_fault = "reset"
    with pytest.raises(DeviceConnectionError):
        await driver.read_status()  # the conf says hashing: the RPC failure stands
    assert server.counts["get_miner_conf"] == 2
    server.conf["bitmain-work-mode"] = "1"
    assert (await driver.read_status()).mining is False  # asleep, RPC down: no error
    assert server.counts["get_miner_conf"] == 3


async def test_the_status_after_a_sleep_command_follows_the_conf(
    server: AntminerServer, session: aiohttp.ClientSession
) -> None:
    driver = driver_for(server, session)
    await driver.read_status()
    await driver.read_status()
    server.rpc_asleep = False  # bmminer still hashes a moment after the write
    await driver.stop_mining()
    status = await driver.read_status()
    assert status.mining is False
    assert status.power_w is not None
    assert status.power_w < 50
    assert server.counts["get_miner_conf"] == 2
    assert (await driver.read_status()).mining is False  # asleep: the conf again
    assert server.counts["get_miner_conf"] == 3


async def test_the_status_after_a_wake_command_follows_the_conf(
    server: AntminerServer, session: aiohttp.ClientSession
) -> None:
    server.conf["bitmain-work-mode"] = "1"
    driver = driver_for(server, session)
    assert (await driver.read_status()).mining is False
    server.rpc_asleep = True  # bmminer not started yet: empty stats
    await driver.start_mining()
    assert (await driver.read_status()).mining is True  # the conf says awake
    assert server.counts["get_miner_conf"] == 2
    # Still empty stats: the conf keeps being read along until they fill.
    assert (await driver.read_status()).mining is True
    assert server.counts["get_miner_conf"] == 3
    server.rpc_asleep = None
    status = await driver.read_status()
    assert status.mining is True
    assert status.hashrate_ths is not None
    assert status.hashrate_ths > 100
    assert server.counts["get_miner_conf"] == 4
    await driver.read_status()  # hashing with full stats: RPC alone from now on
    assert server.counts["get_miner_conf"] == 4


async def test_pool_commands_make_the_next_poll_read_the_conf(
    server: AntminerServer, session: aiohttp.ClientSession
) -> None:
    driver = driver_for(server, session)
    await driver.read_status()
    await driver.switch_pool(1)
    reads = server.counts["get_miner_conf"]
    await driver.read_status()
    assert server.counts["get_miner_conf"] == reads + 1


async def test_wake_restores_the_mode_the_miner_had(
    server: AntminerServer, session: aiohttp.ClientSession
) -> None:
    server.conf["bitmain-work-mode"] = "2"  # e.g. HEM on an S19k Pro
    driver = driver_for(server, session)
    await driver.read_status()
    await driver.stop_mining()
    assert server.conf["bitmain-work-mode"] == "1"
    await driver.start_mining()
    assert server.conf["bitmain-work-mode"] == "2"
    assert server.posted[-1]["miner-mode"] == 2


async def test_waking_a_miner_found_asleep_uses_normal_mode(
    server: AntminerServer, session: aiohttp.ClientSession
) -> None:
    server.conf["bitmain-work-mode"] = "1"
    driver = driver_for(server, session)
    assert (await driver.read_status()).mining is False
    await driver.start_mining()
    assert server.conf["bitmain-work-mode"] == "0"


async def test_asleep_with_rpc_down_is_not_an_error(
    server: AntminerServer, session: aiohttp.ClientSession
) -> None:
    server.conf["bitmain-work-mode"] = "1"
    server.rpc_fault = "reset"
    status = await driver_for(server, session).read_status()
    assert status.mining is False
    assert status.pools == ()


async def test_mining_with_rpc_down_is_an_error(
    server: AntminerServer, session: aiohttp.ClientSession
) -> None:
    server.rpc_fault = "reset"
    with pytest.raises(DeviceConnectionError):
        await driver_for(server, session).read_status()


async def test_set_pools_fills_three_slots_and_keeps_the_mode(
    server: AntminerServer, session: aiohttp.ClientSession
) -> None:
    server.conf["bitmain-work-mode"] = "1"
    driver = driver_for(server, session)
    await driver.set_pools(
        [PoolConfig("stratum+tcp://a:3333", "w.1", "p1"), PoolConfig("stratum+tcp://b:3333", "w.2")]
    )
    assert server.conf["pools"] == [
        {"url": "stratum+tcp://a:3333", "user": "w.1", "pass": "p1"},
        {"url": "stratum+tcp://b:3333", "user": "w.2", "pass": "x"},
        {"url": "", "user": "", "pass": ""},
    ]
    assert server.conf["bitmain-work-mode"] == "1"
    with pytest.raises(ValueError, match="1 to 3"):
        await driver.set_pools([PoolConfig(f"stratum+tcp://p{i}:1", "w") for i in range(4)])


async def test_set_pools_keeps_the_stored_password_of_a_pool_already_there(
    server: AntminerServer, session: aiohttp.ClientSession
) -> None:
    # Callers cannot read passwords (`pools` has none): the conf's stays with its pool.
    server.conf["pools"] = [
        {"url": "stratum+tcp://a:1", "user": "a", "pass": "d=65536"},
        {"url": "stratum+tcp://b:1", "user": "b", "pass": "pb"},
        {"url": "", "user": "", "pass": ""},
    ]
    driver = driver_for(server, session)
    await driver.set_pools(
        [
            PoolConfig("STRATUM+TCP://A:1/", "a"),  # the same pool, echoed in another shape
            PoolConfig("stratum+tcp://b:1", "other-worker"),  # another worker: a new pool
            PoolConfig("stratum+tcp://local:3333", "site.local", "lp"),
        ]
    )
    assert [slot["pass"] for slot in server.conf["pools"]] == ["d=65536", "x", "lp"]


async def test_switch_pool_counts_the_pools_as_listed(
    server: AntminerServer, session: aiohttp.ClientSession
) -> None:
    # An empty slot is not listed by `pools`: index 1 is the second configured pool.
    server.conf["pools"] = [
        {"url": "stratum+tcp://a:1", "user": "a", "pass": "pa"},
        {"url": "", "user": "", "pass": ""},
        {"url": "stratum+tcp://local:3333", "user": "dummy", "pass": "x"},
    ]
    await driver_for(server, session).switch_pool(1)
    assert [p["user"] for p in server.conf["pools"]] == ["dummy", "a", ""]
    assert server.conf["pools"][1]["pass"] == "pa"


async def test_switch_pool_reorders_the_conf(
    server: AntminerServer, session: aiohttp.ClientSession
) -> None:
    server.conf["pools"] = [
        {"url": "stratum+tcp://a:1", "user": "a", "pass": "pa"},
        {"url": "stratum+tcp://b:1", "user": "b", "pass": "pb"},
        {"url": "stratum+tcp://local:3333", "user": "dummy", "pass": "x"},
    ]
    driver = driver_for(server, session)
    await driver.switch_pool(2)
    assert [p["user"] for p in server.conf["pools"]] == ["dummy", "a", "b"]
    assert server.conf["pools"][1]["pass"] == "pa"
    server.conf["pools"][2] = {"url": "", "user": "", "pass": ""}
    with pytest.raises(ValueError, match="pool 2 is not configured"):
        await driver.switch_pool(2)
    with pytest.raises(ValueError, match="pool 5 is not configured"):
        await driver.switch_pool(5)


async def test_a_refused_conf_write_is_command_rejected(
    server: AntminerServer, session: aiohttp.ClientSession
) -> None:
    server.reject_writes = True
    with pytest.raises(CommandRejectedError, match="busy"):
        await driver_for(server, session).stop_mining()
    assert server.conf["bitmain-work-mode"] == "0"


async def test_wrong_digest_credentials(
    server: AntminerServer, session: aiohttp.ClientSession
) -> None:
    driver = driver_for(server, session, Credentials("root", "wrong"))
    with pytest.raises(DeviceAuthError, match="refused user 'root'"):
        await driver.identify()
    with pytest.raises(DeviceAuthError):
        await driver.read_status()
    with pytest.raises(DeviceAuthError):
        await driver.stop_mining()
    assert server.conf["bitmain-work-mode"] == "0"
    assert server.digest.refused >= 3


async def test_custom_credentials_are_used(
    loopback_network: None, session: aiohttp.ClientSession
) -> None:
    async with AntminerServer(username="admin", password="s3cret") as server:
        driver = driver_for(server, session, Credentials("admin", "s3cret"))
        assert (await driver.identify()).serial == "THQING0BDJAB024NF"


@pytest.mark.parametrize(
    ("fault", "error"),
    [
        ("garbage", DeviceProtocolError),
        ("truncated", DeviceProtocolError),
        ("oversized", DeviceProtocolError),
        ("not_json", DeviceProtocolError),
        ("reset", DeviceConnectionError),
        ("silent", DeviceTimeoutError),
    ],
)
async def test_rpc_faults_give_library_errors(
    server: AntminerServer,
    session: aiohttp.ClientSession,
    fault: str,
    error: type[Exception],
) -> None:
    server.rpc_fault = fault
    # A short timeout only where it is the point: the others must not race it.
    timeout = 0.3 if fault == "silent" else 5.0
    with pytest.raises(error):
        await driver_for(server, session, timeout=timeout).read_status()


@pytest.mark.parametrize(
    ("fault", "error", "words"),
    [
        ("garbage", DeviceProtocolError, "not an HTTP reply"),
        ("truncated", DeviceConnectionError, "cut short"),
        ("oversized", DeviceProtocolError, "larger than"),
        ("not_json", DeviceProtocolError, "not JSON"),
        ("reset", DeviceConnectionError, None),  # the OS words it its own way
        ("silent", DeviceTimeoutError, "within 0.3 s"),
    ],
)
async def test_web_faults_give_library_errors(
    loopback_network: None,
    session: aiohttp.ClientSession,
    fault: str,
    error: type[Exception],
    words: str | None,
) -> None:
    async with AntminerServer(web_fault=fault) as server:
        # A short timeout only where it is the point: the others must not race it.
        driver = driver_for(server, session, timeout=0.3 if fault == "silent" else 5.0)
        with pytest.raises(error, match=words):
            await driver.identify()
        with pytest.raises(error):
            await driver.read_status()


async def test_refused_connection(loopback_network: None, session: aiohttp.ClientSession) -> None:
    driver = AntminerDriver(MinerEndpoint("127.0.0.1", free_port()), session=session, timeout=1)
    with pytest.raises(DeviceConnectionError):
        await driver.identify()
    with pytest.raises(DeviceConnectionError):
        await driver.read_status()


async def test_rpc_error_status_is_a_protocol_error(
    server: AntminerServer, session: aiohttp.ClientSession
) -> None:
    del server.fixtures["pools"]  # the server now answers "Invalid command"
    with pytest.raises(DeviceProtocolError, match="Invalid command"):
        await driver_for(server, session).read_status()


async def test_a_conf_without_work_mode_is_a_protocol_error(
    server: AntminerServer, session: aiohttp.ClientSession
) -> None:
    del server.conf["bitmain-work-mode"]
    with pytest.raises(DeviceProtocolError, match="work mode"):
        await driver_for(server, session).read_status()


async def test_system_info_without_mac_is_a_protocol_error(
    server: AntminerServer, session: aiohttp.ClientSession
) -> None:
    del server.system_info["macaddr"]
    with pytest.raises(DeviceProtocolError, match="no MAC"):
        await driver_for(server, session).identify()


# RFC 7616 section 3.9.1: the worked example, in MD5 and SHA-256.
RFC_CHALLENGE = (
    'Digest realm="http-auth@example.org", qop="auth, auth-int", algorithm={algorithm}, '
    'nonce="7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v", '
    'opaque="FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS"'
)
RFC_CNONCE = "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ"


@pytest.mark.parametrize(
    ("algorithm", "response"),
    [
        ("MD5", "8ca523f5e9506fed4657c9700eebdbec"),
        ("SHA-256", "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"),
    ],
)
def test_digest_matches_the_rfc_example(algorithm: str, response: str) -> None:
    challenge = parse_digest_challenge(RFC_CHALLENGE.format(algorithm=algorithm))
    assert challenge is not None
    auth = DigestAuth("Mufasa", "Circle of Life")
    auth.remember(challenge)
    header = auth.authorization("GET", "/dir/index.html", cnonce=RFC_CNONCE)
    assert f'response="{response}"' in header
    assert "nc=00000001" in header
    assert 'opaque="FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS"' in header
    assert "nc=00000002" in auth.authorization("GET", "/dir/index.html", cnonce=RFC_CNONCE)


def test_digest_challenge_parsing() -> None:
    parsed = parse_digest_challenge(
        'Basic realm="x", Digest realm="a, \\"quoted\\" realm", nonce=abc, qop=auth'
    )
    assert parsed == {"realm": 'a, "quoted" realm', "nonce": "abc", "qop": "auth"}
    assert parse_digest_challenge('Basic realm="x"') is None
    assert parse_digest_challenge('Digest realm="no nonce"') is None


def test_digest_refuses_what_it_cannot_answer() -> None:
    auth = DigestAuth("root", "root")
    auth.remember({"nonce": "n", "algorithm": "SHA-512-256"})
    with pytest.raises(UnsupportedError, match="SHA-512-256"):
        auth.authorization("GET", "/")
    auth.remember({"nonce": "n", "qop": "auth-int"})
    with pytest.raises(UnsupportedError, match="auth-int"):
        auth.authorization("GET", "/")


async def test_no_session_is_a_clear_error() -> None:
    driver = AntminerDriver(MinerEndpoint("127.0.0.1", 4028))
    with pytest.raises(TypeError, match="needs an aiohttp session"):
        await driver.identify()


# -- against the site simulator (an independent implementation of the firmware) --


async def test_against_the_simulator(loopback_network: None) -> None:
    from simulator import Site, SiteConfig

    config = SiteConfig(
        miners=2,
        mix="antminer=1",
        base_port=0,
        latency_ms=0,
        meter=None,
        control=None,
        pool="127.0.0.1:0",
    )
    async with Site(config) as site, aiohttp.ClientSession() as client:
        miner = site.miners[0]
        assert miner.family == "antminer"
        driver = AntminerDriver(MinerEndpoint(miner.host, miner.api_port), session=client)
        identity = await driver.identify()
        assert identity.mac == miner.mac
        status = await driver.read_status()
        assert status.mining is True
        assert status.hashrate_ths is not None
        assert status.hashrate_ths > 10
        assert status.power_estimated
        assert status.active_pool is not None
        assert status.active_pool.alive
        assert (await driver.read_status()).mining is True  # over RPC alone
        await driver.stop_mining()
        assert miner.state == "sleeping"
        asleep = await driver.read_status()
        assert asleep.mining is False
        assert asleep.power_w is not None
        assert asleep.power_w < 50
        assert await driver.read_mining() is False
        await driver.start_mining()
        assert miner.state in ("starting", "mining")
        assert await driver.read_mining() is True
        assert (await driver.read_status()).mining is True
        assert (await driver.read_status()).mining is True  # full stats while starting
        # Asleep by other means: the simulator's empty stats send the driver to the conf.
        miner.stop()
        assert (await driver.read_status()).mining is False
        assert (await driver.read_status()).mining is False
        miner.start()
        assert (await driver.read_status()).mining is True


# --- firmware with bmminer's new API (stats per chain) -------------------------------


async def test_stats_with_new_api_gives_the_board_temperatures(
    server: AntminerServer, session: aiohttp.ClientSession
) -> None:
    server.new_api = True
    driver = driver_for(server, session)
    status = await driver.read_status()
    # The same miner as the old shape says: per chain, the hottest PCB and chip sensor.
    assert status.board_temperatures_c == (73.0, 66.0, 64.0)
    assert status.temperature_c == 78.0
    assert status.hashrate_ths == pytest.approx(110.567, abs=1e-3)
    assert status.nominal_hashrate_ths == pytest.approx(110.0)
    assert status.fan_rpm == (6000, 5880, 5040, 5040)
    assert status.uptime_s == 50474
    assert status.errors == ()
    assert status.power_w is not None
    assert 3200 < status.power_w < 3300  # the model from INFO.type: S19 Pro nameplate
    # One STATS entry with chains is a hashing miner's: later polls need no conf.
    assert await driver.read_status() == status
    assert server.counts["get_miner_conf"] == 1
    await driver.stop_mining()
    asleep = await driver.read_status()
    assert asleep.mining is False
    assert asleep.board_temperatures_c == ()


async def test_a_chain_with_dead_chips_is_an_error_in_the_new_shape(
    server: AntminerServer, session: aiohttp.ClientSession
) -> None:
    server.new_api = True
    server.fixtures["stats"]["STATS"][1]["chain_acs2"] = " ooo oxo xoo"
    status = await driver_for(server, session).read_status()
    assert status.errors == ("chain 2: 2 chips not responding",)


async def test_nan_and_garbage_read_as_unknown_and_numeric_strings_as_numbers(
    server: AntminerServer, session: aiohttp.ClientSession
) -> None:
    stats = server.fixtures["stats"]["STATS"][1]
    stats |= {"GHS 5s": float("nan"), "temp1": "71", "temp2": True, "fan_num": 1e12}
    status = await driver_for(server, session).read_status()
    assert status.hashrate_ths is None  # NaN is no reading
    assert status.board_temperatures_c == (71.0, 64.0)  # "71" counts, a boolean does not
    assert status.fan_rpm == (6000, 5880, 5040, 5040)  # an absurd fan count is ignored


@pytest.mark.parametrize(
    ("entry", "hashing"),
    [
        ({"rate_5s": 110566.9, "miner-mode": 0, "chain": [{"index": 0}]}, True),
        ({"rate_5s": 0.0, "miner-mode": 0, "chain": [{"index": 0}]}, False),  # ramping up
        ({"rate_5s": 9.0, "miner-mode": 1, "chain": [{"index": 0}]}, False),  # asleep elsewhere
        ({"rate_5s": 9.0, "chain": []}, False),
    ],
)
def test_only_a_hashing_new_shape_lets_rpc_decide(entry: dict[str, object], hashing: bool) -> None:
    assert _hashing_stats({"STATUS": {"STATUS": "S"}, "STATS": [entry]}) is hashing
