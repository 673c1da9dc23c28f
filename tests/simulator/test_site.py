"""The simulator over real sockets: meter registers, control API, MQTT supply, pool outage, CLI."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
import contextlib
import json
from pathlib import Path
import shutil
import textwrap
import time
from typing import Any

import aiohttp
from pymodbus.client import AsyncModbusTcpClient
import pytest

from simulator import Site, SiteConfig
from simulator.cli import config_from_args
from simulator.mqtt import connect_packet
from simulator.scenario import Values, load_scenario, run as run_scenario
from simulator.uplink import UplinkSettings
from tests.conftest import ip_mode_block
from tests.simulator.test_miners_helpers import running_site
from tests.simulator.test_stratum import QUICK, stratum_pool, two_pools, until, user
from tests.support.modbus_meter import free_port

SCENARIOS = Path(__file__).resolve().parents[2] / "simulator" / "scenarios"
FAST = {"meter": "127.0.0.1:0", "control": "127.0.0.1:0", "pool": "127.0.0.1:0"}


@pytest.fixture
async def site(loopback_network: None) -> AsyncIterator[Site]:
    async with Site(SiteConfig(**FAST)) as running:
        yield running


async def read_meter(site: Site, address: int) -> list[int]:
    assert site.meter_address is not None
    host, port = site.meter_address
    client = AsyncModbusTcpClient(host, port=port, timeout=2, reconnect_delay=0)
    await client.connect()
    try:
        # The unit-id keyword differs between pymodbus releases; unit 1 is the default of both.
        response = await client.read_holding_registers(address, count=2)
    finally:
        client.close()
    assert not response.isError()
    return list(response.registers)


def uint32(registers: list[int]) -> int:
    return (registers[0] << 16) | registers[1]


def int32(registers: list[int]) -> int:
    value = uint32(registers)
    return value - (1 << 32) if value & 0x80000000 else value


async def control(site: Site, method: str, path: str, body: object = None) -> tuple[int, object]:
    assert site.control_address is not None
    host, port = site.control_address
    async with (
        aiohttp.ClientSession() as session,
        session.request(
            method,
            f"http://{host}:{port}{path}",
            data=json.dumps(body) if body is not None else None,
        ) as response,
    ):
        text = await response.text()
        try:
            return response.status, json.loads(text)
        except ValueError:
            return response.status, text


async def test_meter_registers_follow_the_control_api(site: Site) -> None:
    assert abs(uint32(await read_meter(site, 900)) / 100 - 50.0) <= 0.021
    status, grid = await control(site, "POST", "/api/grid", {"frequency_hz": 49.3})
    assert status == 200
    assert grid["frequency_hz"] == 49.3  # type: ignore[index]
    assert abs(uint32(await read_meter(site, 900)) / 100 - 49.3) <= 0.021
    # Physics adds up: P = √3·V·I·PF and the power equals the site draw.
    power_w = int32(await read_meter(site, 370))
    voltage = int32(await read_meter(site, 364)) / 100
    current = int32(await read_meter(site, 350)) / 100
    assert power_w == 12000
    assert voltage == 400.0
    assert abs(3**0.5 * voltage * current * 0.98 - power_w) < 5


async def test_the_meter_notes_its_first_read_after_a_frequency_change(site: Site) -> None:
    before = time.time()
    status, grid = await control(site, "POST", "/api/grid", {"frequency_hz": 49.1})
    assert status == 200
    assert isinstance(grid, dict)
    assert grid["changed_at"] >= before
    assert grid["first_read_at"] is None
    await read_meter(site, 900)
    first = site.state.grid.first_read_at
    assert first is not None
    assert first >= grid["changed_at"]
    await read_meter(site, 900)
    assert site.state.grid.first_read_at == first, "only the first read after the change"


async def test_state_shape(site: Site) -> None:
    status, state = await control(site, "GET", "/api/state")
    assert status == 200
    assert isinstance(state, dict)
    assert set(state) >= {"miners", "grid", "supply", "internet"}
    assert state["grid"]["frequency_hz"] == 50.0
    assert state["supply"]["power_kw"] == 600.0
    assert state["internet"]["up"] is True


@pytest.mark.parametrize(
    ("path", "body", "message"),
    [
        ("/api/grid", {"frequency_hz": "fast"}, '"frequency_hz" must be a number'),
        ("/api/grid", {"frequency_hz": float("inf")}, None),
        ("/api/grid", {"frequency_hz": 2000}, "between"),
        ("/api/supply", {"power_kw": -1}, "between"),
        ("/api/supply", {}, '"power_kw" must be a number'),
        ("/api/internet", {"up": "no"}, '"up" must be true or false'),
        ("/api/ambient", {"temperature_c": True}, "must be a number"),
        ("/api/faults", {"fault": "lightning"}, '"fault" must be'),
        ("/api/grid", [1, 2], "JSON object"),
    ],
)
async def test_bad_control_requests_are_refused_and_change_nothing(
    site: Site, path: str, body: object, message: str | None
) -> None:
    before = site.snapshot()
    status, text = await control(site, "POST", path, body)
    assert status == 400
    if message:
        assert message in str(text)
    assert site.snapshot() == before


async def test_malformed_json_is_refused(site: Site) -> None:
    assert site.control_address is not None
    host, port = site.control_address
    async with (
        aiohttp.ClientSession() as session,
        session.post(f"http://{host}:{port}/api/grid", data="{") as response,
    ):
        assert response.status == 400


async def test_meter_offline_fault_and_recovery(site: Site) -> None:
    status, _ = await control(site, "POST", "/api/faults", {"fault": "meter_offline"})
    assert status == 200
    assert site.meter_address is not None
    with pytest.raises(ConnectionRefusedError):
        await asyncio.open_connection(*site.meter_address)
    status, state = await control(site, "POST", "/api/faults", {"clear": True})
    assert state["grid"]["meter_online"] is True  # type: ignore[index]
    assert abs(uint32(await read_meter(site, 900)) / 100 - 50.0) <= 0.021


async def stratum(host: str, port: int, *lines: dict[str, object]) -> list[dict[str, object]]:
    reader, writer = await asyncio.open_connection(host, port)
    replies = []
    try:
        for line in lines:
            writer.write(json.dumps(line).encode() + b"\n")
            await writer.drain()
            replies.append(json.loads(await asyncio.wait_for(reader.readline(), 2)))
            if line["method"] == "mining.authorize":
                replies.append(json.loads(await asyncio.wait_for(reader.readline(), 2)))
                replies.append(json.loads(await asyncio.wait_for(reader.readline(), 2)))
    finally:
        writer.close()
    return replies


async def test_pool_speaks_stratum_and_goes_away_in_an_outage(site: Site) -> None:
    assert site.pool is not None
    host, port = site.pool.host, site.pool.port
    replies = await stratum(
        host,
        port,
        {"id": 1, "method": "mining.subscribe", "params": []},
        {"id": 2, "method": "mining.authorize", "params": ["worker", "x"]},
        {"id": 3, "method": "mining.submit", "params": ["worker", "1", "00", "65f0c8a0", "00"]},
        {"id": 4, "method": "mining.teleport", "params": []},
    )
    assert replies[0]["id"] == 1
    assert replies[1] == {"id": 2, "result": True, "error": None}
    assert replies[2]["method"] == "mining.set_difficulty"
    assert replies[3]["method"] == "mining.notify"
    # A share that is not one (a 1-byte extranonce2) is rejected; the session goes on.
    assert replies[4] == {"id": 3, "result": False, "error": [20, "Bad extranonce2 size", None]}
    assert replies[5]["error"][0] == 20  # type: ignore[index]
    assert (site.pool.accepted_shares, site.pool.rejected_shares) == (0, 1)

    status, internet = await control(site, "POST", "/api/internet", {"up": False})
    assert {key: internet[key] for key in ("up", "mode", "pool")} == {
        "up": False,
        "mode": "refuse",
        "pool": f"{host}:{port}",
    }
    assert internet["shares"]["rejected"] == 1
    with pytest.raises(ConnectionRefusedError):
        await asyncio.open_connection(host, port)
    await control(site, "POST", "/api/internet", {"up": True})
    assert (await stratum(host, port, {"id": 9, "method": "mining.subscribe", "params": []}))[0][
        "id"
    ] == 9


async def test_pool_survives_garbage(site: Site) -> None:
    assert site.pool is not None
    reader, writer = await asyncio.open_connection(site.pool.host, site.pool.port)
    writer.write(b"this is not json\n")
    await writer.drain()
    reply = json.loads(await asyncio.wait_for(reader.readline(), 2))
    assert reply["error"][0] == 20
    writer.write(b"x" * 70000 + b"\n")
    await writer.drain()
    try:
        rest = await asyncio.wait_for(reader.read(), 2)
    except ConnectionResetError:
        rest = b""
    assert rest == b"", "an oversized line closes the session"
    writer.close()


async def read_mqtt_messages(host: str, port: int, topic: str, count: int) -> dict[str, str]:
    """Subscribe with raw MQTT packets and collect `count` publishes."""
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(connect_packet("test-subscriber"))
    topic_bytes = topic.encode()
    body = b"\x00\x01" + len(topic_bytes).to_bytes(2, "big") + topic_bytes + b"\x00"
    writer.write(b"\x82" + bytes([len(body)]) + body)
    await writer.drain()
    assert (await reader.readexactly(4))[0] == 0x20  # CONNACK
    await reader.readexactly(5)  # SUBACK
    messages: dict[str, str] = {}
    try:
        while len(messages) < count:
            header = await asyncio.wait_for(reader.readexactly(1), 5)
            length, shift = 0, 0
            while True:
                byte = (await reader.readexactly(1))[0]
                length |= (byte & 0x7F) << shift
                shift += 7
                if not byte & 0x80:
                    break
            packet = await reader.readexactly(length)
            if header[0] & 0xF0 == 0x30:
                size = int.from_bytes(packet[:2], "big")
                messages[packet[2 : 2 + size].decode()] = packet[2 + size :].decode()
    finally:
        writer.close()
    return messages


@pytest.mark.skipif(
    not (shutil.which("mosquitto") or shutil.which("/usr/sbin/mosquitto")),
    reason="mosquitto missing",
)
async def test_supply_sensors_over_a_real_broker(loopback_network: None) -> None:
    port = free_port()
    async with Site(
        SiteConfig(
            meter=None, control="127.0.0.1:0", pool=None, mqtt=f"127.0.0.1:{port}", supply_kw=321
        )
    ) as site:
        discovery = await read_mqtt_messages("127.0.0.1", port, "homeassistant/sensor/#", 3)
        power = json.loads(discovery["homeassistant/sensor/bitcoin_mining_sim_power_w/config"])
        assert power["device_class"] == "power"
        assert power["unit_of_measurement"] == "W"
        # Every report counts, so a steady supply is never mistaken for a silent one.
        assert (power["force_update"], power["expire_after"]) == (True, 30)
        await control(site, "POST", "/api/supply", {"power_kw": 250})
        values = await read_mqtt_messages("127.0.0.1", port, "bitcoin_mining_sim/supply/#", 3)
        assert float(values["bitcoin_mining_sim/supply/power_w"]) in (321000.0, 250000.0)
        values = await read_mqtt_messages("127.0.0.1", port, "bitcoin_mining_sim/supply/power_w", 1)
        assert float(values["bitcoin_mining_sim/supply/power_w"]) == 250000.0


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--nominal-hz", "55"], "must be 50 or 60"),
        (["--meter", "nowhere"], "meter: expected HOST:PORT"),
        (["--supply-kw", "-5"], "supply must be >= 0"),
        (["--miners", "2000"], "miners: must be between 0 and 1000"),
        (["--miners", "many"], "invalid int value"),
        (["--containers", "kehua=1,avalon=2"], "avalon"),
        (["--scenario", "/nonexistent/dip.yaml"], "dip.yaml"),
        (["--scenario-speed", "0"], "scenario speed must be > 0"),
    ],
)
def test_bad_cli_values_fail_at_start(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        config_from_args(argv)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_cli_defaults() -> None:
    config = config_from_args([])
    assert (config.meter, config.control, config.mqtt) == (
        "127.0.0.1:15020",
        "127.0.0.1:18780",
        None,
    )


async def test_containers_and_a_scenario_run_with_the_site(loopback_network: None) -> None:
    async with ip_mode_block() as first:
        await check_containers_and_a_scenario(first)


async def check_containers_and_a_scenario(first: str) -> None:
    """The CLI's site (160 miners in IP mode) with containers and a scenario at 400x."""
    config = config_from_args(
        [
            *("--base-ip", first),
            *("--meter", "127.0.0.1:0", "--control", "127.0.0.1:0", "--pool", "127.0.0.1:0"),
            *("--containers", "kehua=1,wonderint=1", "--container-address", "127.0.0.1:0"),
            *("--scenario", "simulator/scenarios/evening_dip.yaml", "--scenario-speed", "400"),
        ]
    )
    site = Site(config)
    # The scenario's dip at 30 s is 75 ms of wall time at this speed, over before a loaded
    # loop may look at the grid: watch what the site applies (a real event), not the value.
    applied_hz: list[float] = []
    dipped = asyncio.Event()
    apply = site.apply_scenario

    async def watched(values: Values) -> None:
        await apply(values)
        if "frequency_hz" in values.get("grid", {}):
            applied_hz.append(site.state.grid.frequency_hz)
            if applied_hz[-1] < site.state.grid.nominal_hz:
                dipped.set()

    site.apply_scenario = watched  # type: ignore[method-assign]
    async with site:
        # The scenario moves the grid; the containers follow the site and answer requests.
        async with asyncio.timeout(30):
            await dipped.wait()
        # On the scenario's ramp from 50 Hz down to 49.3 Hz (where it is on it depends on when
        # the loop got round to the tick).
        assert 49.3 - 1e-9 <= min(applied_hz) < 50.0
        status, state = await control(site, "GET", "/api/state")
        assert status == 200
        assert isinstance(state, dict)
        assert [c["kind"] for c in state["containers"]] == ["kehua", "wonderint"]
        status, shown = await control(site, "POST", "/api/containers/1", {"enabled": False})
        assert status == 200
        assert site.containers[1].state.enabled is False
        status, _ = await control(site, "POST", "/api/containers/1", {"enabled": 3})
        assert status == 400
        status, text = await control(site, "POST", "/api/containers/7", {})
        assert (status, "no container 7" in str(text)) == (404, True)


UPLINK_SCENARIO = """
steps:
  - at: 0s
    internet: {up: false}
  - at: 1s
    internet: {mode: blackhole}
  - at: 2s
    internet: {mode: degraded, latency_ms: 200, jitter_ms: 0, loss: 0}
  - at: 3s
    internet: {mode: flap, down_s: 2, up_s: 2, down_mode: refuse}
  - at: 13s
    internet: {up: true}
"""


async def test_a_scenario_sets_the_uplink_as_the_control_api_does(
    loopback_network: None, tmp_path: Path
) -> None:
    path = tmp_path / "uplink.yaml"
    path.write_text(textwrap.dedent(UPLINK_SCENARIO), encoding="utf-8")
    speed = 10
    config = SiteConfig(**FAST | {"meter": None}, scenario=str(path), scenario_speed=speed)
    site = Site(config)
    applied: asyncio.Queue[tuple[float, UplinkSettings, asyncio.Event]] = asyncio.Queue()
    set_uplink = site.set_uplink
    started = time.monotonic()

    async def watched(settings: UplinkSettings) -> None:
        await set_uplink(settings)
        looked = asyncio.Event()
        await applied.put((time.monotonic() - started, settings, looked))
        # The scenario waits while the test looks at the pool: a later step only comes late.
        await looked.wait()

    site.set_uplink = watched  # type: ignore[method-assign]

    async def step(at_s: float, mode: str) -> tuple[dict[str, Any], asyncio.Event]:
        """The next mode the scenario set: not before its time; what the control API shows."""
        async with asyncio.timeout(30):
            elapsed, settings, looked = await applied.get()
        assert settings.mode == mode
        assert elapsed >= at_s / speed
        status, state = await control(site, "GET", "/api/state")
        assert status == 200
        assert isinstance(state, dict)
        internet: dict[str, Any] = state["internet"]
        assert internet["mode"] == mode
        return internet, looked

    async with site:
        assert site.pool is not None
        host, port = site.pool.host, site.pool.port

        internet, looked = await step(0, "refuse")  # up: false, as {"up": false} on the API
        assert internet["up"] is False
        with pytest.raises(ConnectionRefusedError):
            await asyncio.open_connection(host, port)
        looked.set()

        internet, looked = await step(1, "blackhole")
        assert internet["up"] is False
        # Nothing answers: the one connect the listen queue holds, then connects hang.
        with contextlib.suppress(OSError, TimeoutError):
            async with asyncio.timeout(0.5):
                _, writer = await asyncio.open_connection(host, port)
                writer.close()
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.5):
                await asyncio.open_connection(host, port)
        looked.set()

        internet, looked = await step(2, "degraded")
        assert (internet["up"], internet["latency_ms"], internet["loss"]) == (True, 200, 0)
        asked = time.monotonic()
        replies = await stratum(host, port, {"id": 1, "method": "mining.subscribe", "params": []})
        assert replies[0]["id"] == 1
        assert time.monotonic() - asked >= 0.2  # the reply waited the latency
        looked.set()

        internet, looked = await step(3, "flap")
        # The phases are scenario seconds: 2 s at ten times real time is 0.2 s.
        assert (internet["down_s"], internet["up_s"], internet["down_mode"]) == (0.2, 0.2, "refuse")
        downs = site.uplink.downs
        await until(lambda: site.uplink.downs >= downs + 2, 20, "two down phases of the flap")
        looked.set()

        internet, looked = await step(13, "up")  # up: true
        assert internet["up"] is True
        downs = site.uplink.downs
        replies = await stratum(
            host,
            port,
            {"id": 1, "method": "mining.subscribe", "params": []},
            {"id": 2, "method": "mining.authorize", "params": ["worker", "x"]},
        )
        assert replies[1] == {"id": 2, "result": True, "error": None}
        assert replies[3]["method"] == "mining.notify"
        assert site.uplink.downs == downs  # the flap has stopped
        looked.set()
        assert applied.empty()


async def test_the_flap_file_never_moves_a_miner(loopback_network: None) -> None:
    scenario = load_scenario(SCENARIOS / "uplink_flap.yaml")
    async with (
        stratum_pool(job_interval_s=0.2) as local,
        running_site(
            "whatsminer=1,luxos=1,braiins=1", miners=3, failover_delay_s=1.5, **QUICK
        ) as site,
    ):
        upstream = await two_pools(site, local)
        assert site.pool is not None
        downs = site.uplink.downs
        # A minute of 2 s dropouts at ten times real time: 0.2 s down, 0.5 s up, for 6 s. The
        # firmware's dead-pool delay is 1.5 s here (90 s on real firmware): no dropout reaches it.
        await run_scenario(scenario, site.apply_scenario, clock_speed=10)
        assert site.uplink.settings == UplinkSettings("up")
        assert site.uplink.downs >= downs + 5
        assert all(m.pool == upstream for m in site.miners)
        # A miner that had moved would have authorized on the local pool.
        assert not any(local.workers.get(user(m)) for m in site.miners)
        pool = site.pool
        accepted = pool.accepted_shares
        await until(lambda: pool.accepted_shares > accepted + 3, 15, "shares upstream")
