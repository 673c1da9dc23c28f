"""Setting up, migrating and unloading a site."""

from __future__ import annotations

import logging
from typing import Any

from homeassistant.config_entries import SOURCE_USER, ConfigEntryState
from homeassistant.core import HomeAssistant
from homeassistant.data_entry_flow import FlowResultType
from homeassistant.helpers import device_registry as dr, entity_registry as er
import pytest
from pytest_homeassistant_custom_component.common import MockConfigEntry

from custom_components.bitcoin_mining.const import (
    CONF_GRID_INTERVAL,
    CONF_METER_HOST,
    CONF_METER_PORT,
    CONF_METER_UNIT_ID,
    CONF_NOMINAL_FREQUENCY,
    CONF_REGISTER_PRESET,
    CONF_SITE_ID,
    CONF_SITE_NAME,
    DOMAIN,
    PRESET_SEL735,
)
from custom_components.bitcoin_mining.coordinator import GridCoordinator, SiteCoordinator
from tests.support.modbus_meter import MeterServer

from .conftest import set_supply, site_data, wait_for_state


async def test_setup_and_unload(hass: HomeAssistant, loaded_entry: MockConfigEntry) -> None:
    assert loaded_entry.state is ConfigEntryState.LOADED
    assert isinstance(loaded_entry.runtime_data.grid, GridCoordinator)
    assert isinstance(loaded_entry.runtime_data.site, SiteCoordinator)

    meter = loaded_entry.runtime_data.grid.meter
    assert await hass.config_entries.async_unload(loaded_entry.entry_id)
    await hass.async_block_till_done()
    assert loaded_entry.state is ConfigEntryState.NOT_LOADED
    assert meter._client is None, "the meter connection is closed"


def old_entry(meter: MeterServer, pool_port: int, name: str, **kwargs: Any) -> MockConfigEntry:
    """A site as the version 1 flow created it: known by its name's slug."""
    return MockConfigEntry(
        domain=DOMAIN,
        version=1,
        title=name,
        unique_id=name.lower().replace(" ", "_"),
        data=site_data(meter.host, meter.port, pool_port) | {CONF_SITE_NAME: name},
        options={CONF_GRID_INTERVAL: 0.25},
        **kwargs,
    )


async def test_an_old_entry_migrates_and_keeps_its_device_and_entities(
    hass: HomeAssistant, meter_server: MeterServer, pool_port: int
) -> None:
    entry = old_entry(meter_server, pool_port, "Kariba container 1")
    entry.add_to_hass(hass)
    # What version 1 registered: the site device and its entities carry the slug.
    devices, entities = dr.async_get(hass), er.async_get(hass)
    device = devices.async_get_or_create(
        config_entry_id=entry.entry_id,
        identifiers={(DOMAIN, "kariba_container_1")},
        name="Kariba container 1",
    )
    # Renamed by the user: its history lives under this entity id.
    entities.async_get_or_create(
        "sensor",
        DOMAIN,
        "kariba_container_1_grid_frequency",
        config_entry=entry,
        device_id=device.id,
        suggested_object_id="kariba_frequency",
    )
    set_supply(hass, 300)
    assert await hass.config_entries.async_setup(entry.entry_id)
    await hass.async_block_till_done()

    assert entry.state is ConfigEntryState.LOADED
    assert entry.version == 2
    assert entry.unique_id == f"127.0.0.1:{meter_server.port}:1"
    assert entry.title == "Kariba container 1"
    assert entry.data[CONF_SITE_ID] == "kariba_container_1"
    await wait_for_state(hass, "sensor.kariba_frequency", "50.0")
    registered = er.async_entries_for_config_entry(entities, entry.entry_id)
    assert [e.entity_id for e in registered if e.unique_id.endswith("_grid_frequency")] == [
        "sensor.kariba_frequency"
    ]
    assert all(e.unique_id.startswith("kariba_container_1_") for e in registered)
    assert [d.id for d in dr.async_entries_for_config_entry(devices, entry.entry_id)] == [device.id]

    # The meter is taken: another site on it is refused, whatever its name.
    result = await hass.config_entries.flow.async_init(DOMAIN, context={"source": SOURCE_USER})
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"],
        {
            CONF_SITE_NAME: "Another name",
            CONF_NOMINAL_FREQUENCY: "50",
            CONF_METER_HOST: "127.0.0.1",
            CONF_METER_PORT: meter_server.port,
            CONF_METER_UNIT_ID: 1,
            CONF_REGISTER_PRESET: PRESET_SEL735,
        },
    )
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "already_configured"
    assert await hass.config_entries.async_unload(entry.entry_id)


async def test_two_old_sites_on_one_meter_both_migrate(
    hass: HomeAssistant,
    meter_server: MeterServer,
    pool_port: int,
    caplog: pytest.LogCaptureFixture,
) -> None:
    first = old_entry(meter_server, pool_port, "Kariba 1")
    second = old_entry(meter_server, pool_port, "Kariba 2")
    first.add_to_hass(hass)
    second.add_to_hass(hass)
    set_supply(hass, 300)
    with caplog.at_level(logging.WARNING):
        assert await hass.config_entries.async_setup(first.entry_id)
        await hass.async_block_till_done()
    assert first.state is second.state is ConfigEntryState.LOADED
    assert first.unique_id == f"127.0.0.1:{meter_server.port}:1"
    # No two entries share a unique id: the second keeps its slug, and the log says why.
    assert second.version == 2
    assert second.unique_id == "kariba_2"
    assert second.data[CONF_SITE_ID] == "kariba_2"
    assert "Kariba 2 reads the same grid meter" in caplog.text
    for entry in (first, second):
        assert await hass.config_entries.async_unload(entry.entry_id)


async def test_an_entry_from_a_newer_release_is_left_alone(
    hass: HomeAssistant,
    meter_server: MeterServer,
    pool_port: int,
    caplog: pytest.LogCaptureFixture,
) -> None:
    entry = MockConfigEntry(
        domain=DOMAIN,
        version=3,
        title="Kariba",
        unique_id="from_the_future",
        data=site_data(meter_server.host, meter_server.port, pool_port),
    )
    entry.add_to_hass(hass)
    assert not await hass.config_entries.async_setup(entry.entry_id)
    assert entry.state is ConfigEntryState.MIGRATION_ERROR
    assert (entry.version, entry.unique_id) == (3, "from_the_future")
    # Home Assistant 2026 refuses it before asking the integration; 2025.4 asks.
    assert (
        "Kariba was saved by a newer release" in caplog.text
        or "has version 3 which is higher than the current version 2" in caplog.text
    )
