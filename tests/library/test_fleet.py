"""The fleet fan-out over real test servers: fast, slow, garbage and dead miners together."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
import contextlib
import time

import aiohttp
import pytest

from custom_components.bitcoin_mining.miningsite.exceptions import (
    CommandRejectedError,
    DeviceConnectionError,
    DeviceProtocolError,
    DeviceTimeoutError,
    UnsupportedError,
)
from custom_components.bitcoin_mining.miningsite.miners.antminer import AntminerDriver
from custom_components.bitcoin_mining.miningsite.miners.base import (
    FAMILIES,
    MinerDriver,
    MinerEndpoint,
    MinerIdentity,
    MinerStatus,
    PoolConfig,
)
from custom_components.bitcoin_mining.miningsite.miners.braiins import BraiinsDriver
from custom_components.bitcoin_mining.miningsite.miners.cgminer import (
    CgminerDriver,
    NoDevicesError,
)
from custom_components.bitcoin_mining.miningsite.miners.fleet import (
    CommandResult,
    Fleet,
    PreparesWrites,
    QuickReadback,
    driver_for,
    fill_power,
)
from custom_components.bitcoin_mining.miningsite.miners.luxos import LuxosDriver
from custom_components.bitcoin_mining.miningsite.miners.models import SLEEP_POWER_W
from devtools.steps import poll_until
from tests.support.firmware_servers import Cgminer411Server, InFlight, LuxosServer
from tests.support.modbus_meter import free_port
from tests.support.web_firmware import AntminerServer, BraiinsServer, set_mac


@pytest.fixture
async def session(loopback_network: None) -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client:
        yield client


@contextlib.asynccontextmanager
async def running(*servers: AntminerServer | BraiinsServer) -> AsyncIterator[None]:
    started: list[AntminerServer | BraiinsServer] = []
    try:
        for server in servers:
            await server.start()
            started.append(server)
        yield
    finally:
        await asyncio.gather(*(server.stop() for server in started))


def antminer(
    server: AntminerServer, session: aiohttp.ClientSession, timeout: float = 2
) -> AntminerDriver:
    return AntminerDriver(MinerEndpoint(server.host, server.port), session=session, timeout=timeout)


def braiins(
    server: BraiinsServer, session: aiohttp.ClientSession, timeout: float = 2
) -> BraiinsDriver:
    return BraiinsDriver(MinerEndpoint(server.host, server.port), session=session, timeout=timeout)


def dead(session: aiohttp.ClientSession, timeout: float = 2) -> AntminerDriver:
    endpoint = MinerEndpoint("127.0.0.1", free_port())
    return AntminerDriver(endpoint, session=session, timeout=timeout)


async def test_poll_returns_statuses_and_errors_side_by_side(
    session: aiohttp.ClientSession,
) -> None:
    fast_a, fast_b = AntminerServer(), BraiinsServer()
    slow = AntminerServer(web_fault="silent")
    garbage = AntminerServer()
    async with running(fast_a, fast_b, slow, garbage):
        slow.rpc_fault = "silent"
        garbage.rpc_fault = "garbage"
        # No miner is answered before every one with a server has a request in
        # flight: polled side by side, the slow one costs the others no time.
        asked = InFlight(by="server")
        for server in (fast_a, fast_b, slow, garbage):
            server.in_flight = asked
        asked.hold(4)
        # The fleet's timeout is what ends the slow one (the drivers' own are far off).
        # The fast ones must be done within it too: 3 s leaves room for a busy machine.
        fleet = Fleet(
            {
                "fast-a": antminer(fast_a, session, timeout=30),
                "fast-b": braiins(fast_b, session, timeout=30),
                "slow": antminer(slow, session, timeout=30),
                "garbage": antminer(garbage, session, timeout=30),
                "dead": dead(session, timeout=30),
            },
            timeout=3,
        )
        results = await fleet.poll()
    assert asked.peak == 4
    assert set(results) == {"fast-a", "fast-b", "slow", "garbage", "dead"}
    status_a, status_b = results["fast-a"], results["fast-b"]
    assert isinstance(status_a, MinerStatus)
    assert isinstance(status_b, MinerStatus)
    assert status_a.hashrate_ths == pytest.approx(110.567, abs=1e-3)
    assert status_b.power_w == 3480
    assert isinstance(results["slow"], DeviceTimeoutError)
    assert str(results["slow"]) == "slow did not answer within 3 s"
    assert isinstance(results["garbage"], DeviceProtocolError)
    assert isinstance(results["dead"], DeviceConnectionError)


async def test_concurrency_is_bounded(session: aiohttp.ClientSession) -> None:
    # Each poll of one miner waits 0.1 s for its replies: time for the next ones to overlap.
    servers = [AntminerServer(latency_s=0.1) for _ in range(4)]
    busy = InFlight(by="server")
    for server in servers:
        server.in_flight = busy
    async with running(*servers):
        drivers = {f"m{i}": antminer(server, session, 10) for i, server in enumerate(servers)}
        serial = Fleet(drivers, concurrency=1, timeout=10)
        await serial.poll()  # the first poll also gets the digest challenge
        busy.peak = 0
        one_at_a_time = await serial.poll()
        # One miner at a time: a miner's requests only go out once the last one answered.
        assert busy.peak == 1
        parallel = Fleet(drivers, concurrency=64, timeout=10)
        # All at once: no miner is answered before all four have a request in flight.
        busy.hold(4)
        results = await parallel.poll()
        assert busy.peak == 4
    assert all(isinstance(result, MinerStatus) for result in one_at_a_time.values())
    assert all(isinstance(result, MinerStatus) for result in results.values())


async def test_identities_are_cached(session: aiohttp.ClientSession) -> None:
    first, second = AntminerServer(), AntminerServer()
    async with running(first, second):
        fleet = Fleet({"a": antminer(first, session), "b": antminer(second, session)})
        report = await fleet.identify_all()
        assert set(report.identified) == {"a", "b"}
        assert report.errors == {}
        assert report.changed == {}
        again = await fleet.identify_all()
        await fleet.poll()
        await fleet.poll()
        assert again.identified == {}
        assert first.counts["get_system_info"] == second.counts["get_system_info"] == 1
        refreshed = await fleet.identify_all(refresh=True)
    assert set(refreshed.identified) == {"a", "b"}
    assert refreshed.changed == {}
    assert first.counts["get_system_info"] == 2
    assert fleet.identities["a"].model == "Antminer S21"


async def test_identify_errors_are_per_miner_and_retried(session: aiohttp.ClientSession) -> None:
    good = AntminerServer()
    async with running(good):
        fleet = Fleet({"good": antminer(good, session), "dead": dead(session)}, timeout=1)
        report = await fleet.identify_all()
        assert set(report.identified) == {"good"}
        assert isinstance(report.errors["dead"], DeviceConnectionError)
        # An unidentified member is tried again next time; the known one is not.
        report = await fleet.identify_all()
    assert set(report.errors) == {"dead"}
    assert good.counts["get_system_info"] == 1


async def test_a_changed_mac_is_reported_on_refresh(session: aiohttp.ClientSession) -> None:
    server = AntminerServer()
    async with running(server):
        fleet = Fleet({"rack1-slot4": antminer(server, session)})
        await fleet.identify_all()
        set_mac(server, "AA:BB:CC:00:11:22")
        report = await fleet.identify_all(refresh=True)
    change = report.changed["rack1-slot4"]
    assert change.previous.mac == "02:55:97:22:3M:72"
    assert change.current is not None
    assert change.current.mac == "AA:BB:CC:00:11:22"
    assert change.seen_mac == "AA:BB:CC:00:11:22"


async def test_a_status_naming_another_mac_marks_the_member(
    session: aiohttp.ClientSession,
) -> None:
    server, other = BraiinsServer(), BraiinsServer()
    async with running(server, other):
        fleet = Fleet({"swapped": braiins(server, session), "same": braiins(other, session)})
        await fleet.identify_all()
        set_mac(server, "02:00:00:00:00:99")
        await fleet.poll()
        assert fleet.suspect_keys == {"swapped"}
        seen = fleet.identity_changes_seen()
        assert seen["swapped"].seen_mac == "02:00:00:00:00:99"
        assert seen["swapped"].previous.mac == "02:8F:77:EC:E7:E0"
        # The next identify_all re-reads only the suspect member, and reports it.
        details_before = other.counts["GET /miner/details"]
        report = await fleet.identify_all()
    assert set(report.identified) == {"swapped"}
    assert set(report.changed) == {"swapped"}
    assert other.counts["GET /miner/details"] == details_before
    assert fleet.suspect_keys == frozenset()
    assert fleet.identities["swapped"].mac == "02:00:00:00:00:99"


async def test_stop_and_start_are_confirmed_by_reading_back(
    session: aiohttp.ClientSession,
) -> None:
    ant, bos = AntminerServer(), BraiinsServer()
    async with running(ant, bos):
        fleet = Fleet({"ant": antminer(ant, session), "bos": braiins(bos, session)})
        await fleet.identify_all()
        outcomes = await fleet.command(["ant", "bos"], "stop")
        assert ant.asleep
        assert bos.paused
        for outcome in outcomes.values():
            assert outcome.result is CommandResult.CONFIRMED
            assert outcome.confirmed
            assert outcome.attempts == 1
            assert outcome.mining is False
            assert outcome.status is not None
            assert outcome.status.mining is False
        ant_status = outcomes["ant"].status
        assert ant_status is not None
        assert ant_status.power_w == SLEEP_POWER_W
        outcomes = await fleet.command(["ant", "bos"], "start")
    assert not ant.asleep
    assert not bos.paused
    assert all(outcome.confirmed and outcome.mining for outcome in outcomes.values())


async def test_a_quick_read_back_reads_the_mining_state_alone(
    session: aiohttp.ClientSession,
) -> None:
    ant, bos = AntminerServer(), BraiinsServer()
    async with running(ant, bos):
        fleet = Fleet({"ant": antminer(ant, session), "bos": braiins(bos, session)})
        outcomes = await fleet.command(["ant", "bos"], "stop", quick_readback=True)
        assert ant.asleep
        assert bos.paused
    for outcome in outcomes.values():
        assert outcome.confirmed
        assert outcome.mining is False
        assert outcome.status is None
    # Antminer: the conf; Braiins: details. No full status reads.
    assert ant.counts["rpc:stats"] == 0
    assert bos.counts["GET /miner/stats"] == 0


class FullReadback(MinerDriver):
    """An Antminer driver without the cheap read-back, as drivers of other families."""

    family = "antminer"

    def __init__(self, inner: AntminerDriver) -> None:
        super().__init__(inner.endpoint, session=inner.session, timeout=inner.timeout)
        self.inner = inner

    async def identify(self) -> MinerIdentity:
        return await self.inner.identify()

    async def read_status(self) -> MinerStatus:
        return await self.inner.read_status()

    async def stop_mining(self) -> None:
        await self.inner.stop_mining()

    async def start_mining(self) -> None:
        await self.inner.start_mining()

    async def set_pools(self, pools: Sequence[PoolConfig]) -> None:
        await self.inner.set_pools(pools)

    async def switch_pool(self, index: int) -> None:
        await self.inner.switch_pool(index)


async def test_a_quick_read_back_falls_back_to_the_status(
    session: aiohttp.ClientSession,
) -> None:
    server = AntminerServer()
    async with running(server):
        driver = FullReadback(antminer(server, session))
        assert not isinstance(driver, QuickReadback)
        fleet = Fleet({"ant": driver})
        await fleet.identify_all()
        outcome = (await fleet.command(["ant"], "stop", quick_readback=True))["ant"]
    assert outcome.confirmed
    assert outcome.mining is False
    assert outcome.status is not None
    assert outcome.status.mining is False
    assert outcome.status.power_w == SLEEP_POWER_W
    assert server.counts["rpc:stats"] == 1


async def test_command_failures_are_reported_per_miner(session: aiohttp.ClientSession) -> None:
    good, refusing = AntminerServer(), BraiinsServer()
    async with running(good, refusing):
        refusing.refuse_actions = True
        fleet = Fleet(
            {
                "good": antminer(good, session),
                "refusing": braiins(refusing, session),
                "dead": dead(session),
            },
            timeout=1,
        )
        outcomes = await fleet.command(["good", "refusing", "dead"], "stop")
    assert outcomes["good"].result is CommandResult.CONFIRMED
    assert good.asleep
    assert outcomes["refusing"].result is CommandResult.FAILED
    assert isinstance(outcomes["refusing"].error, CommandRejectedError)
    assert outcomes["dead"].result is CommandResult.FAILED
    assert isinstance(outcomes["dead"].error, DeviceConnectionError)


async def test_a_refused_command_already_in_effect_is_confirmed(
    session: aiohttp.ClientSession,
) -> None:
    server = BraiinsServer()
    async with running(server):
        server.data["miner_details"]["status"] = 3
        server.refuse_actions = True  # e.g. pausing a paused miner answers false
        fleet = Fleet({"bos": braiins(server, session)})
        outcome = (await fleet.command(["bos"], "stop"))["bos"]
    assert outcome.result is CommandResult.CONFIRMED


async def test_a_lost_command_is_sent_once_more(session: aiohttp.ClientSession) -> None:
    server = AntminerServer()
    async with running(server):
        server.ignore_writes = 1
        fleet = Fleet({"ant": antminer(server, session)}, confirm_timeout=1)
        outcome = (await fleet.command(["ant"], "stop"))["ant"]
    assert outcome.result is CommandResult.CONFIRMED
    assert outcome.attempts == 2
    assert server.counts["set_miner_conf"] == 2
    assert server.asleep


async def test_a_miner_that_never_follows_is_not_confirmed(
    session: aiohttp.ClientSession,
) -> None:
    server = AntminerServer()
    async with running(server):
        server.ignore_writes = 100
        fleet = Fleet(
            {"ant": antminer(server, session)}, confirm_timeout=0.4, confirm_interval=0.05
        )
        started = time.monotonic()
        # Only catches a read-back that never ends: more than ten times the 0.4 s deadline.
        async with asyncio.timeout(5):
            outcome = (await fleet.command(["ant"], "stop"))["ant"]
        elapsed = time.monotonic() - started
    assert outcome.result is CommandResult.NOT_CONFIRMED
    assert not outcome.confirmed
    assert outcome.attempts == 2  # one retry, no more
    assert server.counts["set_miner_conf"] == 2
    assert outcome.mining is True
    # Read back until the deadline: it waits that long (true by construction)...
    assert elapsed >= 0.3
    assert server.counts["get_miner_conf"] >= 3
    # ...and no longer: a read-back (one `stats` each), one after the retry, then one
    # per 0.05 s interval slept, and at most 0.4 / 0.05 intervals fit before the deadline.
    assert server.counts["rpc:stats"] <= 2 + int(0.4 / 0.05)


async def test_shedding_many_miners_is_fast(session: aiohttp.ClientSession) -> None:
    servers: list[AntminerServer | BraiinsServer] = [
        AntminerServer() if i % 2 else BraiinsServer() for i in range(30)
    ]
    commanded = InFlight(by="server")
    for server in servers:
        server.in_flight = commanded
    async with running(*servers):
        drivers: dict[str, MinerDriver] = {
            f"m{i}": antminer(s, session, 10)
            if isinstance(s, AntminerServer)
            else braiins(s, session, 10)
            for i, s in enumerate(servers)
        }
        # Far off: 30 miners at once take a while on a busy machine, and the time is not the point.
        fleet = Fleet(drivers, timeout=10)
        await fleet.identify_all()
        await fleet.poll()  # normal operation: the poll before the emergency
        # Every miner at once, not in waves: no miner is answered before all 30 have
        # a request in flight.
        commanded.hold(len(servers))
        outcomes = await fleet.command(list(drivers), "stop", quick_readback=True)
    assert commanded.peak == len(servers)
    assert [key for key, outcome in outcomes.items() if not outcome.confirmed] == []
    assert all(s.asleep if isinstance(s, AntminerServer) else s.paused for s in servers)
    # One command each: no retry was needed.
    assert all(outcome.attempts == 1 for outcome in outcomes.values())


class BrokenDriver(FullReadback):
    """A driver with a bug: every call raises something that is no library error."""

    async def read_status(self) -> MinerStatus:
        raise KeyError("STATS")

    async def stop_mining(self) -> None:
        raise AttributeError("'NoneType' object has no attribute 'get'")


async def test_a_driver_bug_stays_with_its_miner(session: aiohttp.ClientSession) -> None:
    server = AntminerServer()
    async with running(server):
        fleet = Fleet(
            {"good": antminer(server, session), "buggy": BrokenDriver(antminer(server, session))}
        )
        results = await fleet.poll()
        outcomes = await fleet.command(["good", "buggy"], "stop")
    assert isinstance(results["good"], MinerStatus)
    assert isinstance(results["buggy"], DeviceProtocolError)
    assert "buggy: the driver failed: KeyError" in str(results["buggy"])
    assert outcomes["good"].confirmed
    assert outcomes["buggy"].result is CommandResult.FAILED
    assert "AttributeError" in str(outcomes["buggy"].error)


async def test_a_member_removed_during_a_poll(session: aiohttp.ClientSession) -> None:
    slow, other = AntminerServer(latency_s=0.2), AntminerServer()
    async with running(slow, other):
        fleet = Fleet({"slow": antminer(slow, session), "other": antminer(other, session)})
        await fleet.identify_all()
        poll = asyncio.create_task(fleet.poll())
        await asyncio.sleep(0.05)
        await fleet.remove("other")
        results = await poll
    # The poll that was running finishes with the members it started with.
    assert set(results) == {"slow", "other"}
    assert fleet.keys == ("slow",)
    assert "other" not in fleet.identities


async def test_command_arguments_are_checked(session: aiohttp.ClientSession) -> None:
    fleet = Fleet({"a": dead(session)})
    with pytest.raises(KeyError, match="nope"):
        await fleet.command(["a", "nope"], "stop")
    with pytest.raises(ValueError, match="'stop' or 'start'"):
        await fleet.command(["a"], "reboot")  # type: ignore[arg-type]


def test_fleet_limits_are_checked() -> None:
    with pytest.raises(ValueError, match="concurrency"):
        Fleet(concurrency=0)
    with pytest.raises(ValueError, match="positive"):
        Fleet(timeout=0)


async def test_membership(session: aiohttp.ClientSession) -> None:
    server = AntminerServer()
    async with running(server):
        fleet = Fleet()
        fleet.add("a", antminer(server, session))
        await fleet.identify_all()
        assert "a" in fleet.identities
        fleet.add("a", antminer(server, session))  # a new driver: identity to re-read
        assert "a" not in fleet.identities
        fleet.add("b", dead(session))
        assert fleet.keys == ("a", "b")
        await fleet.remove("b")
        assert fleet.keys == ("a",)
        await fleet.close()


def test_fill_power_estimates_only_what_is_missing() -> None:
    measured = MinerStatus(mining=True, hashrate_ths=100, power_w=3000)
    assert fill_power(measured, "Antminer S19 Pro") is measured
    hashing = fill_power(MinerStatus(mining=True, hashrate_ths=55.0), "Antminer S19 Pro")
    assert hashing.power_estimated
    assert hashing.power_w == pytest.approx(3250 * 0.55)
    asleep = fill_power(MinerStatus(mining=False), None)
    assert (asleep.power_w, asleep.power_estimated) == (SLEEP_POWER_W, True)
    unknown = MinerStatus(mining=True, hashrate_ths=55.0)
    assert fill_power(unknown, "Mystery 9000") is unknown


async def test_poll_fills_power_from_the_cached_model(session: aiohttp.ClientSession) -> None:
    server = BraiinsServer()
    async with running(server):
        # Braiins reports power; pretend this build does not.
        del server.data["miner_stats"]["power_stats"]
        fleet = Fleet({"bos": braiins(server, session)})
        before = await fleet.poll()
        await fleet.identify_all()
        after = await fleet.poll()
    unidentified, identified = before["bos"], after["bos"]
    assert isinstance(unidentified, MinerStatus)
    assert isinstance(identified, MinerStatus)
    assert unidentified.power_w is None  # no model known yet: no guess
    assert identified.power_estimated
    assert identified.power_w is not None
    assert 3000 < identified.power_w < 4000  # an S21 Pro hashing a bit over nameplate


def test_driver_factory_maps_families(session: aiohttp.ClientSession) -> None:
    endpoint = MinerEndpoint("127.0.0.1", 4028)
    ant = driver_for("antminer", endpoint, session=session, timeout=1.5)
    assert isinstance(ant, AntminerDriver)
    assert ant.timeout == 1.5
    assert ant.session is session
    assert isinstance(driver_for("braiins", endpoint, session=session), BraiinsDriver)
    for family in FAMILIES:
        driver = driver_for(family, endpoint, session=session)
        assert driver.family == family
        assert driver.endpoint == endpoint
    with pytest.raises(UnsupportedError, match="unknown miner family 'avalon'"):
        driver_for("avalon", endpoint)


# -- across every family of the site simulator --


async def test_a_simulated_site_across_families(session: aiohttp.ClientSession) -> None:
    from simulator import Site, SiteConfig

    mix = "antminer=2,braiins=2,whatsminer=1,whatsminer_v3=1,luxos=1,cgminer=1"
    config = SiteConfig(
        miners=16, mix=mix, base_port=0, latency_ms=0, meter=None, control=None, pool="127.0.0.1:0"
    )
    async with Site(config) as site:
        miners = {f"{m.family}-{m.api_port}": m for m in site.miners}
        # Timeouts far off: 16 miners at once take a while on a busy machine, and the
        # time is not the point.
        fleet = Fleet(
            {
                key: driver_for(
                    m.family, MinerEndpoint(m.host, m.api_port), session=session, timeout=10
                )
                for key, m in miners.items()
            },
            timeout=10,
        )
        report = await fleet.identify_all()
        for key, identity in report.identified.items():
            assert identity.family == miners[key].family
            # Generic cgminer reports no MAC; every other family must give the right one.
            if identity.family != "cgminer":
                assert identity.mac == miners[key].mac
        assert {m.family for k, m in miners.items() if k in report.identified} >= {
            "antminer",
            "braiins",
        }
        statuses = await fleet.poll()
        assert {k: s for k, s in statuses.items() if not isinstance(s, MinerStatus)} == {}
        assert all(status.mining for status in statuses.values() if isinstance(status, MinerStatus))

        outcomes = await fleet.command(list(miners), "stop")
        assert {key for key, o in outcomes.items() if not o.confirmed} == set()
        assert {m.state for m in miners.values()} == {"sleeping"}
        outcomes = await fleet.command(list(miners), "start")
        assert all(outcome.confirmed for outcome in outcomes.values())
        assert {m.state for m in miners.values()} <= {"starting", "mining"}
        await fleet.close()


@pytest.mark.usefixtures("loopback_network")
async def test_a_cgminer_without_devices_is_polled_as_not_mining() -> None:
    # A real cgminer whose devices dropped out: `devs` is `E 10 "No ASCs"`.
    async with Cgminer411Server() as server:
        driver = CgminerDriver(MinerEndpoint(server.host, server.port), timeout=1.0)
        fleet = Fleet({"cg": driver})
        status = (await fleet.poll())["cg"]
        assert isinstance(status, MinerStatus)
        assert status.mining is False
        assert status.uptime_s == 578
        assert len(status.pools) == 2
        # Stopping it is where it already is: the read-back confirms it.
        assert (await fleet.command(["cg"], "stop"))["cg"].result is CommandResult.CONFIRMED
        # Starting it fails with the reason, not as a miner that is gone.
        outcome = (await fleet.command(["cg"], "start"))["cg"]
        assert outcome.result is CommandResult.FAILED
        assert isinstance(outcome.error, NoDevicesError)
        assert "no devices" in str(outcome.error)


async def test_writes_are_prepared_ahead_and_a_failure_stays_with_its_miner(
    session: aiohttp.ClientSession,
) -> None:
    ant, bos = AntminerServer(), BraiinsServer()
    async with running(ant, bos), LuxosServer() as lux:
        luxos = LuxosDriver(MinerEndpoint("127.0.0.1", lux.port), timeout=2)
        fleet = Fleet(
            {"ant": antminer(ant, session), "bos": braiins(bos, session), "lux": luxos}
            | {"dead": dead(session)}
        )
        assert all(isinstance(fleet.driver(key), PreparesWrites) for key in fleet.keys)
        failed = await fleet.prepare_writes()
        assert list(failed) == ["dead"]
        assert isinstance(failed["dead"], DeviceConnectionError)
        # Ready: the conf (and its digest challenge), the login token, the session.
        assert ant.counts["get_miner_conf"] == 1
        assert bos.counts["POST /auth/login"] == 1
        assert lux.commands() == ["logon"]
        outcomes = await fleet.command(["ant", "bos", "lux", "dead"], "stop", quick_readback=True)
        assert [key for key, o in outcomes.items() if o.confirmed] == ["ant", "bos", "lux"]
        # Each shed was its write alone, then the read-back: no cold round trip.
        assert ant.counts["get_miner_conf"] == 2  # the read-back
        assert bos.counts["POST /auth/login"] == 1
        assert lux.commands() == ["logon", "curtail", "config"]
        await fleet.close()


async def test_only_the_named_members_are_prepared(session: aiohttp.ClientSession) -> None:
    ant = AntminerServer()
    async with running(ant), LuxosServer() as lux:
        luxos = LuxosDriver(MinerEndpoint("127.0.0.1", lux.port), timeout=2)
        fleet = Fleet({"ant": antminer(ant, session), "lux": luxos})
        # A member that did not answer the poll is left out (it would only hold the
        # caller up until its timeout); an unknown key is no error, it may have left.
        assert await fleet.prepare_writes(["lux", "gone"]) == {}
        assert lux.commands() == ["logon"]
        assert ant.counts["get_miner_conf"] == 0
        await fleet.close()


async def test_a_shed_while_writes_are_prepared_is_not_held_up(
    session: aiohttp.ClientSession,
) -> None:
    async with LuxosServer() as lux:
        lux.latency = 0.3
        fleet = Fleet({"lux": LuxosDriver(MinerEndpoint("127.0.0.1", lux.port), timeout=2)})
        preparing = asyncio.create_task(fleet.prepare_writes())

        async def logon_sent() -> bool:
            return bool(lux.commands())

        await poll_until(logon_sent, 5, "the logon on its way", 0.01)
        outcomes = await fleet.command(["lux"], "stop", quick_readback=True)
        # The shed waited for the logon already sent, not for a second one of its own.
        assert outcomes["lux"].confirmed
        assert lux.commands() == ["logon", "curtail", "config"]
        assert await preparing == {}
        await fleet.close()
