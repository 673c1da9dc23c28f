"""The container client against the simulator's container server (real Modbus TCP on loopback)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
import math

import pytest

from custom_components.bitcoin_mining.miningsite.containers import (
    ContainerClient,
    ContainerKind,
    ContainerStatus,
)
from custom_components.bitcoin_mining.miningsite.exceptions import (
    ContainerCommandError,
    ContainerKindError,
    ContainerValueError,
)
from simulator.container_maps import CHALLENGE
from simulator.container_state import ContainerState
from simulator.containers import ContainerServer
from tests.support.container_peer import expected_login
from tests.support.modbus_meter import free_port

HOST = "127.0.0.1"
USER, PASSWORD = "operator", "pw-1"


@dataclass
class Running:
    server: ContainerServer
    client: ContainerClient

    @property
    def state(self) -> ContainerState:
        return self.server.state


async def start(
    kind: str,
    *,
    client_kind: ContainerKind | None = None,
    state: ContainerState | None = None,
    server_fan_reg: int = 613,
    fan_registers: tuple[int, int, int] = (613, 614, 615),
) -> Running:
    server = ContainerServer(
        kind,
        state or ContainerState(),
        HOST,
        free_port(HOST),
        fan_threshold_reg=server_fan_reg,
    )
    await server.start()
    client = ContainerClient(
        HOST,
        server.port,
        kind=client_kind,
        username=USER,
        password=PASSWORD,
        timeout=2.0,
        fan_threshold_registers=fan_registers,
    )
    client.readback_interval_s = 0.01
    return Running(server, client)


async def stop(running: Running) -> None:
    await running.client.close()
    await running.server.stop()


@pytest.fixture(params=list(ContainerKind))
async def container(
    request: pytest.FixtureRequest, loopback_network: None
) -> AsyncIterator[Running]:
    running = await start(request.param, client_kind=request.param)
    try:
        yield running
    finally:
        await stop(running)


async def test_a_read_shows_the_container(container: Running) -> None:
    state = container.state
    state.ambient_c, state.humidity_pct = 28.25 if container.server.kind == "kehua" else 28.2, 51.0
    state.set_socket(4, 9, False)
    state.water_ingress = True
    reading = await container.client.read()
    kind = ContainerKind(container.server.kind)
    assert reading.kind is kind
    assert reading.status is ContainerStatus.RUNNING
    assert reading.unit_errors == {}
    assert reading.raw_errors == frozenset()
    assert reading.ambient is not None
    assert reading.ambient.temperature_c == state.ambient_c
    assert reading.ambient.humidity == 51.0
    assert reading.environment is not None
    assert reading.environment.water_ingress
    assert not reading.environment.smoke
    assert reading.cdu is not None
    assert reading.cdu.inlet_temp_c == pytest.approx(state.inlet_temp_c(), abs=0.01)
    assert reading.power_w == pytest.approx(state.power_w(), rel=1e-3)
    assert len(reading.meters) == 4
    assert len(reading.pdus) == 12
    pdu4 = reading.pdus[3]
    assert pdu4 is not None
    assert pdu4.sockets.count(False) == 1
    assert pdu4.sockets[8] is False
    assert pdu4.total_power == pytest.approx(state.pdu_power_kw(4))
    assert reading.diagnostics is not None
    assert reading.diagnostics.software_version == 120
    assert container.client.last_success is not None


async def test_raw_errors_make_the_status_error(container: Running) -> None:
    container.state.set_fault("circulating_pump_fault")
    container.state.set_fault("power_fault")
    container.state.set_fault("temp_sensor_chilled_water_return_fault")
    reading = await container.client.read()
    assert reading.raw_errors == {
        "circulating_pump_fault",
        "power_fault",
        "temp_sensor_chilled_water_return_fault",
    }
    assert reading.status is ContainerStatus.ERROR
    assert reading.cdu is not None
    assert not reading.cdu.pump_running
    assert reading.cdu.pump_fault is (container.server.kind == "kehua")
    container.state.faults.clear()
    container.state.enabled = False
    reading = await container.client.read()
    assert reading.status is ContainerStatus.STOPPED
    assert reading.raw_errors == frozenset()


async def test_the_login_answers_the_challenge(container: Running) -> None:
    await container.client.read()
    await container.client.read()
    # Once per connection, with SHA-256(challenge ‖ MD5(user) ‖ MD5(password)).
    assert container.state.logins == 1
    assert container.state.last_login == expected_login(USER, PASSWORD, CHALLENGE)
    await container.client.close()
    await container.client.login()
    assert container.state.logins == 2


@pytest.mark.parametrize("kind", list(ContainerKind))
async def test_the_kind_is_detected(kind: ContainerKind, loopback_network: None) -> None:
    for enabled in (True, False):
        running = await start(kind, state=ContainerState(enabled=enabled))
        try:
            assert await running.client.detect_kind() is kind
            assert running.client.kind is kind
            reading = await running.client.read()
            assert reading.kind is kind
        finally:
            await stop(running)
        running = await start(kind, state=ContainerState(enabled=enabled))
        try:
            # Not configured: the first read detects it.
            assert (await running.client.read()).kind is kind
            assert running.client.kind is kind
        finally:
            await stop(running)


@pytest.mark.parametrize("kind", list(ContainerKind))
async def test_a_container_of_the_other_kind_is_refused(
    kind: ContainerKind, loopback_network: None
) -> None:
    other = ContainerKind.WONDERINT if kind is ContainerKind.KEHUA else ContainerKind.KEHUA
    running = await start(kind, client_kind=other)
    try:
        with pytest.raises(ContainerKindError, match=f"configured {other} but is {kind}"):
            await running.client.read()
        # detect_kind tells what it is, and leaves the configured kind alone.
        assert await running.client.detect_kind() is kind
        assert running.client.kind is other
    finally:
        await stop(running)


async def test_a_kind_that_cannot_be_told(loopback_network: None) -> None:
    state = ContainerState(enabled=False, ambient_c=4.0, humidity_pct=8.0)
    running = await start("kehua", state=state)
    try:
        with pytest.raises(ContainerKindError, match="no register tells them apart"):
            await running.client.detect_kind()
        with pytest.raises(ContainerKindError, match="cannot tell Kehua from Wonderint"):
            await running.client.read()
        assert running.client.kind is None
        # Configured, the same container reads (nothing contradicts the configuration).
        running.client.kind = ContainerKind.KEHUA
        assert (await running.client.read()).ambient is not None
    finally:
        await stop(running)


async def test_switching_one_socket_a_pdu_and_all(container: Running) -> None:
    state, client = container.state, container.client
    await client.set_socket(2, 5, False)
    assert not state.socket_on(2, 5)
    assert sum(map(sum, state.sockets)) == 239
    await client.set_socket(7, None, False)
    assert not any(state.sockets[6])
    assert sum(map(sum, state.sockets)) == 219
    await client.set_socket(None, None, False)
    assert not any(map(any, state.sockets))
    await client.set_socket(None, None, True)
    assert all(map(all, state.sockets))
    reading = await client.read()
    assert all(pdu is not None and all(pdu.sockets) for pdu in reading.pdus)


async def test_switching_the_cooling_system(container: Running) -> None:
    await container.client.set_cooling(False)
    assert not container.state.enabled
    reading = await container.client.read()
    assert reading.cdu is not None
    assert not reading.cdu.system_main_control
    assert reading.status is ContainerStatus.STOPPED
    await container.client.set_cooling(True)
    assert container.state.enabled


async def test_setting_fan_thresholds(container: Running) -> None:
    state = container.state
    await container.client.set_fan_thresholds(running_speed=55.5, start_temp=33, stop_temp=28.25)
    assert (state.fan_speed_pct, state.fan_start_c, state.fan_stop_c) == (55.5, 33.0, 28.25)
    # None leaves a threshold alone; 0 is written (upstream's truthiness test never could).
    await container.client.set_fan_thresholds(stop_temp=0)
    assert (state.fan_speed_pct, state.fan_start_c, state.fan_stop_c) == (55.5, 33.0, 0.0)
    reading = await container.client.read()
    assert reading.cdu is not None
    assert reading.cdu.fan_running_speed == 55.5
    assert reading.cdu.fan_stop_temp_c == 0


async def test_fan_threshold_registers_are_configurable(loopback_network: None) -> None:
    # A container that keeps them at 614-616 (the upstream read side).
    running = await start(
        "kehua", client_kind=ContainerKind.KEHUA, server_fan_reg=614, fan_registers=(614, 615, 616)
    )
    try:
        await running.client.set_fan_thresholds(running_speed=60, start_temp=36, stop_temp=31)
        state = running.state
        assert (state.fan_speed_pct, state.fan_start_c, state.fan_stop_c) == (60, 36, 31)
        reading = await running.client.read()
        assert reading.cdu is not None
        assert reading.cdu.fan_start_temp_c == 36
    finally:
        await stop(running)
    # The default addresses against that container: refused, and said so.
    running = await start("kehua", client_kind=ContainerKind.KEHUA, server_fan_reg=614)
    try:
        with pytest.raises(ContainerCommandError, match="reg 613.*illegal data address"):
            await running.client.set_fan_thresholds(running_speed=60)
    finally:
        await stop(running)


@pytest.mark.parametrize(
    ("pdu", "socket", "message"),
    [
        (0, 1, "no PDU 0"),
        (13, 1, "no PDU 13"),
        (1, 0, "no socket 0"),
        (1, 21, "no socket 21"),
        (True, 1, "no PDU True"),
        ("3", 1, "no PDU '3'"),
        (None, 4, "a socket needs its PDU"),
    ],
)
async def test_a_socket_that_does_not_exist(
    container: Running, pdu: object, socket: object, message: str
) -> None:
    with pytest.raises(ContainerValueError, match=message):
        await container.client.set_socket(pdu, socket, False)  # type: ignore[arg-type]
    assert all(map(all, container.state.sockets))


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({}, "at least one"),
        ({"running_speed": 101}, "running_speed must be between 0 and 100"),
        ({"start_temp": -25}, "start_temp must be between -20 and 100"),
        ({"stop_temp": math.nan}, "stop_temp must be a number"),
        ({"running_speed": "50"}, "running_speed must be a number"),
        ({"start_temp": 30, "stop_temp": 30}, "must be below the start"),
    ],
)
async def test_fan_thresholds_out_of_range(
    container: Running, values: dict[str, object], message: str
) -> None:
    with pytest.raises(ContainerValueError, match=message):
        await container.client.set_fan_thresholds(**values)  # type: ignore[arg-type]
    assert container.state.fan_speed_pct == 80


def test_bad_client_settings() -> None:
    for options, message in (
        ({"port": 0}, "port"),
        ({"timeout": 0}, "timeout"),
        ({"fan_threshold_registers": (613, 613, 615)}, "three different"),
        ({"fan_threshold_registers": (0, 1, 2)}, "1..65536"),
        ({"fan_threshold_registers": (613.0, 614, 615)}, "1..65536"),
    ):
        with pytest.raises(ContainerValueError, match=message):
            ContainerClient(HOST, kind=None, username="u", password="p", **options)  # type: ignore[arg-type]
    client = ContainerClient(HOST, kind=None, username="u", password="secret")
    assert "secret" not in repr(client)


async def test_reads_and_writes_take_turns(container: Running) -> None:
    reads = [container.client.read() for _ in range(3)]
    writes = [container.client.set_socket(1, socket, False) for socket in (1, 2, 3)]
    results = await asyncio.gather(*reads, *writes)
    assert all(result.unit_errors == {} for result in results[:3] if result is not None)
    assert container.state.sockets[0][:4] == [False, False, False, True]
