"""The site over real sockets: grid loop, supply, network health, unload, diagnostics."""

from __future__ import annotations

import asyncio
from datetime import timedelta
import logging

from freezegun.api import FrozenDateTimeFactory
from homeassistant.const import STATE_OFF, STATE_ON, STATE_UNAVAILABLE, STATE_UNKNOWN
from homeassistant.core import HomeAssistant
from homeassistant.helpers import device_registry as dr, entity_registry as er, issue_registry as ir
from homeassistant.util import dt as dt_util
import pytest
from pytest_homeassistant_custom_component.common import MockConfigEntry, async_fire_time_changed

from custom_components.bitcoin_mining.const import (
    CONF_GRID_INTERVAL,
    CONF_METER_HOST,
    CONF_MINER_PASSWORD,
    CONF_POOL_HOST,
    CONF_PROBE_HOST,
    CONF_PROBE_PORT,
    CONF_SUPPLY_CURRENT_ENTITY,
    CONF_SUPPLY_POWER_ENTITIES,
    CONF_SUPPLY_VOLTAGE_ENTITY,
    DOMAIN,
    IMPLAUSIBLE_READINGS_FOR_REPAIR,
)
from custom_components.bitcoin_mining.coordinator import GridCoordinator
from custom_components.bitcoin_mining.diagnostics import async_get_config_entry_diagnostics
from tests.support.modbus_meter import MeterServer

from .conftest import set_supply, site_data, wait_for_state

FREQUENCY = "sensor.test_site_grid_frequency"
UNDER_FREQUENCY = "binary_sensor.test_site_grid_under_frequency"
SUPPLY = "sensor.test_site_supply_power"
AVAILABLE = "sensor.test_site_available_power"
SUPPLY_ENERGY = "sensor.test_site_supply_energy"
INTERNET = "binary_sensor.test_site_internet"
POOL_LATENCY = "sensor.test_site_pool_latency"
POOL_WORK_LATENCY = "sensor.test_site_pool_work_latency"
POOL_REACHABLE = "binary_sensor.test_site_pool_reachable"


async def park_the_grid_loop(grid: GridCoordinator) -> None:
    """Make the background grid loop wait an hour, and return once it does.

    The loop reads the interval after each refresh, so once a refresh ends after the
    change, the loop sleeps for an hour before reading again.
    """
    grid.interval = 3600
    # Every read below is to reach the listeners (the tests wait on them), not one a second.
    grid.publish_every_s = 0
    await next_grid_update(grid)


async def next_grid_update(grid: GridCoordinator) -> None:
    """Return once the grid coordinator next tells its listeners (a success, or a first failure)."""
    refreshed = asyncio.Event()
    remove = grid.async_add_listener(refreshed.set)
    try:
        async with asyncio.timeout(10):
            await refreshed.wait()
    finally:
        remove()


async def refresh_site(hass: HomeAssistant, entry: MockConfigEntry) -> None:
    await entry.runtime_data.site.async_refresh()
    await hass.async_block_till_done()


async def test_site_device_and_entities(hass: HomeAssistant, loaded_entry: MockConfigEntry) -> None:
    (device,) = dr.async_entries_for_config_entry(dr.async_get(hass), loaded_entry.entry_id)
    assert device.identifiers == {(DOMAIN, "test_site")}
    assert device.name == "Test site"
    entities = er.async_entries_for_config_entry(er.async_get(hass), loaded_entry.entry_id)
    assert {e.entity_id for e in entities} >= {
        FREQUENCY,
        UNDER_FREQUENCY,
        SUPPLY,
        AVAILABLE,
        INTERNET,
        POOL_LATENCY,
    }
    assert all(e.device_id == device.id for e in entities)
    assert hass.states.get(FREQUENCY).state == "50.0"
    assert hass.states.get(FREQUENCY).attributes["unit_of_measurement"] == "Hz"
    assert hass.states.get(UNDER_FREQUENCY).state == STATE_OFF
    assert hass.states.get("sensor.test_site_under_frequency_threshold").state == "49.5"


async def test_frequency_tracks_the_meter_and_under_frequency_turns_on(
    hass: HomeAssistant, loaded_entry: MockConfigEntry, meter_server: MeterServer
) -> None:
    meter_server.set_frequency(49.3)
    await wait_for_state(hass, FREQUENCY, "49.3")
    await wait_for_state(hass, UNDER_FREQUENCY, STATE_ON)
    meter_server.set_frequency(49.98)
    await wait_for_state(hass, UNDER_FREQUENCY, STATE_OFF)
    assert hass.states.get(FREQUENCY).state == "49.98"


async def test_a_lone_low_sample_is_confirmed_before_it_counts(
    hass: HomeAssistant, loaded_entry: MockConfigEntry, meter_server: MeterServer
) -> None:
    grid = loaded_entry.runtime_data.grid
    # Park the background loop, so only the reads below consume the scripted values.
    await park_the_grid_loop(grid)
    # The next read is a lone 48 Hz glitch; the confirmation read sees 50 Hz.
    meter_server.script_frequencies([48.0, 50.0])
    await grid.async_refresh()
    assert grid.data.under_frequency is False
    assert [s.hz for s in list(grid.samples)[-2:]] == [48.0, 50.0]
    # A sustained dip: both reads are low.
    meter_server.script_frequencies([49.2, 49.2])
    await grid.async_refresh()
    assert grid.data.under_frequency is True


async def test_the_grid_entities_hear_once_a_second_and_a_dip_at_once(
    hass: HomeAssistant, loaded_entry: MockConfigEntry, meter_server: MeterServer
) -> None:
    grid = loaded_entry.runtime_data.grid
    await park_the_grid_loop(grid)
    grid.publish_every_s = 3600  # nothing goes out on the clock during this test
    heard: list[bool] = []
    remove = grid.async_add_listener(lambda: heard.append(grid.data.under_frequency))
    try:
        # Steady readings, read many times a second: the listeners already heard them.
        meter_server.script_frequencies([50.0] * 5)
        samples_before = len(grid.samples)
        for _ in range(5):
            await grid.async_refresh()
        assert heard == []
        # Every read still reaches the allocation core's frequency history.
        assert len(grid.samples) == samples_before + 5
        # A dip (both reads low) goes out at once, and so does its end.
        meter_server.script_frequencies([49.2, 49.2, 50.0])
        await grid.async_refresh()
        await grid.async_refresh()
        assert heard == [True, False]
        # A failed read goes out at once too (the entities become unavailable).
        await meter_server.stop()
        await grid.async_refresh()
        assert not grid.last_update_success
        assert heard == [True, False, False]
    finally:
        remove()


async def test_meter_outage_is_logged_once_and_recovers(
    hass: HomeAssistant,
    loaded_entry: MockConfigEntry,
    meter_server: MeterServer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    await meter_server.stop()
    await wait_for_state(hass, FREQUENCY, STATE_UNAVAILABLE)
    await wait_for_state(hass, UNDER_FREQUENCY, STATE_UNAVAILABLE)
    grid = loaded_entry.runtime_data.grid
    for _ in range(5):
        await grid.async_refresh()
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR and "grid" in r.getMessage()]
    assert len(errors) == 1, [r.getMessage() for r in errors]

    await meter_server.start()
    await wait_for_state(hass, FREQUENCY, "50.0", timeout=5)
    assert hass.states.get(UNDER_FREQUENCY).state == STATE_OFF


@pytest.mark.parametrize("nonsense_hz", [0.0, 655.35])
async def test_nonsense_readings_are_rejected_and_raise_a_repair(
    hass: HomeAssistant,
    loaded_entry: MockConfigEntry,
    meter_server: MeterServer,
    nonsense_hz: float,
) -> None:
    grid = loaded_entry.runtime_data.grid
    issue_id = f"implausible_frequency_{loaded_entry.entry_id}"
    meter_server.set_frequency(nonsense_hz)
    await wait_for_state(hass, FREQUENCY, STATE_UNAVAILABLE)
    assert hass.states.get(UNDER_FREQUENCY).state == STATE_UNAVAILABLE, (
        "nonsense must never shed on its own"
    )
    for _ in range(IMPLAUSIBLE_READINGS_FOR_REPAIR):
        await grid.async_refresh()
    issue = ir.async_get(hass).async_get_issue(DOMAIN, issue_id)
    assert issue is not None
    assert issue.translation_key == "implausible_frequency"

    meter_server.set_frequency(50.0)
    await wait_for_state(hass, FREQUENCY, "50.0")
    assert ir.async_get(hass).async_get_issue(DOMAIN, issue_id) is None


async def test_supply_and_available_power(
    hass: HomeAssistant, loaded_entry: MockConfigEntry
) -> None:
    # 300 kW supply - 10 kW overhead - 5 kW margin.
    assert hass.states.get(SUPPLY).state == "300.0"
    assert hass.states.get(AVAILABLE).state == "285.0"
    set_supply(hass, 12000, "W")
    await refresh_site(hass, loaded_entry)
    assert hass.states.get(SUPPLY).state == "12.0"
    assert hass.states.get(AVAILABLE).state == "0.0", "available power is never negative"


async def test_supply_energy_counts_known_supply_and_never_guesses_a_gap(
    hass: HomeAssistant, loaded_entry: MockConfigEntry, freezer: FrozenDateTimeFactory
) -> None:
    state = hass.states.get(SUPPLY_ENERGY)
    assert state.attributes["state_class"] == "total_increasing"
    assert state.attributes["unit_of_measurement"] == "kWh"
    # A poll on the frozen clock first (setup polled before the clock was frozen).
    await refresh_site(hass, loaded_entry)
    start = float(hass.states.get(SUPPLY_ENERGY).state)

    def counted() -> float:
        return float(hass.states.get(SUPPLY_ENERGY).state) - start

    # 300 kW for 36 s (a hundredth of an hour): 3 kWh.
    freezer.tick(timedelta(seconds=36))
    set_supply(hass, 300)
    await refresh_site(hass, loaded_entry)
    assert counted() == pytest.approx(3.0, abs=1e-3)
    # Unknown supply for a while: that stretch is not counted, nor the one it ends.
    set_supply(hass, "unavailable")
    await refresh_site(hass, loaded_entry)
    freezer.tick(timedelta(seconds=360))
    set_supply(hass, 100)
    await refresh_site(hass, loaded_entry)
    assert counted() == pytest.approx(3.0, abs=1e-3)
    freezer.tick(timedelta(seconds=36))
    set_supply(hass, 100)
    await refresh_site(hass, loaded_entry)
    assert counted() == pytest.approx(4.0, abs=1e-3)


@pytest.mark.parametrize(
    ("value", "unit"),
    [
        ("unavailable", "kW"),
        ("unknown", "kW"),
        ("lots", "kW"),
        ("300", "kWh"),
        ("300", None),
        ("nan", "kW"),
    ],
)
async def test_untrustworthy_supply_is_unknown(
    hass: HomeAssistant,
    loaded_entry: MockConfigEntry,
    value: str,
    unit: str | None,
    caplog: pytest.LogCaptureFixture,
) -> None:
    set_supply(hass, value, unit)
    await refresh_site(hass, loaded_entry)
    await refresh_site(hass, loaded_entry)
    assert hass.states.get(SUPPLY).state == STATE_UNKNOWN
    assert hass.states.get(AVAILABLE).state == STATE_UNKNOWN
    assert loaded_entry.runtime_data.site.data.available_power_w is None
    warnings = [r for r in caplog.records if "Supply power unknown" in r.getMessage()]
    assert len(warnings) == 1, "logged on change, not per poll"
    set_supply(hass, 200)
    await refresh_site(hass, loaded_entry)
    assert hass.states.get(AVAILABLE).state == "185.0"


async def test_stale_supply_is_unknown(
    hass: HomeAssistant, loaded_entry: MockConfigEntry, freezer: FrozenDateTimeFactory
) -> None:
    freezer.tick(timedelta(seconds=121))
    await refresh_site(hass, loaded_entry)
    assert hass.states.get(AVAILABLE).state == STATE_UNKNOWN
    set_supply(hass, 300)
    await refresh_site(hass, loaded_entry)
    assert hass.states.get(AVAILABLE).state == "285.0"


async def test_supply_from_voltage_and_current(
    hass: HomeAssistant, meter_server: MeterServer, config_entry: MockConfigEntry
) -> None:
    data = dict(config_entry.data)
    data.pop(CONF_SUPPLY_POWER_ENTITIES)
    data |= {CONF_SUPPLY_VOLTAGE_ENTITY: "sensor.v", CONF_SUPPLY_CURRENT_ENTITY: "sensor.i"}
    entry = MockConfigEntry(
        domain=DOMAIN,
        title="Test site",
        unique_id="test_site",
        data=data,
        options=config_entry.options,
    )
    hass.states.async_set("sensor.v", "0.4", {"unit_of_measurement": "kV"})
    hass.states.async_set("sensor.i", "500000", {"unit_of_measurement": "mA"})
    entry.add_to_hass(hass)
    assert await hass.config_entries.async_setup(entry.entry_id)
    await hass.async_block_till_done()
    assert hass.states.get(SUPPLY).state == "200.0"
    hass.states.async_set("sensor.i", "unavailable")
    await refresh_site(hass, entry)
    assert hass.states.get(SUPPLY).state == STATE_UNKNOWN
    await hass.config_entries.async_unload(entry.entry_id)


async def test_network_health(
    hass: HomeAssistant, loaded_entry: MockConfigEntry, closed_port: int
) -> None:
    assert hass.states.get(INTERNET).state == STATE_ON
    assert float(hass.states.get(POOL_LATENCY).state) >= 0
    assert float(hass.states.get(POOL_WORK_LATENCY).state) >= 0
    site = loaded_entry.runtime_data.site
    site.probe_targets = tuple(type(t)(t.name, t.host, closed_port) for t in site.probe_targets)
    await refresh_site(hass, loaded_entry)
    assert hass.states.get(POOL_LATENCY).state == STATE_UNKNOWN
    assert hass.states.get(POOL_REACHABLE).state == STATE_OFF
    # A TCP probe decides nothing: the verdict is the pool's handshakes, three in 10 s.
    assert hass.states.get(INTERNET).state == STATE_ON
    failover = loaded_entry.runtime_data.failover
    failover.upstream = ("127.0.0.1", closed_port)
    failover.probe_interval_s = 0.1
    await wait_for_state(hass, INTERNET, STATE_OFF)
    assert hass.states.get(POOL_WORK_LATENCY).state == STATE_UNKNOWN
    assert hass.states.get(POOL_WORK_LATENCY).attributes["error"] == "refused"


async def test_site_polls_on_its_interval(
    hass: HomeAssistant, loaded_entry: MockConfigEntry
) -> None:
    # Firing time runs every loop timer due within 11 s, the meter read's own timeout
    # included: park the grid loop so no read is in flight (a late reply has its own test).
    await park_the_grid_loop(loaded_entry.runtime_data.grid)
    set_supply(hass, 100)
    async_fire_time_changed(hass, dt_util.utcnow() + timedelta(seconds=11))
    # The refresh runs as a background task, which async_block_till_done does not wait for.
    await wait_for_state(hass, SUPPLY, "100.0")


async def test_meter_down_at_start_does_not_hold_the_site_back(
    hass: HomeAssistant, config_entry: MockConfigEntry, meter_server: MeterServer
) -> None:
    await meter_server.stop()
    set_supply(hass, 300)
    config_entry.add_to_hass(hass)
    assert await hass.config_entries.async_setup(config_entry.entry_id)
    await hass.async_block_till_done()
    assert hass.states.get(FREQUENCY).state == STATE_UNAVAILABLE
    assert hass.states.get(AVAILABLE).state == "285.0"
    await meter_server.start()
    await wait_for_state(hass, FREQUENCY, "50.0", timeout=5)
    assert await hass.config_entries.async_unload(config_entry.entry_id)


async def test_unload_stops_the_grid_loop(
    hass: HomeAssistant, loaded_entry: MockConfigEntry, meter_server: MeterServer
) -> None:
    assert await hass.config_entries.async_unload(loaded_entry.entry_id)
    await hass.async_block_till_done()
    meter_server.set_frequency(49.0)
    state = hass.states.get(FREQUENCY)
    assert state is None or state.state == STATE_UNAVAILABLE


async def test_diagnostics_redact_public_hosts_and_secrets(
    hass: HomeAssistant, loaded_entry: MockConfigEntry
) -> None:
    hass.config_entries.async_update_entry(
        loaded_entry,
        data={
            **loaded_entry.data,
            CONF_POOL_HOST: "stratum.pool.example",
            CONF_PROBE_HOST: "8.8.8.8",
            CONF_PROBE_PORT: 53,
            CONF_MINER_PASSWORD: "hunter2",
        },
    )
    diagnostics = await async_get_config_entry_diagnostics(hass, loaded_entry)
    assert "hunter2" not in str(diagnostics)
    data = diagnostics["entry"]["data"]
    assert data[CONF_MINER_PASSWORD] == "**REDACTED**"
    assert data[CONF_METER_HOST] == "127.0.0.1", "private addresses help debugging"
    assert data[CONF_POOL_HOST] == "**REDACTED**"
    assert data[CONF_PROBE_HOST] == "**REDACTED**"
    assert diagnostics["grid"]["data"]["reading"]["frequency_hz"] == 50.0
    assert diagnostics["site"]["data"]["probes"]["upstream_pool"]["target"]["host"] == "127.0.0.1"
    assert diagnostics["site"]["data"]["available_power_w"] == 285000.0


async def test_unload_ends_the_grid_loop_while_a_meter_read_is_in_flight(
    hass: HomeAssistant, pool_port: int, loopback_network: None
) -> None:
    held: list[asyncio.StreamWriter] = []
    connected = asyncio.Event()

    async def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)
        connected.set()

    silent = await asyncio.start_server(hold, "127.0.0.1", 0)
    entry = MockConfigEntry(
        domain=DOMAIN,
        title="Test site",
        unique_id="test_site",
        data=site_data("127.0.0.1", silent.sockets[0].getsockname()[1], pool_port),
        options={CONF_GRID_INTERVAL: 0.25},
    )
    set_supply(hass, 300)
    entry.add_to_hass(hass)
    try:
        # A meter that never answers leaves the grid unavailable, not the site.
        assert await hass.config_entries.async_setup(entry.entry_id)
        assert hass.states.get(FREQUENCY).state == STATE_UNAVAILABLE
        # From now on a read waits a minute; each read after a timeout connects anew.
        entry.runtime_data.grid.meter.timeout = 60
        connected.clear()
        async with asyncio.timeout(10):
            await connected.wait()  # the loop waits on the meter again
        loop = asyncio.get_running_loop()
        started = loop.time()
        assert await hass.config_entries.async_unload(entry.entry_id)
        # Waiting for the read would take its minute (or Home Assistant's 10 s cap).
        assert loop.time() - started < 5, "the unload waited for the grid loop"
    finally:
        for writer in held:
            writer.close()
        silent.close()
        await silent.wait_closed()


async def test_a_meter_that_answers_late_twice_or_not_at_all_leaves_no_fatal_error(
    hass: HomeAssistant,
    loaded_entry: MockConfigEntry,
    meter_server: MeterServer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Late replies land after the client gave the connection up; duplicates find no request."""
    grid = loaded_entry.runtime_data.grid
    grid.meter.timeout = 0.3
    await next_grid_update(grid)  # the read in flight kept its own timeout
    sent = meter_server.front.replies_sent
    meter_server.misbehave(late_s=0.6, times=1)
    await wait_for_state(hass, FREQUENCY, STATE_UNAVAILABLE)
    await meter_server.wait_for_replies(sent + 1)  # the late reply went out
    await wait_for_state(hass, FREQUENCY, "50.0")

    meter_server.misbehave(duplicate=True)
    meter_server.set_frequency(49.9)
    await wait_for_state(hass, FREQUENCY, "49.9")
    await meter_server.wait_for_replies(meter_server.front.replies_sent + 6)
    meter_server.behave()

    meter_server.misbehave(silent=True, times=2)
    await wait_for_state(hass, FREQUENCY, STATE_UNAVAILABLE)
    meter_server.set_frequency(50.0)
    await wait_for_state(hass, FREQUENCY, "50.0")

    fatal = [
        r.getMessage()
        for r in caplog.records
        if "Fatal error" in r.getMessage() or "InvalidStateError" in (r.exc_text or "")
    ]
    assert fatal == []
