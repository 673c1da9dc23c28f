"""The container's water over real sockets: load, pump, cooling switch, time constant, override."""

from __future__ import annotations

from collections.abc import AsyncIterator
import math

import pytest

from simulator.container_state import ContainerState
from tests.simulator.container_client import (
    FCDU,
    PDU1,
    Container,
    close_container,
    int16,
    open_container,
)

TAU_S = 10.0


@pytest.fixture(params=["kehua", "wonderint"])
async def container(
    request: pytest.FixtureRequest, loopback_network: None
) -> AsyncIterator[Container]:
    running = await open_container(request.param, ContainerState(water_tau_s=TAU_S))
    try:
        yield running
    finally:
        await close_container(running)


async def inlet_c(container: Container) -> float:
    return int16(await container.read_one(FCDU, 201)) / 100


def relaxed(start: float, target: float, seconds: float) -> float:
    return target + (start - target) * math.exp(-seconds / TAU_S)


async def test_a_pump_fault_heats_the_water_with_the_time_constant(container: Container) -> None:
    # Full load at 30 °C, fans at 80 %: settled at 37.2 °C from the first read.
    assert await inlet_c(container) == pytest.approx(37.2)
    await container.server.control({"fault": "circulating_pump_fault"})
    # No circulation: towards 30 + 45 K at full load, with the 10 s time constant.
    container.clock.now += TAU_S
    assert await inlet_c(container) == pytest.approx(relaxed(37.2, 75.0, TAU_S), abs=0.01)
    if container.server.kind == "wonderint":  # T3 = T2 without flow
        assert int16(await container.read_one(FCDU, 211)) / 100 == pytest.approx(
            await inlet_c(container), abs=0.01
        )
    container.clock.now += 10 * TAU_S
    assert await inlet_c(container) == pytest.approx(75.0, abs=0.01)
    # Repaired: the pump and fans cool it back down.
    await container.server.control({"fault": "circulating_pump_fault", "active": False})
    container.clock.now += 2 * TAU_S
    assert await inlet_c(container) == pytest.approx(relaxed(75.0, 37.2, 2 * TAU_S), abs=0.05)


async def test_cooling_switched_off_heats_the_water(container: Container) -> None:
    assert await inlet_c(container) == pytest.approx(37.2)
    await container.write(FCDU, 601, 0)
    container.clock.now += TAU_S / 2
    assert await inlet_c(container) == pytest.approx(relaxed(37.2, 75.0, TAU_S / 2), abs=0.01)
    await container.write(FCDU, 601, 1)
    container.clock.now += 20 * TAU_S
    assert await inlet_c(container) == pytest.approx(37.2, abs=0.01)


async def test_the_water_follows_the_load(container: Container) -> None:
    # Every socket of PDUs 1-9 off: a quarter of the load; the fans go on running (the
    # fan-less water would be 35 °C, above their 30 °C stop): 30 + 7.2 K x 0.25.
    for pdu in range(9):
        assert not (await container.write_many(PDU1 + pdu, 289, [2] * 20)).isError()
    container.clock.now += TAU_S
    assert await inlet_c(container) == pytest.approx(relaxed(37.2, 31.8, TAU_S), abs=0.01)
    container.clock.now += 20 * TAU_S
    assert await inlet_c(container) == pytest.approx(31.8, abs=0.01)
    assert await container.read_one(FCDU, 607) == 1


async def test_the_inlet_override_pins_the_water(container: Container) -> None:
    await container.server.control({"inlet_temp_c": 38.5})
    assert await inlet_c(container) == 38.5
    container.clock.now += 10 * TAU_S
    assert await inlet_c(container) == 38.5
    assert await container.read(FCDU, 291, 1) == [0]
    assert container.server.snapshot()["inlet_override_c"] == 38.5
    # Past the controller's 40 °C it raises high_inlet_temp_unit (bit 8).
    await container.server.control({"inlet_temp_c": 41})
    assert await container.read(FCDU, 291, 1) == [0x0080]
    # Released, the physics takes it back from there.
    await container.server.control({"inlet_temp_c": None})
    container.clock.now += TAU_S
    assert await inlet_c(container) == pytest.approx(relaxed(41.0, 37.2, TAU_S), abs=0.01)
    assert await container.read(FCDU, 291, 1) == [0]


async def test_the_time_constant_is_set_at_run_time(container: Container) -> None:
    await container.server.control({"water_tau_s": 0, "fault": "circ_pump_inverter_fault"})
    assert await inlet_c(container) == pytest.approx(75.0)
    assert container.server.snapshot()["water_tau_s"] == 0


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"inlet_temp_c": 150}, '"inlet_temp_c" must be between -20 and 100'),
        ({"inlet_temp_c": "38"}, '"inlet_temp_c" must be a number'),
        ({"inlet_temp_c": True}, '"inlet_temp_c" must be a number'),
        ({"water_tau_s": -1}, '"water_tau_s" must be between 0 and 3600'),
        ({"water_tau_s": None}, '"water_tau_s" must be a number'),
    ],
)
async def test_bad_water_requests_change_nothing(
    container: Container, body: dict[str, object], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        await container.server.control({"smoke": True, **body})
    assert (container.state.inlet_override_c, container.state.water_tau_s) == (None, TAU_S)
    assert container.state.smoke is False
