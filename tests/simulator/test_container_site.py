"""Containers in the site: their PDU sockets power the miners mapped to them, over real sockets."""

from __future__ import annotations

import asyncio

import pytest

from simulator import Site
from simulator.container_site import SocketPlace, socket_map
from simulator.miners import SimMiner
from tests.simulator.container_client import (
    FCDU,
    ILLEGAL_ADDRESS,
    ILLEGAL_FUNCTION,
    PDU1,
    Clock,
    Container,
    connect,
)
from tests.simulator.test_miners_fleet import control
from tests.simulator.test_miners_helpers import rpc, running_site, status, wait_for

CONTAINERS = {
    "containers": ("kehua", "wonderint"),
    "container_address": "127.0.0.1:0",
    "container_water_tau_s": 0,
    "wake_delay_s": 0.3,
}


def test_the_miners_are_mapped_in_blocks() -> None:
    places = socket_map(160, 2)
    assert places[0] == SocketPlace(0, 1, 1)
    assert places[19] == SocketPlace(0, 1, 20)
    assert places[20] == SocketPlace(0, 2, 1)
    assert places[79] == SocketPlace(0, 4, 20)
    assert places[80] == SocketPlace(1, 1, 1)
    assert places[159] == SocketPlace(1, 4, 20)
    # Uneven: blocks of ceil(5 / 2) = 3.
    assert [(p.container, p.socket) for p in socket_map(5, 2).values()] == [
        (0, 1),
        (0, 2),
        (0, 3),
        (1, 1),
        (1, 2),
    ]
    # 500 a container: the 240 sockets take the first 240 of each block.
    big = socket_map(1000, 2)
    assert len(big) == 480
    assert big[239] == SocketPlace(0, 12, 20)
    assert 240 not in big
    assert big[500] == SocketPlace(1, 1, 1)
    assert socket_map(0, 2) == socket_map(10, 0) == {}


async def logged_in(site: Site, index: int) -> Container:
    container = await connect(site.containers[index], Clock())
    assert not (await container.login()).isError()
    return container


async def refused(miner: SimMiner) -> bool:
    try:
        _, writer = await asyncio.open_connection(miner.host, miner.api_port)
    except ConnectionRefusedError:
        return True
    writer.close()
    return False


async def test_a_socket_powers_its_miner(loopback_network: None) -> None:
    async with running_site("antminer", miners=4, **CONTAINERS) as site:
        assert site.fleet is not None
        code, state = await control(site, "GET", "/api/state")
        assert code == 200
        assert [miner["container"] for miner in state["miners"]] == [
            {"container": 0, "pdu": 1, "socket": 1},
            {"container": 0, "pdu": 1, "socket": 2},
            {"container": 1, "pdu": 1, "socket": 1},
            {"container": 1, "pdu": 1, "socket": 2},
        ]
        assert all(miner["powered"] for miner in state["miners"])
        assert [container["miners"] for container in state["containers"]] == [[0, 1], [2, 3]]
        first, second = site.miners[0], site.miners[1]
        await wait_for(lambda: second.link is not None and second.link.ready, timeout=5)
        container = await logged_in(site, 0)
        try:
            # The PDU draws what its two miners draw; the other PDUs feed nothing.
            pdu_kw = (await container.read_one(PDU1, 81)) / 100
            assert pdu_kw == pytest.approx((first.power_w + second.power_w) / 1000, abs=0.2)
            assert await container.read_one(PDU1 + 1, 81) == 0
            # Socket 2 of PDU 1 off (reg 309 - 2): its miner loses power at once.
            assert not (await container.write(PDU1, 307, 2)).isError()
            assert (second.state, second.power_w, second.hashing) == ("offline", 0, False)
            await site.fleet.settle()
            assert await refused(second)
            await wait_for(lambda: second.link is not None and not second.link.ready, timeout=5)
            code, state = await control(site, "GET", "/api/state")
            listed = state["miners"][1]
            assert (listed["state"], listed["power_w"], listed["powered"]) == ("offline", 0, False)
            assert listed["stratum"]["connected"] is False
            assert (await container.read_one(PDU1, 81)) / 100 == pytest.approx(
                first.power_w / 1000, abs=0.2
            )
            # The cooling switch cuts no socket.
            assert not (await container.write(FCDU, 601, 0)).isError()
            assert first.state == "mining"
            # Back on: it boots as after a power loss, ramps, then mines.
            assert not (await container.write(PDU1, 307, 1)).isError()
            await site.fleet.settle()
            assert second.state == "starting"
            assert status(await rpc(second, "version"))["Code"] == 22
            await wait_for(lambda: second.state == "mining", timeout=5)
            assert second.cycles == 0  # a power loss is no stop by the API
        finally:
            container.client.close()


async def test_the_control_api_switches_a_socket_and_its_miner(loopback_network: None) -> None:
    async with running_site("antminer", miners=4, **CONTAINERS) as site:
        miner = site.miners[2]
        off = {"socket": {"pdu": 1, "socket": 1, "on": False}}
        code, shown = await control(site, "POST", "/api/containers/1", off)
        assert code == 200
        assert shown["sockets_on"] == 239
        assert shown["miners"] == [2, 3]
        # The answer comes once the miner's ports are closed.
        assert await refused(miner)
        assert miner.state == "offline"
        code, shown = await control(site, "POST", "/api/containers/1", {"inlet_temp_c": 38})
        assert (code, shown["inlet_temp_c"]) == (200, 38.0)
        on = {"socket": {"pdu": 1, "socket": 1, "on": True}}
        code, _ = await control(site, "POST", "/api/containers/1", on)
        assert miner.state == "starting"
        assert not await refused(miner)


async def test_the_offline_fault_and_the_socket_both_hold_a_miner_down(
    loopback_network: None,
) -> None:
    async with running_site("antminer", miners=2, **CONTAINERS) as site:
        assert site.fleet is not None
        miner = site.miners[0]
        await site.fleet.set_fault(miner, "offline", True)
        site.containers[0].state.set_socket(1, 1, False)
        site.containers[0].changed()
        await site.fleet.settle()
        await site.fleet.set_fault(miner, "offline", False)
        assert miner.state == "offline"  # still no power
        assert await refused(miner)
        site.containers[0].state.set_socket(1, 1, True)
        site.containers[0].changed()
        await site.fleet.settle()
        assert miner.state == "starting"
        await site.fleet.set_fault(miner, "offline", True)
        site.containers[0].state.set_socket(1, 1, False)
        site.containers[0].changed()
        site.containers[0].state.set_socket(1, 1, True)
        site.containers[0].changed()
        await site.fleet.settle()
        assert miner.state == "offline"  # the fault still holds it
        await site.fleet.set_fault(miner, "offline", False)
        assert miner.state == "starting"
        assert not await refused(miner)


async def test_the_container_load_is_the_miners_draw(loopback_network: None) -> None:
    async with running_site("antminer", miners=4, **CONTAINERS) as site:
        server = site.containers[1]
        server.refresh()
        miners_kw = sum(miner.power_w for miner in site.miners[2:]) / 1000
        assert server.state.it_load_kw() == pytest.approx(miners_kw, rel=0.02)
        # Asleep, the miners draw their sleep power, and the water cools with the load.
        before = server.state.inlet_temp_c()
        for miner in site.miners[2:]:
            miner.stop()
        # Their power falls to the sleep draw over 2 s.
        await wait_for(lambda: sum(miner.power_w for miner in site.miners[2:]) < 100, 5)
        server.refresh()
        assert server.state.it_load_kw() < 0.1
        assert server.state.inlet_temp_c() < before


async def test_the_water_starts_where_the_miners_load_takes_it(loopback_network: None) -> None:
    slow = {**CONTAINERS, "container_water_tau_s": 60}
    async with running_site("antminer", miners=4, **slow) as site:
        server = site.containers[0]
        server.refresh()
        # Two miners in a 720 kW container: the fans stay off, the water near ambient (30 °C),
        # not where a modelled full load took it when the container started.
        assert server.state.fan_running is False
        assert server.state.inlet_temp_c() == pytest.approx(server.state.target_inlet_c(), abs=0.05)
        assert 30 < server.state.inlet_temp_c() < 30.5


async def test_unit_faults_and_logins_through_the_control_api(loopback_network: None) -> None:
    async with running_site("antminer", miners=2, **CONTAINERS) as site:
        path = "/api/containers/0"
        fault = {"unit_fault": {"unit": "pdu01", "fault": "illegal_address"}}
        code, shown = await control(site, "POST", path, fault)
        assert (code, shown["unit_faults"]) == (
            200,
            {"9": {"fault": "illegal_address", "value": None}},
        )
        container = await logged_in(site, 0)
        try:
            assert await container.read_error(PDU1, 46) == ILLEGAL_ADDRESS
            bad = {"unit_fault": {"unit": "pdu13", "fault": "timeout"}}
            code, text = await control(site, "POST", path, bad)
            assert (code, "no unit 'pdu13'" in str(text)) == (400, True)
            new = {"credentials": {"username": "ops", "password": "x"}}
            code, shown = await control(site, "POST", path, new)
            assert (code, shown["login"]["username"]) == (200, "ops")
            assert (await container.write(FCDU, 601, 0)).exception_code == ILLEGAL_FUNCTION
            code, shown = await control(site, "POST", path, {"clear_faults": True})
            assert (code, shown["unit_faults"]) == (200, {})
            assert await container.read(PDU1, 46, 1) == [1]
            code, state = await control(site, "GET", "/api/state")
            assert state["containers"][0]["login"] == {
                "username": "ops",
                "accepted": 1,
                "refused": 0,
            }
        finally:
            container.client.close()
