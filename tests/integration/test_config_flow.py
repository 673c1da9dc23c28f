"""The config, options and reconfigure flows, through every error and recovery."""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

from homeassistant.config_entries import SOURCE_USER, ConfigEntryState
from homeassistant.core import HomeAssistant
from homeassistant.data_entry_flow import FlowResultType, InvalidData
from homeassistant.helpers import issue_registry as ir
import pytest
from pytest_homeassistant_custom_component.common import MockConfigEntry

from custom_components.bitcoin_mining import config_flow
from custom_components.bitcoin_mining.const import (
    CONF_ADDRESS,
    CONF_ADDRESS_BASE,
    CONF_ALERT_REPEAT_S,
    CONF_ALERT_TARGETS_CRITICAL,
    CONF_ALERT_TARGETS_HIGH,
    CONF_ALERT_TARGETS_MEDIUM,
    CONF_ALERT_TARGETS_WARNING,
    CONF_BYTE_ORDER,
    CONF_DATA_TYPE,
    CONF_FAILBACK_BATCH,
    CONF_FAILBACK_HOLD_S,
    CONF_FLEET_INTERVAL,
    CONF_FREQUENCY_REGISTER,
    CONF_GRID_INTERVAL,
    CONF_LOCAL_POOL_ADDRESS,
    CONF_LOCAL_POOL_BIND,
    CONF_LOCAL_POOL_MIN_DIFFICULTY,
    CONF_LOCAL_POOL_MODE,
    CONF_LOCAL_POOL_PORT,
    CONF_MARGIN_KW,
    CONF_MAX_STARTS,
    CONF_METER_HOST,
    CONF_METER_PORT,
    CONF_METER_UNIT_ID,
    CONF_MIN_OFF_S,
    CONF_MIN_ON_S,
    CONF_MINER_PASSWORD,
    CONF_MINER_USERNAME,
    CONF_MINERS,
    CONF_NOMINAL_FREQUENCY,
    CONF_OUTAGE_FAILURES,
    CONF_OUTAGE_WINDOW_S,
    CONF_OVERHEAD_KW,
    CONF_POOL_HOST,
    CONF_POOL_PORT,
    CONF_PROBE_HOST,
    CONF_PROBE_PORT,
    CONF_REGISTER_PRESET,
    CONF_REGISTER_TYPE,
    CONF_RESTORE_HOLD_S,
    CONF_SCALE,
    CONF_SITE_ID,
    CONF_SITE_NAME,
    CONF_SUPPLY_CURRENT_ENTITY,
    CONF_SUPPLY_POWER_ENTITIES,
    CONF_SUPPLY_STALE_S,
    CONF_SUPPLY_VOLTAGE_ENTITY,
    CONF_UNDER_FREQUENCY,
    CONF_WORD_ORDER,
    DEFAULT_ALERT_REPEAT_S,
    DEFAULT_GRID_INTERVAL,
    DOMAIN,
    IMPLAUSIBLE_READINGS_FOR_REPAIR,
    MIN_GRID_INTERVAL,
    POOL_MODE_PROXY,
    PRESET_CUSTOM,
    PRESET_SEL735,
)
from custom_components.bitcoin_mining.coordinator import implausible_issue_id
from custom_components.bitcoin_mining.miningsite.alerts import Severity
from custom_components.bitcoin_mining.miningsite.stratum import StratumProxy
from simulator import Site
from tests.conftest import REPO_ROOT
from tests.support.modbus_meter import MeterServer, float32_high_first, free_port

from .conftest import SUPPLY_ENTITY, device_of, entry_for, set_supply, site_data
from .notify_support import async_add_notify_entity, register_notify_service

EN = json.loads((REPO_ROOT / "custom_components/bitcoin_mining/translations/en.json").read_text())
TRANSLATIONS, ISSUES = EN["config"], EN["issues"]


def assert_translated(result: dict[str, Any]) -> None:
    """Every form, error and abort a flow shows has its text in en.json."""
    if result["type"] is FlowResultType.FORM:
        assert result["step_id"] in TRANSLATIONS["step"], result["step_id"]
        for error in (result.get("errors") or {}).values():
            assert error in TRANSLATIONS["error"], error
    elif result["type"] is FlowResultType.ABORT:
        assert result["reason"] in TRANSLATIONS["abort"], result["reason"]


def user_input(meter: MeterServer, **overrides: Any) -> dict[str, Any]:
    """The first step, filled in for the test meter."""
    return {
        CONF_SITE_NAME: "Kariba container 1",
        CONF_NOMINAL_FREQUENCY: "50",
        CONF_METER_HOST: meter.host,
        CONF_METER_PORT: meter.port,
        CONF_METER_UNIT_ID: meter.unit_id,
        CONF_REGISTER_PRESET: PRESET_SEL735,
    } | overrides


SUPPLY_INPUT = {
    CONF_SUPPLY_POWER_ENTITIES: [SUPPLY_ENTITY],
    CONF_OVERHEAD_KW: 12.5,
    CONF_MARGIN_KW: 4,
}


async def start_flow(hass: HomeAssistant) -> dict[str, Any]:
    result = await hass.config_entries.flow.async_init(DOMAIN, context={"source": SOURCE_USER})
    assert result["type"] is FlowResultType.FORM
    assert result["step_id"] == "user"
    return dict(result)


async def configure(hass: HomeAssistant, flow_id: str, data: dict[str, Any]) -> dict[str, Any]:
    """Answer a step; a step that shows progress is followed to where it leads."""
    result = dict(await hass.config_entries.flow.async_configure(flow_id, data))
    if result["type"] is FlowResultType.SHOW_PROGRESS:
        assert result["progress_action"] == "probe_miners"
        assert int(result["description_placeholders"]["count"]) > 0
        await hass.async_block_till_done()
        result = dict(await hass.config_entries.flow.async_configure(flow_id))
    assert_translated(result)
    return result


@pytest.fixture
def supply_sensor(hass: HomeAssistant) -> None:
    set_supply(hass, 250)


def meter_id(meter: MeterServer) -> str:
    """The unique id of a site on this meter."""
    return f"127.0.0.1:{meter.port}:{meter.unit_id}"


@pytest.mark.usefixtures("supply_sensor")
async def test_full_flow_creates_the_site(
    hass: HomeAssistant, meter_server: MeterServer, pool_port: int
) -> None:
    result = await start_flow(hass)
    result = await configure(
        hass,
        result["flow_id"],
        user_input(
            meter_server, **{CONF_SITE_NAME: " Kariba container 1 ", CONF_METER_HOST: " 127.0.0.1 "}
        ),
    )
    assert result["step_id"] == "supply"
    result = await configure(hass, result["flow_id"], SUPPLY_INPUT)
    assert result["step_id"] == "network"
    result = await configure(
        hass,
        result["flow_id"],
        {
            CONF_POOL_HOST: " 127.0.0.1 ",
            CONF_POOL_PORT: pool_port,
            CONF_PROBE_HOST: "127.0.0.1",
            CONF_PROBE_PORT: 53,
        },
    )
    assert result["step_id"] == "miners"
    result = await configure(hass, result["flow_id"], {CONF_MINERS: "  "})
    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert result["title"] == "Kariba container 1"
    assert result["data"] == {
        CONF_SITE_NAME: "Kariba container 1",
        CONF_NOMINAL_FREQUENCY: "50",
        CONF_METER_HOST: "127.0.0.1",
        CONF_METER_PORT: meter_server.port,
        CONF_METER_UNIT_ID: 1,
        CONF_REGISTER_PRESET: PRESET_SEL735,
        CONF_SUPPLY_POWER_ENTITIES: [SUPPLY_ENTITY],
        CONF_POOL_HOST: "127.0.0.1",
        CONF_POOL_PORT: pool_port,
        CONF_PROBE_HOST: "127.0.0.1",
        CONF_PROBE_PORT: 53,
    }
    assert result["options"] == {CONF_OVERHEAD_KW: 12.5, CONF_MARGIN_KW: 4.0, CONF_MINERS: ""}
    entry = result["result"]
    # Known by its meter, never by its name; the device and entities by the entry's id.
    assert entry.unique_id == meter_id(meter_server)
    assert entry.version == 2
    await hass.async_block_till_done()
    assert entry.state is ConfigEntryState.LOADED
    device = device_of(hass, entry, entry.entry_id)
    assert device is not None
    assert device.name == "Kariba container 1"
    assert await hass.config_entries.async_unload(entry.entry_id)


async def test_blank_name_is_refused_then_recovers(
    hass: HomeAssistant, meter_server: MeterServer
) -> None:
    result = await start_flow(hass)
    result = await configure(
        hass, result["flow_id"], user_input(meter_server, **{CONF_SITE_NAME: "   "})
    )
    assert result["errors"] == {CONF_SITE_NAME: "name_required"}
    result = await configure(hass, result["flow_id"], user_input(meter_server))
    assert result["step_id"] == "supply"


async def test_the_same_meter_cannot_serve_two_sites(hass: HomeAssistant) -> None:
    MockConfigEntry(
        domain=DOMAIN, version=2, unique_id="meter.local:502:1", title="Kariba 1"
    ).add_to_hass(hass)
    result = await start_flow(hass)
    # Another name, the host in other case and with blanks: still the same meter.
    same_meter = {
        CONF_SITE_NAME: "Kariba 2",
        CONF_NOMINAL_FREQUENCY: "50",
        CONF_METER_HOST: " Meter.LOCAL ",
        CONF_METER_PORT: 502,
        CONF_METER_UNIT_ID: 1,
        CONF_REGISTER_PRESET: PRESET_SEL735,
    }
    result = await configure(hass, result["flow_id"], same_meter)
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "already_configured"
    assert "already configured" in TRANSLATIONS["abort"]["already_configured"]


async def test_the_same_meter_cannot_be_added_in_two_flows_at_once(
    hass: HomeAssistant, meter_server: MeterServer
) -> None:
    custom = {CONF_REGISTER_PRESET: PRESET_CUSTOM}
    first = await start_flow(hass)
    result = await configure(hass, first["flow_id"], user_input(meter_server, **custom))
    assert result["step_id"] == "custom_register"
    second = await start_flow(hass)
    result = await configure(hass, second["flow_id"], user_input(meter_server, **custom))
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "already_in_progress"
    hass.config_entries.flow.async_abort(first["flow_id"])


async def test_meter_down_then_up(hass: HomeAssistant, loopback_network: None) -> None:
    meter = MeterServer()
    meter.set_frequency(50.02)
    result = await start_flow(hass)
    result = await configure(hass, result["flow_id"], user_input(meter))
    assert result["errors"] == {"base": "cannot_connect"}
    await meter.start()
    try:
        result = await configure(hass, result["flow_id"], user_input(meter))
        assert result["step_id"] == "supply"
    finally:
        await meter.stop()


async def test_meter_that_never_answers_times_out(
    hass: HomeAssistant, meter_server: MeterServer, silent_port: int
) -> None:
    result = await start_flow(hass)
    result = await configure(
        hass, result["flow_id"], user_input(meter_server, **{CONF_METER_PORT: silent_port})
    )
    assert result["errors"] == {"base": "timeout"}
    result = await configure(hass, result["flow_id"], user_input(meter_server))
    assert result["step_id"] == "supply"


@pytest.mark.parametrize("reading_hz", [0.0, 655.35, 5.0])
async def test_nonsense_frequency_is_refused(
    hass: HomeAssistant, meter_server: MeterServer, reading_hz: float
) -> None:
    meter_server.set_frequency(reading_hz)
    result = await start_flow(hass)
    result = await configure(hass, result["flow_id"], user_input(meter_server))
    assert result["errors"] == {"base": "frequency_out_of_range"}
    meter_server.set_frequency(49.98)
    result = await configure(hass, result["flow_id"], user_input(meter_server))
    assert result["step_id"] == "supply"


async def test_an_unexpected_error_is_shown_and_logged(
    hass: HomeAssistant,
    meter_server: MeterServer,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def broken(*args: object) -> None:
        raise RuntimeError("a bug")

    # A bug cannot be provoked from outside the library: one stands in for the meter probe.
    monkeypatch.setattr(config_flow, "probe_meter", broken)
    result = await start_flow(hass)
    with caplog.at_level(logging.ERROR):
        result = await configure(hass, result["flow_id"], user_input(meter_server))
    assert result["errors"] == {"base": "unknown"}
    assert "Unexpected error while checking the site" in caplog.text
    monkeypatch.undo()
    result = await configure(hass, result["flow_id"], user_input(meter_server))
    assert result["step_id"] == "supply"


async def test_wrong_unit_id_gets_no_answer(hass: HomeAssistant, meter_server: MeterServer) -> None:
    result = await start_flow(hass)
    result = await configure(
        hass, result["flow_id"], user_input(meter_server, **{CONF_METER_UNIT_ID: 7})
    )
    assert result["errors"] == {"base": "timeout"}
    result = await configure(hass, result["flow_id"], user_input(meter_server))
    assert result["step_id"] == "supply"


CUSTOM_FLOAT_REGISTER = {
    CONF_ADDRESS: 101,
    CONF_ADDRESS_BASE: "1",
    CONF_REGISTER_TYPE: "input",
    CONF_DATA_TYPE: "float32",
    CONF_WORD_ORDER: "high_first",
    CONF_BYTE_ORDER: "big",
    CONF_SCALE: 1.0,
}


async def test_custom_register_errors_and_recovery(
    hass: HomeAssistant, meter_server: MeterServer
) -> None:
    meter_server.set_input(100, float32_high_first(59.97))
    result = await start_flow(hass)
    result = await configure(
        hass,
        result["flow_id"],
        user_input(
            meter_server, **{CONF_REGISTER_PRESET: PRESET_CUSTOM, CONF_NOMINAL_FREQUENCY: "60"}
        ),
    )
    assert result["step_id"] == "custom_register"
    assert not result["errors"]

    result = await configure(hass, result["flow_id"], CUSTOM_FLOAT_REGISTER | {CONF_SCALE: 0})
    assert result["errors"] == {"base": "invalid_register_definition"}
    result = await configure(hass, result["flow_id"], CUSTOM_FLOAT_REGISTER | {CONF_ADDRESS: 0})
    assert result["errors"] == {"base": "invalid_register_definition"}
    # Register 5000 does not exist on this meter: the device answers with an exception.
    result = await configure(hass, result["flow_id"], CUSTOM_FLOAT_REGISTER | {CONF_ADDRESS: 5000})
    assert result["errors"] == {"base": "invalid_register"}
    result = await configure(
        hass, result["flow_id"], CUSTOM_FLOAT_REGISTER | {CONF_WORD_ORDER: "low_first"}
    )
    assert result["errors"] == {"base": "frequency_out_of_range"}
    result = await configure(hass, result["flow_id"], CUSTOM_FLOAT_REGISTER)
    assert result["step_id"] == "supply"

    set_supply(hass, 100)
    result = await configure(hass, result["flow_id"], SUPPLY_INPUT)
    result = await configure(
        hass, result["flow_id"], {CONF_POOL_HOST: "pool.example", CONF_POOL_PORT: 3333}
    )
    result = await configure(hass, result["flow_id"], {})
    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert result["data"][CONF_FREQUENCY_REGISTER]["register_type"] == "input"
    assert result["data"][CONF_FREQUENCY_REGISTER]["data_type"] == "float32"


async def _at_supply_step(hass: HomeAssistant, meter: MeterServer) -> str:
    result = await start_flow(hass)
    result = await configure(hass, result["flow_id"], user_input(meter))
    assert result["step_id"] == "supply"
    return str(result["flow_id"])


async def test_supply_errors_and_recovery(hass: HomeAssistant, meter_server: MeterServer) -> None:
    flow_id = await _at_supply_step(hass, meter_server)
    result = await configure(hass, flow_id, {CONF_OVERHEAD_KW: 10, CONF_MARGIN_KW: 5})
    assert result["errors"] == {"base": "supply_required"}
    result = await configure(
        hass,
        flow_id,
        {CONF_SUPPLY_VOLTAGE_ENTITY: "sensor.v", CONF_OVERHEAD_KW: 10, CONF_MARGIN_KW: 5},
    )
    assert result["errors"] == {"base": "voltage_needs_current"}
    result = await configure(
        hass, flow_id, SUPPLY_INPUT | {CONF_SUPPLY_POWER_ENTITIES: ["sensor.nowhere"]}
    )
    assert result["errors"] == {"base": "entity_not_found"}

    hass.states.async_set(
        "sensor.v", "230", {"unit_of_measurement": "V", "device_class": "voltage"}
    )
    hass.states.async_set(
        "sensor.i", "400", {"unit_of_measurement": "A", "device_class": "current"}
    )
    result = await configure(
        hass,
        flow_id,
        {
            CONF_SUPPLY_VOLTAGE_ENTITY: "sensor.v",
            CONF_SUPPLY_CURRENT_ENTITY: "sensor.i",
            CONF_OVERHEAD_KW: 0,
            CONF_MARGIN_KW: 0,
        },
    )
    assert result["step_id"] == "network"
    result = await configure(hass, flow_id, {CONF_POOL_HOST: "  ", CONF_POOL_PORT: 3333})
    assert result["errors"] == {CONF_POOL_HOST: "host_required"}
    result = await configure(
        hass,
        flow_id,
        {CONF_POOL_HOST: "pool.example", CONF_POOL_PORT: 3333, CONF_PROBE_HOST: "1.1.1.1"},
    )
    assert result["errors"] == {"base": "probe_needs_host_and_port"}
    result = await configure(
        hass, flow_id, {CONF_POOL_HOST: "pool.example", CONF_POOL_PORT: 3333, CONF_PROBE_PORT: 53}
    )
    assert result["errors"] == {"base": "probe_needs_host_and_port"}
    result = await configure(hass, flow_id, {CONF_POOL_HOST: "pool.example", CONF_POOL_PORT: 3333})
    assert result["step_id"] == "miners"
    result = await configure(hass, flow_id, {})
    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert result["data"][CONF_SUPPLY_VOLTAGE_ENTITY] == "sensor.v"
    assert CONF_SUPPLY_POWER_ENTITIES not in result["data"]


async def test_options_flow_saves_and_reloads(
    hass: HomeAssistant, loaded_entry: MockConfigEntry
) -> None:
    result = await hass.config_entries.options.async_init(loaded_entry.entry_id)
    assert result["type"] is FlowResultType.FORM
    assert result["step_id"] == "init"
    new_options = {
        CONF_GRID_INTERVAL: 0.5,
        CONF_FLEET_INTERVAL: 15,
        CONF_UNDER_FREQUENCY: 49.6,
        CONF_OVERHEAD_KW: 20,
        CONF_MARGIN_KW: 2,
        CONF_SUPPLY_STALE_S: 60,
        CONF_MIN_ON_S: 120,
        CONF_MIN_OFF_S: 60,
        CONF_MAX_STARTS: 20,
        CONF_RESTORE_HOLD_S: 30,
    }
    result = await hass.config_entries.options.async_configure(result["flow_id"], new_options)
    assert result["type"] is FlowResultType.FORM
    assert result["step_id"] == "failover"
    port = free_port()
    failover = {
        CONF_LOCAL_POOL_MODE: POOL_MODE_PROXY,
        CONF_LOCAL_POOL_BIND: " 127.0.0.1 ",
        CONF_LOCAL_POOL_PORT: float(port),
        CONF_LOCAL_POOL_ADDRESS: "",
        CONF_OUTAGE_FAILURES: 4.0,
        CONF_OUTAGE_WINDOW_S: 20,
        CONF_FAILBACK_HOLD_S: 90,
        CONF_FAILBACK_BATCH: 16.0,
        CONF_LOCAL_POOL_MIN_DIFFICULTY: "0.5",
    }
    result = await hass.config_entries.options.async_configure(result["flow_id"], failover)
    assert result["step_id"] == "alerts"
    result = await hass.config_entries.options.async_configure(
        result["flow_id"], {CONF_ALERT_REPEAT_S: 120}
    )
    assert result["type"] is FlowResultType.CREATE_ENTRY
    await hass.async_block_till_done()
    assert loaded_entry.options == {
        **{key: float(value) for key, value in new_options.items()},
        CONF_MAX_STARTS: 20,
        CONF_MINERS: "",
        # Addresses trimmed, counts and the port whole.
        CONF_LOCAL_POOL_MODE: POOL_MODE_PROXY,
        CONF_LOCAL_POOL_BIND: "127.0.0.1",
        CONF_LOCAL_POOL_PORT: port,
        CONF_LOCAL_POOL_ADDRESS: "",
        CONF_OUTAGE_FAILURES: 4,
        CONF_OUTAGE_WINDOW_S: 20.0,
        CONF_FAILBACK_HOLD_S: 90.0,
        CONF_FAILBACK_BATCH: 16,
        CONF_LOCAL_POOL_MIN_DIFFICULTY: 0.5,
        # No targets chosen: alerts are raised and shown, and sent nowhere.
        CONF_ALERT_REPEAT_S: 120.0,
        CONF_ALERT_TARGETS_CRITICAL: [],
        CONF_ALERT_TARGETS_HIGH: [],
        CONF_ALERT_TARGETS_MEDIUM: [],
        CONF_ALERT_TARGETS_WARNING: [],
    }
    # The reloaded pool listens where the options say, as a proxy in front of the pool.
    assert loaded_entry.runtime_data.failover.pool.port == port
    assert isinstance(loaded_entry.runtime_data.failover.pool, StratumProxy)
    assert loaded_entry.state is ConfigEntryState.LOADED
    # The reloaded coordinators run with the new settings.
    assert loaded_entry.runtime_data.grid.under_frequency_hz == 49.6
    assert loaded_entry.runtime_data.grid.interval == 0.5


async def test_the_meter_is_read_every_second_by_default_and_down_to_a_tenth(
    hass: HomeAssistant, loaded_entry: MockConfigEntry
) -> None:
    result = await hass.config_entries.options.async_init(loaded_entry.entry_id)
    schema = result["data_schema"].schema
    field = next(key for key in schema if key == CONF_GRID_INTERVAL)
    # A second by default (the grid entities follow every read: the recorder's load); the
    # minimum lets a site that needs a shed within half a second of a dip read at 0.2 s.
    assert field.default() == DEFAULT_GRID_INTERVAL == 0.1
    assert schema[field].config["min"] == MIN_GRID_INTERVAL == 0.1
    options = {
        CONF_FLEET_INTERVAL: 10,
        CONF_UNDER_FREQUENCY: 49.5,
        CONF_OVERHEAD_KW: 10,
        CONF_MARGIN_KW: 5,
        CONF_SUPPLY_STALE_S: 120,
        CONF_MIN_ON_S: 600,
        CONF_MIN_OFF_S: 300,
        CONF_MAX_STARTS: 10,
        CONF_RESTORE_HOLD_S: 300,
    }
    with pytest.raises(InvalidData, match="grid_interval"):
        await hass.config_entries.options.async_configure(
            result["flow_id"], {**options, CONF_GRID_INTERVAL: 0.05}
        )
    result = await hass.config_entries.options.async_configure(
        result["flow_id"], {**options, CONF_GRID_INTERVAL: MIN_GRID_INTERVAL}
    )
    assert result["step_id"] == "failover"
    result = await hass.config_entries.options.async_configure(
        result["flow_id"], failover_form(loaded_entry)
    )
    result = await alerts_step_done(hass, result)
    assert result["type"] is FlowResultType.CREATE_ENTRY
    await hass.async_block_till_done()
    assert loaded_entry.runtime_data.grid.interval == MIN_GRID_INTERVAL


def suggested(result: dict[str, Any]) -> dict[str, Any]:
    """What a form shows filled in."""
    return {
        str(key): key.description["suggested_value"]
        for key in result["data_schema"].schema
        if key.description and "suggested_value" in key.description
    }


def meter_form(meter: MeterServer, **overrides: Any) -> dict[str, Any]:
    """The reconfigure step: the meter and its register, no name."""
    return {
        CONF_NOMINAL_FREQUENCY: "50",
        CONF_METER_HOST: meter.host,
        CONF_METER_PORT: meter.port,
        CONF_METER_UNIT_ID: meter.unit_id,
        CONF_REGISTER_PRESET: PRESET_SEL735,
    } | overrides


async def test_reconfigure_moves_the_meter_and_keeps_the_site(
    hass: HomeAssistant,
    loaded_entry: MockConfigEntry,
    meter_server: MeterServer,
    closed_port: int,
    pool_port: int,
) -> None:
    site_device = device_of(hass, loaded_entry, "test_site")
    assert site_device is not None
    result = await loaded_entry.start_reconfigure_flow(hass)
    assert result["step_id"] == "reconfigure"
    assert suggested(result)[CONF_METER_PORT] == meter_server.port
    moved = MeterServer(port=closed_port)
    result = await configure(hass, result["flow_id"], meter_form(moved))
    assert result["errors"] == {"base": "cannot_connect"}

    moved.set_frequency(50.01)
    await moved.start()
    try:
        result = await configure(hass, result["flow_id"], meter_form(moved))
        assert result["step_id"] == "supply"
        assert suggested(result) == {CONF_SUPPLY_POWER_ENTITIES: [SUPPLY_ENTITY]}
        # Overhead and margin are options, not part of a reconfigure.
        assert CONF_OVERHEAD_KW not in {str(key) for key in result["data_schema"].schema}
        result = await configure(
            hass, result["flow_id"], {CONF_SUPPLY_POWER_ENTITIES: ["sensor.nowhere"]}
        )
        assert result["errors"] == {"base": "entity_not_found"}
        set_supply(hass, 50, entity_id="sensor.second_supply")
        both = [SUPPLY_ENTITY, "sensor.second_supply"]
        result = await configure(hass, result["flow_id"], {CONF_SUPPLY_POWER_ENTITIES: both})
        assert result["step_id"] == "network"
        assert suggested(result) == {CONF_POOL_HOST: "127.0.0.1", CONF_POOL_PORT: pool_port}
        network = {CONF_POOL_HOST: "127.0.0.1", CONF_POOL_PORT: pool_port}
        result = await configure(hass, result["flow_id"], network | {CONF_PROBE_HOST: "127.0.0.1"})
        assert result["errors"] == {"base": "probe_needs_host_and_port"}
        result = await configure(
            hass, result["flow_id"], network | {CONF_PROBE_HOST: "127.0.0.1", CONF_PROBE_PORT: 53}
        )
        assert result["type"] is FlowResultType.ABORT
        assert result["reason"] == "reconfigure_successful"
        await hass.async_block_till_done()
        assert loaded_entry.unique_id == meter_id(moved)
        assert loaded_entry.data[CONF_METER_PORT] == closed_port
        assert loaded_entry.data[CONF_PROBE_PORT] == 53
        assert loaded_entry.data[CONF_SUPPLY_POWER_ENTITIES] == both
        assert loaded_entry.data[CONF_SITE_NAME] == "Test site"
        assert loaded_entry.state is ConfigEntryState.LOADED
        # The same device and entities, on the moved meter, with both supplies (300 + 50 kW).
        assert loaded_entry.data[CONF_SITE_ID] == "test_site"
        assert device_of(hass, loaded_entry, "test_site") == site_device
        assert loaded_entry.runtime_data.grid.meter.port == closed_port
        assert hass.states.get("sensor.test_site_supply_power").state == "350.0"

        # Dropping the extra probe removes it from the entry.
        result = await loaded_entry.start_reconfigure_flow(hass)
        result = await configure(hass, result["flow_id"], meter_form(moved))
        result = await configure(hass, result["flow_id"], {CONF_SUPPLY_POWER_ENTITIES: both})
        result = await configure(hass, result["flow_id"], network)
        assert result["reason"] == "reconfigure_successful"
        await hass.async_block_till_done()
        assert CONF_PROBE_HOST not in loaded_entry.data
    finally:
        await hass.config_entries.async_unload(loaded_entry.entry_id)
        await moved.stop()


async def test_reconfigure_onto_another_sites_meter_is_refused(
    hass: HomeAssistant, loaded_entry: MockConfigEntry, meter_server: MeterServer
) -> None:
    MockConfigEntry(
        domain=DOMAIN, version=2, unique_id="10.0.0.9:502:1", title="Other site"
    ).add_to_hass(hass)
    result = await loaded_entry.start_reconfigure_flow(hass)
    other_meter = {CONF_METER_HOST: "10.0.0.9", CONF_METER_PORT: 502, CONF_METER_UNIT_ID: 1}
    result = await configure(hass, result["flow_id"], meter_form(meter_server, **other_meter))
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "already_configured"
    assert loaded_entry.unique_id == meter_id(meter_server)
    assert loaded_entry.data[CONF_METER_HOST] == "127.0.0.1"


async def test_reconfigure_describes_the_register_as_the_repair_advises(
    hass: HomeAssistant, meter_server: MeterServer, pool_port: int
) -> None:
    # The meter keeps its frequency in an input register: the preset reads 5 Hz, nonsense.
    meter_server.set_frequency(5.0)
    meter_server.set_input(100, float32_high_first(59.97))
    entry = MockConfigEntry(
        domain=DOMAIN,
        version=2,
        title="Test site",
        unique_id=meter_id(meter_server),
        data=site_data(meter_server.host, meter_server.port, pool_port),
        options={CONF_GRID_INTERVAL: 0.25, CONF_UNDER_FREQUENCY: 49.6},
    )
    set_supply(hass, 300)
    entry.add_to_hass(hass)
    assert await hass.config_entries.async_setup(entry.entry_id)
    for _ in range(IMPLAUSIBLE_READINGS_FOR_REPAIR):
        await entry.runtime_data.grid.async_refresh()
    issue_id = implausible_issue_id(entry.entry_id)
    assert ir.async_get(hass).async_get_issue(DOMAIN, issue_id) is not None
    advice = ISSUES["implausible_frequency"]["description"]
    assert "Reconfigure" in advice
    assert "Custom register" in advice

    # Following the advice: the register is described, on a 60 Hz grid.
    result = await entry.start_reconfigure_flow(hass)
    result = await configure(hass, result["flow_id"], meter_form(meter_server))
    assert result["errors"] == {"base": "frequency_out_of_range"}
    described = {CONF_NOMINAL_FREQUENCY: "60", CONF_REGISTER_PRESET: PRESET_CUSTOM}
    result = await configure(hass, result["flow_id"], meter_form(meter_server, **described))
    assert result["step_id"] == "custom_register"
    assert suggested(result) == {}
    result = await configure(hass, result["flow_id"], CUSTOM_FLOAT_REGISTER)
    result = await configure(hass, result["flow_id"], {CONF_SUPPLY_POWER_ENTITIES: [SUPPLY_ENTITY]})
    network = {CONF_POOL_HOST: "127.0.0.1", CONF_POOL_PORT: pool_port}
    result = await configure(hass, result["flow_id"], network)
    assert result["reason"] == "reconfigure_successful"
    await hass.async_block_till_done()
    assert entry.data[CONF_NOMINAL_FREQUENCY] == "60"
    assert entry.data[CONF_FREQUENCY_REGISTER]["register_type"] == "input"
    # A 49.6 Hz threshold means nothing on a 60 Hz grid: back to the default.
    assert CONF_UNDER_FREQUENCY not in entry.options
    assert entry.runtime_data.grid.under_frequency_hz == 59.4
    assert ir.async_get(hass).async_get_issue(DOMAIN, issue_id) is None
    frequency = hass.states.get("sensor.test_site_grid_frequency")
    assert float(frequency.state) == pytest.approx(59.97, abs=0.01)

    # The stored register is shown again; back to the preset, it is dropped.
    result = await entry.start_reconfigure_flow(hass)
    assert suggested(result)[CONF_REGISTER_PRESET] == PRESET_CUSTOM
    result = await configure(hass, result["flow_id"], meter_form(meter_server, **described))
    assert suggested(result)[CONF_ADDRESS] == 101
    assert suggested(result)[CONF_ADDRESS_BASE] == "1"
    hass.config_entries.flow.async_abort(result["flow_id"])
    meter_server.set_frequency(59.9)
    result = await entry.start_reconfigure_flow(hass)
    result = await configure(
        hass, result["flow_id"], meter_form(meter_server, **{CONF_NOMINAL_FREQUENCY: "60"})
    )
    result = await configure(hass, result["flow_id"], {CONF_SUPPLY_POWER_ENTITIES: [SUPPLY_ENTITY]})
    result = await configure(hass, result["flow_id"], network)
    assert result["reason"] == "reconfigure_successful"
    await hass.async_block_till_done()
    assert CONF_FREQUENCY_REGISTER not in entry.data
    assert entry.data[CONF_REGISTER_PRESET] == PRESET_SEL735
    assert await hass.config_entries.async_unload(entry.entry_id)


async def _at_miners_step(hass: HomeAssistant, meter: MeterServer, pool_port: int) -> str:
    flow_id = await _at_supply_step(hass, meter)
    result = await configure(hass, flow_id, SUPPLY_INPUT)
    result = await configure(
        hass, flow_id, {CONF_POOL_HOST: "127.0.0.1", CONF_POOL_PORT: pool_port}
    )
    assert result["step_id"] == "miners"
    return flow_id


@pytest.mark.usefixtures("supply_sensor")
async def test_miners_step_errors_and_recovery(
    hass: HomeAssistant,
    meter_server: MeterServer,
    simulated: Site,
    closed_port: int,
    pool_port: int,
) -> None:
    flow_id = await _at_miners_step(hass, meter_server, pool_port)
    for text, error, item in (
        ("10.0.0.300", "invalid_address", "10.0.0.300"),
        ("10.0.0.1 avalon", "unknown_family", "avalon"),
        ("10.0.0.1\n10.0.0.1 antminer", "duplicate_address", "10.0.0.1"),
        ("10.0.0.0/16", "too_many_addresses", "10.0.0.0/16"),
    ):
        result = await configure(hass, flow_id, {CONF_MINERS: text})
        assert result["errors"] == {CONF_MINERS: error}, text
        assert result["description_placeholders"] == {"item": item}
    # Nobody answers on a closed port, whether the family is given or detected.
    for line in (f"127.0.0.1:{closed_port} whatsminer", f"127.0.0.1:{closed_port}"):
        result = await configure(hass, flow_id, {CONF_MINERS: line})
        assert result["errors"] == {"base": "no_miner_answered"}, line

    whatsminer = next(m for m in simulated.miners if m.family == "whatsminer")
    antminer = next(m for m in simulated.miners if m.family == "antminer")
    listed = f"{antminer.host}:{antminer.api_port} antminer"
    result = await configure(
        hass, flow_id, {CONF_MINERS: listed, CONF_MINER_USERNAME: "root", CONF_MINER_PASSWORD: "x"}
    )
    assert result["errors"] == {"base": "invalid_auth"}

    # A detected miner and a dead one: one answering is enough (the other may be off).
    text = f"{whatsminer.host}:{whatsminer.api_port}\n127.0.0.1:{closed_port} cgminer"
    result = await configure(hass, flow_id, {CONF_MINERS: f" {text} "})
    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert result["options"][CONF_MINERS] == text
    assert CONF_MINER_PASSWORD not in result["data"]
    await hass.async_block_till_done()
    entry = result["result"]
    assert entry.state is ConfigEntryState.LOADED
    assert len(entry.runtime_data.fleet.data.miners) == 1
    assert await hass.config_entries.async_unload(entry.entry_id)


async def test_reauth_tries_the_new_login_before_saving_it(
    hass: HomeAssistant, simulated: Site
) -> None:
    antminer = next(m for m in simulated.miners if m.family == "antminer")
    entry = entry_for(simulated, **{CONF_MINERS: f"{antminer.host}:{antminer.api_port} antminer"})
    entry.add_to_hass(hass)
    hass.config_entries.async_update_entry(
        entry, data={**entry.data, CONF_MINER_USERNAME: "root", CONF_MINER_PASSWORD: "old"}
    )
    result = await entry.start_reauth_flow(hass)
    assert result["step_id"] == "reauth_confirm"
    result = await configure(
        hass, result["flow_id"], {CONF_MINER_USERNAME: "root", CONF_MINER_PASSWORD: "wrong"}
    )
    assert result["errors"] == {"base": "invalid_auth"}
    result = await configure(
        hass, result["flow_id"], {CONF_MINER_USERNAME: "root", CONF_MINER_PASSWORD: "root"}
    )
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "reauth_successful"
    assert entry.data[CONF_MINER_PASSWORD] == "root"
    await hass.async_block_till_done()
    if entry.state is ConfigEntryState.LOADED:
        assert await hass.config_entries.async_unload(entry.entry_id)


async def test_options_refuse_a_bad_miner_list_and_keep_the_old_one(
    hass: HomeAssistant, loaded_entry: MockConfigEntry
) -> None:
    result = await hass.config_entries.options.async_init(loaded_entry.entry_id)
    base = {
        CONF_GRID_INTERVAL: 1,
        CONF_FLEET_INTERVAL: 10,
        CONF_UNDER_FREQUENCY: 49.5,
        CONF_OVERHEAD_KW: 10,
        CONF_MARGIN_KW: 5,
        CONF_SUPPLY_STALE_S: 120,
        CONF_MIN_ON_S: 600,
        CONF_MIN_OFF_S: 300,
        CONF_MAX_STARTS: 10,
        CONF_RESTORE_HOLD_S: 300,
    }
    result = await hass.config_entries.options.async_configure(
        result["flow_id"], base | {CONF_MINERS: "10.0.0.1-5\n10.0.0.3 braiins"}
    )
    assert result["errors"] == {CONF_MINERS: "duplicate_address"}
    assert result["description_placeholders"] == {"item": "10.0.0.3"}
    assert CONF_MINERS not in loaded_entry.options or not loaded_entry.options[CONF_MINERS]
    result = await hass.config_entries.options.async_configure(
        result["flow_id"], base | {CONF_MINERS: "10.0.0.1-5 braiins\n"}
    )
    assert result["step_id"] == "failover"
    result = await hass.config_entries.options.async_configure(
        result["flow_id"], failover_form(loaded_entry)
    )
    result = await alerts_step_done(hass, result)
    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert loaded_entry.options[CONF_MINERS] == "10.0.0.1-5 braiins"


async def test_reauth_of_a_site_without_miners_saves_the_login(
    hass: HomeAssistant, simulated: Site
) -> None:
    entry = entry_for(simulated, **{CONF_MINERS: ""})
    entry.add_to_hass(hass)
    result = await entry.start_reauth_flow(hass)
    result = await configure(hass, result["flow_id"], {CONF_MINER_PASSWORD: "new"})
    assert result["reason"] == "reauth_successful"
    assert entry.data[CONF_MINER_PASSWORD] == "new"
    await hass.async_block_till_done()
    if entry.state is ConfigEntryState.LOADED:
        assert await hass.config_entries.async_unload(entry.entry_id)


async def alerts_step_done(hass: HomeAssistant, result: dict[str, Any]) -> dict[str, Any]:
    """The options flow's last page (alerts) taken with its defaults."""
    assert result["step_id"] == "alerts"
    return await hass.config_entries.options.async_configure(
        result["flow_id"], {CONF_ALERT_REPEAT_S: DEFAULT_ALERT_REPEAT_S}
    )


def failover_form(entry: MockConfigEntry) -> dict[str, Any]:
    """The failover step filled in with the defaults, on the port the site's pool holds."""
    return {
        CONF_LOCAL_POOL_BIND: "",
        CONF_LOCAL_POOL_PORT: entry.runtime_data.failover.pool.port,
        CONF_LOCAL_POOL_ADDRESS: "",
        CONF_OUTAGE_FAILURES: 3,
        CONF_OUTAGE_WINDOW_S: 10,
        CONF_FAILBACK_HOLD_S: 60,
        CONF_FAILBACK_BATCH: 20,
        CONF_LOCAL_POOL_MIN_DIFFICULTY: 1024,
    }


async def failover_step(hass: HomeAssistant, entry: MockConfigEntry) -> dict[str, Any]:
    """An options flow at its failover step, the first page taken as stored."""
    result = await hass.config_entries.options.async_init(entry.entry_id)
    first = {
        CONF_GRID_INTERVAL: 1,
        CONF_FLEET_INTERVAL: 10,
        CONF_UNDER_FREQUENCY: 49.5,
        CONF_OVERHEAD_KW: 10,
        CONF_MARGIN_KW: 5,
        CONF_SUPPLY_STALE_S: 120,
        CONF_MIN_ON_S: 600,
        CONF_MIN_OFF_S: 300,
        CONF_MAX_STARTS: 10,
        CONF_RESTORE_HOLD_S: 300,
    }
    result = await hass.config_entries.options.async_configure(result["flow_id"], first)
    assert result["step_id"] == "failover"
    return result


async def test_the_failover_step_refuses_a_taken_port_and_a_foreign_address(
    hass: HomeAssistant, loaded_entry: MockConfigEntry
) -> None:
    result = await failover_step(hass, loaded_entry)
    values = failover_form(loaded_entry)
    holder = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    taken = int(holder.sockets[0].getsockname()[1])
    try:
        result = await hass.config_entries.options.async_configure(
            result["flow_id"],
            values | {CONF_LOCAL_POOL_BIND: "127.0.0.1", CONF_LOCAL_POOL_PORT: taken},
        )
        assert result["errors"] == {CONF_LOCAL_POOL_PORT: "port_in_use"}
    finally:
        holder.close()
        await holder.wait_closed()
    # TEST-NET-3: never an address of this machine.
    result = await hass.config_entries.options.async_configure(
        result["flow_id"], values | {CONF_LOCAL_POOL_BIND: "203.0.113.7"}
    )
    assert result["errors"] == {CONF_LOCAL_POOL_BIND: "cannot_listen"}
    result = await hass.config_entries.options.async_configure(
        result["flow_id"], values | {CONF_OUTAGE_FAILURES: 5, CONF_OUTAGE_WINDOW_S: 7}
    )
    assert result["errors"] == {CONF_OUTAGE_WINDOW_S: "window_too_short"}
    with pytest.raises(InvalidData, match=CONF_LOCAL_POOL_MODE):
        await hass.config_entries.options.async_configure(
            result["flow_id"], values | {CONF_LOCAL_POOL_MODE: "turbo"}
        )
    for difficulty in (0, -1, "many"):
        with pytest.raises(InvalidData, match=CONF_LOCAL_POOL_MIN_DIFFICULTY):
            await hass.config_entries.options.async_configure(
                result["flow_id"], values | {CONF_LOCAL_POOL_MIN_DIFFICULTY: difficulty}
            )
    # Nothing was saved on the way.
    assert CONF_LOCAL_POOL_PORT not in loaded_entry.options
    # The port the site's own pool holds is fine: the reload frees it first.
    own = loaded_entry.runtime_data.failover.pool.port
    result = await hass.config_entries.options.async_configure(
        result["flow_id"], values | {CONF_LOCAL_POOL_PORT: own}
    )
    result = await alerts_step_done(hass, result)
    assert result["type"] is FlowResultType.CREATE_ENTRY
    await hass.async_block_till_done()
    assert loaded_entry.runtime_data.failover.pool.port == own


async def test_the_alerts_step_routes_severities_to_targets_that_exist(
    hass: HomeAssistant, loaded_entry: MockConfigEntry
) -> None:
    register_notify_service(hass, "mobile_app_pixel")
    await async_add_notify_entity(hass, "sms")
    result = await failover_step(hass, loaded_entry)
    result = await hass.config_entries.options.async_configure(
        result["flow_id"], failover_form(loaded_entry)
    )
    assert result["step_id"] == "alerts"
    # The phone's service and the notify entity are offered (Home Assistant's own are not).
    schema = result["data_schema"].schema
    field = next(key for key in schema if key == CONF_ALERT_TARGETS_CRITICAL)
    assert schema[field].config["options"] == ["notify.mobile_app_pixel", "notify.sms"]
    routes = {
        CONF_ALERT_REPEAT_S: 60,
        CONF_ALERT_TARGETS_CRITICAL: ["notify.mobile_app_pixel", " notify.sms ", "notify.sms"],
        CONF_ALERT_TARGETS_HIGH: ["notify.mobile_app_pixel"],
    }
    for bad in ("notify.mobile_app_gone", "notify.send_message", "light.kitchen", "notify."):
        result = await hass.config_entries.options.async_configure(
            result["flow_id"], routes | {CONF_ALERT_TARGETS_WARNING: ["notify.sms", bad]}
        )
        assert result["errors"] == {CONF_ALERT_TARGETS_WARNING: "unknown_notify_target"}
        assert result["description_placeholders"] == {"target": bad}
    with pytest.raises(InvalidData, match=CONF_ALERT_REPEAT_S):
        await hass.config_entries.options.async_configure(
            result["flow_id"], routes | {CONF_ALERT_REPEAT_S: -1}
        )
    assert CONF_ALERT_TARGETS_CRITICAL not in loaded_entry.options
    result = await hass.config_entries.options.async_configure(result["flow_id"], routes)
    assert result["type"] is FlowResultType.CREATE_ENTRY
    await hass.async_block_till_done()
    options = loaded_entry.options
    assert options[CONF_ALERT_REPEAT_S] == 60.0
    # Trimmed, each once, in the order given.
    assert options[CONF_ALERT_TARGETS_CRITICAL] == ["notify.mobile_app_pixel", "notify.sms"]
    assert options[CONF_ALERT_TARGETS_HIGH] == ["notify.mobile_app_pixel"]
    assert options[CONF_ALERT_TARGETS_MEDIUM] == []
    alerts = loaded_entry.runtime_data.alerts
    assert alerts.repeat_s == 60.0
    assert alerts.routes[Severity.CRITICAL] == ("notify.mobile_app_pixel", "notify.sms")
